//! Command line: one subcommand per role the binary plays.

mod apiserver;
mod controller_manager;
mod cri;
mod cri_reset;
pub mod log_driver;
pub mod node;
pub(crate) mod proxy;
pub mod runtime_args;
mod scheduler;
pub mod up;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "deckhand", version, about = "A Kubernetes node in one binary")]
pub struct Cli {
    /// Log filter in tracing's EnvFilter syntax (e.g. `info`, `deckhand=debug`).
    /// Falls back to RUST_LOG, then `info`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the CRI v1 RuntimeService and ImageService on a unix socket.
    Cri(Box<cri::CriArgs>),
    /// A pod sandbox's infra process (deckhand starts it itself).
    #[command(hide = true)]
    SandboxInfra(crate::runtime::sandbox::infra::InfraArgs),
    /// Serve the bundled Kubernetes API server (HTTPS, embedded store).
    Apiserver(apiserver::ApiserverArgs),
    /// Stop and remove every pod sandbox a CRI runtime holds (crictl rmp -a -f).
    CriReset(cri_reset::CriResetArgs),
    /// The node agent (kubelet): registers the Node, runs the pods bound to it.
    Node(Box<node::NodeArgs>),
    /// The scheduler (and, with --node-lifecycle, the node lifecycle controller).
    Scheduler(scheduler::SchedulerArgs),
    /// The controllers (kube-controller-manager's workload, volume and node
    /// controllers) against any apiserver.
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// The service proxy (kube-proxy in nftables mode).
    Proxy(proxy::ProxyArgs),
    /// The cluster DNS server (authoritative for the cluster domain).
    Dns(proxy::DnsArgs),
    /// A whole single-node Kubernetes in one process: apiserver, scheduler,
    /// node agent and runtime.
    Up(Box<up::UpArgs>),
    /// The preflight checks of `deckhand up`, each with pass/fail and the fix.
    Doctor(Box<up::DoctorArgs>),
}

impl Cli {
    /// The arguments of this process. `deckhand node` drops the kubelet
    /// flags it accepts but does not implement (each is warned about).
    pub fn parse_args() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        // The subcommand is the first argument that is not a flag or the
        // value of --log-level.
        let mut sub = None;
        let mut i = 1;
        while i < args.len() {
            let a = args[i].to_string_lossy();
            if a == "--log-level" {
                i += 2;
                continue;
            }
            if !a.starts_with('-') {
                sub = Some(i);
                break;
            }
            i += 1;
        }
        let (args, ignored) = match sub {
            Some(i) if args[i] == "node" => node::strip_ignored_flags(args),
            _ => (args, vec![]),
        };
        let mut cli = <Cli as Parser>::parse_from(args);
        if let Command::Node(n) = &mut cli.command {
            n.ignored_flags = ignored;
        }
        cli
    }

    /// --log-level, else what the subcommand asks for (`deckhand node --v`).
    pub fn log_level(&self) -> Option<String> {
        if let Some(l) = &self.log_level {
            return Some(l.clone());
        }
        match &self.command {
            Command::Node(n) => n.log_level_hint().map(String::from),
            _ => None,
        }
    }
}

pub fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Cri(args) => cri::run(*args).await,
        Command::SandboxInfra(_) => {
            anyhow::bail!("sandbox-infra must run before an async runtime exists")
        }
        Command::Apiserver(args) => apiserver::run(args).await,
        Command::CriReset(args) => cri_reset::run(args).await,
        Command::Node(args) => node::run(*args).await,
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::ControllerManager(args) => controller_manager::run(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Dns(args) => proxy::run_dns(args).await,
        Command::Up(args) => up::run(*args).await,
        Command::Doctor(args) => up::doctor(&args.up).await,
    }
}

/// SIGINT or SIGTERM: what stops `deckhand cri` and `deckhand node`.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
}

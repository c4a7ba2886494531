//! Command line: one subcommand per role the binary plays.

mod apiserver;
mod cri;
mod cri_reset;
pub mod log_driver;
pub mod runtime_args;

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
    }
}

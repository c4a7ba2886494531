//! `deckhand up`: a whole single-node Kubernetes in one process and one
//! tokio runtime: the bundled apiserver, the scheduler, the controller
//! manager (controllers::manager: every controller whose API the bundled
//! apiserver serves), the service proxy and the cluster DNS (up/services),
//! the node agent and the in-process runtime (no gRPC hop
//! between agent and runtime; the runtime is also served on a CRI socket
//! for crictl). containerd is the one other process: the machine's, or a
//! supervised child of `up` when none answers.
//!
//! Start-up is concurrent: the apiserver starts while the runtime connects
//! to containerd and re-adopts what a previous run left; the agent starts
//! once the apiserver's /readyz answers (polled, no fixed sleep).

mod containerd;
pub mod doctor;
mod kubeconfig;
mod lock;
mod network;
mod services;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tokio::sync::watch;

use crate::cli::runtime_args::RuntimeArgs;
use crate::controllers::{manager, scheduler};
use crate::cri::api::{ImageService, RuntimeService};
use crate::node::config::NodeConfig;

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where everything of this node lives: the store, the PKI, the
    /// kubeconfigs, the runtime's state, the default network, the
    /// supervised containerd.
    #[arg(long, default_value = "/var/lib/deckhand/up")]
    pub data_dir: PathBuf,
    /// The Node's name (default: the hostname, lowercased).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where the apiserver serves HTTPS.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// containerd's socket. When nothing answers there, `up` starts a
    /// containerd of its own with its root, state and socket under
    /// `<data-dir>/containerd`.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd: PathBuf,
    /// containerd namespace for images and containers.
    #[arg(long, default_value = "k8s.io")]
    pub containerd_namespace: String,
    /// The machine containerd's root (for the image filesystem's stats).
    #[arg(long, default_value = "/var/lib/containerd")]
    pub containerd_root: PathBuf,
    /// Also merge a `deckhand` context into ~/.kube/config (the invoking
    /// user's under sudo) and make it current.
    #[arg(long)]
    pub write_kubeconfig: bool,
    /// Print each preflight check with pass/fail and the fix, then exit.
    #[arg(long)]
    pub check: bool,
    /// Serve the runtime on this CRI socket too (for crictl); `none`: don't.
    #[arg(long, default_value = "unix:///run/deckhand/cri.sock")]
    pub cri_listen: String,
    /// The pod network's config dir (default: /etc/cni/net.d if it holds
    /// one, else a bridge network written into the data dir).
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where CNI plugins are (repeat or separate with ':').
    #[arg(long, default_value = "/usr/lib/cni", value_delimiter = ':')]
    pub cni_bin_dir: Vec<PathBuf>,
    /// Parent of the pods' cgroups.
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// Volatile runtime state (pinned namespaces); not under the data dir
    /// because it must not outlive a reboot.
    #[arg(long, default_value = "/run/deckhand/up")]
    pub run_dir: PathBuf,
    /// Registry hosts configuration, in containerd's layout.
    #[arg(long, default_value = "/etc/deckhand/certs.d")]
    pub registry_config_dir: PathBuf,
    /// The node's InternalIP (default: the default route's source address).
    #[arg(long, value_delimiter = ',')]
    pub node_ip: Vec<String>,
    /// The kubelet API port published in the Node's daemonEndpoints.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Write a kubeconfig for another machine's `deckhand node` (user
    /// system:node:NAME, from this node's CA), as NAME=PATH. Repeatable.
    /// It names the --listen address: give one the other machine reaches.
    #[arg(long = "write-node-kubeconfig", value_name = "NAME=PATH", value_parser = crate::cli::apiserver::parse_node_kubeconfig)]
    pub node_kubeconfigs: Vec<(String, PathBuf)>,
    /// The service proxy: `nftables` (kube-proxy's nftables mode: ClusterIPs
    /// and NodePorts answer on this machine) or `none`.
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "none"])]
    pub proxy_mode: String,
    /// Where the cluster DNS serves (UDP and TCP): `auto` is port 53 on the
    /// pod network's gateway (the address every pod reaches; the pods'
    /// resolv.conf names it), `none` runs no DNS, or ADDRESS:PORT.
    #[arg(long, default_value = "auto")]
    pub dns_listen: String,
    /// Labels to register the Node with: `k=v,k2=v2`.
    #[arg(long, value_parser = crate::node::config::parse_labels)]
    pub node_labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `deckhand doctor`: the preflight checks with the defaults of `up`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub up: UpArgs,
}

fn node_name(args: &UpArgs) -> anyhow::Result<String> {
    let name = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname (or pass --node-name)")?
            .trim()
            .to_string(),
    }
    .to_lowercase();
    if !crate::apiserver::resources::is_dns_subdomain(&name) {
        bail!("node name {name:?} is not a DNS-1123 subdomain: pass --node-name NAME");
    }
    Ok(name)
}

fn checks(args: &UpArgs, containerd_answers: bool) -> Vec<doctor::Check> {
    doctor::run_all(
        &doctor::Inputs {
            listen: args.listen,
            containerd_socket: &args.containerd,
            cni_bin_dirs: &args.cni_bin_dir,
            cgroup_root: &args.cgroup_root,
        },
        containerd_answers,
    )
}

/// Prints every check; fails when one did.
pub async fn doctor(args: &UpArgs) -> anyhow::Result<()> {
    let all = checks(args, containerd::answers(&args.containerd).await);
    for c in &all {
        println!("{}", c.line());
    }
    let failed = all.iter().filter(|c| !c.ok()).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed", all.len());
    }
    println!("all {} checks passed", all.len());
    Ok(())
}

/// The address clients reach the apiserver on.
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.check {
        return doctor(&args).await;
    }
    if args.listen.port() == 0 {
        bail!("--listen needs a port (the kubeconfig names it): e.g. 127.0.0.1:6443");
    }
    let name = node_name(&args)?;
    let data = &args.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let _lock = lock::lock(data)?;
    lock::check_format(data)?;

    // Preflight: the first failure is the one-line error.
    let containerd_answers = containerd::answers(&args.containerd).await;
    if let Some(failed) = checks(&args, containerd_answers)
        .into_iter()
        .find(|c| !c.ok())
    {
        return Err(failed.error());
    }

    let supervised = if containerd_answers {
        None
    } else {
        let bin = doctor::find_program("containerd").context("containerd vanished")?;
        let dir = data.join("containerd");
        let s = containerd::Supervised::start(&bin, &dir, Duration::from_secs(30)).await?;
        println!(
            "deckhand up: no containerd on {}: started {} on {} (log {})",
            args.containerd.display(),
            bin.display(),
            containerd::socket(&dir).display(),
            dir.join("containerd.log").display()
        );
        Some((s, dir))
    };
    let result = serve(
        &args,
        &name,
        supervised.as_ref().map(|(_, d)| d.as_path()),
        started,
    )
    .await;
    if let Some((s, _)) = supervised {
        s.stop().await;
    }
    result
}

/// Everything but containerd.
async fn serve(
    args: &UpArgs,
    name: &str,
    own_containerd: Option<&Path>,
    started: Instant,
) -> anyhow::Result<()> {
    let data = &args.data_dir;
    let (cni_conf_dir, installed) = network::conf_dir(args.cni_conf_dir.as_deref(), data)?;
    if installed {
        println!(
            "deckhand up: no pod network on this machine: using bridge deckhand0, 10.85.0.0/16 ({})",
            cni_conf_dir.display()
        );
    }
    let pod_network = network::bridge_network(&cni_conf_dir);
    let dns_at = services::dns_listen(&args.dns_listen, pod_network.as_ref())?;
    let apiserver_dir = data.join("apiserver");
    let server = format!("https://{}", connect_addr(args.listen));
    let kubeconfigs = kubeconfig::write(&apiserver_dir.join("pki"), data, &server, name)?;
    for (other, path) in &args.node_kubeconfigs {
        if !crate::apiserver::resources::is_dns_subdomain(other) {
            bail!(
                "--write-node-kubeconfig: {other:?} is not a valid node name (DNS-1123 subdomain)"
            );
        }
        kubeconfig::write_node(&apiserver_dir.join("pki"), path, &server, other)?;
        println!(
            "deckhand up: wrote {} for node {other} (server {server})",
            path.display()
        );
    }
    if args.write_kubeconfig {
        merge_user_kubeconfig(&kubeconfigs.admin)?;
    }
    let admin = kubeconfig::client(&kubeconfigs.admin).await?;
    let node_client = kubeconfig::client(&kubeconfigs.node).await?;

    let mut apiserver = tokio::spawn(crate::apiserver::run(crate::apiserver::Config {
        data_dir: apiserver_dir.clone(),
        listen: args.listen,
        write_kubeconfig: None,
        token_auth_file: None,
        node_kubeconfigs: vec![],
        bookmark_interval: Duration::from_secs(30),
        event_ttl: Duration::from_secs(3600),
        service_account_issuer: "https://kubernetes.default.svc.cluster.local".into(),
        kubelet_certificate_authority: None,
    }));

    let (containerd_socket, containerd_root) = match own_containerd {
        Some(dir) => (containerd::socket(dir), dir.join("root")),
        None => (args.containerd.clone(), args.containerd_root.clone()),
    };
    let runtime_args = RuntimeArgs {
        containerd: containerd_socket,
        containerd_namespace: args.containerd_namespace.clone(),
        containerd_root,
        snapshotter: "overlayfs".into(),
        state_dir: data.join("runtime"),
        registry_config_dir: args.registry_config_dir.clone(),
        image_pull_progress_timeout: Duration::from_secs(300),
        run_dir: args.run_dir.clone(),
        cni_conf_dir,
        cni_bin_dir: args.cni_bin_dir.clone(),
        cni_timeout: Duration::from_secs(120),
        stream_address: "127.0.0.1:0".parse().expect("a literal address"),
        registry_connect_timeout: Duration::from_secs(10),
    };
    // The runtime (containerd, re-adoption) and the apiserver come up together.
    let (runtime, ready) = tokio::join!(
        crate::cli::runtime_args::start(&runtime_args),
        wait_ready(&admin, &mut apiserver)
    );
    ready?;
    let runtime = runtime?;
    tracing::info!(elapsed = ?started.elapsed(), "apiserver ready, runtime started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let cri = if args.cri_listen == "none" {
        None
    } else {
        let socket = crate::cri::socket::socket_path(&args.cri_listen);
        let rt: Arc<dyn RuntimeService> = runtime.runtime.clone();
        let im: Arc<dyn ImageService> = runtime.images.clone();
        let stop = shutdown();
        Some(tokio::spawn(async move {
            if let Err(err) = crate::cri::serve(&socket, rt, im, stop).await {
                tracing::warn!(socket = %socket.display(), error = %format!("{err:#}"), "not serving CRI (crictl will not reach this node)");
            }
        }))
    };

    let mut node = NodeConfig::defaults(name);
    node.root_dir = data.join("kubelet");
    node.cgroup_root = args.cgroup_root.clone();
    node.node_ips = args.node_ip.clone();
    node.kubelet_port = args.kubelet_port;
    node.cluster_dns = services::cluster_dns(dns_at);
    // The apiserver reaches the kubelet API with a client certificate of
    // its own CA (kubectl logs, exec, port-forward).
    node.server.client_ca_file = Some(apiserver_dir.join("pki/ca.crt"));
    if let Some(labels) = &args.node_labels {
        node.labels = labels.clone();
    }
    let agent = crate::node::Agent {
        config: Arc::new(node),
        client: node_client,
        runtime: runtime.runtime.clone(),
        images: runtime.images.clone(),
    };

    println!("export KUBECONFIG={}", kubeconfigs.admin_path.display());
    let report = tokio::spawn(report_ready(admin.clone(), name.to_string(), started));

    let work = async {
        tokio::try_join!(
            agent.run(shutdown()),
            scheduler::run(
                admin.clone(),
                scheduler::SchedulerConfig::default(),
                shutdown()
            ),
            manager::run(
                admin.clone(),
                manager::ManagerConfig::default(),
                manager::shutdown_on(shutdown())
            ),
            async {
                match args.proxy_mode.as_str() {
                    "none" => Ok(()),
                    _ => {
                        services::proxy(admin.clone(), name, pod_network.as_ref(), shutdown()).await
                    }
                }
            },
            async {
                match dns_at {
                    Some(at) => services::dns(admin.clone(), at, shutdown()).await,
                    None => Ok(()),
                }
            },
        )
        .map(|_| ())
    };
    tokio::pin!(work);
    let result = tokio::select! {
        _ = crate::cli::shutdown_signal() => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(Duration::from_secs(40), &mut work).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("the node agent did not stop within 40 s")),
            }
        }
        r = &mut apiserver => {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut work).await;
            match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the apiserver stopped")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the apiserver failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the apiserver task failed")),
            }
        }
        r = &mut work => {
            let _ = stop_tx.send(true);
            r.and_then(|()| Err(anyhow::anyhow!("the node agent stopped on its own")))
        }
    };
    report.abort();
    if let Some(cri) = cri {
        let _ = tokio::time::timeout(Duration::from_secs(5), cri).await;
    }
    apiserver.abort();
    let _ = apiserver.await;
    drop(runtime);
    if result.is_ok() {
        println!("deckhand up: stopped (pods keep running; `deckhand up` again adopts them)");
    }
    result
}

/// Polls /readyz until it answers ok, failing if the apiserver ends first.
async fn wait_ready(
    client: &kube::Client,
    apiserver: &mut tokio::task::JoinHandle<Result<(), crate::apiserver::ServeError>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if apiserver.is_finished() {
            return match apiserver.await {
                Ok(Ok(())) => Err(anyhow::anyhow!("the apiserver stopped while starting")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the apiserver failed to start")),
                Err(e) => Err(anyhow::Error::new(e).context("the apiserver task failed")),
            };
        }
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let answer = tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await;
        if let Ok(Ok(body)) = answer
            && body.trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the apiserver did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One line when the Node first reports Ready: what a user waits for.
async fn report_ready(client: kube::Client, name: String, started: Instant) {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    loop {
        if let Ok(Some(node)) = nodes.get_opt(&name).await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                println!(
                    "deckhand up: node {name} is Ready ({} ms after start)",
                    started.elapsed().as_millis()
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// ~/.kube/config of the user who ran `sudo` (else of this user).
fn merge_user_kubeconfig(admin: &str) -> anyhow::Result<()> {
    let sudo_user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "root")
        .and_then(|u| nix::unistd::User::from_name(&u).ok().flatten());
    let path = match &sudo_user {
        Some(u) => u.dir.join(".kube").join("config"),
        None => {
            kubeconfig::user_kubeconfig().context("HOME is not set: cannot find ~/.kube/config")?
        }
    };
    kubeconfig::merge_into(&path, admin)?;
    if let Some(u) = &sudo_user {
        for p in [path.parent().map(Path::to_path_buf), Some(path.clone())]
            .into_iter()
            .flatten()
        {
            let _ = nix::unistd::chown(&p, Some(u.uid), Some(u.gid));
        }
    }
    println!(
        "deckhand up: context `deckhand` merged into {} and made current",
        path.display()
    );
    Ok(())
}

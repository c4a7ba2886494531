//! The in-process runtime's flags and its start: shared by `deckhand cri`,
//! which serves it over gRPC, and `deckhand node`, which calls it directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::runtime::container::{ContainerManager, ContainerManagerConfig};
use crate::runtime::containerd::Containerd;
use crate::runtime::image::{ImageManager, ImageManagerConfig};
use crate::runtime::image_service::ImageRuntime;
use crate::runtime::sandbox::{SandboxManager, SandboxManagerConfig};
use crate::runtime::service::Runtime;
use crate::runtime::streaming::server::StreamingServer;

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// containerd's gRPC socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd: PathBuf,
    /// containerd namespace for images and containers (the one containerd's CRI plugin uses).
    #[arg(long, default_value = "k8s.io")]
    pub containerd_namespace: String,
    /// containerd's root directory (for reporting the image filesystem).
    #[arg(long, default_value = "/var/lib/containerd")]
    pub containerd_root: PathBuf,
    /// Snapshotter to unpack images with.
    #[arg(long, default_value = "overlayfs")]
    pub snapshotter: String,
    /// deckhand's own state.
    #[arg(long, default_value = "/var/lib/deckhand")]
    pub state_dir: PathBuf,
    /// Registry hosts configuration, in containerd's layout: DIR/<host>/hosts.toml.
    #[arg(long, default_value = "/etc/deckhand/certs.d")]
    pub registry_config_dir: PathBuf,
    /// Fail a pull that makes no progress for this long (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub image_pull_progress_timeout: Duration,
    /// Volatile runtime state: pinned namespaces, per-sandbox resolv.conf/hosts.
    #[arg(long, default_value = "/run/deckhand")]
    pub run_dir: PathBuf,
    /// CNI network configuration: the first file in lexical order is used.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugin binaries are (repeat or separate with ':').
    #[arg(long, default_value = "/usr/lib/cni", value_delimiter = ':')]
    pub cni_bin_dir: Vec<PathBuf>,
    /// How long one CNI plugin call (ADD, DEL) may take before it is
    /// killed and the sandbox's creation rolled back: the kubelet's own
    /// runtime request timeout.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub cni_timeout: Duration,
    /// The streaming server (exec, attach, port-forward URLs): `IP:PORT`;
    /// port 0 picks one at start.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub stream_address: std::net::SocketAddr,
    /// Give up connecting to a registry after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub registry_connect_timeout: Duration,
}

/// A started runtime: the CRI traits' in-process implementations, with the
/// streaming server serving until this is dropped.
pub struct StartedRuntime {
    pub runtime: Arc<Runtime>,
    pub images: Arc<ImageRuntime>,
    pub streaming_url: String,
    _stop_streaming: tokio::sync::oneshot::Sender<()>,
}

/// Connects to containerd, re-adopts what a previous run left running, and
/// starts the streaming server.
pub async fn start(args: &RuntimeArgs) -> anyhow::Result<StartedRuntime> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state dir {}", args.state_dir.display()))?;
    let containerd = Containerd::connect(&args.containerd, &args.containerd_namespace).await?;
    let images = Arc::new(ImageManager::new(
        containerd,
        ImageManagerConfig {
            snapshotter_root: args
                .containerd_root
                .join(format!("io.containerd.snapshotter.v1.{}", args.snapshotter)),
            snapshotter: args.snapshotter.clone(),
            registry_config_dir: args.registry_config_dir.clone(),
            connect_timeout: args.registry_connect_timeout,
            progress_timeout: args.image_pull_progress_timeout,
        },
    ));
    let log_driver = install_log_driver(&args.state_dir)?;
    let sandboxes = SandboxManager::new(SandboxManagerConfig {
        run_dir: args.run_dir.clone(),
        state_dir: args.state_dir.clone(),
        cni_conf_dir: args.cni_conf_dir.clone(),
        cni_bin_dirs: args.cni_bin_dir.clone(),
        cni_timeout: args.cni_timeout,
        // The running binary itself, even if the file was replaced since.
        infra_exe: "/proc/self/exe".into(),
    })
    .await;
    let containers = ContainerManager::new(
        ContainerManagerConfig {
            run_dir: args.run_dir.clone(),
            log_driver,
            snapshotter: args.snapshotter.clone(),
            seccomp_root: args.state_dir.join("seccomp"),
        },
        images.clone(),
        sandboxes.clone(),
    )
    .await?;
    let (streaming, listener) =
        StreamingServer::bind(args.stream_address, containers.clone(), sandboxes.clone())
            .await
            .with_context(|| format!("binding the streaming server on {}", args.stream_address))?;
    let streaming_url = streaming.base_url().to_string();
    tracing::info!(url = %streaming_url, "streaming server");
    let (stop_streaming, streaming_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(streaming.clone().serve(listener, async {
        let _ = streaming_stopped.await;
    }));
    Ok(StartedRuntime {
        runtime: Arc::new(Runtime::new(sandboxes, containers, streaming)),
        images: Arc::new(ImageRuntime::new(images)),
        streaming_url,
        _stop_streaming: stop_streaming,
    })
}

/// `<state_dir>/bin/deckhand-log-driver`, a link to the binary now running:
/// the shim runs it by that name (the driver dispatches on argv[0]). The
/// link is renewed at every start so it follows an upgraded binary.
fn install_log_driver(state_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").context("resolving /proc/self/exe")?;
    let dir = state_dir.join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join(crate::cli::log_driver::ARGV0);
    let tmp = dir.join(format!(".{}.tmp", crate::cli::log_driver::ARGV0));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp).with_context(|| format!("linking {}", tmp.display()))?;
    std::fs::rename(&tmp, &link).with_context(|| format!("installing {}", link.display()))?;
    Ok(link)
}

//! Shared test harness: a real `deckhand cri` process on a temporary socket,
//! against the real containerd and the local registry that `hack/test-env up`
//! starts. Each server gets its own containerd namespace, removed afterwards
//! with everything in it, even when the test fails ([`cleanup`]).

#![allow(dead_code)]

pub mod cleanup;
pub mod grpc;
pub mod node;
pub mod pod;
pub mod registry_proxy;
pub mod stock;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deckhand::cri::client::{CriClient, connect};
use deckhand::cri::v1 as cri;

/// Where the stock Kubernetes binaries are: `$DECKHAND_K8S_DIR`, else
/// `../shared/k8s` beside the project (as CI has them).
pub fn stock_k8s_dir() -> PathBuf {
    std::env::var_os("DECKHAND_K8S_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/k8s"))
}

/// Says plainly that a test did not run, and why. Written to the process's
/// stderr itself: the harness captures `println!`/`eprintln!` and never
/// shows a passing test's output, so a skip would pass unseen.
pub fn say_skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{test}: skipped: {why}");
}

pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// Fails loudly (never skips) when the environment is missing.
pub fn require_environment() {
    cleanup::keep_inherited_fds_from_children();
    assert!(
        Path::new(CONTAINERD_SOCKET).exists(),
        "containerd is not running at {CONTAINERD_SOCKET}: run `hack/test-env up` (as root)"
    );
    let ok =
        std::net::TcpStream::connect_timeout(&REGISTRY.parse().unwrap(), Duration::from_secs(2))
            .is_ok();
    assert!(
        ok,
        "no registry on {REGISTRY}: run `hack/test-env up` (as root)"
    );
}

/// The repository's `hack/certs.d` (mirrors of registry.k8s.io, gcr.io and
/// docker.io to the local registry), copied so a test may add hosts.
pub fn registry_config(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = cleanup::temp_dir();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let dest = dir.path().join(entry.file_name());
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::copy(entry.path().join("hosts.toml"), dest.join("hosts.toml")).unwrap();
    }
    for (host, toml) in extra {
        let dest = dir.path().join(host);
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join("hosts.toml"), toml).unwrap();
    }
    dir
}

pub struct CriOptions {
    /// containerd namespace; a fresh one per server unless set.
    pub namespace: Option<String>,
    pub extra_hosts: Vec<(String, String)>,
    pub progress_timeout: &'static str,
    /// `--cni-conf-dir`; deckhand's default unless set.
    pub cni_conf_dir: Option<PathBuf>,
    /// `--cni-bin-dir`; deckhand's default unless set.
    pub cni_bin_dir: Option<PathBuf>,
}

impl Default for CriOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            extra_hosts: vec![],
            progress_timeout: "30s",
            cni_conf_dir: None,
            cni_bin_dir: None,
        }
    }
}

/// A running `deckhand cri`, stopped and cleaned up on drop.
pub struct CriServer {
    child: Option<Child>,
    pub socket: PathBuf,
    pub namespace: String,
    own_namespace: bool,
    /// The command line, for [`CriServer::kill_and_restart`].
    args: Vec<std::ffi::OsString>,
    _dirs: Vec<tempfile::TempDir>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl CriServer {
    pub async fn start() -> (Self, CriClient) {
        Self::start_with(CriOptions::default()).await
    }

    pub async fn start_with(options: CriOptions) -> (Self, CriClient) {
        require_environment();
        cleanup::sweep_earlier_runs(None);
        let run = cleanup::temp_dir();
        let state = cleanup::temp_dir();
        let extra: Vec<(&str, &str)> = options
            .extra_hosts
            .iter()
            .map(|(h, t)| (h.as_str(), t.as_str()))
            .collect();
        let hosts = registry_config(&extra);
        let socket = run.path().join("cri.sock");
        let own_namespace = options.namespace.is_none();
        let namespace = options.namespace.unwrap_or_else(|| {
            cleanup::test_namespace(&COUNTER.fetch_add(1, Ordering::SeqCst).to_string())
        });
        let mut args: Vec<std::ffi::OsString> =
            vec!["cri".into(), "--listen".into(), socket.clone().into()];
        args.extend(["--state-dir".into(), state.path().into()]);
        args.extend(["--run-dir".into(), run.path().into()]);
        args.extend(["--registry-config-dir".into(), hosts.path().into()]);
        args.extend(["--containerd-namespace".into(), namespace.clone().into()]);
        args.extend([
            "--image-pull-progress-timeout".into(),
            options.progress_timeout.into(),
        ]);
        args.extend(["--log-level".into(), "deckhand=debug".into()]);
        if let Some(dir) = &options.cni_conf_dir {
            args.extend(["--cni-conf-dir".into(), dir.into()]);
        }
        if let Some(dir) = &options.cni_bin_dir {
            args.extend(["--cni-bin-dir".into(), dir.into()]);
        }
        let child = spawn_server(&args, run.path());
        let server = CriServer {
            child: Some(child),
            socket: socket.clone(),
            namespace,
            own_namespace,
            args,
            _dirs: vec![run, state, hosts],
        };
        let client = server.wait_ready().await;
        (server, client)
    }

    /// The run dir (`--run-dir`): sandbox pins live under it.
    pub fn run_dir(&self) -> &Path {
        self._dirs[0].path()
    }

    /// The state dir (`--state-dir`): sandbox records live under it.
    pub fn state_dir(&self) -> &Path {
        self._dirs[1].path()
    }

    /// kill -9 of the server, then the same command line again (same
    /// socket, state and run dirs): a crash and a restart.
    pub async fn kill_and_restart(&mut self) -> CriClient {
        self.kill9();
        self.restart().await
    }

    /// kill -9 of the server (and reaping it): a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`CriServer::kill9`], with the same
    /// command line (same socket, state and run dirs).
    pub async fn restart(&mut self) -> CriClient {
        assert!(self.child.is_none(), "server still running");
        // The dead server left its socket file behind, as a crash does.
        self.child = Some(spawn_server(&self.args, self._dirs[0].path()));
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> CriClient {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.socket.exists()
                && let Ok(mut client) = connect(&self.socket).await
                && client
                    .runtime
                    .version(cri::VersionRequest::default())
                    .await
                    .is_ok()
            {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "deckhand cri did not come up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dirs[0].path().join("deckhand.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    }

    /// `ctr -n <our namespace> ARGS`, stdout as a string.
    pub fn ctr(&self, args: &[&str]) -> String {
        ctr(&self.namespace, args)
    }
}

fn spawn_server(args: &[std::ffi::OsString], run: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join("deckhand.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting deckhand")
}

pub fn ctr(namespace: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["--address", CONTAINERD_SOCKET, "-n", namespace])
        .args(args)
        .output()
        .expect("running ctr");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for CriServer {
    /// Teardown, also when the test panicked: the server removes what it
    /// still runs (so CNI DEL releases the pods' IPs, ports and veths); then
    /// the server goes, and whatever it could not remove is taken by force:
    /// the namespace's tasks (and so shims and log drivers), containers and
    /// snapshots, the mounts (namespace pins) under its dirs.
    fn drop(&mut self) {
        // The shims, while their command lines still name the namespace.
        let shims = match self.own_namespace {
            true => cleanup::processes_mentioning(&self.namespace),
            false => vec![],
        };
        if self.child.is_some()
            && let Err(e) = remove_all_pods(&self.socket)
        {
            eprintln!("cleanup: the server did not remove its pods: {e}");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.own_namespace {
            remove_namespace(&self.namespace);
            let left = cleanup::wait_gone(&shims);
            if !left.is_empty() {
                cleanup::leftover(&format!("shims left: {left:?}"));
            }
            cleanup::wait_for_shim_zombies();
        }
        for dir in &self._dirs {
            cleanup::kill_processes_mentioning(&dir.path().to_string_lossy());
            cleanup::unmount_under(dir.path());
            let mounts = cleanup::mounts_under(dir.path());
            if !mounts.is_empty() {
                cleanup::leftover(&format!("mounts left: {mounts:?}"));
            }
        }
    }
}

/// Stops and removes every sandbox and container the server at `socket`
/// has, within a minute. Runs on a thread of its own: `Drop` may be
/// called inside the test's runtime, which cannot be blocked on.
fn remove_all_pods(socket: &Path) -> Result<(), String> {
    let socket = socket.to_path_buf();
    let work = move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let mut client = connect(&socket).await.map_err(|e| e.to_string())?;
                let sandboxes = client
                    .runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .items;
                for sandbox in sandboxes {
                    let id = sandbox.id;
                    client
                        .runtime
                        .stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await
                        .map_err(|e| format!("stopping sandbox {id}: {e}"))?;
                    client
                        .runtime
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await
                        .map_err(|e| format!("removing sandbox {id}: {e}"))?;
                }
                let containers = client
                    .runtime
                    .list_containers(cri::ListContainersRequest::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .containers;
                for container in containers {
                    client
                        .runtime
                        .remove_container(cri::RemoveContainerRequest {
                            container_id: container.id.clone(),
                        })
                        .await
                        .map_err(|e| format!("removing container {}: {e}", container.id))?;
                }
                Ok(())
            })
            .await
            .map_err(|_| "timed out after 60s".to_string())?
        })
    };
    std::thread::spawn(work)
        .join()
        .unwrap_or_else(|_| Err("the cleanup thread panicked".into()))
}

/// Removes the namespace and everything in it (see
/// [`cleanup::purge_namespace`]) and waits for its shims to go; a namespace
/// or a shim that stays fails the test.
pub fn remove_namespace(namespace: &str) {
    // The shims, found while their command lines still name the namespace.
    let mut shims = cleanup::processes_mentioning(namespace);
    if let Err(e) = cleanup::purge_namespace(namespace) {
        cleanup::leftover(&format!(
            "containerd namespace {namespace} not removed: {e}"
        ));
    }
    shims.extend(cleanup::processes_mentioning(namespace));
    let left = cleanup::wait_gone(&shims);
    if !left.is_empty() {
        cleanup::leftover(&format!(
            "processes of namespace {namespace} left: {left:?}"
        ));
    }
}

pub fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

pub async fn pull(client: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    pull_with_auth(client, image, None).await
}

pub async fn pull_with_auth(
    client: &mut CriClient,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    client
        .images
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

pub async fn status(client: &mut CriClient, image: &str) -> Option<cri::Image> {
    client
        .images
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await
        .expect("image status")
        .into_inner()
        .image
}

pub async fn list(client: &mut CriClient) -> Vec<cri::Image> {
    client
        .images
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list images")
        .into_inner()
        .images
}

pub async fn remove(client: &mut CriClient, image: &str) -> Result<(), tonic::Status> {
    client
        .images
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(image),
        })
        .await
        .map(|_| ())
}

/// The manifest digest the local registry serves for `repo:tag`.
pub async fn registry_digest(repository: &str, tag: &str) -> String {
    let response = reqwest::Client::new()
        .head(format!("http://{REGISTRY}/v2/{repository}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get("Docker-Content-Digest")
        .expect("registry digest header")
        .to_str()
        .unwrap()
        .to_string()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

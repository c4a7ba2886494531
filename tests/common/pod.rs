//! One test's pod environment for the containerd-backed CRI tests: a CNI
//! conflist (bridge + host-local + portmap) with a bridge and subnet of its
//! own, a cgroup parent and a pod log directory, all removed on drop (even
//! when the test fails: the processes left in the cgroups are killed, the
//! bridge goes with its veths); and the small CRI calls those tests repeat.
//!
//! Test files run in parallel with each other and so do the tests inside a
//! file: each file takes its own bridge prefix and subnet second octet, each
//! test its own index, so no two tests share a bridge, subnet or cgroup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

use super::{BUSYBOX, CriOptions, CriServer};

pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// One test's network, cgroup parent and pod log directory.
pub struct TestPod {
    pub conf: tempfile::TempDir,
    /// host-local's data dir (the IPs it holds).
    pub ipam: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    pub bridge: String,
    /// `10.<octet>.<index>.`: the pod IPs start with it.
    pub subnet_prefix: String,
    pub cgroup_parent: String,
}

impl TestPod {
    /// `prefix` (at most 5 characters, so the bridge name stays under
    /// IFNAMSIZ) and `octet` are the test file's own; `index` the test's
    /// within the file.
    pub fn new(prefix: &str, octet: u8, index: u8) -> Self {
        super::cleanup::sweep_earlier_runs(Some(prefix));
        let conf = super::cleanup::temp_dir();
        let ipam = super::cleanup::temp_dir();
        let pid = std::process::id();
        let bridge = format!("{prefix}{}x{index}", pid % 10000);
        let subnet_prefix = format!("10.{octet}.{index}.");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("{prefix}{index}"),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    // A pod reaches its own Service (the proxy masquerades
                    // that hairpin).
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{subnet_prefix}0/24")}]],
                        // ClusterIPs are off the subnet: via the gateway.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": ipam.path(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(conf.path().join("10-test.conflist"), conflist.to_string()).unwrap();
        TestPod {
            conf,
            ipam,
            logs: super::cleanup::temp_dir(),
            bridge,
            subnet_prefix,
            cgroup_parent: format!("/deckhand-{prefix}-test-{pid}-{index}"),
        }
    }

    /// Server options that use this pod's CNI config.
    pub fn options(&self) -> CriOptions {
        CriOptions {
            cni_conf_dir: Some(self.conf.path().to_path_buf()),
            cni_bin_dir: Some(CNI_BIN_DIR.into()),
            ..Default::default()
        }
    }

    /// A `deckhand cri` on this pod's network, with busybox pulled.
    pub async fn server(&self) -> (CriServer, CriClient) {
        let (server, mut client) = CriServer::start_with(self.options()).await;
        super::pull(&mut client, BUSYBOX)
            .await
            .expect("pull busybox");
        (server, client)
    }

    /// A sandbox config named `name` (label `app=<name>`) under this pod's
    /// cgroup parent and log directory.
    pub fn sandbox_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.logs.path().to_string_lossy().into_owned(),
            labels: HashMap::from([("app".into(), name.into())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_sandbox(&self, client: &mut CriClient, name: &str) -> String {
        client
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(self.sandbox_config(name)),
                runtime_handler: String::new(),
            })
            .await
            .expect("run sandbox")
            .into_inner()
            .pod_sandbox_id
    }

    /// The IPs host-local still holds (its files other than lock and
    /// last_reserved_ip.*).
    pub fn reserved_ips(&self) -> Vec<String> {
        let mut out = vec![];
        for net in std::fs::read_dir(self.ipam.path()).unwrap().flatten() {
            for f in std::fs::read_dir(net.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name != "lock" && !name.starts_with("last_reserved_ip") {
                    out.push(name);
                }
            }
        }
        out
    }

    /// A v1 controller's (or the unified tree's) directory for a cgroup
    /// under this pod's parent (`rest` empty: the parent itself).
    pub fn cgroup_dir(&self, controller: &str, rest: &str) -> PathBuf {
        let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup").join(controller)
        };
        root.join(self.cgroup_parent.trim_start_matches('/'))
            .join(rest)
    }
}

impl Drop for TestPod {
    /// Runs after the server's own teardown (the server is made from the
    /// pod, so it is dropped first): what is left in the pod's cgroups
    /// (an infra process, a container's) is killed, then the cgroups, the
    /// bridge and its veths go. Anything that stays fails the test.
    fn drop(&mut self) {
        use super::cleanup;
        // Log drivers name their file under our log dir.
        cleanup::kill_processes_mentioning(&self.logs.path().to_string_lossy());
        if let Err(e) = cleanup::remove_cgroup_tree(&self.cgroup_parent) {
            cleanup::leftover(&format!("pod {}: {e}", self.cgroup_parent));
        }
        cleanup::remove_bridge(&self.bridge);
        if cleanup::link_exists(&self.bridge) {
            cleanup::leftover(&format!("bridge {} not removed", self.bridge));
        }
    }
}

/// Creates a container in `sandbox_id` (whose config was
/// `pod.sandbox_config(pod_name)`).
pub async fn create(
    client: &mut CriClient,
    sandbox_id: &str,
    config: cri::ContainerConfig,
    pod: &TestPod,
    pod_name: &str,
) -> Result<String, tonic::Status> {
    client
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(pod.sandbox_config(pod_name)),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

pub async fn start(client: &mut CriClient, id: &str) {
    client
        .runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .expect("start container");
}

pub async fn stop(client: &mut CriClient, id: &str, timeout: i64) {
    client
        .runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        })
        .await
        .expect("stop container");
}

pub async fn remove(client: &mut CriClient, id: &str) {
    client
        .runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .expect("remove container");
}

/// Stops and removes a sandbox (and so its containers).
pub async fn remove_sandbox(client: &mut CriClient, id: &str) {
    client
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .expect("stop sandbox");
    client
        .runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .expect("remove sandbox");
}

/// A busybox container `name` running `sh -c script`, logging to
/// `<name>/0.log` in the pod's log directory.
pub fn busybox_container(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: super::image_spec(BUSYBOX),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// The server's containerd namespace holds no containers, tasks or active
/// snapshots.
pub fn assert_no_containerd_leftovers(server: &CriServer) {
    assert_eq!(
        server.ctr(&["containers", "ls", "-q"]).trim(),
        "",
        "containers left"
    );
    assert_eq!(server.ctr(&["tasks", "ls", "-q"]).trim(), "", "tasks left");
    let snapshots = server.ctr(&["snapshots", "ls"]);
    assert!(
        !snapshots.lines().any(|l| l.contains("Active")),
        "active snapshots left:\n{snapshots}"
    );
}

/// The child cgroups (subdirectories) of `dir`; none when it is gone.
pub fn child_cgroups(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Polls the container's status until it has exited, or fails after 60 s.
pub async fn wait_exited(client: &mut CriClient, id: &str) -> cri::ContainerStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = client
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .expect("container status")
            .into_inner()
            .status
            .expect("a status");
        if s.state == cri::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container {id} did not exit: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

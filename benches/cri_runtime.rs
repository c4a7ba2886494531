//! Pod and container lifecycle latency: deckhand's CRI RuntimeService against
//! containerd's own CRI plugin on the same containerd, in the same run.
//!
//!   hack/bench cri [--samples N] [--parallel N]   (needs root and `hack/test-env up`)
//!
//! Each sample runs a pod sandbox, creates, starts, stops and removes one
//! container in it, then stops and removes the sandbox, timing every call.
//! Samples alternate between the two runtimes. Both use the same CNI chain
//! (bridge + host-local + portmap) on bridges and subnets of their own, and
//! the same container image (pause, which exits on SIGTERM, so a stop measures
//! the runtime and not a grace period). Then N pods with one container each
//! are started at once on each runtime and the wall time is taken.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Stats, ms};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

const NAMESPACE: &str = "deckhand-bench-runtime";
const IMAGE: &str = "registry.k8s.io/pause:3.10";
const CGROUP_PARENT: &str = "/deckhand-bench";
/// containerd's CRI plugin reads its CNI config from here; the bench adds a
/// conflist for its run and takes it away afterwards.
const CNI: common::PeerCni = common::PeerCni {
    label: "bench",
    ours: ("dh-benchd0", "10.91.0.0/16"),
    containerd: ("dh-benchc0", "10.92.0.0/16"),
    containerd_conf: "/etc/cni/net.d/10-deckhand-bench.conflist",
};

const OPERATIONS: [&str; 8] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "sandbox+container end to end",
];

struct Runtime {
    name: &'static str,
    client: CriClient,
    logs: PathBuf,
}

impl Runtime {
    fn sandbox_config(&self, name: &str) -> cri::PodSandboxConfig {
        let uid = uuid::Uuid::new_v4().to_string();
        // The kubelet makes the pod's log dir before it runs the sandbox.
        let logs = self.logs.join(&uid);
        std::fs::create_dir_all(&logs).unwrap();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "bench".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.to_string_lossy().into_owned(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{CGROUP_PARENT}/pod{uid}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            log_path: "app/0.log".into(),
            ..Default::default()
        }
    }

    /// One pod's whole life; the eight timings in OPERATIONS order.
    async fn lifecycle(&mut self, name: &str) -> [Duration; 8] {
        let sandbox_config = self.sandbox_config(name);
        let c = &mut self.client.runtime;
        let t = Instant::now();
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: run sandbox: {e}", self.name))
            .into_inner()
            .pod_sandbox_id;
        let run = t.elapsed();
        let t = Instant::now();
        let container = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(Self::container_config()),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: create container: {e}", self.name))
            .into_inner()
            .container_id;
        let create = t.elapsed();
        let t = Instant::now();
        c.start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{}: start container: {e}", self.name));
        let start = t.elapsed();
        let t = Instant::now();
        c.stop_container(cri::StopContainerRequest {
            container_id: container.clone(),
            timeout: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{}: stop container: {e}", self.name));
        let stop = t.elapsed();
        let t = Instant::now();
        c.remove_container(cri::RemoveContainerRequest {
            container_id: container,
        })
        .await
        .unwrap_or_else(|e| panic!("{}: remove container: {e}", self.name));
        let remove = t.elapsed();
        let t = Instant::now();
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{}: stop sandbox: {e}", self.name));
        let stop_sandbox = t.elapsed();
        let t = Instant::now();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap_or_else(|e| panic!("{}: remove sandbox: {e}", self.name));
        let remove_sandbox = t.elapsed();
        [
            run,
            create,
            start,
            stop,
            remove,
            stop_sandbox,
            remove_sandbox,
            run + create + start,
        ]
    }

    /// `n` pods with one running container each, all started at once; the
    /// wall time until the last container runs. The pods are removed after.
    async fn parallel(&self, n: usize) -> Duration {
        let t = Instant::now();
        let pods = futures::future::join_all((0..n).map(|i| {
            let mut c = self.client.runtime.clone();
            let config = self.sandbox_config(&format!("par-{i}"));
            async move {
                let sandbox = c
                    .run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(config.clone()),
                        runtime_handler: String::new(),
                    })
                    .await?
                    .into_inner()
                    .pod_sandbox_id;
                let container = c
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: sandbox.clone(),
                        config: Some(Self::container_config()),
                        sandbox_config: Some(config),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                c.start_container(cri::StartContainerRequest {
                    container_id: container,
                })
                .await?;
                Ok::<_, tonic::Status>(sandbox)
            }
        }))
        .await;
        let elapsed = t.elapsed();
        for pod in &pods {
            let Ok(id) = pod else { continue };
            let mut c = self.client.runtime.clone();
            let _ = c
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = c
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
        }
        for pod in pods {
            if let Err(e) = pod {
                panic!("{}: a parallel pod failed: {e}", self.name);
            }
        }
        elapsed
    }
}

async fn pull(client: &mut CriClient) {
    client
        .images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull the bench image");
}

/// The bench's pod cgroups (every controller hierarchy, v1 and v2).
fn remove_cgroups() {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = roots.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let parent = root.join(CGROUP_PARENT.trim_start_matches('/'));
        if let Ok(pods) = std::fs::read_dir(&parent) {
            for pod in pods.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(pod.path());
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "cri") {
        eprintln!("usage: cri_runtime cri [--samples N] [--parallel N]");
        return;
    }
    let samples: usize = common::arg("--samples", 50);
    let parallel: usize = common::arg("--parallel", 20);
    let work = tempfile::tempdir().unwrap();
    // Declared before the server so that it runs after deckhand is gone,
    // on a panic too.
    let _cleanup = Cleanup;

    let cni_flag = CNI.write(work.path());
    let (_server, deckhand) =
        common::start_deckhand(NAMESPACE, &["--cni-conf-dir", &cni_flag]).await;
    let mut ours = Runtime {
        name: "deckhand",
        client: deckhand,
        logs: work.path().join("logs-deckhand"),
    };
    let mut theirs = Runtime {
        name: "containerd",
        client: common::containerd_cri().await,
        logs: work.path().join("logs-containerd"),
    };
    pull(&mut ours.client).await;
    pull(&mut theirs.client).await;
    // containerd re-reads its CNI dir on a file event; wait until it says so.
    for _ in 0..100 {
        let status = theirs
            .client
            .runtime
            .status(cri::StatusRequest::default())
            .await;
        let ready = status
            .ok()
            .and_then(|s| s.into_inner().status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "NetworkReady" && c.status)
            });
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Warm-up: containerd pulls its pause image on its first sandbox.
    ours.lifecycle("warmup").await;
    theirs.lifecycle("warmup").await;
    let (mut ours_samples, mut theirs_samples) = (vec![], vec![]);
    for i in 0..samples {
        ours_samples.push(ours.lifecycle(&format!("pod-{i}")).await);
        theirs_samples.push(theirs.lifecycle(&format!("pod-{i}")).await);
    }
    let ours_parallel = ours.parallel(parallel).await;
    let theirs_parallel = theirs.parallel(parallel).await;

    println!("pod lifecycle over {samples} samples each (pause container, bridge CNI)");
    println!(
        "{:<30} {:>14} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "operation",
        "deckhand p50",
        "deckhand p99",
        "containerd p50",
        "containerd p99",
        "ratio p50",
        "ratio p99"
    );
    for (i, op) in OPERATIONS.iter().enumerate() {
        let o = Stats::of(ours_samples.iter().map(|s| s[i]).collect());
        let t = Stats::of(theirs_samples.iter().map(|s| s[i]).collect());
        println!(
            "{:<30} {:>11.1} ms {:>11.1} ms {:>11.1} ms {:>11.1} ms {:>10.2} {:>10.2}",
            op,
            ms(o.p50),
            ms(o.p99),
            ms(t.p50),
            ms(t.p99),
            ms(o.p50) / ms(t.p50),
            ms(o.p99) / ms(t.p99)
        );
    }
    println!(
        "{parallel} pods with one container each, started at once: deckhand {:.0} ms, containerd {:.0} ms, ratio {:.2}",
        ms(ours_parallel),
        ms(theirs_parallel),
        ms(ours_parallel) / ms(theirs_parallel)
    );

    // The image goes with deckhand's namespace (containerd's stays: its CRI
    // plugin's namespace is shared).
    let _ = ours
        .client
        .images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
        })
        .await;
}

/// Takes away what the bench added to the host: containerd's CNI conflist,
/// the two bridges, the pod cgroups, the containerd namespace.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        CNI.remove();
        remove_cgroups();
        common::remove_namespace(NAMESPACE);
    }
}

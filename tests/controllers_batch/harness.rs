//! A stock kube-apiserver without kcm, a kube client on it, namespaces
//! ready for pods (the default ServiceAccount kcm would make), the
//! controllers in this process, and the kubelet's part played by hand.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common;

/// Generous: the machine is shared and slow.
pub const WAIT: Duration = Duration::from_secs(120);

pub struct Plane {
    dir: tempfile::TempDir,
    k8s: PathBuf,
}

impl Plane {
    /// None (after saying why) when the stock binaries are not there.
    pub fn start(test: &str) -> Option<Self> {
        // The controllers' logs, shown when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("deckhand=debug")
            .with_test_writer()
            .try_init();
        if let Err(why) = common::stock::k8s_bin() {
            common::say_skipped(test, &why);
            return None;
        }
        let k8s = common::stock_k8s_dir();
        let dir = tempfile::tempdir().unwrap();
        let port = common::stock::free_ports(5);
        let out = Command::new(k8s.join("start-apiserver"))
            .arg(dir.path())
            .arg(port.to_string())
            .arg("batch-node")
            .env("WITH_KCM", "0")
            .env("ETCD_UNSAFE_NO_FSYNC", "1")
            .env("KUBECTL", common::stock::KUBECTL)
            .output()
            .expect("running start-apiserver");
        let plane = Plane { dir, k8s };
        assert!(
            out.status.success(),
            "start-apiserver failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            plane.log()
        );
        Some(plane)
    }

    pub fn log(&self) -> String {
        common::stock::tail(&self.dir.path().join("logs/kube-apiserver.log"), 30)
    }

    /// The admin kubeconfig, for the real kubectl.
    // Not every test binary that includes this harness runs kubectl.
    #[allow(dead_code)]
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    pub async fn client(&self) -> kube::Client {
        let path = self.dir.path().join("admin.kubeconfig");
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = Command::new(self.k8s.join("stop-apiserver"))
            .arg(self.dir.path())
            .arg("--purge")
            .output();
    }
}

/// A namespace with the default ServiceAccount (kcm is not there to make it).
pub async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), name)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

/// Polls `f` until it gives a value; panics with `what` after `WAIT`.
pub async fn wait<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pods of `ns` matching `selector`, oldest first.
pub async fn pods(client: &kube::Client, ns: &str, selector: &str) -> Vec<Pod> {
    let mut list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items;
    list.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    list
}

pub fn active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Plays the kubelet: the pod's container `c` exited with `code`.
pub async fn finish(client: &kube::Client, ns: &str, name: &str, code: i32) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let patch = json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason,
                "startedAt": now, "finishedAt": now}},
        }],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Plays the kubelet: the pod runs and is Ready.
pub async fn make_ready(client: &kube::Client, ns: &str, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A controller of this process; aborted on drop.
pub struct Running(tokio::task::JoinHandle<()>);

impl Running {
    pub fn spawn(f: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Self {
        Self(tokio::spawn(async move {
            if let Err(e) = f.await {
                panic!("controller failed: {e:#}");
            }
        }))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn never() -> impl Future<Output = ()> + Send + 'static {
    futures::future::pending()
}

pub fn container() -> serde_json::Value {
    json!({"name": "c", "image": "registry.k8s.io/e2e-test-images/busybox:1.29-2"})
}

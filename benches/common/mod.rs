//! What the CRI benchmarks share: sample statistics and a `deckhand cri`
//! child process next to containerd's CRI plugin, and their CNI networks.

#![allow(dead_code)] // each bench uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use deckhand::cri::client::{CriClient, connect};
use deckhand::cri::v1 as cri;

pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let rank = |p: f64| {
            let r = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
            samples[r.min(samples.len() - 1)]
        };
        Stats {
            p50: rank(50.0),
            p99: rank(99.0),
            mean: samples.iter().sum::<Duration>() / samples.len() as u32,
        }
    }
}

/// `--name N` from the bench's arguments, or the default.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The release binary unless DECKHAND_BIN names another.
pub fn deckhand_binary() -> PathBuf {
    std::env::var("DECKHAND_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/deckhand")
        })
}

/// A `deckhand cri` child, killed (and its temp dirs removed) on drop.
pub struct Server {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `deckhand cri` with `extra` flags and waits until it answers.
pub async fn start_deckhand(namespace: &str, extra: &[&str]) -> (Server, CriClient) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let child = std::process::Command::new(deckhand_binary())
        .args(["cri", "--listen"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["--containerd-namespace", namespace, "--log-level", "warn"])
        .args(extra)
        .spawn()
        .expect("start deckhand");
    let server = Server { child, dir };
    for _ in 0..200 {
        if let Ok(mut client) = connect(&socket).await
            && client
                .runtime
                .version(cri::VersionRequest::default())
                .await
                .is_ok()
        {
            return (server, client);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deckhand cri did not start");
}

pub async fn containerd_cri() -> CriClient {
    connect(Path::new(CONTAINERD_SOCKET))
        .await
        .expect("containerd's CRI plugin")
}

/// Removes a containerd namespace the bench used (after its objects are gone).
pub fn remove_namespace(namespace: &str) {
    let _ = std::process::Command::new("ctr")
        .args(["namespaces", "rm", namespace])
        .status();
}

/// The CNI set-up of a deckhand-vs-containerd run: the same chain (bridge +
/// host-local + portmap) for both, each on a bridge and subnet of its own.
pub struct PeerCni {
    /// "bench", "soak": names the conflists and their networks.
    pub label: &'static str,
    /// deckhand's bridge and subnet.
    pub ours: (&'static str, &'static str),
    /// containerd's bridge and subnet.
    pub containerd: (&'static str, &'static str),
    /// Where containerd's CRI plugin reads its conflist.
    pub containerd_conf: &'static str,
}

impl PeerCni {
    fn conflist(&self, bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": format!("deckhand-{}-{bridge}", self.label),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string()
    }

    /// Writes both conflists (deckhand's under `work/cni`, host-local state
    /// under `work`) and returns deckhand's `--cni-conf-dir`.
    pub fn write(&self, work: &Path) -> String {
        let ours_cni = work.join("cni");
        std::fs::create_dir_all(&ours_cni).unwrap();
        std::fs::write(
            ours_cni.join(format!("10-{}.conflist", self.label)),
            self.conflist(self.ours.0, self.ours.1, &work.join("ipam-deckhand")),
        )
        .unwrap();
        std::fs::create_dir_all("/etc/cni/net.d").unwrap();
        std::fs::write(
            self.containerd_conf,
            self.conflist(
                self.containerd.0,
                self.containerd.1,
                &work.join("ipam-containerd"),
            ),
        )
        .unwrap();
        ours_cni.to_string_lossy().into_owned()
    }

    /// Takes away containerd's conflist and both bridges (errors ignored: a
    /// clean-up on drop, possibly after a panic).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(self.containerd_conf);
        for bridge in [self.ours.0, self.containerd.0] {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge])
                .status();
        }
    }
}

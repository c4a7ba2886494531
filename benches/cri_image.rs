//! Image pull latency: deckhand's CRI ImageService against containerd's own
//! CRI plugin on the same containerd, same registry, same image, same run.
//!
//!   hack/bench pull            (needs root and `hack/test-env up`)
//!
//! Each sample removes the image (synchronously collecting its content and
//! snapshots) and pulls it again, so every pull is cold: fetch, verify,
//! write, unpack. Samples alternate between the two runtimes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deckhand::cri::client::{CriClient, connect};
use deckhand::cri::v1 as cri;

const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
const IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const NAMESPACE: &str = "deckhand-bench";

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn remove(client: &mut CriClient, image: &str) {
    client
        .images
        .remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .expect("remove image");
}

async fn timed_pull(client: &mut CriClient, image: &str) -> Duration {
    remove(client, image).await;
    let started = Instant::now();
    client
        .images
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .expect("pull image");
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
        mean,
    }
}

struct Server {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_deckhand(binary: &Path) -> (Server, CriClient) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let child = std::process::Command::new(binary)
        .args(["cri", "--listen"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--containerd-namespace", NAMESPACE, "--log-level", "warn"])
        .spawn()
        .expect("start deckhand");
    let server = Server { child, _dir: dir };
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "pull") {
        eprintln!("usage: cri_image pull [--samples N]");
        return;
    }
    let samples: usize = args
        .iter()
        .position(|a| a == "--samples")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let binary = std::env::var("DECKHAND_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/deckhand")
        });
    let (_server, mut deckhand) = start_deckhand(&binary).await;
    let mut containerd = connect(Path::new(CONTAINERD_SOCKET))
        .await
        .expect("containerd CRI");

    // One warm-up each: connections, DNS-free mirror config, caches.
    timed_pull(&mut deckhand, IMAGE).await;
    timed_pull(&mut containerd, IMAGE).await;
    let (mut ours, mut theirs) = (vec![], vec![]);
    for _ in 0..samples {
        ours.push(timed_pull(&mut deckhand, IMAGE).await);
        theirs.push(timed_pull(&mut containerd, IMAGE).await);
    }
    remove(&mut deckhand, IMAGE).await;
    remove(&mut containerd, IMAGE).await;

    let (o, t) = (stats(ours), stats(theirs));
    println!("cold pull of {IMAGE} from the local registry, {samples} samples each");
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "runtime", "p50 ms", "p99 ms", "mean ms"
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>10.1}",
        "deckhand cri",
        ms(o.p50),
        ms(o.p99),
        ms(o.mean)
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>10.1}",
        "containerd CRI plugin",
        ms(t.p50),
        ms(t.p99),
        ms(t.mean)
    );
    println!(
        "ratio deckhand/containerd:   p50 {:.2}  p99 {:.2}  mean {:.2}",
        ms(o.p50) / ms(t.p50),
        ms(o.p99) / ms(t.p99),
        ms(o.mean) / ms(t.mean)
    );
    let _ = std::process::Command::new("ctr")
        .args(["namespaces", "rm", NAMESPACE])
        .status();
}

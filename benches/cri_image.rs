//! Image pull latency: deckhand's CRI ImageService against containerd's own
//! CRI plugin on the same containerd, same registry, same image, same run.
//!
//!   hack/bench pull            (needs root and `hack/test-env up`)
//!
//! Each sample removes the image (synchronously collecting its content and
//! snapshots) and pulls it again, so every pull is cold: fetch, verify,
//! write, unpack. Samples alternate between the two runtimes.

mod common;

use std::time::{Duration, Instant};

use common::{Stats, ms};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "pull") {
        eprintln!("usage: cri_image pull [--samples N]");
        return;
    }
    let samples: usize = common::arg("--samples", 20);
    let (_server, mut deckhand) = common::start_deckhand(NAMESPACE, &[]).await;
    let mut containerd = common::containerd_cri().await;

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

    let (o, t) = (Stats::of(ours), Stats::of(theirs));
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
    common::remove_namespace(NAMESPACE);
}

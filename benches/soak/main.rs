//! The bad-input soak (issue 17): pod cycles with random bad fields mixed in,
//! against `deckhand cri` and against containerd's own CRI plugin in the same
//! run, then a count of everything either left behind.
//!
//!   hack/bench soak [--cycles N] [--bad-percent P] [--only deckhand|containerd]
//!
//! One cycle: RunPodSandbox, CreateContainer (busybox `sleep`), StartContainer,
//! ExecSync (`echo`), StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox. In P% of cycles (default 30) one call also gets a bad
//! twin first: an empty, short or unknown id, an escaping log path or log
//! directory, a DNS server or search with a newline, a hostname with a tab,
//! an env name with NUL, a 1 MiB value, device permissions `xyzzy`, an exec
//! whose client gives up after 1 ms. A bad call that is accepted is counted
//! (and what it made is removed). After the cycles and a short settle, leaks
//! are counted against a baseline taken after a warm-up cycle: network
//! namespaces (nsfs mounts and /run/netns), cgroups below the pods' own (the
//! pod cgroup is the kubelet's to remove, so not counted), host
//! mounts, veths on the runtime's bridge, the runtime's fds, processes in the
//! pod cgroups and shims of the bench's pods, and containerd containers,
//! tasks, snapshots and leases (deckhand's own namespace; for the CRI plugin,
//! in k8s.io, those named by the bench's ids). All must be zero.

mod bad;
#[path = "../common/mod.rs"]
mod common;
mod leaks;

use std::collections::HashSet;

use bad::{BADS, Bad};
use leaks::{COUNT_NAMES, cgroup_dirs, containerd_pid, count};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

const NAMESPACE: &str = "deckhand-bench-soak";
const IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const CNI: common::PeerCni = common::PeerCni {
    label: "soak",
    ours: ("dh-soakd0", "10.93.0.0/16"),
    containerd: ("dh-soakc0", "10.94.0.0/16"),
    containerd_conf: "/etc/cni/net.d/10-deckhand-soak.conflist",
};
const CALL: Duration = Duration::from_secs(60);

/// A small xorshift: the soak is reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Runtime {
    name: &'static str,
    client: CriClient,
    logs: PathBuf,
    cgroup_parent: String,
    bridge: &'static str,
    /// The daemon whose fds are counted.
    pid: u32,
    /// containerd namespace of its objects, and whether it is shared (then
    /// only objects named by our ids count).
    namespace: &'static str,
    shared: bool,
    ids: HashSet<String>,
    accepted_bad: Vec<String>,
    refused_bad: usize,
    failures: Vec<String>,
}

async fn timed<T>(
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL, f).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("bench: no answer in 60 s")),
    }
}

impl Runtime {
    fn sandbox_config(&self, name: &str) -> cri::PodSandboxConfig {
        let uid = uuid::Uuid::new_v4().to_string();
        let logs = self.logs.join(&uid);
        std::fs::create_dir_all(&logs).unwrap();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "soak".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.to_string_lossy().into_owned(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["soak.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{uid}", self.cgroup_parent),
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
            command: vec!["sleep".into(), "3600".into()],
            log_path: "app/0.log".into(),
            ..Default::default()
        }
    }

    /// One cycle; `bad` picks the bad twin, if any.
    async fn cycle(&mut self, i: usize, bad: Option<Bad>) -> Result<(), String> {
        let name = format!("soak-{i}");
        let config = self.sandbox_config(&name);
        if let Some(
            what @ (Bad::SandboxLogDirEscape
            | Bad::SandboxRelativeLogDir
            | Bad::DnsServerNewline
            | Bad::DnsSearchNewline
            | Bad::HostnameTab
            | Bad::SandboxNameNul
            | Bad::HugeHostname),
        ) = bad
        {
            let mut bad_config = config.clone();
            bad_config.metadata.as_mut().unwrap().attempt = 1;
            self.bad_sandbox(what, bad_config).await;
        }
        let mut c = self.client.runtime.clone();
        let e = |step: &str| {
            let step = step.to_string();
            move |err: tonic::Status| format!("{step}: {err}")
        };
        let sandbox = timed(c.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
        .await
        .map_err(e("RunPodSandbox"))?
        .pod_sandbox_id;
        self.ids.insert(sandbox.clone());
        let result = self.in_sandbox(&sandbox, &config, bad).await;
        let stop = timed(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }))
        .await
        .map_err(e("StopPodSandbox"));
        let remove = timed(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        }))
        .await
        .map_err(e("RemovePodSandbox"));
        result.and(stop.map(|_| ())).and(remove.map(|_| ()))
    }

    async fn in_sandbox(
        &mut self,
        sandbox: &str,
        config: &cri::PodSandboxConfig,
        bad: Option<Bad>,
    ) -> Result<(), String> {
        if let Some(
            what @ (Bad::CreateEmptySandboxId
            | Bad::CreateShortSandboxId
            | Bad::LogPathDotDot
            | Bad::LogPathAbsolute
            | Bad::EnvNameNul
            | Bad::HugeEnvValue
            | Bad::DevicePermissions),
        ) = bad
        {
            self.bad_container(what, sandbox, config).await;
        }
        let mut c = self.client.runtime.clone();
        let e = |step: &str| {
            let step = step.to_string();
            move |err: tonic::Status| format!("{step}: {err}")
        };
        let container = timed(c.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(Self::container_config()),
            sandbox_config: Some(config.clone()),
        }))
        .await
        .map_err(e("CreateContainer"))?
        .container_id;
        self.ids.insert(container.clone());
        let result: Result<(), String> = async {
            timed(c.start_container(cri::StartContainerRequest {
                container_id: container.clone(),
            }))
            .await
            .map_err(e("StartContainer"))?;
            if let Some(what) = bad
                && matches!(
                    what,
                    Bad::ExecCancelled
                        | Bad::ExecEmptyId
                        | Bad::StartUnknownId
                        | Bad::StopEmptyId
                        | Bad::RemoveShortId
                )
            {
                self.bad_call(what, &container).await;
            }
            let out = timed(c.exec_sync(cri::ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec!["echo".into(), "soak".into()],
                timeout: 30,
            }))
            .await
            .map_err(e("ExecSync"))?;
            if out.exit_code != 0 || out.stdout != b"soak\n" {
                return Err(format!(
                    "ExecSync: exit {} stdout {:?}",
                    out.exit_code, out.stdout
                ));
            }
            timed(c.stop_container(cri::StopContainerRequest {
                container_id: container.clone(),
                timeout: 0,
            }))
            .await
            .map_err(e("StopContainer"))?;
            Ok(())
        }
        .await;
        let remove = timed(c.remove_container(cri::RemoveContainerRequest {
            container_id: container,
        }))
        .await
        .map_err(e("RemoveContainer"));
        result.and(remove.map(|_| ()))
    }
}

async fn pull(client: &mut CriClient) {
    timed(client.images.pull_image(cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .await
    .expect("pull the soak image");
}

struct Outcome {
    cycles: usize,
    elapsed: Duration,
    leaks: [i64; 10],
    failures: Vec<String>,
    accepted_bad: Vec<String>,
    refused_bad: usize,
}

async fn soak(rt: &mut Runtime, cycles: usize, bad_percent: u64, seed: u64) -> Outcome {
    let mut rng = Rng(seed | 1);
    // Warm-up, then the baseline.
    if let Err(e) = rt.cycle(usize::MAX, None).await {
        panic!("{}: warm-up cycle failed: {e}", rt.name);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = count(rt);
    let start = Instant::now();
    for i in 0..cycles {
        let bad =
            (rng.below(100) < bad_percent).then(|| BADS[rng.below(BADS.len() as u64) as usize]);
        if let Err(e) = rt.cycle(i, bad).await {
            rt.failures.push(format!("cycle {i} ({bad:?}): {e}"));
        }
        if (i + 1) % 50 == 0 {
            eprintln!(
                "{}: {} cycles, {:.1} s",
                rt.name,
                i + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = start.elapsed();
    // Let exits, shims and cgroup removal settle.
    let mut after = count(rt);
    for _ in 0..20 {
        if after
            .values()
            .iter()
            .zip(before.values())
            .all(|(a, b)| *a <= b)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = count(rt);
    }
    let mut leaks = [0; 10];
    for (i, (a, b)) in after.values().iter().zip(before.values()).enumerate() {
        leaks[i] = a - b;
    }
    Outcome {
        cycles,
        elapsed,
        leaks,
        failures: std::mem::take(&mut rt.failures),
        accepted_bad: std::mem::take(&mut rt.accepted_bad),
        refused_bad: rt.refused_bad,
    }
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: {} cycles in {:.1} s = {:.2} cycles/s; bad calls refused {}, accepted {} {:?}; failed cycles {}",
        o.cycles,
        o.elapsed.as_secs_f64(),
        o.cycles as f64 / o.elapsed.as_secs_f64(),
        o.refused_bad,
        o.accepted_bad.len(),
        {
            let mut kinds: Vec<&String> = o.accepted_bad.iter().collect();
            kinds.sort();
            kinds.dedup();
            kinds
        },
        o.failures.len()
    );
    for f in o.failures.iter().take(5) {
        println!("  failed: {f}");
    }
    let leaks: Vec<String> = COUNT_NAMES
        .iter()
        .zip(o.leaks)
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    println!("  leaked: {}", leaks.join(", "));
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "soak") {
        eprintln!(
            "usage: soak soak [--cycles N] [--bad-percent P] [--seed S] [--only deckhand|containerd]"
        );
        return;
    }
    let cycles: usize = common::arg("--cycles", 1000);
    let bad_percent: u64 = common::arg("--bad-percent", 30);
    let seed: u64 = common::arg("--seed", 17);
    let only: String = common::arg("--only", String::new());
    let work = tempfile::tempdir().unwrap();
    let cleanup = Cleanup;

    let cni_flag = CNI.write(work.path());
    let registry = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    let registry_flag = registry.to_string_lossy().into_owned();
    let (server, deckhand) = common::start_deckhand(
        NAMESPACE,
        &[
            "--cni-conf-dir",
            &cni_flag,
            "--registry-config-dir",
            &registry_flag,
        ],
    )
    .await;

    let mut outcomes = Vec::new();
    if only.is_empty() || only == "deckhand" {
        let mut ours = Runtime {
            name: "deckhand",
            client: deckhand,
            logs: work.path().join("logs-deckhand"),
            cgroup_parent: "/deckhand-soak-d".into(),
            bridge: "dh-soakd0",
            pid: server.pid(),
            namespace: NAMESPACE,
            shared: false,
            ids: HashSet::new(),
            accepted_bad: Vec::new(),
            refused_bad: 0,
            failures: Vec::new(),
        };
        pull(&mut ours.client).await;
        outcomes.push((
            "deckhand cri",
            soak(&mut ours, cycles, bad_percent, seed).await,
        ));
        // The image goes with deckhand's namespace.
        let _ = timed(ours.client.images.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
        }))
        .await;
    }
    if only.is_empty() || only == "containerd" {
        let mut theirs = Runtime {
            name: "containerd",
            client: common::containerd_cri().await,
            logs: work.path().join("logs-containerd"),
            cgroup_parent: "/deckhand-soak-c".into(),
            bridge: "dh-soakc0",
            pid: containerd_pid(),
            namespace: "k8s.io",
            shared: true,
            ids: HashSet::new(),
            accepted_bad: Vec::new(),
            refused_bad: 0,
            failures: Vec::new(),
        };
        pull(&mut theirs.client).await;
        wait_network_ready(&mut theirs.client).await;
        outcomes.push((
            "containerd CRI",
            soak(&mut theirs, cycles, bad_percent, seed).await,
        ));
    }

    println!(
        "bad-input soak: {cycles} cycles per runtime, {bad_percent}% with a bad call, seed {seed}"
    );
    for (name, o) in &outcomes {
        report(name, o);
    }
    if let [(_, ours), (_, theirs)] = outcomes.as_slice() {
        let rate = |o: &Outcome| o.cycles as f64 / o.elapsed.as_secs_f64();
        println!(
            "cycles/s ratio deckhand/containerd: {:.2}",
            rate(ours) / rate(theirs)
        );
    }
    let leaked = outcomes
        .iter()
        .any(|(_, o)| o.leaks.iter().any(|&v| v > 0) || !o.failures.is_empty());
    drop(server);
    // exit() runs no destructors: clean up first.
    drop(cleanup);
    if leaked {
        std::process::exit(1);
    }
}

async fn wait_network_ready(client: &mut CriClient) {
    for _ in 0..100 {
        let ready = timed(client.runtime.status(cri::StatusRequest::default()))
            .await
            .ok()
            .and_then(|s| s.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "NetworkReady" && c.status)
            });
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes away what the soak added to the host.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        CNI.remove();
        for parent in ["/deckhand-soak-d", "/deckhand-soak-c"] {
            let mut dirs = cgroup_dirs(parent);
            dirs.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
            for (dir, _) in dirs {
                let _ = std::fs::remove_dir(dir);
            }
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&parent[1..]));
        }
        common::remove_namespace(NAMESPACE);
    }
}

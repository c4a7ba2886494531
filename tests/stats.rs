//! Stats, resource updates and container events against real containerd,
//! runc and CNI: a `deckhand cri` per test with its own containerd
//! namespace, bridge, subnet (10.215.<index>.0/24) and cgroup parent, and a
//! check after each test that nothing is left behind.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::CriServer;
use common::pod::{
    TestPod, assert_no_containerd_leftovers, busybox_container, child_cgroups, create, remove,
    remove_sandbox, start, stop,
};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;
use futures::StreamExt;

/// No containers, tasks, active snapshots or child cgroups left.
fn assert_clean(pod: &TestPod, server: &CriServer) {
    assert_no_containerd_leftovers(server);
    for controller in ["memory", "cpu", "pids"] {
        let parent = pod.cgroup_dir(controller, "");
        let dirs = child_cgroups(&parent);
        assert!(dirs.is_empty(), "cgroups left in {parent:?}: {dirs:?}");
    }
}

fn container_config(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        labels: HashMap::from([("role".into(), name.into())]),
        ..busybox_container(name, script)
    }
}

fn with_resources(
    mut config: cri::ContainerConfig,
    resources: cri::LinuxContainerResources,
) -> cri::ContainerConfig {
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(resources),
        ..Default::default()
    });
    config
}

async fn container_stats(client: &mut CriClient, id: &str) -> cri::ContainerStats {
    client
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .expect("container stats")
        .into_inner()
        .stats
        .expect("stats")
}

async fn list_container_stats(
    client: &mut CriClient,
    filter: cri::ContainerStatsFilter,
) -> Vec<String> {
    client
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("list container stats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The cgroup's own CPU counter, in ns: cpuacct.usage on v1, cpu.stat's
/// usage_usec on v2.
fn cgroup_cpu_ns(pod: &TestPod, cgroup: &str) -> u64 {
    if v2() {
        let stat = read(&pod.cgroup_dir("cpu", cgroup).join("cpu.stat"));
        let usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .unwrap_or_else(|| panic!("no usage_usec in cpu.stat:\n{stat}"));
        usec.parse::<u64>().unwrap() * 1000
    } else {
        read(&pod.cgroup_dir("cpuacct", cgroup).join("cpuacct.usage"))
            .parse()
            .unwrap()
    }
}

/// The cgroup's own memory usage: memory.usage_in_bytes on v1,
/// memory.current on v2.
fn cgroup_memory_bytes(pod: &TestPod, cgroup: &str) -> u64 {
    let file = if v2() {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    read(&pod.cgroup_dir("memory", cgroup).join(file))
        .parse()
        .unwrap()
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Polls `check` until it holds, or fails with the last value it saw.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut sample: impl AsyncFnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = sample().await;
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: {value:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_running_container_and_its_pod_report_cpu_memory_disk_and_network() {
    let pod = TestPod::new("dhst", 215, 1);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "busy").await;
    // Spins a core, holds ~8 MiB of anonymous memory, writes 2 MiB over
    // its image, and sends some packets out of eth0.
    let busy = create(
        &mut client,
        &sandbox,
        container_config(
            "busy",
            "dd if=/dev/zero of=/scratch bs=1M count=2; \
                 ping -c 3 -W 1 -i 0.2 10.215.1.1 >/dev/null 2>&1; \
                 x=$(head -c 8000000 /dev/zero | tr '\\0' a); while :; do :; done",
        ),
        &pod,
        "busy",
    )
    .await
    .expect("create container");
    let idle = create(
        &mut client,
        &sandbox,
        container_config("idle", "sleep 3600"),
        &pod,
        "busy",
    )
    .await
    .expect("create container");
    start(&mut client, &busy).await;

    let first = eventually(
        "busy container's memory and disk",
        async || container_stats(&mut client, &busy).await,
        |s| {
            s.memory.as_ref().is_some_and(|m| {
                m.working_set_bytes.as_ref().unwrap().value > 8_000_000
                    && m.rss_bytes.as_ref().unwrap().value > 0
            }) && s
                .writable_layer
                .as_ref()
                .is_some_and(|w| w.used_bytes.as_ref().unwrap().value >= 2 << 20)
        },
    )
    .await;
    let attributes = first.attributes.as_ref().unwrap();
    assert_eq!(attributes.id, busy);
    assert_eq!(attributes.metadata.as_ref().unwrap().name, "busy");
    assert_eq!(
        attributes.labels.get("role").map(String::as_str),
        Some("busy")
    );
    let cpu = first.cpu.as_ref().expect("cpu");
    assert!(cpu.timestamp > 0);
    assert!(
        cpu.usage_core_nano_seconds.as_ref().unwrap().value > 0,
        "{cpu:?}"
    );

    // The figures are the cgroup's own: its CPU counter read just before
    // and just after a sample brackets the sample's, on v1 and v2 alike.
    let cgroup = format!("{sandbox}/{busy}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (before, sample, after) = loop {
        assert!(
            Instant::now() < deadline,
            "the busy shell's CPU counter did not move in 30s"
        );
        let before = cgroup_cpu_ns(&pod, &cgroup);
        let sample = container_stats(&mut client, &busy).await;
        let after = cgroup_cpu_ns(&pod, &cgroup);
        // A spinning shell's counter moves between two reads of it, unless
        // the loaded host did not run it at all in between: read again.
        if after > before {
            break (before, sample, after);
        }
    };
    let mut previous = sample.cpu.unwrap();
    let mut previous_used = previous.usage_core_nano_seconds.as_ref().unwrap().value;
    assert!(
        (before..=after).contains(&previous_used),
        "stats say {previous_used} ns, the cgroup {before}..{after}"
    );
    // The rate is the one between two samples a second apart (however much
    // of a core the loaded host gave the shell), and never more than the
    // node has (a quarter of slack for the time between reading the
    // counter and taking the timestamp). A loaded host may not run the
    // shell at all in a second: sample again (each sample is the next
    // one's previous) until its counter moved.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (cpu, used) = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = container_stats(&mut client, &busy).await;
        let cpu = second.cpu.unwrap();
        let used = cpu.usage_core_nano_seconds.as_ref().unwrap().value;
        if used > previous_used {
            break (cpu, used);
        }
        assert!(
            Instant::now() < deadline,
            "the busy shell's CPU counter did not move between two samples in 60s"
        );
        previous = cpu;
        previous_used = used;
    };
    let expected =
        (used - previous_used) as f64 / (cpu.timestamp - previous.timestamp) as f64 * 1e9;
    let nano_cores = cpu.usage_nano_cores.as_ref().unwrap().value;
    assert!(
        (nano_cores as f64 - expected).abs() <= expected * 0.001 + 1.0,
        "{nano_cores} nanocores, the samples say {expected}"
    );
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        nano_cores > 0 && (nano_cores as f64) <= cores * 1.25e9,
        "{nano_cores} nanocores on {cores} cores"
    );
    let memory = cgroup_memory_bytes(&pod, &cgroup);
    assert!(memory > 8_000_000, "the cgroup holds {memory} bytes");

    // Created but not started: listed, with its layer and no usage.
    let idle_stats = container_stats(&mut client, &idle).await;
    assert!(idle_stats.cpu.is_none() && idle_stats.memory.is_none());
    assert!(idle_stats.writable_layer.is_some());

    // Filters: id prefix, pod, labels.
    let by_id = cri::ContainerStatsFilter {
        id: busy[..12].into(),
        ..Default::default()
    };
    assert_eq!(
        list_container_stats(&mut client, by_id).await,
        [busy.as_str()]
    );
    let by_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: sandbox.clone(),
        ..Default::default()
    };
    assert_eq!(
        list_container_stats(&mut client, by_pod).await,
        [busy.clone(), idle.clone()]
    );
    let by_label = cri::ContainerStatsFilter {
        label_selector: HashMap::from([("role".into(), "idle".into())]),
        ..Default::default()
    };
    assert_eq!(
        list_container_stats(&mut client, by_label).await,
        [idle.as_str()]
    );
    let err = client
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // The pod: its cgroup (infra and containers), its network, its running containers.
    let listed = client
        .runtime
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                label_selector: HashMap::from([("app".into(), "busy".into())]),
                ..Default::default()
            }),
        })
        .await
        .expect("list pod stats")
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);
    let stats = &listed[0];
    assert_eq!(stats.attributes.as_ref().unwrap().id, sandbox);
    assert_eq!(
        stats
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "busy"
    );
    let linux = stats.linux.as_ref().unwrap();
    assert!(
        linux
            .cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .as_ref()
            .unwrap()
            .value
            >= used
    );
    let pod_memory = linux
        .memory
        .as_ref()
        .unwrap()
        .working_set_bytes
        .as_ref()
        .unwrap()
        .value;
    assert!(pod_memory > 8_000_000, "{pod_memory}");
    // The infra process and the busy container's shell at least.
    let processes = linux
        .process
        .as_ref()
        .unwrap()
        .process_count
        .as_ref()
        .unwrap()
        .value;
    assert!(processes >= 2, "{processes} processes");
    let network = linux.network.as_ref().expect("pod network");
    let eth0 = network.default_interface.as_ref().expect("eth0");
    assert_eq!(eth0.name, "eth0");
    assert!(eth0.tx_bytes.as_ref().unwrap().value > 0, "{eth0:?}");
    assert!(network.interfaces.iter().all(|i| i.name != "lo"));
    let containers: Vec<&str> = linux
        .containers
        .iter()
        .map(|c| c.attributes.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(containers, [busy.as_str()], "only running containers");
    let single = client
        .runtime
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("pod stats")
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(single.attributes.unwrap().id, sandbox);
    let missing = client
        .runtime
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: "nope".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert!(missing.is_empty());

    remove_sandbox(&mut client, &sandbox).await;
    let err = client
        .runtime
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_clean(&pod, &server);
}

#[tokio::test]
async fn resource_updates_reach_the_cgroups_and_the_stored_spec() {
    let pod = TestPod::new("dhst", 215, 2);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "upd").await;
    let limited = |name| {
        with_resources(
            container_config(name, "sleep 3600"),
            cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 256,
                ..Default::default()
            },
        )
    };
    let running = create(&mut client, &sandbox, limited("running"), &pod, "upd")
        .await
        .expect("create container");
    let later = create(&mut client, &sandbox, limited("later"), &pod, "upd")
        .await
        .expect("create container");
    start(&mut client, &running).await;
    let cgroup = |controller: &str, id: &str, file: &str| {
        read(
            &pod.cgroup_dir(controller, &format!("{sandbox}/{id}"))
                .join(file),
        )
    };
    let v1 = Path::new("/sys/fs/cgroup/memory").exists();
    if v1 {
        assert_eq!(
            cgroup("memory", &running, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
    }

    let update = |id: &str| cri::UpdateContainerResourcesRequest {
        container_id: id.into(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .runtime
        .update_container_resources(update(&running))
        .await
        .expect("update running container");
    if v1 {
        assert_eq!(
            cgroup("memory", &running, "memory.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(cgroup("cpu", &running, "cpu.cfs_quota_us"), "50000");
        assert_eq!(cgroup("cpu", &running, "cpu.cfs_period_us"), "100000");
        // Not in the request: kept.
        assert_eq!(cgroup("cpu", &running, "cpu.shares"), "256");
    } else {
        assert_eq!(
            cgroup("memory", &running, "memory.max"),
            (128u64 << 20).to_string()
        );
        assert_eq!(cgroup("cpu", &running, "cpu.max"), "50000 100000");
    }
    // The stored spec follows, so a restart of the task keeps the limits.
    let info = server.ctr(&["containers", "info", &running]);
    assert!(info.contains("134217728"), "{info}");

    // A created container starts with the updated limits.
    client
        .runtime
        .update_container_resources(update(&later))
        .await
        .expect("update created container");
    start(&mut client, &later).await;
    if v1 {
        assert_eq!(
            cgroup("memory", &later, "memory.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
    }

    // A limit the kernel refuses is an error, and the spec keeps the old one.
    let err = client
        .runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: running.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpuset_cpus: "4096".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let info = server.ctr(&["containers", "info", &running]);
    assert!(!info.contains("\"4096\""), "{info}");
    let err = client
        .runtime
        .update_container_resources(update("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // The pod cgroup: its containers' resources plus its overhead.
    client
        .runtime
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: sandbox.clone(),
            overhead: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            }),
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 256 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
        })
        .await
        .expect("update pod resources");
    let pod_file =
        |controller: &str, file: &str| read(&pod.cgroup_dir(controller, &sandbox).join(file));
    if v1 {
        assert_eq!(
            pod_file("memory", "memory.limit_in_bytes"),
            (272u64 << 20).to_string()
        );
        assert_eq!(pod_file("cpu", "cpu.shares"), "512");
    } else {
        assert_eq!(pod_file("memory", "memory.max"), (272u64 << 20).to_string());
    }
    let err = client
        .runtime
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: sandbox.clone(),
            overhead: None,
            resources: Some(cri::LinuxContainerResources {
                cpuset_cpus: "4096".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server);
}

#[tokio::test]
async fn container_events_arrive_in_order_with_statuses() {
    let pod = TestPod::new("dhst", 215, 3);
    let (server, mut client) = pod.server().await;
    let mut events = client
        .runtime
        .get_container_events(cri::GetEventsRequest {})
        .await
        .expect("subscribe")
        .into_inner();
    let sandbox = pod.run_sandbox(&mut client, "ev").await;
    let id = create(
        &mut client,
        &sandbox,
        container_config("ev", "sleep 3600"),
        &pod,
        "ev",
    )
    .await
    .expect("create container");
    start(&mut client, &id).await;
    stop(&mut client, &id, 0).await;
    remove(&mut client, &id).await;
    remove_sandbox(&mut client, &sandbox).await;

    use cri::ContainerEventType::*;
    let expected = [
        (&sandbox, ContainerCreatedEvent),
        (&sandbox, ContainerStartedEvent),
        (&id, ContainerCreatedEvent),
        (&id, ContainerStartedEvent),
        (&id, ContainerStoppedEvent),
        (&id, ContainerDeletedEvent),
        (&sandbox, ContainerStoppedEvent),
        (&sandbox, ContainerDeletedEvent),
    ];
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {seen:?}"))
            .expect("stream open")
            .expect("event");
        seen.push(event);
    }
    let kinds: Vec<(String, i32)> = seen
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect();
    let want: Vec<(String, i32)> = expected
        .iter()
        .map(|(id, kind)| ((*id).clone(), *kind as i32))
        .collect();
    assert_eq!(kinds, want);
    for event in &seen {
        assert!(event.created_at > 0);
        assert_eq!(event.pod_sandbox_status.as_ref().unwrap().id, sandbox);
    }
    // The container's own events carry its status in the pod's list.
    let started = &seen[3];
    let status = started
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .expect("container status in the event");
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    let stopped = &seen[4];
    let status = stopped
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .unwrap();
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert!(seen[5].containers_statuses.iter().all(|s| s.id != id));
    assert_eq!(
        seen[7].pod_sandbox_status.as_ref().unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    assert_clean(&pod, &server);
}

#[tokio::test]
async fn pod_status_lists_its_containers_statuses() {
    let pod = TestPod::new("dhst", 215, 4);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "st").await;
    let id = create(
        &mut client,
        &sandbox,
        container_config("st", "sleep 3600"),
        &pod,
        "st",
    )
    .await
    .expect("create container");
    let status = client
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = status
        .containers_statuses
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(
        status.containers_statuses[0].state,
        cri::ContainerState::ContainerCreated as i32
    );
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server);
}

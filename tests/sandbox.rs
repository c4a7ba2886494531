//! Pod sandboxes against the real kernel and Debian's CNI plugins: a real
//! `deckhand cri` per test, each with its own bridge, subnet, IPAM dir and
//! cgroup parent, and a check after each test that nothing leaked.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pod::{CNI_BIN_DIR, TestPod, child_cgroups};
use common::{CriOptions, CriServer};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;
use nix::sched::CloneFlags;

/// Asserts nothing of a test's sandboxes is left: mounts under the run
/// dir, IPs, veths on the bridge, child cgroups, infra processes.
fn assert_clean(net: &TestPod, server: &CriServer, infra_pids: &[i32]) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let run = server.run_dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&run), "mounts left under {run}:\n{mounts}");
    assert_eq!(net.reserved_ips(), Vec::<String>::new(), "IPs left");
    let brif = PathBuf::from(format!("/sys/class/net/{}/brif", net.bridge));
    if brif.exists() {
        let ports: Vec<_> = std::fs::read_dir(&brif).unwrap().flatten().collect();
        assert!(ports.is_empty(), "veths left on {}: {ports:?}", net.bridge);
    }
    for dir in cgroup_dirs(&net.cgroup_parent) {
        let children = child_cgroups(&dir);
        assert!(
            children.is_empty(),
            "cgroups left in {}: {children:?}",
            dir.display()
        );
    }
    for pid in infra_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "infra {pid} still exists"
        );
    }
    assert_eq!(
        zombie_children(server.pid() as i32),
        Vec::<i32>::new(),
        "zombies"
    );
}

/// The directories a cgroup path has: one per v1 hierarchy, or the one v2 dir.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let path = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(path)];
    }
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "unified" && e.file_type().unwrap().is_dir())
        .map(|e| e.path().join(path))
        .collect()
}

/// A cgroup dir that lists processes (pids controller on v1).
fn procs_file(path: &str) -> PathBuf {
    let path = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        root.join(path).join("cgroup.procs")
    } else {
        root.join("pids").join(path).join("cgroup.procs")
    }
}

fn zombie_children(parent: i32) -> Vec<i32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap();
        let ppid: i32 = fields.next().unwrap().parse().unwrap();
        if ppid == parent && state == "Z" {
            out.push(pid);
        }
    }
    out
}

fn config(name: &str, uid: &str, net: &TestPod) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        labels: HashMap::from([("app".into(), name.into())]),
        annotations: HashMap::from([("note".into(), "x".into())]),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: net.cgroup_parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_namespaces(
    mut c: cri::PodSandboxConfig,
    network: cri::NamespaceMode,
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
) -> cri::PodSandboxConfig {
    c.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

async fn run(
    client: &mut CriClient,
    config: cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    client
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn status(
    client: &mut CriClient,
    id: &str,
) -> Result<(cri::PodSandboxStatus, serde_json::Value), tonic::Status> {
    let r = client
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info = serde_json::from_str(r.info.get("info").expect("verbose info")).unwrap();
    Ok((r.status.unwrap(), info))
}

async fn stop(client: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    client
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(|_| ())
}

async fn remove(client: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    client
        .runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(|_| ())
}

async fn list(
    client: &mut CriClient,
    filter: Option<cri::PodSandboxFilter>,
) -> Vec<cri::PodSandbox> {
    client
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .items
}

fn ns_inode(path: impl AsRef<Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Runs `f` on a throwaway thread inside the namespace pinned at `path`.
fn in_ns<T: Send + 'static>(
    path: &Path,
    kind: CloneFlags,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, kind).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn ns_path(info: &serde_json::Value, kind: &str) -> PathBuf {
    PathBuf::from(
        info["namespaces"][kind]
            .as_str()
            .unwrap_or_else(|| panic!("no {kind} namespace in {info}")),
    )
}

#[tokio::test]
async fn lifecycle_namespaces_cgroup_and_files() {
    use cri::NamespaceMode::Pod;
    let net = TestPod::new("dhsb", 213, 1);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    let mut config = with_namespaces(config("web", "uid-lifecycle", &net), Pod, Pod, Pod);
    config
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "123".into());
    let started = Instant::now();
    let id = run(&mut client, config)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    eprintln!("RunPodSandbox took {:?}", started.elapsed());

    let (st, info) = status(&mut client, &id).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(st.id, id);
    assert!(st.created_at > 0);
    assert_eq!(st.metadata.as_ref().unwrap().name, "web");
    assert_eq!(st.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(st.annotations.get("note").map(String::as_str), Some("x"));
    let ip = st.network.as_ref().unwrap().ip.clone();
    assert!(
        ip.starts_with(&net.subnet_prefix),
        "ip {ip:?} not in {}0/24",
        net.subnet_prefix
    );
    let opts = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(
        (opts.network, opts.pid, opts.ipc),
        (Pod as i32, Pod as i32, Pod as i32)
    );
    let pid = info["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);

    // Namespaces: the infra's are new ones, and the pins are the same ones.
    for kind in ["net", "ipc", "uts"] {
        let infra = ns_inode(format!("/proc/{pid}/ns/{kind}"));
        assert_ne!(
            infra,
            ns_inode(format!("/proc/self/ns/{kind}")),
            "{kind} shared with the host"
        );
        assert_eq!(infra, ns_inode(ns_path(&info, kind)), "{kind} pin");
    }
    assert_ne!(
        ns_inode(ns_path(&info, "pid")),
        ns_inode("/proc/self/ns/pid")
    );
    // The pod's PID 1 is the infra's child, inside the pinned PID namespace.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let pid1: i32 = children
        .split_whitespace()
        .next()
        .expect("pod init")
        .parse()
        .unwrap();
    assert_eq!(
        ns_inode(format!("/proc/{pid1}/ns/pid")),
        ns_inode(ns_path(&info, "pid"))
    );
    let nspid = std::fs::read_to_string(format!("/proc/{pid1}/status")).unwrap();
    assert!(
        nspid
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "{nspid}"
    );

    // Hostname in the UTS namespace, not on the host.
    let hostname = in_ns(&ns_path(&info, "uts"), CloneFlags::CLONE_NEWUTS, || {
        nix::unistd::gethostname().unwrap()
    });
    assert_eq!(hostname.to_str(), Some("web-host"));
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_str(),
        Some("web-host")
    );
    // eth0 carries the IP; the sysctl was set in the pod's netns only.
    let (addrs, port_start) = in_ns(&ns_path(&info, "net"), CloneFlags::CLONE_NEWNET, || {
        (
            std::fs::read_to_string("/proc/net/fib_trie").unwrap(),
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
        )
    });
    assert!(addrs.contains(&ip), "{ip} not in the pod netns:\n{addrs}");
    assert_eq!(port_start.trim(), "123");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap()
            .trim(),
        "123"
    );

    // Files for containers.
    let dir = PathBuf::from(info["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
        "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap(),
        "web-host\n"
    );
    assert!(
        std::fs::read_to_string(dir.join("hosts"))
            .unwrap()
            .contains(&format!("{ip}\tweb-host"))
    );

    // cgroup: under the parent, holding the infra and the pod's init.
    let cgroup = format!("{}/{id}", net.cgroup_parent);
    assert_eq!(
        info["cgroup"].as_str().unwrap(),
        cgroup.trim_start_matches('/')
    );
    let procs = std::fs::read_to_string(procs_file(&cgroup)).unwrap();
    let procs: Vec<i32> = procs.lines().map(|l| l.parse().unwrap()).collect();
    assert!(procs.contains(&pid) && procs.contains(&pid1), "{procs:?}");

    // List with filters.
    assert_eq!(list(&mut client, None).await.len(), 1);
    let by = |id: &str, state: Option<cri::PodSandboxState>, label: Option<(&str, &str)>| {
        cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
            label_selector: label
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    };
    assert_eq!(list(&mut client, Some(by(&id, None, None))).await[0].id, id);
    assert_eq!(
        list(&mut client, Some(by(&id[..12], None, None)))
            .await
            .len(),
        1
    );
    assert!(
        list(&mut client, Some(by("nope", None, None)))
            .await
            .is_empty()
    );
    assert_eq!(
        list(
            &mut client,
            Some(by(
                "",
                Some(cri::PodSandboxState::SandboxReady),
                Some(("app", "web"))
            ))
        )
        .await
        .len(),
        1
    );
    assert!(
        list(&mut client, Some(by("", None, Some(("app", "db")))))
            .await
            .is_empty()
    );
    assert!(
        list(
            &mut client,
            Some(by("", Some(cri::PodSandboxState::SandboxNotready), None))
        )
        .await
        .is_empty()
    );

    // Stop: not ready, infra gone and reaped, IP released.
    stop(&mut client, &id).await.unwrap();
    let (st, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "infra not reaped"
    );
    assert!(
        !Path::new(&format!("/proc/{pid1}")).exists(),
        "pod init survived"
    );
    assert_eq!(net.reserved_ips(), Vec::<String>::new());
    assert_eq!(
        list(
            &mut client,
            Some(by("", Some(cri::PodSandboxState::SandboxNotready), None))
        )
        .await
        .len(),
        1
    );
    stop(&mut client, &id).await.unwrap();

    // Remove: everything freed, then NotFound.
    remove(&mut client, &id).await.unwrap();
    let err = status(&mut client, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(!dir.exists());
    for d in cgroup_dirs(&cgroup) {
        assert!(!d.exists(), "{} left", d.display());
    }
    remove(&mut client, &id).await.unwrap();
    assert!(list(&mut client, None).await.is_empty());
    assert_clean(&net, &server, &[pid, pid1]);
}

#[tokio::test]
async fn host_network_shares_the_host_namespaces() {
    use cri::NamespaceMode::Node;
    let net = TestPod::new("dhsb", 213, 2);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    let id = run(
        &mut client,
        with_namespaces(config("hostnet", "uid-hostnet", &net), Node, Node, Node),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let (st, info) = status(&mut client, &id).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(st.network.unwrap().ip, "", "no CNI for host network");
    let pid = info["pid"].as_i64().unwrap() as i32;
    for kind in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns_inode(format!("/proc/{pid}/ns/{kind}")),
            ns_inode(format!("/proc/self/ns/{kind}")),
            "{kind} should be the host's"
        );
    }
    assert_eq!(
        net.reserved_ips(),
        Vec::<String>::new(),
        "CNI ran for a host-network pod"
    );
    // A host-network pod may not change the node's network sysctls.
    let mut bad = with_namespaces(config("hostnet2", "uid-hostnet2", &net), Node, Node, Node);
    bad.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    assert_eq!(
        run(&mut client, bad).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    remove(&mut client, &id).await.unwrap();
    assert_clean(&net, &server, &[pid]);
}

#[tokio::test]
async fn two_sandboxes_reach_each_other() {
    let net = TestPod::new("dhsb", 213, 3);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    let a = run(&mut client, config("a", "uid-a", &net))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let b = run(&mut client, config("b", "uid-b", &net)).await.unwrap();
    let (sa, ia) = status(&mut client, &a).await.unwrap();
    let (sb, ib) = status(&mut client, &b).await.unwrap();
    let ip_b = sb.network.unwrap().ip;
    assert_ne!(sa.network.unwrap().ip, ip_b);

    // A listener in b's netns, a client in a's: TCP over the bridge.
    let listener = in_ns(&ns_path(&ib, "net"), CloneFlags::CLONE_NEWNET, || {
        std::net::TcpListener::bind("0.0.0.0:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    let server_side = std::thread::spawn(move || {
        use std::io::Read;
        listener.set_nonblocking(false).unwrap();
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = String::new();
        conn.read_to_string(&mut buf).unwrap();
        (buf, peer.ip().to_string())
    });
    let target: std::net::SocketAddr = format!("{ip_b}:{port}").parse().unwrap();
    in_ns(&ns_path(&ia, "net"), CloneFlags::CLONE_NEWNET, move || {
        use std::io::Write;
        let mut c =
            std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("a -> b");
        c.write_all(b"hello from a").unwrap();
    });
    let (got, _) = server_side.join().unwrap();
    assert_eq!(got, "hello from a");

    let pids = [
        ia["pid"].as_i64().unwrap() as i32,
        ib["pid"].as_i64().unwrap() as i32,
    ];
    for id in [&a, &b] {
        remove(&mut client, id).await.unwrap();
    }
    assert_clean(&net, &server, &pids);
}

#[tokio::test]
async fn restart_readopts_running_sandboxes() {
    let net = TestPod::new("dhsb", 213, 4);
    let (mut server, mut client) = CriServer::start_with(net.options()).await;
    let id = run(&mut client, config("survivor", "uid-restart", &net))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let (_, info) = status(&mut client, &id).await.unwrap();
    let pid = info["pid"].as_i64().unwrap() as i32;

    let mut client = server.kill_and_restart().await;
    let pods = list(&mut client, None).await;
    assert_eq!(pods.len(), 1, "{}", server.log());
    assert_eq!(pods[0].id, id);
    let (st, info2) = status(&mut client, &id).await.unwrap();
    assert_eq!(
        st.state,
        cri::PodSandboxState::SandboxReady as i32,
        "{}",
        server.log()
    );
    assert_eq!(info2["pid"].as_i64().unwrap() as i32, pid);
    assert!(st.network.unwrap().ip.starts_with(&net.subnet_prefix));
    // The name stays reserved across the restart.
    let dup = run(&mut client, config("survivor", "uid-restart", &net))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);

    stop(&mut client, &id).await.unwrap();
    // No longer deckhand's child: whoever adopted it reaps it; wait a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "infra still running: {stat}"
    );
    remove(&mut client, &id).await.unwrap();
    assert_eq!(
        status(&mut client, &id).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&*server.run_dir().to_string_lossy()));
    assert_eq!(net.reserved_ips(), Vec::<String>::new());
    for d in cgroup_dirs(&format!("{}/{id}", net.cgroup_parent)) {
        assert!(!d.exists(), "{} left", d.display());
    }
}

#[tokio::test]
async fn unknown_ids_and_bad_requests() {
    let net = TestPod::new("dhsb", 213, 5);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    // Unknown ids: stop and remove succeed, status is NotFound.
    stop(&mut client, "does-not-exist").await.unwrap();
    remove(&mut client, "does-not-exist").await.unwrap();
    assert_eq!(
        status(&mut client, "does-not-exist")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    // Missing metadata fields.
    for field in ["name", "namespace", "uid"] {
        let mut c = config("bad", "uid-bad", &net);
        let m = c.metadata.as_mut().unwrap();
        match field {
            "name" => m.name.clear(),
            "namespace" => m.namespace.clear(),
            _ => m.uid.clear(),
        }
        let err = run(&mut client, c).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err}");
    }
    let mut c = config("bad", "uid-bad", &net);
    c.metadata = None;
    assert_eq!(
        run(&mut client, c).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // Bad cgroup parents.
    for parent in ["relative/path", "/a/../../escape"] {
        let mut c = config("bad", "uid-bad", &net);
        c.linux.as_mut().unwrap().cgroup_parent = parent.into();
        assert_eq!(
            run(&mut client, c).await.unwrap_err().code(),
            tonic::Code::InvalidArgument,
            "{parent}"
        );
    }
    // A node-wide sysctl.
    let mut c = config("bad", "uid-bad", &net);
    c.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.panic".into(), "1".into());
    assert_eq!(
        run(&mut client, c).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // The same pod attempt twice: the name is reserved until removal.
    let id = run(&mut client, config("dup", "uid-dup", &net))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let err = run(&mut client, config("dup", "uid-dup", &net))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    let mut next = config("dup", "uid-dup", &net);
    next.metadata.as_mut().unwrap().attempt = 1;
    let id2 = run(&mut client, next).await.unwrap();
    let pids: Vec<i32> = [
        status(&mut client, &id).await.unwrap().1["pid"]
            .as_i64()
            .unwrap() as i32,
        status(&mut client, &id2).await.unwrap().1["pid"]
            .as_i64()
            .unwrap() as i32,
    ]
    .into();
    stop(&mut client, &id).await.unwrap();
    remove(&mut client, &id).await.unwrap();
    remove(&mut client, &id).await.unwrap();
    remove(&mut client, &id2).await.unwrap();
    let again = run(&mut client, config("dup", "uid-dup", &net))
        .await
        .unwrap();
    let pid3 = status(&mut client, &again).await.unwrap().1["pid"]
        .as_i64()
        .unwrap() as i32;
    remove(&mut client, &again).await.unwrap();
    let mut all = pids;
    all.push(pid3);
    assert_clean(&net, &server, &all);
}

#[tokio::test]
async fn failed_cni_rolls_everything_back() {
    let net = TestPod::new("dhsb", 213, 6);
    // A subnet host-local rejects: the plugin's error must reach the caller.
    let broken = tempfile::tempdir().unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "broken",
        "plugins": [{
            "type": "bridge",
            "bridge": net.bridge,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "not-a-subnet"}]], "dataDir": net.ipam.path()}
        }]
    });
    std::fs::write(
        broken.path().join("10-broken.conflist"),
        conflist.to_string(),
    )
    .unwrap();
    let (server, mut client) = CriServer::start_with(CriOptions {
        cni_conf_dir: Some(broken.path().to_path_buf()),
        cni_bin_dir: Some(CNI_BIN_DIR.into()),
        ..Default::default()
    })
    .await;
    let err = run(&mut client, config("net-fails", "uid-netfail", &net))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(
        err.message().contains("not-a-subnet"),
        "plugin error not surfaced: {}",
        err.message()
    );
    assert!(list(&mut client, None).await.is_empty());
    let left: Vec<_> = std::fs::read_dir(server.run_dir().join("sandboxes"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "sandbox dirs left: {left:?}\n{}",
        server.log()
    );
    assert_clean(&net, &server, &[]);
    // No infra process of ours survives either.
    let infra_children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        server.pid(),
        server.pid()
    ))
    .unwrap();
    for child in infra_children.split_whitespace() {
        let cmd = std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap_or_default();
        assert!(!cmd.contains("sandbox-infra"), "infra {child} left running");
    }
    // The name was released by the rollback.
    let err2 = run(&mut client, config("net-fails", "uid-netfail", &net))
        .await
        .unwrap_err();
    assert_eq!(err2.code(), tonic::Code::Internal, "{err2}");

    // A missing plugin binary is reported by name.
    let missing = tempfile::tempdir().unwrap();
    std::fs::write(
        missing.path().join("10-missing.conflist"),
        r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    drop(server);
    let (server, mut client) = CriServer::start_with(CriOptions {
        cni_conf_dir: Some(missing.path().to_path_buf()),
        cni_bin_dir: Some(CNI_BIN_DIR.into()),
        ..Default::default()
    })
    .await;
    let err = run(&mut client, config("missing", "uid-missing", &net))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("no-such-plugin"),
        "{}",
        err.message()
    );
    assert_clean(&net, &server, &[]);
}

#[tokio::test]
async fn status_reports_network_readiness() {
    let net = TestPod::new("dhsb", 213, 7);
    let empty = tempfile::tempdir().unwrap();
    let condition = |r: cri::StatusResponse, t: &str| {
        r.status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == t)
            .unwrap()
    };
    let (_server, mut client) = CriServer::start_with(CriOptions {
        cni_conf_dir: Some(empty.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let r = client
        .runtime
        .status(cri::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(condition(r.clone(), "RuntimeReady").status);
    let n = condition(r, "NetworkReady");
    assert!(!n.status);
    assert_eq!(n.reason, "NetworkPluginNotReady");
    assert!(!n.message.is_empty());
    // Without a network, a pod-network sandbox fails; nothing is left.
    let err = run(&mut client, config("nonet", "uid-nonet", &net))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);

    let (_server2, mut client2) = CriServer::start_with(net.options()).await;
    let r = client2
        .runtime
        .status(cri::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(condition(r, "NetworkReady").status);
}

/// Polls (bounded) until the sandbox reports `state`.
async fn wait_state(client: &mut CriClient, id: &str, state: cri::PodSandboxState) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if status(client, id).await.unwrap().0.state == state as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn infra_death_is_noticed_live_and_across_restart() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let net = TestPod::new("dhsb", 213, 8);
    let (mut server, mut client) = CriServer::start_with(net.options()).await;
    let a = run(&mut client, config("a", "uid-death-a", &net))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let b = run(&mut client, config("b", "uid-death-b", &net))
        .await
        .unwrap();
    let pid_a = status(&mut client, &a).await.unwrap().1["pid"]
        .as_i64()
        .unwrap() as i32;
    let pid_b = status(&mut client, &b).await.unwrap().1["pid"]
        .as_i64()
        .unwrap() as i32;

    // Killed under a running deckhand: NOTREADY, and reaped (no zombie).
    kill(Pid::from_raw(pid_a), Signal::SIGKILL).unwrap();
    assert!(
        wait_state(&mut client, &a, cri::PodSandboxState::SandboxNotready).await,
        "{}",
        server.log()
    );
    assert_eq!(zombie_children(server.pid() as i32), Vec::<i32>::new());
    assert_eq!(
        status(&mut client, &b).await.unwrap().0.state,
        cri::PodSandboxState::SandboxReady as i32
    );

    // Killed while deckhand is down: NOTREADY after the restart.
    server.kill9();
    kill(Pid::from_raw(pid_b), Signal::SIGKILL).unwrap();
    let mut client = server.restart().await;
    assert!(wait_state(&mut client, &b, cri::PodSandboxState::SandboxNotready).await);
    assert_eq!(list(&mut client, None).await.len(), 2);
    for id in [&a, &b] {
        stop(&mut client, id).await.unwrap();
        remove(&mut client, id).await.unwrap();
    }
    assert!(list(&mut client, None).await.is_empty());
    assert_clean(&net, &server, &[pid_a]);
}

/// Exited (gone, or a zombie awaiting a reaper that is not deckhand), within
/// a bounded wait.
async fn wait_exited(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.contains(") Z ") => return true,
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn a_creation_cut_short_by_a_crash_is_released_at_restart() {
    let net = TestPod::new("dhsb", 213, 9);
    let (mut server, mut client) = CriServer::start_with(net.options()).await;
    let id = run(&mut client, config("torn", "uid-torn", &net))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let pid = status(&mut client, &id).await.unwrap().1["pid"]
        .as_i64()
        .unwrap() as i32;
    assert_eq!(net.reserved_ips().len(), 1);

    // Crash, and make the record look as if RunPodSandbox never finished.
    server.kill9();
    let path = server
        .state_dir()
        .join("sandboxes")
        .join(format!("{id}.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("sandbox record")).unwrap();
    assert_eq!(record["state"], "Ready");
    record["state"] = "Creating".into();
    std::fs::write(&path, record.to_string()).unwrap();

    let mut client = server.restart().await;
    assert!(list(&mut client, None).await.is_empty(), "{}", server.log());
    assert_eq!(
        status(&mut client, &id).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert!(!path.exists(), "record left");
    assert!(wait_exited(pid).await, "infra {pid} still running");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&*server.run_dir().to_string_lossy()));
    assert_eq!(net.reserved_ips(), Vec::<String>::new());
    for d in cgroup_dirs(&format!("{}/{id}", net.cgroup_parent)) {
        assert!(!d.exists(), "{} left", d.display());
    }
    // The name is free again.
    let again = run(&mut client, config("torn", "uid-torn", &net))
        .await
        .unwrap();
    remove(&mut client, &again).await.unwrap();
}

fn nat_rules() -> String {
    let out = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .expect("iptables (hack/install-deps installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn port_mappings_reach_the_pod_and_go_with_it() {
    let net = TestPod::new("dhsb", 213, 10);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    let host_port = common::free_port();
    let mut c = config("ports", "uid-ports", &net);
    c.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let id = run(&mut client, c)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let (_, info) = status(&mut client, &id).await.unwrap();
    let pid = info["pid"].as_i64().unwrap() as i32;
    assert!(
        nat_rules().contains(&format!("--dport {host_port}")),
        "no DNAT rule for {host_port}:\n{}",
        nat_rules()
    );

    // A listener on the pod's 8080; the host dials its bridge address at the
    // host port and portmap's DNAT carries it into the pod.
    let listener = in_ns(&ns_path(&info, "net"), CloneFlags::CLONE_NEWNET, || {
        std::net::TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let accept = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = String::new();
        conn.read_to_string(&mut buf).unwrap();
        buf
    });
    let target: std::net::SocketAddr = format!("{}1:{host_port}", net.subnet_prefix)
        .parse()
        .unwrap();
    {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .expect("host port reaches the pod");
        conn.write_all(b"via hostPort").unwrap();
    }
    assert_eq!(accept.join().unwrap(), "via hostPort");

    stop(&mut client, &id).await.unwrap();
    assert!(
        !nat_rules().contains(&format!("--dport {host_port}")),
        "DNAT rule left after stop"
    );
    remove(&mut client, &id).await.unwrap();
    assert_clean(&net, &server, &[pid]);
}

#[tokio::test]
async fn concurrent_sandboxes_get_distinct_ips_and_all_go_away() {
    let net = TestPod::new("dhsb", 213, 11);
    let (server, client) = CriServer::start_with(net.options()).await;
    let runs = (0..6).map(|i| {
        let mut client = client.clone();
        let c = config(&format!("many{i}"), &format!("uid-many-{i}"), &net);
        async move { run(&mut client, c).await }
    });
    let ids: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}\n{}", server.log())))
        .collect();
    let mut client = client.clone();
    let mut ips = vec![];
    let mut pids = vec![];
    for id in &ids {
        let (st, info) = status(&mut client, id).await.unwrap();
        ips.push(st.network.unwrap().ip);
        pids.push(info["pid"].as_i64().unwrap() as i32);
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ips:?}");
    assert_eq!(net.reserved_ips().len(), ids.len());
    let removes = ids.iter().map(|id| {
        let mut client = client.clone();
        let id = id.clone();
        async move { remove(&mut client, &id).await }
    });
    for r in futures::future::join_all(removes).await {
        r.unwrap();
    }
    assert!(list(&mut client, None).await.is_empty());
    assert_clean(&net, &server, &pids);
}

/// The user namespace options of a config `with_userns` made.
fn userns_of(c: &mut cri::PodSandboxConfig) -> &mut cri::UserNamespace {
    c.linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .and_then(|n| n.userns_options.as_mut())
        .expect("userns options")
}

fn with_userns(
    mut c: cri::PodSandboxConfig,
    mode: cri::NamespaceMode,
    host_id: u32,
) -> cri::PodSandboxConfig {
    let maps = if mode == cri::NamespaceMode::Pod {
        vec![cri::IdMapping {
            container_id: 0,
            host_id,
            length: 65536,
        }]
    } else {
        vec![]
    };
    let security = c
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .get_or_insert_with(Default::default);
    security
        .namespace_options
        .get_or_insert_with(Default::default)
        .userns_options = Some(cri::UserNamespace {
        mode: mode as i32,
        uids: maps.clone(),
        gids: maps,
    });
    c
}

#[tokio::test]
async fn a_user_namespace_is_advertised_made_first_and_released() {
    let net = TestPod::new("dhsb", 213, 12);
    let (server, mut client) = CriServer::start_with(net.options()).await;
    let status_response = client
        .runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let handler = &status_response.runtime_handlers[0];
    assert_eq!(handler.name, "");
    assert!(
        handler.features.as_ref().unwrap().user_namespaces,
        "this kernel has user namespaces and ID-mapped mounts: {}",
        server.log()
    );

    let id = run(
        &mut client,
        with_userns(
            config("userns", "uid-userns", &net),
            cri::NamespaceMode::Pod,
            300_000,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let (st, info) = status(&mut client, &id).await.unwrap();
    assert!(
        !st.network.unwrap().ip.is_empty(),
        "CNI ran in the pod's netns"
    );
    let options = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    let userns = options.userns_options.unwrap();
    assert_eq!(userns.mode, cri::NamespaceMode::Pod as i32);
    assert_eq!(userns.uids[0].host_id, 300_000);
    let pid = info["pid"].as_i64().unwrap() as i32;
    // The infra runs in the pinned user namespace, with the pod's maps.
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );
    assert_eq!(
        ns_inode(ns_path(&info, "user")),
        ns_inode(format!("/proc/{pid}/ns/user"))
    );
    assert_ne!(
        ns_inode(format!("/proc/{pid}/ns/user")),
        ns_inode("/proc/self/ns/user")
    );
    // The infra keeps nothing deckhand inherited (a lock file flock(1)
    // handed down, say): only /dev/null and its own pipe are left.
    let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()).unwrap())
        .filter(|t| t != Path::new("/dev/null") && !t.to_string_lossy().starts_with("pipe:"))
        .collect();
    assert!(fds.is_empty(), "infra holds {fds:?}");
    // The pod's root owns its UTS namespace: the hostname was set from inside.
    let hostname = in_ns(&ns_path(&info, "uts"), CloneFlags::CLONE_NEWUTS, || {
        nix::unistd::gethostname().unwrap().into_string().unwrap()
    });
    assert_eq!(hostname, "userns-host");

    // NODE is the host's user namespace; CONTAINER, several ranges, or an
    // unmapped root are refused, and leave nothing behind.
    let node = run(
        &mut client,
        with_userns(
            config("hostuser", "uid-hostuser", &net),
            cri::NamespaceMode::Node,
            0,
        ),
    )
    .await
    .unwrap();
    let (_, node_info) = status(&mut client, &node).await.unwrap();
    let node_pid = node_info["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        ns_inode(format!("/proc/{node_pid}/ns/user")),
        ns_inode("/proc/self/ns/user")
    );
    let mut two = with_userns(
        config("two", "uid-two", &net),
        cri::NamespaceMode::Pod,
        300_000,
    );
    let userns = userns_of(&mut two);
    userns.uids.push(cri::IdMapping {
        container_id: 65536,
        host_id: 400_000,
        length: 10,
    });
    let mut no_root = with_userns(
        config("noroot", "uid-noroot", &net),
        cri::NamespaceMode::Pod,
        300_000,
    );
    let userns = userns_of(&mut no_root);
    userns.gids[0].container_id = 1;
    for bad in [
        two,
        no_root,
        with_userns(
            config("ctr", "uid-ctr", &net),
            cri::NamespaceMode::Container,
            0,
        ),
        with_userns(
            with_namespaces(
                config("hn", "uid-hn", &net),
                cri::NamespaceMode::Node,
                cri::NamespaceMode::Pod,
                cri::NamespaceMode::Pod,
            ),
            cri::NamespaceMode::Pod,
            300_000,
        ),
    ] {
        let err = run(&mut client, bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    assert_eq!(list(&mut client, None).await.len(), 2);

    for id in [&id, &node] {
        remove(&mut client, id).await.unwrap();
    }
    assert_clean(&net, &server, &[pid, node_pid]);
}

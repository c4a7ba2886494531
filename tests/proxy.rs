//! `deckhand proxy` against real nftables, inside a network namespace this
//! test creates (and removes on drop, even when an assertion fails). The
//! bundled apiserver and the proxy both run in the namespace (`ip netns
//! exec`), so the proxy's `nft -f -` programs the namespace's ruleset and
//! nothing of the host's; Services come from the apiserver (cluster IPs and
//! node ports allocated by it) and EndpointSlices are written by hand. The
//! test's own sockets enter the namespace from a thread (setns).
//!
//! Needs root, `ip` and `nft`; skips with a message otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";
/// The namespace's dummy link: the node address, and the endpoints' ones.
const NODE_IP: &str = "10.201.0.1";
const EP1: &str = "10.201.0.5";
const EP2: &str = "10.201.0.6";
const EP_PORT: u16 = 8080;
/// Generous: the machine is shared and slow.
const DEADLINE: Duration = Duration::from_secs(90);

fn skip(why: &str) {
    eprintln!("SKIPPED proxy test: {why}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        // A namespace left by an earlier, killed run of this test.
        let _ = run(Command::new("ip").args(["netns", "del", name]));
        must(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns(name.to_string());
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["ip", "link", "add", "d0", "type", "dummy"]);
        ns.exec(&["ip", "link", "set", "d0", "up"]);
        for ip in [NODE_IP, EP1, EP2] {
            ns.exec(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "d0"]);
        }
        // Cluster IPs are routed (to nowhere): the nat output hook
        // rewrites them before the packet leaves.
        ns.exec(&["ip", "route", "add", "10.96.0.0/12", "dev", "d0"]);
        ns
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    fn exec(&self, args: &[&str]) -> String {
        must(&mut self.cmd(args))
    }

    /// Runs `f` on a thread that has entered the namespace: the sockets
    /// it opens live there.
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

/// A child process, killed and reaped on drop.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> i32 {
        self.0.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGTERM, then the exit status (SIGKILL after the deadline).
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP server in the namespace on `addr` that answers every connection
/// with `reply`; stops on drop.
struct Server(Arc<AtomicBool>);

impl Server {
    fn start(ns: &Netns, addr: SocketAddr, reply: &'static str) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = format!("/run/netns/{}", ns.0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind(addr).expect("bind the endpoint");
            listener.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the endpoint server listens");
        Server(stop)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a connection to `addr` from inside the namespace gives: the reply,
/// or the error's kind.
fn fetch(ns: &Netns, addr: SocketAddr) -> Result<String, std::io::ErrorKind> {
    ns.within(move || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.kind())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.kind())?;
        Ok(out)
    })
}

/// Polls `addr` until it answers `want`; the time it took.
fn wait_reply(ns: &Netns, addr: SocketAddr, want: &str, proxy_log: &Path) -> Duration {
    let start = Instant::now();
    loop {
        let got = fetch(ns, addr);
        if got.as_deref() == Ok(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{addr} never answered {want:?} (last: {got:?}); proxy log:\n{}\nruleset:\n{}",
            std::fs::read_to_string(proxy_log).unwrap_or_default(),
            String::from_utf8_lossy(&run(&mut ns.cmd(&["nft", "list", "ruleset"])).stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kubectl(ns: &Netns, kubeconfig: &Path, args: &[&str]) -> String {
    let mut c = ns.cmd(&[KUBECTL, "--kubeconfig"]);
    c.arg(kubeconfig).args(args);
    must(&mut c)
}

fn kubectl_apply(ns: &Netns, kubeconfig: &Path, manifest: &str) {
    let mut c = ns.cmd(&[KUBECTL, "--kubeconfig"]);
    c.arg(kubeconfig).args(["apply", "-f", "-"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kubectl apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write the manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn slice(name: &str, service: &str, ip: &str) -> String {
    format!(
        r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
"metadata":{{"name":"{name}","namespace":"default","labels":{{"kubernetes.io/service-name":"{service}"}}}},
"addressType":"IPv4",
"endpoints":[{{"addresses":["{ip}"],"conditions":{{"ready":true}},"nodeName":"n1"}}],
"ports":[{{"port":{EP_PORT},"protocol":"TCP"}}]}}"#
    )
}

const SERVICES: &str = r#"{"apiVersion":"v1","kind":"List","items":[
{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
 "spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}},
{"apiVersion":"v1","kind":"Service","metadata":{"name":"empty","namespace":"default"},
 "spec":{"selector":{"app":"none"},"ports":[{"port":81,"targetPort":8080}]}},
{"apiVersion":"v1","kind":"Service","metadata":{"name":"headless","namespace":"default"},
 "spec":{"clusterIP":"None","selector":{"app":"web"},"ports":[{"port":82,"targetPort":8080}]}}
]}"#;

fn start_apiserver(ns: &Netns, dir: &Path) -> (Proc, PathBuf) {
    let kubeconfig = dir.join("kubeconfig");
    let log = std::fs::File::create(dir.join("apiserver.log")).expect("log file");
    let mut c = ns.cmd(&[
        env!("CARGO_BIN_EXE_deckhand"),
        "apiserver",
        "--listen",
        "127.0.0.1:0",
    ]);
    c.arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let proc = Proc(Some(c.spawn().expect("start deckhand apiserver")));
    let until = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&kubeconfig).is_ok_and(|t| t.contains("server:")) {
        assert!(
            Instant::now() < until,
            "the apiserver did not start: {}",
            std::fs::read_to_string(dir.join("apiserver.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, kubeconfig)
}

#[test]
fn cluster_ip_node_port_reject_and_cleanup_in_a_netns() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (ip netns, nft)");
    }
    for tool in ["ip", "nft", KUBECTL] {
        if run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
            .status
            .code()
            != Some(0)
        {
            return skip(&format!(
                "{tool} is missing (hack/install-deps installs it)"
            ));
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // Declared first: dropped last, after the processes in it are gone.
    let ns = Netns::create(&format!("deckhand-proxy-{}", std::process::id()));
    let (_apiserver, kubeconfig) = start_apiserver(&ns, tmp.path());

    kubectl_apply(&ns, &kubeconfig, SERVICES);
    kubectl_apply(&ns, &kubeconfig, &slice("web-1", "web", EP1));
    // A slice of the headless service: it still gets no rules.
    kubectl_apply(&ns, &kubeconfig, &slice("headless-1", "headless", EP1));
    let get = |svc: &str, path: &str| {
        kubectl(
            &ns,
            &kubeconfig,
            &["get", "svc", svc, "-o", &format!("jsonpath={path}")],
        )
    };
    let web_ip = get("web", "{.spec.clusterIP}");
    let node_port: u16 = get("web", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("a node port");
    let empty_ip = get("empty", "{.spec.clusterIP}");

    let _ep1 = Server::start(&ns, format!("{EP1}:{EP_PORT}").parse().unwrap(), "one");
    let _ep2 = Server::start(&ns, format!("{EP2}:{EP_PORT}").parse().unwrap(), "two");

    let proxy_log = tmp.path().join("proxy.log");
    let log = std::fs::File::create(&proxy_log).expect("log file");
    let mut c = ns.cmd(&[env!("CARGO_BIN_EXE_deckhand"), "proxy", "--kubeconfig"]);
    c.arg(&kubeconfig)
        .args(["--hostname-override", "n1"])
        .env("RUST_LOG", "deckhand=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut proxy = Proc(Some(c.spawn().expect("start deckhand proxy")));
    assert!(proxy.pid() > 0);

    let cluster: SocketAddr = format!("{web_ip}:80").parse().expect("cluster IP");
    let first = wait_reply(&ns, cluster, "one", &proxy_log);
    eprintln!("ClusterIP answered {first:?} after the proxy started");
    for host in [NODE_IP, "127.0.0.1"] {
        let addr: SocketAddr = format!("{host}:{node_port}").parse().unwrap();
        wait_reply(&ns, addr, "one", &proxy_log);
    }

    // No endpoints: refused, not a timeout.
    let empty: SocketAddr = format!("{empty_ip}:81").parse().expect("cluster IP");
    assert_eq!(
        fetch(&ns, empty),
        Err(std::io::ErrorKind::ConnectionRefused),
        "a service without endpoints is rejected"
    );

    let ruleset = ns.exec(&["nft", "list", "table", "ip", "deckhand-proxy"]);
    assert!(
        !ruleset.contains(" . 82 "),
        "the headless service has no rules:\n{ruleset}"
    );

    // The endpoint moves: the rule follows the EndpointSlice, no timer.
    let changed = Instant::now();
    kubectl_apply(&ns, &kubeconfig, &slice("web-1", "web", EP2));
    wait_reply(&ns, cluster, "two", &proxy_log);
    eprintln!(
        "an EndpointSlice change reached the ClusterIP in {:?} (kubectl included)",
        changed.elapsed()
    );

    let status = proxy.terminate().expect("the proxy ran");
    assert!(
        status.success(),
        "the proxy exits cleanly on SIGTERM: {status}"
    );
    let listed = run(&mut ns.cmd(&["nft", "list", "table", "ip", "deckhand-proxy"]));
    assert!(
        !listed.status.success(),
        "the table is gone after stop:\n{}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

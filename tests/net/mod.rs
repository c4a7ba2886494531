//! Shared by tests/dns.rs and tests/proxy.rs: the bundled apiserver on a
//! temp dir, a kube client for it, and a raw DNS client.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_deckhand");

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Option<Child>, pub PathBuf);

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
    /// SIGTERM, then wait up to 20 s (SIGKILL after).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
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

pub struct Apiserver {
    pub proc: Proc,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn apiserver() -> Apiserver {
    apiserver_in(&[])
}

/// The apiserver started through `wrapper` (e.g. `ip netns exec NS`).
pub fn apiserver_in(wrapper: &[&str]) -> Apiserver {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let logp = dir.path().join("apiserver.log");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let child = cmd
        .args(["apiserver", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logp).expect("log"))
        .spawn()
        .expect("start deckhand apiserver");
    let mut proc = Proc(Some(child), logp);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&kubeconfig).is_ok_and(|t| t.contains("server:")) {
        if let Some(Ok(Some(st))) = proc.0.as_mut().map(|c| c.try_wait()) {
            panic!("apiserver exited ({st}): {}", proc.log());
        }
        assert!(
            Instant::now() < deadline,
            "apiserver did not start: {}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Apiserver {
        proc,
        kubeconfig,
        dir,
    }
}

impl Apiserver {
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Starts `deckhand <args>` with this server's kubeconfig.
    pub fn run(&self, wrapper: &[&str], args: &[&str], log: &str) -> Proc {
        let logp = self.dir.path().join(log);
        let mut cmd = if let Some((first, rest)) = wrapper.split_first() {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        } else {
            Command::new(BIN)
        };
        let child = cmd
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("RUST_LOG", "deckhand=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logp).expect("log"))
            .spawn()
            .expect("start deckhand");
        Proc(Some(child), logp)
    }
}

/// Creates (or replaces) an object from JSON with the kube client.
pub async fn apply<K>(client: &kube::Client, ns: &str, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(value).expect("object json");
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().expect("a name");
    let pp = kube::api::PatchParams::apply("test").force();
    api.patch(&name, &pp, &kube::api::Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

pub async fn namespace(client: &kube::Client, ns: &str) {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let obj = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    let _ = api.create(&Default::default(), &obj).await;
}

// ---- a raw DNS client ----

pub fn encode_name(out: &mut Vec<u8>, name: &str) {
    for l in name.split('.').filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

pub fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(&mut q, name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn read_name(msg: &[u8], mut pos: usize) -> (String, usize) {
    let mut labels = vec![];
    let mut end = None;
    for _ in 0..64 {
        let len = msg[pos] as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | msg[pos + 1] as usize;
            continue;
        }
        labels.push(String::from_utf8_lossy(&msg[pos + 1..pos + 1 + len]).to_string());
        pos += 1 + len;
    }
    (labels.join("."), end.unwrap_or(pos))
}

/// A decoded answer: (rcode, answers as text: "A 1.2.3.4", "SRV 0 100 80 t", "PTR n").
#[derive(Debug)]
pub struct Reply {
    pub rcode: u8,
    pub answers: Vec<String>,
}

pub fn decode(msg: &[u8]) -> Reply {
    let rcode = msg[3] & 0x0f;
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let (_, mut pos) = read_name(msg, 12);
    pos += 4;
    let mut answers = vec![];
    for _ in 0..an {
        let (_, p) = read_name(msg, pos);
        let ty = u16::from_be_bytes([msg[p], msg[p + 1]]);
        let len = u16::from_be_bytes([msg[p + 8], msg[p + 9]]) as usize;
        let d = p + 10;
        let rd = &msg[d..d + len];
        answers.push(match ty {
            1 => format!("A {}", IpAddr::from([rd[0], rd[1], rd[2], rd[3]])),
            28 => format!("AAAA {}", IpAddr::from(<[u8; 16]>::try_from(rd).unwrap())),
            33 => {
                let (t, _) = read_name(msg, d + 6);
                let n = |i: usize| u16::from_be_bytes([rd[i], rd[i + 1]]);
                format!("SRV {} {} {} {t}", n(0), n(2), n(4))
            }
            12 => format!("PTR {}", read_name(msg, d).0),
            other => format!("TYPE{other}"),
        });
        pos = d + len;
    }
    Reply { rcode, answers }
}

/// One query over UDP (2 s timeout, 3 tries).
pub fn ask(server: SocketAddr, name: &str, qtype: u16) -> Reply {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    for id in 1..=3u16 {
        sock.send_to(&query_bytes(id, name, qtype), server)
            .expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && n >= 12
            && buf[..2] == id.to_be_bytes()
        {
            return decode(&buf[..n]);
        }
    }
    panic!("no answer from {server} for {name}");
}

/// A fake upstream on loopback that answers every A query with 192.0.2.99.
pub fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let mut r = buf[..n].to_vec();
            if r.len() < 12 {
                continue;
            }
            r[2] |= 0x80;
            r[3] = 0x80;
            r[7] = 1; // one answer
            r[10] = 0;
            r[11] = 0;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 99]);
            let _ = sock.send_to(&r, peer);
        }
    });
    addr
}

/// Polls `f` until it returns Some, up to `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free UDP port on loopback (also free for TCP, checked).
pub fn free_udp_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

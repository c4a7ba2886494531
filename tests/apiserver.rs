//! End-to-end tests of `deckhand apiserver`: the real binary on a temp dir
//! and a free port, driven by the real kubectl (/usr/bin/kubectl), by the
//! kube crate, and by raw HTTPS requests for the error paths. No root needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "apiserver/authn.rs"]
mod authn;
#[path = "apiserver/bad_input.rs"]
mod bad_input;
#[path = "apiserver/controller_manager.rs"]
mod controller_manager;
#[path = "apiserver/durability.rs"]
mod durability;
#[path = "apiserver/kube_client.rs"]
mod kube_client;
#[path = "apiserver/kubectl.rs"]
mod kubectl;
#[path = "apiserver/kubelet_proxy.rs"]
mod kubelet_proxy;
#[path = "apiserver/protobuf.rs"]
mod protobuf;
#[path = "apiserver/rbac.rs"]
mod rbac;
#[path = "apiserver/sa_tokens.rs"]
mod sa_tokens;
#[path = "apiserver/storage_node.rs"]
mod storage_node;

const KUBECTL: &str = "/usr/bin/kubectl";
const ADMIN_TOKEN: &str = "admin-token";
const N1_TOKEN: &str = "node1-token";
const TOKENS: &str = "admin-token,alice,100,\"system:masters\"\n\
node1-token,system:node:n1,101,system:nodes\n\
viewer-token,bob,102,\"dev\"\n";

/// A running server; killed (and reaped) on drop.
struct Server {
    child: Option<Child>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Start on `dir` (reused across restarts) with extra flags.
    fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, TOKENS).expect("token file");
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["apiserver", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .arg("--token-auth-file")
            .arg(&tokens)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start deckhand apiserver");
        let mut server = Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            kubeconfig: kubeconfig.clone(),
            url: String::new(),
            _tmp: None,
        };
        // The kubeconfig is written once the port is bound.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && let Some(line) = text.lines().find(|l| l.trim().starts_with("server:"))
            {
                server.url = line.trim().trim_start_matches("server:").trim().to_string();
                break;
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early ({status}): {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("run kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// kubectl with this server's kubeconfig and a discovery cache of its
    /// own (never stale, and nothing left in $HOME).
    fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"));
        cmd
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// A raw HTTPS client trusting the server's CA, with no credentials.
    fn http(&self) -> reqwest::Client {
        let ca = std::fs::read(self.dir.join("data/pki/ca.crt")).expect("ca.crt");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
            .build()
            .expect("http client")
    }

    /// A raw request with a bearer token (or none); returns (status, body).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http()
            .request(method, format!("{}{path}", self.url))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pod_json(name: &str, node: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    pod
}

//! End-to-end tests of `deckhand apiserver`: the real binary on a temp dir
//! and a free port, driven by the real kubectl (/usr/bin/kubectl), by the
//! kube crate, and by raw HTTPS requests for the error paths. No root needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

#[path = "apiserver/bad_input.rs"]
mod bad_input;
#[path = "apiserver/protobuf.rs"]
mod protobuf;
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

#[test]
fn kubectl_basic_workflow_and_tables() {
    let s = Server::start();
    let ns = s.ok(&["get", "namespaces", "-o", "name"]);
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{want}")), "{ns}");
    }
    // The `kubernetes` Service leads to this server.
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let ep = s.ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].ports[0].port}",
    ]);
    assert_eq!(ep, port);
    let svc = s.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(svc, "10.96.0.1");
    // Protobuf bodies (kubectl's typed clients).
    s.ok(&["create", "namespace", "team"]);
    s.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
    ]);
    assert_eq!(
        s.ok(&[
            "-n",
            "team",
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.color}"
        ]),
        "blue"
    );
    // Absent protobuf fields stay absent.
    let cm: Value =
        serde_json::from_str(&s.ok(&["-n", "team", "get", "cm", "settings", "-o", "json"]))
            .unwrap();
    assert!(cm["metadata"].get("generateName").is_none(), "{cm}");
    // Every namespace gets its default ServiceAccount.
    s.ok(&["-n", "team", "get", "serviceaccount", "default"]);

    s.ok(&["run", "web", "--image=nginx", "--labels=app=web,tier=fe"]);
    let table = s.ok(&["get", "pods"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "0/1", "Pending", "0"], "{table}");

    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for col in ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] {
        assert!(header.contains(col), "{wide}");
    }
    // Defaults were applied on create.
    let pod: Value = serde_json::from_str(&s.ok(&["get", "pod", "web", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
    assert!(
        pod["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    // Services get cluster IPs and, for NodePort, node ports.
    s.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let svc = s.ok(&["get", "svc", "np", "--no-headers"]);
    let cols: Vec<&str> = svc.split_whitespace().collect();
    assert_eq!(cols[1], "NodePort", "{svc}");
    assert!(cols[2].starts_with("10.96."), "{svc}");
    assert!(
        cols[4].starts_with("80:3") && cols[4].ends_with("/TCP"),
        "{svc}"
    );

    // Labels, selectors.
    s.ok(&["label", "pod", "web", "stage=prod"]);
    s.ok(&["annotate", "pod", "web", "note=hi"]);
    s.ok(&["run", "db", "--image=postgres", "--labels=app=db"]);
    let names = s.ok(&["get", "pods", "-l", "app in (web),stage", "-o", "name"]);
    assert_eq!(names.trim(), "pod/web");
    let names = s.ok(&["get", "pods", "-l", "app!=web", "-o", "name"]);
    assert_eq!(names.trim(), "pod/db");
    let names = s.ok(&[
        "get",
        "pods",
        "--field-selector",
        "metadata.name=db",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "pod/db");
    let names = s.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "");
    let err = s.fails(&["get", "pods", "-l", "app in (web"]);
    assert!(!err.is_empty());
    let err = s.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(err.contains("field label not supported"), "{err}");

    // All namespaces shows a NAMESPACE column from the row metadata.
    let all = s.ok(&["get", "configmaps", "-A"]);
    assert!(
        all.lines().next().unwrap().starts_with("NAMESPACE"),
        "{all}"
    );
    assert!(all.contains("team"), "{all}");

    // A pod never bound to a node is deleted at once.
    s.ok(&["delete", "pod", "db"]);
    let err = s.fails(&["get", "pod", "db"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // Objects in a namespace that does not exist: 404.
    let err = s.fails(&[
        "-n",
        "nope",
        "create",
        "configmap",
        "x",
        "--from-literal=a=b",
    ]);
    assert!(err.contains("not found"), "{err}");

    // Deleting a namespace removes what is in it.
    s.ok(&["delete", "namespace", "team"]);
    let err = s.fails(&["-n", "team", "get", "configmap", "settings"]);
    assert!(err.contains("not found"), "{err}");
    let err = s.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("forbidden"), "{err}");
}

#[test]
fn kubectl_apply_twice_is_unchanged() {
    let s = Server::start();
    let manifest = |image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  labels:\n    app: demo\nspec:\n  containers:\n  - name: main\n    image: {image}\n    ports:\n    - containerPort: 80\n    env:\n    - name: MODE\n      value: prod\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n  key: value\n"
        )
    };
    let apply = |m: &str| {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], m);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = apply(&manifest("nginx:1.25"));
    assert!(
        first.contains("pod/app created") && first.contains("configmap/conf created"),
        "{first}"
    );
    let second = apply(&manifest("nginx:1.25"));
    assert!(
        second.contains("pod/app unchanged") && second.contains("configmap/conf unchanged"),
        "{second}"
    );
    let third = apply(&manifest("nginx:1.26"));
    assert!(third.contains("pod/app configured"), "{third}");
    assert_eq!(
        s.ok(&[
            "get",
            "pod",
            "app",
            "-o",
            "jsonpath={.spec.containers[0].image} {.spec.containers[0].env[0].value}"
        ]),
        "nginx:1.26 prod"
    );
    // The OpenAPI v3 documents carry real schemas: kubectl explain works.
    let explained = s.ok(&["explain", "pod.spec.containers.image"]);
    assert!(explained.contains("Container image name"), "{explained}");
    // kubectl create -f validates strictly (server-side, no --validate=false).
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nbogus: 1\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &bad.replace("bogus: 1\n", ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubectl_watch_prints_table_rows() {
    use std::io::BufRead;
    let s = Server::start();
    let mut watch = s
        .kubectl_cmd()
        .args(["get", "configmaps", "-w", "--request-timeout=60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    // Read lines as they come; wait for what we expect instead of sleeping.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    fn wait_for(
        rx: &std::sync::mpsc::Receiver<String>,
        lines: &mut Vec<String>,
        pred: impl Fn(&str) -> bool,
        what: &str,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    lines.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no {what} from kubectl get -w: {lines:?}"),
            }
        }
    }
    // The initial list: header, then the existing kube-root-ca.crt row.
    wait_for(
        &rx,
        &mut lines,
        |l| l.starts_with("kube-root-ca.crt"),
        "initial row",
    );
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{lines:?}");
    s.ok(&["create", "configmap", "watched", "--from-literal=a=b"]);
    wait_for(
        &rx,
        &mut lines,
        |l| l.split_whitespace().take(2).eq(["watched", "1"]),
        "row for the new configmap",
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

#[tokio::test]
async fn kube_crate_crud_conflict_and_watch() {
    let s = Server::start();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.expect("list");
    let start_rv = list.metadata.resource_version.clone().expect("list rv");

    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}, "data": {"a": "1"}}))
            .unwrap();
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created.metadata.creation_timestamp.is_some());

    // Optimistic concurrency: a write with a stale resourceVersion is 409.
    let mut fresh = created.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = cms
        .replace(&name, &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    match cms.replace(&name, &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(cms.get(&name).await.unwrap().data.unwrap()["a"], "2");

    // A PUT that leaves out defaulted fields changes nothing about them
    // (pods are strict about spec changes).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod: Pod = serde_json::from_value(pod_json("plain", None)).unwrap();
    // No token volume: ServiceAccount admission adds one on create only,
    // and a PUT without it would change the spec (kube refuses that too).
    pod.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    let stored = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let mut again = pod.clone();
    again.metadata.resource_version = stored.metadata.resource_version.clone();
    again.metadata.labels = Some([("l".to_string(), "v".to_string())].into());
    let replaced = pods
        .replace("plain", &PostParams::default(), &again)
        .await
        .expect("replace pod");
    assert_eq!(replaced.metadata.labels.unwrap()["l"], "v");
    assert_eq!(
        replaced.spec.unwrap().restart_policy.as_deref(),
        Some("Always")
    );

    // Patches: merge and JSON patch.
    let p = kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    cms.patch(&name, &Default::default(), &p)
        .await
        .expect("merge patch");
    let p: kube::api::Patch<()> = kube::api::Patch::Json(
        serde_json::from_value(json!([{"op": "add", "path": "/data/b", "value": "2"}])).unwrap(),
    );
    let patched = cms
        .patch(&name, &Default::default(), &p)
        .await
        .expect("json patch");
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(patched.data.unwrap()["b"], "2");

    // Watch from the first list's resourceVersion replays what came after.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &start_rv)
        .await
        .expect("watch")
        .boxed();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .ok()
        .flatten()
    {
        match ev.expect("event") {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen[0], ("ADDED", name.clone()));
    assert!(
        seen[1..].iter().all(|e| *e == ("MODIFIED", name.clone())),
        "{seen:?}"
    );

    // Pagination.
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("page-{i}"), "labels": {"page": "yes"}}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(2);
    loop {
        let page = cms.list(&lp).await.expect("page");
        assert!(page.items.len() <= 2);
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names, ["page-0", "page-1", "page-2", "page-3", "page-4"]);

    // Streaming list: initial ADDED events, then a bookmark marking their end.
    let mut stream = cms
        .watch(
            &WatchParams::streaming_lists()
                .labels("page=yes")
                .timeout(10),
            "0",
        )
        .await
        .expect("streaming watch")
        .boxed();
    let mut added = 0;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        match ev {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 5);
    drop(stream);

    // deletecollection with a selector removes just the selection.
    cms.delete_collection(
        &Default::default(),
        &ListParams::default().labels("page=yes"),
    )
    .await
    .expect("delete collection");
    let left = cms.list(&ListParams::default()).await.unwrap();
    assert!(left.items.iter().all(|c| {
        !c.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .starts_with("page-")
    }));
    assert!(
        left.items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name.as_str()))
    );
}

#[tokio::test]
async fn watch_bookmarks_and_gone_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &["--bookmark-interval", "1s"]);
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a bookmark within 5s")
        .expect("stream open")
        .expect("event");
    assert!(matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
    drop(stream);

    // After a restart, the watch history starts anew: an old
    // resourceVersion is 410 Gone, and clients must re-list.
    s.kill9();
    let s2 = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s2.client().await, "default");
    assert!(cms.get("one").await.is_ok());
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn graceful_delete_of_bound_pods() {
    let s = Server::start();
    let pods: Api<Pod> = Api::namespaced(s.client().await, "default");
    let bound: Pod = serde_json::from_value(pod_json("bound", Some("n1"))).unwrap();
    pods.create(&PostParams::default(), &bound).await.unwrap();
    pods.delete("bound", &Default::default())
        .await
        .expect("delete");
    let pod = pods
        .get("bound")
        .await
        .expect("still there while terminating");
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    let table = s.ok(&["get", "pod", "bound"]);
    assert!(table.contains("Terminating"), "{table}");
    // The kubelet's final delete.
    pods.delete("bound", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // Garbage collection by ownerReferences: deleting the owner deletes its
    // dependents (a bound one gracefully), unless asked to orphan them.
    let owner: Pod = serde_json::from_value(pod_json("owner", None)).unwrap();
    let owner = pods.create(&PostParams::default(), &owner).await.unwrap();
    let owned = |name: &str, node: Option<&str>| -> Pod {
        let mut p = pod_json(name, node);
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
            "name": "owner", "uid": owner.metadata.uid.clone().unwrap()}]);
        serde_json::from_value(p).unwrap()
    };
    pods.create(&PostParams::default(), &owned("child", None))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &owned("bound-child", Some("n1")))
        .await
        .unwrap();
    pods.delete("owner", &Default::default()).await.unwrap();
    assert!(pods.get_opt("owner").await.unwrap().is_none());
    assert!(pods.get_opt("child").await.unwrap().is_none());
    let bound_child = pods
        .get("bound-child")
        .await
        .expect("terminating, not gone");
    assert!(bound_child.metadata.deletion_timestamp.is_some());

    let owner: Pod = serde_json::from_value(pod_json("owner", None)).unwrap();
    let owner = pods.create(&PostParams::default(), &owner).await.unwrap();
    let mut p = pod_json("orphan", None);
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
        "name": "owner", "uid": owner.metadata.uid.clone().unwrap()}]);
    pods.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
        .await
        .unwrap();
    let orphan = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..Default::default()
    };
    pods.delete("owner", &orphan).await.unwrap();
    let kept = pods.get("orphan").await.expect("orphaned, not deleted");
    assert!(kept.metadata.owner_references.is_none());

    // Deleting a namespace: Terminating while a bound pod terminates, no new
    // content meanwhile, gone with the kubelet's final delete of the pod.
    s.ok(&["create", "namespace", "doomed"]);
    let in_doomed: Api<Pod> = Api::namespaced(s.client().await, "doomed");
    let p: Pod = serde_json::from_value(pod_json("running", Some("n1"))).unwrap();
    in_doomed.create(&PostParams::default(), &p).await.unwrap();
    s.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let phase = s.ok(&[
        "get",
        "namespace",
        "doomed",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Terminating");
    assert!(
        in_doomed
            .get("running")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = s.fails(&["-n", "doomed", "create", "configmap", "late"]);
    assert!(err.contains("being terminated"), "{err}");
    in_doomed
        .delete(
            "running",
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await
        .unwrap();
    let err = s.fails(&["get", "namespace", "doomed"]);
    assert!(err.contains("not found"), "{err}");

    // pods/binding: the scheduler's way onto a node, once.
    let pending: Pod = serde_json::from_value(pod_json("pending", None)).unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    let binding = |node: &str| {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "pending"}, "target": {"kind": "Node", "name": node}}))
        .unwrap()
    };
    let path = "/api/v1/namespaces/default/pods/pending/binding";
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            binding("n1"),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            binding("n2"),
        )
        .await;
    assert_eq!(code, 409);
    let pod = pods.get("pending").await.unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
}

#[tokio::test]
async fn authentication_and_bad_input() {
    use reqwest::Method;
    let s = Server::start();
    // Anonymous: 401 with a Status body.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            None,
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(code, 401);
    assert_eq!(body["kind"], "Status");
    let (code, _) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            Some("wrong"),
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(code, 401);
    let (code, _) = s.call(Method::GET, "/healthz", None, "", vec![]).await;
    assert_eq!(code, 200);
    // A token user without system:masters may not read objects.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            Some("viewer-token"),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // The admin token works.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "NamespaceList");

    let post = |body: Vec<u8>, ct: &'static str| {
        s.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(ADMIN_TOKEN),
            ct,
            body,
        )
    };
    // Malformed JSON: 400 Status, nothing stored.
    let (code, body) = post(b"{\"metadata\": {".to_vec(), "application/json").await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    // Wrong types: 400.
    let (code, _) = post(
        br#"{"metadata": {"name": "t"}, "data": 5}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400);
    // Oversized: 413.
    let big = format!(
        r#"{{"metadata": {{"name": "big"}}, "data": {{"a": "{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, _) = post(big.into_bytes(), "application/json").await;
    assert_eq!(code, 413);
    // Unknown fields with fieldValidation=Strict: 400.
    let (code, body) = s
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            Some(ADMIN_TOKEN),
            "application/json",
            br#"{"metadata": {"name": "strict"}, "extra": 1}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"extra\""),
        "{body}"
    );
    // Invalid objects: 422 with field paths.
    let (code, body) = s
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(ADMIN_TOKEN),
            "application/json",
            serde_json::to_vec(
                &json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}),
            )
            .unwrap(),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.containers[0].image"]);
    // Invalid selectors: 400.
    let (code, _) = s
        .call(
            Method::GET,
            "/api/v1/pods?labelSelector=a%20in%20(b",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 400);
    // YAML bodies, as kube-apiserver takes them.
    let (code, body) = post(
        b"metadata:\n  name: from-yaml\ndata:\n  k: v\n".to_vec(),
        "application/yaml",
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["data"]["k"], "v");
    let (code, _) = post(b"metadata: [unclosed\n".to_vec(), "application/yaml").await;
    assert_eq!(code, 400);
    let (code, _) = s
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps/from-yaml",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    // Duplicate: 409 AlreadyExists.
    let (code, _) = post(
        br#"{"metadata": {"name": "dup"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = post(
        br#"{"metadata": {"name": "dup"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    // Bad patches and bodies: 4xx Status errors, never a 5xx.
    let cm_path = "/api/v1/namespaces/default/configmaps/dup";
    for (method, ct, body, want) in [
        (
            Method::PATCH,
            "application/json-patch+json",
            &b"{\"not\": \"a list\"}"[..],
            400,
        ),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"test","path":"/data/x","value":"1"}]"#,
            422,
        ),
        (
            Method::PATCH,
            "application/strategic-merge-patch+json",
            b"[1, 2]",
            400,
        ),
        (
            Method::PATCH,
            "application/merge-patch+json",
            b"\xff\xfe",
            400,
        ),
        (Method::PATCH, "text/plain", b"{}", 415),
        (
            Method::PATCH,
            "application/merge-patch+json",
            br#"{"metadata": {"name": "other"}}"#,
            400,
        ),
        (
            Method::PATCH,
            "application/merge-patch+json",
            br#"{"data": {"a": 1}}"#,
            400,
        ),
        (
            Method::PUT,
            "application/json",
            br#"{"metadata": {"name": "other"}}"#,
            400,
        ),
        (
            Method::PUT,
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\xff",
            400,
        ),
        (Method::PUT, "application/json", b"null", 400),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"","value":[1]}]"#,
            400,
        ),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/metadata","value":"x"}]"#,
            400,
        ),
    ] {
        let (code, status) = s
            .call(
                method.clone(),
                cm_path,
                Some(ADMIN_TOKEN),
                ct,
                body.to_vec(),
            )
            .await;
        assert_eq!(
            code,
            want,
            "{method} {ct} {}: {status}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(status["kind"], "Status");
    }
    let (code, _) = s.call(Method::GET, "/readyz", None, "", vec![]).await;
    assert_eq!(code, 200);
    let (_, dup) = s
        .call(Method::GET, cm_path, Some(ADMIN_TOKEN), "", vec![])
        .await;
    assert!(dup.get("data").is_none(), "{dup}");
    // None of the bad requests left anything behind.
    let names = s.ok(&["get", "configmaps", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["configmap/dup", "configmap/kube-root-ca.crt"]
    );
}

#[tokio::test]
async fn node_identity_is_restricted_to_its_own_objects() {
    use reqwest::Method;
    let s = Server::start();
    let admin = |path: &'static str, body: Value| {
        s.call(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
    };
    assert_eq!(
        admin(
            "/api/v1/namespaces/default/pods",
            pod_json("mine", Some("n1"))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        admin(
            "/api/v1/namespaces/default/pods",
            pod_json("theirs", Some("n2"))
        )
        .await
        .0,
        201
    );

    let node_patch = |path: &'static str| {
        s.call(
            Method::PATCH,
            path,
            Some(N1_TOKEN),
            "application/merge-patch+json",
            br#"{"status": {"phase": "Running"}}"#.to_vec(),
        )
    };
    let (code, body) = node_patch("/api/v1/namespaces/default/pods/mine/status").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["phase"], "Running");
    let (code, body) = node_patch("/api/v1/namespaces/default/pods/theirs/status").await;
    assert_eq!(code, 403, "{body}");
    // Spec edits are not for nodes at all.
    let (code, _) = node_patch("/api/v1/namespaces/default/pods/mine").await;
    assert_eq!(code, 403);
    let (code, _) = s
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/pods/theirs",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);
    let pods = s.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(pods, "Running Pending");

    // Its own Node and Lease, nobody else's.
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let create_as_node = |path: &'static str, body: Value| {
        s.call(
            Method::POST,
            path,
            Some(N1_TOKEN),
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
    };
    assert_eq!(create_as_node("/api/v1/nodes", node("n1")).await.0, 201);
    assert_eq!(create_as_node("/api/v1/nodes", node("n2")).await.0, 403);
    let (code, _) = s
        .call(
            Method::PATCH,
            "/api/v1/nodes/n2",
            Some(N1_TOKEN),
            "application/merge-patch+json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(code, 403);
    let lease = |name: &str| json!({"metadata": {"name": name}, "spec": {"holderIdentity": name}});
    assert_eq!(
        create_as_node(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            lease("n1")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        create_as_node(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            lease("n2")
        )
        .await
        .0,
        403
    );
    let (code, _) = s
        .call(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
            Some(N1_TOKEN),
            "application/json",
            serde_json::to_vec(&lease("n2")).unwrap(),
        )
        .await;
    assert_eq!(code, 403);
    // Nodes may read.
    let (code, _) = s
        .call(Method::GET, "/api/v1/pods", Some(N1_TOKEN), "", vec![])
        .await;
    assert_eq!(code, 200);

    // ...but secrets and config maps only as its pods use them, one at a time.
    for (path, body) in [
        (
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": "used"}, "stringData": {"k": "v"}}),
        ),
        (
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": "other"}, "stringData": {"k": "v"}}),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "cm-used"}}),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "cm-other"}}),
        ),
    ] {
        assert_eq!(admin(path, body).await.0, 201);
    }
    let mut uses = pod_json("uses", Some("n1"));
    uses["spec"]["containers"][0]["env"] =
        json!([{"name": "K", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]);
    uses["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "cm-used"}}]);
    assert_eq!(admin("/api/v1/namespaces/default/pods", uses).await.0, 201);
    let node_get = |path: &'static str| s.call(Method::GET, path, Some(N1_TOKEN), "", vec![]);
    for (path, want) in [
        ("/api/v1/namespaces/default/secrets/used", 200),
        ("/api/v1/namespaces/default/secrets/other", 403),
        ("/api/v1/namespaces/default/secrets", 403),
        ("/api/v1/secrets", 403),
        (
            "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dused",
            200,
        ),
        (
            "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dother",
            403,
        ),
        ("/api/v1/namespaces/default/configmaps/cm-used", 200),
        ("/api/v1/namespaces/default/configmaps/cm-other", 403),
        (
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            200,
        ),
    ] {
        let (code, body) = node_get(path).await;
        assert_eq!(code, want, "{path}: {body}");
    }
    let nodes = s.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), "node/n1");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.lock().unwrap().push(format!("cm-{i}")),
                    Err(_) => break,
                }
            }
        })
    };
    // Kill -9 in the middle of the writes, once a few are acknowledged
    // (however slowly a loaded machine makes them).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= 5 {
        assert!(
            Instant::now() < deadline && !writer.is_finished(),
            "the write loop acknowledged {} writes in 60s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 5,
        "the write loop made too little progress: {}",
        acked.len()
    );

    let s2 = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s2.client().await, "default");
    let names: std::collections::HashSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // And the store still takes writes.
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after"}})).unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("write after restart");
}

#[test]
fn kubectl_auth_server_side_apply_and_impersonation() {
    let s = Server::start();
    let who = s.ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "kubernetes-admin");
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let node = ["--as=system:node:n1", "--as-group=system:nodes"];
    let out = s.kubectl(&["auth", "can-i", "create", "configmaps", node[0], node[1]]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let who = s.ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
        node[0],
        node[1],
    ]);
    assert_eq!(who, "system:node:n1");
    let err = s.fails(&["create", "configmap", "x", node[0], node[1]]);
    assert!(err.contains("forbidden"), "{err}");
    // A non-admin may not impersonate.
    let out = s.kubectl(&["--token", "viewer-token", "--as", "alice", "get", "pods"]);
    assert!(!out.status.success());

    // Server-side apply creates, then merges.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], cm);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("serverside-applied"));
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm.replace("\"1\"", "\"2\""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "cm", "ssa", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn node_client_certificate_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let node_kc = tmp.path().join("n1.kubeconfig");
    let flag = format!("n1={}", node_kc.display());
    let s = Server::start_in(tmp.path(), &["--write-node-kubeconfig", &flag]);
    s.ok(&[
        "run",
        "mine",
        "--image=busybox",
        "--overrides={\"spec\":{\"nodeName\":\"n1\"}}",
    ]);
    s.ok(&[
        "run",
        "theirs",
        "--image=busybox",
        "--overrides={\"spec\":{\"nodeName\":\"n2\"}}",
    ]);
    let as_node = |args: &[&str]| {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&node_kc)
            .arg("--cache-dir")
            .arg(tmp.path().join("node-cache"))
            .args(args)
            .output()
            .expect("kubectl")
    };
    let out = as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:node:n1");
    let out = as_node(&["get", "pods", "-o", "name"]);
    assert!(out.status.success());
    let patch = r#"{"status":{"phase":"Running"}}"#;
    let out = as_node(&[
        "patch",
        "pod",
        "mine",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_node(&[
        "patch",
        "pod",
        "theirs",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    let out = as_node(&["delete", "pod", "theirs"]);
    assert!(!out.status.success());
    assert_eq!(
        s.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]),
        "Running Pending"
    );
}

#[test]
fn events_expire_after_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--event-ttl", "2s"]);
    let event = "apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\ninvolvedObject:\n  kind: Pod\n  name: p\n  namespace: default\nreason: Test\nmessage: hello\ntype: Normal\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], event);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ok(&["get", "events"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(
        table.contains("pod/p") && table.contains("hello"),
        "{table}"
    );
    // events.k8s.io/v1, as newer recorders (client-go, kube-rs) write them.
    let new_style = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: e2\neventTime: \"2026-01-01T00:00:00.000000Z\"\nregarding:\n  kind: Node\n  name: n1\nreason: Started\nnote: node up\ntype: Normal\naction: Start\nreportingController: deckhand\nreportingInstance: n1\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], new_style);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ok(&["get", "events.events.k8s.io"]);
    assert!(
        table.contains("node/n1") && table.contains("node up"),
        "{table}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if s.ok(&["get", "events", "-o", "name"]).trim().is_empty()
            && s.ok(&["get", "events.events.k8s.io", "-o", "name"])
                .trim()
                .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "event did not expire");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing_and_watch_sees_every_one() {
    let s = Server::start();
    let cms: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "counter"}, "data": {"n": "0"}}))
            .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default()
                .fields("metadata.name=counter")
                .timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();

    // 8 writers x 5 increments, each a read-modify-write retried on 409.
    let (writers, each) = (8, 5);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                loop {
                    let mut cur = cms.get("counter").await.unwrap();
                    let n: u32 = cur.data.as_ref().unwrap()["n"].parse().unwrap();
                    cur.data = Some([("n".to_string(), (n + 1).to_string())].into());
                    match cms.replace("counter", &PostParams::default(), &cur).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                        Err(e) => panic!("update failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let total = writers * each;
    let final_n = cms.get("counter").await.unwrap().data.unwrap()["n"].clone();
    assert_eq!(
        final_n,
        total.to_string(),
        "lost updates ({conflicts} conflicts)"
    );

    // The watch saw every update, in resourceVersion order, with the values
    // 1..=total: nothing skipped, nothing doubled.
    let mut seen = Vec::new();
    let mut last_rv = rv.parse::<u64>().unwrap();
    while seen.len() < total {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        let WatchEvent::Modified(cm) = ev else {
            panic!("unexpected {ev:?}");
        };
        let rv: u64 = cm.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv, "resourceVersions out of order");
        last_rv = rv;
        seen.push(cm.data.unwrap()["n"].parse::<usize>().unwrap());
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
}

/// Sign `claims` with the server's service-account key (as a test can read
/// it from the data dir), to make tokens the API would never issue.
fn sign_with_server_key(dir: &Path, claims: &Value) -> String {
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let pem = std::fs::read_to_string(dir.join("data/pki/sa.key")).expect("sa.key");
    let der = rcgen::KeyPair::from_pem(&pem).expect("key").serialize_der();
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &rng,
    )
    .expect("p256 key");
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("jwt");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

#[tokio::test]
async fn service_account_tokens() {
    let s = Server::start();
    // Every namespace gets its default service account.
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["get", "serviceaccount", "default", "-n", "team"]);

    // kubectl create token (protobuf body): a JWT for the API audience.
    let token = s.ok(&["create", "token", "default", "-n", "team"]);
    let token = token.trim();
    let claims = jwt_claims(token);
    assert_eq!(claims["sub"], "system:serviceaccount:team:default");
    assert_eq!(
        claims["aud"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);
    let whoami = |token: &str| {
        s.kubectl(&[
            "--token",
            token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
    };
    let out = whoami(token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        who.starts_with("system:serviceaccount:team:default "),
        "{who}"
    );
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ] {
        assert!(who.contains(&format!("\"{g}\"")), "{who}");
    }
    // A service account is no admin.
    let err = String::from_utf8_lossy(
        &s.kubectl(&["--token", token, "get", "pods", "-n", "team"])
            .stderr,
    )
    .into_owned();
    assert!(err.contains("forbidden"), "{err}");

    // Wrong audience, too short a lifetime, a missing service account.
    let other = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--audience",
        "vault",
    ]);
    assert_eq!(jwt_claims(other.trim())["aud"], json!(["vault"]));
    let err = String::from_utf8_lossy(&whoami(other.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");
    let err = s.fails(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--duration",
        "5m",
    ]);
    assert!(err.contains("less than 10 minutes"), "{err}");
    let err = s.fails(&["create", "token", "ghost", "-n", "team"]);
    assert!(err.contains("not found"), "{err}");
    let long = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--duration",
        "2h",
    ]);
    let c = jwt_claims(long.trim());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );

    // A deleted service account's tokens stop working, even once one of
    // the same name is made again.
    s.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let robot = s.ok(&["create", "token", "robot", "-n", "team"]);
    assert!(whoami(robot.trim()).status.success());
    s.ok(&["delete", "serviceaccount", "robot", "-n", "team"]);
    s.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let err = String::from_utf8_lossy(&whoami(robot.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // Bound to a pod: valid while the pod lives.
    let pods: Api<Pod> = Api::namespaced(s.client().await, "team");
    let pod: Pod = serde_json::from_value(pod_json("web", None)).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let bound = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    let c = jwt_claims(bound.trim());
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(
        c["kubernetes.io"]["pod"]["uid"].as_str(),
        pod.metadata.uid.as_deref()
    );
    assert!(whoami(bound.trim()).status.success());
    let err = s.fails(&[
        "create",
        "token",
        "robot",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    assert!(err.contains("different serviceaccount"), "{err}");
    s.ok(&["delete", "pod", "web", "-n", "team"]);
    let err = String::from_utf8_lossy(&whoami(bound.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // Expiry: the same claims signed with the server's key work while
    // current and are refused once past exp.
    let sa_uid = s.ok(&[
        "get",
        "sa",
        "default",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let made = |exp: i64| {
        sign_with_server_key(
            &s.dir,
            &json!({"iss": "https://kubernetes.default.svc.cluster.local",
                "aud": ["https://kubernetes.default.svc.cluster.local"],
                "sub": "system:serviceaccount:team:default", "iat": now - 7200, "nbf": now - 7200,
                "exp": exp, "kubernetes.io": {"namespace": "team",
                "serviceaccount": {"name": "default", "uid": sa_uid}}}),
        )
    };
    assert!(whoami(&made(now + 600)).status.success());
    let err = String::from_utf8_lossy(&whoami(&made(now - 3600)).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // The issuer's discovery documents, and the key that signed the token.
    let (code, oidc) = s
        .call(
            reqwest::Method::GET,
            "/.well-known/openid-configuration",
            Some(token),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{oidc}");
    assert_eq!(
        oidc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(
        oidc["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/openid/v1/jwks")
    );
    let (code, jwks) = s
        .call(
            reqwest::Method::GET,
            "/openid/v1/jwks",
            Some(token),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{jwks}");
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let (code, _) = s
        .call(reqwest::Method::GET, "/openid/v1/jwks", None, "", vec![])
        .await;
    assert_eq!(code, 401);

    // A node may ask only for tokens bound to pods on it.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/serviceaccounts/default/token",
            Some(N1_TOKEN),
            "application/json",
            json!({"spec": {}}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let pod: Pod = serde_json::from_value(pod_json("onn1", Some("n1"))).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/serviceaccounts/default/token",
            Some(N1_TOKEN),
            "application/json",
            json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "onn1"}}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["status"]["token"].is_string());
    assert!(body["status"]["expirationTimestamp"].is_string());
    // The key survives a restart: tokens issued before still work.
    drop(pods);
    let dir = s.dir.clone();
    let token = token.to_string();
    let mut s = s;
    s.kill9();
    let _tmp = s._tmp.take();
    let s2 = Server::start_in(&dir, &[]);
    let out = s2.kubectl(&["--token", &token, "auth", "whoami"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in kubelet for the proxy tests (the real one does not exist
/// yet): HTTPS, client certificates required and checked against the
/// apiserver's CA (as a kubelet's --client-ca-file does). It answers
/// /containerLogs/... with the path, query and caller it saw, and accepts
/// an upgrade on /exec/..., after which it says what it was asked and
/// echoes every byte back. Stops when the handle is dropped (aborted).
struct FakeKubelet {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_kubelet(apiserver_ca: &Path) -> FakeKubelet {
    use hyper::body::Incoming;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(apiserver_ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let caller = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| {
                        x509_parser::parse_x509_certificate(c)
                            .ok()?
                            .1
                            .subject()
                            .iter_common_name()
                            .next()?
                            .as_str()
                            .ok()
                            .map(String::from)
                    })
                    .unwrap_or_default();
                let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    let caller = caller.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or("").to_string();
                        use http_body_util::BodyExt;
                        let mut resp = http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()).boxed_unsync(),
                        );
                        // The kubelet API's stream options (kube-apiserver
                        // translates kubectl's stdin/stdout/stderr to them).
                        let pairs: Vec<(String, String)> =
                            url::form_urlencoded::parse(query.as_bytes())
                                .into_owned()
                                .collect();
                        let one = |k: &str| pairs.iter().any(|(q, v)| q == k && v == "1");
                        let streams = one("input") || one("output") || one("error");
                        if (path.starts_with("/exec/") || path.starts_with("/attach/")) && !streams
                        {
                            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
                            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(
                                "you must specify at least 1 of stdin, stdout, stderr",
                            ))
                            .boxed_unsync();
                        } else if path == "/metrics" {
                            *resp.body_mut() =
                                http_body_util::Full::new(bytes::Bytes::from(format!(
                                    "metrics {query} caller {caller} method {}\n",
                                    req.method()
                                )))
                                .boxed_unsync();
                        } else if path.starts_with("/containerLogs/")
                            && query.contains("follow=true")
                        {
                            // A followed log: one line now, the next in 2 s.
                            let now = futures::stream::once(async {
                                Ok(hyper::body::Frame::data(bytes::Bytes::from("line 1\n")))
                            });
                            let later = futures::stream::once(async {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                                Ok(hyper::body::Frame::data(bytes::Bytes::from("line 2\n")))
                            });
                            *resp.body_mut() =
                                http_body_util::StreamBody::new(now.chain(later)).boxed_unsync();
                        } else if path.starts_with("/containerLogs/") {
                            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(
                                format!("log {path}\nquery {query}\ncaller {caller}\n"),
                            ))
                            .boxed_unsync();
                        } else if path.starts_with("/exec/")
                            && req
                                .headers()
                                .get("upgrade")
                                .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
                        {
                            // kubectl exec's WebSocket protocol (v5.channel.k8s.io):
                            // stdout on channel 1, the exit Status on channel 3.
                            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = upgrade.await else { return };
                                let mut io = hyper_util::rt::TokioIo::new(up);
                                let frame = |channel: u8, data: &[u8]| {
                                    let mut f = vec![0x82, (data.len() + 1) as u8, channel];
                                    f.extend_from_slice(data);
                                    f
                                };
                                let out = format!("exec ran {query}\n");
                                let mut bytes = frame(1, out.as_bytes());
                                bytes.extend(frame(3, br#"{"metadata":{},"status":"Success"}"#));
                                bytes.extend([0x88, 0x02, 0x03, 0xe8]);
                                let _ = io.write_all(&bytes).await;
                                let mut buf = [0u8; 1024];
                                while let Ok(Ok(n)) =
                                    tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
                                        .await
                                {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            });
                            let mut accept_input = key;
                            accept_input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
                            let digest = ring::digest::digest(
                                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                                &accept_input,
                            );
                            use base64::Engine;
                            let accept =
                                base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
                            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            let h = resp.headers_mut();
                            h.insert("connection", http::HeaderValue::from_static("Upgrade"));
                            h.insert("upgrade", http::HeaderValue::from_static("websocket"));
                            h.insert("sec-websocket-accept", accept.parse().unwrap());
                            h.insert(
                                "sec-websocket-protocol",
                                http::HeaderValue::from_static("v5.channel.k8s.io"),
                            );
                        } else if path.starts_with("/exec/")
                            && req.headers().contains_key("upgrade")
                        {
                            let proto = req.headers()["upgrade"].clone();
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = upgrade.await else { return };
                                let mut io = hyper_util::rt::TokioIo::new(up);
                                let hello = format!("exec {path}?{query}\n");
                                if io.write_all(hello.as_bytes()).await.is_err() {
                                    return;
                                }
                                let mut buf = [0u8; 1024];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            });
                            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            resp.headers_mut()
                                .insert("connection", http::HeaderValue::from_static("Upgrade"));
                            resp.headers_mut().insert("upgrade", proto);
                            resp.headers_mut().insert(
                                "x-stream-protocol-version",
                                http::HeaderValue::from_static("v4.channel.k8s.io"),
                            );
                        } else {
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    FakeKubelet { port, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_and_exec_are_proxied_to_the_kubelet() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = Server::start();
    let kubelet = fake_kubelet(&s.dir.join("data/pki/ca.crt")).await;
    let client = s.client().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = |name: &str, port: u16| -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
        .unwrap()
    };
    nodes
        .create(&PostParams::default(), &node("n1", kubelet.port))
        .await
        .unwrap();
    s.ok(&["create", "namespace", "team"]);
    let pods: Api<Pod> = Api::namespaced(client, "team");
    for (name, node) in [("web", Some("n1")), ("pending", None)] {
        let pod: Pod = serde_json::from_value(pod_json(name, node)).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    // kubectl logs, options passed through, as the apiserver's identity.
    let out = s.ok(&["logs", "web", "-n", "team", "--tail=3", "--timestamps"]);
    assert!(out.contains("log /containerLogs/team/web/c\n"), "{out}");
    assert!(out.contains("tailLines=3"), "{out}");
    assert!(out.contains("timestamps=true"), "{out}");
    assert!(
        out.contains("caller kube-apiserver-kubelet-client"),
        "{out}"
    );
    let out = s.ok(&["logs", "web", "-n", "team", "-c", "c", "--previous"]);
    assert!(out.contains("previous=true"), "{out}");
    let err = s.fails(&["logs", "web", "-n", "team", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = s.fails(&["logs", "pending", "-n", "team"]);
    assert!(err.contains("does not have a host assigned"), "{err}");
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/team/pods/web/log?tailLines=-1",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // Nodes do not read other pods' logs through the apiserver.
    let (code, _) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/team/pods/web/log",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);

    // An upgrade (exec over SPDY) through the apiserver, bytes both ways.
    let ca = std::fs::read(s.dir.join("data/pki/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = s.url.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let request = format!(
        "POST /api/v1/namespaces/team/pods/web/exec?command=sh&command=-c&stdin=true&stdout=true HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("exec /exec/") || !seen.ends_with(b"\n") {
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&seen)
        );
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.to_lowercase().contains("upgrade: spdy/3.1"), "{text}");
    assert!(
        text.contains("exec /exec/team/web/c?input=1&output=1&command=sh&command=-c\n"),
        "{text}"
    );
    conn.write_all(b"ping 1 2 3").await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 10 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, b"ping 1 2 3");

    // A followed log streams through as the kubelet writes it.
    let started = Instant::now();
    let mut follow = s
        .http()
        .get(format!(
            "{}/api/v1/namespaces/team/pods/web/log?follow=true",
            s.url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let first = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"line 1\n");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let second = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"line 2\n");
    assert!(started.elapsed() >= Duration::from_secs(2));

    // kubectl exec end to end (WebSocket through the apiserver).
    let out = s.ok(&["exec", "web", "-n", "team", "--", "echo", "hi"]);
    assert!(
        out.starts_with("exec ran output=1&error=1&command=echo&command=hi"),
        "{out}"
    );

    // nodes/{name}/proxy: the rest of the path and the query go to the
    // node's kubelet; a node may not use it.
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/nodes/n1/proxy/metrics?x=1",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!("metrics x=1 caller kube-apiserver-kubelet-client method GET\n")
    );
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/nodes/n1:{}/proxy/metrics", kubelet.port),
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.as_str().unwrap().contains("method POST"), "{body}");
    let (code, _) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/nodes/n1/proxy/metrics",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);

    // exec without an upgrade, and a kubelet that is not there.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/pods/web/exec?command=true",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nodes2: Api<k8s_openapi::api::core::v1::Node> = Api::all(s.client().await);
    nodes2
        .create(&PostParams::default(), &node("n2", dead_port))
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(pod_json("lost", Some("n2"))).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let err = s.fails(&["logs", "lost", "-n", "team"]);
    assert!(err.contains("error dialing backend"), "{err}");
    drop(kubelet);
}

#[tokio::test]
async fn openapi_v2_document() {
    let s = Server::start();
    let (code, doc) = s
        .call(
            reqwest::Method::GET,
            "/openapi/v2",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().unwrap();
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    let spec = &pod["properties"]["spec"];
    let spec_ref = spec.get("$ref").unwrap_or(&spec["allOf"][0]["$ref"]);
    assert_eq!(
        spec_ref, "#/definitions/io.k8s.api.core.v1.PodSpec",
        "{spec}"
    );
    // Every reference resolves, and no v3-only keyword is left.
    fn walk(v: &Value, defs: &serde_json::Map<String, Value>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix("#/definitions/").expect(r);
                    assert!(defs.contains_key(name), "dangling {r}");
                }
                for bad in ["nullable", "oneOf", "anyOf", "const", "$defs"] {
                    assert!(!m.contains_key(bad), "{bad} in {v}");
                }
                m.values().for_each(|x| walk(x, defs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, defs)),
            _ => {}
        }
    }
    walk(&doc, defs);
    let lease_path =
        &doc["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"];
    assert_eq!(
        lease_path["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Lease"
    );
    // client-go asks for protobuf only; it is told so and does without.
    let resp = s
        .http()
        .get(format!("{}/openapi/v2", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .header(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 406);
    let (code, _) = s
        .call(reqwest::Method::GET, "/openapi/v2", None, "", vec![])
        .await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn rbac_roles_bindings_and_authorizer() {
    let s = Server::start();
    let bob = ["--token", "viewer-token"];
    let as_bob = |args: &[&str]| {
        let mut all = bob.to_vec();
        all.extend_from_slice(args);
        s.kubectl(&all)
    };
    let out_of = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let err_of = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The default roles and bindings are there from the first start.
    let roles = s.ok(&["get", "clusterroles"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
    ] {
        assert!(
            roles.lines().any(|l| l.starts_with(&format!("{r} "))),
            "{r}: {roles}"
        );
    }
    assert!(roles.starts_with("NAME"), "{roles}");
    assert!(roles.contains("CREATED AT"), "{roles}");

    // bob (group dev) holds nothing yet.
    let o = as_bob(&["get", "pods"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));
    assert_eq!(out_of(&as_bob(&["auth", "can-i", "list", "pods"])), "no");
    // ...but may ask about himself (system:basic-user).
    assert_eq!(
        out_of(&as_bob(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}"
        ])),
        "bob"
    );

    // view in default, by a RoleBinding kubectl sends as protobuf.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "default",
    ]);
    let rb = s.ok(&["get", "rolebindings", "-n", "default", "-o", "wide"]);
    assert!(rb.contains("ROLE"), "{rb}");
    assert!(rb.contains("ClusterRole/view"), "{rb}");
    assert!(as_bob(&["get", "pods", "-n", "default"]).status.success());
    assert!(err_of(&as_bob(&["get", "pods", "-n", "kube-system"])).contains("forbidden"));
    assert_eq!(
        out_of(&as_bob(&["auth", "can-i", "list", "pods", "-n", "default"])),
        "yes"
    );
    assert_eq!(
        out_of(&as_bob(&[
            "auth", "can-i", "create", "pods", "-n", "default"
        ])),
        "no"
    );
    assert_eq!(
        out_of(&as_bob(&[
            "auth", "can-i", "get", "secrets", "-n", "default"
        ])),
        "no"
    );
    let list = out_of(&as_bob(&["auth", "can-i", "--list", "-n", "default"]));
    assert!(list.contains("pods/log"), "{list}");
    // An admin asking on bob's behalf gets the same answers.
    assert_eq!(
        s.ok(&[
            "auth", "can-i", "list", "pods", "-n", "default", "--as", "bob"
        ])
        .trim(),
        "yes"
    );

    // A Role limited by resourceNames, bound to bob's group.
    s.ok(&["create", "configmap", "one", "-n", "default"]);
    s.ok(&["create", "configmap", "two", "-n", "default"]);
    s.ok(&[
        "create",
        "role",
        "cm-one",
        "--verb=update,patch",
        "--resource=configmaps",
        "--resource-name=one",
        "-n",
        "default",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "dev-cm-one",
        "--role=cm-one",
        "--group=dev",
        "-n",
        "default",
    ]);
    assert!(
        as_bob(&["label", "configmap", "one", "x=y", "-n", "default"])
            .status
            .success()
    );
    let o = as_bob(&["label", "configmap", "two", "x=y", "-n", "default"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // A service account bound cluster-wide to edit.
    s.ok(&["create", "serviceaccount", "robot", "-n", "default"]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "robot-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:robot",
    ]);
    let token = s.ok(&["create", "token", "robot"]);
    let robot = ["--token", token.trim()];
    let o = s.kubectl(&[
        robot[0],
        robot[1],
        "create",
        "configmap",
        "made-by-robot",
        "-n",
        "kube-public",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    let o = s.kubectl(&[robot[0], robot[1], "get", "nodes"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // Escalation: a namespace admin may grant what they hold, not more.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-admin",
        "--clusterrole=admin",
        "--user=bob",
        "-n",
        "default",
    ]);
    let o = as_bob(&[
        "create",
        "rolebinding",
        "bob-god",
        "--clusterrole=cluster-admin",
        "--user=bob",
        "-n",
        "default",
    ]);
    assert!(err_of(&o).contains("not currently held"), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "default",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "default",
    ]);
    assert!(err_of(&o).contains("not currently held"), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "rolebinding",
        "alice-reads",
        "--role=pod-reader",
        "--user=alice",
        "-n",
        "default",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    // Still only in default.
    let o = as_bob(&[
        "create",
        "rolebinding",
        "x",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "kube-system",
    ]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // roleRef is immutable; bad bindings are 422.
    let err = s.fails(&["patch", "rolebinding", "bob-view", "-n", "default", "--type=merge", "-p",
        r#"{"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"edit"}}"#]);
    assert!(err.contains("cannot change roleRef"), "{err}");
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(ADMIN_TOKEN),
            "application/json",
            json!({"metadata": {"name": "bad"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                   "subjects": [{"kind": "Robot", "name": "r"}]})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    // SubjectAccessReview: admins may ask about others, bob may not.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "groups": ["dev"], "resourceAttributes":
            {"verb": "list", "resource": "pods", "namespace": "default"}}});
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            sar.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["allowed"], true);
    let mut other = sar.clone();
    other["spec"]["resourceAttributes"]["namespace"] = json!("kube-system");
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            other.to_string().into_bytes(),
        )
        .await;
    assert_eq!(body["status"]["allowed"], false);
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some("viewer-token"),
            "application/json",
            sar.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 403);

    // Deleting the binding takes the permission away at once.
    s.ok(&[
        "delete",
        "rolebinding",
        "bob-view",
        "bob-admin",
        "-n",
        "default",
    ]);
    assert_eq!(
        out_of(&as_bob(&["auth", "can-i", "list", "pods", "-n", "default"])),
        "no"
    );
}

#[test]
fn server_side_apply_field_ownership() {
    let s = Server::start();
    let apply = |manager: &str, yaml: &str, extra: &[&str]| {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-f",
            "-",
        ];
        args.extend_from_slice(extra);
        s.kubectl_stdin(&args, yaml)
    };
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n{data}")
    };
    let rv = || {
        s.ok(&[
            "get",
            "cm",
            "owned",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let fields = || -> Value {
        let out = s.ok(&["get", "cm", "owned", "-o", "json", "--show-managed-fields"]);
        serde_json::from_str::<Value>(&out).unwrap()["metadata"]["managedFields"].clone()
    };
    let owner_of = |mf: &Value, manager: &str| -> Value {
        mf.as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    };
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };

    ok(apply("alpha", &cm("  a: \"1\"\n  b: \"2\"\n"), &[]));
    let mf = fields();
    assert_eq!(mf[0]["manager"], "alpha");
    assert_eq!(mf[0]["operation"], "Apply");
    assert_eq!(mf[0]["fieldsType"], "FieldsV1");
    assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {"f:a": {}, "f:b": {}}}));
    // The same apply again changes nothing.
    let before = rv();
    ok(apply("alpha", &cm("  a: \"1\"\n  b: \"2\"\n"), &[]));
    assert_eq!(rv(), before);

    // Another manager: the same value is shared, a new one conflicts.
    ok(apply("beta", &cm("  a: \"1\"\n"), &[]));
    let o = apply("beta", &cm("  a: \"9\"\n"), &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("conflict with \"alpha\""), "{err}");
    assert!(err.contains(".data.a"), "{err}");
    assert_eq!(
        s.ok(&["get", "cm", "owned", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    // Forced, beta takes the field.
    ok(apply("beta", &cm("  a: \"9\"\n"), &["--force-conflicts"]));
    let mf = fields();
    assert_eq!(owner_of(&mf, "beta"), json!({"f:data": {"f:a": {}}}));
    assert_eq!(owner_of(&mf, "alpha"), json!({"f:data": {"f:b": {}}}));

    // alpha stops applying b: it goes; beta's a stays.
    ok(apply("alpha", &cm("  c: \"3\"\n"), &[]));
    assert_eq!(
        s.ok(&["get", "cm", "owned", "-o", "jsonpath={.data}"]),
        r#"{"a":"9","c":"3"}"#
    );

    // A plain update takes what it changes and can then conflict.
    s.ok(&["label", "cm", "owned", "tier=web"]);
    let mf = fields();
    let label = mf
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "Update")
        .expect("update entry")
        .clone();
    assert_eq!(label["manager"], "kubectl-label");
    assert_eq!(
        label["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
    let o = apply(
        "alpha",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  labels:\n    tier: db\ndata:\n  c: \"3\"\n",
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("conflict with \"kubectl-label\""), "{err}");
    assert!(err.contains(".metadata.labels.tier"), "{err}");

    // A create's manager owns what it set: applying another value conflicts.
    s.ok(&["create", "configmap", "made", "--from-literal=k=1"]);
    let o = s.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "alpha",
            "-f",
            "-",
        ],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\ndata:\n  k: \"2\"\n",
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("conflict with \"kubectl-create\""), "{err}");

    // Lists by merge key: containers are owned per name.
    let pod = |image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        )
    };
    ok(apply("alpha", &pod("busybox:1"), &[]));
    let out = s.ok(&["get", "pod", "p", "-o", "json", "--show-managed-fields"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = &v["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
    assert_eq!(f["f:image"], json!({}), "{v}");
    assert_eq!(f["."], json!({}), "{v}");
    let o = apply("beta", &pod("busybox:2"), &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains(".spec.containers[name=\"c\"].image"), "{err}");
}

#[tokio::test]
async fn token_review_and_impersonation_by_rbac() {
    let s = Server::start();
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = s.ok(&["create", "token", "robot"]);
    let review = |token: &str, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": audiences}})
        .to_string()
        .into_bytes()
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    // A node may ask (webhook authentication), as may an admin.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(N1_TOKEN),
            "application/json",
            review(token.trim(), json!([])),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["authenticated"], true);
    assert_eq!(
        body["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert!(
        body["status"]["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review("nope", json!([])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false);
    // Audiences: a token for "vault" reviews fine for vault, not for the API.
    let vault = s.ok(&["create", "token", "robot", "--audience", "vault"]);
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review(vault.trim(), json!(["vault"])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], true, "{body}");
    assert_eq!(body["status"]["audiences"], json!(["vault"]));
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review(vault.trim(), json!([])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false);
    // bob may not ask.
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some("viewer-token"),
            "application/json",
            review(token.trim(), json!([])),
        )
        .await;
    assert_eq!(code, 403);

    // Impersonation through RBAC: edit lets bob act as service accounts of
    // the namespace, not as users.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    let out = s.ok(&[
        "--token",
        "viewer-token",
        "auth",
        "whoami",
        "--as",
        "system:serviceaccount:default:robot",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert!(
        out.starts_with("system:serviceaccount:default:robot "),
        "{out}"
    );
    assert!(out.contains("system:serviceaccounts:default"), "{out}");
    // (kubectl's discovery is refused first, so it reports a bare Forbidden.)
    let err = s.fails(&["--token", "viewer-token", "get", "pods", "--as", "alice"]);
    assert!(err.contains("Forbidden"), "{err}");
    let resp = s
        .http()
        .get(format!("{}/api/v1/namespaces/kube-system/pods", s.url))
        .bearer_auth("viewer-token")
        .header(
            "Impersonate-User",
            "system:serviceaccount:kube-system:default",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("cannot impersonate resource") && text.contains("serviceaccounts"),
        "{text}"
    );
}

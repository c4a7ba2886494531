//! kubectl against the server: the basic workflow and its tables, apply,
//! watch, auth can-i / server-side apply / impersonation, and field
//! ownership under server-side apply.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

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
    assert!(err.contains("is not a known field selector"), "{err}");

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

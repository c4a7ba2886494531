//! End-to-end tests of pod volumes on `deckhand node`: the real `deckhand
//! apiserver`, the real node agent on real containerd, driven with
//! /usr/bin/kubectl. Run as root, holding /tmp/deckhand-integration.lock.
//!
//! The containers copy what they see into a shared emptyDir, which the test
//! reads on the host under the node's root dir (no exec or logs needed).
//! Each test takes its own node name and CNI subnet 10.229.<index>.0/24.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::node::{ControlPlane, DeckhandApiserver, NodeAgent, Runtime, wait_for};
use serde_json::{Value, json};

const BUSYBOX: &str = common::BUSYBOX;
const OCTET: u8 = 229;

fn pod_manifest(name: &str, node: &str, labels: Value, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec})
}

fn busybox(name: &str, script: &str, mounts: Value) -> Value {
    json!({"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script], "volumeMounts": mounts})
}

fn wait_node_ready(plane: &dyn ControlPlane, node: &NodeAgent) {
    wait_for(
        "the Node to be Ready",
        Duration::from_secs(60),
        || node.log(),
        || {
            let n = plane.get(&["node", &node.name])?;
            let ready = n["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(())
        },
    );
}

fn diagnostics(plane: &dyn ControlPlane, node: &NodeAgent, name: &str) -> String {
    format!(
        "pod: {}\nevents: {:?}\nnode log:\n{}",
        plane
            .pod(name)
            .map(|p| p["status"].to_string())
            .unwrap_or_default(),
        plane.events_of(name),
        node.log()
    )
}

fn wait_running(
    plane: &dyn ControlPlane,
    node: &NodeAgent,
    name: &str,
    timeout: Duration,
) -> Value {
    wait_for(
        &format!("pod {name} Running"),
        timeout,
        || diagnostics(plane, node, name),
        || {
            plane
                .pod(name)
                .filter(|p| p["status"]["phase"] == "Running")
        },
    )
}

fn uid(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap().to_string()
}

fn volume_path(node: &NodeAgent, uid: &str, plugin: &str, name: &str) -> PathBuf {
    node.root_dir()
        .join("pods")
        .join(uid)
        .join("volumes")
        .join(plugin)
        .join(name)
}

/// The file's contents once `check` accepts them.
fn wait_file(
    plane: &dyn ControlPlane,
    node: &NodeAgent,
    pod: &str,
    path: &Path,
    timeout: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    wait_for(
        &format!("{} as expected", path.display()),
        timeout,
        || {
            format!(
                "file: {:?}\n{}",
                std::fs::read_to_string(path),
                diagnostics(plane, node, pod)
            )
        },
        || std::fs::read_to_string(path).ok().filter(|s| check(s)),
    )
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&dir))
        .map(String::from)
        .collect()
}

fn server_of(plane: &dyn ControlPlane) -> String {
    plane.ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ])
}

/// A configMap, a secret, the downward API, two emptyDirs (one a tmpfs),
/// subPath and the automatic service-account token in one pod; contents
/// follow their objects without a restart; nothing stays mounted after the
/// pod is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_sees_its_volumes_and_their_updates() {
    let plane = DeckhandApiserver::start(&["vol9-volumes"]);
    let node = NodeAgent::start(&plane, "vol9-volumes", Runtime::InProcess, OCTET, 1).await;
    wait_node_ready(&plane, &node);
    plane.ok(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=greeting=hello",
    ]);
    plane.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=pw=hunter2",
    ]);

    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let reader = format!(
        "while true; do \
           cat /config/greeting > /shared/greeting.tmp && mv /shared/greeting.tmp /shared/greeting; \
           cat /sub-greeting > /shared/sub-greeting; \
           cat /podinfo/labels > /shared/labels.tmp && mv /shared/labels.tmp /shared/labels; \
           stat -L -c %a /secret/password > /shared/secret-mode; \
           cat /secret/password > /shared/secret; \
           grep ' /mem ' /proc/mounts > /shared/mem-mount; \
           cat /shared/from-writer > /shared/seen-by-reader 2>/dev/null; \
           cp {sa}/token /shared/token; cp {sa}/namespace /shared/namespace; \
           cp {sa}/ca.crt /shared/ca.crt; \
           sleep 1; done"
    );
    let manifest = pod_manifest(
        "vols",
        &node.name,
        json!({"app": "vols", "tier": "one"}),
        json!({
            "terminationGracePeriodSeconds": 1,
            "containers": [
                busybox("reader", &reader, json!([
                    {"name": "config", "mountPath": "/config"},
                    {"name": "config", "mountPath": "/sub-greeting", "subPath": "greeting"},
                    {"name": "secret", "mountPath": "/secret"},
                    {"name": "podinfo", "mountPath": "/podinfo"},
                    {"name": "shared", "mountPath": "/shared"},
                    {"name": "mem", "mountPath": "/mem"},
                ])),
                busybox("writer", "echo from-the-writer > /shared/from-writer; sleep 3600",
                    json!([{"name": "shared", "mountPath": "/shared"}])),
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config"}},
                {"name": "secret", "secret": {"secretName": "creds",
                    "items": [{"key": "pw", "path": "password", "mode": 0o400}]}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "shared", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            ],
        }),
    );
    plane.create(&manifest);
    let pod = wait_running(&plane, &node, "vols", Duration::from_secs(180));
    let uid = uid(&pod);
    let shared = volume_path(&node, &uid, "kubernetes.io~empty-dir", "shared");
    let file = |name: &str| shared.join(name);
    let wait = |name: &str, check: &dyn Fn(&str) -> bool| {
        wait_file(
            &plane,
            &node,
            "vols",
            &file(name),
            Duration::from_secs(60),
            check,
        )
    };

    assert_eq!(wait("greeting", &|s| !s.is_empty()), "hello");
    assert_eq!(wait("sub-greeting", &|s| !s.is_empty()), "hello");
    assert_eq!(wait("secret", &|s| !s.is_empty()), "hunter2");
    assert_eq!(wait("secret-mode", &|s| !s.is_empty()).trim(), "400");
    assert_eq!(
        wait("seen-by-reader", &|s| !s.is_empty()).trim(),
        "from-the-writer"
    );
    let mem = wait("mem-mount", &|s| !s.is_empty());
    assert!(mem.starts_with("tmpfs /mem tmpfs"), "{mem}");
    assert!(mem.contains("size=16384k"), "{mem}");
    assert_eq!(wait("namespace", &|s| !s.is_empty()), "default");
    assert!(wait("ca.crt", &|s| !s.is_empty()).contains("BEGIN CERTIFICATE"));
    let labels = wait("labels", &|s| !s.is_empty());
    assert_eq!(labels, "app=\"vols\"\ntier=\"one\"");

    // On the host: kubelet's layout, the secret on a tmpfs.
    let secret_dir = volume_path(&node, &uid, "kubernetes.io~secret", "secret");
    let data = std::fs::read_link(secret_dir.join("..data")).unwrap();
    assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
    assert_eq!(
        std::fs::read_link(secret_dir.join("password")).unwrap(),
        Path::new("..data/password")
    );
    let pod_dir = node.root_dir().join("pods").join(&uid);
    let mounted = mounts_under(&pod_dir);
    assert!(
        mounted
            .iter()
            .any(|m| m.ends_with("kubernetes.io~secret/secret")),
        "{mounted:?}"
    );

    // The projected token is the pod's service account's.
    let token = wait("token", &|s| s.split('.').count() == 3);
    let who = std::process::Command::new(common::node::KUBECTL)
        .args(["--server", &server_of(&plane), "--insecure-skip-tls-verify"])
        .args(["--token", &token, "auth", "whoami", "-o", "json"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(
        who.status.success(),
        "auth whoami with the pod's token: {}",
        String::from_utf8_lossy(&who.stderr)
    );
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );

    // The configMap changes (and nothing else: the pod's next periodic
    // sync picks it up), then a label: the files follow, the subPath mount
    // does not, and no container restarts.
    let changed = std::time::Instant::now();
    plane.ok(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ]);
    assert_eq!(wait("greeting", &|s| s == "bonjour"), "bonjour");
    eprintln!("the configMap change showed after {:?}", changed.elapsed());
    plane.ok(&["label", "pod", "vols", "tier=two", "--overwrite"]);
    assert_eq!(
        wait("labels", &|s| s.contains("two")),
        "app=\"vols\"\ntier=\"two\""
    );
    assert_eq!(
        std::fs::read_to_string(file("sub-greeting")).unwrap(),
        "hello"
    );
    let p = plane.pod("vols").unwrap();
    for c in p["status"]["containerStatuses"].as_array().unwrap() {
        assert_eq!(c["restartCount"], 0, "{c}");
    }

    // Deleted: nothing stays mounted, the pod dir is gone.
    plane.ok(&["delete", "pod", "vols", "--wait=true", "--timeout=60s"]);
    wait_for(
        "the pod's volumes to be torn down",
        Duration::from_secs(60),
        || format!("mounts: {:?}\n{}", mounts_under(&pod_dir), node.log()),
        || (mounts_under(&pod_dir).is_empty() && !pod_dir.exists()).then_some(()),
    );
}

/// A missing configMap holds the pod in ContainerCreating with a FailedMount
/// event until it is created; a hostPath of type Directory refuses a
/// missing path; a subPath that escapes is refused; pull policy Never on a
/// missing image is ErrImageNeverPull; a service account's pull secrets go
/// to its pods and an unknown account is refused; other pods run.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_holds_only_its_pod() {
    let plane = DeckhandApiserver::start(&["vol9-bad"]);
    let node = NodeAgent::start(&plane, "vol9-bad", Runtime::InProcess, OCTET, 2).await;
    wait_node_ready(&plane, &node);
    let n = node.name.clone();
    let sleeper = |mounts: Value| busybox("app", "sleep 3600", mounts);
    let spec = |mounts: Value, volumes: Value| json!({"terminationGracePeriodSeconds": 1, "containers": [sleeper(mounts)], "volumes": volumes});
    plane.create(&pod_manifest(
        "waits-for-cm",
        &n,
        json!({}),
        spec(
            json!([{"name": "cfg", "mountPath": "/cfg"}]),
            json!([{"name": "cfg", "configMap": {"name": "later"}}]),
        ),
    ));
    let missing = format!("/tmp/vol9-missing-{}", std::process::id());
    plane.create(&pod_manifest(
        "no-host-dir",
        &n,
        json!({}),
        spec(
            json!([{"name": "host", "mountPath": "/host"}]),
            json!([{"name": "host", "hostPath": {"path": missing, "type": "Directory"}}]),
        ),
    ));
    plane.create(&pod_manifest(
        "escapes",
        &n,
        json!({}),
        spec(
            json!([{"name": "scratch", "mountPath": "/x", "subPath": "../../etc"}]),
            json!([{"name": "scratch", "emptyDir": {}}]),
        ),
    ));
    plane.create(&pod_manifest(
        "fine",
        &n,
        json!({}),
        spec(
            json!([{"name": "scratch", "mountPath": "/scratch"}]),
            json!([{"name": "scratch", "emptyDir": {}}]),
        ),
    ));
    wait_running(&plane, &node, "fine", Duration::from_secs(180));

    let event = |pod: &str, text: &str| {
        wait_for(
            &format!("an event on {pod} with {text:?}"),
            Duration::from_secs(60),
            || diagnostics(&plane, &node, pod),
            || plane.events_of(pod).into_iter().find(|e| e.contains(text)),
        )
    };
    let e = event("waits-for-cm", "FailedMount");
    assert!(
        e.contains(r#"MountVolume.SetUp failed for volume "cfg" : configmap "later" not found"#),
        "{e}"
    );
    let e = event("no-host-dir", "FailedMount");
    assert!(
        e.contains(&format!(
            "hostPath type check failed: {missing} is not a directory"
        )),
        "{e}"
    );
    let e = event("escapes", "Failed");
    assert!(e.contains("must not contain '..'"), "{e}");
    for name in ["waits-for-cm", "no-host-dir"] {
        let p = plane.pod(name).unwrap();
        assert_eq!(p["status"]["phase"], "Pending", "{name}: {}", p["status"]);
        let state = &p["status"]["containerStatuses"][0]["state"];
        assert_eq!(
            state["waiting"]["reason"], "ContainerCreating",
            "{name}: {state}"
        );
    }

    // Pull policy Never with an image that is not there.
    let mut never = sleeper(json!([]));
    never["image"] = json!("127.0.0.1:5000/vol9/not-here:1");
    never["imagePullPolicy"] = json!("Never");
    plane.create(&pod_manifest(
        "never-pull",
        &n,
        json!({}),
        json!({"terminationGracePeriodSeconds": 1, "containers": [never]}),
    ));
    let e = event("never-pull", "ErrImageNeverPull");
    assert!(
        e.contains("is not present with pull policy of Never"),
        "{e}"
    );
    wait_for(
        "never-pull waiting in ErrImageNeverPull",
        Duration::from_secs(30),
        || diagnostics(&plane, &node, "never-pull"),
        || {
            let p = plane.pod("never-pull")?;
            (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "ErrImageNeverPull")
                .then_some(())
        },
    );

    // The service account's pull secrets go to its pods; an unknown
    // account is refused at create.
    plane.create(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "puller", "namespace": "default"},
        "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": false}));
    let mut with_sa = spec(json!([]), json!([]));
    with_sa["serviceAccountName"] = json!("puller");
    plane.create(&pod_manifest("with-sa", &n, json!({}), with_sa));
    let p = plane.pod("with-sa").unwrap();
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert!(
        p["spec"]["volumes"].as_array().is_none_or(|v| v.is_empty()),
        "automount false: {}",
        p["spec"]
    );
    let mut no_sa = spec(json!([]), json!([]));
    no_sa["serviceAccountName"] = json!("nobody");
    let refused = {
        use std::io::Write;
        let mut child = std::process::Command::new(common::node::KUBECTL)
            .arg("--kubeconfig")
            .arg(plane.admin_kubeconfig())
            .args(["create", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                pod_manifest("no-sa", &n, json!({}), no_sa)
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(r#"serviceaccount "nobody" not found"#),
        "{err}"
    );

    // The configMap appears: the pod starts.
    plane.ok(&["create", "configmap", "later", "--from-literal=k=v"]);
    wait_running(&plane, &node, "waits-for-cm", Duration::from_secs(60));
    let p = plane.pod("fine").unwrap();
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
}

async fn admin_client(plane: &dyn ControlPlane) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(plane.admin_kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// A hostPath PersistentVolume and a claim on the bundled apiserver bind
/// (the PV binder as `deckhand up` runs it), kubectl prints them as kube
/// does, and a pod mounting the claim reads the host's file.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_binds_to_a_host_path_volume_and_a_pod_reads_it() {
    let plane = DeckhandApiserver::start(&["vol9-pv"]);
    let node = NodeAgent::start(&plane, "vol9-pv", Runtime::InProcess, OCTET, 3).await;
    wait_node_ready(&plane, &node);
    let host = plane.dir().join("pv-data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("greeting"), "hello from the host\n").unwrap();
    // Bad input first: kube's messages.
    let bad = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "bad"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
    let file = plane.dir().join("bad-pv.json");
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = plane.kubectl(&["create", "-f", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("spec.capacity: Required value"), "{err}");
    assert!(
        err.contains("spec: Required value: must specify a volume type"),
        "{err}"
    );

    plane.create(&json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "host-pv"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual", "hostPath": {"path": host, "type": "Directory"}}}));
    plane.create(&json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "too-small"}, "spec": {
            "capacity": {"storage": "10Mi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual", "hostPath": {"path": "/nonexistent"}}}));
    plane.create(&json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "claim", "namespace": "default"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
            "resources": {"requests": {"storage": "500Mi"}}}}));
    let client = admin_client(&plane).await;
    let binder = tokio::spawn(deckhand::controllers::pv_binder::run(
        client,
        std::future::pending(),
    ));
    let claim = wait_for(
        "the claim Bound",
        Duration::from_secs(60),
        || plane.log(),
        || {
            plane
                .get(&["pvc", "claim"])
                .filter(|c| c["status"]["phase"] == "Bound")
        },
    );
    assert_eq!(claim["spec"]["volumeName"], "host-pv");
    assert_eq!(claim["status"]["capacity"]["storage"], "1Gi");
    let pv = wait_for(
        "the volume Bound",
        Duration::from_secs(60),
        || plane.log(),
        || {
            plane
                .get(&["pv", "host-pv"])
                .filter(|p| p["status"]["phase"] == "Bound")
        },
    );
    assert_eq!(pv["spec"]["claimRef"]["name"], "claim");
    assert_eq!(pv["spec"]["claimRef"]["uid"], claim["metadata"]["uid"]);
    wait_for(
        "the small volume Available",
        Duration::from_secs(60),
        || plane.log(),
        || {
            plane
                .get(&["pv", "too-small"])
                .filter(|p| p["status"]["phase"] == "Available")
        },
    );
    let table = plane.ok(&["get", "pv"]);
    assert!(
        table.contains("CAPACITY") && table.contains("RECLAIM POLICY"),
        "{table}"
    );
    assert!(table.contains("default/claim"), "{table}");
    let table = plane.ok(&["get", "pvc"]);
    assert!(
        table.contains("host-pv") && table.contains("RWO"),
        "{table}"
    );

    plane.create(&pod_manifest(
        "reader",
        &node.name,
        json!({}),
        json!({"containers": [busybox("c", "cat /data/greeting > /data/seen; sleep 3600",
                json!([{"name": "data", "mountPath": "/data"}]))],
               "terminationGracePeriodSeconds": 2,
               "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "claim"}}]}),
    ));
    wait_running(&plane, &node, "reader", Duration::from_secs(120));
    let seen = wait_file(
        &plane,
        &node,
        "reader",
        &host.join("seen"),
        Duration::from_secs(60),
        |s| !s.is_empty(),
    );
    assert_eq!(seen, "hello from the host\n");
    plane.ok(&["delete", "pod", "reader", "--wait=false"]);
    binder.abort();
}

/// A disk emptyDir written past its sizeLimit evicts the pod as kubelet
/// does: Failed, reason Evicted, kubelet's message, an Evicted event, its
/// containers stopped. A pod under its limit is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_dir_over_its_size_limit_evicts_the_pod() {
    let plane = DeckhandApiserver::start(&["vol9-evict"]);
    let node = NodeAgent::start(&plane, "vol9-evict", Runtime::InProcess, OCTET, 4).await;
    wait_node_ready(&plane, &node);
    let pod = |name: &str, mib: u32| {
        pod_manifest(
            name,
            &node.name,
            json!({}),
            json!({"containers": [busybox("c",
                    &format!("dd if=/dev/zero of=/scratch/fill bs=1048576 count={mib}; sleep 3600"),
                    json!([{"name": "scratch", "mountPath": "/scratch"}]))],
                   "terminationGracePeriodSeconds": 2,
                   "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]}),
        )
    };
    plane.create(&pod("hog", 2));
    plane.create(&pod("modest", 0));
    let p = wait_for(
        "the hog evicted",
        Duration::from_secs(120),
        || diagnostics(&plane, &node, "hog"),
        || {
            plane
                .pod("hog")
                .filter(|p| p["status"]["phase"] == "Failed")
        },
    );
    assert_eq!(p["status"]["reason"], "Evicted", "{}", p["status"]);
    assert_eq!(
        p["status"]["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
    );
    wait_for(
        "the Evicted event",
        Duration::from_secs(30),
        || diagnostics(&plane, &node, "hog"),
        || {
            plane
                .events_of("hog")
                .iter()
                .any(|e| e.starts_with("Warning Evicted: Usage of EmptyDir volume"))
                .then_some(())
        },
    );
    wait_for(
        "the hog's container stopped",
        Duration::from_secs(60),
        || diagnostics(&plane, &node, "hog"),
        || {
            let p = plane.pod("hog")?;
            let c = &p["status"]["containerStatuses"][0];
            c["state"]["terminated"].is_object().then_some(())
        },
    );
    let modest = plane.pod("modest").unwrap();
    assert_eq!(modest["status"]["phase"], "Running", "{}", modest["status"]);
    for name in ["hog", "modest"] {
        plane.ok(&["delete", "pod", name, "--wait=false"]);
    }
}

//! The workload APIs (apps/v1, batch/v1, policy/v1, core/v1
//! replicationcontrollers): defaults of every kind, the bad inputs
//! kube-apiserver refuses (selector mismatch, immutable selector, negative
//! replicas, ...), table columns, the scale subresource, generation on
//! spec and status writes, and the kubectl commands of a first Deployment.
//!
//! The stock side runs kube-controller-manager, whose controllers write
//! the status (and create ReplicaSets) of what is created for real; those
//! steps compare only what the request itself decides (`check_at`).

use serde_json::json;

use super::harness::{JSON_PATCH, MERGE, Pair, Report, Req, STRATEGIC, TABLE};
use super::steps_core::NS;
use super::workload_cases::{APPS, BATCH, CORE, POLICY, apps, bad, deployment, kinds, template};

pub async fn run(p: &Pair, r: &mut Report) {
    for (name, path, body) in kinds() {
        p.check(
            r,
            &format!("workload defaults {name}"),
            Req::post(format!("{path}?dryRun=All"), &body),
        )
        .await;
    }
    for (name, path, body) in bad() {
        p.check(
            r,
            &format!("refuse workload {name}"),
            Req::post(format!("{path}?dryRun=All"), &body),
        )
        .await;
    }
    for path in [
        format!("{APPS}/deployments"),
        format!("{APPS}/replicasets"),
        format!("{APPS}/daemonsets"),
        format!("{APPS}/statefulsets"),
        format!("{APPS}/controllerrevisions"),
        format!("{BATCH}/jobs"),
        format!("{BATCH}/cronjobs"),
        format!("{POLICY}/poddisruptionbudgets"),
        format!("{CORE}/replicationcontrollers"),
    ] {
        let kind = path.rsplit('/').next().unwrap_or("");
        p.check_at(
            r,
            &format!("table columns {kind}"),
            Req::get(&path).accept(TABLE),
            &["/kind", "/columnDefinitions"],
        )
        .await;
    }
    deployment_lifecycle(p, r).await;
    other_scales(p, r).await;
    immutables(p, r).await;
    eviction(p, r).await;
    kubectl(p, r).await;
}

/// The scale subresource of a ReplicaSet, a StatefulSet and a
/// ReplicationController.
async fn other_scales(p: &Pair, r: &mut Report) {
    let sel = json!({"matchLabels": {"app": "sc"}});
    let objects = [
        (
            format!("{APPS}/replicasets"),
            apps(
                "ReplicaSet",
                "sc-rs",
                json!({"replicas": 0, "selector": sel, "template": template("sc", None)}),
            ),
        ),
        (
            format!("{APPS}/statefulsets"),
            apps(
                "StatefulSet",
                "sc-sts",
                json!({"replicas": 0, "selector": sel, "template": template("sc", None)}),
            ),
        ),
        (
            format!("{CORE}/replicationcontrollers"),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "sc-rc"},
            "spec": {"replicas": 0, "selector": {"app": "sc", "tier": "x"}, "template": {
            "metadata": {"labels": {"app": "sc", "tier": "x"}}, "spec": template("sc", None)["spec"]}}}),
        ),
    ];
    for (path, body) in objects {
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
        let one = format!("{path}/{name}");
        p.check(r, &format!("create {name}"), Req::post(&path, &body))
            .await;
        p.check_at(
            r,
            &format!("get {name} scale"),
            Req::get(format!("{one}/scale")),
            SCALE,
        )
        .await;
        p.check_at(
            r,
            &format!("patch {name} scale"),
            Req::patch(
                format!("{one}/scale"),
                MERGE,
                &json!({"spec": {"replicas": 0}}),
            ),
            SCALE,
        )
        .await;
        p.check_at(
            r,
            &format!("get {name} after scale"),
            Req::get(&one),
            DECIDED,
        )
        .await;
        // As kubectl deletes (a ReplicationController's API default is to
        // orphan, through a finalizer kube's garbage collector removes).
        p.check(
            r,
            &format!("delete {name}"),
            Req::delete(format!("{one}?propagationPolicy=Background")),
        )
        .await;
    }
}

/// What an update may not change: a StatefulSet's spec but for its
/// mutable fields, a Job's completions.
async fn immutables(p: &Pair, r: &mut Report) {
    let sts = format!("{APPS}/statefulsets");
    let body = apps(
        "StatefulSet",
        "im-sts",
        json!({"replicas": 0, "selector": {"matchLabels": {"app": "im"}}, "template": template("im", None)}),
    );
    p.check(r, "create statefulset", Req::post(&sts, &body))
        .await;
    p.check(
        r,
        "refuse statefulset serviceName change",
        Req::patch(
            format!("{sts}/im-sts"),
            MERGE,
            &json!({"spec": {"serviceName": "other"}}),
        ),
    )
    .await;
    p.check_at(
        r,
        "statefulset template change allowed",
        Req::patch(
            format!("{sts}/im-sts"),
            MERGE,
            &json!({"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}}),
        ),
        &["/metadata/generation", "/spec/template/metadata"],
    )
    .await;
    p.check(
        r,
        "delete statefulset",
        Req::delete(format!("{sts}/im-sts?propagationPolicy=Background")),
    )
    .await;
    let jobs = format!("{BATCH}/jobs");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "im-job"},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}}}});
    p.check_at(
        r,
        "create suspended job",
        Req::post(&jobs, &job),
        &["/metadata/name", "/spec/suspend"],
    )
    .await;
    p.check(
        r,
        "refuse job completions change",
        Req::patch(
            format!("{jobs}/im-job"),
            MERGE,
            &json!({"spec": {"completions": 3}}),
        ),
    )
    .await;
    p.check(
        r,
        "delete job",
        Req::delete(format!("{jobs}/im-job?propagationPolicy=Background")),
    )
    .await;
}

/// pods/eviction: a Pending pod goes at once; a running one covered by a
/// budget that allows no disruption is refused with 429.
async fn eviction(p: &Pair, r: &mut Report) {
    let pods = format!("{CORE}/pods");
    let pod = |name: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    let evict = |name: &str, named: &str| {
        Req::post(
            format!("{pods}/{name}/eviction"),
            &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": named, "namespace": NS}}),
        )
    };
    p.check_at(
        r,
        "create pod to evict",
        Req::post(&pods, &pod("ev-run", "ev")),
        &["/metadata/name"],
    )
    .await;
    p.check_at(
        r,
        "mark pod to evict running",
        Req::patch(
            format!("{pods}/ev-run/status"),
            MERGE,
            &json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        ),
        &["/status/phase"],
    )
    .await;
    p.check(
        r,
        "create budget without disruptions",
        Req::post(
            format!("{POLICY}/poddisruptionbudgets"),
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "ev-pdb"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "ev"}}}}),
        ),
    )
    .await;
    // Through kubectl: kube-rs's client retries a 429 until the step's
    // timeout. kube's cause says how far its disruption controller got;
    // the refusal itself (status, message) is what the budget decides.
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "ev-run", "namespace": NS}})
    .to_string();
    p.kubectl(
        r,
        "evict pod the budget protects",
        &[
            "create",
            "--raw",
            &format!("{pods}/ev-run/eviction"),
            "-f",
            "-",
        ],
        Some(&body),
    );
    p.check_at(
        r,
        "protected pod stays",
        Req::get(format!("{pods}/ev-run")),
        &["/metadata/name"],
    )
    .await;
    p.check(r, "evict with another name", evict("ev-run", "other"))
        .await;
    p.check(r, "evict a missing pod", evict("ev-none", "ev-none"))
        .await;
    p.check_at(
        r,
        "create pending pod",
        Req::post(&pods, &pod("ev-pending", "ev")),
        &["/metadata/name"],
    )
    .await;
    p.check(r, "evict pending pod", evict("ev-pending", "ev-pending"))
        .await;
    p.check(
        r,
        "evicted pod is gone",
        Req::get(format!("{pods}/ev-pending")),
    )
    .await;
    p.check(
        r,
        "delete budget",
        Req::delete(format!("{POLICY}/poddisruptionbudgets/ev-pdb")),
    )
    .await;
}

/// What the request decides about a Deployment (its spec, generation,
/// metadata but the annotations the controller writes), not its status.
const DECIDED: &[&str] = &[
    "/kind",
    "/metadata/name",
    "/metadata/generation",
    "/metadata/labels",
    "/spec",
    "/message",
    "/reason",
    "/details",
];

/// What a Scale says that no controller changes.
const SCALE: &[&str] = &[
    "/kind",
    "/apiVersion",
    "/metadata/name",
    "/metadata/namespace",
    "/spec",
    "/status/selector",
    "/message",
    "/reason",
    "/details",
];

async fn deployment_lifecycle(p: &Pair, r: &mut Report) {
    let path = format!("{APPS}/deployments");
    let web = format!("{path}/wl-web");
    let mut body = deployment("wl-web");
    body["spec"]["replicas"] = json!(2);
    p.check(r, "create deployment", Req::post(&path, &body))
        .await;
    p.check_at(r, "get deployment", Req::get(&web), DECIDED)
        .await;
    p.check_at(
        r,
        "list deployments",
        Req::get(format!("{path}?labelSelector=app%3Dnone")),
        &["/kind", "/items"],
    )
    .await;
    p.check_at(
        r,
        "get deployment scale",
        Req::get(format!("{web}/scale")),
        SCALE,
    )
    .await;
    p.check_at(
        r,
        "patch deployment scale",
        Req::patch(
            format!("{web}/scale"),
            MERGE,
            &json!({"spec": {"replicas": 3}}),
        ),
        SCALE,
    )
    .await;
    p.check(
        r,
        "patch deployment scale negative",
        Req::patch(
            format!("{web}/scale"),
            MERGE,
            &json!({"spec": {"replicas": -1}}),
        ),
    )
    .await;
    let stale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "wl-web", "namespace": NS, "resourceVersion": "1"}, "spec": {"replicas": 1}});
    p.check(
        r,
        "put deployment scale stale",
        Req::put(format!("{web}/scale"), &stale),
    )
    .await;
    let mut fresh = stale.clone();
    fresh["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    fresh["spec"]["replicas"] = json!(4);
    p.check_at(
        r,
        "put deployment scale",
        Req::put(format!("{web}/scale"), &fresh),
        SCALE,
    )
    .await;
    p.check_at(r, "generation after scale", Req::get(&web), DECIDED)
        .await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.26"}]}}}});
    p.check_at(
        r,
        "generation on a spec change",
        Req::patch(&web, STRATEGIC, &image),
        DECIDED,
    )
    .await;
    p.check_at(
        r,
        "generation on a label change",
        Req::patch(
            &web,
            MERGE,
            &json!({"metadata": {"labels": {"tier": "web"}}}),
        ),
        DECIDED,
    )
    .await;
    p.check_at(
        r,
        "generation on a status write",
        Req::patch(
            format!("{web}/status"),
            MERGE,
            &json!({"status": {"observedGeneration": 1}}),
        ),
        DECIDED,
    )
    .await;
    p.check_at(
        r,
        "status ignored on the main resource",
        Req::patch(&web, MERGE, &json!({"status": {"replicas": 99}})),
        &["/metadata/generation"],
    )
    .await;
    p.check(
        r,
        "refuse deployment selector change",
        Req::patch(
            &web,
            MERGE,
            &json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}}}}),
        ),
    )
    .await;
    p.check(
        r,
        "refuse deployment negative replicas",
        Req::patch(
            &web,
            JSON_PATCH,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": -2}]),
        ),
    )
    .await;
    p.check(
        r,
        "refuse scale of a daemonset",
        Req::get(format!("{APPS}/daemonsets/none/scale")),
    )
    .await;
    p.check(r, "delete deployment", Req::delete(&web)).await;
}

/// kubectl as a new user drives a Deployment. Outputs are compared; the
/// objects' fields that only the request decides are read back at the end.
async fn kubectl(p: &Pair, r: &mut Report) {
    let ns = ["-n", NS];
    let run = |r: &mut Report, step: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&ns);
        p.kubectl(r, step, &all, None);
    };
    run(
        r,
        "kubectl create deployment",
        &[
            "create",
            "deployment",
            "kc-web",
            "--image=nginx:1.25",
            "--replicas=2",
        ],
    );
    run(
        r,
        "kubectl scale",
        &["scale", "deployment/kc-web", "--replicas=3"],
    );
    run(
        r,
        "kubectl set image",
        &["set", "image", "deployment/kc-web", "nginx=nginx:1.26"],
    );
    run(
        r,
        "kubectl rollout history",
        &["rollout", "history", "deployment/kc-web"],
    );
    run(
        r,
        "kubectl rollout pause",
        &["rollout", "pause", "deployment/kc-web"],
    );
    run(
        r,
        "kubectl rollout resume",
        &["rollout", "resume", "deployment/kc-web"],
    );
    run(
        r,
        "kubectl rollout restart",
        &["rollout", "restart", "deployment/kc-web"],
    );
    run(
        r,
        "kubectl get deployment fields",
        &[
            "get",
            "deployment",
            "kc-web",
            "-o",
            "jsonpath={.metadata.generation} {.spec.replicas} {.spec.paused} {.spec.template.spec.containers[0].image} {.spec.selector}",
        ],
    );
    run(
        r,
        "kubectl scale rc missing",
        &["scale", "rc/none", "--replicas=1"],
    );
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ap-web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: ap-web}\n  template:\n    metadata:\n      labels: {app: ap-web}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.25}\n";
    p.kubectl(
        r,
        "kubectl apply server-side deployment",
        &["apply", "--server-side", "-n", NS, "-f", "-"],
        Some(manifest),
    );
    let changed = manifest.replace("replicas: 1", "replicas: 2");
    p.kubectl(
        r,
        "kubectl apply server-side deployment again",
        &["apply", "--server-side", "-n", NS, "-f", "-"],
        Some(&changed),
    );
    run(
        r,
        "kubectl get applied deployment",
        &[
            "get",
            "deployment",
            "ap-web",
            "-o",
            "jsonpath={.metadata.generation} {.spec.replicas}",
        ],
    );
    run(
        r,
        "kubectl delete deployments",
        &["delete", "deployment", "kc-web", "ap-web"],
    );
}

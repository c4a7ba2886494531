//! The workload objects the parity suite sends: one of every kind (for
//! defaults) and the inputs kube-apiserver refuses, with the paths they
//! go to. The steps are in `steps_workloads`.

use serde_json::{Value, json};

pub const APPS: &str = "/apis/apps/v1/namespaces/parity";
pub const BATCH: &str = "/apis/batch/v1/namespaces/parity";
pub const POLICY: &str = "/apis/policy/v1/namespaces/parity";
pub const CORE: &str = "/api/v1/namespaces/parity";

pub fn template(app: &str, restart: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "nginx:1.25",
        "ports": [{"containerPort": 80}]}]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

pub fn apps(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

pub fn deployment(name: &str) -> Value {
    apps(
        "Deployment",
        name,
        json!({"selector": {"matchLabels": {"app": name}}, "template": template(name, None)}),
    )
}

/// Every kind, created with dryRun: the defaults and the create-time
/// status, generation and labels.
pub fn kinds() -> Vec<(&'static str, String, Value)> {
    let sel = |app: &str| json!({"matchLabels": {"app": app}});
    vec![
        ("deployment", format!("{APPS}/deployments"), deployment("d")),
        (
            "deployment recreate",
            format!("{APPS}/deployments"),
            apps(
                "Deployment",
                "dr",
                json!({"selector": sel("dr"), "template": template("dr", None),
                "strategy": {"type": "Recreate"}, "replicas": 0}),
            ),
        ),
        (
            "replicaset",
            format!("{APPS}/replicasets"),
            apps(
                "ReplicaSet",
                "rs",
                json!({"selector": sel("rs"), "template": template("rs", None)}),
            ),
        ),
        (
            "daemonset",
            format!("{APPS}/daemonsets"),
            apps(
                "DaemonSet",
                "ds",
                json!({"selector": sel("ds"), "template": template("ds", None)}),
            ),
        ),
        (
            "statefulset",
            format!("{APPS}/statefulsets"),
            apps(
                "StatefulSet",
                "sts",
                json!({"selector": sel("sts"), "template": template("sts", None),
                "serviceName": "sts"}),
            ),
        ),
        (
            "controllerrevision",
            format!("{APPS}/controllerrevisions"),
            json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "cr"}, "revision": 2, "data": {"spec": {"x": 1}}}),
        ),
        (
            "job",
            format!("{BATCH}/jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}),
        ),
        (
            "job parallel",
            format!("{BATCH}/jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "jp"},
            "spec": {"parallelism": 3, "template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "c", "image": "busybox"}]}}}}),
        ),
        (
            "job manual selector",
            format!("{BATCH}/jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "jm"},
            "spec": {"manualSelector": true, "selector": sel("jm"), "template": template("jm", Some("Never"))}}),
        ),
        (
            "cronjob",
            format!("{BATCH}/cronjobs"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        ),
        (
            "poddisruptionbudget",
            format!("{POLICY}/poddisruptionbudgets"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pdb"},
            "spec": {"maxUnavailable": "50%", "selector": sel("web")}}),
        ),
        (
            "replicationcontroller",
            format!("{CORE}/replicationcontrollers"),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
            "spec": {"template": template("rc", None)}}),
        ),
    ]
}

/// What kube-apiserver refuses, with every cause.
pub fn bad() -> Vec<(&'static str, String, Value)> {
    let sel = |app: &str| json!({"matchLabels": {"app": app}});
    vec![
        (
            "deployment many errors",
            format!("{APPS}/deployments"),
            apps(
                "Deployment",
                "bad",
                json!({"replicas": -1, "selector": sel("x"), "template": {
                "metadata": {"labels": {"app": "y", "b": "c"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": ""}]}},
                "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}),
            ),
        ),
        (
            "deployment without selector",
            format!("{APPS}/deployments"),
            apps(
                "Deployment",
                "bad",
                json!({"template": template("y", None)}),
            ),
        ),
        (
            "deployment empty selector",
            format!("{APPS}/deployments"),
            apps(
                "Deployment",
                "bad",
                json!({"selector": {}, "template": template("y", None)}),
            ),
        ),
        (
            "deployment recreate with rollingUpdate",
            format!("{APPS}/deployments"),
            apps(
                "Deployment",
                "bad",
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["y"]}]},
                "template": template("z", None), "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
                "revisionHistoryLimit": -1, "minReadySeconds": -1}),
            ),
        ),
        (
            "replicaset selector mismatch",
            format!("{APPS}/replicasets"),
            apps(
                "ReplicaSet",
                "bad",
                json!({"replicas": -1, "selector": sel("x"), "template": template("y", Some("OnFailure"))}),
            ),
        ),
        (
            "daemonset empty selector",
            format!("{APPS}/daemonsets"),
            apps(
                "DaemonSet",
                "bad",
                json!({"selector": {}, "template": template("y", None)}),
            ),
        ),
        (
            "statefulset selector mismatch",
            format!("{APPS}/statefulsets"),
            apps(
                "StatefulSet",
                "bad",
                json!({"replicas": -3, "selector": sel("x"), "template": template("y", None)}),
            ),
        ),
        (
            "replicationcontroller empty",
            format!("{CORE}/replicationcontrollers"),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"}, "spec": {}}),
        ),
        (
            "replicationcontroller selector mismatch",
            format!("{CORE}/replicationcontrollers"),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"},
            "spec": {"replicas": -1, "selector": {"app": "x"}, "template": template("y", None)}}),
        ),
        (
            "job negative counts",
            format!("{BATCH}/jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"},
            "spec": {"parallelism": -1, "completions": -1, "backoffLimit": -1,
            "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        ),
        (
            "job manual selector missing",
            format!("{BATCH}/jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"},
            "spec": {"manualSelector": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "x"}]}}}}),
        ),
        (
            "cronjob schedule out of range",
            format!("{BATCH}/cronjobs"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"},
            "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "x"}]}}}}}}),
        ),
        (
            "cronjob schedule not cron",
            format!("{BATCH}/cronjobs"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"},
            "spec": {"schedule": "bogus", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}}),
        ),
        (
            "poddisruptionbudget both bounds",
            format!("{POLICY}/poddisruptionbudgets"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bad"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
        ),
        (
            "poddisruptionbudget over 100%",
            format!("{POLICY}/poddisruptionbudgets"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bad"},
            "spec": {"maxUnavailable": "120%"}}),
        ),
    ]
}

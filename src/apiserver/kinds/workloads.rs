//! The workload kinds (apps/v1, batch/v1, policy/v1 PodDisruptionBudgets,
//! core/v1 ReplicationControllers) as kube's registry strategies treat
//! them: defaults (their pod templates get a PodSpec's), what a create
//! resets (status, generation 1, a Job's generated selector), and which
//! updates bump `metadata.generation`. Validation is in
//! `workload_validation`.

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::common::{default, obj};
use crate::apiserver::kinds::pod;
use crate::apiserver::resources::Kind;

/// Whether `resource` (of `group`) is one of the workload kinds here.
pub fn is_workload(kind: &Kind) -> bool {
    matches!(
        (kind.group, kind.resource),
        ("", "replicationcontrollers")
            | (
                "apps",
                "deployments"
                    | "replicasets"
                    | "daemonsets"
                    | "statefulsets"
                    | "controllerrevisions"
            )
            | ("batch", "jobs" | "cronjobs")
            | ("policy", "poddisruptionbudgets")
    )
}

/// The status a create starts from: kube resets it, and the Go types'
/// non-omitempty counters print as zeros.
fn empty_status(resource: &str) -> Option<Value> {
    Some(match resource {
        "replicationcontrollers" | "replicasets" => json!({"replicas": 0}),
        "daemonsets" => json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
            "numberMisscheduled": 0, "numberReady": 0}),
        "statefulsets" => json!({"availableReplicas": 0, "replicas": 0}),
        "poddisruptionbudgets" => json!({"currentHealthy": 0, "desiredHealthy": 0,
            "disruptionsAllowed": 0, "expectedPods": 0}),
        "deployments" | "jobs" | "cronjobs" => json!({}),
        _ => return None,
    })
}

/// The pod template of a spec, made an object with `metadata` (kube prints
/// an empty template's metadata as `{}`), with a PodSpec's defaults.
fn template_defaults(spec: &mut Map<String, Value>, restart_policy: bool) {
    let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) else {
        return;
    };
    obj(template, "metadata");
    if let Some(pod_spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
        // Job templates keep an unset restartPolicy (validation asks for
        // one), as kube-apiserver does.
        let unset = !pod_spec.contains_key("restartPolicy");
        pod::apply_spec_defaults(pod_spec);
        if !restart_policy && unset {
            pod_spec.remove("restartPolicy");
        }
    }
}

/// Defaults kube applies on every write of a workload.
pub fn apply_defaults(kind: &Kind, object: &mut Value) {
    let resource = kind.resource;
    if resource == "controllerrevisions" {
        return;
    }
    let template_labels = object["spec"]["template"]["metadata"]["labels"].clone();
    let Some(spec) = obj(object, "spec") else {
        return;
    };
    match resource {
        "deployments" => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = obj_in(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = obj_in(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
            template_defaults(spec, true);
        }
        "replicasets" | "replicationcontrollers" => {
            default(spec, "replicas", json!(1));
            if resource == "replicationcontrollers"
                && template_labels.as_object().is_some_and(|m| !m.is_empty())
            {
                default(spec, "selector", template_labels.clone());
            }
            template_defaults(spec, true);
        }
        "daemonsets" => {
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = obj_in(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = obj_in(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!(1));
                default(rolling, "maxSurge", json!(0));
            }
            template_defaults(spec, true);
        }
        "statefulsets" => {
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "serviceName", json!(""));
            let strategy = obj_in(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = obj_in(strategy, "rollingUpdate");
                default(rolling, "partition", json!(0));
            }
            let retention = obj_in(spec, "persistentVolumeClaimRetentionPolicy");
            default(retention, "whenDeleted", json!("Retain"));
            default(retention, "whenScaled", json!("Retain"));
            template_defaults(spec, true);
        }
        "jobs" => {
            job_spec_defaults(spec);
            template_defaults(spec, false);
        }
        "cronjobs" => {
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            let job_template = obj_in(spec, "jobTemplate");
            obj_in(job_template, "metadata");
            template_defaults(obj_in(job_template, "spec"), false);
        }
        _ => {}
    }
    if matches!(resource, "replicationcontrollers" | "jobs")
        && object["metadata"]["labels"]
            .as_object()
            .is_none_or(Map::is_empty)
        && template_labels.as_object().is_some_and(|m| !m.is_empty())
    {
        object["metadata"]["labels"] = template_labels;
    }
}

/// kube's SetDefaults_Job.
fn job_spec_defaults(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    default(spec, "completionMode", json!("NonIndexed"));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default(
        spec,
        "backoffLimit",
        json!(if per_index && spec["completionMode"] == "Indexed" {
            i32::MAX
        } else {
            6
        }),
    );
    default(spec, "suspend", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
    default(spec, "manualSelector", json!(false));
}

/// `m[key]` as an object, made one if it is not.
fn obj_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.into(), json!({}));
    }
    m.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just made an object")
}

/// What a create of a workload resets or sets before defaults: the status,
/// `metadata.generation` 1, a DaemonSet's template-generation annotation,
/// and a Job's selector and labels (unless `manualSelector`).
pub fn prepare_create(kind: &Kind, object: &mut Value) {
    if !is_workload(kind) || kind.resource == "controllerrevisions" {
        return;
    }
    if let Some(status) = empty_status(kind.resource) {
        object["status"] = status;
    }
    object["metadata"]["generation"] = json!(1);
    if kind.resource == "daemonsets" {
        set_annotation(object, TEMPLATE_GENERATION, "1");
    }
    if kind.resource == "jobs" && object["spec"]["manualSelector"] != true {
        generate_job_selector(object);
    }
}

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][key] = json!(value);
}

/// kube's generateSelector: the Job's uid and name as labels of its
/// template, and the uid label as the selector (the defaults then copy the
/// template's labels to a Job that has none).
fn generate_job_selector(job: &mut Value) {
    let uid = job["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !job["spec"]["template"].is_object() {
        job["spec"]["template"] = json!({});
    }
    let template = &mut job["spec"]["template"];
    let Some(meta) = obj(template, "metadata") else {
        return;
    };
    let labels = obj_in(meta, "labels");
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.insert(k.into(), json!(v));
    }
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// Whether an update (not of status) bumps `metadata.generation`: a spec
/// change; for a Deployment an annotation change too (they are copied to
/// its ReplicaSets). A DaemonSet's template change also moves its
/// template-generation annotation (done here on `new`).
pub fn bumps_generation(kind: &Kind, old: &Value, new: &mut Value) -> bool {
    let spec_changed = old.get("spec") != new.get("spec");
    if kind.resource == "daemonsets"
        && kind.group == "apps"
        && old["spec"]["template"] != new["spec"]["template"]
    {
        let next = old["metadata"]["annotations"][TEMPLATE_GENERATION]
            .as_str()
            .and_then(|g| g.parse::<i64>().ok())
            .unwrap_or(0)
            + 1;
        set_annotation(new, TEMPLATE_GENERATION, &next.to_string());
    }
    spec_changed
        || (kind.resource == "deployments"
            && old["metadata"]["annotations"] != new["metadata"]["annotations"])
}

/// What a status write may change besides status: kube's status
/// strategies reset only the spec (a Deployment's labels too), so the
/// controllers' annotations (a Deployment's revision) go through.
pub fn status_write(kind: &Kind, old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    out["status"] = new["status"].clone();
    if is_workload(kind) {
        match new["metadata"].get("annotations") {
            Some(a) => out["metadata"]["annotations"] = a.clone(),
            None => {
                if let Some(m) = out["metadata"].as_object_mut() {
                    m.remove("annotations");
                }
            }
        }
    }
    out
}

/// The typed schema makes a required selector `{}` when the client sent
/// none; kube tells the two apart ("Required value" vs "empty selector"),
/// so an absent one is put back as absent.
pub fn keep_absent_selector(kind: &Kind, input: &Value, typed: &mut Value) {
    let required_in_schema = matches!(
        (kind.group, kind.resource),
        (
            "apps",
            "deployments" | "replicasets" | "daemonsets" | "statefulsets"
        )
    );
    if required_in_schema
        && input["spec"]["selector"].is_null()
        && let Some(spec) = typed["spec"].as_object_mut()
    {
        spec.remove("selector");
    }
}

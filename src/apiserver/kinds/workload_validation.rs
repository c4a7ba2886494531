//! Validation of the workload kinds with kube-apiserver's messages and
//! field paths (pkg/apis/apps/validation, batch, policy, core's RC): the
//! selector and its match with the pod template's labels, replica counts,
//! the template validated as a PodSpec, update strategies, a CronJob's
//! schedule; and the immutable selector on update.

use serde_json::{Value, json};

use crate::apiserver::error::Cause;
use crate::apiserver::kinds::common::cause;
use crate::apiserver::kinds::{cron, label_selector, pod};
use crate::apiserver::resources::Kind;

fn not_supported(field: &str, value: &str, supported: &str) -> Cause {
    Cause {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!("Unsupported value: \"{value}\": supported values: {supported}"),
    }
}

fn invalid(field: &str, value: &Value, why: &str) -> Cause {
    cause("invalid", field, format!("Invalid value: {value}: {why}"))
}

/// `field` (an integer) must be >= 0.
fn non_negative(spec: &Value, base: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = spec[field].as_i64()
        && n < 0
    {
        causes.push(invalid(
            &format!("{base}.{field}"),
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

pub fn validate(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    match (kind.group, kind.resource) {
        ("apps", r @ ("deployments" | "replicasets" | "daemonsets" | "statefulsets")) => {
            let word = r.trim_end_matches('s');
            let word = if r == "replicasets" {
                "deployment"
            } else {
                word
            };
            if r != "daemonsets" {
                non_negative(spec, "spec", "replicas", causes);
            }
            selected_template(spec, word, causes);
            if r == "deployments" {
                deployment_strategy(spec, causes);
            }
            non_negative(spec, "spec", "minReadySeconds", causes);
            non_negative(spec, "spec", "revisionHistoryLimit", causes);
        }
        ("", "replicationcontrollers") => {
            non_negative(spec, "spec", "replicas", causes);
            let selector = &spec["selector"];
            if selector.as_object().is_none_or(|m| m.is_empty()) {
                causes.push(cause("required", "spec.selector", "Required value"));
            }
            if !spec["template"].is_object() {
                causes.push(cause("required", "spec.template", "Required value"));
            } else {
                let labels = &spec["template"]["metadata"]["labels"];
                let selects = selector.as_object().is_some_and(|m| {
                    !m.is_empty()
                        && m.iter()
                            .all(|(k, v)| labels[k.as_str()].as_str() == v.as_str())
                });
                if selector.as_object().is_some_and(|m| !m.is_empty()) && !selects {
                    causes.push(no_match(labels));
                }
                template_pod_spec(
                    &spec["template"]["spec"],
                    "spec.template.spec",
                    true,
                    causes,
                );
            }
        }
        ("batch", "jobs") => job_spec(spec, "spec", true, causes),
        ("batch", "cronjobs") => {
            match spec["schedule"].as_str().unwrap_or("") {
                "" => causes.push(cause("required", "spec.schedule", "Required value")),
                schedule => {
                    if let Err(why) = cron::parse(schedule) {
                        causes.push(invalid("spec.schedule", &json!(schedule), &why));
                    }
                }
            }
            job_spec(
                &spec["jobTemplate"]["spec"],
                "spec.jobTemplate.spec",
                false,
                causes,
            );
        }
        ("policy", "poddisruptionbudgets") => pdb_spec(spec, causes),
        _ => {}
    }
}

fn no_match(labels: &Value) -> Cause {
    invalid(
        "spec.template.metadata.labels",
        labels,
        "`selector` does not match template `labels`",
    )
}

/// The selector (required, not empty) selects the template's labels, and
/// the template is a valid PodSpec that restarts Always.
fn selected_template(spec: &Value, word: &str, causes: &mut Vec<Cause>) {
    let selector = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    if !selector.is_object() {
        causes.push(cause("required", "spec.selector", "Required value"));
        causes.push(no_match(labels));
    } else if label_selector::is_empty(selector) {
        causes.push(invalid(
            "spec.selector",
            selector,
            &format!("empty selector is invalid for {word}"),
        ));
    } else if !label_selector::matches(selector, labels) {
        causes.push(no_match(labels));
    }
    template_pod_spec(
        &spec["template"]["spec"],
        "spec.template.spec",
        true,
        causes,
    );
}

/// A pod template's spec: a PodSpec, restarting Always for the
/// long-running kinds, OnFailure or Never for Jobs.
fn template_pod_spec(spec: &Value, base: &str, always: bool, causes: &mut Vec<Cause>) {
    pod::validate_spec(spec, base, causes);
    let policy = spec["restartPolicy"].as_str().unwrap_or("");
    let field = format!("{base}.restartPolicy");
    causes.retain(|c| !(c.field == field && c.reason == "FieldValueNotSupported"));
    if always {
        if policy != "Always" {
            causes.push(not_supported(&field, policy, "\"Always\""));
        }
    } else if policy.is_empty() {
        causes.push(cause(
            "required",
            &field,
            "Required value: valid values: \"OnFailure\", \"Never\"",
        ));
    } else if !matches!(policy, "OnFailure" | "Never") {
        causes.push(not_supported(&field, policy, "\"OnFailure\", \"Never\""));
    }
}

fn deployment_strategy(spec: &Value, causes: &mut Vec<Cause>) {
    let strategy = &spec["strategy"];
    match strategy["type"].as_str().unwrap_or("") {
        "Recreate" => {
            if strategy["rollingUpdate"].is_object() {
                causes.push(Cause {
                    reason: "FieldValueForbidden",
                    field: "spec.strategy.rollingUpdate".into(),
                    message: "Forbidden: may not be specified when strategy `type` is 'Recreate'"
                        .into(),
                });
            }
        }
        "RollingUpdate" => {
            let rolling = &strategy["rollingUpdate"];
            let zero = |v: &Value| v == &json!(0) || v == &json!("0%");
            if zero(&rolling["maxUnavailable"]) && zero(&rolling["maxSurge"]) {
                causes.push(invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &rolling["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        other => causes.push(not_supported(
            "spec.strategy.type",
            other,
            "\"Recreate\", \"RollingUpdate\"",
        )),
    }
}

/// A Job's spec (also a CronJob's jobTemplate.spec, below `base`).
fn job_spec(spec: &Value, base: &str, is_job: bool, causes: &mut Vec<Cause>) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        non_negative(spec, base, f, causes);
    }
    let template = &spec["template"];
    if is_job {
        let labels = &template["metadata"]["labels"];
        let selector = &spec["selector"];
        if !selector.is_object() {
            causes.push(cause(
                "required",
                &format!("{base}.selector"),
                "Required value",
            ));
            causes.push(no_match(labels));
        } else if !label_selector::matches(selector, labels) {
            causes.push(no_match(labels));
        }
    }
    template_pod_spec(
        &template["spec"],
        &format!("{base}.template.spec"),
        false,
        causes,
    );
}

fn pdb_spec(spec: &Value, causes: &mut Vec<Cause>) {
    let (min, max) = (&spec["minAvailable"], &spec["maxUnavailable"]);
    if !min.is_null() && !max.is_null() {
        // kube prints the Go struct, its fields in their declared order.
        let shown = format!(
            "{{\"MinAvailable\":{min},\"Selector\":{},\"MaxUnavailable\":{max},\"UnhealthyPodEvictionPolicy\":{}}}",
            spec["selector"], spec["unhealthyPodEvictionPolicy"]
        );
        causes.push(cause(
            "invalid",
            "spec",
            format!("Invalid value: {shown}: minAvailable and maxUnavailable cannot be both set"),
        ));
    }
    for (field, v) in [("spec.minAvailable", min), ("spec.maxUnavailable", max)] {
        if let Some(n) = v.as_i64()
            && n < 0
        {
            causes.push(invalid(field, v, "must be greater than or equal to 0"));
        }
        if let Some(p) = v.as_str().and_then(|s| s.strip_suffix('%'))
            && p.parse::<i64>().is_ok_and(|p| p > 100)
        {
            causes.push(invalid(field, v, "must not be greater than 100%"));
        }
    }
}

/// Fields an update may not change: an apps/v1 selector, a Job's
/// selector and template... (kube's ValidateXUpdate), reported as kube.
pub fn check_update(kind: &Kind, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let immutable = |causes: &mut Vec<Cause>, field: &str, pointer: &str| {
        let (o, n) = (old.pointer(pointer), new.pointer(pointer));
        if o != n {
            causes.push(invalid(
                field,
                n.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    match (kind.group, kind.resource) {
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            immutable(causes, "spec.selector", "/spec/selector");
        }
        ("batch", "jobs") => {
            immutable(causes, "spec.selector", "/spec/selector");
            if new["spec"]["completionMode"] != "Indexed" {
                immutable(causes, "spec.completions", "/spec/completions");
            }
            // kube prints the internal Go struct here; the field and the
            // reason are what a client acts on.
            immutable(causes, "spec.template", "/spec/template");
        }
        _ => {}
    }
    if (kind.group, kind.resource) == ("apps", "statefulsets") {
        let mutable = |spec: &Value| {
            let mut spec = spec.clone();
            if let Some(m) = spec.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "revisionHistoryLimit",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            spec
        };
        if mutable(&old["spec"]) != mutable(&new["spec"]) {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::{apply_defaults, validate as validate_all, workloads};
    use crate::apiserver::resources::lookup;

    fn prepared(group: &str, resource: &str, mut object: Value) -> (Value, Vec<Cause>) {
        let kind = lookup(group, "v1", resource).unwrap();
        workloads::prepare_create(kind, &mut object);
        apply_defaults(kind, &mut object);
        let causes = validate_all(kind, &object);
        (object, causes)
    }

    #[test]
    fn deployment_defaults_and_generation() {
        let (d, causes) = prepared(
            "apps",
            "deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["status"], json!({}));
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(d["spec"]["template"]["spec"]["serviceAccountName"].is_null());
        let kind = lookup("apps", "v1", "deployments").unwrap();
        let mut annotated = d.clone();
        annotated["metadata"]["annotations"] = json!({"a": "b"});
        assert!(workloads::bumps_generation(kind, &d, &mut annotated));
        let mut relabelled = d.clone();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(!workloads::bumps_generation(kind, &d, &mut relabelled));
    }

    #[test]
    fn deployment_refusals_as_kube_words_them() {
        let (_, causes) = prepared(
            "apps",
            "deployments",
            json!({"metadata": {"name": "bad"}, "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": ""}]}},
            "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}),
        );
        let got: Vec<(String, String)> = causes.into_iter().map(|c| (c.field, c.message)).collect();
        let want = [
            (
                "spec.replicas",
                "Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "spec.template.metadata.labels",
                "Invalid value: {\"app\":\"y\"}: `selector` does not match template `labels`",
            ),
            ("spec.template.spec.containers[0].image", "Required value"),
            (
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"Never\": supported values: \"Always\"",
            ),
            (
                "spec.strategy.rollingUpdate.maxUnavailable",
                "Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);
        let kind = lookup("apps", "v1", "deployments").unwrap();
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}});
        let mut causes = Vec::new();
        check_update(kind, &old, &new, &mut causes);
        assert_eq!(
            causes[0].message,
            "Invalid value: {\"matchLabels\":{\"app\":\"b\"}}: field is immutable"
        );
    }

    #[test]
    fn job_gets_a_generated_selector() {
        let (job, causes) = prepared(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(job["metadata"]["labels"]["job-name"], "j");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["controller-uid"],
            "u-1"
        );
        assert_eq!(
            (
                &job["spec"]["backoffLimit"],
                &job["spec"]["completions"],
                &job["spec"]["manualSelector"]
            ),
            (&json!(6), &json!(1), &json!(false))
        );
        let (_, causes) = prepared(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}}),
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.schedule");
    }

    #[test]
    fn replication_controller_selector_from_template() {
        let (rc, causes) = prepared(
            "",
            "replicationcontrollers",
            json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "rc"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(rc["spec"]["selector"], json!({"app": "rc"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "rc"}));
        assert_eq!(rc["status"], json!({"replicas": 0}));
    }
}

//! Table columns and cells of the workload kinds, as kube-apiserver's
//! printers (pkg/printers/internalversion) produce them: deployments,
//! replicasets, replicationcontrollers, daemonsets, statefulsets,
//! controllerrevisions, jobs, cronjobs and poddisruptionbudgets. The Name
//! column comes first from `table`.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::apiserver::kinds::label_selector;
use crate::apiserver::table_cells::{age, human_duration, or_none, s};

/// Whether `resource` has its columns here.
pub fn is_workload_table(resource: &str) -> bool {
    matches!(
        resource,
        "deployments"
            | "replicasets"
            | "replicationcontrollers"
            | "daemonsets"
            | "statefulsets"
            | "controllerrevisions"
            | "jobs"
            | "cronjobs"
            | "poddisruptionbudgets"
    )
}

const WIDE: [(&str, &str, u8); 3] = [
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];

/// The columns after Name: (name, type, priority).
pub fn columns(resource: &str) -> Vec<(&'static str, &'static str, u8)> {
    let mut cols = match resource {
        "deployments" => vec![
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
        ],
        "replicasets" | "replicationcontrollers" => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
        ],
        "daemonsets" => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        "statefulsets" => vec![
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "controllerrevisions" => {
            return vec![
                ("Controller", "string", 0),
                ("Revision", "string", 0),
                ("Age", "string", 0),
            ];
        }
        "jobs" => vec![
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
        ],
        "cronjobs" => vec![
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
        ],
        "poddisruptionbudgets" => {
            return vec![
                ("Min Available", "string", 0),
                ("Max Unavailable", "string", 0),
                ("Allowed Disruptions", "integer", 0),
                ("Age", "string", 0),
            ];
        }
        _ => return vec![("Age", "string", 0)],
    };
    if resource != "statefulsets" {
        cols.extend(WIDE);
    }
    cols
}

fn int(v: &Value) -> Value {
    json!(v.as_i64().unwrap_or(0))
}

/// Containers and images of a PodSpec, each joined by commas.
fn containers_images(pod_spec: &Value) -> [Value; 2] {
    let list = pod_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = list.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = list.iter().map(|c| s(&c["image"])).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

fn selector(sel: &Value) -> Value {
    if sel.is_null() {
        return json!("<none>");
    }
    or_none(&label_selector::to_string(sel))
}

/// The cells after Name.
pub fn cells(resource: &str, o: &Value, created: String, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let template = &spec["template"]["spec"];
    let wide = |sel: Value| {
        let [c, i] = containers_images(template);
        vec![c, i, sel]
    };
    let mut out = match resource {
        "deployments" => vec![
            json!(format!(
                "{}/{}",
                status["readyReplicas"].as_i64().unwrap_or(0),
                spec["replicas"].as_i64().unwrap_or(0)
            )),
            int(&status["updatedReplicas"]),
            int(&status["availableReplicas"]),
            json!(created),
        ],
        "replicasets" | "replicationcontrollers" => vec![
            int(&spec["replicas"]),
            int(&status["replicas"]),
            int(&status["readyReplicas"]),
            json!(created),
        ],
        "daemonsets" => vec![
            int(&status["desiredNumberScheduled"]),
            int(&status["currentNumberScheduled"]),
            int(&status["numberReady"]),
            int(&status["updatedNumberScheduled"]),
            int(&status["numberAvailable"]),
            or_none(&label_selector::map_to_string(&template["nodeSelector"])),
            json!(created),
        ],
        "statefulsets" => {
            let [c, i] = containers_images(template);
            return vec![
                json!(format!(
                    "{}/{}",
                    status["readyReplicas"].as_i64().unwrap_or(0),
                    spec["replicas"].as_i64().unwrap_or(0)
                )),
                json!(created),
                c,
                i,
            ];
        }
        "controllerrevisions" => {
            return vec![controller(o), int(&o["revision"]), json!(created)];
        }
        "jobs" => vec![
            json!(job_status(o)),
            json!(job_completions(spec, status)),
            json!(job_duration(status, now)),
            json!(created),
        ],
        "cronjobs" => {
            let last = &status["lastScheduleTime"];
            let job_spec = &spec["jobTemplate"]["spec"];
            let [c, i] = containers_images(&job_spec["template"]["spec"]);
            return vec![
                json!(s(&spec["schedule"])),
                or_none(s(&spec["timeZone"])),
                json!(match spec["suspend"].as_bool() {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                }),
                json!(status["active"].as_array().map_or(0, Vec::len)),
                if last.is_string() {
                    json!(age(last, now))
                } else {
                    json!("<none>")
                },
                json!(created),
                c,
                i,
                selector(&job_spec["selector"]),
            ];
        }
        "poddisruptionbudgets" => {
            let shown = |v: &Value| match v {
                Value::Null => json!("N/A"),
                Value::String(s) => json!(s),
                other => json!(other.to_string()),
            };
            return vec![
                shown(&spec["minAvailable"]),
                shown(&spec["maxUnavailable"]),
                int(&status["disruptionsAllowed"]),
                json!(created),
            ];
        }
        _ => return vec![json!(created)],
    };
    let sel = if resource == "replicationcontrollers" {
        or_none(&label_selector::map_to_string(&spec["selector"]))
    } else {
        selector(&spec["selector"])
    };
    out.extend(wide(sel));
    out
}

/// `daemonset.apps/name` of the controlling owner, or `<none>`.
fn controller(o: &Value) -> Value {
    let owner = o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["controller"] == true);
    let Some(owner) = owner else {
        return json!("<none>");
    };
    let kind = s(&owner["kind"]).to_lowercase();
    let group = s(&owner["apiVersion"])
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = s(&owner["name"]);
    if group.is_empty() {
        json!(format!("{kind}/{name}"))
    } else {
        json!(format!("{kind}.{group}/{name}"))
    }
}

fn has_condition(o: &Value, ty: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn job_status(o: &Value) -> &'static str {
    if has_condition(o, "Complete") {
        "Complete"
    } else if has_condition(o, "Failed") {
        "Failed"
    } else if o["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if has_condition(o, "Suspended") {
        "Suspended"
    } else if has_condition(o, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_completions(spec: &Value, status: &Value) -> String {
    let succeeded = status["succeeded"].as_i64().unwrap_or(0);
    match (spec["completions"].as_i64(), spec["parallelism"].as_i64()) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn job_duration(status: &Value, now: SystemTime) -> String {
    let parse = |v: &Value| humantime::parse_rfc3339_weak(s(v)).ok();
    let Some(start) = parse(&status["startTime"]) else {
        return String::new();
    };
    let end = parse(&status["completionTime"]).unwrap_or(now);
    human_duration(end.duration_since(start).map_or(0, |d| d.as_secs()))
}

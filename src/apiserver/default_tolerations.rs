//! kube-apiserver's DefaultTolerationSeconds admission: a pod created
//! without a NoExecute toleration for the not-ready or unreachable taint
//! gets one of 300 s, so that a node going silent evicts its pods after
//! five minutes rather than at once.

use serde_json::{Value, json};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// --default-not-ready-toleration-seconds and
/// --default-unreachable-toleration-seconds.
pub const DEFAULT_SECONDS: i64 = 300;

/// Some toleration covers NoExecute taints with this key.
fn covered(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let k = t["key"].as_str().unwrap_or("");
        let effect = t["effect"].as_str().unwrap_or("");
        (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    })
}

/// Admit a pod being created (its spec already defaulted).
pub fn admit(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [NOT_READY, UNREACHABLE] {
        if !covered(list, key) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_tolerations_once() {
        let mut pod = json!({"spec": {"containers": []}});
        admit(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], NOT_READY);
        assert_eq!(t[1]["key"], UNREACHABLE);
        assert_eq!(t[1]["tolerationSeconds"], 300);
        assert_eq!(t[1]["effect"], "NoExecute");
        admit(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn keeps_the_pods_own() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
        ]}});
        admit(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], NOT_READY);
        // An empty key with Exists tolerates every taint: nothing to add.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admit(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
        // No spec: left alone.
        let mut odd = json!({"metadata": {}});
        admit(&mut odd);
        assert_eq!(odd, json!({"metadata": {}}));
    }
}

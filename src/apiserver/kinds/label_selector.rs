//! metav1.LabelSelector as stored (`matchLabels`, `matchExpressions`):
//! whether it selects a set of labels, and its string form
//! (`app=web,tier in (a,b)`), as kube's LabelSelectorAsSelector prints it
//! for a Scale's `status.selector`.

use serde_json::{Map, Value};

/// Whether `selector` (a LabelSelector object) selects `labels`. An absent
/// or malformed selector selects nothing; an empty one everything.
pub fn matches(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    let empty = Map::new();
    let labels = labels.as_object().unwrap_or(&empty);
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let by_expressions = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|list| {
            list.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                match (e["operator"].as_str().unwrap_or(""), label(key)) {
                    ("In", Some(v)) => values.contains(&v),
                    ("NotIn", v) => v.is_none_or(|v| !values.contains(&v)),
                    ("Exists", v) => v.is_some(),
                    ("DoesNotExist", v) => v.is_none(),
                    _ => false,
                }
            })
        });
    by_labels && by_expressions
}

/// Whether a LabelSelector object has no requirement at all.
pub fn is_empty(selector: &Value) -> bool {
    let none = |f: &str| match &selector[f] {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    };
    none("matchLabels") && none("matchExpressions")
}

/// The selector string of a LabelSelector object: requirements sorted by
/// key, values sorted.
pub fn to_string(selector: &Value) -> String {
    let mut terms: Vec<(String, String)> = Vec::new();
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            terms.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let term = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        terms.push((key, term));
    }
    terms.sort();
    terms
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// A map selector (a ReplicationController's) as a string: `a=b,c=d`.
pub fn map_to_string(selector: &Value) -> String {
    let mut terms: Vec<String> = selector
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    terms.sort();
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_and_printing() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                 {"key": "old", "operator": "DoesNotExist"}]});
        assert!(matches(&sel, &json!({"app": "web", "tier": "a"})));
        assert!(!matches(&sel, &json!({"app": "web", "tier": "c"})));
        assert!(!matches(
            &sel,
            &json!({"app": "web", "tier": "a", "old": "1"})
        ));
        assert!(!matches(&Value::Null, &json!({"app": "web"})));
        assert_eq!(to_string(&sel), "app=web,!old,tier in (a,b)");
        assert_eq!(map_to_string(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert!(is_empty(&json!({})) && !is_empty(&sel));
    }
}

//! Label selectors (pod affinity, topology spread) and node selector
//! requirements (node affinity), with kube's semantics: an unknown operator
//! matches nothing rather than failing the whole scheduling cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// `sel` matches `labels`. An empty selector matches everything; callers
/// that treat a missing selector as "nothing" check for None themselves.
pub fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    if let Some(m) = &sel.match_labels
        && m.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|r| {
        let value = labels.get(&r.key);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// One node selector requirement against a value source (labels, or the
/// node's fields for matchFields).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            // Both sides must be integers, and exactly one value is given.
            let (Some(v), [want]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), want.parse::<i64>()) {
                (Ok(v), Ok(want)) if op == "Gt" => v > want,
                (Ok(v), Ok(want)) => v < want,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A node selector term: all its expressions and fields hold. A term with
/// neither matches no node (as in kube).
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            // metadata.name is the only field kube supports here.
            let value = (r.key == "metadata.name").then_some(&name);
            r.key == "metadata.name" && requirement_matches(r, value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let mut sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert!(selector_matches(&sel, &l));
        assert!(selector_matches(&LabelSelector::default(), &l));
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(vec!["front".into()]),
        }]);
        assert!(!selector_matches(&sel, &l));
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "gone".into(),
            operator: "DoesNotExist".into(),
            values: None,
        }]);
        assert!(selector_matches(&sel, &l));
        sel.match_expressions.as_mut().unwrap()[0].operator = "Bogus".into();
        assert!(!selector_matches(&sel, &l));
    }

    #[test]
    fn node_terms_expressions_and_fields() {
        let l = labels(&[("disk", "ssd"), ("cores", "8")]);
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        assert!(term_matches(
            &term(vec![req("disk", "In", &["ssd", "nvme"])], vec![]),
            "n1",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("disk", "NotIn", &["ssd"])], vec![]),
            "n1",
            &l
        ));
        assert!(term_matches(
            &term(vec![req("cores", "Gt", &["4"])], vec![]),
            "n1",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("cores", "Lt", &["4"])], vec![]),
            "n1",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("cores", "Gt", &["x"])], vec![]),
            "n1",
            &l
        ));
        assert!(term_matches(
            &term(vec![], vec![req("metadata.name", "In", &["n1"])]),
            "n1",
            &l
        ));
        assert!(!term_matches(
            &term(vec![], vec![req("metadata.name", "In", &["n1"])]),
            "n2",
            &l
        ));
        assert!(!term_matches(
            &term(vec![], vec![req("metadata.uid", "Exists", &[])]),
            "n1",
            &l
        ));
        assert!(!term_matches(&term(vec![], vec![]), "n1", &l));
    }
}

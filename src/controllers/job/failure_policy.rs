//! spec.podFailurePolicy: the first rule that matches a failed pod decides
//! what its failure does (FailJob, Ignore, Count; FailIndex is treated as
//! Count, backoffLimitPerIndex being left out), as kube's
//! matchPodFailurePolicy does.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

use super::pods;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The job fails at once, with this condition message.
    FailJob(String),
    /// The failure is not counted against backoffLimit.
    Ignore,
    /// Counted as usual.
    Count,
}

fn exit_rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<(String, i32)> {
    let req = rule.on_exit_codes.as_ref()?;
    pods::exit_codes(pod).into_iter().find_map(|(name, code)| {
        if req.container_name.as_deref().is_some_and(|c| c != name) || code == 0 {
            return None;
        }
        let listed = req.values.contains(&code);
        let hit = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        hit.then(|| (name.to_string(), code))
    })
}

fn condition_rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> bool {
    let Some(patterns) = &rule.on_pod_conditions else {
        return false;
    };
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    patterns.iter().any(|p| {
        conditions
            .iter()
            .any(|c| c.type_ == p.type_ && c.status == p.status)
    })
}

/// What `policy` makes of the failure of `pod`.
pub fn verdict(policy: &PodFailurePolicy, pod: &Pod) -> Verdict {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for (i, rule) in policy.rules.iter().enumerate() {
        let message = if let Some((container, code)) = exit_rule_matches(rule, pod) {
            format!(
                "Container {container} for pod {ns}/{} failed with exit code {code} matching {} rule at index {i}",
                pods::name(pod),
                rule.action
            )
        } else if condition_rule_matches(rule, pod) {
            format!(
                "Pod {ns}/{} has condition {} matching {} rule at index {i}",
                pods::name(pod),
                rule.on_pod_conditions
                    .iter()
                    .flatten()
                    .next()
                    .map(|p| p.type_.as_str())
                    .unwrap_or(""),
                rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(message),
            "Ignore" => Verdict::Ignore,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::job::pods::fake;
    use k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement;
    use k8s_openapi::jiff::Timestamp;

    fn rule(action: &str, op: &str, values: Vec<i32>) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: op.into(),
                values,
            }),
            on_pod_conditions: None,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let policy = PodFailurePolicy {
            rules: vec![
                rule("Ignore", "In", vec![3]),
                rule("FailJob", "In", vec![42]),
                rule("Count", "NotIn", vec![1]),
            ],
        };
        let mut p = fake::exited("p", 42, Timestamp::UNIX_EPOCH);
        p.metadata.namespace = Some("ns".into());
        assert_eq!(
            verdict(&policy, &p),
            Verdict::FailJob(
                "Container c for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(
            verdict(&policy, &fake::exited("q", 3, Timestamp::UNIX_EPOCH)),
            Verdict::Ignore
        );
        assert_eq!(
            verdict(&policy, &fake::exited("r", 1, Timestamp::UNIX_EPOCH)),
            Verdict::Count
        );
    }
}

//! Filter outcomes and kube-scheduler's FailedScheduling message: the
//! per-node reasons counted and sorted, then what preemption would say
//! (deckhand does not preempt: no node ever yields victims).

use std::collections::BTreeMap;

/// Whether evicting pods could make the node fit (kube's Unschedulable)
/// or not (UnschedulableAndUnresolvable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    Unresolvable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Status {
    pub fn new(code: Code, reason: &str) -> Self {
        Self {
            code,
            reasons: vec![reason.to_string()],
        }
    }
}

/// kube-scheduler's ErrNoNodesAvailable.
pub const NO_NODES: &str = "no nodes available to schedule pods";
/// The DynamicResources PostFilter's message for a pod without claims,
/// which kube-scheduler 1.34+ (DRA on by default) puts before preemption's.
pub const NO_CLAIMS: &str = "no new claims to deallocate";
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const PREEMPTION_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// FitError.Error(): `0/N nodes are available: <count reason, ...>.`
fn nodes_available(all_nodes: usize, reasons: &BTreeMap<&str, usize>) -> String {
    let mut histogram: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    // Go sorts the "count reason" strings, counts included.
    histogram.sort();
    let mut msg = format!("0/{all_nodes} nodes are available:");
    if !histogram.is_empty() {
        msg.push_str(&format!(" {}.", histogram.join(", ")));
    }
    msg
}

/// The message of a pod that fits no node: filter reasons, then the
/// PostFilter plugins' (DynamicResources, DefaultPreemption).
pub fn fit_error(all_nodes: usize, statuses: &[Status], preempt_never: bool) -> String {
    if all_nodes == 0 {
        return NO_NODES.into();
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut preemption: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *reasons.entry(r.as_str()).or_default() += 1;
        }
        let p = match s.code {
            Code::Unresolvable => PREEMPTION_NOT_HELPFUL,
            Code::Unschedulable => NO_VICTIMS,
        };
        *preemption.entry(p).or_default() += 1;
    }
    let post = if preempt_never {
        PREEMPTION_NEVER.to_string()
    } else {
        format!("preemption: {}", nodes_available(all_nodes, &preemption))
    };
    format!(
        "{} {NO_CLAIMS}, {post}",
        nodes_available(all_nodes, &reasons)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_schedulers_message() {
        let statuses = [
            Status::new(Code::Unschedulable, "Insufficient cpu"),
            Status::new(Code::Unresolvable, "node(s) had untolerated taint(s)"),
        ];
        assert_eq!(
            fit_error(2, &statuses, false),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
             no new claims to deallocate, preemption: 0/2 nodes are available: \
             1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn counts_sort_as_strings_and_reasons_add_up() {
        let mut statuses = vec![Status::new(Code::Unresolvable, "b"); 10];
        statuses.push(Status::new(Code::Unresolvable, "a"));
        statuses.push(Status::new(Code::Unresolvable, "a"));
        statuses.push(Status {
            code: Code::Unschedulable,
            reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        });
        assert_eq!(
            fit_error(13, &statuses, false),
            "0/13 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 10 b, 2 a. \
             no new claims to deallocate, preemption: 0/13 nodes are available: \
             1 No preemption victims found for incoming pod, 12 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn no_nodes_and_preemption_never() {
        assert_eq!(fit_error(0, &[], false), NO_NODES);
        let s = [Status::new(Code::Unresolvable, "x")];
        assert_eq!(
            fit_error(1, &s, true),
            "0/1 nodes are available: 1 x. no new claims to deallocate, not eligible due to preemptionPolicy=Never."
        );
    }
}

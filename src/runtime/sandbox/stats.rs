//! What pod stats need of a sandbox: who it is, its cgroup, and a process
//! inside its own network namespace to read interface counters through.

use std::sync::Arc;

use crate::cri::api::v1 as cri;

use super::record::{SandboxRecord, SandboxState};
use super::{Sandbox, SandboxError, SandboxManager, matches_filter, metadata};
use crate::sys::ns::NsKind;

#[derive(Debug, Clone)]
pub struct SandboxStatsSource {
    pub attributes: cri::PodSandboxAttributes,
    pub ready: bool,
    /// The pod cgroup, relative to the hierarchy roots.
    pub cgroup: Option<String>,
    /// The infra process while the pod is ready and has a network namespace
    /// of its own (a host-network pod's traffic is the node's, not its own).
    pub netns_pid: Option<i32>,
}

impl SandboxManager {
    /// The sandbox `id` names (or a unique prefix of it), in any state.
    pub fn stats_source(&self, id: &str) -> Result<SandboxStatsSource, SandboxError> {
        Ok(source(&*self.get(id)?))
    }

    /// Every ready sandbox the filter matches: a stopped pod has no usage
    /// to report (as containerd, which skips sandboxes not ready).
    pub fn stats_sources(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Vec<SandboxStatsSource> {
        let filter = filter.map(|f| cri::PodSandboxFilter {
            id: f.id.clone(),
            state: None,
            label_selector: f.label_selector.clone(),
        });
        let sandboxes: Vec<Arc<Sandbox>> = self.sandboxes.lock().values().cloned().collect();
        let mut out: Vec<(i64, SandboxStatsSource)> = sandboxes
            .iter()
            .filter_map(|s| {
                let created_at = {
                    let record = s.record.lock();
                    let wanted = record.state == SandboxState::Ready
                        && matches_filter(&record, filter.as_ref());
                    wanted.then_some(record.created_at)?
                };
                // `source` locks the record itself.
                Some((created_at, source(s)))
            })
            .collect();
        out.sort_by_key(|(created_at, _)| *created_at);
        out.into_iter().map(|(_, s)| s).collect()
    }
}

fn source(sandbox: &Sandbox) -> SandboxStatsSource {
    let record: SandboxRecord = sandbox.record.lock().clone();
    let ready = record.state == SandboxState::Ready;
    let netns_pid = record
        .infra
        .filter(|_| ready && record.owns(NsKind::Net))
        .map(|i| i.pid);
    SandboxStatsSource {
        attributes: cri::PodSandboxAttributes {
            id: record.id.clone(),
            metadata: Some(metadata(&record)),
            labels: record.labels.clone().into_iter().collect(),
            annotations: record.annotations.clone().into_iter().collect(),
        },
        ready,
        cgroup: record.cgroup.clone(),
        netns_pid,
    }
}

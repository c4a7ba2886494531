//! What the CRI sees of sandboxes: status, list, and the info containers join.

use super::*;

impl SandboxManager {
    /// What a container joining sandbox `id` (or a unique prefix of it)
    /// needs to know of it.
    pub fn info(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let sandbox = self.get(id)?;
        let record = sandbox.record.lock();
        Ok(SandboxInfo {
            id: record.id.clone(),
            ready: record.state == SandboxState::Ready,
            dir: record.dir.clone(),
            cgroup: record.cgroup.clone(),
            hostname: record.hostname.clone(),
            log_directory: record.log_directory.clone(),
            namespaces: record
                .namespaces
                .iter()
                .map(|k| (*k, record.ns_path(*k)))
                .collect(),
            pid_mode: record.pid_mode,
            userns: record.userns.clone(),
        })
    }

    /// PodSandboxStatus, from memory.
    pub fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, SandboxError> {
        let sandbox = self.get(id)?;
        let record = sandbox.record.lock();
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "pid": record.infra.map(|i| i.pid).unwrap_or(0),
                "cgroup": record.cgroup,
                "namespaces": record.namespaces.iter().map(|k| (k.name(), record.ns_path(*k))).collect::<BTreeMap<_, _>>(),
                "dir": record.dir,
                "cniResult": record.network.as_ref().and_then(|n| n.result.clone()),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(cri::PodSandboxStatus {
                id: record.id.clone(),
                metadata: Some(metadata(&record)),
                state: cri_state(record.state) as i32,
                created_at: record.created_at,
                network: Some(cri::PodSandboxNetworkStatus {
                    ip: record.ips.first().cloned().unwrap_or_default(),
                    additional_ips: record
                        .ips
                        .iter()
                        .skip(1)
                        .map(|ip| cri::PodIp { ip: ip.clone() })
                        .collect(),
                }),
                linux: Some(cri::LinuxPodSandboxStatus {
                    namespaces: Some(cri::Namespace {
                        options: Some(cri::NamespaceOption {
                            network: record.network_mode,
                            pid: record.pid_mode,
                            ipc: record.ipc_mode,
                            userns_options: Some(match &record.userns {
                                Some(userns) => userns.to_cri(),
                                None => cri::UserNamespace {
                                    mode: cri::NamespaceMode::Node as i32,
                                    ..Default::default()
                                },
                            }),
                            ..Default::default()
                        }),
                    }),
                }),
                labels: record.labels.clone().into_iter().collect(),
                annotations: record.annotations.clone().into_iter().collect(),
                runtime_handler: record.runtime_handler.clone(),
            }),
            info,
            containers_statuses: vec![],
            timestamp: now_ns(),
        })
    }

    /// ListPodSandbox, from memory.
    pub fn list(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let sandboxes: Vec<Arc<Sandbox>> = self.sandboxes.lock().values().cloned().collect();
        let mut out: Vec<cri::PodSandbox> = sandboxes
            .iter()
            .filter_map(|s| {
                let record = s.record.lock();
                matches_filter(&record, filter).then(|| cri::PodSandbox {
                    id: record.id.clone(),
                    metadata: Some(metadata(&record)),
                    state: cri_state(record.state) as i32,
                    created_at: record.created_at,
                    labels: record.labels.clone().into_iter().collect(),
                    annotations: record.annotations.clone().into_iter().collect(),
                    runtime_handler: record.runtime_handler.clone(),
                })
            })
            .collect();
        out.sort_by_key(|s| s.created_at);
        out
    }
}

pub(super) fn matches_filter(
    record: &SandboxRecord,
    filter: Option<&cri::PodSandboxFilter>,
) -> bool {
    let Some(filter) = filter else { return true };
    if !filter.id.is_empty() && !record.id.starts_with(&filter.id) {
        return false;
    }
    if let Some(state) = &filter.state
        && state.state != cri_state(record.state) as i32
    {
        return false;
    }
    filter
        .label_selector
        .iter()
        .all(|(k, v)| record.labels.get(k) == Some(v))
}

pub(super) fn cri_state(state: SandboxState) -> cri::PodSandboxState {
    match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::Creating | SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

pub(super) fn metadata(record: &SandboxRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: record.name.clone(),
        uid: record.uid.clone(),
        namespace: record.namespace.clone(),
        attempt: record.attempt,
    }
}

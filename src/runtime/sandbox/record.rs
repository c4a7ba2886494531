//! A sandbox's record: everything needed to report it and to release what it
//! holds, kept in memory and as JSON under the state dir so a restarted
//! deckhand re-adopts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::infra::InfraProcess;
use crate::sys::cni::{NetworkList, PortMapping};
use crate::sys::idmap::IdMapping;
use crate::sys::ns::NsKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Resources are being made; a record found in this state at startup
    /// belongs to a RunPodSandbox that never finished and is released.
    Creating,
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub list: NetworkList,
    /// The loopback plugin brought `lo` up (its DEL is due too).
    pub loopback: bool,
    pub port_mappings: Vec<PortMapping>,
    /// The chain's ADD result, for DEL's prevResult.
    pub result: Option<serde_json::Value>,
    /// ADD was attempted and DEL not yet done: DEL is owed.
    pub attached: bool,
}

/// The pod's own user namespace: its ID maps (one range each, as the
/// kubelet asks), written by deckhand into the infra's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

impl UserNamespace {
    /// The host (uid, gid) of the pod's root.
    pub fn root(&self) -> (u32, u32) {
        let host = |maps: &[IdMapping]| maps.iter().find_map(|m| m.host_of(0)).unwrap_or(0);
        (host(&self.uids), host(&self.gids))
    }

    pub fn to_cri(&self) -> crate::cri::api::v1::UserNamespace {
        use crate::cri::api::v1 as cri;
        let cri_maps = |maps: &[IdMapping]| {
            maps.iter()
                .map(|m| cri::IdMapping {
                    host_id: m.host_id,
                    container_id: m.container_id,
                    length: m.length,
                })
                .collect()
        };
        cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: cri_maps(&self.uids),
            gids: cri_maps(&self.gids),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub hostname: String,
    pub log_directory: String,
    /// CRI NamespaceMode values, as requested.
    pub network_mode: i32,
    pub pid_mode: i32,
    pub ipc_mode: i32,
    pub created_at: i64,
    pub state: SandboxState,
    /// This sandbox's directory under the run dir (pins, resolv.conf, ...).
    pub dir: PathBuf,
    /// Namespaces this sandbox owns, pinned at `dir/ns/<kind>`.
    pub namespaces: Vec<NsKind>,
    /// cgroup path relative to the hierarchy roots.
    pub cgroup: Option<String>,
    pub infra: Option<InfraProcess>,
    pub network: Option<Network>,
    pub ips: Vec<String>,
    /// Set when the pod has a user namespace of its own (then among
    /// `namespaces` too). Records from before user namespaces lack it.
    #[serde(default)]
    pub userns: Option<UserNamespace>,
}

impl SandboxRecord {
    pub fn ns_path(&self, kind: NsKind) -> PathBuf {
        self.dir.join("ns").join(kind.name())
    }

    pub fn owns(&self, kind: NsKind) -> bool {
        self.namespaces.contains(&kind)
    }

    /// The name a sandbox reserves: one sandbox per pod attempt.
    pub fn reserved_name(&self) -> String {
        reserved_name(&self.name, &self.namespace, &self.uid, self.attempt)
    }
}

/// `/` cannot appear in any part (RunPodSandbox refuses it), so two pods
/// never share a name: with `_`, as containerd joins them, `a_b`/`c` and
/// `a`/`b_c` would.
pub fn reserved_name(name: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    format!("{namespace}/{name}/{uid}/{attempt}")
}

#[derive(Debug, thiserror::Error)]
#[error("sandbox record {path}: {source}")]
pub struct RecordError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The records' directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes atomically (temp file + rename): a crash leaves the old record
    /// or the new one, never half of one.
    pub fn save(&self, record: &SandboxRecord) -> Result<(), RecordError> {
        let path = self.path(&record.id);
        let err = |source| RecordError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!(".{}.tmp", record.id));
        let body = serde_json::to_vec_pretty(record).expect("records serialize");
        write_synced(&tmp, &body).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    pub fn delete(&self, id: &str) -> Result<(), RecordError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError { path, source }),
        }
    }

    /// Every readable record; unreadable ones are logged and skipped.
    pub fn load_all(&self) -> Vec<SandboxRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable sandbox record")
                }
            }
        }
        records
    }
}

fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(body)?;
    file.sync_all()
}

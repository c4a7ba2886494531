//! A restarted deckhand re-adopts its containers: each containerd
//! container carries, as an extension, what CRI reports of it; its task (or
//! the lack of one) says whether it runs, has exited, or never started.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cri::api::v1 as cri;
use containerd_client::services::v1::{GetRequest, ListContainersRequest, UpdateContainerRequest};
use containerd_client::types::v1::Status as ProcessStatus;
use prost::Message;
use tokio::sync::watch;

use super::{Container, ContainerManager, Runtime, State, is_not_found, now_ns};

/// The containerd container extension holding the record.
pub(super) const EXTENSION: &str = "io.deckhand.container";
const RECORD_TYPE_URL: &str = "deckhand/runtime.v1.ContainerStatusResponse";
/// What containerd's CRI reports for a container whose exit nobody saw.
const UNKNOWN_EXIT_CODE: i32 = 255;

/// The record of a container: its CRI status plus our own fields in `info`.
pub(super) fn record(c: &Container) -> prost_types::Any {
    let rt = c.snapshot();
    let response = cri::ContainerStatusResponse {
        status: Some(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: Some(c.metadata.clone()),
            created_at: c.created_at,
            started_at: rt.started_at,
            finished_at: rt.finished_at,
            exit_code: rt.exit_code,
            reason: rt.reason.clone(),
            message: rt.message.clone(),
            state: match rt.state {
                State::Created => cri::ContainerState::ContainerCreated,
                State::Running => cri::ContainerState::ContainerRunning,
                State::Exited => cri::ContainerState::ContainerExited,
            } as i32,
            image: Some(cri::ImageSpec {
                image: c.image.clone(),
                user_specified_image: c.user_specified_image.clone(),
                ..Default::default()
            }),
            image_ref: c.image_ref.clone(),
            image_id: c.image_id.clone(),
            user: c.user.get().cloned(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            mounts: c.mounts.clone(),
            log_path: c
                .log_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        }),
        info: HashMap::from([
            ("sandbox_id".to_string(), c.sandbox_id.clone()),
            ("cgroup".to_string(), c.cgroup.clone()),
            ("dir".to_string(), c.dir.to_string_lossy().into_owned()),
            ("reserved_name".to_string(), c.reserved_name.clone()),
            ("stdin".to_string(), c.stdio.stdin.to_string()),
            ("stdin_once".to_string(), c.stdio.stdin_once.to_string()),
            ("tty".to_string(), c.stdio.tty.to_string()),
            (
                "image_tag".to_string(),
                c.image_tag.clone().unwrap_or_default(),
            ),
            (
                "stop_signal".to_string(),
                (c.stop_signal as i32).to_string(),
            ),
        ]),
    };
    prost_types::Any {
        type_url: RECORD_TYPE_URL.into(),
        value: response.encode_to_vec(),
    }
}

fn from_record(any: &prost_types::Any) -> Option<Container> {
    let response = cri::ContainerStatusResponse::decode(any.value.as_slice()).ok()?;
    let status = response.status?;
    let info = |k: &str| response.info.get(k).cloned().unwrap_or_default();
    let mut runtime = Runtime::created();
    runtime.started_at = status.started_at;
    // A recorded exit stands; a recorded run is checked against the task.
    let exited = status.state == cri::ContainerState::ContainerExited as i32;
    if exited {
        runtime.state = State::Exited;
        runtime.finished_at = status.finished_at;
        runtime.exit_code = status.exit_code;
        runtime.reason = status.reason.clone();
        runtime.message = status.message.clone();
    }
    Some(Container {
        id: status.id,
        sandbox_id: info("sandbox_id"),
        metadata: status.metadata?,
        image: status
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        user_specified_image: status
            .image
            .map(|i| i.user_specified_image)
            .unwrap_or_default(),
        image_tag: Some(info("image_tag")).filter(|t| !t.is_empty()),
        // Records from before image_id was kept held the id as image_ref.
        image_id: if status.image_id.is_empty() {
            status.image_ref.clone()
        } else {
            status.image_id
        },
        image_ref: status.image_ref,
        user: status
            .user
            .map(std::sync::OnceLock::from)
            .unwrap_or_default(),
        labels: status.labels,
        annotations: status.annotations,
        mounts: status.mounts,
        log_path: (!status.log_path.is_empty()).then(|| PathBuf::from(status.log_path)),
        execs: super::exec::exec_slots(),
        created_at: status.created_at,
        reserved_name: info("reserved_name"),
        dir: PathBuf::from(info("dir")),
        cgroup: info("cgroup"),
        runtime: Mutex::new(runtime),
        exited: watch::Sender::new(exited),
        stop_signal: info("stop_signal")
            .parse::<i32>()
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
            .unwrap_or(nix::sys::signal::Signal::SIGTERM),
        // A stop the previous deckhand began is not known: signal again.
        stop_signaled: Default::default(),
        op: tokio::sync::Mutex::new(()),
        record_write: tokio::sync::Mutex::new(()),
        stdio: super::Stdio {
            stdin: info("stdin") == "true",
            stdin_once: info("stdin_once") == "true",
            tty: info("tty") == "true",
        },
        // The FIFO's write end died with the previous deckhand.
        stdin: tokio::sync::Mutex::new(None),
    })
}

impl ContainerManager {
    /// Saves the record again (after a start: its start time).
    pub(super) async fn save_record(&self, c: &Container) {
        let cd = &self.containerd;
        let _writing = c.record_write.lock().await;
        let request = UpdateContainerRequest {
            container: Some(containerd_client::services::v1::Container {
                id: c.id.clone(),
                extensions: HashMap::from([(EXTENSION.to_string(), record(c))]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("extensions.{EXTENSION}")],
            }),
        };
        if let Err(status) = cd.containers().update(cd.request(request)).await {
            tracing::warn!(id = %c.id, %status, "saving container record");
        }
    }

    /// Re-adopts every container a previous deckhand made in our namespace.
    /// Runs after the event subscription is live, and each container is
    /// listed before its task is asked about, so no exit falls between.
    pub(super) async fn adopt(self: &Arc<Self>) {
        let cd = &self.containerd;
        let listed = match cd
            .containers()
            .list(cd.request(ListContainersRequest { filters: vec![] }))
            .await
        {
            Ok(r) => r.into_inner().containers,
            Err(status) => {
                tracing::warn!(%status, "listing containers to adopt");
                return;
            }
        };
        for stored in listed {
            let Some(container) = stored.extensions.get(EXTENSION).and_then(from_record) else {
                continue;
            };
            let container = Arc::new(container);
            self.names
                .lock()
                .insert(container.reserved_name.clone(), container.id.clone());
            self.containers
                .lock()
                .insert(container.id.clone(), container.clone());
            let task = cd
                .tasks()
                .get(cd.call(GetRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                }))
                .await;
            match task.map(|r| r.into_inner().process) {
                Ok(Some(p)) if p.status == ProcessStatus::Stopped as i32 => {
                    {
                        let mut rt = container.runtime.lock();
                        rt.state = State::Running;
                        rt.pid = p.pid;
                    }
                    let at = p
                        .exited_at
                        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                        .unwrap_or_else(now_ns);
                    self.record_exit(&container, p.exit_status as i32, at).await;
                }
                Ok(Some(p)) => {
                    let mut rt = container.runtime.lock();
                    if rt.state == State::Created {
                        rt.state = State::Running;
                        rt.pid = p.pid;
                    }
                }
                Ok(None) => {}
                Err(status) if is_not_found(&status) => {
                    let mut rt = container.runtime.lock();
                    if rt.started_at > 0 && rt.state != State::Exited {
                        // It ran, and its end went unseen (e.g. a reboot).
                        rt.state = State::Exited;
                        rt.exit_code = UNKNOWN_EXIT_CODE;
                        rt.finished_at = now_ns();
                        rt.reason = "Unknown".into();
                        drop(rt);
                        container.exited.send_replace(true);
                    }
                }
                Err(status) => {
                    tracing::warn!(id = %container.id, %status, "task of adopted container");
                }
            }
            tracing::info!(id = %container.id, state = ?container.snapshot().state, "adopted container");
        }
    }
}

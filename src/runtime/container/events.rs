//! Exits come from containerd's event stream, not from polling: one task
//! per manager reads `/tasks/exit` and `/tasks/oom` for our namespace and
//! records each container's end.

use std::sync::{Arc, Weak};
use std::time::Duration;

use containerd_client::events::{TaskExit, TaskOom};
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use prost::Message;

use super::{Container, ContainerError, ContainerManager, State, blocking, is_not_found};
use crate::cri::api::v1::ContainerEventType as Event;

/// Wait before resubscribing after the stream broke (containerd restarting).
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

type EventStream = tonic::codec::Streaming<Envelope>;

/// Our own topic: published until the subscription sees it, which proves
/// the subscription is live (containerd sends a stream's headers with its
/// first event, so the call alone tells nothing).
const PROBE_TOPIC: &str = "/deckhand/events-probe";
/// How often the probe is published while we wait.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long a subscription may take to become live.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

async fn subscribe(manager: &ContainerManager) -> Result<EventStream, tonic::Status> {
    let ns = manager.containerd.namespace();
    let filters = ["/tasks/exit", "/tasks/oom", PROBE_TOPIC]
        .iter()
        .map(|topic| format!("topic==\"{topic}\",namespace==\"{ns}\""))
        .collect();
    let cd = &manager.containerd;
    let mut events = cd.events();
    let subscribed = events.subscribe(cd.request(SubscribeRequest { filters }));
    let probe = async {
        loop {
            let request = PublishRequest {
                topic: PROBE_TOPIC.into(),
                event: Some(prost_types::Any {
                    type_url: "deckhand.events.Probe".into(),
                    value: vec![],
                }),
            };
            if let Err(status) = cd.events().publish(cd.request(request)).await {
                tracing::debug!(%status, "publishing events probe");
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    };
    let live = async {
        tokio::select! {
            r = subscribed => r,
            () = probe => unreachable!("the probe loop never ends"),
        }
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, live).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "containerd event subscription did not become live",
        )),
    }
}

/// Subscribes now (so the caller knows events flow before any task starts)
/// and spawns the reader. The reader holds the manager weakly: it ends with it.
pub(super) async fn watch(manager: &Arc<ContainerManager>) -> Result<(), ContainerError> {
    let stream = subscribe(manager)
        .await
        .map_err(|s| ContainerError::from_status("subscribing to containerd events", &s))?;
    let weak = Arc::downgrade(manager);
    tokio::spawn(read_events(weak, stream));
    Ok(())
}

async fn read_events(weak: Weak<ContainerManager>, mut stream: EventStream) {
    loop {
        loop {
            let envelope = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(status) => {
                    tracing::warn!(%status, "containerd event stream broke");
                    break;
                }
            };
            let Some(manager) = weak.upgrade() else {
                return;
            };
            manager.on_event(envelope);
        }
        // Resubscribe; exits missed meanwhile are found by asking for every
        // running container's task.
        loop {
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            let Some(manager) = weak.upgrade() else {
                return;
            };
            match subscribe(&manager).await {
                Ok(s) => {
                    stream = s;
                    manager.reconcile().await;
                    break;
                }
                Err(status) => tracing::warn!(%status, "resubscribing to containerd events"),
            }
        }
    }
}

impl ContainerManager {
    fn on_event(self: &Arc<Self>, envelope: Envelope) {
        if envelope.namespace != self.containerd.namespace() {
            return;
        }
        let Some(event) = envelope.event else { return };
        match envelope.topic.as_str() {
            "/tasks/oom" => {
                if let Ok(oom) = TaskOom::decode(event.value.as_slice())
                    && let Some(c) = self.containers.lock().get(&oom.container_id)
                {
                    c.runtime.lock().oom = true;
                }
            }
            "/tasks/exit" => {
                let Ok(exit) = TaskExit::decode(event.value.as_slice()) else {
                    return;
                };
                // Exec'd processes exit too; only the init process ends the container.
                if exit.id != exit.container_id {
                    return;
                }
                let Some(container) = self.containers.lock().get(&exit.container_id).cloned()
                else {
                    return;
                };
                let finished_at = exit
                    .exited_at
                    .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                    .unwrap_or_else(super::now_ns);
                let manager = self.clone();
                tokio::spawn(async move {
                    manager
                        .record_exit(&container, exit.exit_status as i32, finished_at)
                        .await;
                });
            }
            _ => {}
        }
    }

    /// Records the end of the container's init process and deletes its
    /// task, so the shim goes away with it; then wakes whoever waits.
    pub(super) async fn record_exit(&self, container: &Container, code: i32, finished_at: i64) {
        let cgroup = container.cgroup.clone();
        let oom_in_cgroup = blocking(move || oom_killed(&cgroup)).await.unwrap_or(false);
        {
            let _order = self.events.order();
            let mut rt = container.runtime.lock();
            if rt.state == State::Exited {
                return;
            }
            // Exited before StartContainer recorded the start: it did start.
            let never_seen_running = rt.state == State::Created;
            rt.state = State::Exited;
            rt.exit_code = code;
            rt.finished_at = finished_at;
            rt.reason = if rt.oom || oom_in_cgroup {
                "OOMKilled".into()
            } else if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
            drop(rt);
            let (id, sandbox) = (&container.id, &container.sandbox_id);
            if never_seen_running {
                self.emit(id, sandbox, Event::ContainerStartedEvent);
            }
            self.emit(id, sandbox, Event::ContainerStoppedEvent);
        }
        tracing::info!(id = %container.id, code, "container exited");
        // Saved before the task goes: its exit status dies with it.
        self.save_record(container).await;
        if let Err(status) = self.delete_task(&container.id).await {
            tracing::warn!(id = %container.id, %status, "deleting exited task");
        }
        container.exited.send_replace(true);
    }

    /// After the event stream was down: any running container whose task
    /// is gone or stopped has exited.
    async fn reconcile(self: &Arc<Self>) {
        use containerd_client::services::v1::GetRequest;
        use containerd_client::types::v1::Status as ProcessStatus;
        let running: Vec<Arc<Container>> = self
            .containers
            .lock()
            .values()
            .filter(|c| c.snapshot().state == State::Running)
            .cloned()
            .collect();
        for container in running {
            let cd = &self.containerd;
            let got = cd
                .tasks()
                .get(cd.call(GetRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                }))
                .await;
            match got {
                Ok(r) => {
                    if let Some(p) = r.into_inner().process
                        && p.status == ProcessStatus::Stopped as i32
                    {
                        let at = p
                            .exited_at
                            .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                            .unwrap_or_else(super::now_ns);
                        self.record_exit(&container, p.exit_status as i32, at).await;
                    }
                }
                Err(status) if is_not_found(&status) => {
                    self.record_exit(&container, 255, super::now_ns()).await;
                }
                Err(status) => tracing::warn!(id = %container.id, %status, "task status"),
            }
        }
    }
}

/// Whether the kernel OOM-killed a process in the cgroup (v1 memory
/// controller's `oom_kill` counter, or v2's memory.events). Blocking.
fn oom_killed(cgroup: &str) -> bool {
    let rel = cgroup.trim_start_matches('/');
    let files = [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
    ];
    files
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|body| oom_kills(&body) > 0))
}

/// The `oom_kill N` counter of a memory.oom_control or memory.events file.
fn oom_kills(body: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::oom_kills;

    #[test]
    fn oom_kill_counters_are_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kills(v1), 2);
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(v2), 1);
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
        assert_eq!(oom_kills(""), 0);
    }
}

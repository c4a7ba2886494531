//! GetContainerEvents: each lifecycle step of a container (created, started,
//! stopped, deleted) and of a sandbox (reported as containerd's CRI reports
//! its sandbox container: the sandbox id as the container id), sent to every
//! subscriber with the pod's status and its containers' statuses, which is
//! what the kubelet's Evented PLEG reads.
//!
//! One broadcast channel with a bounded buffer: a subscriber that falls
//! more than the buffer behind gets an error and loses its stream (it
//! relists, as the kubelet does), instead of the runtime holding events for
//! it without limit.

use parking_lot::{Mutex, MutexGuard};

use futures::Stream;
use tokio::sync::broadcast;

use crate::cri::api::v1 as cri;

use super::ContainerManager;

/// Events a subscriber may fall behind before it is cut off.
const BUFFER: usize = 1024;

pub(super) struct EventFeed {
    sender: broadcast::Sender<cri::ContainerEventResponse>,
    /// Held from a state change to its event, so that steps of one container
    /// seen by different tasks (an exit recorded while StartContainer is
    /// finishing) go out in the order they happened.
    order: Mutex<()>,
}

impl EventFeed {
    pub(super) fn new() -> Self {
        EventFeed {
            sender: broadcast::Sender::new(BUFFER),
            order: Mutex::new(()),
        }
    }

    /// Taken around a state change and the event it makes. Never held
    /// across an await (it is a std mutex) nor taken under a container's
    /// runtime lock.
    pub(super) fn order(&self) -> MutexGuard<'_, ()> {
        self.order.lock()
    }
}

/// A subscriber fell too far behind: events were dropped for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "container event stream fell {0} events behind and was closed; list containers again and resubscribe"
)]
pub struct EventsLagged(pub u64);

/// The receiver's messages, ending with one error once it has lagged.
fn until_lagged<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
) -> impl Stream<Item = Result<T, EventsLagged>> + Send + 'static {
    futures::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Ok(event) => Some((Ok(event), Some(receiver))),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(EventsLagged(n)), None)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

impl ContainerManager {
    /// Every event from now on, until the subscriber lags or goes away.
    pub fn subscribe_events(
        &self,
    ) -> impl Stream<Item = Result<cri::ContainerEventResponse, EventsLagged>> + Send + 'static
    {
        until_lagged(self.events.sender.subscribe())
    }

    /// Sends a container's event; the statuses are read now (from memory).
    /// Nothing is built while no one listens.
    pub(super) fn emit(&self, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        if self.events.sender.receiver_count() == 0 {
            return;
        }
        let pod_sandbox_status = self
            .sandboxes
            .status(sandbox_id, false)
            .ok()
            .and_then(|r| r.status);
        self.send(container_id, sandbox_id, kind, pod_sandbox_status);
    }

    fn send(
        &self,
        container_id: &str,
        sandbox_id: &str,
        kind: cri::ContainerEventType,
        pod_sandbox_status: Option<cri::PodSandboxStatus>,
    ) {
        tracing::debug!(container_id, ?kind, "container event");
        let event = cri::ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: super::now_ns(),
            pod_sandbox_status,
            containers_statuses: self.statuses_in_sandbox(sandbox_id),
        };
        // An error only means no one listens any more.
        let _ = self.events.sender.send(event);
    }

    /// A sandbox's step. `status` is the sandbox's as it was when it went
    /// away (a deleted sandbox has none left to read); otherwise it is read
    /// now.
    pub fn sandbox_event(
        &self,
        sandbox_id: &str,
        kind: cri::ContainerEventType,
        status: Option<cri::PodSandboxStatus>,
    ) {
        if self.events.sender.receiver_count() == 0 {
            return;
        }
        let _order = self.events.order();
        match status {
            Some(status) => self.send(sandbox_id, sandbox_id, kind, Some(status)),
            None => self.emit(sandbox_id, sandbox_id, kind),
        }
    }

    /// The statuses of a sandbox's containers, oldest first (PodSandboxStatus's
    /// `containers_statuses`, and every event's).
    pub fn statuses_in_sandbox(&self, sandbox_id: &str) -> Vec<cri::ContainerStatus> {
        let mut ids: Vec<(i64, String)> = self
            .containers
            .lock()
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| (c.created_at, c.id.clone()))
            .collect();
        ids.sort();
        ids.iter()
            .filter_map(|(_, id)| self.status(id, false).ok()?.status)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_subscriber_that_lags_gets_an_error_and_its_stream_ends() {
        let sender = broadcast::Sender::new(4);
        let mut fast = Box::pin(until_lagged(sender.subscribe()));
        let mut slow = Box::pin(until_lagged(sender.subscribe()));
        sender.send(0).unwrap();
        assert_eq!(fast.next().await.unwrap().unwrap(), 0);
        for i in 1..10 {
            sender.send(i).unwrap();
            assert_eq!(fast.next().await.unwrap().unwrap(), i);
        }
        // Ten sent into a buffer of four: the slow one lost six.
        let lagged = slow.next().await.unwrap().unwrap_err();
        assert_eq!(lagged.0, 6);
        assert!(slow.next().await.is_none());
        drop(sender);
        assert!(fast.next().await.is_none());
    }
}

//! The connection to containerd's native API: one gRPC channel, a namespace
//! on every request, and an optional lease that protects what a request makes
//! from containerd's garbage collector until we let go.

use std::path::Path;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CreateRequest as LeaseCreateRequest, DeleteRequest as LeaseDeleteRequest,
};
use tonic::transport::Channel;

/// How long a unary call about a task or container may take. containerd
/// honours the deadline (grpc-timeout) on its calls into the shim, so a
/// shim that stops answering (wedged, or SIGSTOPped) gives DeadlineExceeded
/// instead of a call that never returns.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// containerd's gRPC servers accept up to 16 MiB a message; keep our replies below.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to containerd at {path}: {message}")]
    Connect { path: String, message: String },
}

#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
}

impl Containerd {
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self, ConnectError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|e| ConnectError::Connect {
                    path: socket.display().to_string(),
                    message: format!(
                        "{e}: {}",
                        std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ),
                })?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying our namespace.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.request_in(message, None)
    }

    /// A request carrying our namespace and a deadline of [`CALL_TIMEOUT`]:
    /// for unary calls that must answer soon (not Wait, not streams).
    pub fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.request_in(message, None);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A request carrying our namespace and, when given, a lease that holds
    /// whatever the request creates.
    pub fn request_in<T>(&self, message: T, lease: Option<&Lease>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(ns) = self.namespace.parse() {
            metadata.insert("containerd-namespace", ns);
        }
        if let Some(lease) = lease
            && let Ok(id) = lease.id.parse()
        {
            metadata.insert("containerd-lease", id);
        }
        request
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    /// A lease that expires by itself after `ttl` if we die before deleting it,
    /// so a crash mid-pull leaves nothing pinned forever.
    pub async fn create_lease(
        &self,
        purpose: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease, tonic::Status> {
        let expire =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now() + ttl).to_string();
        let id = format!(
            "deckhand-{purpose}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let request = LeaseCreateRequest {
            id: id.clone(),
            labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
        };
        self.leases().create(self.request(request)).await?;
        Ok(Lease { id })
    }

    /// Drops a lease; with `sync` the garbage collector runs before we return.
    pub async fn delete_lease(&self, lease: Lease, sync: bool) {
        let request = LeaseDeleteRequest {
            id: lease.id.clone(),
            sync,
        };
        if let Err(status) = self.leases().delete(self.request(request)).await {
            tracing::warn!(lease = %lease.id, %status, "deleting containerd lease");
        }
    }
}

#[derive(Debug, Clone)]
pub struct Lease {
    pub id: String,
}

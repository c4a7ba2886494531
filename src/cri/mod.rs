//! The CRI boundary: the traits and messages (`api`, a leaf), the gRPC server
//! that serves any implementation on a unix socket, and the remote
//! implementation that calls a CRI runtime over one.

pub mod api;
pub mod authority;
pub mod client;
pub mod limits;
pub mod remote;
pub mod server;
pub mod socket;

/// The runtime.v1 messages, where they have always been reachable.
pub use api::v1;

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;

use api::v1::image_service_server::ImageServiceServer;
use api::v1::runtime_service_server::RuntimeServiceServer;
use api::{ImageService, RuntimeService};
use server::CriServer;

/// Largest message we accept or send: containerd's CRI default (its gRPC
/// server's MaxRecvMsgSize and MaxSendMsgSize are 16 MiB); a
/// ListImages/ListContainers reply on a busy node can pass tonic's 4 MiB
/// default. Past it a call answers ResourceExhausted ([`limits`]).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long a stopping server lets in-flight calls finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves CRI on `socket_path` until `shutdown` resolves; the socket file is
/// removed when serving ends.
pub async fn serve<R, I>(
    socket_path: &Path,
    runtime: Arc<R>,
    images: Arc<I>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    R: RuntimeService + ?Sized + 'static,
    I: ImageService + ?Sized + 'static,
{
    let mut listener = socket::bind(socket_path)?;
    tracing::info!(socket = %socket_path.display(), "serving CRI");
    let images = ImageServiceServer::new(CriServer::new(images))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let runtime = RuntimeServiceServer::new(CriServer::new(runtime))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Graceful shutdown waits for every connection to close, and a client such
    // as the kubelet keeps its connection forever: give in-flight calls a grace
    // period, then stop regardless.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.notify_one();
        }
    };
    let server = tonic::transport::Server::builder()
        .layer(limits::ContainerdLimits)
        .add_service(images)
        .add_service(runtime)
        .serve_with_incoming_shutdown(
            listener
                .incoming()
                .map(|accepted| accepted.map(authority::AnyAuthority::new)),
            signal,
        );
    let result = tokio::select! {
        result = server => result.map_err(|e| anyhow::anyhow!("CRI server: {e}")),
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    drop(listener);
    result
}

//! The CRI boundary: the gRPC server (tonic) for runtime.v1 on a unix socket,
//! and a client for talking to a CRI runtime over one.

pub mod authority;
pub mod client;
pub mod image_service;
pub mod runtime_service;
pub mod socket;

/// The CRI v1 messages and services, generated from proto/runtime/v1/api.proto.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use std::path::Path;

use futures::StreamExt;
use std::sync::Arc;

use crate::cri::v1::image_service_server::ImageServiceServer;
use crate::cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::runtime::container::ContainerManager;
use crate::runtime::image::ImageManager;
use crate::runtime::sandbox::SandboxManager;
use crate::runtime::streaming::server::StreamingServer;

/// Largest message we accept or send: a ListImages/ListContainers reply on a
/// busy node can pass tonic's 4 MiB default.
/// A server stream that carries exactly one message: the answer to a Stream*
/// call whose whole list is already in memory.
pub type OneMessage<T> = futures::stream::Once<std::future::Ready<Result<T, tonic::Status>>>;

pub fn one_message<T>(message: T) -> tonic::Response<OneMessage<T>> {
    tonic::Response::new(futures::stream::once(std::future::ready(Ok(message))))
}

const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long a stopping server lets in-flight calls finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves CRI on `socket_path` until `shutdown` resolves; the socket file is
/// removed when serving ends.
pub async fn serve(
    socket_path: &Path,
    images: Arc<ImageManager>,
    sandboxes: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
    streaming: Arc<StreamingServer>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut listener = socket::bind(socket_path)?;
    tracing::info!(socket = %socket_path.display(), "serving CRI");
    let images = ImageServiceServer::new(image_service::CriImageService::new(images))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let runtime = RuntimeServiceServer::new(runtime_service::CriRuntimeService::new(
        sandboxes, containers, streaming,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Graceful shutdown waits for every connection to close, and a client such
    // as the kubelet keeps its connection forever: give in-flight calls a grace
    // period, then stop regardless.
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.notify_one();
        }
    };
    let server = tonic::transport::Server::builder()
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

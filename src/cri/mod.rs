//! The CRI boundary: the gRPC server (tonic) for runtime.v1 on a unix socket,
//! and a client for talking to a CRI runtime over one.

pub mod client;
pub mod image_service;
pub mod runtime_service;
pub mod socket;

use std::path::Path;
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::runtime::image::ImageManager;

/// Largest message we accept or send: a ListImages/ListContainers reply on a
/// busy node can pass tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Serves CRI on `socket_path` until `shutdown` resolves; the socket file is
/// removed when serving ends.
pub async fn serve(
    socket_path: &Path,
    images: Arc<ImageManager>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut listener = socket::bind(socket_path)?;
    tracing::info!(socket = %socket_path.display(), "serving CRI");
    let images = ImageServiceServer::new(image_service::CriImageService::new(images))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let runtime = RuntimeServiceServer::new(runtime_service::CriRuntimeService)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let result = tonic::transport::Server::builder()
        .add_service(images)
        .add_service(runtime)
        .serve_with_incoming_shutdown(listener.incoming(), shutdown)
        .await;
    drop(listener);
    result.map_err(|e| anyhow::anyhow!("CRI server: {e}"))
}

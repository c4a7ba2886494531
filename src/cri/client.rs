//! The raw gRPC clients over a unix socket, what the tests and `cri-reset`
//! drive a runtime with (`deckhand node` uses [`super::remote`], the CRI
//! traits over the same dialling).

use std::path::{Path, PathBuf};

use crate::cri::v1::image_service_client::ImageServiceClient;
use crate::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

/// Dials the runtime's socket: every connection goes there, whatever URI
/// the channel was given.
pub(crate) async fn dial(
    socket: PathBuf,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio::net::UnixStream>> {
    Ok(hyper_util::rt::TokioIo::new(
        tokio::net::UnixStream::connect(socket).await?,
    ))
}

pub async fn connect(socket: &Path) -> Result<CriClient, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| dial(socket.clone())))
        .await?;
    let max = crate::cri::MAX_MESSAGE_BYTES;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(max),
        images: ImageServiceClient::new(channel).max_decoding_message_size(max),
    })
}

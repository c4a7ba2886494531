//! A CRI client over a unix socket: what `deckhand node` uses for a remote
//! runtime, and what the tests drive `deckhand cri` with.

use std::path::{Path, PathBuf};

use crate::cri::v1::image_service_client::ImageServiceClient;
use crate::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

pub async fn connect(socket: &Path) -> Result<CriClient, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    // The URI is ignored: every connection goes to the socket.
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
        images: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
    })
}

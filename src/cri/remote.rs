//! The CRI traits over a remote runtime's unix socket (deckhand's own
//! `deckhand cri`, containerd's CRI plugin, CRI-O): what `deckhand node
//! --container-runtime-endpoint` talks to.
//!
//! The channel is lazy and reconnects by itself: a runtime that is not up
//! yet, or restarts, makes calls fail with Unavailable until it is back,
//! never wedges the caller. Every unary call has a deadline.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::cri::api::v1::image_service_client::ImageServiceClient;
use crate::cri::api::v1::runtime_service_client::RuntimeServiceClient;
use crate::cri::api::{ContainerEventStream, CriError, ImageService, RuntimeService, v1};

/// How long a unary call may take, as the kubelet's
/// `--runtime-request-timeout` (2 minutes) bounds it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a pull may take: the runtime fails a pull that stalls much
/// earlier; this bounds one that crawls.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A CRI runtime behind a unix socket.
#[derive(Clone)]
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    request_timeout: Duration,
    pull_timeout: Duration,
}

impl RemoteRuntime {
    /// A client for the runtime at `socket`; nothing is dialled until the
    /// first call.
    pub fn new(socket: &Path) -> Self {
        let socket = socket.to_path_buf();
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(10))
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                crate::cri::client::dial(socket.clone())
            }));
        let max = crate::cri::MAX_MESSAGE_BYTES;
        Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        }
    }

    pub fn with_timeouts(mut self, request: Duration, pull: Duration) -> Self {
        self.request_timeout = request;
        self.pull_timeout = pull;
        self
    }
}

/// Runs one call with a deadline, which also goes to the server as
/// `grpc-timeout`.
async fn call<Req, Resp, F, Fut>(
    timeout: Duration,
    what: &str,
    request: Req,
    f: F,
) -> Result<Resp, CriError>
where
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let mut request = tonic::Request::new(request);
    request.set_timeout(timeout);
    answer(timeout, what, f(request)).await
}

/// Waits at most `timeout` for the runtime's answer (for a stream, its
/// response headers). Sends no deadline: a stream must outlive it.
async fn answer<Resp>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
) -> Result<Resp, CriError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(from_status(what, status)),
        Err(_) => Err(CriError::deadline_exceeded(format!(
            "{what}: no answer from the CRI runtime within {timeout:?}"
        ))),
    }
}

/// A connection that broke under a call (the runtime died or restarted)
/// comes back from tonic as Unknown; it is Unavailable, as a call made while
/// the runtime is down: the caller retries either.
fn from_status(what: &str, status: tonic::Status) -> CriError {
    use std::error::Error;
    let broken = status.code() == tonic::Code::Unknown
        && status
            .source()
            .is_some_and(|e| e.is::<tonic::transport::Error>() || e.is::<hyper::Error>());
    if broken {
        return CriError::unavailable(format!(
            "{what}: connection to the CRI runtime lost: {}",
            status.message()
        ));
    }
    status.into()
}

macro_rules! remote_runtime {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[async_trait::async_trait]
        impl RuntimeService for RemoteRuntime {
            $(
                async fn $name(&self, request: v1::$req) -> Result<v1::$resp, CriError> {
                    let mut client = self.runtime.clone();
                    call(self.request_timeout, stringify!($name), request, |r| async move {
                        client.$name(r).await
                    })
                    .await
                }
            )*

            async fn get_container_events(
                &self,
                request: v1::GetEventsRequest,
            ) -> Result<ContainerEventStream, CriError> {
                // No grpc-timeout: the runtime would end the stream there.
                let mut client = self.runtime.clone();
                let stream = answer(
                    self.request_timeout,
                    "get_container_events",
                    client.get_container_events(request),
                )
                .await?;
                Ok(Box::pin(stream.map(|event| event.map_err(CriError::from))))
            }
        }
    };
}

crate::cri_runtime_calls!(remote_runtime);

macro_rules! remote_images {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[async_trait::async_trait]
        impl ImageService for RemoteRuntime {
            $(
                async fn $name(&self, request: v1::$req) -> Result<v1::$resp, CriError> {
                    let mut client = self.images.clone();
                    let timeout = if stringify!($name) == "pull_image" {
                        self.pull_timeout
                    } else {
                        self.request_timeout
                    };
                    call(timeout, stringify!($name), request, |r| async move {
                        client.$name(r).await
                    })
                    .await
                }
            )*
        }
    };
}

crate::cri_image_calls!(remote_images);

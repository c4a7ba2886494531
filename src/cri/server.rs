//! The tonic server: a thin adapter that serves any [`RuntimeService`] and
//! [`ImageService`] implementation as gRPC `runtime.v1`. It knows nothing of
//! containers: orchestration lives in the implementation.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::cri::api::{CriError, ImageService, RuntimeService, v1};

/// A server stream that carries exactly one message: the answer to a Stream*
/// call whose whole list is already in memory.
pub type OneMessage<T> = futures::stream::Once<std::future::Ready<Result<T, Status>>>;

fn one_message<T>(message: T) -> Response<OneMessage<T>> {
    Response::new(futures::stream::once(std::future::ready(Ok(message))))
}

/// Serves an implementation of the CRI traits over gRPC.
pub struct CriServer<T: ?Sized> {
    inner: Arc<T>,
}

impl<T: ?Sized> CriServer<T> {
    pub fn new(inner: Arc<T>) -> Self {
        Self { inner }
    }
}

/// The client's deadline, from the `grpc-timeout` header (`<n><unit>`).
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

macro_rules! runtime_adapter {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl<T: RuntimeService + ?Sized + 'static> v1::runtime_service_server::RuntimeService for CriServer<T> {
            $(
                async fn $name(&self, request: Request<v1::$req>) -> Result<Response<v1::$resp>, Status> {
                    Ok(Response::new(self.inner.$name(request.into_inner()).await?))
                }
            )*

            type GetContainerEventsStream = std::pin::Pin<
                Box<dyn futures::Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>,
            >;

            async fn get_container_events(
                &self,
                request: Request<v1::GetEventsRequest>,
            ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
                use futures::StreamExt;
                let events = self.inner.get_container_events(request.into_inner()).await?;
                Ok(Response::new(Box::pin(events.map(|e| e.map_err(Status::from)))))
            }

            // The Stream* calls (KEP-5335) page large lists over a server
            // stream; our lists are built in memory, so each answers with a
            // single message.
            type StreamPodSandboxesStream = OneMessage<v1::StreamPodSandboxesResponse>;

            async fn stream_pod_sandboxes(
                &self,
                request: Request<v1::StreamPodSandboxesRequest>,
            ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
                let filter = request.into_inner().filter;
                let list = self.inner.list_pod_sandbox(v1::ListPodSandboxRequest { filter }).await?;
                Ok(one_message(v1::StreamPodSandboxesResponse { pod_sandboxes: list.items }))
            }

            type StreamContainersStream = OneMessage<v1::StreamContainersResponse>;

            async fn stream_containers(
                &self,
                request: Request<v1::StreamContainersRequest>,
            ) -> Result<Response<Self::StreamContainersStream>, Status> {
                let filter = request.into_inner().filter;
                let list = self.inner.list_containers(v1::ListContainersRequest { filter }).await?;
                Ok(one_message(v1::StreamContainersResponse { containers: list.containers }))
            }

            type StreamContainerStatsStream = OneMessage<v1::StreamContainerStatsResponse>;

            async fn stream_container_stats(
                &self,
                request: Request<v1::StreamContainerStatsRequest>,
            ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
                let filter = request.into_inner().filter;
                let list = self.inner.list_container_stats(v1::ListContainerStatsRequest { filter }).await?;
                Ok(one_message(v1::StreamContainerStatsResponse { container_stats: list.stats }))
            }

            type StreamPodSandboxStatsStream = OneMessage<v1::StreamPodSandboxStatsResponse>;

            async fn stream_pod_sandbox_stats(
                &self,
                request: Request<v1::StreamPodSandboxStatsRequest>,
            ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
                let filter = request.into_inner().filter;
                let list = self.inner.list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter }).await?;
                Ok(one_message(v1::StreamPodSandboxStatsResponse { pod_sandbox_stats: list.stats }))
            }

            type StreamPodSandboxMetricsStream = OneMessage<v1::StreamPodSandboxMetricsResponse>;

            async fn stream_pod_sandbox_metrics(
                &self,
                _request: Request<v1::StreamPodSandboxMetricsRequest>,
            ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
                let list = self.inner.list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {}).await?;
                Ok(one_message(v1::StreamPodSandboxMetricsResponse { pod_sandbox_metrics: list.pod_metrics }))
            }
        }
    };
}

crate::cri_runtime_calls!(runtime_adapter);

/// Answers a little before the client's own timer fires, so that it sees our
/// status (naming the call's subject) instead of a bare client timeout.
async fn within_deadline<R>(
    deadline: Option<Duration>,
    what: impl FnOnce() -> String,
    call: impl Future<Output = Result<R, CriError>>,
) -> Result<R, CriError> {
    match deadline {
        Some(limit) => {
            tokio::time::timeout(limit - (limit / 20).min(Duration::from_millis(100)), call)
                .await
                .map_err(|_| {
                    CriError::deadline_exceeded(format!(
                        "{}: deadline of {limit:?} exceeded",
                        what()
                    ))
                })?
        }
        None => call.await,
    }
}

macro_rules! image_adapter {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl<T: ImageService + ?Sized + 'static> v1::image_service_server::ImageService for CriServer<T> {
            $(
                async fn $name(&self, request: Request<v1::$req>) -> Result<Response<v1::$resp>, Status> {
                    // A pull may take long: it honours the client's deadline.
                    let deadline = grpc_timeout(request.metadata());
                    let request = request.into_inner();
                    let image = image_of(&request).to_string();
                    let what = || match stringify!($name) {
                        "pull_image" => format!("pulling image {image}"),
                        call => format!("{call} {image}"),
                    };
                    let response = within_deadline(deadline, what, self.inner.$name(request)).await?;
                    Ok(Response::new(response))
                }
            )*

            type StreamImagesStream = OneMessage<v1::StreamImagesResponse>;

            async fn stream_images(
                &self,
                request: Request<v1::StreamImagesRequest>,
            ) -> Result<Response<Self::StreamImagesStream>, Status> {
                let filter = request.into_inner().filter;
                let list = self.inner.list_images(v1::ListImagesRequest { filter }).await?;
                Ok(one_message(v1::StreamImagesResponse { images: list.images }))
            }
        }
    };
}

crate::cri_image_calls!(image_adapter);

/// The image a request names, for deadline messages.
trait NamesImage {
    fn image(&self) -> Option<&v1::ImageSpec>;
}

macro_rules! names_image {
    ($($t:ident),*) => {
        $(impl NamesImage for v1::$t {
            fn image(&self) -> Option<&v1::ImageSpec> { self.image.as_ref() }
        })*
    };
}
names_image!(ImageStatusRequest, PullImageRequest, RemoveImageRequest);

impl NamesImage for v1::ListImagesRequest {
    fn image(&self) -> Option<&v1::ImageSpec> {
        self.filter.as_ref().and_then(|f| f.image.as_ref())
    }
}

impl NamesImage for v1::ImageFsInfoRequest {
    fn image(&self) -> Option<&v1::ImageSpec> {
        None
    }
}

fn image_of(request: &impl NamesImage) -> &str {
    request.image().map(|i| i.image.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("grpc-timeout", "150m".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_millis(150)));
        md.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_secs(2)));
        md.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&md), None);
    }

    struct Hangs;

    #[async_trait::async_trait]
    impl ImageService for Hangs {
        async fn pull_image(
            &self,
            _request: v1::PullImageRequest,
        ) -> Result<v1::PullImageResponse, CriError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_pull_past_the_clients_deadline_names_the_image() {
        use v1::image_service_server::ImageService as _;
        let server = CriServer::new(Arc::new(Hangs));
        let mut request = Request::new(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("grpc-timeout", "50m".parse().unwrap());
        let status = server.pull_image(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("busybox"), "{}", status.message());
        // Calls an implementation lacks answer Unimplemented.
        let status = server
            .image_fs_info(Request::new(v1::ImageFsInfoRequest {}))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
}

//! `runtime.v1.ImageService`: a mapping of CRI calls onto the runtime's
//! [`ImageManager`], with CRI's conventions (a missing image is a nil image in
//! status and an OK in remove; deadlines from the client's grpc-timeout).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cri::v1 as cri;
use crate::cri::v1::image_service_server::ImageService;
use crate::cri::{OneMessage, one_message};
use tonic::{Request, Response, Status};

use crate::runtime::image::{ImageError, ImageManager, ImageSummary};
use crate::runtime::registry::Credentials;

pub struct CriImageService {
    images: Arc<ImageManager>,
}

impl CriImageService {
    pub fn new(images: Arc<ImageManager>) -> Self {
        Self { images }
    }
}

fn image_name(spec: Option<&cri::ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.as_str()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Status::invalid_argument(
            "image spec with a non-empty image is required",
        )),
    }
}

fn to_cri(image: &ImageSummary) -> cri::Image {
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: image.uid.map(|value| cri::Int64Value { value }),
        username: image.username.clone(),
        spec: Some(cri::ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
        pinned: image.pinned,
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

fn status(e: ImageError) -> Status {
    e.to_status()
}

#[tonic::async_trait]
impl ImageService for CriImageService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|spec| spec.image)
            .filter(|name| !name.is_empty());
        let images = match filter {
            // A filter names one image the way status does.
            Some(name) => self
                .images
                .find(&name)
                .await
                .map_err(status)?
                .into_iter()
                .collect(),
            None => self.images.list().await.map_err(status)?,
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(to_cri).collect(),
        }))
    }

    type StreamImagesStream = OneMessage<cri::StreamImagesResponse>;

    /// Our list is built in memory, so the stream carries it in one message.
    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = request.into_inner().filter;
        let list = self
            .list_images(Request::new(cri::ListImagesRequest { filter }))
            .await?;
        Ok(one_message(cri::StreamImagesResponse {
            images: list.into_inner().images,
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let Some(found) = self.images.find(name).await.map_err(status)? else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let spec: serde_json::Value =
                serde_json::from_slice(&found.info.config_bytes).unwrap_or(serde_json::Value::Null);
            let verbose = serde_json::json!({ "chainID": found.info.chain_id, "imageSpec": spec });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(to_cri(&found)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let deadline = grpc_timeout(request.metadata());
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?.to_string();
        let credentials = match request.auth {
            None => Credentials::Anonymous,
            Some(a) => Credentials::from_auth_config(
                &a.username,
                &a.password,
                &a.auth,
                &a.identity_token,
                &a.registry_token,
            )
            .map_err(|e| Status::invalid_argument(format!("pulling image {name}: {e}")))?,
        };
        let started = std::time::Instant::now();
        let pull = self.images.pull(&name, credentials);
        let result = match deadline {
            // Answer a little before the client's own timer fires, so it sees
            // our status (naming the image) instead of a bare client timeout.
            Some(limit) => {
                tokio::time::timeout(limit - (limit / 20).min(Duration::from_millis(100)), pull)
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(format!(
                            "pulling image {name}: deadline of {limit:?} exceeded"
                        ))
                    })?
            }
            None => pull.await,
        };
        match result {
            Ok(image_ref) => {
                tracing::info!(image = %name, %image_ref, elapsed = ?started.elapsed(), "pulled image");
                Ok(Response::new(cri::PullImageResponse { image_ref }))
            }
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "pull failed");
                Err(status(e))
            }
        }
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        self.images.remove(name).await.map_err(status)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let usage = self.images.fs_usage().await.map_err(status)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let fs = cri::FilesystemUsage {
            timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: usage.mountpoint.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value {
                value: usage.used_bytes,
            }),
            inodes_used: Some(cri::UInt64Value {
                value: usage.inodes_used,
            }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        }))
    }
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
}

//! The ImageService half of the in-process runtime: CRI's conventions over
//! the image manager (a missing image is a nil image in status and an OK in
//! remove).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::cri::api::{CriError, ImageService, v1};

use std::sync::Arc;

use super::image::{ImageError, ImageManager, ImageSummary};
use super::registry::Credentials;

/// The in-process ImageService.
pub struct ImageRuntime {
    images: Arc<ImageManager>,
}

impl ImageRuntime {
    pub fn new(images: Arc<ImageManager>) -> Self {
        Self { images }
    }
}

fn image_name(spec: Option<&v1::ImageSpec>) -> Result<&str, CriError> {
    match spec.map(|s| s.image.as_str()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(CriError::invalid_argument(
            "image spec with a non-empty image is required",
        )),
    }
}

fn to_cri(image: &ImageSummary) -> v1::Image {
    v1::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: image.uid.map(|value| v1::Int64Value { value }),
        username: image.username.clone(),
        spec: Some(v1::ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
        pinned: image.pinned,
    }
}

impl From<ImageError> for CriError {
    fn from(e: ImageError) -> Self {
        CriError::new(e.code(), e.message)
    }
}

#[async_trait::async_trait]
impl ImageService for ImageRuntime {
    async fn list_images(
        &self,
        request: v1::ListImagesRequest,
    ) -> Result<v1::ListImagesResponse, CriError> {
        let filter = request
            .filter
            .and_then(|f| f.image)
            .map(|spec| spec.image)
            .filter(|name| !name.is_empty());
        let images = match filter {
            // A filter names one image the way status does.
            Some(name) => self.images.find(&name).await?.into_iter().collect(),
            None => self.images.list().await?,
        };
        Ok(v1::ListImagesResponse {
            images: images.iter().map(to_cri).collect(),
        })
    }

    async fn image_status(
        &self,
        request: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, CriError> {
        let name = image_name(request.image.as_ref())?;
        let Some(found) = self.images.find(name).await? else {
            return Ok(v1::ImageStatusResponse::default());
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let spec: serde_json::Value =
                serde_json::from_slice(&found.info.config_bytes).unwrap_or(serde_json::Value::Null);
            let verbose = serde_json::json!({ "chainID": found.info.chain_id, "imageSpec": spec });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(v1::ImageStatusResponse {
            image: Some(to_cri(&found)),
            info,
        })
    }

    async fn pull_image(
        &self,
        request: v1::PullImageRequest,
    ) -> Result<v1::PullImageResponse, CriError> {
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
            .map_err(|e| CriError::invalid_argument(format!("pulling image {name}: {e}")))?,
        };
        let started = std::time::Instant::now();
        match self.images.pull(&name, credentials).await {
            Ok(image_ref) => {
                tracing::info!(image = %name, %image_ref, elapsed = ?started.elapsed(), "pulled image");
                Ok(v1::PullImageResponse { image_ref })
            }
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "pull failed");
                Err(e.into())
            }
        }
    }

    async fn remove_image(
        &self,
        request: v1::RemoveImageRequest,
    ) -> Result<v1::RemoveImageResponse, CriError> {
        let name = image_name(request.image.as_ref())?;
        self.images.remove(name).await?;
        Ok(v1::RemoveImageResponse {})
    }

    async fn image_fs_info(
        &self,
        _request: v1::ImageFsInfoRequest,
    ) -> Result<v1::ImageFsInfoResponse, CriError> {
        let usage = self.images.fs_usage().await?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let fs = v1::FilesystemUsage {
            timestamp,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: usage.mountpoint.display().to_string(),
            }),
            used_bytes: Some(v1::UInt64Value {
                value: usage.used_bytes,
            }),
            inodes_used: Some(v1::UInt64Value {
                value: usage.inodes_used,
            }),
        };
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        })
    }
}

//! Image names in containerd's image store, laid out as containerd's CRI plugin
//! lays them out, so both see the same images: every image is named by its
//! repo tag(s), its repo digest(s) and its id (`sha256:<config digest>`), each
//! name pointing at the same target and labelled as CRI-managed.

use std::collections::HashMap;

use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, Image, ListImagesRequest, ReadContentRequest,
    UpdateImageRequest,
};
use containerd_client::types::Descriptor;

use super::error::ImageError;
use super::manifest::{self, Document};
use crate::runtime::containerd::Containerd;

pub const MANAGED_LABEL: &str = "io.cri-containerd.image";
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";

/// Creates or repoints each name at `target`.
pub async fn name_image(
    cd: &Containerd,
    names: &[String],
    target: &Descriptor,
) -> Result<(), ImageError> {
    for name in names {
        let image = Image {
            name: name.clone(),
            labels: HashMap::from([(MANAGED_LABEL.to_string(), "managed".to_string())]),
            target: Some(target.clone()),
            created_at: None,
            updated_at: None,
        };
        let create = cd.request(CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        });
        match cd.images().create(create).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                let update = cd.request(UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into(), format!("labels.{MANAGED_LABEL}")],
                    }),
                    source_date_epoch: None,
                });
                cd.images()
                    .update(update)
                    .await
                    .map_err(|s| ImageError::containerd(format!("updating image {name}"), s))?;
            }
            Err(status) => {
                return Err(ImageError::containerd(
                    format!("creating image {name}"),
                    status,
                ));
            }
        }
    }
    Ok(())
}

pub async fn list(cd: &Containerd) -> Result<Vec<Image>, ImageError> {
    let request = cd.request(ListImagesRequest { filters: vec![] });
    Ok(cd
        .images()
        .list(request)
        .await
        .map_err(|s| ImageError::containerd("listing images", s))?
        .into_inner()
        .images)
}

/// Deletes names; the last one with `sync` so the garbage collector has freed
/// the content and snapshots before we answer.
pub async fn delete(cd: &Containerd, names: &[String]) -> Result<(), ImageError> {
    for (i, name) in names.iter().enumerate() {
        let request = cd.request(DeleteImageRequest {
            name: name.clone(),
            sync: i + 1 == names.len(),
            target: None,
        });
        match cd.images().delete(request).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(ImageError::containerd(
                    format!("deleting image {name}"),
                    status,
                ));
            }
        }
    }
    Ok(())
}

/// What we learn about an image target by reading its manifests; immutable
/// for a digest, so it is cached by the caller.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// `sha256:<config digest>`: the image id.
    pub id: String,
    /// Bytes of the target, the chosen manifest, the config and the layers.
    pub size: u64,
    pub config_bytes: bytes::Bytes,
    pub config: manifest::ImageConfig,
    pub chain_id: String,
}

pub async fn read_target(cd: &Containerd, target: &Descriptor) -> Result<TargetInfo, ImageError> {
    let top = read_blob(cd, &target.digest).await?;
    let mut size = top.len() as u64;
    let document = manifest::parse(&top, &target.media_type)
        .map_err(|m| ImageError::internal(format!("stored manifest {}: {m}", target.digest)))?;
    let manifest = match document {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let chosen =
                manifest::select_platform(&index, &manifest::host_platform()).ok_or_else(|| {
                    ImageError::internal(format!(
                        "stored index {} has no manifest for this platform",
                        target.digest
                    ))
                })?;
            let bytes = read_blob(cd, &chosen.digest).await?;
            size += bytes.len() as u64;
            match manifest::parse(&bytes, &chosen.media_type) {
                Ok(Document::Manifest(m)) => m,
                _ => {
                    return Err(ImageError::internal(format!(
                        "stored manifest {} is unreadable",
                        chosen.digest
                    )));
                }
            }
        }
    };
    let config_bytes = read_blob(cd, &manifest.config.digest).await?;
    let config = manifest::parse_config(&config_bytes, manifest.layers.len()).map_err(|m| {
        ImageError::internal(format!("stored config {}: {m}", manifest.config.digest))
    })?;
    size += config_bytes.len() as u64 + manifest.layers.iter().map(|l| l.size as u64).sum::<u64>();
    let chain_id = super::unpack::chain_ids(&config.rootfs.diff_ids)
        .pop()
        .unwrap_or_default();
    Ok(TargetInfo {
        id: manifest.config.digest.clone(),
        size,
        config_bytes: config_bytes.into(),
        config,
        chain_id,
    })
}

/// Reads a whole (small) blob from the content store.
pub async fn read_blob(cd: &Containerd, digest: &str) -> Result<Vec<u8>, ImageError> {
    let request = cd.request(ReadContentRequest {
        digest: digest.to_string(),
        offset: 0,
        size: 0,
    });
    let mut stream = cd
        .content()
        .read(request)
        .await
        .map_err(|s| ImageError::containerd(format!("reading {digest}"), s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| ImageError::containerd(format!("reading {digest}"), s))?
    {
        out.extend_from_slice(&chunk.data);
        if out.len() > crate::runtime::registry::client::MAX_MANIFEST_BYTES {
            return Err(ImageError::internal(format!(
                "stored blob {digest} is too large to read whole"
            )));
        }
    }
    Ok(out)
}

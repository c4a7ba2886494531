//! One image pull, start to finish: resolve the reference on the configured
//! hosts, fetch and verify every blob into containerd's content store, unpack
//! the layers into snapshots, then name the image in containerd.
//!
//! Everything is written under a lease, so a pull that fails half way leaves
//! nothing the garbage collector will keep; the image name is created last, so
//! a name never points at an incomplete image.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::content::{self, Expected};
use super::error::{ErrorKind, ImageError};
use super::manifest::{self, Descriptor, Document, Manifest};
use super::reference::ImageRef;
use super::unpack::{self, Layer};
use super::{ImageManager, records};
use crate::runtime::containerd::Lease;
use crate::runtime::registry::{Credentials, RegistryError, RepositorySession};

/// containerd's default: three blobs downloading at once per pull.
const PARALLEL_DOWNLOADS: usize = 3;
/// A lease outlives any sane pull; it only matters if we die mid-pull.
const PULL_LEASE_TTL: Duration = Duration::from_secs(3600);

pub struct Pulled {
    /// `sha256:<config digest>`
    pub image_id: String,
}

pub async fn pull(
    images: &ImageManager,
    image: &ImageRef,
    credentials: &Credentials,
) -> Result<Pulled, ImageError> {
    let (mut session, top) = resolve(images, image, credentials).await?;
    let top_digest = sha256_digest(&top.bytes);
    if let Some(pinned) = &image.digest
        && *pinned != top_digest
    {
        return Err(ImageError::new(
            ErrorKind::Unavailable,
            format!(
                "registry {} served manifest {top_digest} for {image}",
                session.host.origin
            ),
        ));
    }
    let top_document = manifest::parse(&top.bytes, &top.media_type)
        .map_err(|m| ImageError::invalid(format!("image {image}: {m}")))?;
    let top_media_type = match &top_document {
        Document::Index(i) => i.media_type.clone(),
        Document::Manifest(m) => m.media_type.clone(),
    };

    // An index names one manifest per platform; take ours.
    let (index, manifest_descriptor, manifest_bytes, manifest) = match top_document {
        Document::Manifest(m) => (None, None, top.bytes.clone(), m),
        Document::Index(index) => {
            let platform = manifest::host_platform();
            let chosen = manifest::select_platform(&index, &platform)
                .cloned()
                .ok_or_else(|| {
                    ImageError::new(
                        ErrorKind::NotFound,
                        format!(
                            "image {image}: no manifest for {}/{} in its index",
                            platform.os, platform.architecture
                        ),
                    )
                })?;
            let fetched = session.manifest(&chosen.digest).await?;
            verify_small(&chosen, &fetched.bytes)?;
            let declared = if chosen.media_type.is_empty() {
                fetched.media_type.as_str()
            } else {
                chosen.media_type.as_str()
            };
            let Document::Manifest(m) = manifest::parse(&fetched.bytes, declared)
                .map_err(|m| ImageError::invalid(format!("image {image}: {m}")))?
            else {
                return Err(ImageError::invalid(format!(
                    "image {image}: nested index is not supported"
                )));
            };
            (
                Some((index, top.bytes.clone())),
                Some(chosen),
                fetched.bytes,
                m,
            )
        }
    };

    // The config is small: fetch it first, it tells us the layers' diff ids.
    let config_bytes = fetch_small_blob(&mut session, &manifest.config).await?;
    let config = manifest::parse_config(&config_bytes, manifest.layers.len())
        .map_err(|m| ImageError::invalid(format!("image {image}: {m}")))?;
    let image_id = manifest.config.digest.clone();

    let cd = &images.containerd;
    let lease = cd
        .create_lease("pull", PULL_LEASE_TTL)
        .await
        .map_err(|s| ImageError::containerd("creating a lease", s))?;
    let result = async {
        // The chain id is known from the config, so the manifests and config
        // (with their GC labels) are written while the layers download.
        let top_chain = unpack::chain_ids(&config.rootfs.diff_ids)
            .pop()
            .unwrap_or_default();
        let metadata = Metadata {
            config: (&manifest.config, config_bytes.clone()),
            manifest: (&manifest, manifest_bytes.clone()),
            index: index
                .as_ref()
                .zip(manifest_descriptor.as_ref())
                .map(|((_, bytes), chosen)| {
                    (
                        top_media_type.clone(),
                        top_digest.clone(),
                        bytes.clone(),
                        chosen,
                    )
                }),
        };
        tokio::try_join!(
            fetch_layers(
                images,
                &session,
                &lease,
                image,
                &manifest,
                &config.rootfs.diff_ids
            ),
            store_metadata(images, &lease, &top_chain, metadata),
        )?;
        let layers: Vec<Layer> = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, diff_id)| Layer {
                descriptor: d.to_containerd(),
                diff_id: diff_id.clone(),
            })
            .collect();
        unpack::unpack(cd, &lease, &images.snapshotter, &layers).await?;

        let target = containerd_client::types::Descriptor {
            media_type: top_media_type.clone(),
            digest: top_digest.clone(),
            size: top.bytes.len() as i64,
            annotations: Default::default(),
        };
        let mut names = vec![image.repo_digest(&top_digest), image_id.clone()];
        names.extend(image.repo_tag());
        records::name_image(cd, &names, &target).await
    }
    .await;
    cd.delete_lease(lease, false).await;
    result?;
    Ok(Pulled { image_id })
}

/// Tries the resolve-capable hosts in order; the first that has the manifest wins.
async fn resolve(
    images: &ImageManager,
    image: &ImageRef,
    credentials: &Credentials,
) -> Result<
    (
        RepositorySession,
        crate::runtime::registry::client::FetchedManifest,
    ),
    ImageError,
> {
    let hosts = images
        .hosts
        .hosts_for(&image.registry)
        .map_err(|e| ImageError::internal(format!("image {image}: registry configuration: {e}")))?;
    let pinned = image.digest.is_some();
    let mut errors: Vec<RegistryError> = Vec::new();
    for host in hosts {
        let usable = if pinned {
            host.capabilities.pull
        } else {
            host.capabilities.resolve
        };
        if !usable {
            continue;
        }
        let mut session = images
            .registry
            .session(host, &image.repository, credentials.clone())
            .map_err(|e| ImageError::from(e).context(format!("image {image}")))?;
        match session.manifest(image.manifest_reference()).await {
            Ok(manifest) => return Ok((session, manifest)),
            Err(e) => {
                tracing::debug!(%image, error = %e, "host could not resolve");
                errors.push(e);
            }
        }
    }
    Err(resolve_error(image, errors))
}

/// When every host failed, report the most telling failure, with all of them.
fn resolve_error(image: &ImageRef, errors: Vec<RegistryError>) -> ImageError {
    let rank = |e: &RegistryError| match e {
        RegistryError::Unauthorized { .. } => 0,
        RegistryError::NotFound { .. } => 1,
        RegistryError::Protocol { .. } => 2,
        RegistryError::Stalled { .. } => 3,
        RegistryError::Unreachable { .. } => 4,
    };
    let Some(worst) = errors.iter().min_by_key(|e| rank(e)).cloned() else {
        return ImageError::new(
            ErrorKind::NotFound,
            format!("image {image}: no registry host is configured to resolve it"),
        );
    };
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let kind = ImageError::from(worst.clone()).kind;
    let summary = match worst {
        RegistryError::NotFound { .. } => "not found".to_string(),
        other => other.to_string(),
    };
    ImageError::new(
        kind,
        format!("image {image}: {summary} (tried: {})", all.join("; ")),
    )
}

/// The small documents of a pull, stored with the labels that keep their
/// children alive: index -> manifest -> config + layers, config -> snapshot.
struct Metadata<'a> {
    config: (&'a Descriptor, Bytes),
    manifest: (&'a Manifest, Bytes),
    /// (media type, digest, bytes, the chosen entry) when the image is an index.
    index: Option<(String, String, Bytes, &'a Descriptor)>,
}

async fn store_metadata(
    images: &ImageManager,
    lease: &Lease,
    top_chain: &str,
    metadata: Metadata<'_>,
) -> Result<(), ImageError> {
    let (config, config_bytes) = metadata.config;
    let config_labels = HashMap::from([(
        format!("containerd.io/gc.ref.snapshot.{}", images.snapshotter),
        top_chain.to_string(),
    )]);
    store_small(images, lease, config, config_bytes, config_labels).await?;

    let (manifest, manifest_bytes) = metadata.manifest;
    let manifest_descriptor = Descriptor {
        media_type: manifest.media_type.clone(),
        digest: sha256_digest(&manifest_bytes),
        size: manifest_bytes.len() as i64,
        platform: None,
        annotations: Default::default(),
    };
    let mut manifest_labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.clone(),
    )]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    store_small(
        images,
        lease,
        &manifest_descriptor,
        manifest_bytes,
        manifest_labels,
    )
    .await?;

    if let Some((media_type, digest, bytes, chosen)) = metadata.index {
        let index_descriptor = Descriptor {
            media_type,
            digest,
            size: bytes.len() as i64,
            platform: None,
            annotations: Default::default(),
        };
        let labels = HashMap::from([(
            "containerd.io/gc.ref.content.m.0".to_string(),
            chosen.digest.clone(),
        )]);
        store_small(images, lease, &index_descriptor, bytes, labels).await?;
    }
    Ok(())
}

async fn fetch_small_blob(
    session: &mut RepositorySession,
    descriptor: &Descriptor,
) -> Result<Bytes, ImageError> {
    if descriptor.size as usize > crate::runtime::registry::client::MAX_MANIFEST_BYTES {
        return Err(ImageError::invalid(format!(
            "blob {} of {} bytes is too large for a config",
            descriptor.digest, descriptor.size
        )));
    }
    let (url, response) = session.blob(&descriptor.digest).await?;
    let bytes = session.read_small_body(&url, response).await?;
    verify_small(descriptor, &bytes)?;
    Ok(bytes)
}

fn verify_small(descriptor: &Descriptor, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if bytes.len() as i64 != descriptor.size || actual != descriptor.digest {
        return Err(ImageError::new(
            ErrorKind::Unavailable,
            format!(
                "blob digest mismatch: expected {} ({} bytes), got {actual} ({} bytes)",
                descriptor.digest,
                descriptor.size,
                bytes.len()
            ),
        ));
    }
    Ok(())
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn store_small(
    images: &ImageManager,
    lease: &Lease,
    descriptor: &Descriptor,
    bytes: Bytes,
    labels: HashMap<String, String>,
) -> Result<(), ImageError> {
    let _guard = images.digest_locks.lock(&descriptor.digest).await;
    let expected = Expected {
        digest: descriptor.digest.clone(),
        size: descriptor.size as u64,
    };
    if content::info(&images.containerd, &descriptor.digest)
        .await?
        .is_some()
    {
        return content::add_labels(&images.containerd, &descriptor.digest, &labels).await;
    }
    content::write_bytes(&images.containerd, lease, &expected, bytes, labels).await
}

async fn fetch_layers(
    images: &ImageManager,
    session: &RepositorySession,
    lease: &Lease,
    image: &ImageRef,
    manifest: &Manifest,
    diff_ids: &[String],
) -> Result<(), ImageError> {
    // Futures built up front: a closure in the stream would borrow for any
    // lifetime and defeat the Send check of the spawned pull.
    let downloads: Vec<_> = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            Box::pin(fetch_layer(images, session, lease, image, layer, diff_id))
        })
        .collect();
    futures::stream::iter(downloads)
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn fetch_layer(
    images: &ImageManager,
    session: &RepositorySession,
    lease: &Lease,
    image: &ImageRef,
    layer: &Descriptor,
    diff_id: &str,
) -> Result<(), ImageError> {
    let labels = HashMap::from([
        (
            "containerd.io/uncompressed".to_string(),
            diff_id.to_string(),
        ),
        (
            format!("containerd.io/distribution.source.{}", image.registry),
            image.repository.clone(),
        ),
    ]);
    let _guard = images.digest_locks.lock(&layer.digest).await;
    if content::info(&images.containerd, &layer.digest)
        .await?
        .is_some()
    {
        return content::add_labels(&images.containerd, &layer.digest, &labels).await;
    }
    let mut session = session.clone();
    let (url, response) = session.blob(&layer.digest).await?;
    let progress = images.registry.progress_timeout();
    let body = futures::stream::unfold(Some(response), move |state| {
        let url = url.clone();
        async move {
            let mut response = state?;
            match tokio::time::timeout(progress, response.chunk()).await {
                Err(_) => Some((
                    Err(ImageError::from(RegistryError::Stalled {
                        url,
                        seconds: progress.as_secs(),
                    })),
                    None,
                )),
                Ok(Err(e)) => Some((
                    Err(ImageError::new(
                        ErrorKind::Unavailable,
                        format!("{url}: download failed: {e}"),
                    )),
                    None,
                )),
                Ok(Ok(None)) => None,
                Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(response))),
            }
        }
    });
    let expected = Expected {
        digest: layer.digest.clone(),
        size: layer.size as u64,
    };
    content::write_stream(&images.containerd, lease, &expected, body, labels)
        .await
        .map_err(|e| e.context(format!("image {image}: layer {}", layer.digest)))
}

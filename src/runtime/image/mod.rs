//! Images: pulled from registries into containerd (content + snapshots +
//! names), listed, inspected and removed. The CRI ImageService is a thin
//! mapping onto [`ImageManager`].

mod content;
pub mod error;
pub mod manifest;
mod pull;
pub mod records;
pub mod reference;
pub mod unpack;

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, UsageRequest};
use futures::future::{FutureExt, Shared};

use crate::runtime::containerd::Containerd;
use crate::runtime::registry::{Credentials, HostsConfig, RegistryClient};
pub use error::{ErrorKind, ImageError};
use records::TargetInfo;
pub use reference::ImageRef;

pub struct ImageManagerConfig {
    pub snapshotter: String,
    /// Where the snapshotter keeps its data: the image filesystem CRI reports.
    pub snapshotter_root: PathBuf,
    pub registry_config_dir: PathBuf,
    pub connect_timeout: Duration,
    /// A pull that moves no byte for this long fails.
    pub progress_timeout: Duration,
}

type SharedPull = Shared<Pin<Box<dyn Future<Output = Result<String, ImageError>> + Send>>>;

pub struct ImageManager {
    containerd: Containerd,
    hosts: HostsConfig,
    registry: RegistryClient,
    snapshotter: String,
    snapshotter_root: PathBuf,
    digest_locks: content::DigestLocks,
    /// Pulls under way, by reference and credentials: callers of the same
    /// pull share one download.
    inflight: Mutex<HashMap<(String, Credentials), SharedPull>>,
    /// Parsed manifests and configs by target digest (immutable content).
    targets: Mutex<HashMap<String, Arc<TargetInfo>>>,
}

/// One image as CRI shows it: all names of one image id together.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    pub uid: Option<i64>,
    pub username: String,
    pub pinned: bool,
    pub info: Arc<TargetInfo>,
}

#[derive(Debug, Clone)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

impl ImageManager {
    pub fn new(containerd: Containerd, config: ImageManagerConfig) -> Self {
        Self {
            containerd,
            hosts: HostsConfig::new(config.registry_config_dir),
            registry: RegistryClient::new(config.connect_timeout, config.progress_timeout),
            snapshotter: config.snapshotter,
            snapshotter_root: config.snapshotter_root,
            digest_locks: Default::default(),
            inflight: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
        }
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// The snapshotter's directory: the filesystem images and containers'
    /// writable layers live on (ImageFsInfo's and container stats' fs id).
    pub fn snapshotter_root(&self) -> &std::path::Path {
        &self.snapshotter_root
    }

    /// Pulls `reference`, returning the image id. Concurrent pulls of the same
    /// reference with the same credentials share one download; the download
    /// runs to its end even if a caller gives up (its deadline passes), so the
    /// others still get the image.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        credentials: Credentials,
    ) -> Result<String, ImageError> {
        let image = ImageRef::parse(reference)?;
        let key = (image.to_string(), credentials.clone());
        let shared = {
            let mut inflight = self.inflight.lock();
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let manager = Arc::clone(self);
                    let task = tokio::spawn(async move {
                        let result = pull::pull(&manager, &image, &credentials)
                            .await
                            .map(|p| p.image_id);
                        manager.inflight.lock().remove(&key);
                        result
                    });
                    let joined: Pin<Box<dyn Future<Output = Result<String, ImageError>> + Send>> =
                        Box::pin(task.map(|joined| {
                            joined.unwrap_or_else(|e| {
                                Err(ImageError::internal(format!("pull task failed: {e}")))
                            })
                        }));
                    joined.shared()
                })
                .clone()
        };
        shared.await
    }

    /// Every image, grouped by id, in a stable order.
    pub async fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let records = records::list(&self.containerd).await?;
        let mut by_id: BTreeMap<String, ImageSummary> = BTreeMap::new();
        for record in records {
            let Some(target) = &record.target else {
                continue;
            };
            let info = match self.target_info(target).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(name = %record.name, error = %e, "skipping unreadable image");
                    continue;
                }
            };
            let (uid, username) = info.config.user();
            let summary = by_id
                .entry(info.id.clone())
                .or_insert_with(|| ImageSummary {
                    id: info.id.clone(),
                    repo_tags: vec![],
                    repo_digests: vec![],
                    size: info.size,
                    uid,
                    username,
                    pinned: false,
                    info: info.clone(),
                });
            summary.pinned |= record
                .labels
                .get(records::PINNED_LABEL)
                .is_some_and(|v| v == "pinned");
            if record.name == info.id || reference::as_image_id(&record.name).is_some() {
                continue;
            }
            if record.name.contains('@') {
                summary.repo_digests.push(record.name.clone());
            } else {
                summary.repo_tags.push(record.name.clone());
            }
        }
        let mut images: Vec<ImageSummary> = by_id.into_values().collect();
        for image in &mut images {
            image.repo_tags.sort();
            image.repo_digests.sort();
        }
        Ok(images)
    }

    /// The image a CRI client means by `image`: an id (`sha256:…` or bare
    /// hex), a tag (`busybox`, `name:tag`) or a digest (`name@sha256:…`).
    pub async fn find(&self, image: &str) -> Result<Option<ImageSummary>, ImageError> {
        let images = self.list().await?;
        if let Some(id) = reference::as_image_id(image)
            && let Some(found) = images.iter().find(|i| i.id == id)
        {
            return Ok(Some(found.clone()));
        }
        let parsed = ImageRef::parse(image)?;
        let found = match &parsed.digest {
            Some(digest) => {
                let name = parsed.repo_digest(digest);
                images.into_iter().find(|i| i.repo_digests.contains(&name))
            }
            None => {
                let name = parsed.repo_tag().unwrap_or_default();
                images.into_iter().find(|i| i.repo_tags.contains(&name))
            }
        };
        Ok(found)
    }

    /// Removes the image with every name it has, as containerd's CRI plugin
    /// does. A missing image is not an error.
    pub async fn remove(&self, image: &str) -> Result<(), ImageError> {
        let Some(found) = self.find(image).await? else {
            return Ok(());
        };
        let mut names: Vec<String> = found.repo_tags.clone();
        names.extend(found.repo_digests.iter().cloned());
        names.push(found.id.clone());
        records::delete(&self.containerd, &names).await
    }

    /// Bytes and inodes used by the snapshotter's committed and active snapshots.
    pub async fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        let cd = &self.containerd;
        let request = cd.request(ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: vec![],
        });
        let mut stream = cd
            .snapshots()
            .list(request)
            .await
            .map_err(|s| ImageError::containerd("listing snapshots", s))?
            .into_inner();
        let mut keys = Vec::new();
        while let Some(batch) = stream
            .message()
            .await
            .map_err(|s| ImageError::containerd("listing snapshots", s))?
        {
            keys.extend(batch.info.into_iter().map(|i| i.name));
        }
        let (mut used_bytes, mut inodes_used) = (0u64, 0u64);
        for key in keys {
            let request = cd.request(UsageRequest {
                snapshotter: self.snapshotter.clone(),
                key,
            });
            match cd.snapshots().usage(request).await {
                Ok(usage) => {
                    let usage = usage.into_inner();
                    used_bytes += usage.size.max(0) as u64;
                    inodes_used += usage.inodes.max(0) as u64;
                }
                // Removed between the list and now.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(ImageError::containerd("snapshot usage", s)),
            }
        }
        Ok(FsUsage {
            mountpoint: self.snapshotter_root.clone(),
            used_bytes,
            inodes_used,
        })
    }

    async fn target_info(
        &self,
        target: &containerd_client::types::Descriptor,
    ) -> Result<Arc<TargetInfo>, ImageError> {
        if let Some(info) = self.targets.lock().get(&target.digest) {
            return Ok(info.clone());
        }
        let info = Arc::new(records::read_target(&self.containerd, target).await?);
        self.targets
            .lock()
            .insert(target.digest.clone(), info.clone());
        Ok(info)
    }
}

//! One volume source -> its host path: one function per plugin.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::atomic_writer::{self, Payload};
use super::payload::{self, DEFAULT_MODE};
use super::{
    CONFIG_MAP, DOWNWARD_API, EMPTY_DIR, Mounted, PROJECTED, SECRET, VolumeError, VolumeManager,
    blocking, host_path, mount, ownership, pvc, volume_dir,
};
use crate::k8s::quantity;
use crate::node::podspec::NodeContext;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The pod's fsGroup and fsGroupChangePolicy.
fn fs_group(pod: &Pod) -> (Option<u32>, Option<String>) {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    (
        sc.and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok()),
        sc.and_then(|s| s.fs_group_change_policy.clone()),
    )
}

pub async fn setup(
    m: &VolumeManager,
    pod: &Pod,
    node: &NodeContext,
    v: &Volume,
) -> Result<Mounted, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let dir = |plugin: &str| volume_dir(&m.root_dir, &uid, plugin, &v.name);
    let lookup = m.lookup.as_ref();
    if let Some(e) = &v.empty_dir {
        let memory = e.medium.as_deref() == Some("Memory");
        let size = e
            .size_limit
            .as_ref()
            .map(|q| quantity::value(q).max(0) as u64)
            .filter(|s| *s > 0)
            .or((node.memory_capacity_bytes > 0).then_some(node.memory_capacity_bytes));
        return empty_dir(dir(EMPTY_DIR), memory.then_some(size), fs_group(pod)).await;
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        let type_ = h.type_.clone();
        let p = path.clone();
        blocking(move || Ok(host_path::check_type(&p, type_.as_deref())?)).await?;
        return Ok(Mounted {
            path,
            read_only: false,
        });
    }
    if let Some(c) = &v.config_map {
        let payload = payload::config_map(
            lookup,
            namespace,
            &c.name,
            c.items.as_ref(),
            c.default_mode.unwrap_or(DEFAULT_MODE),
            c.optional.unwrap_or(false),
        )
        .await?;
        return write(dir(CONFIG_MAP), payload, false, fs_group(pod)).await;
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let payload = payload::secret(
            lookup,
            namespace,
            &name,
            s.items.as_ref(),
            s.default_mode.unwrap_or(DEFAULT_MODE),
            s.optional.unwrap_or(false),
        )
        .await?;
        return write(dir(SECRET), payload, true, fs_group(pod)).await;
    }
    if let Some(d) = &v.downward_api {
        let payload = payload::downward_api(
            pod,
            node,
            d.items.as_ref(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
        )?;
        return write(dir(DOWNWARD_API), payload, false, fs_group(pod)).await;
    }
    if let Some(p) = &v.projected {
        let payload = payload::projected(pod, node, p, lookup, &m.tokens).await?;
        return write(dir(PROJECTED), payload, true, fs_group(pod)).await;
    }
    if let Some(c) = &v.persistent_volume_claim {
        return pvc::setup(&m.client, namespace, c).await;
    }
    Err(VolumeError::Unsupported(format!(
        "volume {:?}: its type is not supported by deckhand (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim of a hostPath or local PV)",
        v.name
    )))
}

/// An emptyDir: a 0777 directory, or a tmpfs of `memory` bytes.
async fn empty_dir(
    dir: PathBuf,
    memory: Option<Option<u64>>,
    (gid, policy): (Option<u32>, Option<String>),
) -> Result<Mounted, VolumeError> {
    let path = dir.clone();
    blocking(move || {
        let fresh = std::fs::symlink_metadata(&dir).is_err();
        match memory {
            Some(size) => {
                mount::ensure_tmpfs(&dir, size, 0o777).map_err(io("mounting a tmpfs on", &dir))?
            }
            None => std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?,
        }
        if fresh {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(io("chmod", &dir))?;
        }
        if let Some(gid) = gid {
            ownership::apply(&dir, gid, false, policy.as_deref())
                .map_err(io("applying fsGroup to", &dir))?;
        }
        Ok(())
    })
    .await?;
    Ok(Mounted {
        path,
        read_only: false,
    })
}

/// An atomic-writer volume (on a tmpfs for secrets and projected ones).
async fn write(
    dir: PathBuf,
    payload: Payload,
    tmpfs: bool,
    (gid, policy): (Option<u32>, Option<String>),
) -> Result<Mounted, VolumeError> {
    let path = dir.clone();
    blocking(move || {
        if tmpfs {
            mount::ensure_tmpfs(&dir, None, 0o755).map_err(io("mounting a tmpfs on", &dir))?;
        }
        let changed = atomic_writer::write(&dir, &payload)?;
        if changed && let Some(gid) = gid {
            ownership::apply(&dir, gid, true, policy.as_deref())
                .map_err(io("applying fsGroup to", &dir))?;
        }
        Ok(())
    })
    .await?;
    Ok(Mounted {
        path,
        read_only: true,
    })
}

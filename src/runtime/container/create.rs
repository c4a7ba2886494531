//! CreateContainer: validate, resolve the image, prepare the rootfs
//! snapshot, build the OCI spec, create the containerd container. Every step
//! is undone if a later one fails.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cri::api::v1 as cri;
use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container as ContainerdContainer, CreateContainerRequest, DeleteContainerRequest,
};
use tokio::sync::watch;

use super::request_checks;
use super::spec::{self, SandboxContext, SpecInputs, UserNamespaceJoin};
use super::user::{self, SupplementalGroupsPolicy, UserRequest};
use super::{
    Container, ContainerError, ContainerManager, RUNTIME, Runtime, SPEC_TYPE_URL, blocking,
    detached, now_ns, rootfs,
};
use crate::runtime::image::ErrorKind;
use crate::runtime::image::manifest::ExecConfig;
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::validate;
use crate::sys::ns::NsKind;

/// A lease keeps the fresh snapshot from containerd's collector until the
/// container references it; it expires by itself if we die before that.
const LEASE_TTL: Duration = Duration::from_secs(300);

impl ContainerManager {
    pub async fn create(
        self: &Arc<Self>,
        request: cri::CreateContainerRequest,
    ) -> Result<String, ContainerError> {
        let manager = self.clone();
        detached(async move { manager.create_to_end(request).await }).await
    }

    async fn create_to_end(
        self: &Arc<Self>,
        request: cri::CreateContainerRequest,
    ) -> Result<String, ContainerError> {
        let invalid = |m: &str| ContainerError::InvalidArgument(m.to_string());
        let config = request
            .config
            .ok_or_else(|| invalid("container config is required"))?;
        let metadata = config
            .metadata
            .clone()
            .ok_or_else(|| invalid("container metadata is required"))?;
        if metadata.name.is_empty() {
            return Err(invalid("container metadata.name is required"));
        }
        validate::plain_name("container metadata.name", &metadata.name)
            .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
        request_checks::check(&config)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(invalid("container image is required"));
        }
        let sandbox = self.sandboxes.info(&request.pod_sandbox_id)?;
        if !sandbox.ready {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let image = self
            .images
            .find(&image_name)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::InvalidArgument => {
                    ContainerError::InvalidArgument(format!("image {image_name:?}: {e}"))
                }
                _ => ContainerError::failed("looking up image", e),
            })?
            .ok_or_else(|| ContainerError::NotFound(format!("image {image_name:?} not found")))?;

        let id = crate::runtime::sandbox::new_id();
        let reserved_name = format!("{}/{}/{}", sandbox.id, metadata.name, metadata.attempt);
        {
            let mut names = self.names.lock();
            if let Some(owner) = names.get(&reserved_name) {
                return Err(ContainerError::AlreadyExists(format!(
                    "container name {:?} (attempt {}) in sandbox {} is reserved for {owner}",
                    metadata.name, metadata.attempt, sandbox.id
                )));
            }
            names.insert(reserved_name.clone(), id.clone());
        }
        // Absolute: runc resolves a relative cgroupsPath against its own
        // cgroup (the shim's, which need not be the root), which would put
        // the container outside its pod's cgroup.
        let cgroup = format!(
            "/{}/{id}",
            sandbox
                .cgroup
                .as_deref()
                .unwrap_or("deckhand")
                .trim_start_matches('/')
        );
        let dir = self.config.run_dir.join("containers").join(&id);
        let log_path = if sandbox.log_directory.is_empty() || config.log_path.is_empty() {
            None
        } else {
            Some(request_checks::log_file(
                Path::new(&sandbox.log_directory),
                &config.log_path,
            )?)
        };
        let exec = image.info.config.config.clone().unwrap_or_default();
        let image_ref = image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let user_specified_image = config
            .image
            .as_ref()
            .map(|i| i.user_specified_image.clone())
            .unwrap_or_default();
        let stop_signal = super::stop::stop_signal(config.stop_signal, exec.stop_signal.as_deref());
        let plan = Plan {
            id: id.clone(),
            chain_id: image.info.chain_id.clone(),
            image_name: image_name.clone(),
            cgroup: cgroup.clone(),
            dir: dir.clone(),
            container: None,
        };
        let container = Arc::new(Container {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            metadata,
            image_tag: image.repo_tags.first().cloned(),
            image: image_name,
            user_specified_image,
            image_ref,
            image_id: image.id.clone(),
            user: std::sync::OnceLock::new(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path,
            execs: super::exec::exec_slots(),
            created_at: now_ns(),
            reserved_name: reserved_name.clone(),
            dir,
            cgroup,
            runtime: Mutex::new(Runtime::created()),
            exited: watch::Sender::new(false),
            stop_signal,
            stop_signaled: Default::default(),
            op: tokio::sync::Mutex::new(()),
            record_write: tokio::sync::Mutex::new(()),
            stdio: super::Stdio {
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                tty: config.tty,
            },
            stdin: tokio::sync::Mutex::new(None),
        });
        let plan = Plan {
            container: Some(container.clone()),
            ..plan
        };
        let mut made = Made::default();
        match self.make(&plan, &config, &exec, &sandbox, &mut made).await {
            Ok(()) => {
                let _order = self.events.order();
                self.containers.lock().insert(id.clone(), container);
                tracing::info!(%id, sandbox = %sandbox.id, "container created");
                self.emit(
                    &id,
                    &sandbox.id,
                    cri::ContainerEventType::ContainerCreatedEvent,
                );
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "CreateContainer failed; rolling back");
                if let Err(re) = self.unmake(&plan, &made).await {
                    tracing::error!(%id, error = %re, "rollback incomplete");
                }
                self.names.lock().remove(&reserved_name);
                Err(e)
            }
        }
    }

    async fn make(
        &self,
        plan: &Plan,
        config: &cri::ContainerConfig,
        exec: &ExecConfig,
        sandbox: &SandboxInfo,
        made: &mut Made,
    ) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let lease = cd
            .create_lease("container", LEASE_TTL)
            .await
            .map_err(|s| ContainerError::from_status("creating lease", &s))?;
        let result = self
            .make_leased(plan, config, exec, sandbox, made, &lease)
            .await;
        cd.delete_lease(lease, false).await;
        result
    }

    async fn make_leased(
        &self,
        plan: &Plan,
        config: &cri::ContainerConfig,
        exec: &ExecConfig,
        sandbox: &SandboxInfo,
        made: &mut Made,
        lease: &crate::runtime::containerd::Lease,
    ) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let snapshotter = &self.config.snapshotter;
        made.dir = true;
        let dir = plan.dir.clone();
        blocking(move || std::fs::create_dir_all(dir))
            .await?
            .map_err(|e| ContainerError::failed("creating container dir", e))?;

        made.snapshot = true;
        cd.snapshots()
            .prepare(cd.request_in(
                PrepareSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: plan.id.clone(),
                    parent: plan.chain_id.clone(),
                    labels: Default::default(),
                },
                Some(lease),
            ))
            .await
            .map_err(|s| ContainerError::from_status("preparing rootfs snapshot", &s))?;

        let (passwd, group) = rootfs::read_user_files(
            cd,
            lease,
            snapshotter,
            &plan.chain_id,
            &format!("{}-passwd-view", plan.id),
            plan.dir.join("passwd-view"),
        )
        .await?;
        let security = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let policy = if security.supplemental_groups_policy
            == cri::SupplementalGroupsPolicy::Strict as i32
        {
            SupplementalGroupsPolicy::Strict
        } else {
            SupplementalGroupsPolicy::Merge
        };
        let resolved = user::resolve(
            &UserRequest {
                run_as_user: security.run_as_user.map(|v| v.value),
                run_as_username: &security.run_as_username,
                run_as_group: security.run_as_group.map(|v| v.value),
                supplemental_groups: &security.supplemental_groups,
                policy,
                image_user: exec.user.as_deref().unwrap_or_default(),
            },
            &passwd,
            &group,
        )
        .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;

        if let Some(container) = &plan.container {
            let _ = container.user.set(cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: i64::from(resolved.uid),
                    gid: i64::from(resolved.gid),
                    supplemental_groups: resolved
                        .additional_gids
                        .iter()
                        .map(|g| i64::from(*g))
                        .collect(),
                }),
            });
        }

        let target_pid = self.target_pid_namespace(sandbox, &security)?;
        let rootfs = sandbox.userns.is_some().then(|| plan.dir.join(ROOTFS_DIR));
        let context = SandboxContext {
            rootfs,
            ..sandbox_context(sandbox, &security, &plan.cgroup, target_pid)
        };
        let privileged = security.privileged;
        let (request, image) = (config.clone(), exec.clone());
        let seccomp_root = self.config.seccomp_root.clone();
        let features = self.features.clone();
        let cgroup = plan.cgroup.clone();
        // The builder reads host files (mountinfo, /dev, seccomp profiles,
        // the cgroup controllers).
        let spec = blocking(move || {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let host_cgroups = crate::sys::cgroup_support::for_cgroup(&cgroup);
            let (host_devices, devices) = if privileged {
                (crate::sys::mount::host_devices(), Vec::new())
            } else {
                (Vec::new(), super::devices::resolve(&request.devices)?)
            };
            spec::build(&SpecInputs {
                config: &request,
                image: &image,
                sandbox: &context,
                user: &resolved,
                seccomp_root: &seccomp_root,
                available_capabilities: &features.capabilities,
                host_cgroups: &host_cgroups,
                mountinfo: &mountinfo,
                recursive_read_only: features.recursive_read_only,
                host_devices: &host_devices,
                devices: &devices,
            })
            .map_err(|e| ContainerError::InvalidArgument(e.to_string()))
        })
        .await??;
        let spec = serde_json::to_vec(&spec)
            .map_err(|e| ContainerError::failed("serialising OCI spec", e))?;

        let mut labels: HashMap<String, String> = config.labels.clone();
        labels.insert("io.cri-containerd.kind".into(), "container".into());
        labels.insert("io.deckhand.sandbox-id".into(), sandbox.id.clone());
        made.container = true;
        cd.containers()
            .create(
                cd.request_in(
                    CreateContainerRequest {
                        container: Some(ContainerdContainer {
                            id: plan.id.clone(),
                            labels,
                            image: plan.image_name.clone(),
                            runtime: Some(ContainerRuntime {
                                name: RUNTIME.into(),
                                options: None,
                            }),
                            spec: Some(prost_types::Any {
                                type_url: SPEC_TYPE_URL.into(),
                                value: spec,
                            }),
                            snapshotter: snapshotter.clone(),
                            snapshot_key: plan.id.clone(),
                            extensions: plan
                                .container
                                .iter()
                                .map(|c| {
                                    (super::adopt::EXTENSION.to_string(), super::adopt::record(c))
                                })
                                .collect(),
                            ..Default::default()
                        }),
                    },
                    Some(lease),
                ),
            )
            .await
            .map_err(|s| ContainerError::from_status("creating containerd container", &s))?;
        Ok(())
    }

    /// Undoes whatever `made` says was (maybe) made, every step tried;
    /// returns the first failure. Rollback of a creation and the tail of
    /// RemoveContainer.
    pub(super) async fn unmake(&self, plan: &Plan, made: &Made) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let mut first_error = None;
        // An ID-mapped rootfs (user-namespaced pods) is ours to unmount,
        // first: its snapshot and the dir under it must not go while it is
        // mounted (removing them would reach into the mounted tree).
        let mut unmounted = true;
        if made.dir {
            let rootfs = plan.dir.join(ROOTFS_DIR);
            if let Err(e) = blocking(move || crate::sys::idmap::unmount_rootfs(&rootfs)).await? {
                first_error.get_or_insert(ContainerError::failed("unmounting rootfs", e));
                unmounted = false;
            }
        }
        if made.container
            && let Err(status) = cd
                .containers()
                .delete(cd.request(DeleteContainerRequest {
                    id: plan.id.clone(),
                }))
                .await
            && !super::is_not_found(&status)
        {
            first_error.get_or_insert(ContainerError::from_status("deleting container", &status));
        }
        if made.snapshot
            && unmounted
            && let Err(status) = cd
                .snapshots()
                .remove(cd.request(RemoveSnapshotRequest {
                    snapshotter: self.config.snapshotter.clone(),
                    key: plan.id.clone(),
                }))
                .await
            && !super::is_not_found(&status)
        {
            first_error.get_or_insert(ContainerError::from_status("removing snapshot", &status));
        }
        if made.dir && unmounted {
            let dir = plan.dir.clone();
            match blocking(move || std::fs::remove_dir_all(dir)).await? {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_error.get_or_insert(ContainerError::failed("removing container dir", e));
                }
                _ => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

pub(super) struct Plan {
    pub id: String,
    pub chain_id: String,
    pub image_name: String,
    pub cgroup: String,
    pub dir: PathBuf,
    /// The container being created: its record, saved with the containerd
    /// container, is what a restarted deckhand re-adopts it from.
    pub container: Option<Arc<Container>>,
}

/// What a creation got to (each flag set just before its step, so a step
/// that fails halfway is undone too).
#[derive(Default)]
pub(super) struct Made {
    pub dir: bool,
    pub snapshot: bool,
    pub container: bool,
}

impl ContainerManager {
    /// For PID mode TARGET: the PID namespace of the running container the
    /// request names (in the same pod), as the kubelet asks for ephemeral
    /// containers. None for every other mode.
    fn target_pid_namespace(
        &self,
        sandbox: &SandboxInfo,
        security: &cri::LinuxContainerSecurityContext,
    ) -> Result<Option<PathBuf>, ContainerError> {
        let Some(options) = security
            .namespace_options
            .as_ref()
            .filter(|n| n.pid == cri::NamespaceMode::Target as i32)
        else {
            return Ok(None);
        };
        let invalid = |m: String| ContainerError::InvalidArgument(m);
        if options.target_id.is_empty() {
            return Err(invalid(
                "PID namespace mode TARGET needs a target_id".into(),
            ));
        }
        let target = self.get(&options.target_id).map_err(|_| {
            invalid(format!(
                "target container {:?} not found",
                options.target_id
            ))
        })?;
        if target.sandbox_id != sandbox.id {
            return Err(invalid(format!(
                "target container {} is in another pod sandbox",
                target.id
            )));
        }
        let rt = target.snapshot();
        if rt.state != super::State::Running || rt.pid == 0 {
            return Err(ContainerError::FailedPrecondition(format!(
                "target container {} is not running",
                target.id
            )));
        }
        Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", rt.pid))))
    }
}

/// Where a container of a user-namespaced pod has its ID-mapped root
/// filesystem, under its dir.
pub(super) const ROOTFS_DIR: &str = "rootfs";

/// The sandbox as the spec builder wants it; the container's own PID mode
/// decides whether it joins the pod's PID namespace, the host's, a target
/// container's (`target_pid`) or its own.
fn sandbox_context(
    sandbox: &SandboxInfo,
    security: &cri::LinuxContainerSecurityContext,
    cgroup: &str,
    target_pid: Option<PathBuf>,
) -> SandboxContext {
    let ns = |kind: NsKind| {
        sandbox
            .namespaces
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
    };
    let pid_mode = security
        .namespace_options
        .as_ref()
        .map(|n| n.pid)
        .unwrap_or(sandbox.pid_mode);
    let host_pid = pid_mode == cri::NamespaceMode::Node as i32;
    let pid = if pid_mode == cri::NamespaceMode::Target as i32 {
        target_pid
    } else {
        (pid_mode == cri::NamespaceMode::Pod as i32)
            .then(|| ns(NsKind::Pid))
            .flatten()
    };
    let user = match (ns(NsKind::User), &sandbox.userns) {
        (Some(path), Some(userns)) => Some(UserNamespaceJoin {
            path,
            uids: userns.uids.clone(),
            gids: userns.gids.clone(),
        }),
        _ => None,
    };
    SandboxContext {
        network: ns(NsKind::Net),
        ipc: ns(NsKind::Ipc),
        uts: ns(NsKind::Uts),
        pid,
        host_pid,
        user,
        rootfs: None,
        cgroups_path: cgroup.to_string(),
        hostname: sandbox.hostname.clone(),
        etc_hostname: Some(sandbox.dir.join("hostname")),
        etc_hosts: Some(sandbox.dir.join("hosts")),
        resolv_conf: Some(sandbox.dir.join("resolv.conf")),
        dev_shm: None,
    }
}
#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;

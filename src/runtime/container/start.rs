//! StartContainer: a containerd task on the prepared snapshot, its output
//! going to deckhand-log-driver (run by the shim, so logging outlives us),
//! then started.

use std::path::Path;
use std::sync::Arc;

use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::{CreateTaskRequest, StartRequest};

use super::{ContainerError, ContainerManager, State, blocking, detached, now_ns};
use crate::cri::api::v1::ContainerEventType as Event;
use crate::sys::idmap;
use crate::sys::ns::NsKind;

/// The exit code containerd reports for a container that never started.
const START_ERROR_CODE: i32 = 128;

impl ContainerManager {
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let (manager, id) = (self.clone(), id.to_string());
        detached(async move { manager.start_to_end(&id).await }).await
    }

    async fn start_to_end(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        let _op = container.op.lock().await;
        let state = container.snapshot().state;
        if state != State::Created {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is {state:?}, not created",
                container.id
            )));
        }
        let sandbox = self.sandboxes.info(&container.sandbox_id)?;
        if !sandbox.ready {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let cd = &self.containerd;
        let rootfs = cd
            .snapshots()
            .mounts(cd.request(MountsRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: container.id.clone(),
            }))
            .await
            .map_err(|s| ContainerError::from_status("rootfs mounts", &s))?
            .into_inner()
            .mounts;
        // A pod with its own user namespace gets an ID-mapped rootfs that
        // we mount (the shim cannot); runc then finds it by the spec's
        // absolute root path, and the task has no rootfs mounts.
        let user_ns = sandbox
            .namespaces
            .iter()
            .find(|(k, _)| *k == NsKind::User)
            .map(|(_, p)| p.clone());
        let rootfs = match (user_ns, &sandbox.userns) {
            (Some(path), Some(userns)) => {
                let (dir, run_dir, root) = (
                    container.dir.clone(),
                    self.config.run_dir.clone(),
                    userns.root(),
                );
                blocking(move || mount_idmapped_rootfs(&rootfs, &dir, &run_dir, &path, root))
                    .await??;
                vec![]
            }
            _ => rootfs,
        };
        let log_uri = match &container.output_log() {
            Some(path) => {
                let parent = path.parent().map(Path::to_path_buf);
                if let Some(parent) = parent {
                    blocking(move || std::fs::create_dir_all(parent))
                        .await?
                        .map_err(|e| ContainerError::failed("creating log directory", e))?;
                }
                log_uri(
                    &self.config.log_driver,
                    path,
                    &container.dir.join("log-driver.pid"),
                )?
            }
            None => String::new(),
        };
        // stdin is a FIFO the shim reads; we hold its write end (opened
        // read-write, so opening never waits for the shim) for attach.
        let stdin = if container.stdio.stdin {
            let path = container.dir.join("stdin");
            let p = path.clone();
            blocking(move || make_fifo(&p))
                .await?
                .map_err(|e| ContainerError::failed("creating stdin FIFO", e))?;
            let writer = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)
                .map_err(|e| ContainerError::failed("opening stdin FIFO", e))?;
            *container.stdin.lock().await = Some(writer);
            path.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        // stdin without a terminal: the shim would give the process no
        // stdin with binary:// output, so the output goes through FIFOs to a
        // log driver of our own (see stdio.rs).
        let fifo_output = match (
            &container.output_log(),
            container.stdio.stdin && !container.stdio.tty,
        ) {
            (Some(log), true) => {
                let (dir, driver, log) = (
                    container.dir.clone(),
                    self.config.log_driver.clone(),
                    log.clone(),
                );
                let pid_file = container.dir.join("log-driver.pid");
                Some(super::stdio::start_log_driver(
                    &dir, &driver, &log, &pid_file,
                )?)
            }
            _ => None,
        };
        let (stdout, stderr) = match &fifo_output {
            Some(f) => (
                f.stdout.to_string_lossy().into_owned(),
                f.stderr.to_string_lossy().into_owned(),
            ),
            None => (log_uri.clone(), log_uri),
        };
        let created = cd
            .tasks()
            .create(cd.call(CreateTaskRequest {
                container_id: container.id.clone(),
                rootfs,
                stdin,
                stdout,
                stderr,
                terminal: container.stdio.tty,
                ..Default::default()
            }))
            .await;
        // Taken before Start: a quick process's exit (timestamped by
        // containerd) may be recorded before Start returns.
        let started_at = now_ns();
        let started = match created {
            Ok(_) => cd
                .tasks()
                .start(cd.call(StartRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                }))
                .await
                .map(|r| r.into_inner().pid),
            Err(status) => Err(status),
        };
        // The shim holds the output FIFOs' write ends now (or never will).
        drop(fifo_output);
        match started {
            Ok(pid) => {
                {
                    let _order = self.events.order();
                    let became_running = {
                        let mut rt = container.runtime.lock();
                        rt.pid = pid;
                        rt.started_at = started_at;
                        // A fast process may have exited (and been recorded,
                        // STARTED and STOPPED sent) already.
                        let created = rt.state == State::Created;
                        if created {
                            rt.state = State::Running;
                        }
                        created
                    };
                    if became_running {
                        self.emit(
                            &container.id,
                            &container.sandbox_id,
                            Event::ContainerStartedEvent,
                        );
                    }
                }
                tracing::info!(id = %container.id, pid, "container started");
                self.save_record(&container).await;
                Ok(())
            }
            Err(status) => {
                // As containerd: a container that failed to start is exited
                // with StartError, and its half-made task goes.
                if let Err(s) = self.delete_task(&container.id).await {
                    tracing::warn!(id = %container.id, status = %s, "deleting failed task");
                }
                container.stdin.lock().await.take();
                {
                    let _order = self.events.order();
                    {
                        let mut rt = container.runtime.lock();
                        rt.state = State::Exited;
                        rt.finished_at = now_ns();
                        rt.exit_code = START_ERROR_CODE;
                        rt.reason = "StartError".into();
                        rt.message = status.message().to_string();
                    }
                    self.emit(
                        &container.id,
                        &container.sandbox_id,
                        Event::ContainerStoppedEvent,
                    );
                }
                container.exited.send_replace(true);
                self.save_record(&container).await;
                Err(ContainerError::from_status("starting container", &status))
            }
        }
    }
}

/// A FIFO at `path` (one left by an earlier start attempt is reused).
fn make_fifo(path: &Path) -> nix::Result<()> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Err(nix::errno::Errno::EEXIST) => Ok(()),
        r => r,
    }
}

/// Mounts the snapshot `mounts` at `<dir>/rootfs`, ID-mapped for the user
/// namespace pinned at `userns`. The container's root in that namespace
/// (host uid 100000, say) must be able to reach it: runc resolves it from
/// inside, so every directory on the way must be searchable by others.
/// Blocking.
fn mount_idmapped_rootfs(
    mounts: &[containerd_client::types::Mount],
    dir: &Path,
    run_dir: &Path,
    userns: &Path,
    root: (u32, u32),
) -> Result<(), ContainerError> {
    let [m] = mounts else {
        return Err(ContainerError::Failed(format!(
            "cannot ID-map a rootfs of {} mounts",
            mounts.len()
        )));
    };
    let rootfs = idmap::Rootfs::from_mount(&m.r#type, &m.source, &m.options)
        .map_err(|e| ContainerError::failed("ID-mapped rootfs", e))?;
    let target = dir.join(super::create::ROOTFS_DIR);
    std::fs::create_dir_all(&target)
        .map_err(|e| ContainerError::failed("creating the rootfs mount point", e))?;
    searchable_by_others(&target, run_dir)?;
    let userns = std::fs::File::open(userns)
        .map_err(|e| ContainerError::failed("opening the pod's user namespace", e))?;
    idmap::mount_rootfs(&rootfs, &target, &userns, root)
        .map_err(|e| ContainerError::failed("mounting the ID-mapped rootfs", e))
}

/// Adds search permission for others to `path` and its parents up to
/// `run_dir` (ours to change); above it, a directory that others cannot
/// search is an error that names it.
fn searchable_by_others(path: &Path, run_dir: &Path) -> Result<(), ContainerError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors() {
        let meta = std::fs::metadata(dir)
            .map_err(|e| ContainerError::failed(&format!("{}", dir.display()), e))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if dir.starts_with(run_dir) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
                .map_err(|e| ContainerError::failed(&format!("chmod {}", dir.display()), e))?;
        } else {
            return Err(ContainerError::FailedPrecondition(format!(
                "{} is not searchable by others, so a user-namespaced container cannot reach its rootfs under {}",
                dir.display(),
                run_dir.display()
            )));
        }
    }
    Ok(())
}

/// containerd's binary log URI: the shim runs `driver` with each query pair
/// as `key value` arguments.
fn log_uri(driver: &Path, log: &Path, pid_file: &Path) -> Result<String, ContainerError> {
    let mut uri =
        url::Url::parse("binary:///").map_err(|e| ContainerError::failed("log URI", e))?;
    uri.set_path(&driver.to_string_lossy());
    uri.query_pairs_mut()
        .append_pair("--path", &log.to_string_lossy())
        .append_pair("--pid-file", &pid_file.to_string_lossy());
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_uri_names_the_driver_and_its_flags() {
        let uri = log_uri(
            Path::new("/var/lib/deckhand/bin/deckhand-log-driver"),
            Path::new("/var/log/pods/ns_p_u/c/0.log"),
            Path::new("/run/deckhand/containers/x/log-driver.pid"),
        )
        .unwrap();
        let parsed = url::Url::parse(&uri).unwrap();
        assert_eq!(parsed.scheme(), "binary");
        assert_eq!(parsed.path(), "/var/lib/deckhand/bin/deckhand-log-driver");
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("--path".into(), "/var/log/pods/ns_p_u/c/0.log".into()),
                (
                    "--pid-file".into(),
                    "/run/deckhand/containers/x/log-driver.pid".into()
                ),
            ]
        );
    }
}

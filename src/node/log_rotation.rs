//! Container log rotation, as the kubelet's container log manager does it:
//! every containerLogMonitorInterval, each running container whose log
//! file is larger than containerLogMaxSize is rotated by at most
//! containerLogMaxWorkers at once: leftovers of an interrupted rotation are
//! cleaned up, the oldest rotated files beyond containerLogMaxFiles are
//! removed, the rotated ones kept are compressed (`.gz`), the live file is
//! renamed to `<log>.<YYYYMMDD-hhmmss>` and the runtime is told to reopen
//! it (CRI ReopenContainerLog); if it cannot, the rename is undone. The
//! newest rotated file stays uncompressed, as the log reader reads it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use crate::cri::api::{RuntimeService, v1};

const CRI_TIMEOUT: Duration = Duration::from_secs(10);

/// The rotation policy (KubeletConfiguration's containerLog* fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub max_size: u64,
    pub max_files: usize,
    pub max_workers: usize,
    pub monitor_interval: Duration,
}

impl Default for Policy {
    /// kubelet's defaults: 10Mi, 5 files, 1 worker, every 10 s.
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
            max_workers: 1,
            monitor_interval: Duration::from_secs(10),
        }
    }
}

impl Policy {
    /// kubelet's validation: at least 2 files, 1 worker, a 3 s interval.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_files < 2 {
            return Err(format!(
                "containerLogMaxFiles must be at least 2, got {}",
                self.max_files
            ));
        }
        if self.max_workers < 1 {
            return Err("containerLogMaxWorkers must be at least 1".into());
        }
        if self.monitor_interval < Duration::from_secs(3) {
            return Err("containerLogMonitorInterval must be at least 3s".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("ReopenContainerLog {id}: {message}")]
    Reopen { id: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RotateError + '_ {
    move |source| RotateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs until `stop` turns true.
pub async fn run(
    runtime: Arc<dyn RuntimeService>,
    policy: Policy,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(policy.monitor_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        rotate_all(runtime.as_ref(), &policy).await;
    }
}

/// One pass over the running containers.
pub async fn rotate_all(runtime: &dyn RuntimeService, policy: &Policy) {
    let listed = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                state: Some(v1::ContainerStateValue {
                    state: v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        }),
    )
    .await;
    let containers = match listed {
        Ok(Ok(l)) => l.containers,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "log rotation: ListContainers");
            return;
        }
        Err(_) => {
            tracing::warn!("log rotation: ListContainers timed out");
            return;
        }
    };
    futures::stream::iter(containers)
        .for_each_concurrent(policy.max_workers, |c| async move {
            if let Err(e) = rotate_if_needed(runtime, &c.id, policy).await {
                tracing::warn!(container = %c.id, error = %e, "rotating a container log");
            }
        })
        .await;
}

async fn rotate_if_needed(
    runtime: &dyn RuntimeService,
    id: &str,
    policy: &Policy,
) -> Result<(), RotateError> {
    let status = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.container_status(v1::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        }),
    )
    .await;
    let Ok(Ok(status)) = status else {
        return Ok(());
    };
    let Some(status) = status.status.filter(|s| !s.log_path.is_empty()) else {
        return Ok(());
    };
    let log = PathBuf::from(&status.log_path);
    let big = tokio::fs::metadata(&log)
        .await
        .is_ok_and(|m| m.len() > policy.max_size);
    if !big {
        return Ok(());
    }
    let (log2, max_files) = (log.clone(), policy.max_files);
    let rotated = tokio::task::spawn_blocking(move || prepare_and_rename(&log2, max_files))
        .await
        .map_err(|e| RotateError::Io {
            path: log.display().to_string(),
            source: std::io::Error::other(e),
        })??;
    let reopened = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.to_string(),
        }),
    )
    .await;
    let message = match reopened {
        Ok(Ok(_)) => {
            tracing::debug!(container = %id, rotated = %rotated.display(), "container log rotated");
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    // The runtime still writes to the renamed file: put it back.
    if let Err(e) = std::fs::rename(&rotated, &log) {
        tracing::warn!(error = %e, "log rotation: undoing the rename");
    }
    Err(RotateError::Reopen {
        id: id.to_string(),
        message,
    })
}

/// The rotated files of `log`, oldest first, uncompressed and compressed.
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return vec![];
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && !n.ends_with(".tmp")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Everything before the reopen (blocking): returns the rotated name.
pub fn prepare_and_rename(log: &Path, max_files: usize) -> Result<PathBuf, RotateError> {
    cleanup(log)?;
    // The live file and the one about to be rotated count too.
    let keep = max_files.saturating_sub(2);
    let mut rotated = rotated_files(log);
    while rotated.len() > keep {
        let oldest = rotated.remove(0);
        std::fs::remove_file(&oldest).map_err(io(&oldest))?;
    }
    for f in rotated.iter().filter(|f| !is_gz(f)) {
        compress(f)?;
    }
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
    let mut target = PathBuf::from(format!("{}.{stamp}", log.display()));
    // Two rotations in one second: the later gets a suffix that sorts after.
    let mut n = 1;
    while target.exists() || PathBuf::from(format!("{}.gz", target.display())).exists() {
        target = PathBuf::from(format!("{}.{stamp}-{n}", log.display()));
        n += 1;
    }
    std::fs::rename(log, &target).map_err(io(log))?;
    Ok(target)
}

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// Leftovers of an interrupted rotation: temporary files, and a rotated
/// file whose compressed copy was finished.
fn cleanup(log: &Path) -> Result<(), RotateError> {
    let Some(dir) = log.parent() else {
        return Ok(());
    };
    let name = log.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{name}.");
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        let done_gz = !is_gz(&p) && PathBuf::from(format!("{}.gz", p.display())).exists();
        if n.ends_with(".tmp") || done_gz {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// `f` -> `f.gz` (through `f.gz.tmp`), streaming; `f` removed after.
fn compress(f: &Path) -> Result<(), RotateError> {
    let tmp = PathBuf::from(format!("{}.gz.tmp", f.display()));
    let done = PathBuf::from(format!("{}.gz", f.display()));
    let mut input = std::fs::File::open(f).map_err(io(f))?;
    let out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz).map_err(io(&tmp))?;
    let mut out = gz.finish().map_err(io(&tmp))?;
    out.flush().map_err(io(&tmp))?;
    out.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &done).map_err(io(&done))?;
    std::fs::remove_file(f).map_err(io(f))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_keeps_max_files_and_compresses_all_but_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for name in [
            "0.log.20200101-000000.gz",
            "0.log.20200102-000000",
            "0.log.x.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"old\n").unwrap();
        }
        std::fs::write(&log, b"live\n").unwrap();
        let rotated = prepare_and_rename(&log, 3).unwrap();
        assert!(!log.exists());
        assert_eq!(std::fs::read(&rotated).unwrap(), b"live\n");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // max 3 files: the live one (reopened later), the newest rotated
        // (plain) and one older (compressed).
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[0], "0.log.20200102-000000.gz");
        assert!(!names[1].ends_with(".gz"), "{names:?}");
        let gz = std::fs::File::open(dir.path().join(&names[0])).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
        assert_eq!(text, "old\n");
        // The reader sees the plain rotated file before the live one.
        std::fs::write(&log, b"new\n").unwrap();
        let files = crate::node::server::logs::log_files(&log);
        assert_eq!(files, vec![rotated, log]);
        assert!(Policy::default().validate().is_ok());
        let bad = Policy {
            max_files: 1,
            ..Policy::default()
        };
        assert!(bad.validate().is_err());
    }
}

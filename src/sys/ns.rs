//! Namespaces: pinning a process's namespace with a bind mount so it outlives
//! the process, releasing the pin, and running code inside pinned namespaces
//! on a thread of our own.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("namespace helper thread: {0}")]
    Thread(String),
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NsError + 'a {
    move |source| NsError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The namespaces a sandbox can own, with their `/proc/<pid>/ns/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
    Pid,
    /// Made in the same unshare as the others, it owns them: root in the
    /// pod's user namespace is then root over its network, IPC and UTS.
    User,
}

impl NsKind {
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Pid => "pid",
            NsKind::User => "user",
        }
    }

    /// The file under /proc/<pid>/ns/ that names it. For PID the process
    /// that unshared it is not inside the new namespace itself; its children
    /// are, which `pid_for_children` names.
    pub fn proc_file(self) -> &'static str {
        match self {
            NsKind::Pid => "pid_for_children",
            other => other.name(),
        }
    }

    pub fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
            NsKind::User => CloneFlags::CLONE_NEWUSER,
        }
    }
}

/// Moves the calling process into new namespaces of these kinds (for PID:
/// its future children). One call: with a user namespace among them the
/// kernel makes it first, and it owns the others.
pub fn unshare(kinds: &[NsKind]) -> nix::Result<()> {
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |f, k| f | k.clone_flag());
    nix::sched::unshare(flags)
}

/// Sets the hostname of the caller's UTS namespace.
pub fn set_hostname(name: &str) -> nix::Result<()> {
    nix::unistd::sethostname(name)
}

/// Bind-mounts `/proc/<pid>/ns/<kind>` onto `target` (created empty), so the
/// namespace lives on after `pid` exits and others can join it by path.
pub fn pin(pid: i32, kind: NsKind, target: &Path) -> Result<(), NsError> {
    let source = PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_file()));
    File::create(target).map_err(sys("creating", target))?;
    nix::mount::mount(
        Some(&source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| NsError::Sys {
        op: "bind-mounting namespace onto",
        path: target.to_path_buf(),
        source: e.into(),
    })
}

/// Undoes [`pin`]: unmounts (lazily, so a process still inside keeps it) and
/// removes the file. Absent or never-mounted targets are fine: release must
/// be idempotent for rollback and for repeated RemovePodSandbox.
pub fn unpin(target: &Path) -> Result<(), NsError> {
    let unmounted = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    tracing::debug!(path = %target.display(), result = ?unmounted, "unpin");
    match unmounted {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(NsError::Sys {
                op: "unmounting",
                path: target.to_path_buf(),
                source: e.into(),
            });
        }
    }
    match std::fs::remove_file(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sys("removing", target)(e)),
    }
}

/// Runs `f` on a fresh OS thread that first joins each namespace in `joins`.
/// setns changes only the calling thread; the thread is thrown away after,
/// so no async worker or pooled thread ever ends up in a pod's namespace.
pub fn run_in<T, F>(joins: Vec<(PathBuf, NsKind)>, f: F) -> Result<T, NsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let handle = std::thread::Builder::new()
        .name("deckhand-setns".into())
        .spawn(move || -> Result<T, NsError> {
            for (path, kind) in &joins {
                let fd = File::open(path).map_err(sys("opening", path))?;
                nix::sched::setns(&fd, kind.clone_flag()).map_err(|e| NsError::Sys {
                    op: "setns",
                    path: path.clone(),
                    source: e.into(),
                })?;
            }
            Ok(f())
        })
        .map_err(|e| NsError::Thread(e.to_string()))?;
    handle
        .join()
        .map_err(|_| NsError::Thread("panicked".into()))?
}

/// The inode that identifies the namespace `path` refers to (e.g.
/// /proc/self/ns/net or a pinned file): equal inodes, same namespace.
pub fn inode(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.ino())
}

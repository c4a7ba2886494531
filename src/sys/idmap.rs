//! User namespaces and ID-mapped mounts: writing a user namespace's ID maps,
//! and mounting a container's root filesystem so that files owned by root on
//! disk belong to the pod's mapped root (kernel ID-mapped mounts, 5.12+;
//! overlayfs over ID-mapped layers, 5.19+). Nothing is chowned on disk: the
//! image's layers stay shared with every other container.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IdmapError + 'a {
    move |source| IdmapError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One contiguous range of a user namespace's uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host id that `id` inside the namespace is, if the range maps it.
    pub fn host_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }

    /// A range that fits in 32 bits on both sides and maps something.
    pub fn is_valid(&self) -> bool {
        self.length > 0
            && self.container_id.checked_add(self.length - 1).is_some()
            && self.host_id.checked_add(self.length - 1).is_some()
    }
}

/// The text of a `/proc/<pid>/uid_map` (or gid_map): one line per range.
pub fn map_text(mappings: &[IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// Writes the uid and gid maps of the user namespace `pid` is in. Each file
/// takes a single write, and only once. We hold CAP_SETUID/CAP_SETGID in
/// the parent namespace, so `setgroups` need not be denied first.
pub fn write_maps(pid: i32, uids: &[IdMapping], gids: &[IdMapping]) -> Result<(), IdmapError> {
    for (file, mappings) in [("uid_map", uids), ("gid_map", gids)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, map_text(mappings)).map_err(sys("writing", &path))?;
    }
    Ok(())
}

fn cstring(path: &Path) -> Result<CString, IdmapError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IdmapError::Unsupported(format!("path {} has a NUL", path.display())))
}

/// A detached copy of the mount at `source`, ID-mapped through the user
/// namespace `userns` (uid N on disk shows as the host id container id N
/// maps to). Not attached anywhere until [`attach`]; dropped, it vanishes.
pub fn idmapped_tree(source: &Path, userns: &File, readonly: bool) -> Result<OwnedFd, IdmapError> {
    let c_source = cstring(source)?;
    // SAFETY: plain syscalls on a NUL-terminated path; the returned fd is
    // owned by us from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_source.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(sys("open_tree", source)(std::io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a fresh descriptor nobody else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_IDMAP | if readonly { libc::MOUNT_ATTR_RDONLY } else { 0 };
    attr.userns_fd = userns.as_raw_fd() as u64;
    let empty = c"";
    // SAFETY: attr lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(sys("ID-mapping a mount of", source)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(tree)
}

/// Attaches a detached tree (from [`idmapped_tree`]) at `target`.
pub fn attach(tree: &OwnedFd, target: &Path) -> Result<(), IdmapError> {
    let c_target = cstring(target)?;
    let empty = c"";
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(sys("attaching an ID-mapped mount at", target)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether the kernel ID-maps mounts of the filesystem `path` is on, for the
/// user namespace `userns`: an ID-mapped copy is made and thrown away.
pub fn supported(path: &Path, userns: &File) -> Result<(), IdmapError> {
    idmapped_tree(path, userns, false).map(drop)
}

/// A root filesystem as containerd's snapshotter describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// `overlay` with lowerdir (top first), upperdir, workdir and the rest
    /// of its options as given.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<PathBuf>,
        other_options: Vec<String>,
    },
    /// A single directory (a snapshot with no parent), bind-mounted.
    Bind { source: PathBuf, readonly: bool },
}

impl Rootfs {
    /// Reads a snapshot mount (type, source, options) as one of the shapes
    /// above; other filesystems cannot be ID-mapped here.
    pub fn from_mount(typ: &str, source: &str, options: &[String]) -> Result<Self, IdmapError> {
        match typ {
            "overlay" => {
                let mut lowers = Vec::new();
                let mut upper = None;
                let mut other_options = Vec::new();
                for option in options {
                    if let Some(v) = option.strip_prefix("lowerdir=") {
                        lowers.extend(v.split(':').map(PathBuf::from));
                    } else if let Some(v) = option.strip_prefix("upperdir=") {
                        upper = Some(PathBuf::from(v));
                        other_options.push(option.clone());
                    } else {
                        other_options.push(option.clone());
                    }
                }
                if lowers.is_empty() {
                    return Err(IdmapError::Unsupported(
                        "overlay mount without lowerdir".into(),
                    ));
                }
                Ok(Rootfs::Overlay {
                    lowers,
                    upper,
                    other_options,
                })
            }
            "bind" | "rbind" | "none" if options.iter().any(|o| o == "bind" || o == "rbind") => {
                Ok(Rootfs::Bind {
                    source: PathBuf::from(source),
                    readonly: options.iter().any(|o| o == "ro"),
                })
            }
            other => Err(IdmapError::Unsupported(format!(
                "cannot ID-map a {other:?} root filesystem"
            ))),
        }
    }
}

/// Mounts `rootfs` at `target` so that the user namespace `userns` sees
/// on-disk root as its root: each lower layer is an ID-mapped copy (handed
/// to overlayfs as /proc/self/fd/N, which keeps the option string short
/// and leaves nothing attached when the fds close), and the fresh upper
/// dir is given to the mapped root (`root_owner`), as containerd does.
/// Blocking; on error nothing stays mounted.
pub fn mount_rootfs(
    rootfs: &Rootfs,
    target: &Path,
    userns: &File,
    root_owner: (u32, u32),
) -> Result<(), IdmapError> {
    match rootfs {
        Rootfs::Bind { source, readonly } => {
            let tree = idmapped_tree(source, userns, *readonly)?;
            attach(&tree, target)
        }
        Rootfs::Overlay {
            lowers,
            upper,
            other_options,
        } => {
            let trees = lowers
                .iter()
                .map(|l| idmapped_tree(l, userns, true))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(upper) = upper {
                let (uid, gid) = root_owner;
                std::os::unix::fs::chown(upper, Some(uid), Some(gid))
                    .map_err(sys("giving the pod's root", upper))?;
            }
            let lowerdir = trees
                .iter()
                .map(|t| format!("/proc/self/fd/{}", t.as_raw_fd()))
                .collect::<Vec<_>>()
                .join(":");
            let mut options = vec![format!("lowerdir={lowerdir}")];
            options.extend(other_options.iter().cloned());
            let data = options.join(",");
            let mounted = nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            );
            // The overlay holds its own references to the layers now.
            drop(trees);
            mounted.map_err(|e| sys("mounting overlay at", target)(e.into()))
        }
    }
}

/// Undoes [`mount_rootfs`] (lazily: a process still inside keeps its view).
/// A target that is not mounted, or gone, is fine.
pub fn unmount_rootfs(target: &Path) -> Result<(), IdmapError> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys("unmounting", target)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_translate_and_validate() {
        let m = IdMapping {
            container_id: 0,
            host_id: 1000,
            length: 100_000,
        };
        assert_eq!(m.host_of(0), Some(1000));
        assert_eq!(m.host_of(99_999), Some(100_999));
        assert_eq!(m.host_of(100_000), None);
        assert!(m.is_valid());
        assert!(!IdMapping { length: 0, ..m }.is_valid());
        assert!(
            !IdMapping {
                host_id: u32::MAX,
                length: 2,
                ..m
            }
            .is_valid()
        );
        assert_eq!(map_text(&[m]), "0 1000 100000\n");
    }

    #[test]
    fn snapshot_mounts_become_rootfs_shapes() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let overlay = Rootfs::from_mount(
            "overlay",
            "overlay",
            &opts(&[
                "index=off",
                "workdir=/s/2/work",
                "upperdir=/s/2/fs",
                "lowerdir=/s/1/fs:/s/0/fs",
            ]),
        )
        .unwrap();
        assert_eq!(
            overlay,
            Rootfs::Overlay {
                lowers: vec!["/s/1/fs".into(), "/s/0/fs".into()],
                upper: Some("/s/2/fs".into()),
                other_options: opts(&["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs"]),
            }
        );
        assert_eq!(
            Rootfs::from_mount("bind", "/s/1/fs", &opts(&["rbind", "rw"])).unwrap(),
            Rootfs::Bind {
                source: "/s/1/fs".into(),
                readonly: false
            }
        );
        assert!(Rootfs::from_mount("overlay", "overlay", &opts(&["upperdir=/x"])).is_err());
        assert!(Rootfs::from_mount("btrfs", "/dev/x", &[]).is_err());
    }
}

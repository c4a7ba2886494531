//! The kernel mounts volumes need: a tmpfs for `medium: Memory` emptyDirs
//! and for secret and projected volumes (so secrets never touch disk), and
//! their removal on teardown, found through /proc/self/mountinfo.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

pub use crate::sys::mount::mount_points;

fn read_mountinfo() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
}

pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    Ok(mount_points(&read_mountinfo()?).iter().any(|p| p == path))
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_points(&read_mountinfo()?)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// A tmpfs on `dir` (made if missing) unless one is there already;
/// `size` in bytes (None: the kernel's default, half the RAM).
pub fn ensure_tmpfs(dir: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut data = format!("mode={mode:o}");
    if let Some(size) = size {
        data += &format!(",size={size}");
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Unmounts every mount at or under `dir`: Err names what stays mounted.
pub fn unmount_all(dir: &Path) -> io::Result<()> {
    for p in mounts_under(dir)? {
        if let Err(e) = nix::mount::umount2(&p, MntFlags::empty()) {
            // Busy (a container still holds it): detach, as the kubelet's
            // cleanup does after the containers are gone.
            tracing::debug!(path = %p.display(), error = %e, "unmount; detaching");
            nix::mount::umount2(&p, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
        }
    }
    let left = mounts_under(dir)?;
    if let Some(p) = left.first() {
        return Err(io::Error::other(format!(
            "{} is still mounted",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_read_and_unescaped() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:35 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/a\\040b rw - tmpfs tmpfs rw\n";
        let points = mount_points(info);
        assert_eq!(
            points,
            vec![
                PathBuf::from("/"),
                PathBuf::from("/var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/a b")
            ]
        );
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(mounts_under(dir.path()).unwrap().is_empty());
        assert!(!is_mount_point(dir.path()).unwrap());
        unmount_all(dir.path()).unwrap();
    }
}

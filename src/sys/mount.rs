//! Facts about host mounts: which mount holds a path and how it propagates
//! (from /proc/self/mountinfo), whether the kernel can change mount attributes
//! recursively (mount_setattr), and the host's device nodes.

use std::path::{Path, PathBuf};

/// A mount's propagation type, from the optional fields of mountinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `shared:N` (possibly also a slave of another group).
    Shared,
    /// `master:N` without `shared:`.
    Slave,
    Private,
}

/// The mount that holds a path: its mount point and propagation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOf {
    pub mount_point: PathBuf,
    pub propagation: Propagation,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u16, |acc, b| acc * 8 + u16::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo:
/// `<id> <parent> <dev> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoEntry<'a> {
    /// Field 5, with the kernel's octal escapes (`\040` for a space) undone.
    pub mount_point: PathBuf,
    /// The optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<&'a str>,
    pub fstype: &'a str,
    pub super_options: &'a str,
}

impl MountInfoEntry<'_> {
    /// The propagation type its optional fields give.
    pub fn propagation(&self) -> Propagation {
        if self.optional.iter().any(|f| f.starts_with("shared:")) {
            Propagation::Shared
        } else if self.optional.iter().any(|f| f.starts_with("master:")) {
            Propagation::Slave
        } else {
            Propagation::Private
        }
    }
}

/// The well-formed lines of a mountinfo text, in mount order (a line
/// without the `-` separator after the six fixed fields is skipped).
pub fn mountinfo_entries(mountinfo: &str) -> impl Iterator<Item = MountInfoEntry<'_>> {
    mountinfo.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if fields.len() < 7 || sep < 6 {
            return None;
        }
        Some(MountInfoEntry {
            mount_point: PathBuf::from(unescape(fields[4])),
            optional: fields[6..sep].to_vec(),
            fstype: fields.get(sep + 1).copied().unwrap_or_default(),
            super_options: fields.get(sep + 3).copied().unwrap_or_default(),
        })
    })
}

/// The mount points in a mountinfo text, in mount order.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo_entries(mountinfo)
        .map(|e| e.mount_point)
        .collect()
}

/// The mount holding `path` (already canonical) in a mountinfo text: the
/// last-mounted one whose mount point is the longest prefix of the path.
pub fn mount_of_in(mountinfo: &str, path: &Path) -> Option<MountOf> {
    let mut best: Option<MountOf> = None;
    for entry in mountinfo_entries(mountinfo) {
        if !path.starts_with(&entry.mount_point) {
            continue;
        }
        // Later lines are mounted later: an equal prefix replaces (overmounts).
        let longer = best
            .as_ref()
            .is_none_or(|b| entry.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(MountOf {
                propagation: entry.propagation(),
                mount_point: entry.mount_point,
            });
        }
    }
    best
}

/// The mount holding `path` in our mount namespace (containerd's as well:
/// they share the host's).
pub fn mount_of(path: &Path) -> std::io::Result<Option<MountOf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_of_in(&mountinfo, path))
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which runc needs for
/// recursive read-only mounts. Probed with a call that can only fail: an
/// invalid fd gives EBADF where the syscall exists, ENOSYS where it does not.
pub fn has_mount_setattr() -> bool {
    // SAFETY: a null attr pointer with size 0 and fd -1 touches no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    };
    r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// A device node of the host, for privileged containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub path: PathBuf,
    /// `true` for a block device, `false` for a character device.
    pub block: bool,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Every device node under /dev, as containerd gives a privileged container;
/// the runtime's own /dev/pts, /dev/shm, /dev/mqueue and the console are
/// left out (the container has its own).
pub fn host_devices() -> Vec<HostDevice> {
    let mut out = Vec::new();
    collect_devices(Path::new("/dev"), &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn collect_devices(dir: &Path, out: &mut Vec<HostDevice>) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ft = meta.file_type();
        if ft.is_dir() {
            if !matches!(
                name.as_ref(),
                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
            ) {
                collect_devices(&path, out);
            }
            continue;
        }
        if name == "console" || !(ft.is_char_device() || ft.is_block_device()) {
            continue;
        }
        if let Some(device) = HostDevice::from_metadata(path, &meta) {
            out.push(device);
        }
    }
}

impl HostDevice {
    /// The device node `meta` describes, if it is one.
    fn from_metadata(path: PathBuf, meta: &std::fs::Metadata) -> Option<HostDevice> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = meta.file_type();
        if !(ft.is_char_device() || ft.is_block_device()) {
            return None;
        }
        let rdev = meta.rdev();
        Some(HostDevice {
            path,
            block: ft.is_block_device(),
            major: libc::major(rdev) as u64,
            minor: libc::minor(rdev) as u64,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// The device nodes a CRI Device's host path names, as containerd reads
/// it: a device node (symlinks followed), or a directory of them (each
/// found below it, with its path relative to the directory). Blocking.
pub fn devices_at(path: &Path) -> std::io::Result<Vec<(PathBuf, HostDevice)>> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut found = Vec::new();
        collect_devices(path, &mut found);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(found
            .into_iter()
            .filter_map(|d| Some((d.path.strip_prefix(path).ok()?.to_path_buf(), d)))
            .collect());
    }
    match HostDevice::from_metadata(path.to_path_buf(), &meta) {
        Some(device) => Ok(vec![(PathBuf::new(), device)]),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a device node",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:40 / /tmp rw,relatime shared:5 - tmpfs tmpfs rw
41 40 0:40 /a /tmp/a rw,relatime master:5 - tmpfs tmpfs rw
42 40 0:41 / /tmp/with\\040space rw,relatime shared:7 master:3 - tmpfs tmpfs rw
43 41 0:40 /a /tmp/a rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn the_longest_prefix_and_the_latest_mount_win() {
        let m = |p: &str| mount_of_in(MOUNTINFO, Path::new(p)).unwrap();
        assert_eq!(m("/etc/passwd").mount_point, Path::new("/"));
        assert_eq!(m("/etc/passwd").propagation, Propagation::Private);
        assert_eq!(m("/tmp/x").propagation, Propagation::Shared);
        // /tmp/ab is not under /tmp/a.
        assert_eq!(m("/tmp/ab").mount_point, Path::new("/tmp"));
        // /tmp/a was mounted twice: the later, private one covers the slave.
        assert_eq!(m("/tmp/a/b").propagation, Propagation::Private);
        let spaced = m("/tmp/with space/f");
        assert_eq!(spaced.mount_point, Path::new("/tmp/with space"));
        assert_eq!(spaced.propagation, Propagation::Shared);
    }

    #[test]
    fn this_kernel_has_mount_setattr() {
        // The project's machines run Linux 6.x.
        assert!(has_mount_setattr());
    }

    #[test]
    fn host_devices_include_null_but_not_pts() {
        let devices = host_devices();
        let null = devices
            .iter()
            .find(|d| d.path == Path::new("/dev/null"))
            .expect("/dev/null");
        assert_eq!((null.block, null.major, null.minor), (false, 1, 3));
        assert!(!devices.iter().any(|d| d.path.starts_with("/dev/pts")));
    }
}

//! fsGroup: kubelet's SetVolumeOwnership (pkg/volume/volume_linux.go).
//! Every file and directory of a writable volume gets the group, group
//! read/write (read only for a read-only volume) and directories setgid, so
//! files the containers create keep the group. `OnRootMismatch` skips the
//! walk when the volume's root already has the group and the bits.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

fn mask(is_dir: bool, read_only: bool) -> u32 {
    let mut m = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        m |= SETGID | EXEC_MASK;
    }
    m
}

/// Whether the volume's root is already as `apply` would leave it.
fn root_matches(dir: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(m) = fs::metadata(dir) else {
        return false;
    };
    let want = mask(true, read_only);
    m.gid() == gid && m.permissions().mode() & want == want
}

/// Applies `gid` under `dir`; `policy` is fsGroupChangePolicy (None:
/// Always).
pub fn apply(dir: &Path, gid: u32, read_only: bool, policy: Option<&str>) -> io::Result<()> {
    if policy == Some("OnRootMismatch") && root_matches(dir, gid, read_only) {
        return Ok(());
    }
    walk(dir, gid, read_only)
}

fn walk(path: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    // Symlinks are left alone (the ..data links point inside the volume,
    // where their targets get the walk).
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    let mode = meta.permissions().mode() | mask(meta.is_dir(), read_only);
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))?;
    if meta.is_dir() {
        for e in fs::read_dir(path)? {
            walk(&e?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_bits_and_setgid_on_writable_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("f"), "").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        // Our own group: chown to it needs no privilege.
        let gid = fs::metadata(&root).unwrap().gid();
        apply(&root, gid, false, None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o2770);
        assert_eq!(mode(&root.join("f")), 0o660);
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::write(ro.join("f"), "").unwrap();
        fs::set_permissions(ro.join("f"), fs::Permissions::from_mode(0o400)).unwrap();
        apply(&ro, gid, true, None).unwrap();
        assert_eq!(mode(&ro.join("f")), 0o440);
    }

    #[test]
    fn on_root_mismatch_skips_a_matching_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let gid = fs::metadata(root).unwrap().gid();
        fs::set_permissions(root, fs::Permissions::from_mode(0o2770)).unwrap();
        fs::write(root.join("f"), "").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        apply(root, gid, false, Some("OnRootMismatch")).unwrap();
        let f = fs::metadata(root.join("f")).unwrap().permissions().mode() & 0o777;
        assert_eq!(f, 0o600, "the walk was skipped");
        apply(root, gid, false, Some("Always")).unwrap();
        let f = fs::metadata(root.join("f")).unwrap().permissions().mode() & 0o777;
        assert_eq!(f, 0o660);
    }
}

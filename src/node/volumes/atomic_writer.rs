//! kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go): a volume's
//! files are written into a fresh timestamped directory `..YYYY_MM_DD_...`,
//! then the `..data` symlink is swapped to it with one rename, so a reader
//! sees either the whole old payload or the whole new one. The files the
//! user sees are symlinks `<name> -> ..data/<name>` (their first path
//! component only, as kubelet makes them).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path -> contents.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path {0:?}: {1}")]
    InvalidPath(String, &'static str),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// validatePath: relative, no `..` element, not starting with `..`, at
/// most 4096 bytes, each element at most 255.
pub fn validate_path(p: &str) -> Result<(), WriteError> {
    let bad = |why| Err(WriteError::InvalidPath(p.to_string(), why));
    if p.is_empty() {
        return bad("must not be empty");
    }
    if p.len() > 4096 {
        return bad("must be less than or equal to 4096 characters");
    }
    if p.starts_with('/') {
        return bad("must be relative path");
    }
    if p.starts_with("..") {
        return bad("must not start with '..'");
    }
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) if s.len() > 255 => {
                return bad("each path element must be less than or equal to 255 characters");
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => return bad("must not contain '..'"),
        }
    }
    Ok(())
}

/// The first path element of each payload path: what gets a symlink.
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| {
            Path::new(p).components().find_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
        })
        .collect()
}

/// Whether the directory `..data` points at holds exactly `payload`.
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let Ok(target) = fs::read_link(dir.join(DATA_DIR)) else {
        return false;
    };
    let ts = dir.join(target);
    let mut found = BTreeSet::new();
    if walk_files(&ts, &ts, &mut found).is_err() {
        return false;
    }
    if found.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let path = ts.join(p);
        found.contains(Path::new(p))
            && fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == f.mode)
            && fs::read(&path).is_ok_and(|d| d == f.data)
    })
}

fn walk_files(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            walk_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_path_buf());
        }
    }
    Ok(())
}

/// A new `..YYYY_MM_DD_HH_MM_SS.<n>` directory under `dir`.
fn new_timestamp_dir(dir: &Path) -> Result<PathBuf, WriteError> {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S")
        .to_string();
    for n in 0..1000u32 {
        let suffix: u32 = rand_suffix().wrapping_add(n);
        let path = dir.join(format!("{now}.{suffix:09}"));
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &path)(e)),
        }
    }
    Err(WriteError::Io {
        what: "creating a timestamped dir in",
        path: dir.to_path_buf(),
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id()
}

/// Writes `payload` into `dir` atomically; false when it already held it.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let old = fs::read_link(dir.join(DATA_DIR)).ok();
    let ts = new_timestamp_dir(dir)?;
    for (p, f) in payload {
        let path = ts.join(p);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let mut file = fs::File::create(&path).map_err(io_err("creating", &path))?;
        file.write_all(&f.data).map_err(io_err("writing", &path))?;
        // Set explicitly: create() honours the umask.
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode))
            .map_err(io_err("chmod", &path))?;
    }
    let tmp = dir.join(DATA_DIR_TMP);
    let _ = fs::remove_file(&tmp);
    let ts_name = ts.file_name().map(PathBuf::from).unwrap_or_default();
    symlink(&ts_name, &tmp).map_err(io_err("linking", &tmp))?;
    let data = dir.join(DATA_DIR);
    fs::rename(&tmp, &data).map_err(io_err("renaming to", &data))?;

    let wanted = top_level(payload);
    for name in &wanted {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_err("linking", &link))?;
        }
    }
    // User-visible paths that are no longer in the payload.
    for e in fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let e = e.map_err(io_err("reading", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let path = e.path();
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    if let Some(old) = old
        && old != ts_name
    {
        let old = dir.join(old);
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn paths_that_escape_or_hide_are_refused() {
        for bad in ["", "/abs", "../x", "a/../../x", "..data", "a/..", "..x"] {
            assert!(validate_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b/c", "a.b", ".hidden", "a/.b"] {
            validate_path(good).unwrap();
        }
        assert!(validate_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn writes_files_as_symlinks_through_data() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Payload = [
            ("key".into(), file("v1", 0o644)),
            ("sub/dir/file".into(), file("nested", 0o400)),
        ]
        .into();
        assert!(write(dir.path(), &payload).unwrap());
        let link = fs::read_link(dir.path().join("key")).unwrap();
        assert_eq!(link, Path::new("..data/key"));
        assert_eq!(fs::read_to_string(dir.path().join("key")).unwrap(), "v1");
        assert_eq!(
            fs::read_to_string(dir.path().join("sub/dir/file")).unwrap(),
            "nested"
        );
        let mode = fs::metadata(dir.path().join("sub/dir/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
        let ts = fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        let ts = ts.to_string_lossy().into_owned();
        assert!(ts.starts_with("..20"), "{ts}");
        // The same payload again changes nothing.
        assert!(!write(dir.path(), &payload).unwrap());
        assert_eq!(
            fs::read_link(dir.path().join(DATA_DIR)).unwrap(),
            Path::new(&ts)
        );
    }

    #[test]
    fn an_update_swaps_data_and_removes_the_old_dir_and_gone_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first: Payload = [
            ("a".into(), file("1", 0o644)),
            ("b".into(), file("2", 0o644)),
        ]
        .into();
        write(dir.path(), &first).unwrap();
        let old = fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        let second: Payload = [("a".into(), file("changed", 0o644))].into();
        assert!(write(dir.path(), &second).unwrap());
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "changed");
        assert!(fs::symlink_metadata(dir.path().join("b")).is_err());
        assert!(!dir.path().join(&old).exists());
        // A mode change alone is an update too.
        let third: Payload = [("a".into(), file("changed", 0o600))].into();
        assert!(write(dir.path(), &third).unwrap());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_empty_payload_leaves_only_data() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &Payload::new()).unwrap();
        assert!(dir.path().join(DATA_DIR).is_dir());
    }
}

//! hostPath volumes: the host's path itself, after kubelet's `type` check
//! (pkg/volume/hostpath checkType): *OrCreate make what is missing, the
//! others refuse a path that is missing or of another kind.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("hostPath type check failed: {0}")]
pub struct TypeCheckError(pub String);

/// Checks (and for DirectoryOrCreate/FileOrCreate makes) `path` per `type_`
/// (None or "" is no check).
pub fn check_type(path: &Path, type_: Option<&str>) -> Result<(), TypeCheckError> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let ft = meta.as_ref().ok().map(|m| m.file_type());
    let not = |what: &str| Err(TypeCheckError(format!("{shown} is not {what}")));
    match type_.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => make_dir(path),
        "DirectoryOrCreate" | "Directory" => {
            if ft.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                not("a directory")
            }
        }
        "FileOrCreate" if meta.is_err() => make_file(path),
        "FileOrCreate" | "File" => {
            if ft.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                not("a file")
            }
        }
        "Socket" => {
            if ft.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                not("a socket file")
            }
        }
        "CharDevice" => {
            if ft.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                not("a character device")
            }
        }
        "BlockDevice" => {
            if ft.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                not("a block device")
            }
        }
        other => Err(TypeCheckError(format!(
            "{shown} is an invalid volume type {other:?}"
        ))),
    }
}

fn make_dir(path: &Path) -> Result<(), TypeCheckError> {
    let err = |e: io::Error| TypeCheckError(format!("creating {}: {e}", path.display()));
    fs::create_dir_all(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(err)
}

/// As kubelet's makeFile: the file only (its directory must exist), 0644.
fn make_file(path: &Path) -> Result<(), TypeCheckError> {
    let err = |e: io::Error| TypeCheckError(format!("creating {}: {e}", path.display()));
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_checks_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("file"), "").unwrap();
        let sock = d.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let missing = d.join("missing");

        check_type(d, Some("Directory")).unwrap();
        check_type(d, None).unwrap();
        check_type(&missing, Some("")).unwrap();
        check_type(&d.join("file"), Some("File")).unwrap();
        check_type(&sock, Some("Socket")).unwrap();
        check_type(Path::new("/dev/null"), Some("CharDevice")).unwrap();

        let e = check_type(&missing, Some("Directory")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                missing.display()
            )
        );
        assert!(check_type(&d.join("file"), Some("Directory")).is_err());
        assert!(check_type(d, Some("File")).is_err());
        assert!(check_type(&missing, Some("File")).is_err());
        assert!(check_type(&d.join("file"), Some("Socket")).is_err());
        assert!(check_type(&d.join("file"), Some("CharDevice")).is_err());
        assert!(check_type(Path::new("/dev/null"), Some("BlockDevice")).is_err());
        assert!(check_type(d, Some("Bogus")).is_err());
        // A directory where a file is wanted is refused even with OrCreate.
        assert!(check_type(d, Some("FileOrCreate")).is_err());
        assert!(check_type(&d.join("file"), Some("DirectoryOrCreate")).is_err());
    }

    #[test]
    fn or_create_makes_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let nd = dir.path().join("a/b");
        check_type(&nd, Some("DirectoryOrCreate")).unwrap();
        assert!(nd.is_dir());
        assert_eq!(
            fs::metadata(&nd).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let nf = dir.path().join("f");
        check_type(&nf, Some("FileOrCreate")).unwrap();
        assert!(nf.is_file());
        // FileOrCreate does not make the file's directory.
        assert!(check_type(&dir.path().join("x/f"), Some("FileOrCreate")).is_err());
    }
}

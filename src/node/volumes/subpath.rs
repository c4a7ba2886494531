//! subPath / subPathExpr: a path inside a volume, refused when it could
//! reach outside it (an absolute path, a `..` element, or a symlink that
//! resolves out of the volume), as kubelet's subpath checks do.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::node::podspec::expand;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubPathError {
    #[error("subPath {0:?} must be a relative path")]
    Absolute(String),
    #[error("subPath {0:?} must not contain '..'")]
    DotDot(String),
    #[error("subPath {0:?} resolves to {1:?}, outside the volume")]
    Escapes(String, PathBuf),
    #[error("subPath {0:?}: {1}")]
    Io(String, String),
}

/// kubelet's subPathExpr expansion: `$(VAR)` from the container's env.
pub fn expand_expr(expr: &str, env: &HashMap<String, String>) -> String {
    expand(expr, &|name| env.get(name).cloned())
}

/// The lexical checks alone (no file system).
pub fn check_lexical(sub: &str) -> Result<(), SubPathError> {
    if Path::new(sub).is_absolute() {
        return Err(SubPathError::Absolute(sub.into()));
    }
    if Path::new(sub)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(SubPathError::DotDot(sub.into()));
    }
    Ok(())
}

/// The host path of `sub` in the volume at `root`; a missing path is
/// created as a directory (as kubelet does), and the result is checked to
/// stay inside `root` once every symlink is resolved.
pub fn resolve(root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    check_lexical(sub)?;
    let io = |e: std::io::Error| SubPathError::Io(sub.into(), e.to_string());
    let root = root.canonicalize().map_err(io)?;
    let joined = root.join(sub);
    // A dangling symlink (or one pointing out) must not make us create
    // directories outside the volume: check the deepest existing ancestor
    // before creating anything.
    let mut existing = joined.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(&root);
    }
    let real = existing.canonicalize().map_err(io)?;
    if !real.starts_with(&root) {
        return Err(SubPathError::Escapes(sub.into(), real));
    }
    if std::fs::symlink_metadata(&joined).is_err() {
        std::fs::create_dir_all(&joined).map_err(io)?;
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&joined, perms).map_err(io)?;
    }
    let real = joined.canonicalize().map_err(io)?;
    if !real.starts_with(&root) {
        return Err(SubPathError::Escapes(sub.into(), real));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn relative_paths_inside_resolve_and_missing_ones_are_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(resolve(dir.path(), "file").unwrap(), root.join("file"));
        let made = resolve(dir.path(), "a/b").unwrap();
        assert!(made.is_dir());
        assert_eq!(resolve(dir.path(), "").unwrap(), root);
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("out")).unwrap();
        symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        symlink("inner", dir.path().join("ok")).unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        assert!(matches!(
            resolve(dir.path(), "../x"),
            Err(SubPathError::DotDot(_))
        ));
        assert!(matches!(
            resolve(dir.path(), "a/../../x"),
            Err(SubPathError::DotDot(_))
        ));
        assert!(matches!(
            resolve(dir.path(), "/etc"),
            Err(SubPathError::Absolute(_))
        ));
        assert!(matches!(
            resolve(dir.path(), "out"),
            Err(SubPathError::Escapes(..))
        ));
        assert!(matches!(
            resolve(dir.path(), "passwd"),
            Err(SubPathError::Escapes(..))
        ));
        // Nothing is created through a symlink that points out.
        assert!(matches!(
            resolve(dir.path(), "out/new/dir"),
            Err(SubPathError::Escapes(..))
        ));
        assert!(!outside.path().join("new").exists());
        // A symlink that stays inside is fine.
        resolve(dir.path(), "ok").unwrap();
    }

    #[test]
    fn sub_path_expr_expands_env() {
        let env: HashMap<String, String> = [("POD".to_string(), "p-1".to_string())].into();
        assert_eq!(expand_expr("logs/$(POD)", &env), "logs/p-1");
    }
}

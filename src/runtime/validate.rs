//! Checks on request fields that become host paths or lines of files the
//! runtime writes (resolv.conf, hosts, hostname, records): one place, so a
//! CRI client can neither step out of a directory nor add a line of its own.

use std::path::{Component, Path, PathBuf};

/// Why a field was refused; the caller turns it into InvalidArgument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: {why}")]
pub struct FieldError {
    field: String,
    value: String,
    why: &'static str,
}

fn refuse(field: &str, value: &str, why: &'static str) -> FieldError {
    FieldError {
        field: field.to_string(),
        value: value.to_string(),
        why,
    }
}

/// A path below some directory: relative, and no component leaves it
/// (`..`), so joining it to that directory stays inside.
pub fn path_within(field: &str, value: &str) -> Result<PathBuf, FieldError> {
    if value.contains('\0') {
        return Err(refuse(field, value, "contains NUL"));
    }
    let path = Path::new(value);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(field, value, "must be a relative path"));
            }
            Component::ParentDir => {
                return Err(refuse(field, value, "must not contain '..'"));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(refuse(field, value, "names no file"));
    }
    Ok(clean)
}

/// An absolute path with no `..`: what a directory handed to us (a log
/// directory) must be, so it cannot depend on our working directory or
/// climb out of where it claims to be.
pub fn absolute_path(field: &str, value: &str) -> Result<PathBuf, FieldError> {
    if value.contains('\0') {
        return Err(refuse(field, value, "contains NUL"));
    }
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err(refuse(field, value, "must be an absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse(field, value, "must not contain '..'"));
    }
    Ok(path.components().collect())
}

/// A single word of a configuration line (a DNS search domain or option):
/// not empty, no whitespace, no control character, no comment.
pub fn config_word(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(refuse(field, value, "is empty"));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == ';')
    {
        return Err(refuse(
            field,
            value,
            "must be one word without spaces, control characters, '#' or ';'",
        ));
    }
    Ok(())
}

/// A name kept in records and shown in messages: no control characters
/// (NUL, newlines) and no '/', which would split a path built from it.
pub fn plain_name(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().any(|c| c.is_control() || c == '/') {
        return Err(refuse(
            field,
            value,
            "must not contain '/' or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_within_a_directory_stay_inside() {
        assert_eq!(
            path_within("log_path", "c/0.log").unwrap(),
            PathBuf::from("c/0.log")
        );
        assert_eq!(
            path_within("log_path", "./c/./0.log").unwrap(),
            PathBuf::from("c/0.log")
        );
        for bad in [
            "/tmp/x/abs-escape.log",
            "../../../../../tmp/x/dotdot-escape.log",
            "c/../../x",
            "",
            ".",
            "a\0b",
        ] {
            assert!(path_within("log_path", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn directories_must_be_absolute_and_not_climb() {
        assert_eq!(
            absolute_path("log_directory", "/var/log/pods/ns_p_u/").unwrap(),
            PathBuf::from("/var/log/pods/ns_p_u")
        );
        for bad in ["../../etc", "relative/dir", "/var/log/../../etc", "/a\0"] {
            assert!(absolute_path("log_directory", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_words_cannot_add_lines() {
        assert!(config_word("search", "default.svc.cluster.local").is_ok());
        assert!(config_word("option", "ndots:5").is_ok());
        let err = config_word("search", "a.example\noptions ndots:99").unwrap_err();
        assert!(err.to_string().contains("one word"), "{err}");
        for bad in ["", "a b", "a\tb", "x#y", "x;y", "\u{7}"] {
            assert!(config_word("option", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_names_have_no_separators_or_controls() {
        assert!(plain_name("name", "web-0_x").is_ok());
        for bad in ["a/b", "a\0", "a\nb"] {
            assert!(plain_name("name", bad).is_err(), "{bad:?}");
        }
    }
}

/// The shortest id prefix a lookup accepts. crictl users type unique
/// prefixes (as with containerd), but an empty or one-letter "prefix" is a
/// guess that can act on the wrong object (issue 17).
pub const MIN_ID_PREFIX: usize = 4;

/// Whether `id` names `key`: the whole id, or a prefix of at least
/// [`MIN_ID_PREFIX`] characters.
pub fn id_matches(key: &str, id: &str) -> bool {
    key == id || (id.len() >= MIN_ID_PREFIX && key.starts_with(id))
}

#[cfg(test)]
mod id_prefix_tests {
    use super::*;

    #[test]
    fn short_prefixes_name_nothing() {
        let key = "0123456789abcdef";
        assert!(id_matches(key, key));
        assert!(id_matches(key, "0123"));
        assert!(!id_matches(key, ""));
        assert!(!id_matches(key, "012"));
        assert!(!id_matches(key, "0124"));
    }
}

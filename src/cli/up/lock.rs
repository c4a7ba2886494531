//! One `deckhand up` per data dir: an exclusive flock on `<D>/up.lock`
//! (released by the kernel when the process dies, so a crash leaves no
//! stale lock), and a format stamp so that an older binary refuses a data
//! dir a newer one wrote instead of misreading it.

use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

/// The data dir layout this binary writes. Bump when a newer layout would
/// be misread by this one.
pub const FORMAT: u32 = 1;

/// Held for the life of the process.
pub struct DataDirLock {
    _lock: Flock<std::fs::File>,
}

/// Takes the lock, or says who holds it and what to do.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            bail!(
                "another `deckhand up`{who} is running on data dir {}: stop it first, \
                 or give this one another --data-dir",
                dir.display()
            );
        }
        Err((_, errno)) => {
            return Err(errno).with_context(|| format!("locking {}", path.display()));
        }
    };
    // Who holds it, for the message above.
    let file: &mut std::fs::File = &mut lock;
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _lock: lock })
}

/// Refuses a data dir of a newer format; stamps a fresh one.
pub fn check_format(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("format");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: u32 = text.trim().parse().with_context(|| {
                format!(
                    "{} is not a deckhand data dir format number: remove the data dir \
                     or pass another --data-dir",
                    path.display()
                )
            })?;
            if found > FORMAT {
                bail!(
                    "data dir {} was written by a newer deckhand (format {found}, this one \
                     reads {FORMAT}): run the newer deckhand, or pass another --data-dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{FORMAT}\n"))
                .with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).err().expect("second lock refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("another `deckhand up`"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    }

    #[test]
    fn the_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        drop(lock(dir.path()).unwrap());
        lock(dir.path()).expect("relocked");
    }

    #[test]
    fn a_newer_format_is_refused_and_a_fresh_dir_stamped() {
        let dir = tempfile::tempdir().unwrap();
        check_format(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("format")).unwrap(),
            format!("{FORMAT}\n")
        );
        check_format(dir.path()).unwrap();
        std::fs::write(dir.path().join("format"), format!("{}", FORMAT + 1)).unwrap();
        let msg = format!("{:#}", check_format(dir.path()).unwrap_err());
        assert!(msg.contains("newer deckhand"), "{msg}");
    }
}

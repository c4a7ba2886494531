//! The CRI unix socket: created 0660, a stale file from a crash replaced, a
//! live server never stolen from, and the file removed when we stop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

pub struct SocketListener {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl SocketListener {
    pub fn incoming(&mut self) -> UnixListenerStream {
        UnixListenerStream::new(self.listener.take().expect("incoming() is called once"))
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `unix:///run/x.sock` or a plain path.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

pub fn bind(path: &Path) -> anyhow::Result<SocketListener> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // Someone answering means a live server: refuse rather than steal it.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running server", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(SocketListener {
        listener: Some(listener),
        path: path.to_path_buf(),
    })
}

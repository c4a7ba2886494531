//! Attach: the client joins the container's own stdio.
//!
//! A container's output does not pass through deckhand: the shim hands it
//! to deckhand-log-driver, which writes the CRI log file, so output keeps
//! flowing (and the container never blocks) while deckhand is down. Attach
//! therefore *follows that log file* from its current end, turning CRI log
//! lines back into stdout and stderr bytes. An interactive container
//! (stdin or tty) without a log path gets a log of ours, `console.log` in
//! its run dir, so there is always something to follow.
//!
//! Input goes the other way: a container created with `stdin` has a stdin
//! FIFO whose write end deckhand holds (opened at start); attach writes the
//! client's stdin into it. With `stdin_once` the first attach that closes
//! its stdin closes the container's too (deckhand drops its end and asks
//! the shim, which holds one too, to close it: CloseIO). The write end lives in deckhand, so a restart of deckhand
//! closes the stdin of such containers: the shim sees EOF.
//!
//! An attach session ends when the client's stdin ends (if it sent one), when
//! the client goes, or when the container exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use containerd_client::services::v1::CloseIoRequest;

use super::exec_session::Feeders;
use super::{Container, ContainerError, ContainerManager};
use crate::runtime::containerd::Containerd;
use crate::runtime::streaming::remotecommand::{Exit, Output, Session};

/// How often the log is looked at for new output.
const POLL: Duration = Duration::from_millis(50);

impl ContainerManager {
    /// Whether attach can serve `id`: a running container, with output to
    /// follow.
    pub fn check_attachable(&self, id: &str, _stdin: bool) -> Result<(), ContainerError> {
        self.check_running(id)?;
        let container = self.get(id)?;
        if container.output_log().is_none() {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} has no log path and no stdin or tty: there is no output to attach to",
                container.id
            )));
        }
        Ok(())
    }

    pub async fn attach_session(self: &Arc<Self>, id: &str, _tty: bool, mut session: Session) {
        let exit = match self.attach_streams(id, &mut session).await {
            Ok(()) => Exit::Code(0),
            Err(e) => Exit::Error(e.to_string()),
        };
        session.finish(exit).await;
    }

    async fn attach_streams(&self, id: &str, session: &mut Session) -> Result<(), ContainerError> {
        self.check_attachable(id, false)?;
        let container = self.get(id)?;
        let log = container
            .output_log()
            .ok_or_else(|| ContainerError::Failed("no output log".into()))?;
        let (stop_tx, stop) = watch::channel(false);
        // Where output starts for this client: the log's end now, before
        // any of its input can make the container answer.
        let start = open_at_end(&log).await;
        let follower = tokio::spawn(follow(
            log,
            start,
            session.stdout.clone(),
            session.stderr.clone(),
            container.stdio.tty,
            stop,
        ));
        let feeders = Feeders::start(
            &self.containerd,
            &container.id,
            "",
            None,
            session.resize.take().filter(|_| container.stdio.tty),
        );
        let stdin = session.stdin.take();
        let mut exited = container.exited.subscribe();
        let gone = session.gone();
        tokio::select! {
            _ = exited.wait_for(|e| *e) => {}
            _ = gone => {}
            _ = feed_stdin(&self.containerd, &container, stdin) => {}
        }
        drop(feeders);
        // Whatever is in the log by now still goes out.
        let _ = stop_tx.send(true);
        let _ = follower.await;
        Ok(())
    }
}

/// Copies the client's stdin into the container's; returns when it ends
/// (never, if the client sent none).
async fn feed_stdin(
    cd: &Containerd,
    container: &Container,
    stdin: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
) {
    let Some(mut rx) = stdin else {
        return std::future::pending().await;
    };
    while let Some(chunk) = rx.recv().await {
        let mut writer = container.stdin.lock().await;
        let Some(fifo) = writer.as_mut() else {
            // The container's stdin is closed (or it never had one).
            continue;
        };
        if fifo.write_all(&chunk).await.is_err() {
            writer.take();
        }
    }
    if container.stdio.stdin_once && container.stdin.lock().await.take().is_some() {
        // The shim holds a write end of its own: CloseIO drops it, and the
        // process reads EOF.
        let closed = cd
            .tasks()
            .close_io(cd.call(CloseIoRequest {
                container_id: container.id.clone(),
                exec_id: String::new(),
                stdin: true,
            }))
            .await;
        if let Err(status) = closed {
            tracing::debug!(id = %container.id, %status, "closing the container's stdin");
        }
    }
}

/// Follows a CRI log file from its current end, sending each entry's
/// content to stdout or stderr, until `stop` (then reads what is left).
async fn follow(
    path: PathBuf,
    start: Option<(tokio::fs::File, u64)>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    tty: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut file = start;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let stopping = *stop.borrow();
        let mut progressed = false;
        if let Some((f, _)) = file.as_mut() {
            match f.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    pending.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                _ => {}
            }
        }
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some((is_stderr, content)) = parse_entry(&line[..line.len() - 1]) {
                // With a terminal there is only stdout.
                let out = if is_stderr && !tty { &stderr } else { &stdout };
                if let Some(out) = out
                    && !out.write(&content).await
                {
                    return;
                }
            }
        }
        if progressed {
            continue;
        }
        if stopping {
            return;
        }
        // Rotated (ReopenContainerLog) or not there yet: start on the new file.
        if let Some(ino) = inode(&path).await
            && file.as_ref().map(|(_, i)| *i) != Some(ino)
        {
            file = tokio::fs::File::open(&path).await.ok().map(|f| (f, ino));
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    tokio::fs::metadata(path).await.ok().map(|m| m.ino())
}

async fn open_at_end(path: &Path) -> Option<(tokio::fs::File, u64)> {
    let mut f = tokio::fs::File::open(path).await.ok()?;
    f.seek(std::io::SeekFrom::End(0)).await.ok()?;
    let ino = inode(path).await?;
    Some((f, ino))
}

/// `<time> <stdout|stderr> <P|F> <content>`: the content (a full line gets
/// its newline back) and whether it came from stderr.
fn parse_entry(line: &[u8]) -> Option<(bool, Vec<u8>)> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let _time = fields.next()?;
    let stream = fields.next()?;
    let tag = fields.next()?;
    let content = fields.next().unwrap_or_default();
    let mut out = content.to_vec();
    if tag.first() != Some(&b'P') {
        out.push(b'\n');
    }
    Some((stream == b"stderr", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_become_output_again() {
        assert_eq!(
            parse_entry(b"2024-01-01T00:00:00.000000000Z stdout F hello"),
            Some((false, b"hello\n".to_vec()))
        );
        assert_eq!(
            parse_entry(b"2024-01-01T00:00:00.000000000Z stderr P par"),
            Some((true, b"par".to_vec()))
        );
        assert_eq!(
            parse_entry(b"2024-01-01T00:00:00.000000000Z stdout F "),
            Some((false, b"\n".to_vec()))
        );
        assert_eq!(parse_entry(b"garbage"), None);
    }
}

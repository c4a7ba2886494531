//! The stdio of a container that keeps its stdin open without a terminal.
//!
//! containerd's shim wires a process to a binary log driver only through
//! stdout and stderr: with `binary://` stdio it gives the process no stdin
//! at all (a terminal's console is the exception: its copier reads the
//! stdin FIFO whatever the output). So such a container gets plain FIFOs
//! (stdin, stdout, stderr in its run dir), which the shim copies, and
//! deckhand itself starts deckhand-log-driver on the output FIFOs' read
//! ends, exactly as the shim would (fds 3 and 4), in its own session: the
//! log keeps being written while deckhand is down or restarting.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::ContainerError;

pub(super) struct FifoOutput {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Write ends held until the shim has opened its own: until then a
    /// reader would see EOF. Dropped once the task has started (or failed).
    pub _hold: Vec<File>,
}

/// Makes the output FIFOs in `dir` and starts `driver` on them, writing
/// the CRI log `log` (ReopenContainerLog signals it through `pid_file`).
pub(super) fn start_log_driver(
    dir: &Path,
    driver: &Path,
    log: &Path,
    pid_file: &Path,
) -> Result<FifoOutput, ContainerError> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| ContainerError::failed(&what, e)
    };
    let mut readers = Vec::new();
    let mut hold = Vec::new();
    let mut paths = Vec::new();
    for name in ["stdout", "stderr"] {
        let path = dir.join(name);
        match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(ContainerError::failed("creating output FIFO", e)),
        }
        // Non-blocking only to open without a writer; the driver reads
        // blocking.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(fail("opening output FIFO"))?;
        let flags = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| ContainerError::failed("reading FIFO flags", e))?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(|e| ContainerError::failed("setting FIFO flags", e))?;
        hold.push(
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(fail("opening output FIFO"))?,
        );
        readers.push(reader);
        paths.push(path);
    }
    // fd 5 is the readiness pipe the shim passes: the driver closes it,
    // and must find it open (else its log file would take that number).
    let (_ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::failed("creating the log driver's pipe", e))?;
    let (out_fd, err_fd, ready_fd) = (
        readers[0].as_raw_fd(),
        readers[1].as_raw_fd(),
        ready_w.as_raw_fd(),
    );
    let mut command = tokio::process::Command::new(driver);
    command
        .arg("--path")
        .arg(log)
        .arg("--pid-file")
        .arg(pid_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
    // dup2, close_range, setsid). The fds are first copied above 10, so placing one on
    // 3 cannot clobber another; dup2 clears close-on-exec on fds 3, 4 and
    // 5, where the driver expects stdout, stderr and the readiness pipe.
    unsafe {
        command.pre_exec(move || {
            let out = libc::fcntl(out_fd, libc::F_DUPFD_CLOEXEC, 10);
            let err = libc::fcntl(err_fd, libc::F_DUPFD_CLOEXEC, 10);
            let ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
            if out < 0
                || err < 0
                || ready < 0
                || libc::dup2(out, 3) < 0
                || libc::dup2(err, 4) < 0
                || libc::dup2(ready, 5) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing else of ours: an fd deckhand inherited without
            // close-on-exec (a flock(1) lock, say) must not live on in a
            // process that outlives the container's start.
            libc::syscall(libc::SYS_close_range, 6u32, u32::MAX, 0u32);
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(fail("starting the log driver"))?;
    drop((readers, ready_w));
    // Reaped when it ends, with the container's output.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(FifoOutput {
        stdout: paths[0].clone(),
        stderr: paths[1].clone(),
        _hold: hold,
    })
}

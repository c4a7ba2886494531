//! `deckhand-log-driver`: containerd's binary log driver, run by the
//! container's shim (not by deckhand), so a container's output keeps flowing
//! into its CRI log file while deckhand itself is down or restarting.
//!
//! The shim starts it with the container's stdout on fd 3, stderr on fd 4 and
//! a readiness pipe on fd 5 (closed once we are ready), and passes the URI's
//! query as `--key value` pairs in no fixed order, hence plain flags and a
//! dispatch on argv[0] rather than a subcommand. SIGUSR1 reopens the log file
//! at once (after the kubelet rotated it: CRI ReopenContainerLog), so the new
//! file exists by the time the caller looks, even if the container is quiet.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;

use crate::runtime::log::{LineSplitter, Stream};

/// The name this binary answers to as a log driver.
pub const ARGV0: &str = "deckhand-log-driver";

#[derive(Debug, Parser)]
#[command(name = ARGV0)]
pub struct LogDriverArgs {
    /// The CRI log file to append to.
    #[arg(long)]
    pub path: PathBuf,
    /// Where to write our pid, so ReopenContainerLog can signal us.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A log file that reopens itself when asked.
struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    fn write_entry(&mut self, entry: &[u8]) -> std::io::Result<()> {
        self.file.write_all(entry)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = open_log(&self.path)?;
        Ok(())
    }
}

/// Reopens the log file on every SIGUSR1, which every other thread blocks.
fn reopen_on_signal(log: Arc<Mutex<LogFile>>, signals: nix::sys::signal::SigSet) {
    while let Ok(_signal) = signals.wait() {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = log.reopen() {
            // Keep writing to the old file rather than losing output.
            eprintln!("{ARGV0}: reopening {}: {e}", log.path.display());
        }
    }
}

/// Adapts the shared log file to `Write`, one entry per write_all call.
struct SharedWriter(Arc<Mutex<LogFile>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_entry(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn pump(input: OwnedFd, stream: Stream, log: Arc<Mutex<LogFile>>) -> std::io::Result<()> {
    let mut input = File::from(input);
    let mut splitter = LineSplitter::new(stream);
    let mut out = SharedWriter(log);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let now = std::time::SystemTime::now();
        splitter.feed(&buf[..n], now, &mut out)?;
        // What is read goes out now, an unfinished line as a partial (P)
        // entry, as conmon does: a prompt or `echo -n` output must reach
        // the log (and attach, which follows it) without waiting for a
        // newline that may never come.
        splitter.finish(now, &mut out)?;
    }
    splitter.finish(std::time::SystemTime::now(), &mut out)
}

/// Takes fd `n` if the shim gave it to us.
fn inherited_fd(n: i32) -> Option<OwnedFd> {
    nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(n) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .ok()
    // SAFETY: the fd is open (F_GETFD succeeded) and nothing else in this
    // process owns it: it was inherited from the shim for us alone.
    .map(|_| unsafe { OwnedFd::from_raw_fd(n) })
}

pub fn run(args: LogDriverArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // SIGUSR1 is taken by a thread of its own (sigwait); blocked before the
    // pid file tells anyone to send it, and in every thread spawned after.
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGUSR1);
    signals.thread_block().context("blocking SIGUSR1")?;
    let file = open_log(&args.path).with_context(|| format!("opening {}", args.path.display()))?;
    let log = Arc::new(Mutex::new(LogFile {
        path: args.path.clone(),
        file,
    }));
    {
        let log = log.clone();
        std::thread::spawn(move || reopen_on_signal(log, signals));
    }
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, std::process::id().to_string())
            .with_context(|| format!("writing {}", pid_file.display()))?;
    }
    let stdout = inherited_fd(3);
    let stderr = inherited_fd(4);
    // Ready: the shim waits for this pipe to close before starting the task.
    drop(inherited_fd(5));

    let pumps: Vec<_> = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)]
        .into_iter()
        .filter_map(|(fd, stream)| fd.map(|fd| (fd, stream)))
        .map(|(fd, stream)| {
            let log = log.clone();
            std::thread::spawn(move || pump(fd, stream, log))
        })
        .collect();
    for pump in pumps {
        pump.join()
            .map_err(|_| anyhow::anyhow!("log pump panicked"))?
            .context("copying container output")?;
    }
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

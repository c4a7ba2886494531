//! `deckhand-log-driver` as containerd's shim runs it: stdout on fd 3, stderr
//! on fd 4, a readiness pipe on fd 5; output lands in the CRI log format, and
//! SIGUSR1 reopens the file after a rotation.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous for a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// The driver, killed if the test fails before it exits.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits until `check` holds for the file at `path` (its text, or None
/// while it is absent), failing with `what` and the last text after WAIT.
fn wait_for_file(path: &Path, what: &str, check: impl Fn(Option<&str>) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).ok();
        if check(text.as_deref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; {} holds {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Close-on-exec pipes: only what dup2 puts on fds 3-5 reaches the driver
/// (a stray copy of a write end would keep its reads from ever ending).
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

#[test]
fn output_becomes_cri_log_lines_and_sigusr1_reopens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let driver = dir.path().join("deckhand-log-driver");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_deckhand"), &driver).unwrap();
    let log = dir.path().join("ctr/0.log");
    let pid_file = dir.path().join("driver.pid");

    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let (ready_r, ready_w) = pipe();
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut command = Command::new(&driver);
    // Flags in the order the shim happens to pick.
    command
        .args(["--pid-file"])
        .arg(&pid_file)
        .arg("--path")
        .arg(&log)
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; the closure runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Move the pipes out of the way first: one may already sit on
            // fd 3..5, where a plain dup2 would clobber it or keep CLOEXEC.
            let mut high = [0; 3];
            for (slot, fd) in high.iter_mut().zip(fds) {
                *slot = nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 100);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (target, fd) in [3, 4, 5].into_iter().zip(high) {
                if nix::libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = Driver(command.spawn().unwrap());
    drop((out_r, err_r, ready_w));

    // Ready means fd 5 closed: our read end sees EOF.
    let mut ready = std::fs::File::from(ready_r);
    let mut buf = Vec::new();
    ready.read_to_end(&mut buf).unwrap();

    let mut out = std::fs::File::from(out_w);
    let mut err = std::fs::File::from(err_w);
    out.write_all(b"hello\nwor").unwrap();
    err.write_all(b"oops\n").unwrap();
    out.write_all(b"ld\n").unwrap();
    // All three lines land before the rotation.
    wait_for_file(&log, "three lines in the log", |text| {
        text.is_some_and(|t| t.lines().count() == 3)
    });
    let rotated = dir.path().join("ctr/0.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    // The driver has reopened once the file is there again (it creates it
    // at once, before any output).
    wait_for_file(&log, "the log reopened after SIGUSR1", |text| {
        text.is_some()
    });
    out.write_all(b"after rotation\nunfinished").unwrap();
    drop((out, err));
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let first = std::fs::read_to_string(&rotated).unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    let entry = |line: &str| line.split_once(' ').unwrap().1.to_string();
    let mut entries: Vec<String> = lines.iter().map(|l| entry(l)).collect();
    entries.sort();
    assert_eq!(
        entries,
        ["stderr F oops", "stdout F hello", "stdout F world"]
    );
    // Timestamps are RFC 3339 with nanoseconds.
    let ts = lines[0].split(' ').next().unwrap();
    assert!(
        ts.ends_with('Z') && ts.contains('T') && ts.len() == 30,
        "{ts}"
    );

    let second = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<String> = second.lines().map(entry).collect();
    assert_eq!(entries, ["stdout F after rotation", "stdout P unfinished"]);
    assert!(!pid_file.exists(), "pid file removed on exit");
}

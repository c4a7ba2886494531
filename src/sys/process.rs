//! Processes by pidfd: a handle that cannot be confused with a recycled pid,
//! that can be signalled, and that becomes readable when the process exits
//! (so exit is awaited, never polled).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// An open pidfd.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    /// pidfd_open(2). Fails with ESRCH when no such process exists.
    pub fn open(pid: i32) -> std::io::Result<PidFd> {
        // SAFETY: a plain syscall with integer arguments; on success the
        // returned fd is ours alone.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly opened descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// pidfd_send_signal(2): signals exactly the process we opened. ESRCH
    /// (already exited) is success: the goal of a signal here is an exit.
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        // SAFETY: integer arguments and a null siginfo, as the man page allows.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// For readiness polling (tokio's AsyncFd): a pidfd is readable once the
/// process has exited.
impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reaps `pid` if it is our exited child. Children of a deckhand that died
/// and was restarted are no longer ours (ECHILD): init reaps those.
pub fn reap(pid: i32) {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::Error::EINTR) => continue,
            Ok(WaitStatus::StillAlive) | Ok(_) | Err(_) => return,
        }
    }
}

/// The process's start time in clock ticks since boot (field 22 of
/// /proc/<pid>/stat). With the pid it identifies a process across a deckhand
/// restart: a recycled pid has a different start time.
pub fn start_time(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unparsable /proc/{pid}/stat"),
        )
    })
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it are counted from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3; start time is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The process's state letter from /proc/<pid>/stat ('Z' for a zombie).
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// The process's parent pid (field 4 of /proc/<pid>/stat).
pub fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The process's command name (/proc/<pid>/comm).
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_start_time(stat), Some(123456));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_identified() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(t > 0);
        assert_eq!(start_time(me).unwrap(), t);
        assert!(state(me).is_some_and(|s| s != 'Z'));
        assert_eq!(parent(me), Some(nix::unistd::getppid().as_raw()));
        assert!(comm(me).is_some_and(|c| !c.is_empty()));
        let fd = PidFd::open(me).unwrap();
        assert_eq!(fd.pid(), me);
    }
}

/// Every descendant of `pid` (children first found, then theirs), from
/// /proc/<pid>/task/<tid>/children. A snapshot: processes may come and go.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if !found.contains(&child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod descendant_tests {
    use super::*;

    #[test]
    fn a_grandchild_is_a_descendant() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let found = descendants(pid);
            if !found.is_empty() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for p in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
    }
}

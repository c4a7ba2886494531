//! The infra process: deckhand re-executed as `deckhand sandbox-infra`. It
//! creates the pod's namespaces (unshare), sets the hostname, and then only
//! waits: reaping zombies, exiting on SIGTERM. It replaces the pause
//! container, so no image is needed.
//!
//! Handshake on its stdio: the parent writes one byte on stdin once it has
//! placed the process in the pod cgroup (so everything the infra forks is in
//! it too); the infra answers `ok` or `error: ...` on stdout.
//!
//! With a pod-wide PID namespace, the process that unshares is not inside the
//! new namespace, its first child is: the infra forks that child as PID 1 of
//! the pod and stays as its holder (forwarding a stop as SIGKILL, which takes
//! down the whole namespace). The child dies with the holder (PDEATHSIG).
//!
//! With a user namespace, it is made in the same unshare as the others, so
//! it owns them; the infra cannot map its own ids, so the parent writes the
//! maps once the infra has answered `ok` (nothing before needs them).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::sys::idmap::{self, IdMapping};
use crate::sys::ns::{self, NsKind};
use crate::sys::{cgroup, init, process};

/// What the infra process must set up (its command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InfraArgs {
    /// Namespaces to create: net, ipc, uts, pid, user.
    #[arg(long = "new", value_parser = parse_kind)]
    pub namespaces: Vec<NsKind>,
    /// Hostname to set (needs a new UTS namespace).
    #[arg(long)]
    pub hostname: Option<String>,
}

fn parse_kind(s: &str) -> Result<NsKind, String> {
    match s {
        "net" => Ok(NsKind::Net),
        "ipc" => Ok(NsKind::Ipc),
        "uts" => Ok(NsKind::Uts),
        "pid" => Ok(NsKind::Pid),
        "user" => Ok(NsKind::User),
        other => Err(format!("unknown namespace {other:?}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("starting the infra process: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("placing the infra process in its cgroup: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("infra process setup: {0}")]
    Setup(String),
    #[error("mapping the pod's user namespace: {0}")]
    UserNamespace(#[from] crate::sys::idmap::IdmapError),
}

/// A running infra process, identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InfraProcess {
    pub pid: i32,
    pub start_time: u64,
}

impl InfraProcess {
    /// Whether this very process still runs (not a zombie, not a recycled pid).
    pub fn alive(&self) -> bool {
        process::start_time(self.pid).is_ok_and(|t| t == self.start_time)
            && process::state(self.pid).is_some_and(|s| s != 'Z')
    }
}

/// How long the infra process may take to make its namespaces and answer:
/// one that hangs (a stuck kernel call) fails its sandbox instead of
/// holding the creation for ever.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until `fd` can be read (or is closed), for at most `timeout`.
fn wait_readable(fd: &impl std::os::fd::AsFd, timeout: std::time::Duration) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(
        &mut fds,
        PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the sandbox infra process did not answer within {timeout:?}"),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The uid and gid maps of a new user namespace.
pub type UserMaps<'a> = (&'a [IdMapping], &'a [IdMapping]);

/// Starts the infra process from `exe` (normally /proc/self/exe) and waits
/// for its namespaces to exist; with `maps`, writes its user namespace's
/// maps. Blocking: call from spawn_blocking.
pub fn spawn(
    exe: &Path,
    args: &InfraArgs,
    cgroup: Option<&str>,
    maps: Option<UserMaps<'_>>,
) -> Result<InfraProcess, InfraError> {
    let mut cmd = Command::new(exe);
    cmd.arg("sandbox-infra");
    for kind in &args.namespaces {
        cmd.args(["--new", kind.name()]);
    }
    if let Some(hostname) = &args.hostname {
        // `=` form: a value that starts with `-` stays a value.
        cmd.arg(format!("--hostname={hostname}"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(InfraError::Spawn)?;
    let pid = child.id() as i32;
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if let Some(cg) = cgroup
        && let Err(e) = cgroup::add_process(cg, pid as u32)
    {
        kill(&mut child);
        return Err(e.into());
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut answer = String::new();
    let handshake = stdin.write_all(b"g").and_then(|()| {
        drop(stdin);
        let stdout = child.stdout.take().expect("piped stdout");
        wait_readable(&stdout, HANDSHAKE_TIMEOUT)?;
        BufReader::new(stdout).read_line(&mut answer)
    });
    if let Err(e) = handshake {
        kill(&mut child);
        return Err(InfraError::Setup(e.to_string()));
    }
    if answer.trim() != "ok" {
        kill(&mut child);
        let answer = answer.trim().trim_start_matches("error: ");
        let answer = if answer.is_empty() {
            "exited without answering"
        } else {
            answer
        };
        return Err(InfraError::Setup(answer.to_string()));
    }
    if let Some((uids, gids)) = maps
        && let Err(e) = idmap::write_maps(pid, uids, gids)
    {
        kill(&mut child);
        return Err(e.into());
    }
    let start_time = match process::start_time(pid) {
        Ok(t) => t,
        Err(e) => {
            kill(&mut child);
            return Err(InfraError::Setup(e.to_string()));
        }
    };
    // The Child handle is dropped without waiting: the sandbox's pidfd watcher
    // reaps the process when it exits.
    Ok(InfraProcess { pid, start_time })
}

/// `deckhand sandbox-infra`: runs single-threaded, before any async runtime
/// exists (unshare and fork want a single-threaded process).
pub fn main(args: InfraArgs) -> ExitCode {
    init::close_inherited_fds();
    let mut go = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut go), Ok(1)) {
        // The parent gave up before the handshake.
        return ExitCode::FAILURE;
    }
    match setup(&args) {
        Ok(pid1) => {
            answer("ok");
            // After the handshake nobody listens: a dead deckhand's pipes
            // must not hurt us.
            init::detach_stdio();
            wait_loop(pid1)
        }
        Err(e) => {
            answer(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn answer(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Creates the namespaces; returns the pod's PID 1 when this process is its
/// holder, None when this process is itself the one to wait in.
fn setup(args: &InfraArgs) -> Result<Option<Pid>, String> {
    init::take_signals_synchronously().map_err(|e| format!("signals: {e}"))?;
    // Out of deckhand's session and process group: a terminal's ^C to
    // deckhand must not stop pods.
    init::new_session().map_err(|e| format!("setsid: {e}"))?;
    ns::unshare(&args.namespaces).map_err(|e| format!("unshare: {e}"))?;
    if let Some(hostname) = &args.hostname {
        if !args.namespaces.contains(&NsKind::Uts) {
            return Err("a hostname needs a new UTS namespace".into());
        }
        ns::set_hostname(hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    if !args.namespaces.contains(&NsKind::Pid) {
        return Ok(None);
    }
    // SAFETY: this process is single-threaded (no async runtime was built
    // for this subcommand).
    match unsafe { init::fork_bound_child() }.map_err(|e| format!("fork: {e}"))? {
        Some(pid1) => Ok(Some(pid1)),
        None => {
            // The pod's PID 1: it dies with the holder (PDEATHSIG).
            init::detach_stdio();
            std::process::exit(match wait_loop(None) {
                c if c == ExitCode::SUCCESS => 0,
                _ => 1,
            })
        }
    }
}

/// Waits for signals: reaps every exited child (this is an init), exits on
/// SIGTERM/SIGINT, and as a holder exits with the pod's PID 1.
fn wait_loop(pid1: Option<Pid>) -> ExitCode {
    loop {
        match init::wait_signal() {
            Ok(Signal::SIGCHLD) => {
                let reaped = init::reap_exited();
                if pid1.is_some_and(|p| reaped.contains(&p)) {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(_) => {
                if let Some(pid1) = pid1 {
                    // The namespace's init ignores what it has no handler for
                    // when sent from inside; from here SIGKILL always works and
                    // kills every process in the namespace with it.
                    init::kill_and_wait(pid1);
                }
                return ExitCode::SUCCESS;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_parse() {
        assert_eq!(parse_kind("net"), Ok(NsKind::Net));
        assert_eq!(parse_kind("pid"), Ok(NsKind::Pid));
        assert!(parse_kind("mnt").is_err());
    }

    #[test]
    fn infra_spawn_failures_are_errors() {
        // It may exit before or after our handshake byte: EOF or EPIPE.
        let err = spawn(Path::new("/bin/true"), &InfraArgs::default(), None, None).unwrap_err();
        assert!(matches!(err, InfraError::Setup(_)), "{err}");
        let err = spawn(
            Path::new("/nonexistent/deckhand"),
            &InfraArgs::default(),
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, InfraError::Spawn(_)), "{err}");
    }

    #[test]
    fn a_silent_pipe_times_out_and_an_answer_does_not() {
        let (read, write) = std::io::pipe().unwrap();
        let err = wait_readable(&read, std::time::Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        let mut write = write;
        write.write_all(b"ok\n").unwrap();
        wait_readable(&read, std::time::Duration::from_secs(5)).unwrap();
        drop(write);
    }
}

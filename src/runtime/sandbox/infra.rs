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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::sys::ns::NsKind;
use crate::sys::{cgroup, process};

/// What the infra process must set up (its command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InfraArgs {
    /// Namespaces to create: net, ipc, uts, pid.
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

/// Starts the infra process from `exe` (normally /proc/self/exe) and waits
/// for its namespaces to exist. Blocking: call from spawn_blocking.
pub fn spawn(
    exe: &Path,
    args: &InfraArgs,
    cgroup: Option<&str>,
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
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut answer)
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

extern "C" fn ignore(_: libc::c_int) {}

/// The signals the infra waits for. A PID-namespace init only receives
/// signals it has a handler for, hence the no-op handlers; they stay blocked
/// and are taken with sigwait.
fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set
}

fn prepare_signals() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in signals().iter() {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { nix::sys::signal::sigaction(sig, &action) }?;
    }
    signals().thread_block()
}

/// `deckhand sandbox-infra`: runs single-threaded, before any async runtime
/// exists (unshare and fork want a single-threaded process).
pub fn main(args: InfraArgs) -> ExitCode {
    let mut go = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut go), Ok(1)) {
        // The parent gave up before the handshake.
        return ExitCode::FAILURE;
    }
    match setup(&args) {
        Ok(pid1) => {
            answer("ok");
            detach_stdio();
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

/// After the handshake nobody listens: point stdio at /dev/null so a dead
/// deckhand's pipes cannot hurt us.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Creates the namespaces; returns the pod's PID 1 when this process is its
/// holder, None when this process is itself the one to wait in.
fn setup(args: &InfraArgs) -> Result<Option<Pid>, String> {
    prepare_signals().map_err(|e| format!("signals: {e}"))?;
    // Out of deckhand's session and process group: a terminal's ^C to
    // deckhand must not stop pods.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let mut flags = nix::sched::CloneFlags::empty();
    for kind in &args.namespaces {
        flags |= kind.clone_flag();
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if let Some(hostname) = &args.hostname {
        if !args.namespaces.contains(&NsKind::Uts) {
            return Err("a hostname needs a new UTS namespace".into());
        }
        nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    if !args.namespaces.contains(&NsKind::Pid) {
        return Ok(None);
    }
    // A pipe whose write end only the holder keeps: the child sees EOF on it
    // iff the holder is gone. (getppid() cannot tell: it is 0 inside the new
    // PID namespace, the parent being outside.)
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process is single-threaded (no async runtime was built
    // for this subcommand), so the child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            // Kept open (leaked on purpose) for the holder's lifetime.
            std::mem::forget(alive_w);
            Ok(Some(child))
        }
        ForkResult::Child => {
            drop(alive_w);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            // The holder may have died before PDEATHSIG was armed: then the
            // pipe reads EOF (0) instead of EAGAIN.
            if matches!(nix::unistd::read(&alive_r, &mut [0u8; 1]), Ok(0)) {
                std::process::exit(1);
            }
            drop(alive_r);
            detach_stdio();
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
    let set = signals();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match nix::sys::wait::waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(status) => {
                        if status.pid().is_some() && status.pid() == pid1 {
                            return ExitCode::SUCCESS;
                        }
                    }
                }
            },
            Ok(_) => {
                if let Some(pid1) = pid1 {
                    // The namespace's init ignores what it has no handler for
                    // when sent from inside; from here SIGKILL always works and
                    // kills every process in the namespace with it.
                    let _ = nix::sys::signal::kill(pid1, Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(pid1, None);
                }
                return ExitCode::SUCCESS;
            }
            Err(_) => {}
        }
    }
}

//! What a minimal init needs: signals taken synchronously, reaping exited
//! children, a new session, and forking a child that dies with its parent.
//! Only for a single-threaded process (the sandbox infra).

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// The signals an init waits for.
fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set
}

extern "C" fn ignore(_: libc::c_int) {}

/// Installs no-op handlers for SIGTERM/SIGINT/SIGCHLD and blocks them, to be
/// taken with [`wait_signal`]. The handlers matter: a PID-namespace init only
/// receives signals it has a handler for.
pub fn take_signals_synchronously() -> nix::Result<()> {
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

/// Closes every descriptor above stdio that this process inherited. An init
/// lives as long as its pod: an fd it inherited by accident (a lock file
/// that `flock(1)` handed to deckhand, say) would stay held as long.
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing in this process
    // uses one above stdio yet.
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
}

/// The next of the signals set up by [`take_signals_synchronously`].
pub fn wait_signal() -> nix::Result<Signal> {
    signals().wait()
}

/// Reaps every exited child; returns their pids.
pub fn reap_exited() -> Vec<Pid> {
    let mut reaped = vec![];
    loop {
        match nix::sys::wait::waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => reaped.extend(status.pid()),
        }
    }
}

/// SIGKILL to `pid`, then wait for it.
pub fn kill_and_wait(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// A new session (and process group): a terminal's ^C to the parent must not
/// reach us.
pub fn new_session() -> nix::Result<()> {
    nix::unistd::setsid().map(|_| ())
}

/// Points stdin and stdout at /dev/null (nobody reads them any more).
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Forks a child that is SIGKILLed when this process dies. Returns the
/// child's pid in the parent, None in the child.
///
/// # Safety
/// The calling process must be single-threaded (the child runs arbitrary
/// code after fork).
pub unsafe fn fork_bound_child() -> nix::Result<Option<Pid>> {
    // A pipe whose write end only the parent keeps: the child reads EOF on
    // it iff the parent is gone. (getppid() cannot tell when the child is in
    // a new PID namespace: it reads 0 there, the parent being outside.)
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // SAFETY: single-threaded per this function's contract.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            // Kept open (leaked on purpose) for the parent's lifetime.
            std::mem::forget(alive_w);
            Ok(Some(child))
        }
        ForkResult::Child => {
            drop(alive_w);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            // The parent may have died before PDEATHSIG was armed: then the
            // pipe reads EOF (0) instead of EAGAIN.
            if matches!(nix::unistd::read(&alive_r, &mut [0u8; 1]), Ok(0)) {
                std::process::exit(1);
            }
            Ok(None)
        }
    }
}

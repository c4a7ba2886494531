//! Teardown that holds when a test fails, and the sweep of what an earlier,
//! crashed run of the same test binary left behind.
//!
//! Everything the harness makes carries the test binary's name and our pid:
//! temp dirs `/tmp/deckhand-<binary>-<pid>-*` (the servers' run and state
//! dirs, so their mounts and processes point into them), containerd
//! namespaces `deckhand-test-<binary>-<pid>-*`, cgroup parents
//! `deckhand-<prefix>-test-<pid>-*`. A panicking test unwinds through the
//! harness's `Drop`s, which tear down with these; a test binary killed
//! outright leaves them for [`sweep_earlier_runs`], which the harness runs
//! before its first server or pod. Names whose pid is alive are left alone:
//! they belong to a run still going.
//!
//! A leftover that teardown could not remove fails the test ([`leftover`]),
//! unless the test is already failing: a panic while unwinding would abort
//! the whole binary and skip every other test's cleanup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use super::CONTAINERD_SOCKET;

/// This test binary's name (`streaming`, `containers`, ...).
pub const BINARY: &str = env!("CARGO_CRATE_NAME");

/// How long teardown waits for processes to go and namespaces to empty.
const TEARDOWN_WAIT: Duration = Duration::from_secs(30);

/// Fails the test with `what`, or, when it is already failing, says it.
pub fn leftover(what: &str) {
    if std::thread::panicking() {
        eprintln!("cleanup after a failed test: {what}");
    } else {
        panic!("{what}");
    }
}

/// The prefix of this run's temp dirs: `deckhand-<binary>-<pid>-`.
pub fn temp_prefix() -> String {
    format!("deckhand-{BINARY}-{}-", std::process::id())
}

/// A temp dir named after this run, so a later run can find what it held.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempdir()
        .expect("creating a temp dir")
}

/// The prefix of this run's containerd namespaces.
pub fn namespace_prefix() -> String {
    format!("deckhand-test-{BINARY}-{}-", std::process::id())
}

/// A containerd namespace of this run, `deckhand-test-<binary>-<pid>-<name>`.
pub fn test_namespace(name: &str) -> String {
    format!("{}{name}", namespace_prefix())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in `rest` (`<pid>-...`), if it parses.
fn leading_pid(rest: &str) -> Option<u32> {
    rest.split('-').next()?.parse().ok()
}

/// Marks the file descriptors this test binary inherited (beyond stdio)
/// close-on-exec, so no process it starts holds them. `flock LOCK cargo
/// test` hands the shared integration lock down as one: a server that
/// outlived a crashed test binary would keep it, and every other run on
/// the machine would wait for it forever.
pub fn keep_inherited_fds_from_children() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: F_SETFD on a number from /proc/self/fd; one that was
            // closed meanwhile (read_dir's own) just fails with EBADF.
            unsafe {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                if flags >= 0 {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, flags | nix::libc::FD_CLOEXEC);
                }
            }
        }
    });
}

/// Removes what crashed earlier runs of this binary left: their servers and
/// log drivers, containerd namespaces (with tasks, shims and snapshots),
/// mounts and temp dirs; and, for a pod `prefix`, cgroups and bridges.
pub fn sweep_earlier_runs(pod_prefix: Option<&str>) {
    static GLOBAL: Once = Once::new();
    static PREFIXES: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    keep_inherited_fds_from_children();
    GLOBAL.call_once(sweep_processes_namespaces_and_dirs);
    if let Some(prefix) = pod_prefix {
        let mut done = PREFIXES.lock().unwrap_or_else(|e| e.into_inner());
        if done
            .get_or_insert_with(HashSet::new)
            .insert(prefix.to_string())
        {
            sweep_pods(prefix);
        }
    }
}

fn sweep_processes_namespaces_and_dirs() {
    let ours = std::process::id();
    let dead = |rest: &str| leading_pid(rest).is_some_and(|pid| pid != ours && !alive(pid));
    let temp = std::env::temp_dir();
    let dir_prefix = format!("deckhand-{BINARY}-");
    let stale_dirs: Vec<PathBuf> = std::fs::read_dir(&temp)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&dir_prefix))
                .is_some_and(dead)
        })
        .map(|e| e.path())
        .collect();
    // Servers and log drivers of a dead run name its temp dirs on their
    // command lines (--state-dir, --path).
    for dir in &stale_dirs {
        kill_processes_mentioning(&dir.to_string_lossy());
    }
    let ns_prefix = format!("deckhand-test-{BINARY}-");
    for ns in namespaces() {
        if ns.strip_prefix(&ns_prefix).is_some_and(dead) {
            // Tasks first (their shims exit), then whatever still names the
            // namespace: the dead run's server, a stray shim.
            let shims = processes_mentioning(&ns);
            let purged = purge_namespace(&ns);
            kill_processes_mentioning(&ns);
            if let Err(e) = purged.or_else(|_| purge_namespace(&ns)) {
                eprintln!("sweep: namespace {ns} of an earlier run not removed: {e}");
            }
            let left = wait_gone(&shims);
            if !left.is_empty() {
                eprintln!("sweep: shims of {ns} of an earlier run left: {left:?}");
            }
        }
    }
    for dir in &stale_dirs {
        unmount_under(dir);
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!(
                "sweep: {} of an earlier run not removed: {e}",
                dir.display()
            );
        }
    }
}

/// Cgroup parents `deckhand-<prefix>-test-<pid>-<index>` and bridges
/// `<prefix><pid % 10000>x<index>` of earlier runs. A bridge's name keeps
/// only part of the pid: any of this prefix but ours is an earlier run's
/// unless another run of this binary is alive, in which case bridges are
/// left alone.
fn sweep_pods(prefix: &str) {
    let ours = std::process::id();
    let cgroup_prefix = format!("deckhand-{prefix}-test-");
    let mut parents = HashSet::new();
    for root in cgroup_roots() {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix(&cgroup_prefix)
                .and_then(leading_pid)
                .is_some_and(|pid| pid != ours && !alive(pid))
            {
                parents.insert(name);
            }
        }
    }
    for parent in parents {
        if let Err(e) = remove_cgroup_tree(&parent) {
            eprintln!("sweep: cgroup {parent} of an earlier run not removed: {e}");
        }
    }
    if other_run_alive() {
        return;
    }
    let our_bridge = format!("{prefix}{}x", ours % 10000);
    for link in bridges() {
        let Some(rest) = link.strip_prefix(prefix) else {
            continue;
        };
        let shaped = rest
            .split_once('x')
            .is_some_and(|(p, i)| p.parse::<u32>().is_ok() && i.parse::<u8>().is_ok());
        if shaped && !link.starts_with(&our_bridge) {
            remove_bridge(&link);
        }
    }
}

/// Whether another process runs this test binary (any build of it: the
/// executable is `<binary>-<hash>`).
fn other_run_alive() -> bool {
    let ours = std::process::id();
    let name = format!("{BINARY}-");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) != Some(ours))
        .filter_map(|e| std::fs::read_link(e.path().join("exe")).ok())
        .any(|exe| {
            exe.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&name))
        })
}

/// SIGKILLs every process with `needle` (a name or a dir) as an argument,
/// or a path under it: a namespace's shims, a dir's server and log drivers.
pub fn kill_processes_mentioning(needle: &str) {
    for pid in processes_mentioning(needle) {
        kill(pid);
    }
}

/// The processes (but us) with `needle` as an argument, or a path under it
/// (a whole argument: namespace `x-1` is not `x-10`).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let ours = std::process::id();
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == ours {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let prefix = format!("{needle}/");
        if cmdline.split(|b| *b == 0).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            arg == needle || arg.starts_with(&prefix)
        }) {
            found.push(pid);
        }
    }
    found
}

/// Waits until `pids` have exited and been reaped by their parents (a
/// shim outlives its task for a moment, and its zombie a little longer),
/// killing them halfway through the wait; returns those still there.
pub fn wait_gone(pids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + TEARDOWN_WAIT;
    let mut killed = false;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        if !killed && Instant::now() + TEARDOWN_WAIT / 2 > deadline {
            left.iter().for_each(|p| kill(*p));
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits a little for exited shims to be reaped: one whose task the test
/// removed itself is a zombie by teardown, no longer named by its command
/// line; the init that adopted it reaps it in its own time. Not a failure
/// if it has not yet: the process is gone, only its entry is left.
pub fn wait_for_shim_zombies() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let zombie_shims = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("stat"))
                    .is_ok_and(|stat| stat.contains("(containerd-shim") && stat.contains(") Z "))
            })
            .count()
    };
    while zombie_shims() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// containerd's namespaces.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ctr")
        .args(["--address", CONTAINERD_SOCKET, "namespaces", "ls", "-q"])
        .output()
        .expect("running ctr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes a containerd namespace and everything in it: tasks (killed, so
/// their shims and log drivers exit), containers, images, snapshots,
/// leases, ingests. A pull that was cut off may hold a lease or an ingest
/// for a moment, so this retries for a while.
pub fn purge_namespace(namespace: &str) -> Result<(), String> {
    let ctr = |args: &[&str]| super::ctr(namespace, args);
    let deadline = Instant::now() + TEARDOWN_WAIT;
    loop {
        for task in ctr(&["tasks", "ls", "-q"]).lines() {
            ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", task]);
            ctr(&["tasks", "rm", "-f", task]);
        }
        for container in ctr(&["containers", "ls", "-q"]).lines() {
            ctr(&["containers", "rm", container]);
        }
        let names = ctr(&["images", "ls", "-q"]);
        let names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
        if !names.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(names);
            ctr(&args);
        }
        for lease in ctr(&["leases", "ls", "-q"]).lines() {
            ctr(&["leases", "rm", "--sync", lease]);
        }
        for ingest in ctr(&["content", "active"]).lines().skip(1) {
            if let Some(r) = ingest.split_whitespace().next() {
                ctr(&["content", "rm", r]);
            }
        }
        // Children before parents: a committed layer's snapshot is the
        // parent of the next one.
        for snapshot in ctr(&["snapshots", "ls"])
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            if let Some(key) = snapshot.split_whitespace().next() {
                ctr(&["snapshots", "rm", key]);
            }
        }
        let out = Command::new("ctr")
            .args([
                "--address",
                CONTAINERD_SOCKET,
                "namespaces",
                "rm",
                namespace,
            ])
            .output()
            .expect("running ctr");
        if out.status.success() || !namespaces().iter().any(|n| n == namespace) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes a containerd namespace on drop (see [`super::remove_namespace`]),
/// for a test that makes one without a [`super::CriServer`].
pub struct NamespaceGuard(pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        if namespaces().contains(&self.0) {
            super::remove_namespace(&self.0);
        }
    }
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        // /proc/mounts escapes spaces and such as octal; our dirs have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything under `dir` (namespace pins, and whatever
/// else a server mounted there).
pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Every cgroup hierarchy's root: each v1 controller, the hybrid host's
/// unified tree, or the v2 root itself.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    let mut roots: Vec<PathBuf> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    // A nested test host puts memory cgroups under /process_api/<id>.
    for nested in std::fs::read_dir(base.join("memory/process_api"))
        .into_iter()
        .flatten()
        .flatten()
    {
        roots.push(nested.path());
    }
    roots
}

/// The directories of cgroup `relative` (under every hierarchy) and of its
/// descendants, deepest first.
pub fn cgroup_tree(relative: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
        out.push(dir.to_path_buf());
    }
    let relative = relative.trim_start_matches('/');
    let mut out = vec![];
    for root in cgroup_roots() {
        let top = root.join(relative);
        if top.is_dir() {
            walk(&top, &mut out);
        }
    }
    out
}

/// Kills every process in cgroup `relative` and below (a sandbox's infra
/// process, a container's), waits for them to go, and removes the cgroups.
pub fn remove_cgroup_tree(relative: &str) -> Result<(), String> {
    let deadline = Instant::now() + TEARDOWN_WAIT;
    loop {
        let mut busy = vec![];
        for dir in cgroup_tree(relative) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.parse::<u32>().ok()) {
                kill(pid);
                busy.push(pid);
            }
            if procs.trim().is_empty() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        let left = cgroup_tree(relative);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "cgroups left: {left:?}, processes in them: {busy:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bridges on this host.
fn bridges() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .expect("running ip");
    link_names(&String::from_utf8_lossy(&out.stdout))
}

/// Names in `ip -o link` output (`3: name@peer: <...`).
fn link_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes a bridge and the veths still plugged into it (a pod's netns
/// that outlived its pod would keep its veth pair).
pub fn remove_bridge(bridge: &str) {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .stderr(Stdio::null())
        .output()
        .expect("running ip");
    for veth in link_names(&String::from_utf8_lossy(&out.stdout)) {
        let _ = Command::new("ip")
            .args(["link", "del", &veth])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new("ip")
        .args(["link", "del", bridge])
        .stderr(Stdio::null())
        .status();
}

/// The kubectl arguments that delete every pod matching a field `selector`
/// (`spec.nodeName=<node>`) with a 1 s grace and wait (a minute at most) for
/// the node to confirm it: how a test node's drop empties it.
pub fn delete_pods_args(selector: &str) -> [&str; 8] {
    [
        "delete",
        "pods",
        "-A",
        "--field-selector",
        selector,
        "--grace-period=1",
        "--timeout=60s",
        "--wait=true",
    ]
}

/// Removes the pod log dirs under /var/log/pods whose name starts with
/// `prefix` (`<namespace>_<pod name prefix>`).
pub fn remove_pod_log_dirs(prefix: &str) {
    for entry in std::fs::read_dir("/var/log/pods")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

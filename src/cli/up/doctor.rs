//! Preflight checks for `deckhand up`: each one says what it found and,
//! when it fails, what to do. `up` stops at the first failure with that
//! line; `up --check` (and `deckhand doctor`) prints them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    /// What was found (pass) or what is wrong (fail).
    pub detail: String,
    /// What to do, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn ok(&self) -> bool {
        self.fix.is_none()
    }
    /// `ok   name: detail` or `FAIL name: detail: fix`.
    pub fn line(&self) -> String {
        match &self.fix {
            None => format!("ok   {}: {}", self.name, self.detail),
            Some(fix) => format!("FAIL {}: {}: {fix}", self.name, self.detail),
        }
    }
    /// The one-line error `up` exits with.
    pub fn error(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {}",
            self.detail,
            self.fix.as_deref().unwrap_or("(no fix needed)")
        )
    }
}

/// What the checks look at.
pub struct Inputs<'a> {
    pub listen: SocketAddr,
    pub containerd_socket: &'a Path,
    /// The default network's plugins are looked for here (a machine's
    /// own network may need others; those are its installer's business).
    pub cni_bin_dirs: &'a [PathBuf],
    pub cgroup_root: &'a str,
}

/// The plugins the default network (and most bridge configs) needs.
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// The controllers pods' limits need.
pub const CGROUP_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

pub fn run_all(inputs: &Inputs<'_>, containerd_answers: bool) -> Vec<Check> {
    vec![
        root(),
        port(inputs.listen),
        containerd(inputs.containerd_socket, containerd_answers),
        runc(),
        cni_plugins(inputs.cni_bin_dirs),
        cgroups(inputs.cgroup_root),
    ]
}

pub fn root() -> Check {
    if nix::unistd::geteuid().is_root() {
        Check::pass("root", "running as root")
    } else {
        Check::fail(
            "root",
            "not running as root (pods need namespaces, cgroups and mounts)",
            "run it with sudo",
        )
    }
}

pub fn port(listen: SocketAddr) -> Check {
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Check::pass("port", format!("{listen} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::fail(
            "port",
            format!("{listen} is in use (another apiserver or `deckhand up`?)"),
            format!(
                "stop what listens there (ss -ltnp 'sport = :{}'), or pass --listen 127.0.0.1:<another port>",
                listen.port()
            ),
        ),
        Err(e) => Check::fail(
            "port",
            format!("cannot listen on {listen}: {e}"),
            "pass --listen with an address of this machine",
        ),
    }
}

/// A program on PATH (or in the sbin dirs a user's PATH may lack). Only
/// those: PATH decides, so a PATH without the program means "not
/// installed" as a shell would say.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn containerd(socket: &Path, answers: bool) -> Check {
    if answers {
        return Check::pass("containerd", format!("answering on {}", socket.display()));
    }
    match find_program("containerd") {
        Some(bin) => Check::pass(
            "containerd",
            format!(
                "nothing answers on {}: `up` starts {} itself",
                socket.display(),
                bin.display()
            ),
        ),
        None => Check::fail(
            "containerd",
            format!(
                "no containerd answers on {} and no containerd binary is installed",
                socket.display()
            ),
            "install it (sudo apt-get install containerd, or sudo hack/install-deps), or pass --containerd SOCKET of a running one",
        ),
    }
}

pub fn runc() -> Check {
    match find_program("runc") {
        Some(bin) => Check::pass("runc", bin.display().to_string()),
        None => Check::fail(
            "runc",
            "runc is not installed (containerd's shim runs containers with it)",
            "sudo apt-get install runc",
        ),
    }
}

pub fn cni_plugins(dirs: &[PathBuf]) -> Check {
    let missing: Vec<&str> = CNI_PLUGINS
        .iter()
        .copied()
        .filter(|p| !dirs.iter().any(|d| is_executable(&d.join(p))))
        .collect();
    let where_ = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    if missing.is_empty() {
        Check::pass(
            "cni plugins",
            format!("{} in {where_}", CNI_PLUGINS.join(", ")),
        )
    } else {
        Check::fail(
            "cni plugins",
            format!("CNI plugins {} not found in {where_}", missing.join(", ")),
            "sudo apt-get install containernetworking-plugins, or pass --cni-bin-dir DIR",
        )
    }
}

pub fn cgroups(cgroup_root: &str) -> Check {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let have = controllers(&mountinfo, |p| std::fs::read_to_string(p).ok());
    cgroups_with(&have, cgroup_root)
}

/// The check against the controllers `have` offers.
fn cgroups_with(have: &[String], cgroup_root: &str) -> Check {
    let missing: Vec<&str> = CGROUP_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !have.iter().any(|h| h == c))
        .collect();
    if missing.is_empty() {
        Check::pass(
            "cgroups",
            format!(
                "{} available (pods under {cgroup_root})",
                CGROUP_CONTROLLERS.join(", ")
            ),
        )
    } else {
        Check::fail(
            "cgroups",
            format!("cgroup controller(s) {} not available", missing.join(", ")),
            "enable them (cgroup v2: add them to /sys/fs/cgroup/cgroup.subtree_control; \
             v1: mount their hierarchy; or boot with cgroup_enable=memory)",
        )
    }
}

/// The controllers the host's cgroups offer: v2's root `cgroup.controllers`
/// when /sys/fs/cgroup is cgroup2, else every v1 hierarchy's options.
fn controllers(mountinfo: &str, read: impl Fn(&Path) -> Option<String>) -> Vec<String> {
    let mut out = vec![];
    for line in mountinfo.lines() {
        // `... mountpoint options ... - fstype source superoptions`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split_whitespace().nth(4).unwrap_or("");
        let mut right = right.split_whitespace();
        let fstype = right.next().unwrap_or("");
        let superopts = right.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" if point == "/sys/fs/cgroup" => {
                let text = read(&Path::new(point).join("cgroup.controllers")).unwrap_or_default();
                out.extend(text.split_whitespace().map(String::from));
            }
            "cgroup" => out.extend(superopts.split(',').map(String::from)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_and_the_v2_root_both_list_their_controllers() {
        let v1 = "35 26 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  36 26 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let c = controllers(v1, |_| None);
        assert!(c.iter().any(|c| c == "memory") && c.iter().any(|c| c == "cpu"));
        assert!(!c.iter().any(|c| c == "pids"));
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        let c = controllers(v2, |p| {
            assert_eq!(p, Path::new("/sys/fs/cgroup/cgroup.controllers"));
            Some("cpuset cpu io memory pids\n".into())
        });
        assert_eq!(c, ["cpuset", "cpu", "io", "memory", "pids"]);
    }

    #[test]
    fn a_missing_cgroup_controller_is_named_in_one_line_with_the_fix() {
        let have: Vec<String> = ["cpuset", "cpu", "io", "memory"].map(String::from).into();
        let c = cgroups_with(&have, "/");
        assert!(!c.ok());
        let error = format!("{:#}", c.error());
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(
            error.contains("controller(s) pids not available"),
            "{error}"
        );
        assert!(error.contains("cgroup.subtree_control"), "{error}");
        let all: Vec<String> = ["cpu", "memory", "pids"].map(String::from).into();
        assert!(cgroups_with(&all, "/").ok());
    }

    #[test]
    fn a_missing_plugin_is_named_with_the_package_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let c = cni_plugins(&[dir.path().to_path_buf()]);
        assert!(!c.ok());
        let line = c.line();
        assert!(
            line.contains("bridge") && line.contains("containernetworking-plugins"),
            "{line}"
        );
    }

    #[test]
    fn a_port_in_use_fails_with_what_to_do() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = port(held.local_addr().unwrap());
        assert!(!c.ok());
        assert!(c.line().contains("--listen"), "{}", c.line());
        assert!(format!("{}", c.error()).contains("in use"));
    }
}

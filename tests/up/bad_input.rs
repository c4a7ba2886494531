//! The bad input `deckhand up` must refuse: each a one-line error that says
//! what to do, a non-zero exit, and nothing started or rewritten in the
//! data dir. (A second `up` on a running data dir is in the quickstart; a
//! missing cgroup controller cannot be made here without harming the host,
//! so its check is unit-tested in src/cli/up/doctor.rs.)

use std::path::Path;
use std::process::{Command, Stdio};

use super::BIN;
use super::common::{self, cleanup};

/// What one `deckhand up` run gave: success, stdout, stderr.
struct Ran {
    ok: bool,
    out: String,
    err: String,
}

/// `deckhand up` on `data` with `extra` flags (and `path` as PATH, if given).
fn run_up(data: &Path, extra: &[&str], path: Option<&Path>) -> Ran {
    let mut cmd = Command::new(BIN);
    cmd.arg("up")
        .arg(format!("--data-dir={}", data.display()))
        .arg("--node-name=up11-bad")
        .arg("--cri-listen=none")
        .args(extra)
        .stdin(Stdio::null());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    Ran {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Fails unless `ran` failed with exactly one line on stderr holding
/// every one of `says`.
fn refused(ran: &Ran, says: &[&str]) {
    assert!(!ran.ok, "up ran: {}{}", ran.out, ran.err);
    assert_eq!(ran.err.trim().lines().count(), 1, "one line: {}", ran.err);
    for s in says {
        assert!(ran.err.contains(s), "{s:?} in {}", ran.err);
    }
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Nothing was started: only the lock and the format stamp (written
/// before the checks) are in the data dir.
fn nothing_started(data: &Path) {
    assert_eq!(
        entries(data),
        ["format", "up.lock"],
        "in {}",
        data.display()
    );
}

fn free_listen() -> String {
    format!("--listen=127.0.0.1:{}", common::stock::free_ports(1))
}

/// A port in use and missing CNI plugins are one-line errors saying what
/// to do; `--check` lists every check.
#[test]
fn bad_input_is_refused_in_one_line_with_the_fix() {
    common::require_environment();
    let dir = cleanup::temp_dir();
    let data = dir.path().join("data");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap();
    let ran = run_up(&data, &[&format!("--listen={busy}")], None);
    refused(&ran, &["in use", "--listen"]);
    nothing_started(&data);

    let empty = cleanup::temp_dir();
    let no_cni = format!("--cni-bin-dir={}", empty.path().display());
    let ran = run_up(&data, &[&free_listen(), &no_cni], None);
    refused(
        &ran,
        &[
            "CNI plugins bridge",
            "apt-get install containernetworking-plugins",
        ],
    );
    nothing_started(&data);

    let ran = run_up(
        &data,
        &[&format!("--listen={busy}"), &no_cni, "--check"],
        None,
    );
    assert!(!ran.ok, "a failing check fails --check");
    for check in [
        "root",
        "port",
        "containerd",
        "runc",
        "cni plugins",
        "cgroups",
    ] {
        assert!(
            ran.out.lines().any(|l| l.contains(&format!(" {check}: "))),
            "{check} in\n{}",
            ran.out
        );
    }
    assert!(
        ran.out.contains("ok   root:") && ran.out.contains("FAIL port:"),
        "{}",
        ran.out
    );
    assert!(ran.out.contains("FAIL cni plugins:"), "{}", ran.out);
    nothing_started(&data);
    drop(held);
}

/// No containerd answering on the socket and none installed (PATH without
/// it): `up` says to install it or name a running one, and starts nothing.
#[test]
fn no_containerd_binary_is_refused_with_how_to_get_one() {
    common::require_environment();
    let dir = cleanup::temp_dir();
    let data = dir.path().join("data");
    let empty_path = cleanup::temp_dir();
    let nobody = dir.path().join("nobody.sock");
    let ran = run_up(
        &data,
        &[
            &free_listen(),
            &format!("--containerd={}", nobody.display()),
        ],
        Some(empty_path.path()),
    );
    refused(
        &ran,
        &[
            "no containerd answers on",
            "no containerd binary",
            "apt-get install containerd",
            "--containerd",
        ],
    );
    nothing_started(&data);
    assert!(
        cleanup::processes_mentioning(&data.to_string_lossy()).is_empty(),
        "no containerd of its own"
    );
}

/// A data dir a newer deckhand wrote is refused before anything in it is
/// read or written; the data dir is as it was.
#[test]
fn a_data_dir_of_a_newer_version_is_refused_untouched() {
    common::require_environment();
    let dir = cleanup::temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("apiserver")).unwrap();
    std::fs::write(data.join("format"), "999\n").unwrap();
    std::fs::write(data.join("apiserver/store.redb"), b"a newer store").unwrap();
    let ran = run_up(&data, &[&free_listen()], None);
    refused(&ran, &["newer deckhand", "format 999", "--data-dir"]);
    assert_eq!(
        std::fs::read_to_string(data.join("format")).unwrap(),
        "999\n"
    );
    assert_eq!(
        std::fs::read(data.join("apiserver/store.redb")).unwrap(),
        b"a newer store"
    );
    assert_eq!(entries(&data), ["apiserver", "format", "up.lock"]);
    assert_eq!(entries(&data.join("apiserver")), ["store.redb"]);
}

//! `deckhand controller-manager` alone against `deckhand apiserver`: it
//! needs nothing of `up`'s process. An unknown controller name is refused
//! before anything connects.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;

/// The controller manager as a child process; killed on drop.
struct Manager(Child, std::path::PathBuf);

impl Manager {
    fn start(server: &Server, controllers: &str) -> Manager {
        let log_path = server.dir.join("controller-manager.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["--log-level", "deckhand=debug", "controller-manager"])
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--controllers")
            .arg(controllers)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start deckhand controller-manager");
        Manager(child, log_path)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, manager: &Manager, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; controller-manager log:\n{}",
            manager.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unknown_controller_is_refused_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["controller-manager", "--kubeconfig", "/nonexistent"])
        .args(["--controllers", "*,-bogus-controller"])
        .output()
        .expect("run deckhand");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown controller \"bogus-controller\"") && err.contains("job-controller"),
        "{err}"
    );
}

#[test]
fn the_controllers_run_alone_against_the_bundled_apiserver() {
    let server = Server::start();
    let manager = Manager::start(&server, "*");
    // The PV binder: a claim binds to the hostPath volume that fits it.
    let pv = r#"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"cm-pv"},
        "spec":{"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"],
        "hostPath":{"path":"/tmp/cm-pv"},"storageClassName":"manual"}}"#;
    let pvc = r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"cm-claim","namespace":"default"},
        "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"manual",
        "resources":{"requests":{"storage":"500Mi"}}}}"#;
    for manifest in [pv, pvc] {
        let out = server.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for("the claim to bind", &manager, || {
        server
            .kubectl(&["get", "pvc", "cm-claim", "-o", "jsonpath={.status.phase}"])
            .stdout
            == b"Bound"
    });
    assert_eq!(
        server.ok(&[
            "get",
            "pvc",
            "cm-claim",
            "-o",
            "jsonpath={.spec.volumeName}"
        ]),
        "cm-pv"
    );
    // Every selected controller either started or said why it is skipped.
    let log = manager.log();
    for name in [
        "persistentvolume-binder-controller",
        "node-lifecycle-controller",
    ] {
        assert!(log.contains(name), "{name} not in the log:\n{log}");
    }
}

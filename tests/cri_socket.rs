//! The CRI socket as an operator meets it: permissions, a stale file after a
//! crash, a second server, and a clean shutdown. Needs containerd (root).

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use common::*;
use deckhand::cri::v1 as cri;

#[tokio::test]
async fn socket_is_0660_and_removed_on_clean_shutdown() {
    let (mut server, mut client) = CriServer::start().await;
    let meta = std::fs::metadata(&server.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let version = client
        .runtime
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "deckhand");
    assert_eq!(version.runtime_api_version, "v1");
    let config = client
        .runtime
        .runtime_config(cri::RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(!server.socket.exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not_stolen() {
    let (server, _client) = CriServer::start().await;
    // A second server on a live socket refuses and leaves the first alone.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["cri", "--listen"])
        .arg(&server.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut again = deckhand::cri::client::connect(&server.socket)
        .await
        .unwrap();
    again
        .runtime
        .version(cri::VersionRequest::default())
        .await
        .expect("first server still serves");

    // kill -9 leaves the socket file; the next start replaces it.
    let socket = server.socket.clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for _ in 0..50 {
        if std::os::unix::net::UnixStream::connect(&socket).is_err() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(socket.exists(), "a killed server leaves its socket file");
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["cri", "--listen"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "--containerd-namespace",
            &format!("{}-restart", server.namespace),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut c) = deckhand::cri::client::connect(&socket).await
            && c.runtime
                .version(cri::VersionRequest::default())
                .await
                .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    remove_namespace(&format!("{}-restart", server.namespace));
    assert!(ok, "a new server serves on the stale socket");
}

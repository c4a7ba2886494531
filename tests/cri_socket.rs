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

/// The node agent's remote runtime: the CRI traits over the socket, failing
/// fast (not hanging) while the runtime is down and reconnecting by itself
/// when it is back.
#[tokio::test]
async fn the_remote_runtime_survives_a_runtime_restart() {
    use deckhand::cri::api::{ImageService, RuntimeService};
    use deckhand::cri::remote::RemoteRuntime;
    use std::time::Duration;

    // Nothing listens yet: a quick Unavailable, not a hang.
    let nowhere = tempfile::tempdir().unwrap();
    let absent = RemoteRuntime::new(&nowhere.path().join("cri.sock"))
        .with_timeouts(Duration::from_secs(20), Duration::from_secs(20));
    let err = absent
        .version(cri::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, tonic::Code::Unavailable, "{err}");

    let (mut server, _client) = CriServer::start().await;
    let remote = RemoteRuntime::new(&server.socket);
    let version = remote
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(version.runtime_name, "deckhand");
    let err = remote
        .container_status(cri::ContainerStatusRequest {
            container_id: "no-such-container".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, tonic::Code::NotFound, "{err}");
    remote
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageService over the same channel");

    server.kill9();
    let err = remote
        .version(cri::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, tonic::Code::Unavailable, "{err}");
    server.restart().await;
    // The same client, no new connect: the channel redials.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match remote.version(cri::VersionRequest::default()).await {
            Ok(v) => break assert_eq!(v.runtime_name, "deckhand"),
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code, tonic::Code::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the remote runtime did not reconnect within 30 s: {e}"),
        }
    }
}

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

/// One unary call over a hand-made HTTP/2 connection, with the headers
/// grpcio (C core 1.57+) sends on a `unix:` target: `:authority` is the
/// percent-encoded socket path, which h2 alone refuses with RST_STREAM.
/// Returns the response's headers and trailers, and its data.
async fn raw_version_call(
    socket: &std::path::Path,
    authority: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([typ, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/runtime.v1.RuntimeService/Version"),
        (b":authority", authority.as_bytes()),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (
            b"user-agent",
            b"grpc-python/1.85.3 grpc-c/58.0.0 (linux; chttp2)",
        ),
    ];
    let block = loona_hpack::Encoder::new().encode(headers);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x4, 1, &block));
    // An empty VersionRequest: not compressed, length 0.
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    stream.write_all(&out).await.unwrap();

    let mut decoder = loona_hpack::Decoder::new();
    let (mut got_headers, mut data) = (vec![], vec![]);
    let read = async {
        loop {
            let mut head = [0u8; 9];
            stream
                .read_exact(&mut head)
                .await
                .expect("the server answers");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            let (typ, flags) = (head[3], head[4]);
            match typ {
                // SETTINGS (not an ack): acknowledge it.
                0x4 if flags & 0x1 == 0 => {
                    stream.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap()
                }
                0x3 => panic!("RST_STREAM, error code {:?}", &payload),
                0x7 => panic!("GOAWAY: {payload:?}"),
                0x1 => {
                    for (n, v) in decoder.decode(&payload).unwrap() {
                        got_headers
                            .push((String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()));
                    }
                    if flags & 0x1 != 0 {
                        return;
                    }
                }
                0x0 => data.extend(payload),
                _ => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("a whole answer within 60 s");
    (got_headers, data)
}

#[tokio::test]
async fn a_client_sending_any_authority_is_served() {
    let (server, _client) = CriServer::start().await;
    for authority in ["tmp%2Fcri.sock", "/run/deckhand/cri.sock", "localhost"] {
        let (headers, data) = raw_version_call(&server.socket, authority).await;
        assert!(
            headers.contains(&(":status".into(), "200".into())),
            "{authority}: {headers:?}"
        );
        assert!(
            headers.contains(&("grpc-status".into(), "0".into())),
            "{authority}: {headers:?}"
        );
        assert!(
            String::from_utf8_lossy(&data).contains("deckhand"),
            "{authority}: {data:?}"
        );
    }
}

/// The same with the real grpcio, when this machine has it (hack/install-deps
/// installs it): a generic unary call, no generated code.
#[tokio::test]
async fn grpcio_on_a_unix_target_is_served() {
    let has_grpcio = std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_grpcio {
        say_skipped(
            "grpcio_on_a_unix_target_is_served",
            "python3 with grpcio is not installed (pip install grpcio)",
        );
        return;
    }
    let (server, _client) = CriServer::start().await;
    let script = r#"
import sys, grpc
channel = grpc.insecure_channel("unix:" + sys.argv[1])
call = channel.unary_unary("/runtime.v1.RuntimeService/Version",
                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
print(call(b"", timeout=10))
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(&server.socket)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("deckhand"),
        "grpcio's Version call failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 17: a request over containerd's 16 MiB answers ResourceExhausted as
/// containerd does (not tonic's OutOfRange), and the connection serves on.
#[tokio::test]
async fn an_oversized_request_is_resource_exhausted_as_containerd_answers() {
    let (_server, mut client) = CriServer::start().await;
    let limit = deckhand::cri::MAX_MESSAGE_BYTES;
    let status = client
        .images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "x".repeat(limit),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    common::grpc::assert_exhausted(&status, "grpc: received message larger than max (");
    common::grpc::assert_serves_on(&mut client, "the same connection serves the next call").await;
}

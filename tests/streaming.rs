//! The CRI streaming calls against real containerd and runc: Exec, Attach
//! and PortForward hand out URLs on deckhand's streaming server, which the
//! tests drive as kubectl/crictl would: SPDY/3.1 (deckhand's own SPDY code
//! in its client role) and WebSocket (tokio-tungstenite).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::CriServer;
use common::pod::{TestPod, busybox_container, create, remove_sandbox, start, wait_exited};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;
use deckhand::runtime::streaming::spdy;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(60);

/// A sandbox with one started container running `script`.
async fn run(
    pod: &TestPod,
    client: &mut CriClient,
    script: &str,
    tweak: impl FnOnce(&mut cri::ContainerConfig),
) -> (String, String) {
    let sandbox = pod.run_sandbox(client, "stream").await;
    let mut config = busybox_container("main", script);
    tweak(&mut config);
    let container = create(client, &sandbox, config, pod, "stream")
        .await
        .expect("create container");
    start(client, &container).await;
    (sandbox, container)
}

/// `http://host:port/path` -> (host:port, /path).
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let slash = rest.find('/').unwrap();
    (rest[..slash].to_string(), rest[slash..].to_string())
}

/// An HTTP upgrade to SPDY/3.1 offering `protocols`: the connection and
/// the protocol the server chose, or the refusal's status line.
async fn spdy_upgrade(url: &str, protocols: &[&str]) -> Result<(spdy::Connection, String), String> {
    let (addr, path) = split_url(url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Read the response head byte by byte: SPDY frames may follow it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.contains(" 101 ") {
        return Err(status);
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((spdy::Connection::new(tcp), protocol))
}

async fn open(conn: &spdy::Connection, headers: &[(&str, &str)]) -> spdy::Stream {
    conn.open(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .await
    .expect("open stream")
}

/// Everything a stream carries until its end.
async fn read_all(mut stream: spdy::Stream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.incoming.recv().await {
            out.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("stream did not end");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a stream until `needle` shows up; returns what was read.
async fn read_until(stream: &mut spdy::Stream, needle: &str) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&out).contains(needle) {
            match stream.incoming.recv().await {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).into_owned()
}

async fn exec_url(client: &mut CriClient, request: cri::ExecRequest) -> String {
    client
        .runtime
        .exec(request)
        .await
        .expect("exec")
        .into_inner()
        .url
}

#[tokio::test]
async fn exec_without_a_terminal_over_spdy() {
    let pod = TestPod::new("dhsm", 216, 1);
    let (_server, mut client) = pod.server().await;
    let (sandbox, container) = run(&pod, &mut client, "sleep 3600", |_| {}).await;

    let url = exec_url(
        &mut client,
        cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    let (conn, protocol) = spdy_upgrade(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"])
        .await
        .expect("upgrade");
    assert_eq!(protocol, "v4.channel.k8s.io");
    let error = open(&conn, &[("streamType", "error")]).await;
    error.writer.close().await;
    let stdout = open(&conn, &[("streamType", "stdout")]).await;
    let stderr = open(&conn, &[("streamType", "stderr")]).await;
    let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), read_all(error));
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    let status: serde_json::Value = serde_json::from_str(&status).expect("a JSON status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // The token was spent.
    let again = spdy_upgrade(&url, &["v4.channel.k8s.io"]).await;
    assert!(
        matches!(&again, Err(s) if s.contains(" 404 ")),
        "{:?}",
        again.err()
    );
    remove_sandbox(&mut client, &sandbox).await;
}

#[tokio::test]
async fn exec_with_a_terminal_and_stdin_over_spdy() {
    let pod = TestPod::new("dhsm", 216, 2);
    let (server, mut client) = pod.server().await;
    let (sandbox, container) = run(&pod, &mut client, "sleep 3600", |_| {}).await;

    let url = exec_url(
        &mut client,
        cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            ..Default::default()
        },
    )
    .await;
    let (conn, protocol) = spdy_upgrade(&url, &["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .await
        .expect("upgrade");
    assert_eq!(protocol, "v5.channel.k8s.io");
    let error = open(&conn, &[("streamType", "error")]).await;
    let stdin = open(&conn, &[("streamType", "stdin")]).await;
    let mut stdout = open(&conn, &[("streamType", "stdout")]).await;
    let resize = open(&conn, &[("streamType", "resize")]).await;
    resize.writer.write(br#"{"Width":123,"Height":45}"#).await;
    // The size reaches the terminal, and what we type reaches the shell.
    // The resize and stdin streams are independent (as in kubelet and
    // containerd), so the shell may read its first line before the size
    // lands: it waits for the size, bounded by read_until's deadline. The
    // sums keep "45 123" out of the terminal's echo of the typed line.
    stdin
        .writer
        .write(
            b"until [ \"$(stty size)\" = \"$((44+1)) $((122+1))\" ]; do sleep 0.1; done; \
              echo tty=$(tty) size=$(stty size)\n",
        )
        .await;
    let seen = read_until(&mut stdout, "size=45 123").await;
    assert!(seen.contains("tty=/dev/pts/"), "{seen}");
    stdin.writer.write(b"exit 0\n").await;
    let status = read_all(error).await;
    assert!(status.contains("\"Success\""), "{status}");
    assert_no_exec_left(&server, &container);
    remove_sandbox(&mut client, &sandbox).await;
}

#[tokio::test]
async fn exec_over_websocket_v5() {
    let pod = TestPod::new("dhsm", 216, 3);
    let (_server, mut client) = pod.server().await;
    let (sandbox, container) = run(&pod, &mut client, "sleep 3600", |_| {}).await;

    let url = exec_url(
        &mut client,
        cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec!["sh".into(), "-c".into(), "cat; echo done >&2".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    let mut request = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (addr, _) = split_url(&url);
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket upgrade");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello")))
        .await
        .unwrap();
    // v5: stdin closed.
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00")))
        .await
        .unwrap();
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            let Message::Binary(b) = m else { continue };
            match b.first() {
                Some(1) => out.extend_from_slice(&b[1..]),
                Some(2) => err.extend_from_slice(&b[1..]),
                Some(3) => status.extend_from_slice(&b[1..]),
                _ => {}
            }
        }
    })
    .await
    .expect("the session did not end");
    assert_eq!(String::from_utf8_lossy(&out), "hello");
    assert_eq!(String::from_utf8_lossy(&err), "done\n");
    assert!(String::from_utf8_lossy(&status).contains("\"Success\""));
    remove_sandbox(&mut client, &sandbox).await;
}

#[tokio::test]
async fn attach_sees_output_and_feeds_stdin() {
    let pod = TestPod::new("dhsm", 216, 4);
    let (_server, mut client) = pod.server().await;
    let (sandbox, container) = run(&pod, &mut client, "echo started; exec sh", |c| {
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    // An attach shows output from the moment it is made, as the kubelet's
    // and containerd's do: make sure "started" is already behind that
    // moment (in the log) rather than racing the log driver for it.
    let log = pod.logs.path().join("main/0.log");
    wait_for_log(&log, "stdout F started").await;

    let url = client
        .runtime
        .attach(cri::AttachRequest {
            container_id: container.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .expect("attach")
        .into_inner()
        .url;
    let (conn, _) = spdy_upgrade(&url, &["v4.channel.k8s.io"])
        .await
        .expect("upgrade");
    let error = open(&conn, &[("streamType", "error")]).await;
    let stdin = open(&conn, &[("streamType", "stdin")]).await;
    let mut stdout = open(&conn, &[("streamType", "stdout")]).await;
    let mut stderr = open(&conn, &[("streamType", "stderr")]).await;
    stdin.writer.write(b"echo hello; echo oops >&2\n").await;
    let out = read_until(&mut stdout, "hello\n").await;
    // Output from before the attach is not replayed.
    assert_eq!(out, "hello\n", "attach replayed output from before it");
    read_until(&mut stderr, "oops\n").await;
    // stdin_once: closing our stdin closes the container's; sh exits.
    stdin.writer.close().await;
    let status = read_all(error).await;
    assert!(status.contains("\"Success\""), "{status}");
    // sh exits.
    wait_exited(&mut client, &container).await;
    remove_sandbox(&mut client, &sandbox).await;
}

#[tokio::test]
async fn port_forward_reaches_a_server_in_the_pod() {
    let pod = TestPod::new("dhsm", 216, 5);
    let (_server, mut client) = pod.server().await;
    let (sandbox, _container) = run(
        &pod,
        &mut client,
        "mkdir /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
        |_| {},
    )
    .await;
    let url = client
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox.clone(),
            port: vec![8080],
        })
        .await
        .expect("port forward")
        .into_inner()
        .url;
    let (conn, protocol) = spdy_upgrade(&url, &["portforward.k8s.io"])
        .await
        .expect("upgrade");
    assert_eq!(protocol, "portforward.k8s.io");

    // httpd may need a moment to listen: retry on a connection error.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut request_id = 0;
    let page = loop {
        request_id += 1;
        let id = request_id.to_string();
        let error = open(
            &conn,
            &[
                ("streamType", "error"),
                ("port", "8080"),
                ("requestID", &id),
            ],
        )
        .await;
        error.writer.close().await;
        let data = open(
            &conn,
            &[("streamType", "data"), ("port", "8080"), ("requestID", &id)],
        )
        .await;
        data.writer
            .write(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await;
        let (page, failure) = tokio::join!(read_all(data), read_all(error));
        if failure.is_empty() {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("hello-from-the-pod"), "{page}");

    // Nothing listens on 9: the error stream says so.
    let error = open(
        &conn,
        &[("streamType", "error"), ("port", "9"), ("requestID", "999")],
    )
    .await;
    let data = open(
        &conn,
        &[("streamType", "data"), ("port", "9"), ("requestID", "999")],
    )
    .await;
    let (_, failure) = tokio::join!(read_all(data), read_all(error));
    assert!(failure.contains("localhost:9"), "{failure}");
    drop(conn);
    remove_sandbox(&mut client, &sandbox).await;
}

#[tokio::test]
async fn bad_streaming_requests_are_refused() {
    let pod = TestPod::new("dhsm", 216, 6);
    let (_server, mut client) = pod.server().await;
    let (sandbox, container) = run(&pod, &mut client, "sleep 3600", |_| {}).await;

    let missing = client
        .runtime
        .exec(cri::ExecRequest {
            container_id: "no-such-container".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let tty_and_stderr = client
        .runtime
        .exec(cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(tty_and_stderr.code(), tonic::Code::InvalidArgument);
    let no_sandbox = client
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "no-such-pod".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(no_sandbox.code(), tonic::Code::NotFound);

    // An unknown token, and a protocol the server does not speak.
    let url = exec_url(
        &mut client,
        cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        },
    )
    .await;
    let (base, _) = url.rsplit_once('/').unwrap();
    let unknown = spdy_upgrade(&format!("{base}/nonsense"), &["v4.channel.k8s.io"]).await;
    assert!(matches!(&unknown, Err(s) if s.contains(" 404 ")));
    let refused = spdy_upgrade(&url, &["v9.channel.k8s.io"]).await;
    assert!(matches!(&refused, Err(s) if s.contains(" 403 ")));
    remove_sandbox(&mut client, &sandbox).await;
}

/// Waits until the CRI log file at `path` holds an entry ending in `entry`
/// (`<stream> <tag> <content>`).
async fn wait_for_log(path: &std::path::Path, entry: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().any(|l| l.ends_with(entry)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {entry:?} in {} after {WAIT:?}:\n{log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No exec FIFOs or processes of ours remain in the container's run dir
/// (which must exist: the container is running).
fn assert_no_exec_left(server: &CriServer, container: &str) {
    let dir = server.run_dir().join("containers").join(container);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the container's run dir {}: {e}", dir.display()));
    let execs: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("exec-"))
        .collect();
    assert!(execs.is_empty(), "exec dirs left: {execs:?}");
}

//! Kubernetes' remote command protocols (exec and attach), server side, over
//! SPDY (`v2|v3|v4|v5.channel.k8s.io`, one SPDY stream per standard
//! stream) or over a WebSocket (`v4|v5.channel.k8s.io`, one channel byte
//! before each binary message). Both become one [`Session`]: the client's
//! stdin and terminal sizes in, stdout and stderr out, and an exit status.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::spdy::{self, StreamWriter};

pub const V1: &str = "channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";
/// Over SPDY, best first (v1 has no error stream: not served).
pub const SPDY_PROTOCOLS: &[&str] = &[V5, V4, V3, V2];
/// Over a WebSocket, best first.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[V5, V4];

/// How long the client has to open the streams it asked for (the kubelet's
/// streamCreationTimeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// WebSocket channel numbers.
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
/// v5: `[255, channel]` says the sender has closed that channel.
const CH_CLOSE: u8 = 255;

/// Which standard streams the CRI request asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How a command ended, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Error(String),
}

#[derive(Clone)]
enum Sink {
    Spdy(StreamWriter),
    WebSocket {
        tx: mpsc::Sender<Message>,
        channel: u8,
        v5: bool,
    },
}

/// One output stream to the client.
#[derive(Clone)]
pub struct Output(Sink);

impl Output {
    /// False once the client is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        match &self.0 {
            Sink::Spdy(w) => w.write(data).await,
            Sink::WebSocket { tx, channel, .. } => {
                let mut m = Vec::with_capacity(data.len() + 1);
                m.push(*channel);
                m.extend_from_slice(data);
                tx.send(Message::Binary(m.into())).await.is_ok()
            }
        }
    }

    /// The client reads EOF on this stream.
    pub async fn close(&self) {
        match &self.0 {
            Sink::Spdy(w) => w.close().await,
            Sink::WebSocket {
                tx,
                channel,
                v5: true,
            } => {
                let _ = tx
                    .send(Message::Binary(vec![CH_CLOSE, *channel].into()))
                    .await;
            }
            Sink::WebSocket { .. } => {}
        }
    }
}

enum Closer {
    Spdy(spdy::Connection),
    WebSocket(mpsc::Sender<Message>),
}

/// The streams of one exec or attach. Take the parts you need; then
/// [`Session::finish`] tells the client how it ended and closes.
pub struct Session {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    error: Option<Output>,
    protocol: &'static str,
    closer: Closer,
    gone: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("timed out waiting for the client to open its streams")]
    Timeout,
    #[error("the client closed the connection before opening its streams")]
    Closed,
}

impl Session {
    /// The negotiated protocol.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// Resolves when the client has gone away.
    pub fn gone(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut gone = self.gone.clone();
        async move {
            let _ = gone.wait_for(|g| *g).await;
        }
    }

    /// Waits for the SPDY streams `options` call for (error, and stdin,
    /// stdout, stderr and resize as asked) as the kubelet does.
    pub async fn accept_spdy(
        mut conn: spdy::Connection,
        protocol: &'static str,
        options: Options,
    ) -> Result<Session, SessionError> {
        let (gone_tx, gone) = watch::channel(false);
        let closed = conn.closed();
        tokio::spawn(async move {
            closed.await;
            let _ = gone_tx.send(true);
        });
        let resize_wanted = options.tty && protocol != V2;
        let mut session = Session {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            error: None,
            protocol,
            closer: Closer::WebSocket(mpsc::channel(1).0),
            gone,
        };
        let complete = |s: &Session| {
            s.error.is_some()
                && (!options.stdin || s.stdin.is_some())
                && (!options.stdout || s.stdout.is_some())
                && (!options.stderr || options.tty || s.stderr.is_some())
                && (!resize_wanted || s.resize.is_some())
        };
        let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
        while !complete(&session) {
            let stream = tokio::time::timeout_at(deadline, conn.accept())
                .await
                .map_err(|_| SessionError::Timeout)?
                .ok_or(SessionError::Closed)?;
            let sink = Output(Sink::Spdy(stream.writer.clone()));
            match spdy::header(&stream.headers, "streamtype").unwrap_or_default() {
                "error" => session.error = Some(sink),
                "stdin" => session.stdin = Some(stream.incoming),
                "stdout" => session.stdout = Some(sink),
                "stderr" => session.stderr = Some(sink),
                "resize" => session.resize = Some(resize_reader(stream.incoming)),
                other => {
                    tracing::debug!(stream_type = other, "ignoring an unknown stream");
                }
            }
        }
        // A stream the request did not ask for is not used.
        if !options.stdin {
            session.stdin = None;
        }
        session.closer = Closer::Spdy(conn);
        Ok(session)
    }

    /// A WebSocket session: every channel the options call for exists at once.
    pub fn websocket<T>(ws: WebSocketStream<T>, protocol: &'static str, options: Options) -> Session
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let v5 = protocol == V5;
        let (mut sink, mut source) = ws.split();
        let (tx, mut rx) = mpsc::channel::<Message>(64);
        let (gone_tx, gone) = watch::channel(false);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
        let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(8);
        tokio::spawn(async move {
            let mut stdin = Some(stdin_tx);
            while let Some(Ok(m)) = source.next().await {
                let data = match m {
                    Message::Binary(b) => b,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Some((&channel, payload)) = data.split_first() else {
                    continue;
                };
                match channel {
                    CH_STDIN if !payload.is_empty() => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(Bytes::copy_from_slice(payload)).await;
                        }
                    }
                    CH_RESIZE => {
                        if let Ok(size) = serde_json::from_slice::<TermSize>(payload) {
                            let _ = resize_tx.send(size).await;
                        }
                    }
                    CH_CLOSE if payload.first() == Some(&CH_STDIN) => stdin = None,
                    _ => {}
                }
            }
            let _ = gone_tx.send(true);
        });
        let output = |channel| {
            Output(Sink::WebSocket {
                tx: tx.clone(),
                channel,
                v5,
            })
        };
        Session {
            stdin: options.stdin.then_some(stdin_rx),
            stdout: options.stdout.then(|| output(CH_STDOUT)),
            stderr: (options.stderr && !options.tty).then(|| output(CH_STDERR)),
            resize: options.tty.then_some(resize_rx),
            error: Some(output(CH_ERROR)),
            protocol,
            closer: Closer::WebSocket(tx),
            gone,
        }
    }

    /// Tells the client how the command ended, and closes.
    pub async fn finish(self, exit: Exit) {
        let message = status_message(self.protocol, &exit);
        if let Some(out) = &self.stdout {
            out.close().await;
        }
        if let Some(err) = &self.stderr {
            err.close().await;
        }
        if let Some(error) = &self.error {
            if !message.is_empty() {
                error.write(&message).await;
            }
            error.close().await;
        }
        match self.closer {
            Closer::Spdy(conn) => conn.go_away().await,
            Closer::WebSocket(tx) => {
                // A normal closure is EOF to client-go; any other code
                // (or none) is an error.
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = tx.send(Message::Close(Some(close))).await;
            }
        }
    }
}

/// What the error stream carries: v4 and later a JSON metav1.Status, older
/// versions the error's text (nothing on success).
fn status_message(protocol: &str, exit: &Exit) -> Vec<u8> {
    let structured = protocol == V4 || protocol == V5;
    match exit {
        Exit::Code(0) if structured => {
            serde_json::json!({"metadata": {}, "status": "Success"}).to_string().into_bytes()
        }
        Exit::Code(0) => Vec::new(),
        Exit::Code(code) if structured => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
        .to_string()
        .into_bytes(),
        Exit::Code(code) => {
            format!("command terminated with non-zero exit code: exit status {code}").into_bytes()
        }
        Exit::Error(m) if structured => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": m,
            "reason": "InternalError",
        })
        .to_string()
        .into_bytes(),
        Exit::Error(m) => m.clone().into_bytes(),
    }
}

/// The resize stream carries JSON objects one after another.
fn resize_reader(mut incoming: mpsc::Receiver<Bytes>) -> mpsc::Receiver<TermSize> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(chunk) = incoming.recv().await {
            buf.extend_from_slice(&chunk);
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
            let mut consumed = 0;
            for size in stream.by_ref() {
                match size {
                    Ok(size) => {
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_eof() => break,
                    Err(_) => return,
                }
            }
            consumed = consumed.max(stream.byte_offset());
            buf.drain(..consumed);
        }
    });
    rx
}

/// The first protocol of `ours` the client offered (`offered`: header
/// values, each maybe a comma-separated list).
pub fn negotiate<'a>(
    offered: impl Iterator<Item = &'a str>,
    ours: &[&'static str],
) -> Option<&'static str> {
    let offered: Vec<&str> = offered.flat_map(|v| v.split(',')).map(str::trim).collect();
    ours.iter().copied().find(|p| offered.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_common_protocol_wins() {
        let offered = ["v4.channel.k8s.io, v3.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(negotiate(offered.into_iter(), SPDY_PROTOCOLS), Some(V4));
        assert_eq!(negotiate(["v1"].into_iter(), SPDY_PROTOCOLS), None);
    }

    #[test]
    fn exit_statuses_follow_the_protocol_version() {
        let ok = String::from_utf8(status_message(V4, &Exit::Code(0))).unwrap();
        assert!(ok.contains("\"Success\""));
        assert!(status_message(V3, &Exit::Code(0)).is_empty());
        let failed: serde_json::Value =
            serde_json::from_slice(&status_message(V5, &Exit::Code(3))).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn resize_events_may_span_chunks() {
        let (tx, rx) = mpsc::channel(4);
        let mut sizes = resize_reader(rx);
        tx.send(Bytes::from_static(b"{\"Width\":80,\"Height\":24}{\"Wid"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b"th\":100,\"Height\":30}"))
            .await
            .unwrap();
        assert_eq!(
            sizes.recv().await.unwrap(),
            TermSize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(
            sizes.recv().await.unwrap(),
            TermSize {
                width: 100,
                height: 30
            }
        );
    }
}

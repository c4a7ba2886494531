//! Kubernetes' port forwarding protocol (`portforward.k8s.io`), server side:
//! over SPDY, the client opens a pair of streams per forwarded connection,
//! `streamType: error` and `streamType: data`, both carrying `port` and
//! `requestID` headers. Each pair becomes a TCP connection to that port in
//! the pod, copied both ways; a failure is reported on the error stream.
//!
//! client-go's WebSocket port forwarding tunnels these same SPDY frames
//! through WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`), so
//! [`tunnel`] turns such a WebSocket into a byte stream for
//! [`spdy::Connection`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, StreamWriter};

pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of client-go's tunnelled SPDY.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Connections forwarded at once over one client connection.
const MAX_FORWARDS: usize = 128;

/// Opens the connection to `port` inside the pod.
pub trait Dialer: Send + Sync + 'static {
    fn dial(
        &self,
        port: u16,
    ) -> impl Future<Output = std::io::Result<tokio::net::TcpStream>> + Send;
}

/// Half of a pair, waiting for its partner.
#[derive(Default)]
struct Pair {
    error: Option<StreamWriter>,
    data: Option<spdy::Stream>,
    port: Option<Result<u16, String>>,
}

/// Serves one port forwarding connection until the client closes it.
pub async fn serve<D: Dialer>(mut conn: spdy::Connection, dialer: Arc<D>) {
    let limit = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = conn.accept().await {
        let request = spdy::header(&stream.headers, "requestid")
            .unwrap_or_default()
            .to_string();
        let port = spdy::header(&stream.headers, "port").map(parse_port);
        let pair = pending.entry(request.clone()).or_default();
        pair.port = pair.port.take().or(port);
        match spdy::header(&stream.headers, "streamtype") {
            Some("error") => pair.error = Some(stream.writer),
            Some("data") => pair.data = Some(stream),
            other => {
                tracing::debug!(stream_type = ?other, "port forward: unknown stream");
                stream.writer.reset().await;
                continue;
            }
        }
        if pair.error.is_none() || pair.data.is_none() {
            continue;
        }
        let Some(Pair {
            error: Some(error),
            data: Some(data),
            port,
        }) = pending.remove(&request)
        else {
            continue;
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let dialer = dialer.clone();
        tokio::spawn(async move {
            let port = port.unwrap_or_else(|| Err("no port header".into()));
            let result = match port {
                Ok(port) => forward(&*dialer, port, data).await,
                Err(m) => {
                    data.writer.reset().await;
                    Err(m)
                }
            };
            if let Err(message) = result {
                tracing::debug!(%message, "port forward failed");
                error.write(message.as_bytes()).await;
            }
            error.close().await;
            drop(permit);
        });
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port {value:?}")),
    }
}

/// Copies between the data stream and a connection to `port`.
async fn forward<D: Dialer>(dialer: &D, port: u16, data: spdy::Stream) -> Result<(), String> {
    let tcp = match dialer.dial(port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            data.writer.reset().await;
            return Err(format!(
                "failed to connect to localhost:{port} in the pod: {e}"
            ));
        }
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let spdy::Stream {
        mut incoming,
        writer,
        ..
    } = data;
    let to_pod = tokio::spawn(async move {
        while let Some(chunk) = incoming.recv().await {
            if tcp_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The client is done sending: so are we, towards the pod.
        let _ = tcp_write.shutdown().await;
    });
    let from_pod = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match tcp_read.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if !writer.write(&buf[..n]).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, port, "reading from the pod");
                    break;
                }
            }
        }
        writer.close().await;
    };
    // The forward ends when the pod's side does (as containerd's): the
    // client then resets the stream; no need to wait for it.
    from_pod.await;
    to_pod.abort();
    Ok(())
}

/// A byte stream carried in a WebSocket's binary messages, both ways.
pub fn tunnel<T>(ws: WebSocketStream<T>) -> impl AsyncRead + AsyncWrite + Send + 'static
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let (mut theirs_read, mut theirs_write) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            tokio::select! {
                read = theirs_read.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(m).await.is_err() {
                            break;
                        }
                    }
                },
                _ = done_rx.recv() => break,
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) if theirs_write.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = theirs_write.shutdown().await;
        let _ = done_tx.send(()).await;
    });
    ours
}

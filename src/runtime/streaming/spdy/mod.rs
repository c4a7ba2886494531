//! SPDY/3.1 as far as Kubernetes' streaming protocols use it (remotecommand
//! and portforward over an HTTP `Upgrade: SPDY/3.1`): the client opens every
//! stream; the server answers each SYN_STREAM with a SYN_REPLY; DATA flows
//! both ways, FIN and RST_STREAM end streams, PINGs are echoed. The server
//! side is what deckhand serves; the client side ([`Connection::open`])
//! serves tests and a future proxy.
//!
//! No crate on crates.io implements SPDY (it was superseded by HTTP/2 before
//! the Rust ecosystem grew), so the framing is here; header blocks are zlib
//! streams primed with the SPDY/3 dictionary, done with flate2 (its zlib-rs
//! backend, pure Rust, supports preset dictionaries).
//!
//! Flow control: the Go implementation every Kubernetes client uses
//! (spdystream) neither sends nor honours WINDOW_UPDATE, so we ignore it
//! too; back-pressure comes from TCP, through bounded queues.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

mod frame;
pub use frame::*;

/// Where a stream's incoming data goes; `None` once it has ended.
type Inbox = Option<mpsc::Sender<Bytes>>;

struct Shared {
    /// Frames to write, in order.
    out: mpsc::Sender<Bytes>,
    streams: Mutex<HashMap<u32, Inbox>>,
    /// One zlib stream for every header block we send: blocks are
    /// compressed and queued under this lock, so they go out in order.
    deflate: tokio::sync::Mutex<HeaderWriter>,
    /// The next stream id we open (client side: odd ids).
    next_id: std::sync::atomic::AtomicU32,
    /// Streams we opened, waiting for their SYN_REPLY.
    replies: Mutex<HashMap<u32, tokio::sync::oneshot::Sender<()>>>,
}

/// A stream the client opened: its headers, what it sends, and a handle to
/// answer on it.
pub struct Stream {
    pub headers: Headers,
    pub incoming: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// Sends on one stream. Cloneable; the stream's send side ends with
/// [`StreamWriter::close`].
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Sends `data` (split into frames); false once the connection is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(MAX_DATA) {
            if self
                .shared
                .out
                .send(data_frame(self.id, 0, chunk))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Half-closes the stream (FIN): the client reads EOF.
    pub async fn close(&self) {
        let _ = self
            .shared
            .out
            .send(data_frame(self.id, FLAG_FIN, &[]))
            .await;
    }

    /// Aborts the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        let mut p = Vec::with_capacity(8);
        p.put_u32(self.id);
        p.put_u32(CANCEL);
        self.shared.streams.lock().remove(&self.id);
        let _ = self.shared.out.send(control(RST_STREAM, 0, &p)).await;
    }
}

/// A server-side SPDY connection. Streams the client opens arrive through
/// [`Connection::accept`]; dropping the connection (and every writer) ends it.
pub struct Connection {
    accepted: mpsc::Receiver<Stream>,
    shared: Arc<Shared>,
    closed: tokio::sync::watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    /// Nobody serves the connection any more: stop reading it.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Serves SPDY on `io` (an upgraded HTTP connection, or a websocket
    /// tunnel) from two tasks: one reads frames, one writes them.
    pub fn new<T>(io: T) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(256);
        let shared = Arc::new(Shared {
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            deflate: tokio::sync::Mutex::new(HeaderWriter::new()),
            next_id: std::sync::atomic::AtomicU32::new(1),
            replies: Mutex::new(HashMap::new()),
        });
        let (accept_tx, accepted) = mpsc::channel(32);
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(write_loop(writer, out_rx));
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            if let Err(e) = read_loop(reader, reader_shared.clone(), accept_tx).await {
                tracing::debug!(error = %e, "SPDY connection ended");
            }
            // Every stream's incoming side ends with the connection.
            reader_shared.streams.lock().clear();
            reader_shared.replies.lock().clear();
            let _ = closed_tx.send(true);
        });
        Connection {
            accepted,
            shared,
            closed,
            reader,
        }
    }

    /// Opens a stream (the client's part) and waits for the peer's reply.
    pub async fn open(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let id = self
            .shared
            .next_id
            .fetch_add(2, std::sync::atomic::Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        self.shared.streams.lock().insert(id, Some(tx));
        self.shared.replies.lock().insert(id, reply_tx);
        {
            let mut deflate = self.shared.deflate.lock().await;
            let mut frame = Vec::new();
            frame.put_u32(id);
            frame.put_u32(0);
            frame.put_u16(0);
            frame.extend_from_slice(&deflate.encode(&headers)?);
            self.shared
                .out
                .send(control(SYN_STREAM, 0, &frame))
                .await
                .map_err(|_| protocol("connection closed"))?;
        }
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(())) => Ok(Stream {
                headers,
                incoming: rx,
                writer: StreamWriter {
                    id,
                    shared: self.shared.clone(),
                },
            }),
            Ok(Err(_)) => Err(protocol("connection closed before the stream was answered")),
            Err(_) => Err(protocol("no reply to a new stream")),
        }
    }

    /// The next stream the client opens; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    /// Resolves when the client has gone (its side of the connection closed).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// Says GOAWAY and closes the transport once every queued frame is written.
    pub async fn go_away(self) {
        let mut p = Vec::with_capacity(8);
        p.put_u32(0);
        p.put_u32(0);
        let _ = self.shared.out.send(control(GOAWAY, 0, &p)).await;
        let _ = self.shared.out.send(Bytes::new()).await;
    }
}

/// Writes frames until the end marker (an empty frame) or until every
/// sender is gone, then closes the transport.
async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut frames: mpsc::Receiver<Bytes>) {
    'outer: while let Some(frame) = frames.recv().await {
        if frame.is_empty() {
            break;
        }
        if w.write_all(&frame).await.is_err() {
            return;
        }
        // Write what is queued together, then flush once.
        while let Ok(frame) = frames.try_recv() {
            if frame.is_empty() {
                break 'outer;
            }
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    shared: Arc<Shared>,
    accept: mpsc::Sender<Stream>,
) -> Result<(), SpdyError> {
    let mut inflate = HeaderReader::new();
    while let Some(frame) = read_frame(&mut r).await? {
        match frame {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let inbox = shared.streams.lock().get(&stream).cloned();
                if let Some(Some(tx)) = inbox
                    && !data.is_empty()
                {
                    // A consumer that went away just drops the data.
                    let _ = tx.send(data).await;
                }
                if flags & FLAG_FIN != 0
                    && let Some(inbox) = shared.streams.lock().get_mut(&stream)
                {
                    *inbox = None;
                }
            }
            Frame::Control { kind, flags, data } => match kind {
                SYN_STREAM => {
                    if data.len() < 10 {
                        return Err(protocol("short SYN_STREAM"));
                    }
                    let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                    let headers = inflate.decode(&data[10..])?;
                    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                    let inbox = (flags & FLAG_FIN == 0).then_some(tx);
                    shared.streams.lock().insert(id, inbox);
                    {
                        let mut deflate = shared.deflate.lock().await;
                        let mut reply = Vec::new();
                        reply.put_u32(id);
                        reply.extend_from_slice(&deflate.encode(&Vec::new())?);
                        if shared
                            .out
                            .send(control(SYN_REPLY, 0, &reply))
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    let stream = Stream {
                        headers,
                        incoming: rx,
                        writer: StreamWriter {
                            id,
                            shared: shared.clone(),
                        },
                    };
                    if accept.send(stream).await.is_err() {
                        // Nobody takes streams any more: refuse this one.
                        shared.streams.lock().remove(&id);
                    }
                }
                SYN_REPLY if data.len() >= 4 => {
                    let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                    // Keep the zlib stream in step, even if we ignore them.
                    inflate.decode(&data[4..])?;
                    if let Some(waiter) = shared.replies.lock().remove(&id) {
                        let _ = waiter.send(());
                    }
                    if flags & FLAG_FIN != 0
                        && let Some(inbox) = shared.streams.lock().get_mut(&id)
                    {
                        *inbox = None;
                    }
                }
                RST_STREAM if data.len() >= 4 => {
                    let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                    shared.streams.lock().remove(&id);
                }
                PING if shared.out.send(control(PING, 0, &data)).await.is_err() => return Ok(()),
                GOAWAY => return Ok(()),
                // SETTINGS, HEADERS, WINDOW_UPDATE and the rest need no
                // answer from a server that opens no streams.
                _ => {}
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

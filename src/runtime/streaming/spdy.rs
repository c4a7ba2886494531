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

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
/// How long an opened stream waits for its SYN_REPLY.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
const CANCEL: u32 = 5;
/// Largest frame payload we accept (the 24-bit length allows 16 MiB).
const MAX_FRAME: usize = 1 << 20;
/// Largest DATA frame we send.
const MAX_DATA: usize = 32 << 10;
/// Largest decompressed header block we accept.
const MAX_HEADERS: usize = 256 << 10;
/// Queued chunks per stream before the connection's reader waits.
const STREAM_QUEUE: usize = 64;

/// The zlib dictionary of SPDY/3 header blocks (SPDY/3 draft, section
/// 2.6.10.1): these header names, each prefixed by its 4-byte length, then
/// a run of common values.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
        "charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn protocol(m: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(m.into())
}

/// Header names are lower case (SPDY requires it); a name may repeat.
pub type Headers = Vec<(String, String)>;

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The inflating half of a connection's header compression.
struct HeaderReader(Decompress);

impl HeaderReader {
    fn new() -> Self {
        HeaderReader(Decompress::new(true))
    }

    fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADERS {
                    return Err(protocol("header block too large"));
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.0.total_in();
            let result = self
                .0
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.0.total_in() - before_in) as usize;
            input = &input[used..];
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| protocol(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(protocol(format!("header block: {e}"))),
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let take = |b: &mut &[u8]| -> Result<Vec<u8>, SpdyError> {
        if b.len() < 4 {
            return Err(protocol("truncated header block"));
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(protocol("truncated header block"));
        }
        let v = b[..n].to_vec();
        b.advance(n);
        Ok(v)
    };
    if b.len() < 4 {
        return Err(protocol("truncated header block"));
    }
    let count = b.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8_lossy(&take(&mut b)?).to_ascii_lowercase();
        let value = take(&mut b)?;
        for v in value.split(|c| *c == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(headers)
}

/// The deflating half.
struct HeaderWriter(Compress);

impl HeaderWriter {
    fn new() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = c.set_dictionary(&DICTIONARY);
        HeaderWriter(c)
    }

    fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (n, v) in headers {
            plain.put_u32(n.len() as u32);
            plain.put_slice(n.as_bytes());
            plain.put_u32(v.len() as u32);
            plain.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            let before_in = self.0.total_in();
            self.0
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| protocol(format!("compressing headers: {e}")))?;
            input = &input[(self.0.total_in() - before_in) as usize..];
            // A sync flush is complete once it returns with room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }
}

/// One frame as read from the wire.
enum Frame {
    Control { kind: u16, flags: u8, data: Bytes },
    Data { stream: u32, flags: u8, data: Bytes },
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(protocol(format!("frame of {len} bytes")));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    let data = Bytes::from(data);
    Ok(Some(if word & 0x8000_0000 != 0 {
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(protocol(format!("SPDY version {version}")));
        }
        Frame::Control {
            kind: (word & 0xffff) as u16,
            flags,
            data,
        }
    } else {
        Frame::Data {
            stream: word & 0x7fff_ffff,
            flags,
            data,
        }
    }))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
    b.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

fn data_frame(stream: u32, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u32(stream & 0x7fff_ffff);
    b.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

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
        self.shared.streams.lock().unwrap().remove(&self.id);
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
            reader_shared.streams.lock().unwrap().clear();
            reader_shared.replies.lock().unwrap().clear();
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
        self.shared.streams.lock().unwrap().insert(id, Some(tx));
        self.shared.replies.lock().unwrap().insert(id, reply_tx);
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
                let inbox = shared.streams.lock().unwrap().get(&stream).cloned();
                if let Some(Some(tx)) = inbox
                    && !data.is_empty()
                {
                    // A consumer that went away just drops the data.
                    let _ = tx.send(data).await;
                }
                if flags & FLAG_FIN != 0
                    && let Some(inbox) = shared.streams.lock().unwrap().get_mut(&stream)
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
                    shared.streams.lock().unwrap().insert(id, inbox);
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
                        shared.streams.lock().unwrap().remove(&id);
                    }
                }
                SYN_REPLY if data.len() >= 4 => {
                    let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                    // Keep the zlib stream in step, even if we ignore them.
                    inflate.decode(&data[4..])?;
                    if let Some(waiter) = shared.replies.lock().unwrap().remove(&id) {
                        let _ = waiter.send(());
                    }
                    if flags & FLAG_FIN != 0
                        && let Some(inbox) = shared.streams.lock().unwrap().get_mut(&id)
                    {
                        *inbox = None;
                    }
                }
                RST_STREAM if data.len() >= 4 => {
                    let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                    shared.streams.lock().unwrap().remove(&id);
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
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Its Adler-32 is the DICTID every SPDY/3 client puts in its first
        // header block.
        let mut c = Compress::new(Compression::default(), true);
        let id = c.set_dictionary(&DICTIONARY).unwrap();
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(id, 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_across_frames() {
        let mut w = HeaderWriter::new();
        let mut r = HeaderReader::new();
        let first: Headers = vec![("streamtype".into(), "error".into())];
        let second: Headers = vec![
            ("streamtype".into(), "data".into()),
            ("port".into(), "8080".into()),
        ];
        assert_eq!(r.decode(&w.encode(&first).unwrap()).unwrap(), first);
        assert_eq!(r.decode(&w.encode(&second).unwrap()).unwrap(), second);
        assert_eq!(r.decode(&w.encode(&Vec::new()).unwrap()).unwrap(), vec![]);
    }

    #[tokio::test]
    async fn streams_carry_data_and_fin_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut server = Connection::new(a);
        let client = Connection::new(b);
        let opening = tokio::spawn(async move {
            let s = client
                .open(vec![("streamtype".into(), "stdin".into())])
                .await
                .unwrap();
            (client, s)
        });
        let mut theirs = server.accept().await.unwrap();
        assert_eq!(header(&theirs.headers, "streamType"), Some("stdin"));
        let (_client, mut ours) = opening.await.unwrap();
        assert!(ours.writer.write(b"ping").await);
        ours.writer.close().await;
        assert_eq!(&theirs.incoming.recv().await.unwrap()[..], b"ping");
        assert!(theirs.incoming.recv().await.is_none());
        assert!(theirs.writer.write(&vec![7u8; 100_000]).await);
        theirs.writer.close().await;
        let mut got = 0;
        while let Some(chunk) = ours.incoming.recv().await {
            got += chunk.len();
        }
        assert_eq!(got, 100_000);
    }

    #[test]
    fn repeated_values_split_on_nul() {
        let mut b = Vec::new();
        b.put_u32(1);
        b.put_u32(1);
        b.put_slice(b"A");
        b.put_u32(3);
        b.put_slice(b"x\0y");
        let h = parse_headers(&b).unwrap();
        assert_eq!(h, vec![("a".into(), "x".into()), ("a".into(), "y".into())]);
        assert!(parse_headers(&[0, 0, 0, 1, 0, 0, 0, 9]).is_err());
    }
}

//! Lets any `:authority` through to the gRPC server on a unix socket.
//!
//! gRPC clients on a `unix:` target send whatever they like as `:authority`:
//! grpc-go and crictl send `localhost`, grpcio (C core 1.57+) sends the
//! percent-encoded socket path (`tmp%2Fcri.sock`), grpc-java the path
//! itself. h2, under tonic, refuses an authority that is not a valid URI
//! authority with RST_STREAM(PROTOCOL_ERROR) before any service or tower
//! layer sees the request, and has no setting to relax that. A socket has
//! no authority worth checking, so this wraps each accepted connection and
//! rewrites the client's header blocks on their way in: every block is
//! decoded (HPACK, with the client's dynamic table), an invalid `:authority`
//! becomes `localhost`, and the block is encoded again for h2 (with a table
//! of our own, so every block must be re-encoded, changed or not). Other
//! frames and everything the server writes pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may set: frames we write never
/// exceed it, whatever the server advertised.
const MAX_FRAME_LEN: usize = 16_384;
/// h2's (and the protocol's) default SETTINGS_HEADER_TABLE_SIZE: what the
/// client's encoder may use, and what ours uses.
const HEADER_TABLE_SIZE: usize = 4096;
/// Written in place of an authority h2 would refuse.
const REPLACEMENT: &[u8] = b"localhost";
/// A header block larger than this is passed on unread (h2's own limit on a
/// header list is far smaller).
const MAX_BLOCK_LEN: usize = 1 << 20;

/// A connection whose incoming header blocks are rewritten as described in
/// the module docs.
pub struct AnyAuthority<S> {
    inner: S,
    /// Bytes read from the client, not yet a whole frame.
    raw: BytesMut,
    /// Bytes ready for h2.
    ready: BytesMut,
    state: State,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    /// A HEADERS frame waiting for its CONTINUATIONs: its stream, flags,
    /// priority fields and the header block so far.
    pending: Option<PendingBlock>,
    eof: bool,
}

enum State {
    Preface,
    Frames,
    /// Something we cannot rewrite (a malformed frame sequence): the rest is
    /// passed as is, and h2 reports the protocol error itself.
    PassThrough,
}

struct PendingBlock {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as they came, to pass on if the block cannot be rewritten.
    raw: Vec<u8>,
}

impl<S> AnyAuthority<S> {
    pub fn new(inner: S) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            raw: BytesMut::new(),
            ready: BytesMut::new(),
            state: State::Preface,
            decoder,
            encoder: loona_hpack::Encoder::new(),
            pending: None,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves what `raw` holds of whole frames (rewritten) into `ready`.
    fn process(&mut self) {
        loop {
            match self.state {
                State::PassThrough => {
                    let all = self.raw.split();
                    self.ready.extend_from_slice(&all);
                    return;
                }
                State::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        // Not HTTP/2 with prior knowledge: not ours to touch.
                        self.state = State::PassThrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    let preface = self.raw.split_to(PREFACE.len());
                    self.ready.extend_from_slice(&preface);
                    self.state = State::Frames;
                }
                State::Frames => {
                    if self.raw.len() < FRAME_HEADER_LEN {
                        return;
                    }
                    let len =
                        u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
                    if self.raw.len() < FRAME_HEADER_LEN + len {
                        return;
                    }
                    let frame = self.raw.split_to(FRAME_HEADER_LEN + len);
                    self.frame(&frame);
                }
            }
        }
    }

    /// One whole frame (`raw`: header and payload), rewritten into `ready`;
    /// a sequence we cannot rewrite is passed on as it came, and so is
    /// everything after it.
    fn frame(&mut self, raw: &[u8]) {
        if let Err(Unrewritable { consumed }) = self.try_frame(raw) {
            tracing::debug!("HTTP/2 frames we cannot rewrite; passing them through");
            if let Some(pending) = self.pending.take() {
                self.ready.extend_from_slice(&pending.raw);
            }
            if !consumed {
                self.ready.extend_from_slice(raw);
            }
            self.state = State::PassThrough;
        }
    }

    fn try_frame(&mut self, raw: &[u8]) -> Result<(), Unrewritable> {
        let (typ, flags) = (raw[3], raw[4]);
        let stream_id = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff;
        let payload = &raw[FRAME_HEADER_LEN..];
        let not_consumed = Unrewritable { consumed: false };
        match (typ, &mut self.pending) {
            (HEADERS, None) => {
                let mut body = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    pad = *body.first().ok_or(not_consumed)? as usize;
                    body = &body[1..];
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    let fields = body.get(..5).ok_or(not_consumed)?;
                    priority = Some(<[u8; 5]>::try_from(fields).expect("five bytes"));
                    body = &body[5..];
                }
                let end = body.len().checked_sub(pad).ok_or(not_consumed)?;
                self.pending = Some(PendingBlock {
                    stream_id,
                    flags,
                    priority,
                    block: body[..end].to_vec(),
                    raw: raw.to_vec(),
                });
            }
            (CONTINUATION, Some(pending)) if pending.stream_id == stream_id => {
                pending.block.extend_from_slice(payload);
                pending.raw.extend_from_slice(raw);
                // Past any header list limit: refused here rather than
                // buffered without end (h2 answers the frames as they came).
                if pending.block.len() > MAX_BLOCK_LEN {
                    return Err(Unrewritable { consumed: true });
                }
            }
            // Frames between a HEADERS and its CONTINUATIONs are a
            // connection error for h2 to raise.
            (_, Some(_)) => return Err(not_consumed),
            _ => {
                self.ready.extend_from_slice(raw);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0 {
            let pending = self.pending.take().expect("a block is pending");
            match self.rewrite(&pending) {
                Some(frames) => self.ready.extend_from_slice(&frames),
                None => {
                    self.pending = Some(pending);
                    return Err(Unrewritable { consumed: true });
                }
            }
        }
        Ok(())
    }

    /// The block decoded, its authority fixed, encoded again, as a HEADERS
    /// frame and as many CONTINUATIONs as it needs; None if it does not
    /// decode (a compression error h2 will report).
    fn rewrite(&mut self, pending: &PendingBlock) -> Option<BytesMut> {
        let mut headers = self.decoder.decode(&pending.block).ok()?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                tracing::trace!(
                    authority = %String::from_utf8_lossy(value),
                    "replacing an :authority h2 would refuse"
                );
                *value = REPLACEMENT.to_vec();
            }
        }
        let block = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut out = BytesMut::with_capacity(block.len() + 32);
        let mut first = Vec::with_capacity(5 + block.len().min(MAX_FRAME_LEN));
        let mut flags = pending.flags & END_STREAM;
        if let Some(priority) = pending.priority {
            first.extend_from_slice(&priority);
            flags |= PRIORITY;
        }
        let room = MAX_FRAME_LEN - first.len();
        let (head, mut rest) = block.split_at(block.len().min(room));
        first.extend_from_slice(head);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        put_frame_header(&mut out, first.len(), HEADERS, flags, pending.stream_id);
        out.extend_from_slice(&first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_LEN));
            let flags = if tail.is_empty() { END_HEADERS } else { 0 };
            put_frame_header(
                &mut out,
                chunk.len(),
                CONTINUATION,
                flags,
                pending.stream_id,
            );
            out.extend_from_slice(chunk);
            rest = tail;
        }
        Some(out)
    }
}

/// Why a frame sequence is passed on as it came; `consumed`: the frame is
/// already part of the pending block's raw bytes.
#[derive(Clone, Copy)]
struct Unrewritable {
    consumed: bool,
}

fn put_frame_header(out: &mut BytesMut, len: usize, typ: u8, flags: u8, stream_id: u32) {
    let len = len as u32;
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(typ);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What is left is no whole frame: h2 sees it as it came.
                let rest = this.raw.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready.extend_from_slice(&rest);
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.raw.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AnyAuthority<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(typ: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), typ, flags, stream_id);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// Splits what the wrapper produced into frames (after the preface).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(bytes.starts_with(PREFACE), "the preface comes first");
        bytes = &bytes[PREFACE.len()..];
        let mut out = vec![];
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], id, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    async fn through(input: Vec<u8>, piece: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            for chunk in input.chunks(piece) {
                client.write_all(chunk).await.unwrap();
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut wrapped = AnyAuthority::new(server);
        let mut out = vec![];
        wrapped.read_to_end(&mut out).await.unwrap();
        drop(writer.await.unwrap());
        out
    }

    fn request_headers(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    #[tokio::test]
    async fn a_path_like_authority_becomes_localhost_and_the_rest_stays() {
        let mut client = loona_hpack::Encoder::new();
        let encode = |client: &mut loona_hpack::Encoder, authority: &str| {
            let headers = request_headers(authority);
            client.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
        };
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        // Stream 1: padded, with priority, in a HEADERS and a CONTINUATION.
        let block = encode(&mut client, "tmp%2Fcri.sock");
        let (a, b) = block.split_at(block.len() / 2);
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // Stream 3 uses the client's dynamic table from stream 1; a valid
        // authority is left alone.
        let block = encode(&mut client, "localhost:1234");
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &block));

        for piece in [1, 7, 4096] {
            let out = through(input.clone(), piece).await;
            let frames = frames(&out);
            let kinds: Vec<(u8, u32)> = frames.iter().map(|f| (f.0, f.2)).collect();
            assert_eq!(kinds, vec![(0x4, 0), (HEADERS, 1), (0x0, 1), (HEADERS, 3)]);
            let mut server = loona_hpack::Decoder::new();
            let (_, flags, _, payload) = &frames[1];
            assert_eq!(*flags, PRIORITY | END_HEADERS, "padding dropped, one frame");
            assert_eq!(&payload[..5], &[0, 0, 0, 0, 16], "priority kept");
            let got = server.decode(&payload[5..]).unwrap();
            assert_eq!(got, request_headers("localhost"));
            assert_eq!(frames[2].3, b"\0\0\0\0\0");
            let (_, flags, _, payload) = &frames[3];
            assert_eq!(*flags, END_HEADERS | END_STREAM);
            assert_eq!(
                server.decode(payload).unwrap(),
                request_headers("localhost:1234")
            );
        }
    }

    #[tokio::test]
    async fn a_large_block_is_split_into_continuations() {
        let mut headers = request_headers("/run/x.sock");
        headers.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block = loona_hpack::Encoder::new()
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut input = PREFACE.to_vec();
        for (i, chunk) in block.chunks(10_000).enumerate() {
            let last = (i + 1) * 10_000 >= block.len();
            let typ = if i == 0 { HEADERS } else { CONTINUATION };
            input.extend(frame(typ, if last { END_HEADERS } else { 0 }, 5, chunk));
        }
        let frames = frames(&through(input, 1000).await);
        assert!(frames.len() >= 3);
        assert!(frames.iter().all(|f| f.3.len() <= MAX_FRAME_LEN));
        assert_eq!(frames[0].0, HEADERS);
        assert!(frames[1..].iter().all(|f| f.0 == CONTINUATION));
        assert_eq!(frames.last().unwrap().1, END_HEADERS);
        let block: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
        headers[3].1 = b"localhost".to_vec();
        assert_eq!(loona_hpack::Decoder::new().decode(&block).unwrap(), headers);
    }

    #[tokio::test]
    async fn what_is_not_http2_or_breaks_the_sequence_passes_as_is() {
        let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(http1.clone(), 3).await, http1);

        // A DATA frame between a HEADERS and its CONTINUATION.
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, b"\x82"));
        input.extend(frame(0x0, 0, 1, b"data"));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b"\x84"));
        let frames = frames(&through(input, 5).await);
        let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
        assert_eq!(kinds, vec![HEADERS, 0x0, CONTINUATION]);
        assert_eq!(frames[0].3, b"\x82");
    }
}

//! SPDY/3 framing: constants, the header-block codec (zlib with the SPDY/3
//! dictionary) and frame reading and writing.

use super::*;

pub(super) const VERSION: u16 = 3;
pub(super) const SYN_STREAM: u16 = 1;
pub(super) const SYN_REPLY: u16 = 2;
/// How long an opened stream waits for its SYN_REPLY.
pub(super) const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub(super) const RST_STREAM: u16 = 3;
pub(super) const PING: u16 = 6;
pub(super) const GOAWAY: u16 = 7;
pub(super) const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub(super) const CANCEL: u32 = 5;
/// Largest frame payload we accept (the 24-bit length allows 16 MiB).
pub(super) const MAX_FRAME: usize = 1 << 20;
/// Largest DATA frame we send.
pub(super) const MAX_DATA: usize = 32 << 10;
/// Largest decompressed header block we accept.
pub(super) const MAX_HEADERS: usize = 256 << 10;
/// Queued chunks per stream before the connection's reader waits.
pub(super) const STREAM_QUEUE: usize = 64;

/// The zlib dictionary of SPDY/3 header blocks (SPDY/3 draft, section
/// 2.6.10.1): these header names, each prefixed by its 4-byte length, then
/// a run of common values.
pub(super) static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
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

pub(super) fn protocol(m: impl Into<String>) -> SpdyError {
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
pub(super) struct HeaderReader(Decompress);

impl HeaderReader {
    pub(super) fn new() -> Self {
        HeaderReader(Decompress::new(true))
    }

    pub(super) fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
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

pub(super) fn parse_headers(mut b: &[u8]) -> Result<Headers, SpdyError> {
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
pub(super) struct HeaderWriter(Compress);

impl HeaderWriter {
    pub(super) fn new() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = c.set_dictionary(&DICTIONARY);
        HeaderWriter(c)
    }

    pub(super) fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
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
pub(super) enum Frame {
    Control { kind: u16, flags: u8, data: Bytes },
    Data { stream: u32, flags: u8, data: Bytes },
}

pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Frame>, SpdyError> {
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

pub(super) fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
    b.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

pub(super) fn data_frame(stream: u32, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u32(stream & 0x7fff_ffff);
    b.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

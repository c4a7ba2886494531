//! Reading CRI log files for `/containerLogs`, as the kubelet's ReadLogs
//! does: `<RFC3339Nano> <stream> <P|F> <content>` records, a `P` (partial)
//! record's content continued by the next one and a logical line ended by
//! an `F` record. The rotated files (`0.log.<timestamp>`, oldest first) come
//! before the current one. tailLines is found by reading backwards from the
//! end, the rest is streamed forward in bounded chunks: no file and no line
//! is ever held whole. Follow polls the file for growth and rotation and
//! ends once the container is no longer running, as the kubelet's does.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// Bytes gathered before they are sent on.
const FLUSH_AT: usize = 32 * 1024;
/// How often a followed file is checked for growth.
const POLL: Duration = Duration::from_millis(200);
/// Polls without new data between checks that the container still runs.
const POLLS_PER_CHECK: u32 = 5;
/// A record header (timestamp, stream, tag) longer than this is not one.
const MAX_HEADER: usize = 128;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
    pub previous: bool,
}

/// A query the kubelet refuses: 400 for what does not parse, 422 for a
/// value out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptionsError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
}

fn flag(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE")
}

impl LogOptions {
    /// PodLogOptions from the query, `now` for sinceSeconds.
    pub fn parse(query: &[(String, String)], now: Timestamp) -> Result<Self, OptionsError> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let number = |k: &str, v: &str| {
            v.parse::<i64>().map_err(|_| {
                OptionsError::BadRequest(format!(
                    "unable to decode query: {k}={v:?} is not an integer"
                ))
            })
        };
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = flag(v),
                "previous" => o.previous = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "tailLines" => {
                    let n = number(k, v)?;
                    if n < 0 {
                        return Err(OptionsError::Invalid(format!(
                            "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                        )));
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = number(k, v)?;
                    if n < 1 {
                        return Err(OptionsError::Invalid(format!(
                            "limitBytes: Invalid value: {n}: must be greater than 0"
                        )));
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = number(k, v)?;
                    if n < 1 {
                        return Err(OptionsError::Invalid(format!(
                            "sinceSeconds: Invalid value: {n}: must be greater than 0"
                        )));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t = v.parse::<Timestamp>().map_err(|e| {
                        OptionsError::BadRequest(format!(
                            "unable to decode query: sinceTime={v:?} is not an RFC 3339 time: {e}"
                        ))
                    })?;
                    o.since = Some(t);
                }
                _ => {}
            }
        }
        if let Some(s) = since_seconds {
            if o.since.is_some() {
                return Err(OptionsError::Invalid(
                    "at most one of sinceTime or sinceSeconds may be specified".into(),
                ));
            }
            o.since = Some(
                now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                    .unwrap_or(Timestamp::MIN),
            );
        }
        Ok(o)
    }
}

/// The files of one container instance, oldest first: the rotated ones
/// beside `current` (`<name>.<suffix>`, compressed ones skipped) and then
/// `current` itself.
pub fn log_files(current: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return vec![current.to_path_buf()];
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let ok = n.starts_with(&prefix)
                && !n.ends_with(".gz")
                && !n.ends_with(".tmp")
                && e.file_type().is_ok_and(|t| t.is_file());
            ok.then(|| e.path())
        })
        .collect();
    rotated.sort();
    rotated.push(current.to_path_buf());
    rotated
}

/// Whether the record starting at `offset` is a full (`F`) one.
fn is_full_record(file: &std::fs::File, offset: u64) -> std::io::Result<bool> {
    let mut head = [0u8; MAX_HEADER];
    let n = file.read_at(&mut head, offset)?;
    let mut fields = head[..n].splitn(4, |b| *b == b' ');
    let (_, _, tag) = (fields.next(), fields.next(), fields.next());
    Ok(tag.is_some_and(|t| t.first() == Some(&b'F')))
}

/// In one file: the offset after which `need` full lines remain, or how
/// many full lines the whole file holds when that is fewer.
fn tail_in_file(path: &Path, need: u64) -> std::io::Result<Result<u64, u64>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut found = 0u64;
    // The newline ending the record whose start is being looked for.
    let mut record_end: Option<u64> = None;
    let mut block = vec![0u8; 64 * 1024];
    let mut pos = len;
    while pos > 0 {
        let start = pos.saturating_sub(block.len() as u64);
        let size = (pos - start) as usize;
        file.read_exact_at(&mut block[..size], start)?;
        for i in (0..size).rev() {
            if block[i] != b'\n' {
                continue;
            }
            let nl = start + i as u64;
            if let Some(end) = record_end
                && is_full_record(&file, nl + 1)?
            {
                found += 1;
                if found > need {
                    return Ok(Ok(end + 1));
                }
            }
            record_end = Some(nl);
        }
        pos = start;
    }
    if let Some(end) = record_end
        && is_full_record(&file, 0)?
    {
        found += 1;
        if found > need {
            return Ok(Ok(end + 1));
        }
    }
    Ok(Err(found))
}

/// Where the last `n` lines begin: (index into `files`, offset).
pub fn tail_start(files: &[PathBuf], n: u64) -> std::io::Result<(usize, u64)> {
    let mut need = n;
    for (idx, path) in files.iter().enumerate().rev() {
        match tail_in_file(path, need) {
            Ok(Ok(offset)) => return Ok((idx, offset)),
            Ok(Err(found)) => need -= found,
            // A rotated file removed meanwhile holds nothing any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok((0, 0))
}

enum State {
    Header,
    Content { partial: bool, skip: bool },
}

/// The record parser and output writer, kept across reads (and across the
/// waits of a follow), so a record cut by the end of the file goes on.
struct Copier<'a> {
    opts: &'a LogOptions,
    state: State,
    header: Vec<u8>,
    at_line_start: bool,
    remaining: Option<u64>,
    out: BytesMut,
    tx: &'a mpsc::Sender<Bytes>,
}

/// Why a copy stopped early.
#[derive(Debug, PartialEq)]
enum Stop {
    /// limitBytes reached, or the client went away.
    Done,
}

impl Copier<'_> {
    fn emit(&mut self, data: &[u8]) -> Result<(), Stop> {
        let data = match self.remaining {
            Some(0) => return Err(Stop::Done),
            Some(r) if (data.len() as u64) > r => &data[..r as usize],
            _ => data,
        };
        self.out.extend_from_slice(data);
        if let Some(r) = &mut self.remaining {
            *r -= data.len() as u64;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if !self.out.is_empty() {
            let chunk = self.out.split().freeze();
            self.tx.send(chunk).await.map_err(|_| Stop::Done)?;
        }
        if self.remaining == Some(0) {
            return Err(Stop::Done);
        }
        Ok(())
    }

    fn new_file(&mut self) {
        self.header.clear();
        self.state = State::Header;
    }

    fn start_record(&mut self) {
        let text = String::from_utf8_lossy(&self.header).into_owned();
        self.header.clear();
        let mut fields = text.split(' ');
        let (ts, _stream, tag) = (fields.next(), fields.next(), fields.next());
        let time = ts.and_then(|t| t.parse::<Timestamp>().ok());
        let (Some(ts), Some(time), Some(tag)) = (ts, time, tag) else {
            // Not a CRI record: its content is skipped, as a line the
            // kubelet cannot parse is.
            self.state = State::Content {
                partial: false,
                skip: true,
            };
            return;
        };
        let skip = self.opts.since.is_some_and(|s| time < s);
        let partial = tag.starts_with('P');
        if !skip && self.opts.timestamps && self.at_line_start {
            let prefix = format!("{ts} ");
            let _ = self.emit(prefix.as_bytes());
        }
        self.state = State::Content { partial, skip };
    }

    /// Consumes `buf` (one read's worth); how much of it was used.
    fn feed(&mut self, buf: &[u8]) -> Result<usize, Stop> {
        let mut used = 0;
        while used < buf.len() {
            let rest = &buf[used..];
            match self.state {
                State::Header => {
                    let needed = 3 - self.header.iter().filter(|b| **b == b' ').count();
                    let mut spaces = 0;
                    let mut end = None;
                    for (i, b) in rest.iter().enumerate() {
                        if *b == b'\n' {
                            end = Some((i, true));
                            break;
                        }
                        if *b == b' ' {
                            spaces += 1;
                            if spaces == needed {
                                end = Some((i, false));
                                break;
                            }
                        }
                    }
                    match end {
                        // A line with no content at all: not a record.
                        Some((i, true)) => {
                            self.header.clear();
                            used += i + 1;
                        }
                        Some((i, false)) => {
                            self.header.extend_from_slice(&rest[..i]);
                            used += i + 1;
                            self.start_record();
                        }
                        None => {
                            self.header.extend_from_slice(rest);
                            used += rest.len();
                            if self.header.len() > MAX_HEADER {
                                self.header.clear();
                                self.state = State::Content {
                                    partial: false,
                                    skip: true,
                                };
                            }
                        }
                    }
                }
                State::Content { partial, skip } => {
                    let nl = rest.iter().position(|b| *b == b'\n');
                    let content = &rest[..nl.unwrap_or(rest.len())];
                    if !skip {
                        self.emit(content)?;
                        if !content.is_empty() {
                            self.at_line_start = false;
                        }
                    }
                    used += content.len();
                    if nl.is_some() {
                        used += 1;
                        if !skip && !partial {
                            self.emit(b"\n")?;
                            self.at_line_start = true;
                        }
                        self.state = State::Header;
                    }
                }
            }
            if self.remaining == Some(0) {
                return Err(Stop::Done);
            }
        }
        Ok(used)
    }

    /// Reads `reader` to its current end.
    async fn drain(&mut self, reader: &mut BufReader<tokio::fs::File>) -> std::io::Result<bool> {
        let mut any = false;
        loop {
            let buf = reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(any);
            }
            any = true;
            let n = buf.len();
            let result = self.feed(buf);
            reader.consume(n);
            if result.is_err() {
                return Err(std::io::Error::other("stopped"));
            }
            if self.out.len() >= FLUSH_AT && self.flush().await.is_err() {
                return Err(std::io::Error::other("stopped"));
            }
        }
    }
}

/// Is the followed container still running? Asked every second or so
/// when the file stops growing.
pub trait StillRunning: Send {
    fn check(&mut self) -> impl Future<Output = bool> + Send;
}

async fn open_at(path: &Path, offset: u64) -> std::io::Result<(BufReader<tokio::fs::File>, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let ino = f.metadata().await?.ino();
    if offset > 0 {
        f.seek(std::io::SeekFrom::Start(offset)).await?;
    }
    Ok((BufReader::with_capacity(64 * 1024, f), ino))
}

/// Streams the logs in `files` (oldest first; the last is the live one)
/// to `tx` as `opts` asks. Returns when done, when the client is gone, or
/// (following) when `running` says the container stopped.
pub async fn stream(
    files: Vec<PathBuf>,
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
    mut running: impl StillRunning,
) -> std::io::Result<()> {
    let (first, offset) = match opts.tail_lines {
        Some(n) => {
            let files = files.clone();
            tokio::task::spawn_blocking(move || tail_start(&files, n))
                .await
                .map_err(std::io::Error::other)??
        }
        None => (0, 0),
    };
    let mut copier = Copier {
        opts: &opts,
        state: State::Header,
        header: Vec::new(),
        at_line_start: true,
        remaining: opts.limit_bytes,
        out: BytesMut::new(),
        tx: &tx,
    };
    let last = files.len().saturating_sub(1);
    for (idx, path) in files.iter().enumerate().skip(first) {
        let start = if idx == first { offset } else { 0 };
        // A record never spans files: one cut at the end of the last file
        // ends there (its line goes on with the next record).
        copier.new_file();
        let (mut reader, mut ino) = match open_at(path, start).await {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && idx != last => continue,
            Err(e) => return Err(e),
        };
        if copier.drain(&mut reader).await.is_err() {
            let _ = copier.flush().await;
            return Ok(());
        }
        if idx != last || !opts.follow {
            continue;
        }
        let mut idle = 0u32;
        loop {
            if copier.flush().await.is_err() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return Ok(()),
            }
            match copier.drain(&mut reader).await {
                Ok(true) => {
                    idle = 0;
                    continue;
                }
                Ok(false) => {}
                Err(_) => {
                    let _ = copier.flush().await;
                    return Ok(());
                }
            }
            // Rotated (the path is a new file): finish the old one, which
            // is at its end now, and go on with the new one from its start.
            if let Ok(meta) = tokio::fs::metadata(path).await
                && meta.ino() != ino
                && let Ok((r, i)) = open_at(path, 0).await
            {
                (reader, ino) = (r, i);
                copier.new_file();
                idle = 0;
                continue;
            }
            idle += 1;
            if idle >= POLLS_PER_CHECK {
                idle = 0;
                if !running.check().await {
                    // Whatever it wrote last, then the end.
                    let _ = copier.drain(&mut reader).await;
                    break;
                }
            }
        }
    }
    let _ = copier.flush().await;
    Ok(())
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;

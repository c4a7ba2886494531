//! The CRI container log format, as the kubelet and `crictl logs` read it:
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n`, one entry per
//! line of output; a line longer than the buffer, or cut off at the end of
//! the stream, is written in pieces tagged `P` (partial), the last one `F`.

use std::io::Write;
use std::time::SystemTime;

/// The kubelet splits at 16 KiB; so do we.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns a byte stream into CRI log entries, keeping an unfinished line
/// until its newline (or the buffer limit, or the end) arrives.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds bytes, writing every complete entry to `out`.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        now: SystemTime,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) if self.pending.len() + i <= MAX_LINE => {
                    self.pending.extend_from_slice(&rest[..i]);
                    self.emit(true, now, out)?;
                    rest = &rest[i + 1..];
                }
                _ => {
                    let room = MAX_LINE - self.pending.len();
                    let take = room.min(rest.len());
                    self.pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.pending.len() == MAX_LINE {
                        self.emit(false, now, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended: an unfinished line is written as partial.
    pub fn finish(&mut self, now: SystemTime, out: &mut impl Write) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.emit(false, now, out)?;
        }
        Ok(())
    }

    fn emit(&mut self, full: bool, now: SystemTime, out: &mut impl Write) -> std::io::Result<()> {
        let mut entry = Vec::with_capacity(self.pending.len() + 48);
        write!(
            entry,
            "{} {} {} ",
            humantime::format_rfc3339_nanos(now),
            self.stream.tag(),
            if full { "F" } else { "P" }
        )?;
        entry.extend_from_slice(&self.pending);
        entry.push(b'\n');
        // One write per entry, so two streams into one file never interleave
        // inside an entry.
        out.write_all(&entry)?;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], finish: bool) -> String {
        let now =
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789);
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stdout);
        for c in chunks {
            s.feed(c, now, &mut out).unwrap();
        }
        if finish {
            s.finish(now, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_lines_across_chunks() {
        let out = run(&[b"hel", b"lo\nwor", b"ld\n"], false);
        assert_eq!(
            out,
            "2023-11-14T22:13:20.123456789Z stdout F hello\n2023-11-14T22:13:20.123456789Z stdout F world\n"
        );
    }

    #[test]
    fn unterminated_last_line_is_partial() {
        let out = run(&[b"no newline"], true);
        assert_eq!(out, "2023-11-14T22:13:20.123456789Z stdout P no newline\n");
        assert_eq!(run(&[b"kept"], false), "", "held until more comes");
    }

    #[test]
    fn long_lines_split_at_the_limit() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut input = long.clone();
        input.push(b'\n');
        let out = run(&[&input], false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(" P ") && lines[0].ends_with(&"x".repeat(100)));
        assert!(lines[1].ends_with(" F xxxxxxxxxx"));
    }

    #[test]
    fn empty_lines_are_entries() {
        assert_eq!(
            run(&[b"\n"], false),
            "2023-11-14T22:13:20.123456789Z stdout F \n"
        );
    }
}

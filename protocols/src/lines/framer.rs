//! Splitting a serial byte stream into lines.
//!
//! A line ends at `\n`; a `\r` before it is dropped, and blank lines are
//! skipped. A line longer than `max_line` bytes is reported once as
//! [`LineEvent::Overlong`] and everything up to the next `\n` is discarded,
//! so the stream resynchronises at the next line break whatever arrives.

/// What the framer found in the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// One complete line, without its terminator.
    Line(Vec<u8>),
    /// A line passed `max_line` bytes; it is discarded up to the next `\n`.
    Overlong,
}

/// A resumable line splitter: feed it chunks as they arrive.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_line: usize,
    /// Inside an over-long line: drop bytes until the next `\n`.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes (at least 1).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            max_line: max_line.max(1),
            discarding: false,
        }
    }

    /// Splits `chunk`, continuing whatever line the previous chunk left open,
    /// and appends what it found to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<LineEvent>) {
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&b| b == b'\n');
            let (part, rest, complete) = match end {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if !complete {
                // One byte of slack: it may be the `\r` of a `\r\n`.
                if self.buf.len() + part.len() > self.max_line + 1 {
                    self.buf.clear();
                    out.push(LineEvent::Overlong);
                    self.discarding = true;
                } else {
                    self.buf.extend_from_slice(part);
                }
                continue;
            }
            let ends_cr = part.last().or(self.buf.last()) == Some(&b'\r');
            let content = self.buf.len() + part.len() - usize::from(ends_cr);
            if content > self.max_line {
                self.buf.clear();
                out.push(LineEvent::Overlong);
                continue;
            }
            self.buf.extend_from_slice(part);
            let mut line = std::mem::take(&mut self.buf);
            if ends_cr {
                line.pop();
            }
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                out.push(LineEvent::Line(line));
            }
        }
    }

    /// Forgets the open line (the port closed mid-line). Returns how many
    /// bytes of it were discarded; 0 if the stream was at a line boundary.
    pub fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.discarding = false;
        n
    }

    /// Bytes of the line currently open.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]], max: usize) -> Vec<LineEvent> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(s: &str) -> LineEvent {
        LineEvent::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let out = frame(&[b"a=1\r\nb=", b"2\n", b"c=3"], 64);
        assert_eq!(out, vec![line("a=1"), line("b=2")]);
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(frame(&[b"\n\r\n  \nx\n"], 64), vec![line("x")]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_survives() {
        let out = frame(&[b"0123456789", b"0123456789", b"abc\nok\n"], 8);
        assert_eq!(out, vec![LineEvent::Overlong, line("ok")]);
        // Exactly at the limit is fine, with or without a trailing \r.
        assert_eq!(frame(&[b"12345678\r\n"], 8), vec![line("12345678")]);
        assert_eq!(
            frame(&[b"123456789\nz\n"], 8),
            vec![LineEvent::Overlong, line("z")]
        );
    }

    #[test]
    fn a_crlf_split_between_chunks_is_framed_as_if_whole() {
        // Found by the fuzzer: a `\r` at the end of one chunk and the `\n`
        // at the start of the next.
        assert_eq!(frame(&[b"abc\r", b"\n"], 3), vec![line("abc")]);
        assert_eq!(frame(&[b"abcd", b"\r\n"], 3), vec![LineEvent::Overlong]);
        assert_eq!(
            frame(&[b"ab", b"cd\r", b"\nok\n"], 3),
            vec![LineEvent::Overlong, line("ok")]
        );
    }

    #[test]
    fn reset_discards_the_open_line() {
        let mut f = LineFramer::new(64);
        let mut out = Vec::new();
        f.push(b"full\npart", &mut out);
        assert_eq!(f.reset(), 4);
        f.push(b"next\n", &mut out);
        assert_eq!(out, vec![line("full"), line("next")]);
        assert_eq!(f.reset(), 0);
    }
}

//! The zero-copy scanner: splits a body into lines and each line into its
//! measurement, tags, fields and timestamp, borrowing from the body.
//!
//! The scanner checks syntax only. Names are validated, and timestamps
//! converted, when a [`ParsedLine`] becomes a [`Reading`](crate::Reading)
//! (see [`ParsedLine::into_reading`]).

use std::borrow::Cow;
use std::iter::FusedIterator;

use super::error::{LineError, LineErrorKind, Snippet};
use super::line::{ParsedField, ParsedLine, ParsedTag, ParsedTimestamp, ParsedValue};
use super::value::{parse_timestamp, scalar, unescape};

/// Parses every line of `body`, lazily, without copying.
///
/// Blank lines and comments are skipped; every other line yields either a
/// [`ParsedLine`] or a [`LineError`]. A bad line never stops the lines after
/// it.
pub fn parse_lines(body: &[u8]) -> Lines<'_> {
    Lines {
        rest: body,
        next_line: 1,
    }
}

/// The iterator returned by [`parse_lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
    /// The 1-based number of the first line in `rest`.
    next_line: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<ParsedLine<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let line_no = self.next_line;
            self.next_line += 1;
            let raw = match find_newline(self.rest) {
                Some(i) => {
                    let (raw, rest) = self.rest.split_at(i);
                    self.rest = rest.get(1..).unwrap_or_default();
                    raw
                }
                None => std::mem::take(&mut self.rest),
            };
            // Trailing whitespace (including the `\r` of CRLF) never carries
            // meaning: a line always ends in a field value or a timestamp.
            let mut line = raw;
            while let [head @ .., b' ' | b'\t' | b'\r'] = line {
                line = head;
            }
            let start = line
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(line.len());
            match line.get(start) {
                None | Some(b'#') => continue,
                Some(_) => {}
            }
            return Some(match std::str::from_utf8(line) {
                Ok(s) => parse_line(s, start, line_no),
                Err(e) => Err(LineError {
                    line: line_no,
                    column: e.valid_up_to() + 1,
                    kind: LineErrorKind::InvalidUtf8,
                }),
            });
        }
        None
    }
}

impl FusedIterator for Lines<'_> {}

/// The index of the first `\n` in `b`, eight bytes at a time.
#[inline]
fn find_newline(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = b.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NL;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'\n')
        .map(|i| offset + i)
}

/// Parses one line. `start` is the byte offset of its first non-whitespace
/// character; `line` is its 1-based number.
pub(crate) fn parse_line(s: &str, start: usize, line: usize) -> Result<ParsedLine<'_>, LineError> {
    let mut sc = Scanner {
        s,
        b: s.as_bytes(),
        pos: start,
        line,
    };

    let (measurement, escaped) = sc.name(|c| c == b',' || c == b' ');
    if measurement == sc.pos {
        return Err(sc.err(measurement, LineErrorKind::MissingMeasurement));
    }
    let measurement_column = measurement + 1;
    let measurement = sc.cow_name(measurement, escaped);

    let mut tags = Vec::with_capacity(8);
    while sc.peek() == Some(b',') {
        sc.pos += 1;
        let (k, escaped) = sc.name(|c| matches!(c, b'=' | b',' | b' '));
        if k == sc.pos {
            return Err(sc.err(k, LineErrorKind::EmptyTagKey));
        }
        let key = sc.cow_name(k, escaped);
        if sc.peek() != Some(b'=') {
            let key = Snippet::new(&key);
            return Err(sc.err(sc.pos, LineErrorKind::ExpectedTagEquals { key }));
        }
        sc.pos += 1;
        let (v, escaped) = sc.name(|c| c == b',' || c == b' ');
        if v == sc.pos {
            let key = Snippet::new(&key);
            return Err(sc.err(v, LineErrorKind::EmptyTagValue { key }));
        }
        let value = sc.cow_name(v, escaped);
        tags.push(ParsedTag {
            key,
            value,
            column: k + 1,
        });
    }

    sc.skip_spaces();
    if sc.at_end() {
        return Err(sc.err(sc.pos, LineErrorKind::MissingFields));
    }

    let mut fields = Vec::with_capacity(8);
    let mut timestamp = None;
    loop {
        let (k, escaped) = sc.name(|c| matches!(c, b'=' | b',' | b' '));
        if k == sc.pos {
            return Err(sc.err(k, LineErrorKind::EmptyFieldKey));
        }
        let key = sc.cow_name(k, escaped);
        if sc.peek() != Some(b'=') {
            let key = Snippet::new(&key);
            return Err(sc.err(sc.pos, LineErrorKind::ExpectedFieldEquals { key }));
        }
        sc.pos += 1;
        let value = sc.field_value(&key)?;
        fields.push(ParsedField {
            key,
            value,
            column: k + 1,
        });
        match sc.peek() {
            None => break,
            Some(b',') => sc.pos += 1,
            Some(b' ') => {
                timestamp = sc.timestamp()?;
                break;
            }
            Some(_) => {
                let key = Snippet::new(fields.last().map_or("", |f| &f.key));
                return Err(sc.err(sc.pos, LineErrorKind::ExpectedSeparator { key }));
            }
        }
    }

    Ok(ParsedLine {
        line,
        measurement,
        measurement_column,
        tags,
        fields,
        timestamp,
    })
}

/// A cursor over one line.
struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn err(&self, at: usize, kind: LineErrorKind) -> LineError {
        LineError {
            line: self.line,
            column: at + 1,
            kind,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// `s[start..end]`. Every offset the scanner produces sits next to an
    /// ASCII byte or at an end, so it is a char boundary.
    #[inline]
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.s.get(start..end).unwrap_or_default()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Advances to the first unescaped byte for which `stop` holds (or the
    /// end). Returns where the name started and whether it holds a `\`.
    /// Every stop byte is escapable, so skipping the byte after each `\` is
    /// right whether or not that `\` turns out to be literal.
    #[inline]
    fn name(&mut self, stop: impl Fn(u8) -> bool) -> (usize, bool) {
        let start = self.pos;
        let mut escaped = false;
        while let Some(&c) = self.b.get(self.pos) {
            if c == b'\\' {
                escaped = true;
                self.pos += 2;
            } else if stop(c) {
                break;
            } else {
                self.pos += 1;
            }
        }
        self.pos = self.pos.min(self.b.len());
        (start, escaped)
    }

    /// The name from `start` to the cursor, unescaped if needed.
    #[inline]
    fn cow_name(&self, start: usize, escaped: bool) -> Cow<'a, str> {
        let raw = self.slice(start, self.pos);
        if escaped {
            Cow::Owned(unescape(raw, |c| matches!(c, b',' | b'=' | b' ' | b'\\')))
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// A field value; the cursor is just after the `=`.
    fn field_value(&mut self, key: &str) -> Result<ParsedValue<'a>, LineError> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let mut escaped = false;
            loop {
                match self.b.get(self.pos) {
                    None => {
                        let key = Snippet::new(key);
                        return Err(self.err(start, LineErrorKind::UnterminatedString { key }));
                    }
                    Some(b'\\') => {
                        escaped = true;
                        self.pos += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => self.pos += 1,
                }
            }
            let raw = self.slice(start + 1, self.pos);
            self.pos += 1;
            return Ok(ParsedValue::Str(if escaped {
                Cow::Owned(unescape(raw, |c| c == b'"' || c == b'\\'))
            } else {
                Cow::Borrowed(raw)
            }));
        }
        while let Some(c) = self.peek() {
            if c == b',' || c == b' ' {
                break;
            }
            self.pos += 1;
        }
        let token = self.slice(start, self.pos);
        if token.is_empty() {
            let key = Snippet::new(key);
            return Err(self.err(start, LineErrorKind::MissingFieldValue { key }));
        }
        scalar(token, key).map_err(|kind| self.err(start, kind))
    }

    /// The optional timestamp; the cursor is on the space before it.
    fn timestamp(&mut self) -> Result<Option<ParsedTimestamp>, LineError> {
        self.skip_spaces();
        if self.at_end() {
            return Ok(None);
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' {
                break;
            }
            self.pos += 1;
        }
        let raw = self.slice(start, self.pos);
        let value = parse_timestamp(raw).map_err(|kind| self.err(start, kind))?;
        self.skip_spaces();
        if !self.at_end() {
            return Err(self.err(self.pos, LineErrorKind::TrailingCharacters));
        }
        Ok(Some(ParsedTimestamp {
            value,
            column: start + 1,
        }))
    }
}

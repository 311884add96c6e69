//! Reading a received file in chunks of input rows, whatever its format.
//!
//! A chunk is the next `chunk_rows` input rows (lines, CSV records, Parquet
//! rows, good or bad), so a file is always cut at the same places: chunk
//! `n` of a resumed job is chunk `n` of the first run, and its `txn`
//! version in the tables says whether it is in. Only one chunk is in
//! memory at a time (plus the one being committed).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use ferry_protocols::{Reading, lp};

use super::options::{Format, ImportOptions};
use crate::ingest::write::Locator;

/// One chunk of a file.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub readings: Vec<(Locator, Reading)>,
    /// Rows that could not be read, with why.
    pub rejected: Vec<(Locator, String)>,
    /// The file's bytes read up to the end of this chunk.
    pub bytes_done: u64,
}

/// A file being read chunk by chunk.
pub(crate) trait Source: Send {
    /// The next chunk of up to `rows` input rows; `None` at the end. An
    /// error ends the job (the file cannot be read on).
    fn next_chunk(&mut self, rows: usize) -> Result<Option<Chunk>, String>;
}

/// Opens `path` for `options`; errors are about the file (its header, its
/// schema) and are answered 400 before a job is made.
pub(crate) fn open(
    path: &Path,
    options: &ImportOptions,
    max_record: usize,
    now_ns: i64,
) -> Result<Box<dyn Source>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open the received file: {e}"))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    if total == 0 {
        return Err("file is empty".to_owned());
    }
    match options.format {
        Format::Lp => Ok(Box::new(LineProtocol::new(
            file, options, max_record, now_ns,
        ))),
        Format::Csv => Ok(Box::new(super::csv::CsvSource::open(
            file, options, max_record,
        )?)),
        Format::Parquet => Ok(Box::new(super::parquet::ParquetSource::open(
            file, total, options,
        )?)),
    }
}

/// Reads one line (up to and without its `\n`) into `buf`, keeping at most
/// `max` bytes; answers the bytes consumed and whether the line was longer
/// (its rest is skipped, not kept).
pub(crate) fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(u64, bool)> {
    let mut consumed = 0u64;
    let mut over = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, over));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let content = if done { take - 1 } else { take };
        let room = max.saturating_sub(buf.len());
        if content > room {
            over = true;
        }
        if !over {
            buf.extend_from_slice(&available[..content]);
        }
        reader.consume(take);
        consumed += take as u64;
        if done {
            return Ok((consumed, over));
        }
    }
}

/// Line protocol: lines in order; a line without a time gets the job's
/// creation time (the same on a resumed run).
struct LineProtocol {
    reader: BufReader<File>,
    precision: ferry_protocols::Precision,
    filter: Option<String>,
    max_record: usize,
    now_ns: i64,
    line: u64,
    bytes: u64,
    text: Vec<u8>,
    one: Vec<u8>,
}

impl LineProtocol {
    fn new(file: File, options: &ImportOptions, max_record: usize, now_ns: i64) -> Self {
        LineProtocol {
            reader: BufReader::with_capacity(1 << 20, file),
            precision: options.precision,
            filter: options.measurement.clone(),
            max_record,
            now_ns,
            line: 0,
            bytes: 0,
            text: Vec::new(),
            one: Vec::new(),
        }
    }
}

impl Source for LineProtocol {
    fn next_chunk(&mut self, rows: usize) -> Result<Option<Chunk>, String> {
        let mut chunk = Chunk::default();
        self.text.clear();
        let first = self.line + 1;
        let mut lines = 0usize;
        while lines < rows {
            self.one.clear();
            let (n, over) = read_line_capped(&mut self.reader, &mut self.one, self.max_record)
                .map_err(|e| format!("reading the file: {e}"))?;
            if n == 0 {
                break;
            }
            self.bytes += n;
            self.line += 1;
            lines += 1;
            if over {
                chunk.rejected.push((
                    Locator::Line(self.line),
                    format!(
                        "line longer than import.max_record_size ({} bytes)",
                        self.max_record
                    ),
                ));
                self.one.clear();
            }
            // Every input line keeps its place, so parse errors carry the
            // file's line numbers.
            self.text.extend_from_slice(&self.one);
            self.text.push(b'\n');
        }
        if lines == 0 {
            return Ok(None);
        }
        for parsed in lp::parse_lines(&self.text) {
            match parsed {
                Ok(l) => {
                    let at = Locator::Line(first + l.line as u64 - 1);
                    match l.into_reading(self.precision, self.now_ns) {
                        Ok(r) => {
                            if self
                                .filter
                                .as_deref()
                                .is_none_or(|m| r.measurement.as_str() == m)
                            {
                                chunk.readings.push((at, r));
                            }
                        }
                        Err(e) => chunk.rejected.push((
                            Locator::Line(first + e.line as u64 - 1),
                            format!("column {}: {}", e.column, e.kind),
                        )),
                    }
                }
                Err(e) => chunk.rejected.push((
                    Locator::Line(first + e.line as u64 - 1),
                    format!("column {}: {}", e.column, e.kind),
                )),
            }
        }
        chunk.bytes_done = self.bytes;
        Ok(Some(chunk))
    }
}

/// Counts the bytes read since the last [`Guarded::reset`] and fails a read
/// past `max`: a CSV record (which the reader holds whole) cannot grow
/// without bound.
pub(crate) struct Guarded<R> {
    inner: R,
    since: std::sync::Arc<std::sync::atomic::AtomicU64>,
    max: u64,
}

impl<R> Guarded<R> {
    pub(crate) fn new(inner: R, max: u64) -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let since = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            Guarded {
                inner,
                since: since.clone(),
                max,
            },
            since,
        )
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        if self.since.load(Ordering::Relaxed) > self.max {
            return Err(std::io::Error::other(format!(
                "a record is longer than import.max_record_size ({} bytes)",
                self.max
            )));
        }
        let n = self.inner.read(buf)?;
        self.since.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_flagged_and_the_next_line_is_whole() {
        let mut r = std::io::Cursor::new(b"abcdef\nxy\nlast".to_vec());
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut buf, 3).unwrap(), (7, true));
        buf.clear();
        assert_eq!(read_line_capped(&mut r, &mut buf, 3).unwrap(), (3, false));
        assert_eq!(buf, b"xy");
        buf.clear();
        assert_eq!(read_line_capped(&mut r, &mut buf, 3).unwrap(), (4, true));
        buf.clear();
        assert_eq!(read_line_capped(&mut r, &mut buf, 3).unwrap(), (0, false));
    }
}

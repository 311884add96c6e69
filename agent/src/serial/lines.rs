//! Line mode: a device that prints one reading per line.
//!
//! Bytes are framed into lines ([`LineFramer`]), each line is decoded
//! ([`LineDecoder`]), and the readings are committed in batches, one commit
//! in flight while reading goes on.
//! Errors are counted by kind and skipped: `decode` (the line did not parse),
//! `encoding` (not UTF-8), `overlong` (past `max_line`), `partial` (the port
//! closed mid-line). The stream resynchronises at the next line break.

use ferry_protocols::lines::{LineDecoder, LineError, LineEvent, LineFramer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::status::PortHandle;
use super::{Ended, store};
use crate::ingest::Incoming;
use crate::route::Buffer;
use ferry_protocols::DatabaseName;

/// Most decoded readings waiting for the commit in flight.
pub const MAX_PENDING: usize = 50_000;

type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Ended>> + Send>>;

/// Starts committing `readings` (see [`store`]).
fn commit<B: Buffer>(buffer: &B, readings: Vec<Incoming>, port: &PortHandle) -> Commit {
    let (buffer, port) = (buffer.clone(), port.clone());
    Box::pin(async move { store(&buffer, readings, &port).await })
}

/// One port's line state; survives reopens (the clock stays monotonic).
#[derive(Debug)]
pub struct LineReader {
    framer: LineFramer,
    decoder: LineDecoder,
    database: DatabaseName,
    last_time_ns: i64,
}

impl LineReader {
    pub fn new(decoder: LineDecoder, database: DatabaseName, max_line: usize) -> Self {
        LineReader {
            framer: LineFramer::new(max_line),
            decoder,
            database,
            last_time_ns: 0,
        }
    }

    /// Reads until `stop` or until the port fails, then commits what it has
    /// read.
    ///
    /// One commit is in flight at a time while reading goes on: lines that
    /// arrive during a commit are decoded and wait for the next one, so a
    /// fast device is committed in large batches instead of one read at a
    /// time. Past [`MAX_PENDING`] waiting readings, reading pauses until
    /// the commit returns (the device's bytes wait in the kernel's buffer).
    pub async fn run<R: AsyncRead + Unpin, B: Buffer>(
        &mut self,
        port_io: &mut R,
        buffer: &B,
        port: &PortHandle,
        stop: &CancellationToken,
    ) -> Ended {
        let mut buf = vec![0u8; 8192];
        let mut events = Vec::new();
        let mut pending: Vec<Incoming> = Vec::new();
        let mut in_flight: Option<Commit> = None;
        let mut ended = loop {
            if in_flight.is_none() && !pending.is_empty() {
                in_flight = Some(commit(buffer, std::mem::take(&mut pending), port));
            }
            let can_read = pending.len() < MAX_PENDING;
            let n = tokio::select! {
                _ = stop.cancelled() => break Ended::Stopped,
                done = async {
                    match in_flight.as_mut() {
                        Some(c) => c.await,
                        None => std::future::pending().await,
                    }
                }, if in_flight.is_some() => {
                    in_flight = None;
                    match done {
                        Ok(()) => continue,
                        Err(e) => break e,
                    }
                }
                r = port_io.read(&mut buf), if can_read => r,
            };
            let n = match n {
                Ok(0) => break Ended::Lost("end of stream (device closed)".into()),
                Ok(n) => n,
                Err(e) => break Ended::Lost(e.to_string()),
            };
            events.clear();
            self.framer.push(&buf[..n], &mut events);
            pending.extend(self.decode(&events, port));
        };
        // Whatever was read is committed before the session ends.
        if let Some(c) = in_flight.take()
            && let Err(e) = c.await
        {
            ended = e;
        }
        if !pending.is_empty()
            && let Err(e) = commit(buffer, pending, port).await
        {
            ended = e;
        }
        let partial = self.framer.reset();
        if partial > 0 {
            port.line_error(
                "partial",
                Some(format!("{partial} bytes of an unfinished line discarded")),
            );
        }
        ended
    }

    /// Decodes framed lines; counts and skips the bad ones.
    pub fn decode(&mut self, events: &[LineEvent], port: &PortHandle) -> Vec<Incoming> {
        let mut out = Vec::new();
        for event in events {
            let line = match event {
                LineEvent::Line(line) => line,
                LineEvent::Overlong => {
                    port.line_error("overlong", Some("a line passed max_line; skipped".into()));
                    continue;
                }
            };
            // Each line gets its own instant, after the last one unless the
            // clock stepped back.
            let now = crate::route::system_now_ns();
            let stamp = super::stamp_after(now, self.last_time_ns);
            match self.decoder.decode(line, stamp) {
                Ok(readings) => {
                    self.last_time_ns = stamp;
                    out.extend(readings.into_iter().map(|reading| Incoming {
                        database: self.database.clone(),
                        reading,
                    }));
                }
                Err(LineError::Encoding) => port.line_error("encoding", None),
                Err(LineError::Decode(message)) => {
                    tracing::debug!(port = port.name(), %message, "line skipped");
                    port.line_error("decode", Some(message));
                }
            }
        }
        out
    }
}

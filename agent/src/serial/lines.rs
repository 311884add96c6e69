//! Line mode: a device that prints one reading per line.
//!
//! Bytes are framed into lines ([`LineFramer`]), each line is decoded
//! ([`LineDecoder`]), and the readings of one read are committed together.
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

    /// Reads until `stop` or until the port fails.
    pub async fn run<R: AsyncRead + Unpin, B: Buffer>(
        &mut self,
        port_io: &mut R,
        buffer: &B,
        port: &PortHandle,
        stop: &CancellationToken,
    ) -> Ended {
        let mut buf = vec![0u8; 8192];
        let mut events = Vec::new();
        let ended = loop {
            let n = tokio::select! {
                _ = stop.cancelled() => break Ended::Stopped,
                r = port_io.read(&mut buf) => r,
            };
            let n = match n {
                Ok(0) => break Ended::Lost("end of stream (device closed)".into()),
                Ok(n) => n,
                Err(e) => break Ended::Lost(e.to_string()),
            };
            events.clear();
            self.framer.push(&buf[..n], &mut events);
            let readings = self.decode(&events, port);
            if !readings.is_empty()
                && let Err(e) = store(buffer, readings, port).await
            {
                break e;
            }
        };
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
            // Each line gets its own instant, strictly after the last one.
            let now = crate::route::system_now_ns();
            let stamp = now.max(self.last_time_ns + 1);
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

//! Line-oriented serial devices: framing a byte stream into lines
//! ([`LineFramer`]) and decoding each line into readings ([`LineDecoder`]).
//!
//! Both take raw bytes from a serial line, so both are fuzzed
//! (`protocols/fuzz`, target `serial_line`) and never panic on any input.

mod decode;
mod framer;

pub use decode::{
    LineDecoder, LineError, LineFormat, LineSpec, TimeFormat, ValueKind, parse_text,
    parse_time_text,
};
pub use framer::{LineEvent, LineFramer};

#[cfg(test)]
mod tests;

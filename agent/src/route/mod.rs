//! Routing: MQTT messages → readings.
//!
//! `[[routes]]` are tried in order; the first whose topic template matches
//! decodes the payload with its format. Tags are merged in this order, later
//! ones winning: the route's static tags, the tags captured from the topic,
//! then tags the payload itself carries. The measurement is the payload's
//! (line protocol, MessagePack, JSON row shape), else the topic's
//! `{measurement}` capture, else the route's `measurement`.
//!
//! A message that fails to decode never blocks other readings: it is counted
//! per route, logged at a rate limit, and kept in the buffer's capped
//! dead-letter table with its topic and error, so an operator can see what was
//! sent. A message whose payload is partly good keeps its good readings and
//! dead-letters the rest. A message that no route matches is counted and
//! acknowledged (other subscribers of the embedded broker still get it).

mod config;
mod decode;
mod ratelimit;
mod router;
#[cfg(test)]
pub(crate) mod tests;

pub use config::{PayloadFormat, RouteConfig};
pub use decode::{DecodeFailure, Decoded};
pub use ratelimit::RateLimitedLog;
pub use router::{Buffer, DeadLetter, Routed, Router, system_now_ns};

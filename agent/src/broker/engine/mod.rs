//! Ferry's own MQTT broker engine, which replaces the embedded rumqttd step
//! by step (decision 0023).
//!
//! rumqttd's router keeps a log for every distinct topic it has seen,
//! delivers every message at the subscription's QoS instead of the lower of
//! that and the published one, and has no MQTT 5 session expiry, offline
//! queue, message expiry or subscribe options; the gate in front of it
//! cannot make up for any of that (decision 0009). The engine is written
//! sans I/O: it holds the broker's state and answers what to deliver where,
//! and the gate's connection tasks do the reading and writing, so that each
//! rule is tested without sockets and a message crosses no loopback hop.
//!
//! What is here so far, each with its memory bounded by configuration
//! (sessions, subscriptions per client, retained count and bytes, queued
//! messages and bytes, the in-flight window) and by the 200 levels a topic
//! may have, never by how many distinct topics publishers use:
//!
//! - [`topic`]: topic names and filters (shared subscriptions included)
//!   checked as MQTT 3.1.1 and 5 require, with `mqtt5-protocol`'s
//!   validation;
//! - [`tree::TopicTree`]: a tree of topic levels that answers both ways: the
//!   subscriptions a published topic matches (the `$` rule included), and
//!   the retained messages a new filter matches. A branch is removed when
//!   its last entry goes, so the tree's size follows what it holds now;
//! - [`subscriptions::Subscriptions`]: every session's subscriptions, with
//!   the MQTT 5 options, and the matching for one published message: one
//!   delivery per session at the highest granted QoS, no-local,
//!   subscription identifiers, one member per shared-subscription group;
//! - [`retained::Retained`]: retained messages, bounded by count and bytes
//!   (`mqtt.max_retained_messages`, `mqtt.max_retained_bytes` once wired);
//! - [`session::Outbox`]: one session's outgoing side: delivered QoS the
//!   lower of published and granted, packet ids, the client's Receive
//!   Maximum window, a queue bounded by messages and bytes, message
//!   expiry, and the resend of what was in flight when a kept session
//!   reconnects.
//!
//! - [`sessions::Sessions`]: the session table: clean start, session
//!   expiry, takeover of a client id, wills and their delay, a bound on
//!   sessions;
//! - [`broker::Engine`]: all of it as one state, with the rules that span
//!   them (retained messages at subscribe per Retain Handling, RETAIN per
//!   Retain As Published, a refused retained message not delivered).
//!
//! - [`wire`]: MQTT 3.1.1 and 5 packets (decoded and encoded by
//!   `mqtt5-protocol`) to and from the engine's types.
//!
//! The gate's connection tasks drive it ([`super::direct`], around one
//! shared [`super::engine_state::EngineState`]); it serves every connection
//! unless `mqtt.engine = "rumqttd"` picks the fallback.

pub mod broker;
pub mod retained;
pub mod session;
pub mod sessions;
pub mod subscriptions;
pub mod topic;
pub mod tree;
pub mod wire;

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

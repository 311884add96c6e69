//! End-to-end and hardware-in-the-loop tests for Ferry.
//!
//! The tests here start real processes (`ferry-agent`, `ferry-hub`,
//! Mosquitto, an S3 server, Azurite, socat, pymodbus) and check what arrives.
//! They are filled in by the agent, hub and fault-scenario work; this crate is
//! the harness's home.

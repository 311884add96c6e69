//! The fault-injection harness behind `hil-tests/tests/faults.rs` and the
//! `ferry-faults` soak runner.
//!
//! Every scenario starts real processes ([`rig`]: `ferry-hub`,
//! `ferry-agent`, and where needed moto, socat, pymodbus), drives them with
//! real MQTT clients ([`load`]) that log what was acknowledged, injects
//! faults ([`FaultProxy`] for the link and the object store, [`PortBlock`]
//! for "no route" and SYN blackholes, SIGKILL for processes), and then asks
//! the [`oracle`] whether the hub's table holds every acknowledged reading
//! exactly once with its value. Each prints one [`Summary`] line.
//!
//! [`Scale`] sets durations and counts: small in CI (`cargo test`), hours
//! in `--long` mode.

pub mod load;
pub mod netfilter;
pub mod oracle;
mod proxy;
pub mod rig;
mod rss;
pub mod scenarios;
mod summary;

pub use netfilter::{Block, PortBlock};
pub use proxy::{Fault, FaultProxy};
pub use rss::{RssSampler, rss_kb};
pub use summary::{Summary, set_report_path};

use std::time::Duration;

/// How big a run is: CI scale by default, soak scale with `--long`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Soak mode.
    pub long: bool,
    /// In soak mode, minutes per scenario.
    pub minutes: f64,
}

impl Scale {
    /// The CI scale.
    pub fn ci() -> Scale {
        Scale {
            long: false,
            minutes: 0.0,
        }
    }

    /// Soak scale: about `minutes` per scenario.
    pub fn long(minutes: f64) -> Scale {
        Scale {
            long: true,
            minutes,
        }
    }

    /// `FERRY_FAULTS_MINUTES=<m>` selects soak scale for `cargo test`.
    pub fn from_env() -> Scale {
        match std::env::var("FERRY_FAULTS_MINUTES")
            .ok()
            .and_then(|m| m.parse::<f64>().ok())
        {
            Some(m) if m > 0.0 => Scale::long(m),
            _ => Scale::ci(),
        }
    }

    /// `ci` in CI; the soak length otherwise.
    pub fn duration(&self, ci: Duration) -> Duration {
        if self.long {
            Duration::from_secs_f64(self.minutes * 60.0).max(ci)
        } else {
            ci
        }
    }

    /// `ci` in CI; `ci` scaled by the soak length (per CI minute) otherwise.
    pub fn count(&self, ci: u64, per_long_minute: u64) -> u64 {
        if self.long {
            ((self.minutes * per_long_minute as f64) as u64).max(ci)
        } else {
            ci
        }
    }
}

/// A small xorshift for fault timing (reproducible from a printed seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `FERRY_FAULTS_SEED`, or the clock (printed so a failing
    /// run can be replayed).
    pub fn from_env(scenario: &str) -> Rng {
        let seed = std::env::var("FERRY_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{scenario}: FERRY_FAULTS_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration uniformly in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next_u64() % span)
    }
}

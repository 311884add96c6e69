//! Supervision: a gateway that either works or restarts, and says which.
//!
//! # Crash-only on internal faults
//!
//! A panic in any thread or task ends the process at once (SIGABRT, see
//! [`crash`]); systemd's `Restart=on-failure` (or the container runtime)
//! starts it again. Nothing acknowledged is lost: the buffer commits before
//! every acknowledgement, exactly as for kill -9. Restarting the whole
//! process rather than the failed part was chosen because a panicked part
//! can leave shared state half updated (a poisoned lock, a dead task others
//! wait on), and the embedded broker's threads cannot be restarted in
//! place at all; a fresh process rebuilds every invariant from the buffer.
//! See `docs/decisions/0004-crash-only-agent.md`.
//!
//! # Liveness
//!
//! Each long-running part holds a [`Beat`] in the [`Liveness`] registry and
//! declares, as it goes, by when it will next make progress (see
//! [`liveness`]). Self-probes ([`probes`]) cover what cannot beat on its
//! own: every MQTT listener is connected to like a client (CONNECT →
//! CONNACK → PINGREQ → PINGRESP, MQTT 3.1.1 and 5, plain and TLS), the
//! buffer's writer is asked to answer, and a task shows the runtime
//! schedules. The [`monitor`] thread reads the registry:
//!
//! * `/health` answers 503, naming the part, as soon as one is stalled or
//!   has exited; `/ready` also fails while a listener refuses clients;
//! * the systemd watchdog is pinged only while every part is healthy;
//! * a part faulty for `supervisor.stall_timeout` makes the agent abort
//!   (recorded as a stall), so it restarts even without systemd.
//!
//! [`fault`] injects panics and stalls in tests; it is compiled out of
//! release builds.

pub mod config;
pub mod crash;
pub mod fault;
pub mod liveness;
pub mod metrics;
pub mod monitor;
pub mod probes;

pub use config::SupervisorConfig;
pub use crash::{Lifecycle, LifecycleRecord, in_component, install_panic_hook};
pub use liveness::{Beat, Liveness, Report, State};
pub use monitor::{Monitor, MonitorOptions};

/// Publishes the lifecycle record's counters as metrics.
pub fn publish_lifecycle(record: &LifecycleRecord) {
    ::metrics::counter!(metrics::STARTS).absolute(record.starts);
    ::metrics::counter!(metrics::UNCLEAN_EXITS).absolute(record.unclean_exits);
    ::metrics::counter!(metrics::PANICS).absolute(record.panics);
    ::metrics::counter!(metrics::STALLS).absolute(record.stalls);
}

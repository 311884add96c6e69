//! Metric names of the supervisor, in one place.

/// Gauge: 1 while no component is stalled or exited.
pub const HEALTHY: &str = "ferry_agent_healthy";
/// Gauge: 1 while `/ready` answers 200.
pub const READY: &str = "ferry_agent_ready";
/// Gauge: 1 while a component is neither stalled nor exited; label
/// `component`.
pub const COMPONENT_UP: &str = "ferry_agent_component_up";
/// Counter: `WATCHDOG=1` sent to systemd.
pub const WATCHDOG_PINGS: &str = "ferry_agent_watchdog_pings_total";
/// Counter: self-probes; labels `target` (`store`, `broker.mqtt`,
/// `broker.mqtt-v5`, ...) and `result` (`ok`, `failed`, `saturated`).
pub const PROBES: &str = "ferry_agent_probes_total";
/// Counter (restored from the lifecycle record at start): process starts
/// with this data directory.
pub const STARTS: &str = "ferry_agent_starts_total";
/// Counter (restored): runs that ended other than by a clean stop.
pub const UNCLEAN_EXITS: &str = "ferry_agent_unclean_exits_total";
/// Counter (restored): runs ended by a panic (crash-only exit).
pub const PANICS: &str = "ferry_agent_panics_total";
/// Counter (restored): runs ended because a component stalled past
/// `supervisor.stall_timeout`.
pub const STALLS: &str = "ferry_agent_stalls_total";

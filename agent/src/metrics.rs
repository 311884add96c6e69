//! Metric names of the agent's routing and uplink. (The broker and the store
//! name theirs in `broker::metrics` and `store::metrics`.)

pub const ROUTE_READINGS_TOTAL: &str = "ferry_agent_route_readings_total";
pub const ROUTE_DECODE_ERRORS_TOTAL: &str = "ferry_agent_route_decode_errors_total";
pub const ROUTE_UNROUTED_TOTAL: &str = "ferry_agent_route_unrouted_total";

pub const UPLINK_SEGMENTS_TOTAL: &str = "ferry_agent_uplink_segments_total";
pub const UPLINK_BYTES_TOTAL: &str = "ferry_agent_uplink_bytes_total";
pub const UPLINK_ROWS_TOTAL: &str = "ferry_agent_uplink_rows_total";
pub const UPLINK_RETRIES_TOTAL: &str = "ferry_agent_uplink_retries_total";
pub const UPLINK_SECONDS: &str = "ferry_agent_uplink_seconds";
pub const UPLINK_FAILOVERS_TOTAL: &str = "ferry_agent_uplink_failovers_total";

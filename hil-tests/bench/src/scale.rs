//! How big each scenario is: the default scale (the whole suite in under
//! 20 minutes on a 2-core machine, release build) and `--quick` (every
//! scenario end to end with small counts, under 3 minutes with the debug
//! build, for CI).

use serde_json::{Value, json};

/// Counts and durations of every scenario.
#[derive(Debug, Clone)]
pub struct Scale {
    pub quick: bool,
    /// Repetitions of each measurement (median, min, max).
    pub runs: usize,
    // mqtt
    pub mqtt_clients: usize,
    pub mqtt_messages_per_client: usize,
    // store
    pub store_rows: usize,
    // drain
    pub drain_readings: u64,
    pub drain_lines_per_message: usize,
    pub drain_baseline_readings: u64,
    pub drain_fast_commit_readings: u64,
    // footprint
    pub footprint_seconds: f64,
    // hub ingest
    pub ingest_rows_default_commit: u64,
    pub ingest_rows_fast_commit: u64,
    pub ingest_devices: usize,
    pub ingest_lp_lines: usize,
    /// The large line-protocol bodies (4 writers, default `commit_interval`).
    pub ingest_lp_lines_large: usize,
    /// Rows posted in the large bodies: enough for a few seconds at the
    /// issue's 600 K rows/s, so the hub's first moments do not decide it.
    pub ingest_rows_large: u64,
    pub ingest_segment_rows: usize,
    // ingest-long: the whole run and the window each rate is taken over
    pub long_seconds: u64,
    pub long_window_seconds: u64,
    // queries and storage (the truck data set)
    pub trucks: usize,
    pub hours: usize,
    pub query_segment_rows: usize,
    // freshness
    pub freshness_seconds: f64,
    // topics
    pub distinct_topics: usize,
    // delete
    pub delete_rows: usize,
    // last-cache
    pub lvc_devices: usize,
    pub lvc_readings: usize,
    /// Rows of the import scenario's CSV file.
    pub import_rows: usize,
}

impl Scale {
    pub fn new(quick: bool, runs: Option<usize>) -> Scale {
        let s = if quick {
            Scale {
                quick,
                runs: 1,
                mqtt_clients: 2,
                mqtt_messages_per_client: 500,
                store_rows: 2_000,
                drain_readings: 20_000,
                drain_lines_per_message: 100,
                drain_baseline_readings: 20_000,
                drain_fast_commit_readings: 10_000,
                footprint_seconds: 2.0,
                ingest_rows_default_commit: 10_000,
                ingest_rows_fast_commit: 10_000,
                ingest_devices: 100,
                ingest_lp_lines: 1_000,
                ingest_lp_lines_large: 2_000,
                ingest_rows_large: 10_000,
                ingest_segment_rows: 1_000,
                long_seconds: 20,
                long_window_seconds: 5,
                trucks: 10,
                hours: 24,
                query_segment_rows: 10_000,
                freshness_seconds: 3.0,
                distinct_topics: 10_000,
                delete_rows: 100_000,
                lvc_devices: 200,
                lvc_readings: 50,
                import_rows: 20_000,
            }
        } else {
            Scale {
                quick,
                runs: 3,
                mqtt_clients: 4,
                mqtt_messages_per_client: 5_000,
                store_rows: 20_000,
                drain_readings: 10_000_000,
                drain_lines_per_message: 1_000,
                drain_baseline_readings: 1_000_000,
                drain_fast_commit_readings: 100_000,
                footprint_seconds: 10.0,
                ingest_rows_default_commit: 100_000,
                ingest_rows_fast_commit: 500_000,
                ingest_devices: 1_000,
                ingest_lp_lines: 2_000,
                ingest_lp_lines_large: 10_000,
                ingest_rows_large: 3_000_000,
                ingest_segment_rows: 10_000,
                long_seconds: 3_600,
                long_window_seconds: 60,
                trucks: 200,
                hours: 72,
                query_segment_rows: 100_000,
                freshness_seconds: 15.0,
                distinct_topics: 100_000,
                delete_rows: 2_000_000,
                lvc_devices: 10_000,
                lvc_readings: 100,
                import_rows: 2_000_000,
            }
        };
        Scale {
            runs: runs.unwrap_or(s.runs).max(1),
            ..s
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "quick": self.quick, "runs": self.runs,
            "mqtt_clients": self.mqtt_clients, "mqtt_messages_per_client": self.mqtt_messages_per_client,
            "store_rows": self.store_rows,
            "drain_readings": self.drain_readings, "drain_baseline_readings": self.drain_baseline_readings,
            "drain_fast_commit_readings": self.drain_fast_commit_readings,
            "footprint_seconds": self.footprint_seconds,
            "ingest_rows_default_commit": self.ingest_rows_default_commit,
            "ingest_rows_fast_commit": self.ingest_rows_fast_commit,
            "ingest_lp_lines": self.ingest_lp_lines, "ingest_lp_lines_large": self.ingest_lp_lines_large,
            "ingest_rows_large": self.ingest_rows_large,
            "long_seconds": self.long_seconds, "long_window_seconds": self.long_window_seconds,
            "trucks": self.trucks, "hours": self.hours,
            "freshness_seconds": self.freshness_seconds,
            "distinct_topics": self.distinct_topics,
            "delete_rows": self.delete_rows,
            "lvc_devices": self.lvc_devices, "lvc_readings": self.lvc_readings,
            "import_rows": self.import_rows,
        })
    }
}

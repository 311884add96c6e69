//! The one-line summary every scenario prints, and the JSON line it
//! appends to `$FERRY_FAULTS_REPORT` (the `ferry-faults` runner's table).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::oracle::Verdict;

static REPORT: OnceLock<PathBuf> = OnceLock::new();

/// Where [`Summary::report`] appends its JSON line (instead of
/// `$FERRY_FAULTS_REPORT`).
pub fn set_report_path(path: &Path) {
    let _ = REPORT.set(path.to_owned());
}

/// A scenario's outcome.
#[derive(Debug, Clone)]
pub struct Summary {
    pub scenario: String,
    pub verdict: Verdict,
    /// Faults injected (kills, outages, flaps...).
    pub faults: u64,
    pub max_agent_rss_mb: f64,
    pub duration: Duration,
    /// Scenario-specific facts, `key=value`.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.verdict;
        write!(
            f,
            "FAULTS {}: acknowledged={} delivered={} duplicates={} lost={} documented_drops={} unknown={} wrong_values={} in_flight_stored={} faults={} max_agent_rss={:.1}MB duration={:.0}s",
            self.scenario,
            v.acked,
            v.delivered,
            v.duplicates,
            v.lost,
            v.documented_drops,
            v.unknown,
            v.wrong_values,
            v.maybe_stored,
            self.faults,
            self.max_agent_rss_mb,
            self.duration.as_secs_f64()
        )?;
        for n in &self.notes {
            write!(f, " {n}")?;
        }
        Ok(())
    }
}

impl Summary {
    /// Prints the line (stderr, so `cargo test` shows it with
    /// `--nocapture` and the runner always) and appends the JSON line.
    pub fn report(&self) {
        eprintln!("{self}");
        let Some(path) = REPORT
            .get()
            .cloned()
            .or_else(|| std::env::var_os("FERRY_FAULTS_REPORT").map(PathBuf::from))
        else {
            return;
        };
        let v = &self.verdict;
        let line = serde_json::json!({
            "scenario": self.scenario,
            "acknowledged": v.acked,
            "delivered": v.delivered,
            "duplicates": v.duplicates,
            "lost": v.lost,
            "documented_drops": v.documented_drops,
            "unknown": v.unknown,
            "wrong_values": v.wrong_values,
            "in_flight_stored": v.maybe_stored,
            "faults": self.faults,
            "max_agent_rss_mb": (self.max_agent_rss_mb * 10.0).round() / 10.0,
            "duration_s": self.duration.as_secs(),
            "notes": self.notes,
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Panics with the summary unless the verdict is exact.
    pub fn assert_exact(&self) {
        assert!(self.verdict.is_exact(), "the oracle failed: {self}");
        assert!(
            self.verdict.acked > 0,
            "nothing was acknowledged, so nothing was tested: {self}"
        );
    }
}

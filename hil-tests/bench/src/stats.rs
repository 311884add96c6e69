//! Small statistics: the median and range of repeated runs, percentiles of
//! latency samples, and number formatting for the report.

use serde_json::{Value, json};

/// Median, min and max of the runs of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    /// The statistics of `samples`; non-finite samples are ignored.
    pub fn of(samples: &[f64]) -> Stats {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                runs: 0,
            };
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[v.len() - 1],
            runs: v.len(),
        }
    }

    pub fn json(&self) -> Value {
        json!({"median": finite(self.median), "min": finite(self.min), "max": finite(self.max), "runs": self.runs})
    }
}

/// `x` as JSON, `null` when not finite.
pub fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// The `p` quantile (0..=1) of a sample, nearest rank; NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `1234567.0` → `1.23 M`, `45678.0` → `45.7 K`, `12.3` → `12.3`.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_owned()
    } else if x.abs() >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x.abs() >= 1e3 {
        format!("{:.1} K", x / 1e3)
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// What a figure is measured in, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Per second (messages, rows, readings): higher is better.
    Rate(&'static str),
    /// Milliseconds: lower is better.
    Ms,
    /// Seconds: lower is better.
    Secs,
    /// Bytes: lower is better.
    Bytes,
    /// Memory, measured in KiB and shown in MiB: lower is better.
    KiB,
    /// A percentage of one core: lower is better.
    CpuPercent,
    /// Anything else where lower is better.
    Lower(&'static str),
}

impl Unit {
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::Rate(_))
    }

    pub fn label(self) -> String {
        match self {
            Unit::Rate(what) => format!("{what}/s"),
            Unit::Ms => "ms".to_owned(),
            Unit::Secs => "s".to_owned(),
            Unit::Bytes => "bytes".to_owned(),
            Unit::KiB => "MiB".to_owned(),
            Unit::CpuPercent => "% of a core".to_owned(),
            Unit::Lower(what) => what.to_owned(),
        }
    }

    /// One value in this unit.
    pub fn fmt(self, x: f64) -> String {
        match self {
            Unit::Bytes => {
                if x >= 1e6 {
                    format!("{:.1} MB", x / 1e6)
                } else {
                    human(x)
                }
            }
            Unit::KiB => format!("{:.1}", x / 1024.0),
            _ => human(x),
        }
    }

    /// Median with (min–max) when there was more than one run.
    pub fn fmt_stats(self, s: &Stats) -> String {
        if s.runs > 1 && s.min != s.max {
            format!(
                "{} ({}–{})",
                self.fmt(s.median),
                self.fmt(s.min),
                self.fmt(s.max)
            )
        } else {
            self.fmt(s.median)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_samples() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Stats::of(&[f64::NAN, 5.0]).runs, 1);
        assert!(Stats::of(&[]).median.is_nan());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
    }
}

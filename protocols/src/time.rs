//! Timestamp precisions and Arc's time-unit inference.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The unit of an integer timestamp, as in line protocol's `precision` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    #[serde(alias = "n")]
    Ns,
    #[serde(alias = "u", alias = "µs")]
    Us,
    Ms,
    S,
}

/// An unknown precision string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}; expected one of ns, us, ms, s")]
pub struct PrecisionError(pub String);

impl Precision {
    /// Nanoseconds in one unit.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }

    /// Converts a timestamp in this unit to nanoseconds, or `None` if it
    /// overflows the i64 nanosecond range (years 1677..=2262).
    pub fn to_nanos(self, t: i64) -> Option<i64> {
        t.checked_mul(self.nanos_per_unit())
    }

    /// The canonical spelling (`ns`, `us`, `ms`, `s`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }

    /// Arc's time-unit inference for an integer timestamp with no declared
    /// unit: below 1e10 it is seconds, below 1e13 milliseconds, below 1e16
    /// microseconds, otherwise nanoseconds. The thresholds put every date from
    /// 1970-04 to 2286 in the right unit. Negative values use their magnitude.
    pub fn infer(t: i64) -> Precision {
        let m = t.unsigned_abs();
        if m < 10_000_000_000 {
            Precision::S
        } else if m < 10_000_000_000_000 {
            Precision::Ms
        } else if m < 10_000_000_000_000_000 {
            Precision::Us
        } else {
            Precision::Ns
        }
    }

    /// Infers the unit of `t` (see [`Precision::infer`]) and converts to ns.
    pub fn infer_to_nanos(t: i64) -> Option<i64> {
        Precision::infer(t).to_nanos(t)
    }
}

/// Converts a float timestamp (as some JSON and MessagePack producers send) in
/// an inferred unit to nanoseconds, keeping sub-unit precision.
pub fn infer_float_to_nanos(t: f64) -> Option<i64> {
    if !t.is_finite() {
        return None;
    }
    let unit = Precision::infer(t.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64);
    let ns = (t * unit.nanos_per_unit() as f64).round();
    // `as` saturates; reject values that would have saturated.
    if ns >= i64::MIN as f64 && ns < i64::MAX as f64 {
        Some(ns as i64)
    } else {
        None
    }
}

impl FromStr for Precision {
    type Err = PrecisionError;
    fn from_str(s: &str) -> Result<Self, PrecisionError> {
        match s {
            "ns" | "n" | "nanosecond" => Ok(Precision::Ns),
            "us" | "u" | "µs" | "microsecond" => Ok(Precision::Us),
            "ms" | "millisecond" => Ok(Precision::Ms),
            "s" | "second" => Ok(Precision::S),
            other => Err(PrecisionError(other.to_owned())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_by_magnitude() {
        let s = 1_700_000_000;
        assert_eq!(Precision::infer(s), Precision::S);
        assert_eq!(Precision::infer(s * 1_000), Precision::Ms);
        assert_eq!(Precision::infer(s * 1_000_000), Precision::Us);
        assert_eq!(Precision::infer(s * 1_000_000_000), Precision::Ns);
        assert_eq!(Precision::infer_to_nanos(s), Some(s * 1_000_000_000));
        assert_eq!(
            Precision::infer_to_nanos(s * 1_000),
            Some(s * 1_000_000_000)
        );
        assert_eq!(Precision::infer(i64::MIN), Precision::Ns);
    }

    #[test]
    fn float_timestamps() {
        assert_eq!(
            infer_float_to_nanos(1_700_000_000.5),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(infer_float_to_nanos(f64::NAN), None);
        assert_eq!(infer_float_to_nanos(1e300), None);
    }

    #[test]
    fn parse_and_overflow() {
        assert_eq!("ms".parse::<Precision>(), Ok(Precision::Ms));
        assert!("h".parse::<Precision>().is_err());
        assert_eq!(Precision::S.to_nanos(i64::MAX / 10), None);
    }
}

//! RFC 3339 timestamps, parsed and formatted without a date library.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. The `T` may be `t`
//! or a space (RFC 3339 §5.6 note), `Z` may be `z`. The fraction has 1 or
//! more digits; digits past the ninth (below a nanosecond) are truncated. A
//! leap second (`:60`) is read as the first second of the next minute. Dates
//! are proleptic Gregorian; the result must fit i64 nanoseconds (years
//! 1677..=2262).

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Why a string is not an RFC 3339 timestamp.
pub(super) type Reason = &'static str;

/// Parses an RFC 3339 timestamp to nanoseconds since the Unix epoch.
pub(super) fn parse(s: &str) -> Result<i64, Reason> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4).ok_or("expected a four-digit year")?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2).ok_or("expected a two-digit month")?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2).ok_or("expected a two-digit day")?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err("expected 'T' between date and time");
    }
    let hour = digits(b, 11, 2).ok_or("expected a two-digit hour")?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2).ok_or("expected two-digit minutes")?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2).ok_or("expected two-digit seconds")?;

    let mut pos = 19;
    let mut nanos: i128 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(d) = b.get(pos).filter(|c| c.is_ascii_digit()) {
            if pos - start < 9 {
                nanos = nanos * 10 + i128::from(d - b'0');
            }
            pos += 1;
        }
        let len = pos - start;
        if len == 0 {
            return Err("expected digits after '.'");
        }
        for _ in len..9 {
            nanos *= 10;
        }
    }

    let offset_secs: i64 = match b.get(pos) {
        Some(b'Z' | b'z') => {
            pos += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, pos + 1, 2).ok_or("expected a two-digit offset hour")?;
            expect(b, pos + 3, b':')?;
            let om = digits(b, pos + 4, 2).ok_or("expected two-digit offset minutes")?;
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            pos += 6;
            let secs = oh * 3600 + om * 60;
            if sign == b'-' { -secs } else { secs }
        }
        _ => return Err("expected 'Z' or a UTC offset"),
    };
    if pos != b.len() {
        return Err("unexpected characters after the timestamp");
    }

    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    i64::try_from(i128::from(secs) * NANOS_PER_SEC + nanos)
        .map_err(|_| "outside the nanosecond range (years 1677..=2262)")
}

/// Formats nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(super) fn format(t_ns: i64) -> String {
    let secs = t_ns.div_euclid(1_000_000_000);
    let nanos = t_ns.rem_euclid(1_000_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn digits(b: &[u8], start: usize, n: usize) -> Option<i64> {
    let s = b.get(start..start.checked_add(n)?)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), Reason> {
    match b.get(at) {
        Some(&x) if x == c => Ok(()),
        _ => Err(match c {
            b'-' => "expected '-' in the date",
            _ => "expected ':' in the time",
        }),
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_timestamps() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000_000_000));
        assert_eq!(
            parse("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse("2023-11-14t22:13:20.123456789123z"),
            Ok(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse("2023-11-15 00:13:20+02:00"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse("2023-11-14T21:43:20-00:30"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(parse("1969-12-31T23:59:59.999999999Z"), Ok(-1));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000_000_000));
        // A leap second rolls into the next minute.
        assert_eq!(parse("2016-12-31T23:59:60Z"), parse("2017-01-01T00:00:00Z"));
    }

    #[test]
    fn rejects_invalid_timestamps() {
        for bad in [
            "",
            "2023",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:61Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14X22:13:20Z",
            "+2023-11-14T22:13:20Z",
            "2023-11-14T22:13:20,5Z",
            "١٩٧٠-01-01T00:00:00Z",
            "1500-01-01T00:00:00Z",
            "2300-01-01T00:00:00Z",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_round_trips() {
        for t in [
            0,
            -1,
            1,
            1_700_000_000_123_456_789,
            i64::MIN,
            i64::MAX,
            951_782_400_000_000_000, // 2000-02-29
            -2_208_988_800_000_000_000,
        ] {
            let s = format(t);
            assert_eq!(parse(&s), Ok(t), "{s}");
        }
        assert_eq!(format(0), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn civil_conversion_agrees_day_by_day() {
        let mut expected = (1600, 1, 1);
        for days in days_from_civil(1600, 1, 1)..days_from_civil(2400, 1, 1) {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }
}

//! The access log's time field, `[06/Feb/2019:00:00:38 +0000]`, and UTC calendar dates.
//!
//! Hand-written because it runs once per line: a fixed 28-byte layout, checked field by field,
//! turned into milliseconds since the Unix epoch (UTC) and the UTC day number that picks the `dt`
//! partition. The civil-date arithmetic is Howard Hinnant's `days_from_civil`.

/// The length of a bracketed time field: `[dd/Mon/yyyy:HH:MM:SS +hhmm]`.
pub const TIME_FIELD_LEN: usize = 28;

/// A parsed time: milliseconds since the epoch (UTC) and the UTC day number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub millis: i64,
    pub day: i32,
}

fn two(b: &[u8], i: usize) -> Option<u32> {
    let (h, l) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
    (h < 10 && l < 10).then(|| u32::from(h) * 10 + u32::from(l))
}

fn month(m: &[u8]) -> Option<u32> {
    Some(match m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day number.
pub fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a day number, the value of the `dt` partition.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a `YYYY-MM-DD` date into a day number (cold path: flags and folder names).
pub fn parse_day(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = two(b, 0)? * 100 + two(b, 2)?;
    let (m, d) = (two(b, 5)?, two(b, 8)?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i32, m) {
        return None;
    }
    Some(days_from_civil(y as i32, m, d))
}

/// Parses the bracketed time field. `None` when it is not exactly of the logged layout or names
/// an impossible date or time.
pub fn parse_time_field(b: &[u8]) -> Option<Timestamp> {
    if b.len() != TIME_FIELD_LEN
        || b[0] != b'['
        || b[3] != b'/'
        || b[7] != b'/'
        || b[12] != b':'
        || b[15] != b':'
        || b[18] != b':'
        || b[21] != b' '
        || b[27] != b']'
    {
        return None;
    }
    let day = two(b, 1)?;
    let mon = month(&b[4..7])?;
    let year = (two(b, 8)? * 100 + two(b, 10)?) as i32;
    let (hh, mm, ss) = (two(b, 13)?, two(b, 16)?, two(b, 19)?);
    let sign: i64 = match b[22] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (two(b, 23)?, two(b, 25)?);
    if day == 0 || day > days_in_month(year, mon) || hh > 23 || mm > 59 || ss > 59 || oh > 23 || om > 59 {
        return None;
    }
    let local_secs = days_from_civil(year, mon, day) as i64 * 86_400 + (hh * 3600 + mm * 60 + ss) as i64;
    let utc_secs = local_secs - sign * (oh * 3600 + om * 60) as i64;
    Some(Timestamp { millis: utc_secs * 1000, day: utc_secs.div_euclid(86_400) as i32 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate};

    /// chrono is the oracle: an independent implementation of the same layout.
    fn oracle(s: &str) -> Option<i64> {
        DateTime::parse_from_str(s, "[%d/%b/%Y:%H:%M:%S %z]").ok().map(|t| t.timestamp_millis())
    }

    #[test]
    fn agrees_with_chrono_on_real_and_edge_times() {
        for s in [
            "[06/Feb/2019:00:00:38 +0000]",
            "[09/Feb/2021:14:48:42 +0200]",
            "[31/Dec/1999:23:59:59 -0130]",
            "[29/Feb/2024:12:00:00 +0000]",
            "[01/Jan/1970:00:00:00 +0000]",
            "[01/Jan/1970:00:30:00 +0100]",
            "[15/Mar/2100:07:07:07 +1400]",
        ] {
            let got = parse_time_field(s.as_bytes()).unwrap_or_else(|| panic!("{s} did not parse"));
            assert_eq!(Some(got.millis), oracle(s), "{s}");
            assert_eq!(got.day as i64, got.millis.div_euclid(86_400_000), "{s}");
        }
    }

    #[test]
    fn rejects_impossible_or_misshapen_times() {
        for s in [
            "[29/Feb/2023:12:00:00 +0000]",
            "[31/Apr/2023:12:00:00 +0000]",
            "[06/Fib/2019:00:00:38 +0000]",
            "[06/Feb/2019:24:00:00 +0000]",
            "[06/Feb/2019:00:60:00 +0000]",
            "[06/Feb/2019:00:00:38 0000]",
            "[06/Feb/2019:00:00:38 *0000]",
            "[6/Feb/2019:00:00:38 +0000] ",
            "[06/Feb/2019:00:00:38 +0000",
            "06/Feb/2019:00:00:38 +0000]]",
            "[0a/Feb/2019:00:00:38 +0000]",
        ] {
            assert_eq!(parse_time_field(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn offset_moves_record_to_previous_utc_day() {
        let t = parse_time_field(b"[01/Jan/2024:00:30:00 +0100]").unwrap();
        assert_eq!(format_day(t.day), "2023-12-31");
    }

    #[test]
    fn civil_round_trip_matches_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for day in (-719_000..2_900_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            let expected = epoch + chrono::Duration::days(day as i64);
            assert_eq!(format!("{y:04}-{m:02}-{d:02}"), expected.format("%Y-%m-%d").to_string());
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(parse_day("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-1-01"), None);
    }
}

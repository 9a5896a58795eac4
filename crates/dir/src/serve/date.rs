//! HTTP dates as C-tor writes and reads them (`format_rfc1123_time`,
//! `parse_rfc1123_time`): `Sun, 06 Nov 1994 08:49:37 GMT`, in the `Date`
//! and `Expires` headers of answers and the `If-Modified-Since` header of
//! requests (dir-spec §4). Whole seconds, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` as an RFC 1123 date; times before 1970 as the epoch.
pub fn format_http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS
        .get(usize::try_from((days + 4) % 7).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let month = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An RFC 1123 date, as C-tor's `parse_rfc1123_time` takes it: any
/// three-letter weekday, a day of 1 to 31, a month name, a year from 1970,
/// `hh:mm:ss` (seconds up to 60) and `GMT`. Anything else is `None` (C-tor
/// treats a malformed `If-Modified-Since` as absent).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut words = s.split_ascii_whitespace();
    let weekday = words.next()?.strip_suffix(',')?;
    if weekday.len() != 3 {
        return None;
    }
    let day: u32 = digits(words.next()?, 2)?;
    let month = words.next()?;
    let month = u32::try_from(MONTHS.iter().position(|m| *m == month)?).ok()? + 1;
    let year: i64 = digits(words.next()?, 4)?.into();
    let mut hms = words.next()?.split(':');
    let hour: u32 = digits(hms.next()?, 2)?;
    let min: u32 = digits(hms.next()?, 2)?;
    let sec: u32 = digits(hms.next()?, 2)?;
    if hms.next().is_some() || words.next()? != "GMT" || words.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days
        .checked_mul(86_400)?
        .checked_add(i64::from(hour * 3600 + min * 60 + sec))?;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// 1 to `max` decimal digits.
fn digits(s: &str, max: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Year, month (1..=12), day (1..=31) of day `z` after 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Days from 1970-01-01 to `year`-`month`-`day` (`days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn known_dates() {
        // RFC 7231's example, and the epoch.
        assert_eq!(
            format_http_date(at(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            format_http_date(UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            format_http_date(at(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        // C-tor does not check the weekday.
        assert_eq!(
            parse_http_date("Xyz, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
    }

    #[test]
    fn malformed_dates_are_none() {
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:60:37 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:1 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(secs in 0_u64..253_402_300_799) {
            let t = at(secs);
            prop_assert_eq!(parse_http_date(&format_http_date(t)), Some(t));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_http_date(&s);
        }
    }
}

//! Calendar arithmetic (no clock): proleptic Gregorian dates and days
//! since the Unix epoch, both ways, with H. Hinnant's algorithms
//! (<http://howardhinnant.github.io/date_algorithms.html>). Used to read
//! and write certificate times (RFC 5280 §4.1.2.5) and to print dates.
//!
//! Neither function panics or overflows, whatever its arguments.

/// Days from 1970-01-01 to `year`-`month`-`day` (proleptic Gregorian;
/// negative before 1970). The caller checks that the month is in 1..=12
/// and the day in 1..=31; out-of-range fields give a meaningless count.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 (before it if negative), as (year,
/// month 1..=12, day 1..=31), proleptic Gregorian. The inverse of
/// [`days_from_civil`] (exact within ±2^62 days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    // Day of the 400-year era, 0..=146_096; year of the era, 0..=399; day
    // of the year counted from March 1st, 0..=365.
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    // Month counted from March, 0..=11.
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both in range by construction (1..=31, 1..=12).
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn known_dates() {
        for (date, days) in [
            ((1970, 1, 1), 0),
            ((1969, 12, 31), -1),
            ((1950, 1, 1), -7305),
            ((2000, 2, 29), 11_016),
            ((2000, 3, 1), 11_017),
            ((2020, 9, 26), 18_531),
            ((2026, 11, 21), 20_778),
            ((1900, 3, 1), -25_508),
            ((1, 1, 1), -719_162),
        ] {
            let (y, m, d) = date;
            assert_eq!(days_from_civil(y, m, d), days, "{date:?}");
            assert_eq!(civil_from_days(days), (i64::from(y), m, d), "{days}");
        }
    }

    #[test]
    fn leap_years() {
        let len = |y: i32| days_from_civil(y + 1, 1, 1) - days_from_civil(y, 1, 1);
        assert_eq!(len(1900), 365);
        assert_eq!(len(2000), 366);
        assert_eq!(len(2024), 366);
        assert_eq!(len(2100), 365);
        // 1900 has no February 29th: the day after the 28th is March 1st.
        let feb28 = days_from_civil(1900, 2, 28);
        assert_eq!(civil_from_days(feb28 + 1), (1900, 3, 1));
        let feb28 = days_from_civil(2000, 2, 28);
        assert_eq!(civil_from_days(feb28 + 1), (2000, 2, 29));
    }

    /// Every day over five thousand years either side of 1970: each date
    /// is valid, follows the previous one, and maps back to its count.
    #[test]
    fn round_trip_day_by_day() {
        let mut prev = civil_from_days(-1_900_001);
        for days in -1_900_000..=1_900_000 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{days}");
            let next_day = (y, m, d) == (prev.0, prev.1, prev.2 + 1);
            let next_month = (y, m, d) == (prev.0, prev.1 + 1, 1);
            let next_year = (y, m, d) == (prev.0 + 1, 1, 1) && prev.1 == 12;
            assert!(
                next_day || ((next_month || next_year) && prev.2 >= 28),
                "{prev:?} then {y}-{m}-{d}"
            );
            assert_eq!(days_from_civil(i32::try_from(y).unwrap(), m, d), days);
            prev = (y, m, d);
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        for y in [i32::MIN, i32::MAX] {
            for (m, d) in [(1, 1), (12, 31), (0, 0), (u32::MAX, u32::MAX)] {
                let _ = days_from_civil(y, m, d);
            }
        }
        for days in [i64::MIN, i64::MAX, i64::MAX - 719_468] {
            let (_, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
        let (y, m, d) = civil_from_days(days_from_civil(i32::MAX, 12, 31));
        assert_eq!((y, m, d), (i64::from(i32::MAX), 12, 31));
    }
}

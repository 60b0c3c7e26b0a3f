//! Proleptic Gregorian calendar arithmetic on PostgreSQL's internal
//! representation (days or microseconds since 2000-01-01), ISO text in and
//! out, and alignment to natural boundaries in UTC.
//!
//! Time zones are `zone`'s, through `jiff`. The civil arithmetic stays
//! here because PostgreSQL's range (4714 BC to 294276 AD) is far wider
//! than `jiff`'s (years -9999 to 9999), and keys anywhere in it must round
//! trip.

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// PostgreSQL's MIN_TIMESTAMP: 4714-11-24 00:00:00 BC.
pub const MIN_TIMESTAMP_MICROS: i64 = -211_813_488_000_000_000;
/// One microsecond before PostgreSQL's END_TIMESTAMP (294277-01-01).
pub const MAX_TIMESTAMP_MICROS: i64 = 9_223_371_331_200_000_000 - 1;
/// Julian day 0 (4714-11-24 BC) in days since 2000-01-01.
pub const MIN_DATE_DAYS: i64 = -2_451_545;
/// The last day before PostgreSQL's DATE_END_JULIAN.
pub const MAX_DATE_DAYS: i64 = 2_147_483_494 - 2_451_545 - 1;

/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_PG_EPOCH_DAYS: i64 = 10_957;
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01): what
/// `date_part('epoch', …)` returns minus this is PostgreSQL's own clock.
pub const UNIX_TO_PG_EPOCH_SECONDS: i64 = UNIX_TO_PG_EPOCH_DAYS * 86_400;

/// Days since 2000-01-01 of a proleptic Gregorian date (astronomical year:
/// 1 BC is year 0). Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - UNIX_TO_PG_EPOCH_DAYS
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + UNIX_TO_PG_EPOCH_DAYS + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year.rem_euclid(4) == 0
            && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0) =>
        {
            29
        }
        _ => 28,
    }
}

/// Splits off a trailing " BC" and converts the year to astronomical numbering.
fn strip_era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

fn parse_ymd(text: &str, bc: bool) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() < 4 || m.len() != 2 || d.len() != 2 || !y.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = y.parse().ok()?;
    let month: u32 = m.parse().ok()?;
    let day: u32 = d.parse().ok()?;
    if year == 0 || !(1..=12).contains(&month) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD[ BC]`.
pub fn parse_iso_date(text: &str) -> Option<i64> {
    let (text, bc) = strip_era(text);
    let days = parse_ymd(text, bc)?;
    (MIN_DATE_DAYS..=MAX_DATE_DAYS)
        .contains(&days)
        .then_some(days)
}

fn format_ymd(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    if year <= 0 {
        format!("{:04}-{month:02}-{day:02}", 1 - year)
    } else {
        format!("{year:04}-{month:02}-{day:02}")
    }
}

fn era_suffix(days: i64) -> &'static str {
    if civil_from_days(days).0 <= 0 {
        " BC"
    } else {
        ""
    }
}

pub fn format_iso_date(days: i64) -> String {
    format!("{}{}", format_ymd(days), era_suffix(days))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]`. With
/// `with_zone`, a UTC offset is required and the result is in UTC; without
/// it, an offset is refused.
pub fn parse_iso_timestamp(text: &str, with_zone: bool) -> Option<i64> {
    let (text, bc) = strip_era(text);
    let (date, rest) = text.split_once(' ')?;
    let days = parse_ymd(date, bc)?;
    // The offset starts at the first sign after the time of day.
    let (time, offset_seconds) = match rest.find(['+', '-']) {
        Some(at) if with_zone => (&rest[..at], parse_offset(&rest[at..])?),
        None if !with_zone => (rest, 0),
        _ => return None,
    };
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (time, None),
    };
    let mut fields = hms.split(':');
    let hour: i64 = two_digits(fields.next()?)?;
    let minute: i64 = two_digits(fields.next()?)?;
    let second: i64 = two_digits(fields.next()?)?;
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let micros_fraction = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10_i64.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let micros = days
        .checked_mul(MICROS_PER_DAY)?
        .checked_add(
            hour * MICROS_PER_HOUR + minute * MICROS_PER_MINUTE + second * MICROS_PER_SECOND,
        )?
        .checked_add(micros_fraction)?
        .checked_sub(offset_seconds * MICROS_PER_SECOND)?;
    (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS)
        .contains(&micros)
        .then_some(micros)
}

fn two_digits(s: &str) -> Option<i64> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn parse_offset(text: &str) -> Option<i64> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let mut fields = text[1..].split(':');
    let hours = two_digits(fields.next()?)?;
    let minutes = fields.next().map(two_digits).unwrap_or(Some(0))?;
    let seconds = fields.next().map(two_digits).unwrap_or(Some(0))?;
    if fields.next().is_some() {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60 + seconds))
}

/// Formats like PostgreSQL's ISO output; `with_zone` prints the value in UTC
/// with a `+00` offset, as a session with `TimeZone = UTC` does.
pub fn format_iso_timestamp(micros: i64, with_zone: bool) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (hour, minute) = (
        of_day / MICROS_PER_HOUR,
        of_day % MICROS_PER_HOUR / MICROS_PER_MINUTE,
    );
    let second = of_day % MICROS_PER_MINUTE / MICROS_PER_SECOND;
    let fraction = of_day % MICROS_PER_SECOND;
    let mut out = format!("{} {hour:02}:{minute:02}:{second:02}", format_ymd(days));
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    if with_zone {
        out.push_str("+00");
    }
    out.push_str(era_suffix(days));
    out
}

/// A natural boundary for time keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    Minute,
    Hour,
    Day,
    /// Weeks start on Monday (ISO 8601).
    Week,
    Month,
    Year,
}

impl Grain {
    pub const ALL: [Grain; 6] = [
        Grain::Minute,
        Grain::Hour,
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Year,
    ];
}

/// 2000-01-03 was a Monday.
const FIRST_MONDAY: i64 = 2;

/// Start of the grain that contains `days` (for dates, grains finer than a day are a day).
pub fn floor_days(days: i64, grain: Grain) -> i64 {
    match grain {
        Grain::Minute | Grain::Hour | Grain::Day => days,
        Grain::Week => days - (days - FIRST_MONDAY).rem_euclid(7),
        Grain::Month => {
            let (y, m, _) = civil_from_days(days);
            days_from_civil(y, m, 1)
        }
        Grain::Year => {
            let (y, _, _) = civil_from_days(days);
            days_from_civil(y, 1, 1)
        }
    }
}

/// Start of the grain that contains `micros`.
pub fn floor_micros(micros: i64, grain: Grain) -> i64 {
    match grain {
        Grain::Minute => micros - micros.rem_euclid(MICROS_PER_MINUTE),
        Grain::Hour => micros - micros.rem_euclid(MICROS_PER_HOUR),
        _ => floor_days(micros.div_euclid(MICROS_PER_DAY), grain) * MICROS_PER_DAY,
    }
}

/// `days` moved by `n` grains; `days` must be aligned to the grain.
pub fn add_grains_days(days: i64, grain: Grain, n: i64) -> Option<i64> {
    match grain {
        Grain::Minute | Grain::Hour | Grain::Day => days.checked_add(n),
        Grain::Week => days.checked_add(n.checked_mul(7)?),
        Grain::Month | Grain::Year => {
            let months = if grain == Grain::Year {
                n.checked_mul(12)?
            } else {
                n
            };
            let (y, m, d) = civil_from_days(days);
            let index = y
                .checked_mul(12)?
                .checked_add(m as i64 - 1)?
                .checked_add(months)?;
            let (year, month) = (index.div_euclid(12), (index.rem_euclid(12) + 1) as u32);
            Some(days_from_civil(
                year,
                month,
                d.min(days_in_month(year, month)),
            ))
        }
    }
}

/// `micros` moved by `n` grains; `micros` must be aligned to the grain.
pub fn add_grains_micros(micros: i64, grain: Grain, n: i64) -> Option<i64> {
    match grain {
        Grain::Minute => micros.checked_add(n.checked_mul(MICROS_PER_MINUTE)?),
        Grain::Hour => micros.checked_add(n.checked_mul(MICROS_PER_HOUR)?),
        _ => {
            let days = add_grains_days(micros.div_euclid(MICROS_PER_DAY), grain, n)?;
            let shifted = days.checked_mul(MICROS_PER_DAY)?;
            shifted.checked_add(micros.rem_euclid(MICROS_PER_DAY))
        }
    }
}

/// Largest multiple of `step` not above `value` (`step` > 0).
pub fn floor_to_multiple(value: i64, step: i64) -> i64 {
    value - value.rem_euclid(step)
}

/// The smallest "round" step (1, 2 or 5 times a power of ten) at least `raw`,
/// so integer partitions get bounds a DBA can read at a glance.
pub fn round_step_up(raw: i64) -> i64 {
    let raw = raw.max(1);
    let mut power: i64 = 1;
    loop {
        for factor in [1, 2, 5] {
            match power.checked_mul(factor) {
                Some(step) if step >= raw => return step,
                Some(_) => {}
                None => return i64::MAX,
            }
        }
        power = match power.checked_mul(10) {
            Some(p) => p,
            None => return i64::MAX,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(2000, 1, 1), 0);
        assert_eq!(days_from_civil(1970, 1, 1), -10_957);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(parse_iso_date("2000-01-02"), Some(1));
        assert_eq!(format_iso_date(-1), "1999-12-31");
        assert_eq!(
            parse_iso_date("0044-03-15 BC")
                .map(format_iso_date)
                .as_deref(),
            Some("0044-03-15 BC")
        );
        assert_eq!(parse_iso_date("2023-02-29"), None);
        assert_eq!(parse_iso_date("4714-11-24 BC"), Some(MIN_DATE_DAYS));
    }

    #[test]
    fn known_timestamps() {
        assert_eq!(parse_iso_timestamp("2000-01-01 00:00:00+00", true), Some(0));
        assert_eq!(parse_iso_timestamp("2000-01-01 01:00:00+01", true), Some(0));
        assert_eq!(
            parse_iso_timestamp("1999-12-31 18:30:00-05:30", true),
            Some(0)
        );
        assert_eq!(
            parse_iso_timestamp("2000-01-01 00:00:00.25", false),
            Some(250_000)
        );
        assert_eq!(
            format_iso_timestamp(250_000, false),
            "2000-01-01 00:00:00.25"
        );
        assert_eq!(
            format_iso_timestamp(-1, true),
            "1999-12-31 23:59:59.999999+00"
        );
        // A zone is required for timestamptz and refused for timestamp.
        assert_eq!(parse_iso_timestamp("2000-01-01 00:00:00", true), None);
        assert_eq!(parse_iso_timestamp("2000-01-01 00:00:00+00", false), None);
        assert_eq!(parse_iso_timestamp("2000-01-01 24:00:00", false), None);
        assert_eq!(
            format_iso_timestamp(MAX_TIMESTAMP_MICROS, false),
            "294276-12-31 23:59:59.999999"
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let wednesday = days_from_civil(2024, 5, 15);
        assert_eq!(
            civil_from_days(floor_days(wednesday, Grain::Week)),
            (2024, 5, 13)
        );
    }

    #[test]
    fn month_arithmetic_clamps_day() {
        let jan31 = days_from_civil(2024, 1, 31);
        assert_eq!(
            civil_from_days(add_grains_days(jan31, Grain::Month, 1).unwrap()),
            (2024, 2, 29)
        );
        let may1 = days_from_civil(2024, 5, 1);
        assert_eq!(
            civil_from_days(add_grains_days(may1, Grain::Year, -1).unwrap()),
            (2023, 5, 1)
        );
    }

    #[test]
    fn round_steps() {
        assert_eq!(round_step_up(0), 1);
        assert_eq!(round_step_up(3), 5);
        assert_eq!(round_step_up(150_001), 200_000);
        assert_eq!(round_step_up(1_000_000), 1_000_000);
        assert_eq!(round_step_up(i64::MAX), i64::MAX);
    }

    fn any_days() -> impl Strategy<Value = i64> {
        MIN_DATE_DAYS..=MAX_DATE_DAYS
    }
    fn any_micros() -> impl Strategy<Value = i64> {
        MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS
    }
    fn any_grain() -> impl Strategy<Value = Grain> {
        proptest::sample::select(Grain::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in any_days()) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn date_text_round_trip(days in any_days()) {
            prop_assert_eq!(parse_iso_date(&format_iso_date(days)), Some(days));
        }

        #[test]
        fn timestamp_text_round_trip(micros in any_micros(), with_zone: bool) {
            let text = format_iso_timestamp(micros, with_zone);
            prop_assert_eq!(parse_iso_timestamp(&text, with_zone), Some(micros));
        }

        #[test]
        fn text_order_matches_value_order_in_common_era(a in 0i64..3_000_000_000_000_000, b in 0i64..3_000_000_000_000_000) {
            // Between 2000 and 9999 ISO text sorts like the value; the planner relies on values, DBAs on text.
            let (ta, tb) = (format_iso_timestamp(a, true), format_iso_timestamp(b, true));
            prop_assert_eq!(a.cmp(&b), ta.cmp(&tb));
        }

        #[test]
        fn floor_is_aligned_and_below(micros in any_micros(), grain in any_grain()) {
            let f = floor_micros(micros, grain);
            prop_assert!(f <= micros);
            prop_assert_eq!(floor_micros(f, grain), f);
            if let Some(next) = add_grains_micros(f, grain, 1) {
                prop_assert!(micros < next, "{micros} not below next boundary {next}");
                prop_assert_eq!(floor_micros(next, grain), next);
            }
        }

        #[test]
        fn floor_days_is_aligned(days in any_days(), grain in any_grain()) {
            let f = floor_days(days, grain);
            prop_assert!(f <= days);
            prop_assert_eq!(floor_days(f, grain), f);
            let next = add_grains_days(f, grain, 1).unwrap();
            prop_assert!(days < next);
        }

        #[test]
        fn grain_steps_round_trip(days in -1_000_000i64..1_000_000, grain in any_grain(), n in -500i64..500) {
            let start = floor_days(days, grain);
            let moved = add_grains_days(start, grain, n).unwrap();
            prop_assert_eq!(floor_days(moved, grain), moved);
            prop_assert_eq!(add_grains_days(moved, grain, -n), Some(start));
        }

        #[test]
        fn multiples(value: i64, step in 1i64..1_000_000_000) {
            let f = floor_to_multiple(value, step);
            prop_assert!(f <= value && value - f < step);
            prop_assert_eq!(f.rem_euclid(step), 0);
        }

        #[test]
        fn round_step_is_round_and_minimal(raw in 1i64..1_000_000_000_000) {
            let step = round_step_up(raw);
            prop_assert!(step >= raw);
            let mut mantissa = step;
            while mantissa % 10 == 0 { mantissa /= 10; }
            prop_assert!([1, 2, 5].contains(&mantissa));
            // The next smaller round step would not be enough.
            let previous = if mantissa == 5 { step / 5 * 2 } else { step / 2 };
            prop_assert!(step == 1 || previous < raw);
        }
    }
}

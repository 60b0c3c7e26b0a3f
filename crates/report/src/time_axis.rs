//! The time axis: ticks on the chart's zone's civil calendar.
//!
//! Ticks are chosen as civil times (local midnight, local 06:00, the 1st of
//! a month) and then mapped to instants, not as multiples of a fixed number
//! of seconds: a DBA in Berlin thinks "the partition for Monday", and across
//! a DST change a fixed 6-hour grid would label 05:00 and 11:00.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The zone labels are drawn in, and whether it is the one that was asked for.
#[derive(Debug, Clone)]
pub(crate) struct LabelZone {
    pub(crate) tz: TimeZone,
    /// The name to show to the reader: the requested name, or "UTC" after a
    /// fallback, so the page never claims a zone it did not use.
    pub(crate) name: String,
    pub(crate) fell_back: bool,
}

pub(crate) fn label_zone(requested: &str) -> LabelZone {
    let requested = requested.trim();
    match TimeZone::get(requested) {
        Ok(tz) if !requested.is_empty() => LabelZone {
            tz,
            name: requested.to_owned(),
            fell_back: false,
        },
        _ => LabelZone {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
            fell_back: true,
        },
    }
}

/// A tick position and the text under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeTick {
    pub(crate) at: i64,
    pub(crate) label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickStep {
    Minutes(i16),
    Days(i64),
    Weeks,
    /// The 1st and the 16th: fills the gap between weekly and monthly
    /// ticks, where months alone would leave only three or four labels.
    HalfMonths,
    Months(i8),
    Years(i16),
}

impl TickStep {
    fn approx_seconds(self) -> f64 {
        match self {
            TickStep::Minutes(m) => f64::from(m) * 60.0,
            TickStep::Days(d) => d as f64 * 86_400.0,
            TickStep::Weeks => 7.0 * 86_400.0,
            TickStep::HalfMonths => 15.22 * 86_400.0,
            TickStep::Months(m) => f64::from(m) * 30.44 * 86_400.0,
            TickStep::Years(y) => f64::from(y) * 365.25 * 86_400.0,
        }
    }
}

const CANDIDATE_STEPS: &[TickStep] = &[
    TickStep::Minutes(15),
    TickStep::Minutes(30),
    TickStep::Minutes(60),
    TickStep::Minutes(120),
    TickStep::Minutes(180),
    TickStep::Minutes(360),
    TickStep::Minutes(720),
    TickStep::Days(1),
    TickStep::Days(2),
    TickStep::Weeks,
    TickStep::HalfMonths,
    TickStep::Months(1),
    TickStep::Months(3),
    TickStep::Months(6),
    TickStep::Years(1),
    TickStep::Years(2),
    TickStep::Years(5),
    TickStep::Years(10),
    TickStep::Years(20),
    TickStep::Years(50),
    TickStep::Years(100),
    TickStep::Years(200),
    TickStep::Years(500),
    TickStep::Years(1000),
    TickStep::Years(2000),
    TickStep::Years(5000),
];

/// At most this many intervals between ticks, so at most ~10 labels: enough
/// to read a value's time off the chart, few enough to never crowd.
const MAX_INTERVALS: f64 = 9.0;

/// Ticks within `[since, until]`, labelled in `tz`.
///
/// Sub-day ticks print the time of day, except at local midnight where they
/// print the date, so a multi-day hourly chart still says which day is
/// which. Instants outside what jiff can represent get no ticks.
pub(crate) fn time_ticks(since: i64, until: i64, tz: &TimeZone) -> Vec<TimeTick> {
    if until <= since {
        return Vec::new();
    }
    let (Ok(start), Ok(end)) = (Timestamp::from_second(since), Timestamp::from_second(until))
    else {
        return Vec::new();
    };
    let span = (i128::from(until) - i128::from(since)) as f64;
    let step = CANDIDATE_STEPS
        .iter()
        .copied()
        .find(|step| span / step.approx_seconds() <= MAX_INTERVALS)
        .unwrap_or(TickStep::Years(5000));
    let first_day = start.to_zoned(tz.clone()).date();
    let last_day = end.to_zoned(tz.clone()).date();
    let mut ticks = match step {
        TickStep::Minutes(minutes) => intraday_ticks(first_day, last_day, minutes, tz),
        TickStep::Days(days) => day_ticks(first_day, last_day, tz, |date| {
            epoch_day(date).rem_euclid(days) == 0
        }),
        TickStep::Weeks => day_ticks(first_day, last_day, tz, |date| {
            date.weekday() == Weekday::Monday
        }),
        TickStep::HalfMonths => days_between(first_day, last_day)
            .filter(|date| date.day() == 1 || date.day() == 16)
            .filter_map(|date| date.to_zoned(tz.clone()).ok())
            .map(|zoned| TimeTick {
                at: zoned.timestamp().as_second(),
                label: zoned.strftime("%-d %b").to_string(),
            })
            .collect(),
        TickStep::Months(months) => month_ticks(first_day, last_day, months, tz),
        TickStep::Years(years) => year_ticks(first_day, last_day, years, tz),
    };
    ticks.retain(|tick| tick.at >= since && tick.at <= until);
    // A civil time inside a DST gap resolves to the same instant as the next
    // one; one label per instant is enough.
    ticks.dedup_by_key(|tick| tick.at);
    ticks
}

fn intraday_ticks(first_day: Date, last_day: Date, minutes: i16, tz: &TimeZone) -> Vec<TimeTick> {
    let mut ticks = Vec::new();
    for date in days_between(first_day, last_day) {
        for minute_of_day in (0..24 * 60).step_by(minutes as usize) {
            if minute_of_day == 0 {
                if let Some(tick) = start_of_day_tick(date, tz) {
                    ticks.push(tick);
                }
                continue;
            }
            let civil = date.at((minute_of_day / 60) as i8, (minute_of_day % 60) as i8, 0, 0);
            if let Ok(zoned) = tz.to_ambiguous_zoned(civil).compatible() {
                ticks.push(TimeTick {
                    at: zoned.timestamp().as_second(),
                    label: zoned.strftime("%H:%M").to_string(),
                });
            }
        }
    }
    ticks
}

fn day_ticks(
    first_day: Date,
    last_day: Date,
    tz: &TimeZone,
    wanted: impl Fn(Date) -> bool,
) -> Vec<TimeTick> {
    days_between(first_day, last_day)
        .filter(|date| wanted(*date))
        .filter_map(|date| start_of_day_tick(date, tz))
        .collect()
}

fn month_ticks(first_day: Date, last_day: Date, months: i8, tz: &TimeZone) -> Vec<TimeTick> {
    let mut ticks = Vec::new();
    let mut month = first_day.first_of_month();
    while month <= last_day {
        if (month.month() - 1) % months == 0 {
            if let Ok(zoned) = month.to_zoned(tz.clone()) {
                ticks.push(TimeTick {
                    at: zoned.timestamp().as_second(),
                    label: zoned.strftime("%b %Y").to_string(),
                });
            }
        }
        match month.checked_add(jiff::Span::new().months(1)) {
            Ok(next) => month = next,
            Err(_) => break,
        }
    }
    ticks
}

fn year_ticks(first_day: Date, last_day: Date, years: i16, tz: &TimeZone) -> Vec<TimeTick> {
    (first_day.year()..=last_day.year())
        .filter(|year| year.rem_euclid(years) == 0)
        .filter_map(|year| Date::new(year, 1, 1).ok())
        .filter_map(|date| date.to_zoned(tz.clone()).ok())
        .map(|zoned| TimeTick {
            at: zoned.timestamp().as_second(),
            label: zoned.strftime("%Y").to_string(),
        })
        .collect()
}

/// The first instant of a local day (which is not 00:00 where DST starts at
/// midnight), labelled with the date.
fn start_of_day_tick(date: Date, tz: &TimeZone) -> Option<TimeTick> {
    let zoned = date.to_zoned(tz.clone()).ok()?;
    Some(TimeTick {
        at: zoned.timestamp().as_second(),
        label: zoned.strftime("%a %-d %b").to_string(),
    })
}

fn days_between(first_day: Date, last_day: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(first_day), move |date| {
        date.tomorrow().ok().filter(|next| *next <= last_day)
    })
}

/// Days since 1970-01-01, so "every other day" picks the same days whatever
/// period the chart shows.
fn epoch_day(date: Date) -> i64 {
    date.to_zoned(TimeZone::UTC)
        .map(|zoned| zoned.timestamp().as_second().div_euclid(86_400))
        .unwrap_or(0)
}

/// "2026-11-30 06:00" in the label zone, for titles and headings.
pub(crate) fn format_instant(at: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(at) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => format!("@{at}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn a_day_of_hourly_data_gets_three_hour_ticks_with_the_date_at_midnight() {
        let ticks = time_ticks(
            utc("2026-11-30T00:00:00Z"),
            utc("2026-12-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        let labels: Vec<&str> = ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Mon 30 Nov",
                "03:00",
                "06:00",
                "09:00",
                "12:00",
                "15:00",
                "18:00",
                "21:00",
                "Tue 1 Dec"
            ]
        );
    }

    #[test]
    fn a_week_gets_daily_ticks_and_longer_spans_get_calendar_ticks() {
        let week = time_ticks(
            utc("2026-11-23T00:00:00Z"),
            utc("2026-11-30T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(week.len(), 8);
        assert_eq!(week[0].label, "Mon 23 Nov");
        let quarter = time_ticks(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-04-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        let labels: Vec<&str> = quarter.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["1 Jan", "16 Jan", "1 Feb", "16 Feb", "1 Mar", "16 Mar", "1 Apr"]
        );
        let half_year = time_ticks(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-07-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        let labels: Vec<&str> = half_year.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["Jan 2026", "Feb 2026", "Mar 2026", "Apr 2026", "May 2026", "Jun 2026", "Jul 2026"]
        );
    }

    #[test]
    fn ticks_follow_local_hours_across_the_spring_forward() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-28 12:00 CET to 2026-03-30 00:00 CEST: 35 real hours.
        let ticks = time_ticks(
            utc("2026-03-28T11:00:00Z"),
            utc("2026-03-29T22:00:00Z"),
            &berlin,
        );
        let midnight = ticks.iter().find(|t| t.label == "Sun 29 Mar").unwrap();
        assert_eq!(midnight.at, utc("2026-03-28T23:00:00Z"));
        let six = ticks
            .iter()
            .find(|t| t.label == "06:00" && t.at > midnight.at)
            .unwrap();
        assert_eq!(six.at, utc("2026-03-29T04:00:00Z"));
    }

    #[test]
    fn unknown_zones_fall_back_to_utc_and_say_so() {
        let zone = label_zone("Mars/Olympus_Mons");
        assert!(zone.fell_back);
        assert_eq!(zone.name, "UTC");
        assert!(!label_zone("Europe/Berlin").fell_back);
    }

    #[test]
    fn instants_beyond_the_calendar_get_no_ticks_instead_of_a_panic() {
        assert!(time_ticks(i64::MIN, i64::MAX, &TimeZone::UTC).is_empty());
        assert!(time_ticks(10, 10, &TimeZone::UTC).is_empty());
    }
}

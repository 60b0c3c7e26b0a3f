//! Natural boundaries of `timestamptz` keys in a table's time zone.
//!
//! A day, week, month or year starts at local midnight, found through the
//! zone's rules (the IANA database, bundled with `jiff`): a day across a
//! daylight-saving change is 23 or 25 hours long. Hours and minutes are
//! counted in absolute time and aligned to the local clock, so a fall-back
//! night has two partitions for its repeated hour, not one of two hours.
//! Instants outside the years `jiff` handles (±9999) use UTC: no zone has
//! rules that far out anyway.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::calendar::{
    self, Grain, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND,
    UNIX_TO_PG_EPOCH_SECONDS,
};

/// A time zone by its IANA name; `UTC` needs no rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    /// `None`: UTC.
    name: Option<String>,
    rules: Option<TimeZone>,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl Zone {
    pub const fn utc() -> Zone {
        Zone {
            name: None,
            rules: None,
        }
    }

    /// The zone of an IANA name (`Europe/Berlin`), or `None` if the
    /// database does not know it. `UTC` and its aliases need no rules.
    pub fn named(name: &str) -> Option<Zone> {
        // Looked up without regard to case, kept as the database spells it
        // (`europe/berlin` is `Europe/Berlin`).
        let rules = jiff::tz::db().get(name).ok()?;
        let canonical = rules.iana_name()?.to_string();
        if canonical == "Etc/Unknown" {
            return None;
        }
        let is_utc = matches!(
            canonical.as_str(),
            "UTC"
                | "Etc/UTC"
                | "Etc/UCT"
                | "UCT"
                | "Etc/Universal"
                | "Universal"
                | "Zulu"
                | "Etc/Zulu"
        );
        Some(Zone {
            name: Some(canonical),
            rules: (!is_utc).then_some(rules),
        })
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("UTC")
    }

    /// Hour of the local clock, 0-23.
    pub fn local_hour(&self, micros: i64) -> i64 {
        self.local(micros).rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR
    }

    pub fn is_utc(&self) -> bool {
        self.rules.is_none()
    }

    /// The zone's offset from UTC at `micros` (PostgreSQL's epoch), in microseconds.
    pub fn offset_micros(&self, micros: i64) -> i64 {
        match (&self.rules, timestamp(micros)) {
            (Some(rules), Some(ts)) => rules.to_offset(ts).seconds() as i64 * MICROS_PER_SECOND,
            _ => 0,
        }
    }

    /// `micros` on the local clock: what `calendar` computes civil dates of.
    pub fn local(&self, micros: i64) -> i64 {
        micros.saturating_add(self.offset_micros(micros))
    }

    /// The instant of local midnight starting day `days` (days since
    /// 2000-01-01). A midnight skipped by a daylight-saving change is the
    /// instant the day starts (the end of the gap).
    fn midnight(&self, days: i64) -> Option<i64> {
        let utc = days.checked_mul(MICROS_PER_DAY)?;
        let Some(rules) = &self.rules else {
            return Some(utc);
        };
        let (year, month, day) = calendar::civil_from_days(days);
        let (Ok(year), Ok(month), Ok(day)) =
            (i16::try_from(year), i8::try_from(month), i8::try_from(day))
        else {
            return Some(utc);
        };
        let Ok(date) = jiff::civil::Date::new(year, month, day) else {
            return Some(utc);
        };
        // A midnight skipped by a change starts the day at the end of the
        // gap; a midnight that happens twice starts it at the second, as
        // PostgreSQL reads such a local time.
        let ambiguous =
            rules.to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()));
        let midnight = match ambiguous.offset() {
            jiff::tz::AmbiguousOffset::Fold { .. } => ambiguous.later(),
            _ => ambiguous.compatible(),
        };
        match midnight {
            Ok(ts) => Some(ts.as_microsecond() - UNIX_TO_PG_EPOCH_SECONDS * MICROS_PER_SECOND),
            Err(_) => Some(utc),
        }
    }

    /// Start of the grain that contains `micros`, on the local clock.
    pub fn floor(&self, micros: i64, grain: Grain) -> i64 {
        if self.is_utc() {
            return calendar::floor_micros(micros, grain);
        }
        let offset = self.offset_micros(micros);
        let local = micros.saturating_add(offset);
        match grain {
            Grain::Minute => self.floor_within_day(micros, MICROS_PER_MINUTE),
            Grain::Hour => self.floor_within_day(micros, MICROS_PER_HOUR),
            _ => {
                let days = calendar::floor_days(local.div_euclid(MICROS_PER_DAY), grain);
                self.midnight(days)
                    .filter(|m| *m <= micros)
                    .unwrap_or_else(|| calendar::floor_micros(micros, grain))
            }
        }
    }

    /// Start of the hour or minute (`unit`) holding `micros` on the local
    /// clock. Where the offset changes by less than `unit` (Lord Howe's
    /// half hour), the change starts a new one.
    fn floor_within_day(&self, micros: i64, unit: i64) -> i64 {
        let phase = self.offset_micros(micros).rem_euclid(unit);
        let floor = micros - micros.saturating_add(phase).rem_euclid(unit);
        if self.offset_micros(floor).rem_euclid(unit) == phase {
            return floor;
        }
        let change = self
            .rules
            .as_ref()
            .zip(timestamp(micros))
            .and_then(|(rules, ts)| {
                rules
                    .preceding(ts.checked_add(jiff::SignedDuration::from_micros(1)).ok()?)
                    .next()
            })
            .map(|t| t.timestamp().as_microsecond() - UNIX_TO_PG_EPOCH_SECONDS * MICROS_PER_SECOND);
        change.map_or(floor, |c| c.clamp(floor, micros))
    }

    /// `micros` moved by `n` grains: hours and minutes in absolute time
    /// (one cut short where the offset changes by a fraction of it), days
    /// and longer from local midnight to local midnight. `micros` must be
    /// aligned to the grain.
    pub fn add(&self, micros: i64, grain: Grain, n: i64) -> Option<i64> {
        match grain {
            _ if self.is_utc() => calendar::add_grains_micros(micros, grain, n),
            Grain::Minute | Grain::Hour if n < 0 => calendar::add_grains_micros(micros, grain, n),
            Grain::Minute | Grain::Hour => {
                let mut at = micros;
                for _ in 0..n {
                    let next = calendar::add_grains_micros(at, grain, 1)?;
                    let floor = self.floor(next, grain);
                    at = if floor > at { floor } else { next };
                }
                Some(at)
            }
            _ => {
                let days = self.local(micros).div_euclid(MICROS_PER_DAY);
                self.midnight(calendar::add_grains_days(days, grain, n)?)
            }
        }
    }

    /// The local civil date of `micros`: (year, month, day).
    pub fn civil(&self, micros: i64) -> (i64, u32, u32) {
        calendar::civil_from_days(self.local(micros).div_euclid(MICROS_PER_DAY))
    }
}

/// PostgreSQL's microseconds since 2000-01-01 as a `jiff` timestamp.
fn timestamp(micros: i64) -> Option<Timestamp> {
    let unix = micros.checked_add(UNIX_TO_PG_EPOCH_SECONDS * MICROS_PER_SECOND)?;
    Timestamp::from_microsecond(unix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{days_from_civil, format_iso_timestamp, parse_iso_timestamp};
    use proptest::prelude::*;

    fn at(text: &str) -> i64 {
        parse_iso_timestamp(text, true).expect(text)
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).expect(name)
    }

    #[test]
    fn unknown_names_are_refused_and_utc_needs_no_rules() {
        assert!(Zone::named("Mars/Olympus_Mons").is_none());
        assert!(Zone::named("").is_none());
        assert!(Zone::named("Etc/Unknown").is_none());
        assert_eq!(zone("europe/berlin").name(), "Europe/Berlin");
        assert!(zone("UTC").is_utc());
        assert!(zone("Etc/UTC").is_utc());
        assert!(!zone("Asia/Tokyo").is_utc());
    }

    #[test]
    fn berlin_days_start_at_local_midnight_and_follow_daylight_saving() {
        let berlin = zone("Europe/Berlin");
        // Winter: midnight is 23:00 UTC the day before.
        assert_eq!(
            berlin.floor(at("2026-03-28 12:00:00+00"), Grain::Day),
            at("2026-03-27 23:00:00+00")
        );
        // 29 March 2026: clocks go forward at 02:00, the day has 23 hours.
        let spring = at("2026-03-28 23:00:00+00");
        let next = berlin.add(spring, Grain::Day, 1).unwrap();
        assert_eq!(next, at("2026-03-29 22:00:00+00"));
        assert_eq!(next - spring, 23 * MICROS_PER_HOUR);
        // 25 October 2026: clocks go back, 25 hours.
        let autumn = at("2026-10-24 22:00:00+00");
        let next = berlin.add(autumn, Grain::Day, 1).unwrap();
        assert_eq!(next - autumn, 25 * MICROS_PER_HOUR);
        assert_eq!(berlin.floor(next - 1, Grain::Day), autumn);
        // Months and weeks too.
        assert_eq!(
            berlin.floor(at("2026-04-15 00:00:00+00"), Grain::Month),
            at("2026-03-31 22:00:00+00")
        );
        assert_eq!(
            berlin.floor(at("2026-03-29 12:00:00+00"), Grain::Week),
            at("2026-03-22 23:00:00+00")
        );
    }

    #[test]
    fn new_york_and_tokyo() {
        let new_york = zone("America/New_York");
        // 8 March 2026, clocks go forward: 23 hours from midnight to midnight.
        let day = new_york.floor(at("2026-03-08 12:00:00+00"), Grain::Day);
        assert_eq!(day, at("2026-03-08 05:00:00+00"));
        assert_eq!(
            new_york.add(day, Grain::Day, 1).unwrap() - day,
            23 * MICROS_PER_HOUR
        );
        let tokyo = zone("Asia/Tokyo");
        let day = tokyo.floor(at("2026-07-01 12:00:00+00"), Grain::Day);
        assert_eq!(day, at("2026-06-30 15:00:00+00"));
        assert_eq!(
            tokyo.add(day, Grain::Day, 1).unwrap() - day,
            24 * MICROS_PER_HOUR
        );
    }

    #[test]
    fn lord_howe_shifts_by_half_an_hour() {
        let lord_howe = zone("Australia/Lord_Howe");
        // 5 April 2026: back from +11 to +10:30 at 02:00 local, a day of 24.5 hours.
        let day = lord_howe.floor(at("2026-04-05 00:00:00+00"), Grain::Day);
        assert_eq!(day, at("2026-04-04 13:00:00+00"));
        let next = lord_howe.add(day, Grain::Day, 1).unwrap();
        assert_eq!(next, at("2026-04-05 13:30:00+00"));
        // Its hours start at half past on the UTC clock (+10:30).
        assert_eq!(
            lord_howe.floor(at("2026-06-01 10:10:00+00"), Grain::Hour),
            at("2026-06-01 09:30:00+00")
        );
    }

    #[test]
    fn the_far_past_and_future_fall_back_to_utc() {
        let berlin = zone("Europe/Berlin");
        let far = days_from_civil(20000, 1, 1) * MICROS_PER_DAY;
        assert_eq!(berlin.floor(far + 5, Grain::Day), far);
        let bc = days_from_civil(-20000, 1, 1) * MICROS_PER_DAY;
        assert_eq!(berlin.floor(bc + 5, Grain::Day), bc);
    }

    #[test]
    fn midnights_skipped_or_repeated() {
        // Santiago, 6 September 2026: clocks go from 00:00 to 01:00; the day
        // starts at the end of the gap.
        let santiago = zone("America/Santiago");
        let day = santiago.floor(at("2026-09-06 12:00:00+00"), Grain::Day);
        assert_eq!(day, at("2026-09-06 04:00:00+00"));
        // Havana, 2 November 2025: clocks go back from 01:00 to 00:00, so
        // midnight happens twice (CDT, then CST); the day starts at the
        // second, as in PostgreSQL.
        let havana = zone("America/Havana");
        let day = havana.floor(at("2025-11-02 12:00:00+00"), Grain::Day);
        assert_eq!(day, at("2025-11-02 05:00:00+00"));
    }

    proptest! {
        /// Every grain's floor is at or before the instant, a fixed point,
        /// and the next grain starts after the instant: no gap, no overlap.
        #[test]
        fn grains_tile_time_in_every_zone(
            zone_index in 0usize..9,
            grain_index in 0usize..6,
            micros in at("1900-01-01 00:00:00+00")..at("2100-01-01 00:00:00+00"),
        ) {
            let names = [
                "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo", "UTC",
                "America/Santiago", "America/Havana", "Asia/Kathmandu", "Pacific/Apia",
            ];
            let zone = zone(names[zone_index]);
            let grain = Grain::ALL[grain_index];
            let floor = zone.floor(micros, grain);
            prop_assert!(floor <= micros, "{} floor {}", format_iso_timestamp(micros, true), format_iso_timestamp(floor, true));
            prop_assert_eq!(zone.floor(floor, grain), floor);
            let next = zone.add(floor, grain, 1).unwrap();
            prop_assert!(next > micros, "{} next {}", format_iso_timestamp(micros, true), format_iso_timestamp(next, true));
            prop_assert_eq!(zone.floor(next, grain), next);
            if grain >= Grain::Day {
                prop_assert_eq!(zone.add(next, grain, -1), Some(floor));
            }
        }
    }
}

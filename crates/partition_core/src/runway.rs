//! Runway: how long the attached partitions last before rows would have to
//! go to DEFAULT, if nothing new were attached.

use crate::key::KeyType;

/// The end of the key space ready for rows: the attached partition that
/// holds `frontier`, extended through the partitions that follow it
/// without a gap. `None` when no attached partition holds the frontier
/// (the next row past it goes to DEFAULT now).
pub fn ready_end(attached: &[(i64, i64)], frontier: i64) -> Option<i64> {
    let mut ranges = attached.to_vec();
    ranges.sort_unstable();
    let start = ranges
        .iter()
        .position(|&(from, to)| from <= frontier && frontier < to)?;
    let mut end = ranges[start].1;
    for &(from, to) in &ranges[start + 1..] {
        if from != end {
            break;
        }
        end = to;
    }
    Some(end)
}

/// The longest runway reported: a century. Beyond it the figure means
/// nothing, and it would not fit an `interval`.
pub const MAX_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// Seconds until keys reach `end` from `frontier`. Time keys advance at the
/// clock's speed; integer keys at `keys_per_hour`, the forecast for each
/// coming hour, the last hour's rate held beyond the forecast. `None` when
/// they never do: the ready space is unbounded (`MAXVALUE`, `infinity`), or
/// the forecast says the keys stop short of `end` (or there is none). At
/// most `MAX_SECONDS`.
pub fn seconds_until(
    key_type: KeyType,
    frontier: i64,
    end: i64,
    keys_per_hour: &[f64],
) -> Option<f64> {
    if end == i64::MAX {
        return None;
    }
    let seconds = unbounded_seconds_until(key_type, frontier, end, keys_per_hour)?;
    (!seconds.is_nan()).then_some(seconds.clamp(0.0, MAX_SECONDS))
}

fn unbounded_seconds_until(
    key_type: KeyType,
    frontier: i64,
    end: i64,
    keys_per_hour: &[f64],
) -> Option<f64> {
    let ahead = end.saturating_sub(frontier).max(0) as f64;
    if key_type.is_temporal() {
        return Some(ahead / key_type.units_per_second());
    }
    let mut left = ahead;
    let mut hours = 0.0;
    for &rate in keys_per_hour {
        let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        if rate >= left {
            return Some((hours + left / rate.max(f64::MIN_POSITIVE)) * 3600.0);
        }
        left -= rate;
        hours += 1.0;
    }
    let last = keys_per_hour
        .last()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)?;
    Some((hours + left / last) * 3600.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn ready_space_runs_through_contiguous_partitions_only() {
        let attached = [(0, 10), (20, 30), (10, 20), (40, 50)];
        assert_eq!(ready_end(&attached, 5), Some(30));
        assert_eq!(ready_end(&attached, 45), Some(50));
        assert_eq!(ready_end(&attached, 35), None, "the frontier is in DEFAULT");
        assert_eq!(ready_end(&attached, 30), None, "upper bounds are exclusive");
        assert_eq!(ready_end(&[], 0), None);
    }

    #[test]
    fn time_keys_last_as_long_as_their_key_span() {
        assert_eq!(
            seconds_until(KeyType::TimestampTz, 0, 3 * HOUR, &[]),
            Some(3.0 * 3600.0)
        );
        assert_eq!(
            seconds_until(KeyType::Date, 10, 12, &[]),
            Some(2.0 * 86_400.0)
        );
        assert_eq!(
            seconds_until(KeyType::Timestamp, 5 * HOUR, HOUR, &[]),
            Some(0.0)
        );
    }

    #[test]
    fn integer_keys_last_at_the_forecast_rate() {
        // 100 keys ahead: 60 in the first hour, 80 per hour after.
        let seconds = seconds_until(KeyType::BigInt, 1_000, 1_100, &[60.0, 80.0]).unwrap();
        assert!((seconds - 1.5 * 3600.0).abs() < 1e-6, "{seconds}");
        // Beyond the forecast the last hour's rate holds.
        let seconds = seconds_until(KeyType::Integer, 0, 300, &[100.0]).unwrap();
        assert!((seconds - 3.0 * 3600.0).abs() < 1e-6, "{seconds}");
        assert_eq!(seconds_until(KeyType::Integer, 0, 300, &[100.0, 0.0]), None);
        assert_eq!(seconds_until(KeyType::Integer, 0, 300, &[]), None);
        assert_eq!(seconds_until(KeyType::Integer, 0, 300, &[f64::NAN]), None);
    }

    #[test]
    fn unbounded_or_astronomical_runways_stay_printable() {
        assert_eq!(
            seconds_until(KeyType::Date, 0, i64::MAX, &[]),
            None,
            "infinity"
        );
        assert_eq!(
            seconds_until(KeyType::BigInt, 0, i64::MAX, &[1.0]),
            None,
            "MAXVALUE"
        );
        assert_eq!(
            seconds_until(KeyType::Date, 0, i64::MAX - 1, &[]),
            Some(MAX_SECONDS)
        );
        assert_eq!(
            seconds_until(KeyType::BigInt, 0, i64::MAX - 1, &[f64::MIN_POSITIVE]),
            Some(MAX_SECONDS)
        );
    }
}

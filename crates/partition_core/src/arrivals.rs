//! How rows arrive, learned per table: how far one cycle's arrivals reach
//! past the key frontier (a table fed weekly jumps a week at once, one fed
//! every second moves a little between cycles), a margin tuned by what
//! still reached DEFAULT, and which keys are too far from the rest to be
//! believed (outliers stay in DEFAULT instead of moving the frontier).

use crate::key::KeyType;
use crate::planner::RowsInRange;

/// Advances remembered: the last eight cycles in which keys moved on.
pub const REACHES_KEPT: usize = 8;
/// The margin over the largest advance: where it starts, its floor and
/// its ceiling.
pub const MARGIN_START: f64 = 1.5;
pub const MARGIN_MIN: f64 = 1.25;
pub const MARGIN_MAX: f64 = 8.0;

/// The advances remembered after a cycle that moved the frontier by
/// `advance` keys (nothing is remembered of a cycle that did not).
pub fn remember_advance(reaches: &[i64], advance: i64) -> Vec<i64> {
    let mut kept: Vec<i64> = reaches.iter().copied().filter(|r| *r > 0).collect();
    if advance > 0 {
        kept.push(advance);
    }
    let surplus = kept.len().saturating_sub(REACHES_KEPT);
    kept.drain(..surplus);
    kept
}

/// How far a young table fed in batches may reach before its week is
/// known: four days for time keys (a table fed a day at a time may get its
/// next batch after a weekend: Friday evening to Monday evening is three
/// days; empty partitions attached early cost little); for integer keys the
/// activation lead of a whole partition already looks ahead.
pub fn prior_reach(key_type: KeyType) -> i64 {
    if key_type.is_temporal() {
        (4.0 * 86_400.0 * key_type.units_per_second()).max(1.0) as i64
    } else {
        0
    }
}

/// How far ahead of the frontier the next arrivals may reach: the largest
/// remembered advance times the margin.
pub fn reach(reaches: &[i64], margin: f64) -> i64 {
    let largest = reaches.iter().copied().max().unwrap_or(0).max(0);
    let margin = if margin.is_finite() {
        margin.clamp(MARGIN_MIN, MARGIN_MAX)
    } else {
        MARGIN_START
    };
    let reach = largest as f64 * margin;
    if reach >= i64::MAX as f64 {
        i64::MAX
    } else {
        reach as i64
    }
}

/// How far past `frontier` the forecast `demand` expects `rows` rows to
/// reach: a table whose next batch holds `rows` rows needs its partitions
/// ready that far, even across hours or days the forecast expects empty (a
/// weekend, a closed night). `None` when the forecast does not expect that
/// many rows within its horizon.
pub fn keys_holding(demand: &[RowsInRange], frontier: i64, rows: f64) -> Option<i64> {
    if rows <= 0.0 || !rows.is_finite() {
        return Some(0);
    }
    let mut ranges: Vec<&RowsInRange> = demand.iter().filter(|d| d.end > frontier).collect();
    ranges.sort_by_key(|d| d.start);
    let mut held = 0.0;
    for d in ranges {
        let from = d.start.max(frontier);
        let width = (d.end - from) as f64;
        let share = d.rows.max(0.0) * width / (d.end - d.start).max(1) as f64;
        if held + share >= rows && share > 0.0 {
            let into = ((rows - held) / share * width).ceil() as i64;
            return Some(from.saturating_add(into).saturating_sub(frontier));
        }
        held += share;
    }
    None
}

/// The margin after a cycle: rows that reached DEFAULT (where a partition
/// should have been ready) widen it by half; a cycle whose arrivals all
/// found their partitions narrows it a little, down to the floor.
pub fn adapt_margin(margin: f64, reached_default: bool, keys_arrived: bool) -> f64 {
    let margin = if margin.is_finite() {
        margin
    } else {
        MARGIN_START
    };
    let next = if reached_default {
        margin * 1.5
    } else if keys_arrived {
        margin * 0.95
    } else {
        margin
    };
    next.clamp(MARGIN_MIN, MARGIN_MAX)
}

/// The keys history and the forecast support; rows outside stay in
/// DEFAULT and are reported, until the data catches up with them or a DBA
/// releases them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plausible {
    pub lower: Option<i64>,
    pub upper: Option<i64>,
}

impl Plausible {
    pub const EVERYTHING: Plausible = Plausible {
        lower: None,
        upper: None,
    };

    pub fn contains(&self, key: i64) -> bool {
        self.lower.is_none_or(|l| key >= l) && self.upper.is_none_or(|u| key < u)
    }

    /// Widened to take in `[low, high]` (keys a DBA released).
    pub fn including(self, low: Option<i64>, high: Option<i64>) -> Plausible {
        Plausible {
            lower: match (self.lower, low) {
                (Some(l), Some(r)) => Some(l.min(r)),
                (l, _) => l,
            },
            upper: match (self.upper, high) {
                (Some(u), Some(r)) => Some(u.max(r.saturating_add(1))),
                (u, _) => u,
            },
        }
    }
}

/// Rows found somewhere, split into those with plausible keys and the
/// outliers: `(plausible, below, above)`. A group is judged by its first key.
pub fn split(
    groups: &[RowsInRange],
    bounds: &Plausible,
) -> (Vec<RowsInRange>, Vec<RowsInRange>, Vec<RowsInRange>) {
    let mut plausible = Vec::new();
    let mut below = Vec::new();
    let mut above = Vec::new();
    for group in groups {
        if bounds.lower.is_some_and(|l| group.start < l) {
            below.push(*group);
        } else if bounds.upper.is_some_and(|u| group.start >= u) {
            above.push(*group);
        } else {
            plausible.push(*group);
        }
    }
    (plausible, below, above)
}

/// What one table's keys may plausibly be, from its frontier (the highest
/// key outside DEFAULT; `None`: nothing to judge by, all keys pass):
///
/// - integer keys: at most four times the planning horizon or the learned
///   reach past the frontier, whichever is longer;
/// - time keys, past the frontier or the clock (`now`), whichever is later:
///   once the table's arrivals are learned (`reach` > 0), at most the
///   planning horizon or four times the reach, whichever is longer (and at
///   least a day): a client clock days fast is judged by how this table's
///   rows really arrive, not by a fixed window; before that, at most four
///   times the horizon and never less than 30 days;
/// - time keys, no older than the history kept (`retention`, in key units)
///   before the frontier.
pub fn plausible(
    key_type: KeyType,
    frontier: Option<i64>,
    now: Option<i64>,
    horizon: i64,
    reach: i64,
    retention: Option<i64>,
) -> Plausible {
    let Some(frontier) = frontier else {
        return Plausible::EVERYTHING;
    };
    let ahead = horizon.max(reach).max(1).saturating_mul(4);
    let upper = if key_type.is_temporal() {
        let days = |n: f64| (n * 86_400.0 * key_type.units_per_second()) as i64;
        let base = frontier.max(now.unwrap_or(frontier));
        let window = if reach > 0 {
            horizon.max(reach.saturating_mul(4)).max(days(1.0))
        } else {
            ahead.max(days(30.0))
        };
        base.saturating_add(window)
    } else {
        frontier.saturating_add(ahead)
    };
    let lower = if key_type.is_temporal() {
        retention.map(|r| frontier.saturating_sub(r.max(0)))
    } else {
        None
    };
    Plausible {
        lower,
        upper: Some(upper),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn advances_are_remembered_for_eight_cycles_that_moved() {
        let mut reaches = Vec::new();
        for advance in [5, 0, 7, 0, 0] {
            reaches = remember_advance(&reaches, advance);
        }
        assert_eq!(reaches, vec![5, 7]);
        for advance in 1..=8 {
            reaches = remember_advance(&reaches, advance);
        }
        assert_eq!(reaches, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_weekly_feed_reaches_a_week_and_a_half() {
        let reaches = [7 * DAY, 7 * DAY, 6 * DAY];
        assert_eq!(reach(&reaches, MARGIN_START), 7 * DAY + 7 * DAY / 2);
        assert_eq!(reach(&[], MARGIN_START), 0);
        assert_eq!(reach(&[i64::MAX], MARGIN_MAX), i64::MAX);
    }

    #[test]
    fn before_anything_is_learned_time_keys_look_past_a_weekend() {
        assert_eq!(prior_reach(KeyType::TimestampTz), 4 * DAY);
        assert_eq!(prior_reach(KeyType::Date), 4);
        assert_eq!(prior_reach(KeyType::BigInt), 0);
    }

    #[test]
    fn the_margin_widens_on_misses_and_settles_back() {
        let mut margin = MARGIN_START;
        margin = adapt_margin(margin, true, true);
        assert!((margin - 2.25).abs() < 1e-9);
        for _ in 0..100 {
            margin = adapt_margin(margin, false, true);
        }
        assert_eq!(margin, MARGIN_MIN);
        for _ in 0..20 {
            margin = adapt_margin(margin, true, true);
        }
        assert_eq!(margin, MARGIN_MAX);
        assert_eq!(
            adapt_margin(3.0, false, false),
            3.0,
            "no arrivals: no evidence"
        );
        assert_eq!(adapt_margin(f64::NAN, false, false), MARGIN_START);
    }

    #[test]
    fn far_future_and_far_past_keys_are_outliers() {
        let frontier = 9_800 * DAY; // 2026-10-31
        let p = plausible(
            KeyType::TimestampTz,
            Some(frontier),
            Some(frontier + HOUR),
            DAY,
            0,
            Some(35 * DAY),
        );
        assert!(p.contains(frontier + 29 * DAY));
        assert!(!p.contains(frontier + 200 * 365 * DAY), "2200");
        assert!(
            p.contains(frontier - 34 * DAY),
            "a backfill within retention"
        );
        assert!(!p.contains(-30 * 365 * DAY), "1970");
        // A weekly feed's next week is never an outlier.
        let p = plausible(
            KeyType::TimestampTz,
            Some(frontier),
            None,
            DAY,
            11 * DAY,
            None,
        );
        assert!(p.contains(frontier + 40 * DAY));
        assert_eq!(p.lower, None);
    }

    #[test]
    fn a_clock_days_fast_is_an_outlier_once_the_stream_is_learned() {
        let frontier = 9_800 * DAY;
        // A stream cycled hourly (reach 1.5 h), a week of lookahead.
        let learned = plausible(
            KeyType::TimestampTz,
            Some(frontier),
            Some(frontier),
            7 * DAY,
            3 * HOUR / 2,
            None,
        );
        assert!(!learned.contains(frontier + 13 * DAY), "13 days fast");
        assert!(learned.contains(frontier + 6 * DAY), "within the plan");
        // Young (nothing learned yet): a month.
        let young = plausible(
            KeyType::TimestampTz,
            Some(frontier),
            Some(frontier),
            7 * DAY,
            0,
            None,
        );
        assert!(young.contains(frontier + 27 * DAY));
        // A short lookahead still allows a day.
        let short = plausible(KeyType::TimestampTz, Some(frontier), None, HOUR, HOUR, None);
        assert!(short.contains(frontier + 23 * HOUR));
        assert!(!short.contains(frontier + 2 * DAY));
    }

    #[test]
    fn integer_keys_have_only_an_upper_bound() {
        let p = plausible(KeyType::BigInt, Some(1_000), None, 500, 100, Some(5));
        assert_eq!(
            p,
            Plausible {
                lower: None,
                upper: Some(3_000)
            }
        );
        assert!(p.contains(i64::MIN));
        assert_eq!(
            plausible(KeyType::BigInt, None, None, 500, 100, None),
            Plausible::EVERYTHING
        );
    }

    #[test]
    fn groups_split_by_their_first_key() {
        let group = |start: i64| RowsInRange {
            start,
            end: start + 1,
            rows: 1.0,
        };
        let bounds = Plausible {
            lower: Some(10),
            upper: Some(20),
        };
        let (plausible, below, above) =
            split(&[group(5), group(10), group(19), group(20)], &bounds);
        assert_eq!(plausible, vec![group(10), group(19)]);
        assert_eq!(below, vec![group(5)]);
        assert_eq!(above, vec![group(20)]);
    }

    #[test]
    fn a_batch_reaches_across_the_hours_expected_empty() {
        let range = |start: i64, end: i64, rows: f64| RowsInRange { start, end, rows };
        // Friday evening: nothing expected over the weekend, 100 rows an
        // hour from Monday (hour 60 on).
        let demand = [
            range(0, 60, 0.0),
            range(60, 61, 100.0),
            range(61, 62, 100.0),
        ];
        assert_eq!(keys_holding(&demand, 0, 150.0), Some(62));
        assert_eq!(keys_holding(&demand, 0, 50.0), Some(61));
        assert_eq!(keys_holding(&demand, 60, 100.0), Some(1));
        assert_eq!(
            keys_holding(&demand, 0, 1_000.0),
            None,
            "beyond the forecast"
        );
        assert_eq!(keys_holding(&demand, 0, 0.0), Some(0));
    }

    #[test]
    fn released_keys_widen_the_bounds() {
        let p = Plausible {
            lower: Some(10),
            upper: Some(20),
        }
        .including(Some(5), Some(100));
        assert!(p.contains(5) && p.contains(100) && !p.contains(101) && !p.contains(4));
    }
}

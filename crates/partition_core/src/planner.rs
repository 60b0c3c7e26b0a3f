//! Cycle step 3: the bounds of future partitions.
//!
//! From where the existing partitions end, ranges are laid out one after
//! the other until the lookahead is covered. Each range is the largest
//! natural span (hour, day, week, month, … for time keys; 1, 2 or 5 times a
//! power of ten for integer keys) whose expected rows stay within
//! `target_rows` (with [`TOLERANCE`]: "about" the target, so a span that
//! would hold the target almost exactly is not halved over a rounding
//! error), and within the table's `min_span`/`max_span`. A range that would run into an existing
//! partition stops at it and planning resumes after it: the plan never
//! overlaps an existing partition and never leaves a gap.

use crate::calendar::{self, Grain, MICROS_PER_DAY, MICROS_PER_HOUR};
use crate::zone::Zone;
use crate::KeyType;

static UTC: Zone = Zone::utc();

/// The zone natural boundaries follow: the table's for `timestamptz`
/// keys; `date` and `timestamp` keys have no zone.
fn zone_of(key_type: KeyType, zone: &Zone) -> &Zone {
    if key_type == KeyType::TimestampTz {
        zone
    } else {
        &UTC
    }
}

/// Rows in a key range `[start, end)` (raw key units), taken as spread
/// evenly over its keys: rows a forecast expects ([`Demand`]) or rows found
/// somewhere ([`Stranded`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowsInRange {
    pub start: i64,
    pub end: i64,
    pub rows: f64,
}

/// Rows a forecast expects in a key range.
pub type Demand = RowsInRange;

/// Rows found in DEFAULT (or in a batch): keys `[start, end)` (the smallest
/// and one past the largest key of a group of rows) holding `rows` rows.
pub type Stranded = RowsInRange;

/// Rows of `ranges` with keys in `[from, to)`, each range's rows prorated.
pub fn rows_within(ranges: &[RowsInRange], from: i64, to: i64) -> f64 {
    ranges
        .iter()
        .map(|r| {
            let lo = r.start.max(from);
            let hi = r.end.min(to);
            if lo < hi {
                r.rows * (hi as f64 - lo as f64) / (r.end as f64 - r.start as f64).max(1.0)
            } else {
                0.0
            }
        })
        .sum()
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput<'a> {
    pub key_type: KeyType,
    /// Ranges of existing partitions `[from, to)`, in raw key units
    /// (MINVALUE/MAXVALUE as `i64::MIN`/`i64::MAX`).
    pub taken: &'a [(i64, i64)],
    /// Highest key present, if any.
    pub frontier: Option<i64>,
    /// Expected rows ahead; beyond the last range the last day's density continues.
    pub demand: &'a [Demand],
    pub target_rows: f64,
    /// Smallest and largest span of a partition, in raw key units.
    pub min_span: Option<i64>,
    pub max_span: Option<i64>,
    /// Plan until this key is covered.
    pub horizon_end: i64,
    /// Time zone of natural boundaries (`timestamptz` keys).
    pub zone: &'a Zone,
    /// What of `demand` is a forecast (the rest is an assumed floor): a
    /// quiet stretch is joined into one range only within it. `None`: never.
    pub forecast: Option<ForecastExtent>,
}

/// Where a forecast ends and how far its upper bound runs over its point
/// forecast, in total.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastExtent {
    pub end: i64,
    pub upper_over_point: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedRange {
    pub from: i64,
    pub to: i64,
    pub expected_rows: f64,
}

/// A natural span: a count of grains (time) or a round step (integers).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Span {
    Time(Grain, i64),
    Step(i64),
}

/// The length `min_span`/`max_span` judge a span by, in raw key units:
/// the nominal one for time spans, as PostgreSQL reads an interval (a day
/// is 24 hours even when daylight saving makes it 23, a month 30 days, a
/// year 365.25 days), the actual one for a range `[start, end)` otherwise.
fn judged_length(key_type: KeyType, span: Span, start: i64, end: i64) -> i64 {
    let Span::Time(grain, n) = span else {
        return end.saturating_sub(start);
    };
    let micros = match grain {
        Grain::Minute => calendar::MICROS_PER_MINUTE,
        Grain::Hour => MICROS_PER_HOUR,
        Grain::Day => MICROS_PER_DAY,
        Grain::Week => 7 * MICROS_PER_DAY,
        Grain::Month => 30 * MICROS_PER_DAY,
        Grain::Year => 365 * MICROS_PER_DAY + MICROS_PER_DAY / 4,
    }
    .saturating_mul(n);
    if key_type == KeyType::Date {
        micros / MICROS_PER_DAY
    } else {
        micros
    }
}

/// A range may be expected to hold up to this much more than `target_rows`.
pub const TOLERANCE: f64 = 1.2;

/// A range ahead that is forecast to hold more than this many times
/// `target_rows` is oversized: a shadow, or an attached one still empty, is
/// planned again.
pub const OVERFLOW: f64 = 1.5;

/// The rest of a week, month or year whose forecast upper bound is under
/// this share of `target_rows` is one range (a quiet weekend, not one
/// partition a day): even rows four times that bound fit the target.
const QUIET: f64 = 0.25;

/// Plans no more than this many ranges in one go.
const MAX_RANGES: usize = 10_000;

fn time_spans(key_type: KeyType) -> Vec<Span> {
    let mut spans = Vec::new();
    if key_type != KeyType::Date {
        for n in [1, 2, 3, 4, 6, 12] {
            spans.push(Span::Time(Grain::Hour, n));
        }
    }
    spans.extend([
        Span::Time(Grain::Day, 1),
        Span::Time(Grain::Week, 1),
        Span::Time(Grain::Month, 1),
        Span::Time(Grain::Month, 3),
        Span::Time(Grain::Month, 6),
        Span::Time(Grain::Year, 1),
    ]);
    spans
}

/// The spans a range may have, smallest first: calendar spans for time
/// keys; for integer keys 1, 2 and 5 times powers of ten, from the power
/// of ten at or below `largest_step`.
fn natural_spans(key_type: KeyType, largest_step: i64) -> Vec<Span> {
    if key_type.is_temporal() {
        return time_spans(key_type);
    }
    let mut steps = Vec::new();
    let mut step = 1i64;
    while step <= largest_step {
        for f in [1, 2, 5] {
            if let Some(s) = step.checked_mul(f) {
                steps.push(Span::Step(s));
            }
        }
        match step.checked_mul(10) {
            Some(s) => step = s,
            None => break,
        }
    }
    steps
}

/// The end of a span starting at `start`: for a round step its next
/// multiple (so a range starting at an odd key runs to the next round
/// bound, and the ones after are aligned); for a time span, if `start` is
/// aligned to it.
fn aligned_end(key_type: KeyType, zone: &Zone, span: Span, start: i64) -> Option<i64> {
    match span {
        Span::Step(step) => calendar::floor_to_multiple(start, step).checked_add(step),
        Span::Time(grain, n) => {
            let zone = zone_of(key_type, zone);
            let (is_date, micros) = match key_type {
                KeyType::Date => (true, start.checked_mul(MICROS_PER_DAY)?),
                _ => (false, start),
            };
            let aligned = zone.floor(micros, grain) == micros
                && match grain {
                    Grain::Hour => zone.local_hour(micros) % n == 0,
                    Grain::Month => {
                        let (_, month, _) = zone.civil(micros);
                        (month as i64 - 1) % n == 0
                    }
                    _ => n == 1,
                };
            if !aligned {
                return None;
            }
            let end = match grain {
                // The next local hour that is a multiple of n: across a
                // daylight-saving change that is n - 1 or n + 1 hours away.
                Grain::Hour if !zone.is_utc() && n > 1 => {
                    let mut end = zone.add(micros, Grain::Hour, 1)?;
                    for _ in 0..n {
                        if zone.local_hour(end) % n == 0 {
                            break;
                        }
                        end = zone.add(end, Grain::Hour, 1)?;
                    }
                    end
                }
                _ => zone.add(micros, grain, n)?,
            };
            Some(if is_date { end / MICROS_PER_DAY } else { end })
        }
    }
}

/// The end of a week, month or year begun before `start`, when `start` is
/// at a day boundary: a range from a Saturday may run to Monday, the
/// week's end, where the rest of the week is quiet (see [`QUIET`]).
fn rest_of_span_end(key_type: KeyType, zone: &Zone, span: Span, start: i64) -> Option<i64> {
    let Span::Time(grain, 1) = span else {
        return None;
    };
    if !matches!(grain, Grain::Week | Grain::Month | Grain::Year) {
        return None;
    }
    let zone = zone_of(key_type, zone);
    let (is_date, micros) = match key_type {
        KeyType::Date => (true, start.checked_mul(MICROS_PER_DAY)?),
        _ => (false, start),
    };
    if zone.floor(micros, Grain::Day) != micros {
        return None;
    }
    let end = zone.add(zone.floor(micros, grain), grain, 1)?;
    Some(if is_date { end / MICROS_PER_DAY } else { end })
}

/// The next boundary of the smallest natural span after `start`.
fn next_boundary(key_type: KeyType, zone: &Zone, start: i64, step: i64) -> Option<i64> {
    match key_type {
        KeyType::Date => start.checked_add(1),
        KeyType::Timestamp | KeyType::TimestampTz => {
            let zone = zone_of(key_type, zone);
            zone.add(zone.floor(start, Grain::Hour), Grain::Hour, 1)
        }
        _ => calendar::floor_to_multiple(start, step).checked_add(step),
    }
}

/// Expected rows in `[from, to)`: overlapping demand, prorated; past the last
/// demand range, at the density of its last day.
fn expected_rows(demand: &[Demand], tail_density: f64, from: i64, to: i64) -> f64 {
    let demand_end = demand.iter().map(|d| d.end).max().unwrap_or(from);
    let tail_from = demand_end.max(from);
    let tail = if to > tail_from {
        tail_density * (to as f64 - tail_from as f64)
    } else {
        0.0
    };
    rows_within(demand, from, to) + tail
}

fn tail_density(key_type: KeyType, demand: &[Demand]) -> f64 {
    let Some(end) = demand.iter().map(|d| d.end).max() else {
        return 0.0;
    };
    // Dates: a week of the forecast's end where it has one (a tail taken
    // from its last day alone would carry a weekday into a weekend, or the
    // reverse); hours: its last day.
    let span = demand.iter().map(|d| d.end - d.start).sum::<i64>().max(1);
    let window = match key_type {
        KeyType::Date => span.min(7),
        KeyType::Timestamp | KeyType::TimestampTz => span.min(MICROS_PER_DAY),
        _ => span,
    };
    let start = end.saturating_sub(window);
    let rows: f64 = expected_rows(demand, 0.0, start, end);
    rows / (end - start).max(1) as f64
}

/// Where planning starts: after the existing partition holding the
/// frontier (or the highest one, if none holds it), else at the frontier's
/// hour/day/step.
fn plan_start(input: &PlanInput, unit: i64) -> Option<i64> {
    let holding = input.frontier.and_then(|f| {
        input
            .taken
            .iter()
            .filter(|(a, b)| *a <= f && f < *b)
            .map(|(_, b)| *b)
            .max()
    });
    if let Some(end) = holding {
        return (end != i64::MAX).then_some(end);
    }
    let highest_end = input
        .taken
        .iter()
        .map(|(_, b)| *b)
        .filter(|b| *b != i64::MAX)
        .max();
    match (input.frontier, highest_end) {
        (Some(f), Some(end)) if end > f => Some(end),
        (Some(f), _) => Some(match input.key_type {
            KeyType::Timestamp | KeyType::TimestampTz => {
                zone_of(input.key_type, input.zone).floor(f, Grain::Hour)
            }
            KeyType::Date => f,
            _ => calendar::floor_to_multiple(f, unit),
        }),
        (None, Some(end)) => Some(end),
        (None, None) => None,
    }
}

pub fn plan(input: &PlanInput) -> Vec<PlannedRange> {
    let density = tail_density(input.key_type, input.demand);
    let target = input.target_rows.max(1.0) * TOLERANCE;
    // Integer keys: the step that would hold target_rows at the expected density.
    let int_unit = if input.key_type.is_temporal() {
        1
    } else {
        let keys = if density > 0.0 {
            (target / density).floor() as i64
        } else {
            1_000_000
        };
        calendar::round_step_up(keys.max(1))
    };
    let Some(mut start) = plan_start(input, int_unit) else {
        return Vec::new();
    };
    let spans = natural_spans(input.key_type, int_unit.saturating_mul(1000));
    let min_span = input.min_span.unwrap_or(1).max(1);
    let max_span = input.max_span.unwrap_or(i64::MAX);
    // A range that joins a quiet stretch must leave the plan on a grid it
    // can go on from: a day-long range must be allowed after it, and the
    // week, month or year it ends must be allowed itself.
    let day = Span::Time(Grain::Day, 1);
    let joins_quiet = |span: Span| {
        judged_length(input.key_type, day, 0, 0) >= min_span
            && judged_length(input.key_type, span, 0, 0) <= max_span
    };
    let mut plan = Vec::new();
    while start < input.horizon_end && plan.len() < MAX_RANGES {
        // An existing partition ahead caps this range; inside one, skip past it.
        if let Some((_, end)) = input.taken.iter().find(|(a, b)| *a <= start && start < *b) {
            if *end == i64::MAX {
                break;
            }
            start = *end;
            continue;
        }
        let cap = input
            .taken
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| *a > start)
            .min()
            .unwrap_or(i64::MAX);
        let fits = |span: Span, end: i64| {
            let len = judged_length(input.key_type, span, start, end);
            end <= cap && len >= min_span && len <= max_span
        };
        let mut best: Option<i64> = None;
        let mut smallest: Option<i64> = None;
        for span in &spans {
            let Some(end) = aligned_end(input.key_type, input.zone, *span, start) else {
                // The quiet rest of a week, month or year, judged by its
                // forecast's upper bound and only within the forecast.
                if let (Some(forecast), Some(end)) = (
                    input.forecast,
                    rest_of_span_end(input.key_type, input.zone, *span, start),
                ) {
                    if end <= cap
                        && end <= forecast.end
                        && joins_quiet(*span)
                        && expected_rows(input.demand, density, start, end)
                            * forecast.upper_over_point.max(1.0)
                            <= input.target_rows.max(1.0) * QUIET
                        && best.is_none_or(|b| end > b)
                    {
                        best = Some(end);
                    }
                }
                continue;
            };
            if !fits(*span, end) {
                continue;
            }
            if smallest.is_none_or(|s| end < s) {
                smallest = Some(end);
            }
            // A round step is judged by its whole span, so ranges stay
            // regular: an aligned start does not jump to a larger step's
            // next multiple just because that partial range would fit.
            let judged_from = match span {
                Span::Step(step) => end - step,
                Span::Time(..) => start,
            };
            if expected_rows(input.demand, density, judged_from, end) <= target
                && best.is_none_or(|b| end > b)
            {
                best = Some(end);
            }
        }
        // Not aligned to any allowed span (the first range after an odd
        // bound), or nothing fits before the next partition: go to the next
        // natural boundary, or to the partition.
        let end = best.or(smallest).unwrap_or_else(|| {
            next_boundary(
                input.key_type,
                input.zone,
                start,
                int_unit.min(min_span.max(1)).max(1),
            )
            .unwrap_or(i64::MAX)
            .min(cap)
            .max(start.saturating_add(1))
        });
        plan.push(PlannedRange {
            from: start,
            to: end,
            expected_rows: expected_rows(input.demand, density, start, end),
        });
        start = end;
    }
    plan
}

#[derive(Clone, Debug, PartialEq)]
pub struct MigrationInput<'a> {
    pub key_type: KeyType,
    /// Ranges of attached partitions other than DEFAULT.
    pub taken: &'a [(i64, i64)],
    /// Ranges of shadows not attached yet: rows they cover move into them.
    pub shadows: &'a [(i64, i64)],
    /// Groups of rows in DEFAULT, in key order.
    pub stranded: &'a [Stranded],
    pub target_rows: f64,
    pub min_span: Option<i64>,
    pub max_span: Option<i64>,
    /// Time zone of natural boundaries (`timestamptz` keys).
    pub zone: &'a Zone,
    /// The newest forecast, as for `plan`: the rows still to come past the
    /// stranded ones count toward a range's size (empty: none known).
    pub demand: &'a [Demand],
}

/// A range to move rows of DEFAULT into.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MigrationRange {
    pub from: i64,
    pub to: i64,
    /// Stranded rows it receives.
    pub rows: f64,
    /// What it is expected to hold: those rows, and what the forecast (or,
    /// without one, the density of the last stranded rows) puts past them.
    pub expected_rows: f64,
    /// The range is an existing shadow's (otherwise a new table is needed).
    pub into_shadow: bool,
}

/// Start of the span that contains `key`, if the span can be aligned there.
fn span_floor(key_type: KeyType, zone: &Zone, span: Span, key: i64) -> Option<i64> {
    match span {
        Span::Step(step) => Some(calendar::floor_to_multiple(key, step)),
        Span::Time(grain, n) => {
            let zone = zone_of(key_type, zone);
            let (is_date, micros) = match key_type {
                KeyType::Date => (true, key.checked_mul(MICROS_PER_DAY)?),
                _ => (false, key),
            };
            let floor = match grain {
                Grain::Hour => {
                    // Back hour by hour to a local hour that is a multiple
                    // of n (across a daylight-saving change the clock skips
                    // or repeats one).
                    let mut hour = zone.floor(micros, Grain::Hour);
                    for _ in 0..=n {
                        if zone.local_hour(hour) % n == 0 {
                            break;
                        }
                        hour = zone.floor(hour - 1, Grain::Hour);
                    }
                    hour
                }
                Grain::Month => {
                    let month_start = zone.floor(micros, Grain::Month);
                    let (_, month, _) = zone.civil(month_start);
                    let back = (month as i64 - 1) % n;
                    zone.add(month_start, Grain::Month, -back)?
                }
                g => zone.floor(micros, g),
            };
            Some(if is_date {
                floor.div_euclid(MICROS_PER_DAY)
            } else {
                floor
            })
        }
    }
}

/// Where rows stranded in DEFAULT should live. Rows inside a shadow's range
/// go to that shadow. Others get a new range around them: the largest
/// natural span, aligned as the planner aligns future ranges, that holds
/// about `target_rows` of them and fits between the existing partitions
/// (clipped where an unaligned partition is in the way). Ranges never
/// overlap each other, a partition or a shadow.
pub fn plan_migration(input: &MigrationInput) -> Vec<MigrationRange> {
    let target = input.target_rows.max(1.0) * TOLERANCE;
    let (finite_min, finite_max) = input.key_type.finite_range();
    let spans = natural_spans(input.key_type, i64::MAX);
    let min_span = input.min_span.unwrap_or(1).max(1);
    let max_span = input.max_span.unwrap_or(i64::MAX);
    let rows_in = |from: i64, to: i64| rows_within(input.stranded, from, to);
    // Beyond the highest stranded key rows are assumed to keep arriving at
    // the density of the last stretch of them (a day of time keys, a tenth
    // of the integer keys), so a range above the data is sized for what
    // will come too, not stretched to hold just what is there.
    let first_start = input.stranded.iter().map(|s| s.start).min().unwrap_or(0);
    let last_end = input.stranded.iter().map(|s| s.end).max().unwrap_or(0);
    let window = match input.key_type {
        KeyType::Date => 1,
        KeyType::Timestamp | KeyType::TimestampTz => MICROS_PER_DAY,
        _ => (last_end.saturating_sub(first_start) / 10).max(1),
    };
    let tail_density = rows_in(last_end.saturating_sub(window), last_end) / window as f64;
    // Past the stranded rows, what the forecast expects there: a range that
    // reaches into the time still to come is sized for it (rows where some
    // are stranded already arrived, and are not counted twice).
    let expected = |from: i64, to: i64| -> f64 {
        let beyond = if to <= last_end {
            0.0
        } else if input.demand.is_empty() {
            tail_density * (to as f64 - from.max(last_end) as f64)
        } else {
            rows_within(input.demand, from.max(last_end), to)
        };
        rows_in(from, to) + beyond
    };
    let mut chosen: Vec<MigrationRange> = Vec::new();
    for group in input.stranded {
        let key = group.start;
        if chosen.iter().any(|r| r.from <= key && key < r.to) {
            continue;
        }
        if let Some((from, to)) = input.shadows.iter().find(|(a, b)| *a <= key && key < *b) {
            chosen.push(MigrationRange {
                from: *from,
                to: *to,
                rows: rows_in(*from, *to),
                expected_rows: expected(*from, *to),
                into_shadow: true,
            });
            continue;
        }
        // Rows of DEFAULT are outside every attached partition, so `key`
        // lies in a gap between them (and the shadows, and ranges chosen).
        let occupied = input
            .taken
            .iter()
            .chain(input.shadows.iter())
            .copied()
            .chain(chosen.iter().map(|r| (r.from, r.to)));
        let (mut lo, mut hi) = (finite_min, finite_max.saturating_add(1));
        for (a, b) in occupied {
            if b <= key {
                lo = lo.max(b);
            } else if a > key {
                hi = hi.min(a);
            }
        }
        let mut best: Option<(i64, i64)> = None;
        let mut smallest_allowed: Option<(i64, i64)> = None;
        let mut smallest_any: Option<(i64, i64)> = None;
        for span in &spans {
            let Some(start) = span_floor(input.key_type, input.zone, *span, key) else {
                continue;
            };
            let Some(end) = aligned_end(input.key_type, input.zone, *span, start) else {
                continue;
            };
            let len = judged_length(input.key_type, *span, start, end);
            if len > max_span {
                break;
            }
            let (from, to) = (start.max(lo), end.min(hi));
            if from > key || to <= key {
                continue;
            }
            smallest_any.get_or_insert((from, to));
            if len < min_span {
                continue;
            }
            smallest_allowed.get_or_insert((from, to));
            if expected(from, to) > target {
                break; // larger spans only hold more
            }
            best = Some((from, to));
            if from == lo && to == hi {
                break; // larger spans would be clipped to the same gap
            }
        }
        let (from, to) = best
            .or(smallest_allowed)
            .or(smallest_any)
            .unwrap_or((key, key.saturating_add(1).min(hi)));
        chosen.push(MigrationRange {
            from,
            to,
            rows: rows_in(from, to),
            expected_rows: expected(from, to),
            into_shadow: false,
        });
    }
    chosen.sort_by_key(|r| r.from);
    chosen
}

/// `[from, to)` less the union of `covered` (sorted or not).
fn uncovered_parts(from: i64, to: i64, covered: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut sorted: Vec<(i64, i64)> = covered
        .iter()
        .copied()
        .filter(|(a, b)| *a < to && from < *b)
        .collect();
    sorted.sort_unstable();
    let mut parts = Vec::new();
    let mut cursor = from;
    for (a, b) in sorted {
        if a > cursor {
            parts.push((cursor, a.min(to)));
        }
        cursor = cursor.max(b);
        if cursor >= to {
            break;
        }
    }
    if cursor < to {
        parts.push((cursor, to));
    }
    parts
}

/// The partitions a bulk load needs so that none of its rows reaches
/// DEFAULT, `input.stranded` being the batch's key groups: shadows its keys
/// fall in (to attach), and new ranges for keys outside every partition and
/// shadow, sized as a migration sizes them (about `target_rows` of the
/// batch's rows, aligned like planned ranges). Every group of the batch
/// ends up inside `taken` or the result; the result never overlaps `taken`
/// or itself.
pub fn plan_ingest(input: &MigrationInput) -> Vec<MigrationRange> {
    let mut chosen: Vec<MigrationRange> = Vec::new();
    // A group wider than one range needs several; each round covers at
    // least the first uncovered key of every group, so rounds are few.
    for _ in 0..10_000 {
        let occupied: Vec<(i64, i64)> = input
            .taken
            .iter()
            .copied()
            .chain(chosen.iter().map(|r| (r.from, r.to)))
            .collect();
        let mut uncovered: Vec<Stranded> = Vec::new();
        for group in input.stranded.iter().filter(|g| g.end > g.start) {
            let width = (group.end as f64 - group.start as f64).max(1.0);
            for (lo, hi) in uncovered_parts(group.start, group.end, &occupied) {
                uncovered.push(Stranded {
                    start: lo,
                    end: hi,
                    rows: group.rows * (hi as f64 - lo as f64) / width,
                });
            }
        }
        if uncovered.is_empty() {
            break;
        }
        uncovered.sort_by_key(|s| s.start);
        let shadows: Vec<(i64, i64)> = input
            .shadows
            .iter()
            .copied()
            .filter(|(a, _)| !chosen.iter().any(|r| r.into_shadow && r.from == *a))
            .collect();
        let round = plan_migration(&MigrationInput {
            key_type: input.key_type,
            taken: &occupied,
            shadows: &shadows,
            stranded: &uncovered,
            target_rows: input.target_rows,
            min_span: input.min_span,
            max_span: input.max_span,
            zone: input.zone,
            demand: input.demand,
        });
        let progress = round
            .iter()
            .any(|r| !chosen.iter().any(|c| c.from == r.from && c.to == r.to));
        if !progress {
            break;
        }
        chosen.extend(round);
    }
    // Rows are those of the whole batch, not of the round that chose the range.
    for range in &mut chosen {
        let rows = rows_within(input.stranded, range.from, range.to);
        range.expected_rows += rows - range.rows;
        range.rows = rows;
    }
    chosen.sort_by_key(|r| r.from);
    chosen
}

/// What the table's settings say about how far ahead to prepare.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lookahead {
    /// Wall-clock time of data (time keys; integer keys at the forecast rate).
    Seconds(f64),
    /// A number of key values (integer keys).
    Keys(i64),
}

/// How far ahead shadows must reach from `frontier`: for time keys the
/// lookahead (default a week); for integer keys the farthest of the
/// lookahead in keys, the forecast's reach at its upper bound
/// (`upper_over_point` times the point forecast's advance), and two
/// partitions' worth of keys at the newest density.
pub fn horizon_end(
    key_type: KeyType,
    lookahead: Option<Lookahead>,
    target_rows: f64,
    frontier: i64,
    demand: &[Demand],
    upper_over_point: f64,
) -> i64 {
    if key_type.is_temporal() {
        let seconds = match lookahead {
            Some(Lookahead::Seconds(s)) => s,
            _ => 7.0 * 86_400.0,
        };
        return frontier.saturating_add((seconds * key_type.units_per_second()) as i64);
    }
    let forecast_reach = demand.iter().map(|d| d.end).max().unwrap_or(frontier);
    let advance = ((forecast_reach - frontier) as f64 * upper_over_point.max(1.0)) as i64;
    let density = demand
        .last()
        .map(|d| d.rows / (d.end - d.start).max(1) as f64)
        .unwrap_or(1.0)
        .max(1e-9);
    let two_partitions = (2.0 * target_rows / density) as i64;
    let keys = match lookahead {
        Some(Lookahead::Keys(k)) => k,
        _ => 0,
    }
    .max(advance)
    .max(two_partitions);
    let (_, max) = key_type.finite_range();
    frontier.saturating_add(keys).min(max)
}

/// How far ahead of the frontier a shadow `[from, to)` is attached. Time
/// keys: an hour (a day for dates) or a tenth of the shadow's span if
/// longer, late enough that a changed forecast can still reshape it.
/// Integer keys arrive in jumps (a batch of ids at once): a whole shadow's
/// length.
pub fn activation_lead(key_type: KeyType, from: i64, to: i64) -> i64 {
    let span = to - from;
    match key_type {
        KeyType::Date => (span / 10).max(1),
        KeyType::Timestamp | KeyType::TimestampTz => (span / 10).max(MICROS_PER_HOUR),
        _ => span,
    }
}

/// The smallest span a partition may have: an hour (a day for dates, one
/// key for integers), or `min_span` if larger.
pub fn smallest_span(key_type: KeyType, min_span: Option<i64>) -> i64 {
    let natural = match key_type {
        KeyType::Timestamp | KeyType::TimestampTz => MICROS_PER_HOUR,
        _ => 1,
    };
    natural.max(min_span.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = MICROS_PER_HOUR;

    fn hourly_demand(from: i64, hours: i64, per_hour: f64) -> Vec<Demand> {
        (0..hours)
            .map(|h| Demand {
                start: from + h * H,
                end: from + (h + 1) * H,
                rows: per_hour,
            })
            .collect()
    }

    /// Five days ahead of `start` at 40 rows an hour, a day's worth of
    /// rows per partition, in Berlin.
    fn berlin_days_ahead<'a>(
        start: i64,
        taken: &'a [(i64, i64)],
        demand: &'a [Demand],
        berlin: &'a Zone,
    ) -> PlanInput<'a> {
        PlanInput {
            key_type: KeyType::TimestampTz,
            taken,
            frontier: Some(start - 1),
            demand,
            target_rows: 960.0,
            min_span: None,
            max_span: None,
            horizon_end: start + 5 * MICROS_PER_DAY,
            zone: berlin,
            forecast: None,
        }
    }

    #[test]
    fn daily_ranges_follow_the_table_s_zone_across_daylight_saving() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        // Berlin midnight of 27 March 2026 is 23:00 UTC the day before.
        let start = calendar::parse_iso_timestamp("2026-03-26 23:00:00+00", true).unwrap();
        let demand = hourly_demand(start - 2 * MICROS_PER_DAY, 24 * 9, 40.0);
        let taken = [(start - MICROS_PER_DAY, start)];
        let input = berlin_days_ahead(start, &taken, &demand, &berlin);
        let p = plan(&input);
        assert!(p.len() >= 5, "{p:?}");
        assert_eq!(p[0].from, start);
        for pair in p.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        let lengths: Vec<i64> = p.iter().map(|r| (r.to - r.from) / H).collect();
        // 27 and 28 March, then 29 March (clocks forward: 23 hours), then 30 and 31.
        assert_eq!(&lengths[..5], &[24, 24, 23, 24, 24]);
        for r in &p {
            assert_eq!(
                berlin.floor(r.from, Grain::Day),
                r.from,
                "{r:?} starts at local midnight"
            );
        }
        // The same demand in UTC: UTC midnights.
        let utc_plan = plan(&PlanInput {
            taken: &[(start + H - MICROS_PER_DAY, start + H)],
            frontier: Some(start),
            zone: &UTC,
            ..input.clone()
        });
        assert!(
            utc_plan
                .iter()
                .all(|r| r.from.rem_euclid(MICROS_PER_DAY) == 0),
            "{utc_plan:?}"
        );
    }

    #[test]
    fn spans_are_judged_by_their_nominal_length_across_daylight_saving() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let start = calendar::parse_iso_timestamp("2026-03-26 23:00:00+00", true).unwrap();
        let demand = hourly_demand(start - 2 * MICROS_PER_DAY, 24 * 9, 40.0);
        let taken = [(start - MICROS_PER_DAY, start)];
        let input = PlanInput {
            // At least a day, at most a day: the 23-hour Sunday is a day.
            min_span: Some(MICROS_PER_DAY),
            max_span: Some(MICROS_PER_DAY),
            ..berlin_days_ahead(start, &taken, &demand, &berlin)
        };
        let lengths: Vec<i64> = plan(&input).iter().map(|r| (r.to - r.from) / H).collect();
        assert_eq!(&lengths[..5], &[24, 24, 23, 24, 24]);
    }

    #[test]
    fn six_hour_ranges_follow_the_local_clock_across_daylight_saving() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let start = calendar::parse_iso_timestamp("2026-03-28 23:00:00+00", true).unwrap(); // Sunday 00:00
        let demand = hourly_demand(start - MICROS_PER_DAY, 24 * 4, 40.0);
        let p = plan(&PlanInput {
            key_type: KeyType::TimestampTz,
            taken: &[(start - MICROS_PER_DAY, start)],
            frontier: Some(start - 1),
            demand: &demand,
            target_rows: 240.0,
            min_span: None,
            max_span: None,
            horizon_end: start + 2 * MICROS_PER_DAY,
            zone: &berlin,
            forecast: None,
        });
        // 00-06 (5 hours: 02:00 is skipped), then 06-12, 12-18, 18-24, …
        let local: Vec<i64> = p.iter().map(|r| berlin.local_hour(r.from)).collect();
        assert!(local.iter().all(|h| h % 6 == 0), "{local:?}");
        assert_eq!((p[0].to - p[0].from) / H, 5);
        assert_eq!((p[1].to - p[1].from) / H, 6);
        // Rows stranded at 04:30 local that morning go to the 00-06 range.
        let key = start + 3 * H + 30 * calendar::MICROS_PER_MINUTE;
        let ranges = plan_migration(&MigrationInput {
            key_type: KeyType::TimestampTz,
            taken: &[],
            shadows: &[],
            stranded: &[Stranded {
                start: key,
                end: key + 1,
                rows: 200.0,
            }],
            target_rows: 240.0,
            min_span: Some(6 * H),
            max_span: Some(6 * H),
            zone: &berlin,
            demand: &[],
        });
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].from, ranges[0].to), (p[0].from, p[0].to));
    }

    #[test]
    fn sizes_follow_the_rate() {
        let day = calendar::days_from_civil(2024, 3, 4) * MICROS_PER_DAY; // a Monday
        let base = PlanInput {
            key_type: KeyType::TimestampTz,
            taken: &[(day - MICROS_PER_DAY, day)],
            frontier: Some(day - 1),
            demand: &[],
            target_rows: 1_000_000.0,
            min_span: None,
            max_span: None,
            horizon_end: day + 7 * MICROS_PER_DAY,
            zone: &UTC,
            forecast: None,
        };
        // 1,000 rows an hour: a day is 24,000 rows, a week 168,000: weekly partitions.
        let slow = hourly_demand(day, 168, 1_000.0);
        let p = plan(&PlanInput {
            demand: &slow,
            ..base.clone()
        });
        assert_eq!((p[0].from, p[0].to), (day, day + 7 * MICROS_PER_DAY));
        // 120,000 rows an hour: 2.9M a day is too much, 12 hours (1.44M) too;
        // 6 hours is 720,000.
        let fast = hourly_demand(day, 168, 120_000.0);
        let p = plan(&PlanInput {
            demand: &fast,
            ..base.clone()
        });
        assert_eq!(p[0].to - p[0].from, 6 * H);
        assert!(p.last().unwrap().to >= base.horizon_end);
    }

    #[test]
    fn a_quiet_weekend_is_one_range_to_monday() {
        // Rows on weekdays only, a day's worth per partition: the weekend
        // needs one partition, not one a day.
        let monday = calendar::days_from_civil(2024, 3, 4) * MICROS_PER_DAY;
        let demand: Vec<Demand> = (0..14 * 24)
            .map(|h| Demand {
                start: monday + h * H,
                end: monday + (h + 1) * H,
                rows: if (h / 24) % 7 < 5 { 100.0 } else { 0.0 },
            })
            .collect();
        let input = PlanInput {
            key_type: KeyType::TimestampTz,
            taken: &[(monday - MICROS_PER_DAY, monday)],
            frontier: Some(monday - 1),
            demand: &demand,
            target_rows: 2_400.0,
            min_span: None,
            max_span: None,
            horizon_end: monday + 14 * MICROS_PER_DAY,
            zone: &UTC,
            forecast: Some(ForecastExtent {
                end: monday + 14 * MICROS_PER_DAY,
                upper_over_point: 1.5,
            }),
        };
        let p = plan(&input);
        let bounds: Vec<(i64, i64)> = p
            .iter()
            .map(|r| ((r.from - monday) / H, (r.to - monday) / H))
            .collect();
        assert_eq!(
            bounds,
            // Friday is a day's rows, its weekend nothing: a range each.
            vec![
                (0, 24),
                (24, 48),
                (48, 72),
                (72, 96),
                (96, 120),
                (120, 168),
                (168, 192),
                (192, 216),
                (216, 240),
                (240, 264),
                (264, 288),
                (288, 336)
            ]
        );
        // A table that says partitions are at most a day gets its days.
        let p = plan(&PlanInput {
            max_span: Some(MICROS_PER_DAY),
            horizon_end: monday + 7 * MICROS_PER_DAY,
            ..input.clone()
        });
        assert_eq!(p.len(), 7);
        // Past the forecast (the rest of the demand is an assumed floor)
        // weekends are days again.
        let p = plan(&PlanInput {
            forecast: Some(ForecastExtent {
                end: monday + 7 * MICROS_PER_DAY,
                upper_over_point: 1.5,
            }),
            ..input.clone()
        });
        assert_eq!(p.len(), 13);
        // A weekend whose upper bound could hold a quarter of the target
        // is not quiet.
        let trickle: Vec<Demand> = demand
            .iter()
            .map(|d| Demand {
                rows: d.rows.max(10.0),
                ..*d
            })
            .collect();
        let p = plan(&PlanInput {
            demand: &trickle,
            forecast: Some(ForecastExtent {
                end: monday + 14 * MICROS_PER_DAY,
                upper_over_point: 2.0,
            }),
            ..input
        });
        assert_eq!(p.len(), 14);
    }

    #[test]
    fn joining_a_quiet_stretch_keeps_the_plan_on_its_grid() {
        // Partitions of at least two days: a week a range. A quiet stretch
        // late in July must not make a range end on a Thursday (1 August),
        // from which no allowed span could go on.
        let monday = calendar::days_from_civil(2024, 7, 15) * MICROS_PER_DAY;
        let demand: Vec<Demand> = (0..28 * 24)
            .map(|h| {
                let day = h / 24;
                let quiet = (5..=16).contains(&day);
                Demand {
                    start: monday + h * H,
                    end: monday + (h + 1) * H,
                    rows: if quiet || day % 7 >= 5 { 0.0 } else { 125.0 },
                }
            })
            .collect();
        let p = plan(&PlanInput {
            key_type: KeyType::TimestampTz,
            taken: &[(monday - MICROS_PER_DAY, monday)],
            frontier: Some(monday - 1),
            demand: &demand,
            target_rows: 15_000.0,
            min_span: Some(2 * MICROS_PER_DAY),
            max_span: None,
            horizon_end: monday + 28 * MICROS_PER_DAY,
            zone: &UTC,
            forecast: Some(ForecastExtent {
                end: monday + 28 * MICROS_PER_DAY,
                upper_over_point: 1.0,
            }),
        });
        for r in &p {
            assert!(
                r.to - r.from >= 2 * MICROS_PER_DAY,
                "{r:?} is shorter than min_span"
            );
            assert!(r.expected_rows <= 15_000.0 * TOLERANCE, "{r:?}");
        }
    }

    #[test]
    fn integer_keys_get_round_bounds() {
        let demand = [Demand {
            start: 1_000_001,
            end: 1_100_001,
            rows: 100_000.0,
        }];
        let p = plan(&PlanInput {
            key_type: KeyType::BigInt,
            taken: &[(0, 1_000_000)],
            frontier: Some(999_999),
            demand: &demand,
            target_rows: 250_000.0,
            min_span: None,
            max_span: None,
            horizon_end: 3_000_000,
            zone: &UTC,
            forecast: None,
        });
        assert_eq!(p[0].from, 1_000_000);
        assert!(p.iter().all(|r| r.to % 200_000 == 0), "{p:?}");
    }

    fn any_key_type() -> impl Strategy<Value = KeyType> {
        proptest::sample::select(vec![
            KeyType::TimestampTz,
            KeyType::Timestamp,
            KeyType::Date,
            KeyType::BigInt,
            KeyType::Integer,
        ])
    }

    proptest! {
        /// Whatever the rate and the existing partitions: contiguous, no
        /// overlap with what exists, the horizon covered, spans respected.
        #[test]
        fn plans_are_contiguous_disjoint_and_cover_the_horizon(
            key_type in any_key_type(),
            rate in 0.0f64..1e6,
            target in 1.0f64..1e7,
            taken_count in 0usize..4,
            gap in 0i64..50,
            min_units in proptest::option::of(1i64..5),
        ) {
            let unit = match key_type { KeyType::Date => 1, k if k.is_temporal() => H, _ => 1_000 };
            let origin = match key_type { KeyType::Date => 8_800, k if k.is_temporal() => 800_000_000 * 1_000_000 / H * H, _ => 5_000_000 };
            // Existing partitions: one holding the frontier, others further ahead with gaps.
            let mut taken = vec![(origin - 24 * unit, origin)];
            let mut at = origin + gap * unit;
            for i in 0..taken_count {
                taken.push((at, at + (i as i64 + 1) * 7 * unit));
                at += (i as i64 + 1) * 7 * unit + gap * unit;
            }
            let demand: Vec<Demand> = (0..200).map(|i| Demand { start: origin + i * unit, end: origin + (i + 1) * unit, rows: rate }).collect();
            let horizon_end = origin + 300 * unit;
            let input = PlanInput {
                key_type,
                taken: &taken,
                frontier: Some(origin - 1),
                demand: &demand,
                target_rows: target,
                min_span: min_units.map(|m| m * unit),
                max_span: None,
                horizon_end,
                zone: &UTC,
                // Slow rates make quiet stretches: joined ones must fit too.
                forecast: Some(ForecastExtent { end: origin + 200 * unit, upper_over_point: 1.0 }),
            };
            let p = plan(&input);
            prop_assert!(!p.is_empty());
            // Planning starts at the first key from the frontier's partition end that no partition holds.
            let mut first = origin;
            while let Some((_, b)) = taken.iter().find(|(a, b)| *a <= first && first < *b) {
                first = *b;
            }
            prop_assert_eq!(p[0].from, first);
            for r in &p {
                prop_assert!(r.from < r.to);
                for (a, b) in &taken {
                    prop_assert!(r.to <= *a || r.from >= *b, "{r:?} overlaps ({a}, {b})");
                }
            }
            // Between consecutive planned ranges only existing partitions may sit.
            for w in p.windows(2) {
                if w[0].to != w[1].from {
                    prop_assert!(taken.iter().any(|(a, b)| *a == w[0].to && *b == w[1].from)
                        || taken.iter().filter(|(a, b)| *a >= w[0].to && *b <= w[1].from).map(|(a, b)| b - a).sum::<i64>() == w[1].from - w[0].to,
                        "gap between {:?} and {:?}", w[0], w[1]);
                }
            }
            let covered = p.iter().map(|r| r.to).chain(taken.iter().map(|(_, b)| *b)).max().unwrap();
            // Unless one plan's cap on ranges stopped it (hundreds of rows
            // per key with a target of a few rows: a range per key).
            prop_assert!(covered >= horizon_end || p.len() == MAX_RANGES, "{} ranges", p.len());
        }

        /// Time ranges end on natural boundaries.
        #[test]
        fn time_ranges_end_on_natural_boundaries(rate in 0.0f64..1e6, target in 1e3f64..1e7) {
            let origin = calendar::days_from_civil(2024, 5, 1) * MICROS_PER_DAY;
            let demand = hourly_demand(origin, 24 * 40, rate);
            let p = plan(&PlanInput {
                key_type: KeyType::TimestampTz,
                taken: &[],
                frontier: Some(origin + 5 * H + 17),
                demand: &demand,
                target_rows: target,
                min_span: None,
                max_span: None,
                horizon_end: origin + 30 * MICROS_PER_DAY,
                zone: &UTC,
                forecast: Some(ForecastExtent { end: origin + 40 * MICROS_PER_DAY, upper_over_point: 1.0 }),
            });
            for r in &p {
                prop_assert_eq!(calendar::floor_micros(r.to, Grain::Hour), r.to);
                prop_assert!(r.expected_rows <= target * TOLERANCE || r.to - r.from == H, "{:?} holds {} > {}", r, r.expected_rows, target);
            }
        }

        /// Every stranded key gets a range; ranges never overlap each
        /// other, a partition or a shadow they were not given.
        #[test]
        fn migration_covers_every_stranded_key_without_overlap(
            keys in proptest::collection::vec(0i64..100_000, 1..60),
            rows in 1.0f64..5_000.0,
            target in 10.0f64..100_000.0,
        ) {
            let taken = [(20_000i64, 30_000i64), (30_000, 31_337), (60_000, 70_000)];
            let shadows = [(31_337i64, 40_000i64)];
            let mut stranded: Vec<Stranded> = keys.iter()
                .filter(|k| !taken.iter().any(|(a, b)| *a <= **k && **k < *b))
                .map(|k| Stranded { start: *k, end: k + 1, rows })
                .collect();
            stranded.sort_by_key(|s| s.start);
            let ranges = plan_migration(&MigrationInput {
                key_type: KeyType::BigInt,
                taken: &taken,
                shadows: &shadows,
                stranded: &stranded,
                target_rows: target,
                min_span: None,
                max_span: None,
                zone: &UTC,
                demand: &[],
            });
            for s in &stranded {
                prop_assert!(ranges.iter().any(|r| r.from <= s.start && s.start < r.to), "{} not covered", s.start);
            }
            for w in ranges.windows(2) {
                prop_assert!(w[0].to <= w[1].from, "{:?} overlaps {:?}", w[0], w[1]);
            }
            for r in &ranges {
                prop_assert!(!taken.iter().any(|(a, b)| r.from < *b && *a < r.to), "{:?} overlaps a partition", r);
                if r.into_shadow {
                    prop_assert_eq!((r.from, r.to), shadows[0]);
                } else {
                    prop_assert!(!shadows.iter().any(|(a, b)| r.from < *b && *a < r.to), "{:?} overlaps a shadow", r);
                }
            }
        }
    }

    #[test]
    fn stranded_history_gets_natural_ranges_below_the_partitions() {
        // Partitions from 2024-05-10 on; three days of rows before that sit in DEFAULT.
        let day = MICROS_PER_DAY;
        let origin = calendar::days_from_civil(2024, 5, 10) * day;
        let taken = [(origin, origin + 7 * day)];
        let stranded: Vec<Stranded> = (0..72)
            .map(|h| {
                let start = origin - 3 * day + h * H;
                Stranded {
                    start,
                    end: start + H,
                    rows: 100.0,
                }
            })
            .collect();
        let ranges = plan_migration(&MigrationInput {
            key_type: KeyType::TimestampTz,
            taken: &taken,
            shadows: &[],
            stranded: &stranded,
            target_rows: 2_400.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        let expected: Vec<(i64, i64)> = (0..3)
            .map(|d| (origin - (3 - d) * day, origin - (2 - d) * day))
            .collect();
        assert_eq!(
            ranges.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(),
            expected
        );
        assert!(ranges.iter().all(|r| !r.into_shadow && r.rows == 2_400.0));
    }

    #[test]
    fn a_range_above_the_stranded_rows_is_sized_for_rows_still_to_come() {
        // Ids 200,000-299,999 in DEFAULT, nothing above: a 100,000 target
        // gives [200000, 300000), not a range to the end of the key space.
        let stranded: Vec<Stranded> = (0..1000)
            .map(|i| Stranded {
                start: 200_000 + i * 100,
                end: 200_000 + (i + 1) * 100,
                rows: 100.0,
            })
            .collect();
        let ranges = plan_migration(&MigrationInput {
            key_type: KeyType::BigInt,
            taken: &[(0, 100_000)],
            shadows: &[],
            stranded: &stranded,
            target_rows: 100_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        assert_eq!(
            ranges.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(),
            vec![(200_000, 300_000)]
        );
    }

    #[test]
    fn stranded_rows_in_a_shadow_range_go_to_that_shadow_and_gaps_are_respected() {
        let taken = [(0i64, 1_000i64), (1_500, 3_000)];
        let shadows = [(3_000i64, 4_000i64)];
        let stranded = [
            Stranded {
                start: 1_200,
                end: 1_301,
                rows: 50.0,
            },
            Stranded {
                start: 3_500,
                end: 3_501,
                rows: 1.0,
            },
        ];
        let ranges = plan_migration(&MigrationInput {
            key_type: KeyType::Integer,
            taken: &taken,
            shadows: &shadows,
            stranded: &stranded,
            target_rows: 1_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        let found: Vec<(i64, i64, f64, bool)> = ranges
            .iter()
            .map(|r| (r.from, r.to, r.rows, r.into_shadow))
            .collect();
        assert_eq!(
            found,
            vec![(1_000, 1_500, 50.0, false), (3_000, 4_000, 1.0, true)]
        );
        // Below the highest stranded key only stranded rows are expected.
        assert_eq!(ranges[0].expected_rows, 50.0);
    }

    #[test]
    fn a_migration_range_reaching_into_the_future_is_sized_by_the_forecast() {
        let day = calendar::days_from_civil(2026, 12, 7) * MICROS_PER_DAY; // a Monday
        let h = MICROS_PER_DAY / 24;
        // 6,263 rows stranded in the first four hours of the day, the data
        // going on at 1,200 rows an hour from there.
        let stranded = [Stranded {
            start: day,
            end: day + 4 * h,
            rows: 6_263.0,
        }];
        let demand = hourly_demand(day + 4 * h, 24 * 14, 1_200.0);
        let input = MigrationInput {
            key_type: KeyType::TimestampTz,
            taken: &[(day - 7 * MICROS_PER_DAY, day)],
            shadows: &[],
            stranded: &stranded,
            target_rows: 100_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &demand,
        };
        let ranges = plan_migration(&input);
        assert_eq!(ranges.len(), 1);
        let r = ranges[0];
        assert_eq!(r.from, day);
        assert!(r.to - r.from <= MICROS_PER_DAY, "{r:?}");
        assert!(r.expected_rows <= 100_000.0 * TOLERANCE, "{r:?}");
        assert!(r.expected_rows > 6_263.0, "{r:?}");
        // Without the forecast the week would have held it, at the density
        // of the stranded rows alone.
        let blind = plan_migration(&MigrationInput {
            demand: &[],
            ..input
        });
        assert!(
            blind[0].to - blind[0].from >= 7 * MICROS_PER_DAY,
            "{blind:?}"
        );
    }

    fn assert_batch_covered(batch: &[Stranded], taken: &[(i64, i64)], ranges: &[MigrationRange]) {
        let all: Vec<(i64, i64)> = taken
            .iter()
            .copied()
            .chain(ranges.iter().map(|r| (r.from, r.to)))
            .collect();
        for g in batch {
            assert!(
                uncovered_parts(g.start, g.end, &all).is_empty(),
                "group {g:?} not covered by {all:?}"
            );
        }
        for (i, r) in ranges.iter().enumerate() {
            assert!(r.from < r.to);
            assert!(
                taken.iter().all(|(a, b)| r.to <= *a || *b <= r.from),
                "{r:?} overlaps a partition"
            );
            assert!(
                ranges[i + 1..]
                    .iter()
                    .all(|o| r.to <= o.from || o.to <= r.from),
                "{r:?} overlaps another range"
            );
        }
    }

    #[test]
    fn a_backfill_gets_daily_partitions_in_the_past_and_the_shadows_ahead() {
        let day = calendar::days_from_civil(2024, 3, 4) * MICROS_PER_DAY;
        let taken = [(day - MICROS_PER_DAY, day)];
        let shadows = [
            (day, day + MICROS_PER_DAY),
            (day + MICROS_PER_DAY, day + 2 * MICROS_PER_DAY),
        ];
        // 30 days back and 2 ahead, 650 rows an hour: about 15,600 a day.
        let batch: Vec<Stranded> = (-30 * 24..2 * 24)
            .map(|h| Stranded {
                start: day + h * H,
                end: day + h * H + H - 1,
                rows: 650.0,
            })
            .collect();
        let ranges = plan_ingest(&MigrationInput {
            key_type: KeyType::TimestampTz,
            taken: &taken,
            shadows: &shadows,
            stranded: &batch,
            target_rows: 20_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        assert_batch_covered(&batch, &taken, &ranges);
        let (into_shadows, new): (Vec<&MigrationRange>, Vec<&MigrationRange>) =
            ranges.iter().partition(|r| r.into_shadow);
        assert_eq!(into_shadows.len(), 2);
        assert_eq!(into_shadows[0].rows, 650.0 * 24.0);
        // The day already partitioned needs nothing; the other 29 days one each.
        assert_eq!(new.len(), 29);
        assert!(new
            .iter()
            .all(|r| r.to - r.from == MICROS_PER_DAY && r.from % MICROS_PER_DAY == 0));
    }

    #[test]
    fn a_batch_inside_existing_partitions_needs_nothing() {
        let batch = [Stranded {
            start: 10,
            end: 900,
            rows: 5_000.0,
        }];
        let ranges = plan_ingest(&MigrationInput {
            key_type: KeyType::BigInt,
            taken: &[(0, 500), (500, 1_000)],
            shadows: &[(1_000, 2_000)],
            stranded: &batch,
            target_rows: 1_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        assert!(ranges.is_empty());
        assert!(plan_ingest(&MigrationInput {
            key_type: KeyType::BigInt,
            taken: &[],
            shadows: &[],
            stranded: &[],
            target_rows: 1_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        })
        .is_empty());
    }

    #[test]
    fn a_group_wider_than_one_partition_is_split_until_covered() {
        // One group of ids spanning ten partitions' worth of rows, straddling
        // an existing partition and a shadow.
        let batch = [Stranded {
            start: 0,
            end: 100_000,
            rows: 100_000.0,
        }];
        let taken = [(40_000i64, 50_000i64)];
        let ranges = plan_ingest(&MigrationInput {
            key_type: KeyType::BigInt,
            taken: &taken,
            shadows: &[(50_000, 60_000)],
            stranded: &batch,
            target_rows: 10_000.0,
            min_span: None,
            max_span: None,
            zone: &UTC,
            demand: &[],
        });
        assert_batch_covered(&batch, &taken, &ranges);
        assert!(ranges.iter().any(|r| r.into_shadow && r.from == 50_000));
        assert!(ranges.iter().all(|r| r.rows <= 10_000.0 * TOLERANCE));
    }

    proptest! {
        #[test]
        fn every_key_of_a_batch_gets_a_partition(
            groups in proptest::collection::vec((0i64..1_000_000, 1i64..50_000, 1u32..20_000), 1..40),
            target in 1_000u32..200_000,
        ) {
            let mut batch: Vec<Stranded> = groups
                .iter()
                .map(|(start, len, rows)| Stranded { start: *start, end: start + len, rows: *rows as f64 })
                .collect();
            batch.sort_by_key(|g| g.start);
            let taken = [(200_000i64, 300_000i64), (600_000, 610_000)];
            let shadows = [(300_000i64, 350_000i64), (900_000, 1_000_000)];
            let ranges = plan_ingest(&MigrationInput {
                key_type: KeyType::BigInt,
                taken: &taken,
                shadows: &shadows,
                stranded: &batch,
                target_rows: target as f64,
                min_span: None,
                max_span: None,
                zone: &UTC,
                demand: &[],
            });
            assert_batch_covered(&batch, &taken, &ranges);
            for r in ranges.iter().filter(|r| r.into_shadow) {
                prop_assert!(shadows.contains(&(r.from, r.to)));
            }
        }
    }
}

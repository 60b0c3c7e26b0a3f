//! What the cycle stored about a table and reads back: the frontier (the
//! highest key, as the collector last saw it), how rows arrive, rows per
//! key and key time, and the newest forecast as demand per key range.
//!
//! Planning and activation read all of it at once ([`History::read`]):
//! one statement of the history tables, one of the forecasts and one of
//! the settings per table and cycle, then pure computation on the values.

use partition_core::arrivals::Plausible;
use partition_core::calendar::{MICROS_PER_DAY, UNIX_TO_PG_EPOCH_SECONDS};
use partition_core::planner::Demand;
use partition_core::KeyType;
use pgrx::prelude::*;

use super::settings::{self, PlanningSettings};
use super::{count_read, forecasts, shadows, write, Family, SpiRow, StateRow};
use crate::catalog::PartitionedTable;
use crate::error::{PredictError, Result};

/// Highest key in the table outside DEFAULT (rows in DEFAULT are the
/// migration's business, not a reason to plan from there), or DEFAULT's
/// when nothing else holds rows.
pub fn frontier(table: &PartitionedTable) -> Result<Option<i64>> {
    Ok(frontiers(table).map(|(outside, in_default)| outside.or(in_default))?)
}

/// Whether the cycle's collect step, which just ran, found keys in DEFAULT
/// (so the worker does not scan an empty DEFAULT every cycle).
pub fn collector_saw_keys_in(table: &PartitionedTable, default: pg_sys::Oid) -> Result<bool> {
    count_read(Family::History);
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.partition_counters
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2
                           AND frontier_raw IS NOT NULL)",
        &[table.oid.into(), default.into()],
    )?
    .unwrap_or(false))
}

/// The highest key outside DEFAULT, and in DEFAULT, as the collector last
/// saw them.
pub fn frontiers(table: &PartitionedTable) -> Result<(Option<i64>, Option<i64>)> {
    count_read(Family::History);
    Ok(crate::pg::spi::select_two::<i64, i64>(
        "SELECT (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> $2),
                (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2)",
        &[
            table.oid.into(),
            table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
        ],
    )?)
}

/// What the cycles learned of how `table`'s rows arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrivals {
    /// The frontier's last advances (`arrivals::REACHES_KEPT` at most).
    pub reaches: Vec<i64>,
    /// The rows of the cycles those advances were seen in.
    pub rows: Vec<i64>,
    pub margin: f64,
    /// Keys a DBA released from quarantine (`release_outliers`).
    pub released: (Option<i64>, Option<i64>),
    /// The reach assumed before any advance was seen.
    pub prior: i64,
}

impl Arrivals {
    /// What is assumed of a table no cycle has learned from yet.
    fn unlearned(key_type: KeyType) -> Arrivals {
        Arrivals {
            reaches: Vec::new(),
            rows: Vec::new(),
            margin: partition_core::arrivals::MARGIN_START,
            released: (None, None),
            prior: partition_core::arrivals::prior_reach(key_type),
        }
    }

    /// From a row of `table_state` whose columns `arrival_reaches`,
    /// `reach_margin`, `released_low`, `released_high` and `arrival_rows`
    /// start at `first`.
    fn from_row<R: SpiRow>(key_type: KeyType, r: &StateRow<R>, first: usize) -> Result<Arrivals> {
        Ok(Arrivals {
            reaches: r.required(first, "arrival_reaches")?,
            margin: r.required(first + 1, "reach_margin")?,
            released: (r.optional(first + 2)?, r.optional(first + 3)?),
            rows: r.required(first + 4, "arrival_rows")?,
            prior: partition_core::arrivals::prior_reach(key_type),
        })
    }

    /// How far the next arrivals may reach past the frontier, in keys.
    pub fn reach(&self) -> i64 {
        partition_core::arrivals::reach(&self.reaches, self.margin)
    }

    /// How many rows the next arrivals may bring at once.
    pub fn batch_rows(&self) -> f64 {
        partition_core::arrivals::reach(&self.rows, self.margin) as f64
    }
}

pub fn arrivals(table: &PartitionedTable) -> Result<Arrivals> {
    count_read(Family::History);
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT arrival_reaches, reach_margin, released_low, released_high, arrival_rows
                   FROM partition_predict.table_state WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
                None,
                &[table.oid.into()],
            )?
            .first();
        if row.is_empty() {
            return Ok(Arrivals::unlearned(table.key_type));
        }
        Arrivals::from_row(table.key_type, &StateRow::of("table_state", &row), 1)
    })
}

/// Learns from one collection: `before` and `after` are `frontiers()`
/// around it, `default_inserted` the rows DEFAULT received meanwhile.
/// Keys in DEFAULT count as arrivals unless they are outliers.
pub fn learn_arrivals(
    table: &PartitionedTable,
    before: (Option<i64>, Option<i64>),
    after: (Option<i64>, Option<i64>),
    default_inserted: i64,
    rows_inserted: i64,
) -> Result<()> {
    let known = arrivals(table)?;
    let bounds = plausible_keys(table, &known)?;
    let arrival_frontier = |(outside, in_default): (Option<i64>, Option<i64>)| {
        let in_default = in_default.filter(|k| bounds.contains(*k));
        match (outside, in_default) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    };
    let advance = match (arrival_frontier(before), arrival_frontier(after)) {
        (Some(b), Some(a)) if a > b => a.saturating_sub(b),
        _ => 0,
    };
    let reached_default = default_inserted > 0 && after.1.is_some_and(|k| bounds.contains(k));
    let reaches = partition_core::arrivals::remember_advance(&known.reaches, advance);
    // Rows of a cycle that moved the frontier: a backfill of old keys
    // alone is not the next batch's size.
    let rows = if advance > 0 {
        partition_core::arrivals::remember_advance(&known.rows, rows_inserted)
    } else {
        known.rows.clone()
    };
    let margin = partition_core::arrivals::adapt_margin(known.margin, reached_default, advance > 0);
    if reaches == known.reaches && rows == known.rows && margin == known.margin {
        return Ok(());
    }
    write(
        "INSERT INTO partition_predict.table_state AS s (parent, arrival_reaches, arrival_rows, reach_margin)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4)
         ON CONFLICT (parent) DO UPDATE SET arrival_reaches = EXCLUDED.arrival_reaches,
                                            arrival_rows = EXCLUDED.arrival_rows,
                                            reach_margin = EXCLUDED.reach_margin",
        &[table.oid.into(), reaches.into(), rows.into(), margin.into()],
    )
}

/// The keys `table`'s history and plan support (see
/// `partition_core::arrivals::plausible`), widened by what a DBA released.
pub fn plausible_keys(table: &PartitionedTable, known: &Arrivals) -> Result<Plausible> {
    let (outside, _) = frontiers(table)?;
    let Some(frontier) = outside else {
        return Ok(Plausible::EVERYTHING);
    };
    let settings = settings::load(table)?;
    let now_epoch = Some(crate::pg::backend::now_unix_seconds());
    let key_type = table.key_type;
    let to_keys = |seconds: f64| (seconds * key_type.units_per_second()) as i64;
    // The plan's reach: the furthest partition or shadow that is not open-ended.
    let furthest = table
        .attached_ranges()
        .into_iter()
        .map(|(_, to)| to)
        .chain(shadows::waiting(table.oid)?.into_iter().map(|s| s.to))
        .filter(|to| *to != i64::MAX)
        .max()
        .unwrap_or(frontier);
    let mut horizon = furthest.saturating_sub(frontier).max(0);
    if key_type.is_temporal() {
        horizon = horizon.max(settings.lookahead_seconds().map_or(0, to_keys));
    }
    let now = if key_type.is_temporal() {
        now_epoch.map(|s| to_keys(s - UNIX_TO_PG_EPOCH_SECONDS as f64))
    } else {
        None
    };
    Ok(partition_core::arrivals::plausible(
        key_type,
        Some(frontier),
        now,
        horizon,
        known.reach(),
        Some(to_keys(settings.history_retention_seconds)),
    )
    .including(known.released.0, known.released.1))
}

/// Time keys: the first key time past the plausible keys (`None`: no
/// bound), for series that must not follow outliers.
pub fn plausible_upper_time(
    table: &PartitionedTable,
) -> Result<Option<pgrx::datum::TimestampWithTimeZone>> {
    let Some(upper) = plausible_keys(table, &arrivals(table)?)?.upper else {
        return Ok(None);
    };
    Ok(key_timestamptz(table.key_type, upper))
}

/// Time keys: a key as a `timestamptz` (dates at midnight, wall times read
/// as UTC); `None` for integer keys and beyond what a timestamp holds (a
/// `date` key in the year 300000).
fn key_timestamptz(key_type: KeyType, raw: i64) -> Option<pgrx::datum::TimestampWithTimeZone> {
    key_micros(key_type, raw).and_then(crate::pg::backend::timestamptz)
}

/// Time keys: a key in microseconds since 2000-01-01, within what a
/// timestamp holds.
fn key_micros(key_type: KeyType, raw: i64) -> Option<i64> {
    match key_type {
        KeyType::Date => raw.checked_mul(MICROS_PER_DAY),
        KeyType::Timestamp | KeyType::TimestampTz => Some(raw),
        _ => None,
    }
    .filter(|m| crate::pg::backend::TIMESTAMP_RANGE.contains(m))
}

/// What planning and activation know of a table, read once per cycle.
#[derive(Clone, Debug)]
pub struct History {
    key_type: KeyType,
    /// The highest key outside DEFAULT, and in DEFAULT.
    pub frontiers: (Option<i64>, Option<i64>),
    pub arrivals: Arrivals,
    pub settings: PlanningSettings,
    /// Expected rows ahead, from the newest forecast (see
    /// [`forecasts::newest_demand`]).
    pub demand: Vec<Demand>,
    /// The ratio of the newest forecast's upper bound to its point forecast.
    pub upper_over_point: f64,
    /// Time keys: the longest stretch of key time without rows in the last
    /// two weeks before the frontier (a weekend, a closed night), in key
    /// units: arrivals may jump that far at once. 0 for integer keys.
    pub longest_gap: i64,
    /// Time keys: rows per key unit over the last four weeks of key time
    /// before the frontier (or as much history as there is). `None` for
    /// integer keys and tables without history.
    pub recent_density: Option<f64>,
    /// Time keys: seconds of key time between the oldest counted bucket
    /// and the frontier.
    pub history_span_seconds: f64,
    /// Integer keys: rows inserted over the same samples' advance of the
    /// frontier (1 when unknown); 1 for time keys.
    pub rows_per_key: f64,
}

/// The statement behind [`History::read`]: the frontiers, then everything
/// measured from the frontier, each an index-bounded lookup of one table.
/// The frontier is materialised: inlined, its expression would be planned
/// again inside every lookup that uses it (five times the planning).
const HISTORY: &str = include_str!("history.sql");

impl History {
    /// Reads what planning and activation need of `table`: its settings,
    /// its newest forecast and its history, one statement each.
    pub fn read(table: &PartitionedTable) -> Result<History> {
        let settings = settings::load(table)?;
        let (demand, upper_over_point) = forecasts::newest_demand(table)?;
        count_read(Family::History);
        let key_type = table.key_type;
        // Key units per day, and the keys a timestamp can hold (`NULL` for
        // integer keys: no key time to measure).
        let units_per_day = match key_type {
            KeyType::Date => Some(1_i64),
            KeyType::Timestamp | KeyType::TimestampTz => Some(MICROS_PER_DAY),
            _ => None,
        };
        let timestamps = crate::pg::backend::TIMESTAMP_RANGE;
        let (low, high) = match key_type {
            // The days whose midnight a timestamp holds, as `key_micros` has them.
            KeyType::Date => (
                -(-timestamps.start).div_euclid(MICROS_PER_DAY),
                (timestamps.end - 1).div_euclid(MICROS_PER_DAY),
            ),
            _ => (timestamps.start, timestamps.end - 1),
        };
        Spi::connect(|client| {
            let row = client
                .select(
                    HISTORY,
                    None,
                    &[
                        table.oid.into(),
                        table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
                        units_per_day.into(),
                        low.into(),
                        high.into(),
                    ],
                )?
                .first();
            // One row, always: the statement selects FROM a one-row CTE.
            let r = StateRow::of("partition_counters", &row);
            let frontiers = (r.optional::<i64>(1)?, r.optional::<i64>(2)?);
            let has_state: bool = r.required(3, "parent")?;
            let arrivals = if has_state {
                Arrivals::from_row(key_type, &StateRow::of("table_state", &row), 4)?
            } else {
                Arrivals::unlearned(key_type)
            };
            let frontier = frontiers.0.or(frontiers.1);
            let frontier_seconds = frontier.and_then(|f| {
                key_micros(key_type, f)
                    .map(|micros| micros as f64 / 1e6 + UNIX_TO_PG_EPOCH_SECONDS as f64)
            });
            let longest_gap = match frontier_seconds {
                Some(_) => {
                    let seconds = r.optional::<f64>(9)?.unwrap_or(0.0);
                    (seconds.max(0.0) * key_type.units_per_second()) as i64
                }
                None => 0,
            };
            let recent_density = match (
                frontier_seconds,
                r.optional::<f64>(10)?,
                r.optional::<f64>(11)?,
            ) {
                (Some(at), Some(rows), Some(oldest)) => {
                    let seconds = (at - oldest).max(3_600.0);
                    Some(rows / (seconds * key_type.units_per_second()))
                }
                _ => None,
            };
            let history_span_seconds = match (frontier_seconds, r.optional::<f64>(12)?) {
                (Some(at), Some(oldest)) => (at - oldest).max(0.0),
                _ => 0.0,
            };
            let rows_per_key = r
                .optional::<f64>(13)?
                .filter(|r| r.is_finite() && *r > 0.0)
                .unwrap_or(1.0);
            Ok::<_, PredictError>(History {
                key_type,
                frontiers,
                arrivals,
                settings,
                demand,
                upper_over_point,
                longest_gap,
                recent_density,
                history_span_seconds,
                rows_per_key,
            })
        })
    }

    /// Highest key outside DEFAULT, or DEFAULT's when nothing else holds rows.
    pub fn frontier(&self) -> Option<i64> {
        self.frontiers.0.or(self.frontiers.1)
    }

    /// How far past the frontier partitions must be ready for the next
    /// arrivals: the learned reach in keys, or as far as the forecast
    /// expects the next batch's rows to run (across hours or days it
    /// expects empty), whichever is further; no further than the forecast's
    /// horizon.
    pub fn reach_keys(&self) -> i64 {
        self.reach(true)
    }

    /// The reach the next forecast must run past: as [`History::reach_keys`],
    /// but a forecast that never adds up to the next batch's rows does not
    /// lend it its own end (the next forecast would run further again, and
    /// the next).
    pub fn reach_keys_to_forecast(&self) -> i64 {
        self.reach(false)
    }

    fn reach(&self, up_to_the_forecast: bool) -> i64 {
        let known = &self.arrivals;
        let keys = known.reach();
        let Some(frontier) = self.frontier() else {
            return keys;
        };
        let horizon = self
            .demand
            .iter()
            .map(|d| d.end)
            .max()
            .map_or(0, |end| end.saturating_sub(frontier).max(0));
        let by_rows =
            partition_core::arrivals::keys_holding(&self.demand, frontier, known.batch_rows())
                .unwrap_or(if up_to_the_forecast { horizon } else { 0 });
        // A batch may come after a quiet stretch up to twice the longest the
        // data has shown: a long weekend or a holiday after ordinary weekends.
        let past_a_gap = self.longest_gap.saturating_mul(2).saturating_add(keys);
        // A young table fed in batches has not shown its week yet (the first
        // weekend between two daily batches is a jump nothing learned so far
        // predicts): until two weeks of key time are known, at least the prior
        // reach. Tables fed continuously keep their short lead.
        let batches = keys as f64 >= 12.0 * 3_600.0 * self.key_type.units_per_second();
        let young = known.prior > 0 && batches && self.history_span_seconds < 14.0 * 86_400.0;
        let floor = if young { known.prior } else { 0 };
        keys.max(by_rows.min(horizon)).max(past_a_gap).max(floor)
    }
}

/// Widens the keys a DBA accepted from quarantine to `[low, high]`
/// (`release_outliers`).
pub fn release_keys(parent: pg_sys::Oid, low: Option<i64>, high: Option<i64>) -> Result<()> {
    write(
        "INSERT INTO partition_predict.table_state AS s (parent, released_low, released_high)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3)
         ON CONFLICT (parent) DO UPDATE SET released_low = EXCLUDED.released_low,
                                            released_high = EXCLUDED.released_high",
        &[parent.into(), low.into(), high.into()],
    )
}

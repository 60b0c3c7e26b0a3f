//! What the cycle stored about a table and reads back: the frontier (the
//! highest key, as the collector last saw it), rows per key, and the
//! newest forecast as demand per key range.

use partition_core::arrivals::Plausible;
use partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
use partition_core::planner::Demand;
use pgrx::prelude::*;

use super::state;
use super::table::PartitionedTable;
use crate::error::Result;

/// Highest key in the table outside DEFAULT (rows in DEFAULT are the
/// migration's business, not a reason to plan from there), or DEFAULT's
/// when nothing else holds rows.
pub fn frontier(table: &PartitionedTable) -> Result<Option<i64>> {
    Ok(frontiers(table).map(|(outside, in_default)| outside.or(in_default))?)
}

/// The series a table's forecasts are made of: the key-time series for
/// time keys, the frontier's speed for integer keys.
pub fn forecast_series(table: &PartitionedTable) -> &'static str {
    if table.key_type.is_temporal() {
        "key_time"
    } else {
        "frontier"
    }
}

/// Expected rows ahead from the newest forecast (the point forecast sizes
/// partitions), and the ratio of its upper bound to it (the upper bound sets
/// how far ahead shadows must reach: running short would put rows in DEFAULT).
pub fn demand(table: &PartitionedTable) -> Result<(Vec<Demand>, f64)> {
    let rows: Vec<(f64, f64, String, String, f64, f64, Option<f64>)> = Spi::connect(|client| {
        let result = client.select(
            "SELECT pg_catalog.date_part('epoch', f.step_start), pg_catalog.date_part('epoch', f.step_end),
                    f.range_start, f.range_end, f.upper_rows, f.predicted_rows,
                    CASE WHEN $2 = 'key_time' THEN
                      (SELECT COALESCE(pg_catalog.sum(k.rows), 0)::float8 FROM partition_predict.key_time_counts k
                        WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
                          AND k.bucket_start >= f.step_start - interval '7 days'
                          AND k.bucket_start < f.step_end - interval '7 days')
                    END
               FROM partition_predict.forecast_log f
              WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
                AND f.made_at = (SELECT l.made_at FROM partition_predict.forecast_log l
                                  WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2
                                    AND l.horizon = 1
                                  ORDER BY l.made_at DESC LIMIT 1)
              ORDER BY f.horizon",
            None,
            &[table.oid.into(), forecast_series(table).into()],
        )?;
        result
            .map(|r| {
                Ok((
                    r.get::<f64>(1)?.unwrap_or(0.0),
                    r.get::<f64>(2)?.unwrap_or(0.0),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<String>(4)?.unwrap_or_default(),
                    r.get::<f64>(5)?.unwrap_or(0.0),
                    r.get::<f64>(6)?.unwrap_or(0.0),
                    r.get::<f64>(7)?,
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut demand = Vec::new();
    let (mut upper_total, mut point_total) = (0.0, 0.0);
    for (step_start, step_end, range_start, range_end, upper, point, last_week) in rows {
        // Partitions are sized for at least half of what the same hours
        // held a week before: a forecast that has not learned the week yet
        // (it saw one quiet weekend and predicts quiet) must not plan one
        // partition for a whole busy week.
        let point = point.max(WEEK_AGO_FLOOR * last_week.unwrap_or(0.0));
        let (start, end) = if table.key_type.is_temporal() {
            let to_raw = |epoch: f64| {
                ((epoch - UNIX_TO_PG_EPOCH_SECONDS as f64) * table.key_type.units_per_second())
                    .round() as i64
            };
            (to_raw(step_start), to_raw(step_end))
        } else {
            match (
                table.key_type.parse_value(&range_start),
                table.key_type.parse_value(&range_end),
            ) {
                (Ok(a), Ok(b)) => (a.raw, b.raw),
                _ => continue,
            }
        };
        if end > start {
            demand.push(Demand {
                start,
                end,
                rows: point,
            });
        }
        upper_total += upper;
        point_total += point;
    }
    let upper_over_point = if point_total > 0.0 {
        upper_total / point_total
    } else {
        1.0
    };
    Ok((demand, upper_over_point))
}

/// The share of last week's rows in the same hours below which a forecast
/// is not trusted for sizing partitions.
const WEEK_AGO_FLOOR: f64 = 0.5;

/// Time keys: the longest stretch of key time without rows in the last
/// two weeks before the frontier (a weekend, a closed night), in key units:
/// arrivals may jump that far at once. 0 for integer keys.
pub fn longest_gap(table: &PartitionedTable) -> Result<i64> {
    if !table.key_type.is_temporal() {
        return Ok(0);
    }
    let Some(at) = frontier(table)?.and_then(|f| frontier_timestamptz(table, f)) else {
        return Ok(0);
    };
    let seconds = Spi::get_one_with_args::<f64>(
        "SELECT pg_catalog.date_part('epoch', pg_catalog.max(b.bucket_start - b.previous))
           FROM (SELECT k.bucket_start, pg_catalog.lag(k.bucket_start) OVER (ORDER BY k.bucket_start) AS previous
                   FROM (SELECT DISTINCT bucket_start FROM partition_predict.key_time_counts
                          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                            AND bucket_start > $2::timestamptz - interval '14 days'
                            AND bucket_start <= $2::timestamptz) k) b",
        &[table.oid.into(), at.into()],
    )?
    .unwrap_or(0.0);
    Ok((seconds.max(0.0) * table.key_type.units_per_second()) as i64)
}

/// Rows per key of an integer key, from recent activity: rows inserted
/// over the same samples' advance of the frontier (1 when unknown).
pub fn rows_per_key(table_oid: pg_sys::Oid) -> Result<f64> {
    Ok(Spi::get_one_with_args::<f64>(
        "SELECT (SELECT (pg_catalog.sum(w.inserted) - (pg_catalog.array_agg(w.inserted ORDER BY w.sampled_at))[1])::float8
                        / NULLIF(pg_catalog.max(w.frontier) - pg_catalog.min(w.frontier), 0)
                   FROM (SELECT sampled_at, pg_catalog.sum(rows_inserted) AS inserted, pg_catalog.max(frontier_raw) AS frontier
                           FROM partition_predict.samples
                          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND NOT is_default
                          GROUP BY sampled_at ORDER BY sampled_at DESC LIMIT 100) w)",
        &[table_oid.into()],
    )?
    .filter(|r| r.is_finite() && *r > 0.0)
    .unwrap_or(1.0))
}

/// Whether the cycle's collect step, which just ran, found keys in DEFAULT
/// (so the worker does not scan an empty DEFAULT every cycle).
pub fn collector_saw_keys_in(table: &PartitionedTable, default: pg_sys::Oid) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
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
    Ok(Spi::get_two_with_args::<i64, i64>(
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
    /// How far past the frontier the next arrivals may reach.
    /// How far the next arrivals may reach past the frontier, in keys.
    pub fn reach(&self) -> i64 {
        partition_core::arrivals::reach(&self.reaches, self.margin)
    }

    /// How many rows the next arrivals may bring at once.
    pub fn batch_rows(&self) -> f64 {
        partition_core::arrivals::reach(&self.rows, self.margin) as f64
    }
}

/// How far past the frontier partitions must be ready for the next
/// arrivals: the learned reach in keys, or as far as the forecast expects
/// the next batch's rows to run (across hours or days it expects empty),
/// whichever is further; no further than the forecast's horizon.
pub fn reach_keys(table: &PartitionedTable) -> Result<i64> {
    reach(table, true)
}

/// The reach the next forecast must run past: as [`reach_keys`], but a
/// forecast that never adds up to the next batch's rows does not lend it
/// its own end (the next forecast would run further again, and the next).
pub fn reach_keys_to_forecast(table: &PartitionedTable) -> Result<i64> {
    reach(table, false)
}

fn reach(table: &PartitionedTable, up_to_the_forecast: bool) -> Result<i64> {
    let known = arrivals(table)?;
    let keys = known.reach();
    let Some(frontier) = frontier(table)? else {
        return Ok(keys);
    };
    let (demand, _) = demand(table)?;
    let horizon = demand
        .iter()
        .map(|d| d.end)
        .max()
        .map_or(0, |end| end.saturating_sub(frontier).max(0));
    let by_rows = partition_core::arrivals::keys_holding(&demand, frontier, known.batch_rows())
        .unwrap_or(if up_to_the_forecast { horizon } else { 0 });
    // A batch may come after a quiet stretch up to twice the longest the
    // data has shown: a long weekend or a holiday after ordinary weekends.
    let past_a_gap = longest_gap(table)?.saturating_mul(2).saturating_add(keys);
    // A young table fed in batches has not shown its week yet (the first
    // weekend between two daily batches is a jump nothing learned so far
    // predicts): until two weeks of key time are known, at least the prior
    // reach. Tables fed continuously keep their short lead.
    let batches = keys as f64 >= 12.0 * 3_600.0 * table.key_type.units_per_second();
    let young = known.prior > 0 && batches && history_span(table, frontier)? < 14.0 * 86_400.0;
    let floor = if young { known.prior } else { 0 };
    Ok(keys.max(by_rows.min(horizon)).max(past_a_gap).max(floor))
}

/// Seconds of key time between the oldest counted bucket and the frontier.
fn history_span(table: &PartitionedTable, frontier: i64) -> Result<f64> {
    let oldest = Spi::get_one_with_args::<f64>(
        "SELECT pg_catalog.date_part('epoch', pg_catalog.min(bucket_start)) FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[table.oid.into()],
    )?;
    let frontier_seconds =
        frontier as f64 / table.key_type.units_per_second() + UNIX_TO_PG_EPOCH_SECONDS as f64;
    Ok(oldest.map_or(0.0, |o| (frontier_seconds - o).max(0.0)))
}

pub fn arrivals(table: &PartitionedTable) -> Result<Arrivals> {
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
            return Ok(Arrivals {
                reaches: Vec::new(),
                rows: Vec::new(),
                margin: partition_core::arrivals::MARGIN_START,
                released: (None, None),
                prior: partition_core::arrivals::prior_reach(table.key_type),
            });
        }
        Ok(Arrivals {
            reaches: row.get::<Vec<i64>>(1)?.unwrap_or_default(),
            margin: row
                .get::<f64>(2)?
                .unwrap_or(partition_core::arrivals::MARGIN_START),
            released: (row.get::<i64>(3)?, row.get::<i64>(4)?),
            rows: row.get::<Vec<i64>>(5)?.unwrap_or_default(),
            prior: partition_core::arrivals::prior_reach(table.key_type),
        })
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
    state::write(
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
    let (now_epoch, retention_seconds, lookahead_seconds) = Spi::connect(|client| {
        let row = client
            .select(
                "SELECT pg_catalog.date_part('epoch', pg_catalog.now()),
                        pg_catalog.date_part('epoch', history_retention),
                        CASE WHEN lookahead ~ '^[0-9]+$' THEN NULL
                             ELSE pg_catalog.date_part('epoch', lookahead::pg_catalog.interval) END
                   FROM partition_predict.config WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
                None,
                &[table.oid.into()],
            )?
            .first();
        if row.is_empty() {
            return Ok::<_, crate::error::PredictError>((None, None, None));
        }
        Ok((row.get::<f64>(1)?, row.get::<f64>(2)?, row.get::<f64>(3)?))
    })?;
    let key_type = table.key_type;
    let to_keys = |seconds: f64| (seconds * key_type.units_per_second()) as i64;
    // The plan's reach: the furthest partition or shadow that is not open-ended.
    let furthest = table
        .attached_ranges()
        .into_iter()
        .map(|(_, to)| to)
        .chain(
            super::shadows::waiting(table.oid)?
                .into_iter()
                .map(|s| s.to),
        )
        .filter(|to| *to != i64::MAX)
        .max()
        .unwrap_or(frontier);
    let mut horizon = furthest.saturating_sub(frontier).max(0);
    if key_type.is_temporal() {
        horizon = horizon.max(lookahead_seconds.map_or(0, to_keys));
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
        retention_seconds.map(to_keys),
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
    let micros = match table.key_type {
        partition_core::KeyType::Date => {
            upper.checked_mul(partition_core::calendar::MICROS_PER_DAY)
        }
        partition_core::KeyType::Timestamp | partition_core::KeyType::TimestampTz => Some(upper),
        _ => None,
    };
    Ok(micros
        .filter(|m| crate::pg::backend::TIMESTAMP_RANGE.contains(m))
        .and_then(crate::pg::backend::timestamptz))
}

/// Time keys: rows per key unit over the last four weeks of key time before
/// the frontier (or as much history as there is). `None` for integer keys
/// and tables without history.
pub fn recent_density(table: &PartitionedTable) -> Result<Option<f64>> {
    if !table.key_type.is_temporal() {
        return Ok(None);
    }
    let Some(frontier) = frontier(table)? else {
        return Ok(None);
    };
    let Some(at) = frontier_timestamptz(table, frontier) else {
        return Ok(None);
    };
    let frontier_seconds =
        frontier as f64 / table.key_type.units_per_second() + UNIX_TO_PG_EPOCH_SECONDS as f64;
    let (rows, oldest) = Spi::get_two_with_args::<f64, f64>(
        "SELECT pg_catalog.sum(rows)::float8, pg_catalog.date_part('epoch', pg_catalog.min(bucket_start))
           FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND bucket_start > $2::timestamptz - interval '28 days'
            AND bucket_start <= $2::timestamptz",
        &[table.oid.into(), at.into()],
    )?;
    let (Some(rows), Some(oldest)) = (rows, oldest) else {
        return Ok(None);
    };
    let seconds = (frontier_seconds - oldest).max(3_600.0);
    Ok(Some(rows / (seconds * table.key_type.units_per_second())))
}

/// Time keys: the frontier as a `timestamptz` (dates at midnight, wall
/// times read as UTC); `None` without a frontier or beyond what a
/// timestamp holds (a `date` key in the year 300000).
fn frontier_timestamptz(
    table: &PartitionedTable,
    frontier: i64,
) -> Option<pgrx::datum::TimestampWithTimeZone> {
    let micros = match table.key_type {
        partition_core::KeyType::Date => {
            frontier.checked_mul(partition_core::calendar::MICROS_PER_DAY)
        }
        partition_core::KeyType::Timestamp | partition_core::KeyType::TimestampTz => Some(frontier),
        _ => None,
    }?;
    crate::pg::backend::TIMESTAMP_RANGE
        .contains(&micros)
        .then(|| crate::pg::backend::timestamptz(micros))
        .flatten()
}

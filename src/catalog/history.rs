//! What the cycle stored about a table and reads back: the frontier (the
//! highest key, as the collector last saw it), rows per key, and the
//! newest forecast as demand per key range.

use partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
use partition_core::planner::Demand;
use pgrx::prelude::*;

use super::table::PartitionedTable;
use crate::error::Result;

/// Highest key in the table outside DEFAULT (rows in DEFAULT are the
/// migration's business, not a reason to plan from there), or DEFAULT's
/// when nothing else holds rows.
pub fn frontier(table: &PartitionedTable) -> Result<Option<i64>> {
    Ok(Spi::get_two_with_args::<i64, i64>(
        "SELECT (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> $2),
                (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2)",
        &[
            table.oid.into(),
            table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
        ],
    )
    .map(|(outside, in_default)| outside.or(in_default))?)
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
    let rows: Vec<(f64, f64, String, String, f64, f64)> = Spi::connect(|client| {
        let result = client.select(
            "SELECT pg_catalog.date_part('epoch', f.step_start), pg_catalog.date_part('epoch', f.step_end),
                    f.range_start, f.range_end, f.upper_rows, f.predicted_rows
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
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut demand = Vec::new();
    let (mut upper_total, mut point_total) = (0.0, 0.0);
    for (step_start, step_end, range_start, range_end, upper, point) in rows {
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

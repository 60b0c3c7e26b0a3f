//! `forecast_log` (every forecast made, scored once what it forecast has
//! arrived) and `series_state` (what the engine learned of each series:
//! the model in use, the margin, the next choice in preparation).

use forecast::engine::Selection;
use forecast::{Learned, Model};
use partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
use partition_core::planner::Demand;
use pgrx::prelude::*;

use super::{count_read, write, Family, StateRow};
use crate::catalog::PartitionedTable;
use crate::error::{PredictError, Result};

/// The share of last week's rows in the same hours below which a forecast
/// is not trusted for sizing partitions.
const WEEK_AGO_FLOOR: f64 = 0.5;

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
pub fn newest_demand(table: &PartitionedTable) -> Result<(Vec<Demand>, f64)> {
    count_read(Family::Forecasts);
    type Step = (f64, f64, String, String, f64, f64, Option<f64>);
    let rows: Vec<Step> = Spi::connect(|client| {
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
            .map(|row| {
                let r = StateRow::of("forecast_log", &row);
                Ok((
                    r.required(1, "step_start")?,
                    r.required(2, "step_end")?,
                    r.required(3, "range_start")?,
                    r.required(4, "range_end")?,
                    r.required(5, "upper_rows")?,
                    r.required(6, "predicted_rows")?,
                    r.optional(7)?,
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

/// The newest forecast of `series`, its first `steps` point values in order.
pub fn newest_points(parent: pg_sys::Oid, series: &str, steps: i64) -> Result<Vec<f64>> {
    count_read(Family::Forecasts);
    Spi::connect(|client| {
        client
            .select(
                "SELECT f.predicted_rows
                   FROM (SELECT l.made_at FROM partition_predict.forecast_log l
                          WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2
                            AND l.horizon = 1
                          ORDER BY l.made_at DESC LIMIT 1) newest
                   JOIN partition_predict.forecast_log f
                     ON f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
                    AND f.made_at = newest.made_at AND f.horizon <= $3
                  ORDER BY f.horizon",
                None,
                &[parent.into(), series.into(), steps.into()],
            )?
            .map(|row| StateRow::of("forecast_log", &row).required(1, "predicted_rows"))
            .collect::<Result<Vec<_>>>()
    })
}

/// What the engine learned of `series` (the default when nothing yet).
pub fn load_learned(parent: pg_sys::Oid, series: &str) -> Result<Learned> {
    count_read(Family::Forecasts);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT model, model_origin, margin, pending_origin, pending_model_errors,
                    pending_naive_errors, pending_model, pending_fingerprint
               FROM partition_predict.series_state
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND series = $2",
            None,
            &[parent.into(), series.into()],
        )?;
        let mut learned = Learned::default();
        for row in rows {
            let r = StateRow::of("series_state", &row);
            learned.model = r
                .optional::<String>(1)?
                .as_deref()
                .and_then(Model::from_name);
            learned.model_origin = r.optional(2)?;
            learned.margin = r.required(3, "margin")?;
            learned.pending = match r.optional::<i64>(4)? {
                Some(origin) => {
                    let model_errors = r.optional::<Vec<Option<f64>>>(5)?.unwrap_or_default();
                    let naive_errors = r.optional::<Vec<Option<f64>>>(6)?.unwrap_or_default();
                    let fits = model_errors
                        .into_iter()
                        .zip(naive_errors)
                        .map(|(m, n)| m.zip(n))
                        .collect();
                    Some(Selection {
                        origin,
                        fits,
                        model: r
                            .optional::<String>(7)?
                            .as_deref()
                            .and_then(Model::from_name),
                        fingerprint: r.optional(8)?.unwrap_or(0),
                    })
                }
                None => None,
            };
        }
        Ok::<_, PredictError>(learned)
    })
}

pub fn save_learned(parent: pg_sys::Oid, series: &str, learned: &Learned) -> Result<()> {
    let pending = learned.pending.as_ref();
    let errors = |pick: fn(&(f64, f64)) -> f64| -> Option<Vec<Option<f64>>> {
        pending.map(|p| p.fits.iter().map(|f| f.as_ref().map(pick)).collect())
    };
    write(
        "INSERT INTO partition_predict.series_state AS s
                (parent, series, model, model_origin, margin, pending_origin, pending_model_errors,
                 pending_naive_errors, pending_model, pending_fingerprint, updated_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, pg_catalog.now())
         ON CONFLICT (parent, series) DO UPDATE
            SET model = EXCLUDED.model, model_origin = EXCLUDED.model_origin,
                margin = EXCLUDED.margin, pending_origin = EXCLUDED.pending_origin,
                pending_model_errors = EXCLUDED.pending_model_errors,
                pending_naive_errors = EXCLUDED.pending_naive_errors,
                pending_model = EXCLUDED.pending_model, pending_fingerprint = EXCLUDED.pending_fingerprint,
                updated_at = EXCLUDED.updated_at",
        &[
            parent.into(),
            series.into(),
            learned.model.map(|m| m.name()).into(),
            learned.model_origin.into(),
            learned.margin.into(),
            pending.map(|p| p.origin).into(),
            errors(|e| e.0).into(),
            errors(|e| e.1).into(),
            pending.and_then(|p| p.model).map(|m| m.name()).into(),
            pending.map(|p| p.fingerprint).into(),
        ],
    )
}

/// Drops forecasts older than the table's retention or beyond the newest
/// `kept`. Each forecast is found by its first step (`horizon = 1`, a
/// partial index), so this reads a bounded number of index entries.
pub fn prune(parent: pg_sys::Oid, series: &str, kept: i64) -> Result<()> {
    write(
        "DELETE FROM partition_predict.forecast_log f
          WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
            AND f.made_at < GREATEST(
                  pg_catalog.now() - (SELECT c.history_retention FROM partition_predict.config c
                                       WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass),
                  (SELECT l.made_at FROM partition_predict.forecast_log l
                    WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                    ORDER BY l.made_at DESC OFFSET $3 - 1 LIMIT 1))",
        &[parent.into(), series.into(), kept.into()],
    )
}

/// Start of the first step of the newest forecast (PG-epoch micros): its
/// `horizon = 1` row, one entry of the partial index.
pub fn latest_start(parent: pg_sys::Oid, series: &str) -> Result<Option<i64>> {
    count_read(Family::Forecasts);
    Ok(crate::pg::spi::select_one::<i64>(
        "SELECT (SELECT ((pg_catalog.date_part('epoch', l.step_start)::bigint - $3) * 1000000)
                   FROM partition_predict.forecast_log l
                  WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                  ORDER BY l.made_at DESC LIMIT 1)",
        &[parent.into(), series.into(), UNIX_TO_PG_EPOCH_SECONDS.into()],
    )?)
}

/// A forecast step not scored yet.
pub struct Unscored {
    /// When its forecast was made, as text (it identifies the forecast).
    pub made_at: String,
    pub horizon: i32,
    /// PG-epoch micros.
    pub step_start: i64,
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub naive: f64,
}

/// The unscored steps of `series` that end by `settled_until` (a
/// `timestamptz` as text).
pub fn unscored(parent: pg_sys::Oid, series: &str, settled_until: &str) -> Result<Vec<Unscored>> {
    count_read(Family::Forecasts);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT made_at::text, horizon, ((pg_catalog.date_part('epoch', step_start)::bigint - $3) * 1000000),
                    predicted_rows, lower_rows, upper_rows, naive_rows
               FROM partition_predict.forecast_log
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND series = $2 AND scored_at IS NULL
                AND step_start < $4::timestamptz AND step_end <= $4::timestamptz",
            None,
            &[
                parent.into(),
                series.into(),
                UNIX_TO_PG_EPOCH_SECONDS.into(),
                settled_until.into(),
            ],
        )?;
        rows.map(|row| {
            let r = StateRow::of("forecast_log", &row);
            Ok(Unscored {
                made_at: r.required(1, "made_at")?,
                horizon: r.required(2, "horizon")?,
                step_start: r.required(3, "step_start")?,
                point: r.required(4, "predicted_rows")?,
                lower: r.required(5, "lower_rows")?,
                upper: r.required(6, "upper_rows")?,
                naive: r.required(7, "naive_rows")?,
            })
        })
        .collect::<Result<Vec<_>>>()
    })
}

/// Records what arrived for forecast steps, by `(made_at, horizon)`.
pub fn record_scores(
    parent: pg_sys::Oid,
    series: &str,
    made_at: Vec<String>,
    horizons: Vec<i32>,
    actuals: Vec<f64>,
) -> Result<()> {
    write(
        "UPDATE partition_predict.forecast_log f
            SET actual_rows = u.actual, scored_at = pg_catalog.now()
           FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::int[]),
                           pg_catalog.unnest($5::float8[])) AS u(made_at, horizon, actual)
          WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
            AND f.made_at = u.made_at::timestamptz AND f.horizon = u.horizon",
        &[
            parent.into(),
            series.into(),
            made_at.into(),
            horizons.into(),
            actuals.into(),
        ],
    )
}

/// A forecast to record, one entry per step (all of the same length).
pub struct NewForecast<'a> {
    pub series: &'a str,
    pub model: &'a str,
    /// `timestamptz` texts.
    pub step_start: Vec<String>,
    pub step_end: Vec<String>,
    /// Key texts.
    pub range_start: Vec<String>,
    pub range_end: Vec<String>,
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub naive: Vec<f64>,
}

pub fn record(parent: pg_sys::Oid, forecast: NewForecast) -> Result<()> {
    let steps = forecast.point.len() as i32;
    write(
        "INSERT INTO partition_predict.forecast_log
                (parent, series, made_at, step_start, step_end, horizon, range_start, range_end,
                 predicted_rows, lower_rows, upper_rows, naive_rows, model)
         SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, pg_catalog.now(), u.s::timestamptz, u.e::timestamptz,
                u.h, u.rs, u.re, u.p, u.l, u.u, u.n, $3
           FROM ROWS FROM (pg_catalog.unnest($4::text[]), pg_catalog.unnest($5::text[]),
                           pg_catalog.unnest($6::int[]), pg_catalog.unnest($7::text[]), pg_catalog.unnest($8::text[]),
                           pg_catalog.unnest($9::float8[]), pg_catalog.unnest($10::float8[]),
                           pg_catalog.unnest($11::float8[]), pg_catalog.unnest($12::float8[]))
                AS u(s, e, h, rs, re, p, l, u, n)",
        &[
            parent.into(),
            forecast.series.into(),
            forecast.model.into(),
            forecast.step_start.into(),
            forecast.step_end.into(),
            (1..=steps).collect::<Vec<i32>>().into(),
            forecast.range_start.into(),
            forecast.range_end.into(),
            forecast.point.into(),
            forecast.lower.into(),
            forecast.upper.into(),
            forecast.naive.into(),
        ],
    )
}

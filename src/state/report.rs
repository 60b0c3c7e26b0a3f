//! What `report()` and `report_html()` read of one table: its arrivals
//! (`state::counters`), forecasts (`state::forecasts`), partitions and
//! shadows, migrations and alerts over a period, and the figures of its
//! summary. The caller's right to the table's rows is checked first
//! ([`caller_may_read_rows`]); the rest is read past the owner-only
//! policies, inside `read_checked`.
//!
//! Every query reads through an index over the chosen period, which the
//! report bounds in steps. Times are unix seconds.

use ::report::ForecastStep;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::StateRow;
use crate::error::{PredictError, Result};

/// The time zone `parent`'s key times are shown in; `None` for a table no
/// longer managed.
pub fn time_zone(parent: pg_sys::Oid) -> Result<Option<String>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT time_zone FROM partition_predict.config
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
                None,
                &[parent.into()],
            )?
            .map(|row| StateRow::of("config", &row).required(1, "time_zone"))
            .next()
            .transpose()
    })
}

/// The steps of the newest forecast of `series`, nearest first.
pub fn newest_forecast(parent: pg_sys::Oid, series: &str) -> Result<Vec<ForecastStep>> {
    forecast_steps(
        "SELECT pg_catalog.date_part('epoch', f.step_start)::int8, pg_catalog.date_part('epoch', f.step_end)::int8,
                f.predicted_rows, f.lower_rows, f.upper_rows
           FROM (SELECT l.made_at FROM partition_predict.forecast_log l
                  WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                  ORDER BY l.made_at DESC LIMIT 1) newest
           JOIN partition_predict.forecast_log f
             ON f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2 AND f.made_at = newest.made_at
          ORDER BY f.horizon",
        &[parent.into(), series.into()],
    )
}

/// For each step starting in the period, the forecast made for it the
/// longest ahead within `horizon` steps.
pub fn past_forecasts(
    parent: pg_sys::Oid,
    series: &str,
    since: i64,
    until: i64,
    horizon: i64,
) -> Result<Vec<ForecastStep>> {
    forecast_steps(
        "SELECT DISTINCT ON (f.step_start)
                pg_catalog.date_part('epoch', f.step_start)::int8, pg_catalog.date_part('epoch', f.step_end)::int8,
                f.predicted_rows, f.lower_rows, f.upper_rows
           FROM partition_predict.forecast_log f
          WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
            AND f.step_start >= pg_catalog.to_timestamp($3) AND f.step_start < pg_catalog.to_timestamp($4)
            AND f.horizon <= $5
          ORDER BY f.step_start, f.horizon DESC",
        &[
            parent.into(),
            series.into(),
            (since as f64).into(),
            (until as f64).into(),
            (horizon as i32).into(),
        ],
    )
}

/// The model of the newest forecast of `series`, if one was made.
pub fn newest_model(parent: pg_sys::Oid, series: &str) -> Result<Option<String>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT l.model FROM partition_predict.forecast_log l
                  WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                  ORDER BY l.made_at DESC LIMIT 1",
                None,
                &[parent.into(), series.into()],
            )?
            .map(|row| StateRow::of("forecast_log", &row).required(1, "model"))
            .next()
            .transpose()
    })
}

/// Rows of `forecast_log` selected as step start, step end, point, lower
/// and upper bound.
fn forecast_steps(sql: &str, args: &[DatumWithOid]) -> Result<Vec<ForecastStep>> {
    Spi::connect(|client| {
        client
            .select(sql, None, args)?
            .map(|row| {
                let r = StateRow::of("forecast_log", &row);
                Ok(ForecastStep {
                    start: r.required(1, "step_start")?,
                    end: r.required(2, "step_end")?,
                    point: r.required(3, "predicted_rows")?,
                    lower: r.required(4, "lower_rows")?,
                    upper: r.required(5, "upper_rows")?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// Rows counted per key-time bucket starting in the period, over all
/// partitions, as `(bucket start, rows)` in order. Buckets without a row
/// are not there.
pub fn key_time_counts(parent: pg_sys::Oid, since: i64, until: i64) -> Result<Vec<(i64, f64)>> {
    timed_values(
        "SELECT pg_catalog.date_part('epoch', bucket_start)::int8, pg_catalog.sum(rows)::float8
           FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND bucket_start >= pg_catalog.to_timestamp($2) AND bucket_start < pg_catalog.to_timestamp($3)
          GROUP BY bucket_start ORDER BY bucket_start",
        ("key_time_counts", "bucket_start", "rows"),
        parent,
        since,
        until,
    )
}

/// Start of the oldest key-time bucket counted, if any.
pub fn oldest_key_time_bucket(parent: pg_sys::Oid) -> Result<Option<i64>> {
    Ok(crate::pg::spi::select_one::<f64>(
        "SELECT pg_catalog.date_part('epoch', pg_catalog.min(bucket_start)) FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[parent.into()],
    )?
    .map(|t| t as i64))
}

/// The frontier of each wall-clock hour of the period, and of the hour
/// before it (the speed over the period's first hour needs it), as
/// `(hour, highest key)` in order.
pub fn frontier_hours(parent: pg_sys::Oid, since: i64, until: i64) -> Result<Vec<(i64, f64)>> {
    timed_values(
        "SELECT pg_catalog.date_part('epoch', hour)::int8, frontier_raw::float8
           FROM partition_predict.frontier_hours
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND hour >= pg_catalog.to_timestamp($2) - interval '1 hour'
            AND hour < pg_catalog.to_timestamp($3)
          ORDER BY hour",
        ("frontier_hours", "hour", "frontier_raw"),
        parent,
        since,
        until,
    )
}

/// The newest hour whose frontier was recorded, if any.
pub fn newest_frontier_hour(parent: pg_sys::Oid) -> Result<Option<i64>> {
    Ok(crate::pg::spi::select_one::<f64>(
        "SELECT (SELECT pg_catalog.date_part('epoch', hour) FROM partition_predict.frontier_hours
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass ORDER BY hour DESC LIMIT 1)",
        &[parent.into()],
    )?
    .map(|t| t as i64))
}

/// `(unix seconds, value)` rows of `sql`, run with the table's OID and the
/// period's bounds in unix seconds as `$1`, `$2`, `$3`; both columns are
/// NOT NULL columns of `table`, named in `columns`.
fn timed_values(
    sql: &str,
    (table, time_column, value_column): (&'static str, &'static str, &'static str),
    parent: pg_sys::Oid,
    since: i64,
    until: i64,
) -> Result<Vec<(i64, f64)>> {
    Spi::connect(|client| {
        client
            .select(
                sql,
                None,
                &[parent.into(), (since as f64).into(), (until as f64).into()],
            )?
            .map(|row| {
                let r = StateRow::of(table, &row);
                Ok((r.required(1, time_column)?, r.required(2, value_column)?))
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// A partition or shadow of the table, as the `partitions` view shows it.
pub struct PartitionRow {
    pub name: String,
    pub start: String,
    pub end: String,
    pub state: String,
    pub rows: Option<i64>,
    pub predicted: Option<f64>,
}

/// The table's partitions and shadows, DEFAULT left out.
pub fn partitions(parent: pg_sys::Oid) -> Result<Vec<PartitionRow>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT partition::text, range_start, range_end, state, rows, predicted_rows
                   FROM partition_predict.partitions
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND state <> 'default'",
                None,
                &[parent.into()],
            )?
            .map(|row| {
                Ok(PartitionRow {
                    name: row.get::<String>(1)?.unwrap_or_default(),
                    start: row.get::<String>(2)?.unwrap_or_default(),
                    end: row.get::<String>(3)?.unwrap_or_default(),
                    state: row.get::<String>(4)?.unwrap_or_default(),
                    rows: row.get::<i64>(5)?,
                    predicted: row.get::<f64>(6)?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// A migration out of DEFAULT.
pub struct MigrationRow {
    /// The raw key its range starts at.
    pub range_from: i64,
    pub range_start: String,
    pub range_end: String,
    pub state: String,
    pub rows_moved: i64,
    pub started_at: f64,
}

/// The table's newest `limit` migrations, newest first.
pub fn migrations(parent: pg_sys::Oid, limit: i64) -> Result<Vec<MigrationRow>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT range_from, range_start, range_end, state::text, rows_moved,
                        pg_catalog.date_part('epoch', started_at)
                   FROM partition_predict.migrations
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                  ORDER BY id DESC LIMIT $2",
                None,
                &[parent.into(), limit.into()],
            )?
            .map(|row| {
                let r = StateRow::of("migrations", &row);
                Ok(MigrationRow {
                    range_from: r.required(1, "range_from")?,
                    range_start: r.required(2, "range_start")?,
                    range_end: r.required(3, "range_end")?,
                    state: r.required(4, "state")?,
                    rows_moved: r.required(5, "rows_moved")?,
                    started_at: r.required(6, "started_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// An alert to mark on the chart.
pub struct AlertRow {
    pub raised_at: f64,
    pub open: bool,
    /// The key range it is about, if it is about one.
    pub range_start: Option<String>,
    pub severity: String,
    pub kind: String,
    pub message: String,
}

/// The newest `limit` alerts raised in the period, and those still open
/// whenever raised.
pub fn alerts(parent: pg_sys::Oid, since: i64, until: i64, limit: i64) -> Result<Vec<AlertRow>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT pg_catalog.date_part('epoch', a.raised_at), a.resolved_at IS NULL, a.details->>'range_start',
                        a.severity::text, a.kind, a.message
                   FROM (SELECT * FROM partition_predict.alert_log
                          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                            AND raised_at >= pg_catalog.to_timestamp($2) AND raised_at < pg_catalog.to_timestamp($3)
                          ORDER BY raised_at DESC LIMIT $4) a
                 UNION
                 SELECT pg_catalog.date_part('epoch', o.raised_at), true, o.details->>'range_start',
                        o.severity::text, o.kind, o.message
                   FROM partition_predict.alert_log o
                  WHERE o.parent = $1::pg_catalog.oid::pg_catalog.regclass AND o.resolved_at IS NULL",
                None,
                &[
                    parent.into(),
                    (since as f64).into(),
                    (until as f64).into(),
                    limit.into(),
                ],
            )?
            .map(|row| {
                let r = StateRow::of("alert_log", &row);
                Ok(AlertRow {
                    raised_at: r.required(1, "raised_at")?,
                    open: r.optional(2)?.unwrap_or(false),
                    range_start: r.optional(3)?,
                    severity: r.required(4, "severity")?,
                    kind: r.required(5, "kind")?,
                    message: r.required(6, "message")?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// The open alerts (severity, kind, message), most severe first, then
/// oldest first; 50 at most.
pub fn open_alerts(parent: pg_sys::Oid) -> Result<Vec<[String; 3]>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT severity::text, kind, message FROM partition_predict.alert_log
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND resolved_at IS NULL
                  ORDER BY severity DESC, raised_at LIMIT 50",
                None,
                &[parent.into()],
            )?
            .map(|row| {
                let r = StateRow::of("alert_log", &row);
                Ok([
                    r.required(1, "severity")?,
                    r.required(2, "kind")?,
                    r.required(3, "message")?,
                ])
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// The summary's figures of a table.
pub struct SummaryFigures {
    pub rows_in_default: i64,
    /// Forecast error against seasonal naive over the last 2 days, if any
    /// step was scored.
    pub mase: Option<f64>,
    /// Share of scored steps that fell within the forecast's interval.
    pub coverage: Option<f64>,
    pub scored_steps: i64,
    /// What the last cycle's steps took, if one ran.
    pub cycle_ms: Option<f64>,
    pub runway_seconds: Option<f64>,
    /// The transaction's start, as text.
    pub now: String,
}

/// The summary's figures of `parent`; `None` if it is no partitioned table.
pub fn summary_figures(parent: pg_sys::Oid) -> Result<Option<SummaryFigures>> {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT COALESCE(pg_catalog.pg_stat_get_live_tuples(NULLIF(pt.partdefid, 0)), 0),
                        acc.mase, acc.coverage, acc.scored,
                        (SELECT pg_catalog.sum(k.duration_ms) FROM partition_predict.step_costs k
                          WHERE k.parent = pt.partrelid::pg_catalog.regclass),
                        (SELECT pg_catalog.date_part('epoch', s.runway) FROM partition_predict.table_state s
                          WHERE s.parent = pt.partrelid::pg_catalog.regclass),
                        pg_catalog.now()::text
                   FROM pg_catalog.pg_partitioned_table pt,
                        LATERAL (
                          SELECT pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.predicted_rows))
                                   / NULLIF(pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.naive_rows)), 0) AS mase,
                                 pg_catalog.avg(CASE WHEN f.actual_rows BETWEEN f.lower_rows AND f.upper_rows
                                                     THEN 1.0 ELSE 0.0 END)::float8 AS coverage,
                                 pg_catalog.count(*) AS scored
                            FROM partition_predict.forecast_log f
                           WHERE f.parent = pt.partrelid::pg_catalog.regclass AND f.series IN ('key_time', 'frontier')
                             AND f.made_at > pg_catalog.now() - interval '2 days' AND f.horizon <= 24
                             AND f.scored_at IS NOT NULL) acc
                  WHERE pt.partrelid = $1",
                Some(1),
                &[parent.into()],
            )?
            .first();
        if row.is_empty() {
            return Ok::<_, PredictError>(None);
        }
        Ok(Some(SummaryFigures {
            rows_in_default: row.get::<i64>(1)?.unwrap_or(0),
            mase: row.get::<f64>(2)?,
            coverage: row.get::<f64>(3)?,
            scored_steps: row.get::<i64>(4)?.unwrap_or(0),
            cycle_ms: row.get::<f64>(5)?,
            runway_seconds: row.get::<f64>(6)?,
            now: row.get::<String>(7)?.unwrap_or_default(),
        }))
    })
}

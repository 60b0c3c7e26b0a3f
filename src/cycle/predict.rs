//! Cycle step 2: score past forecasts, learn, forecast.
//!
//! Time keys forecast the key-time series (rows per hour of key time);
//! integer keys forecast the frontier's speed (keys per wall-clock hour),
//! turned into future key ranges with the observed rows per key. A series
//! is refit only when a new hour has completed since its last forecast:
//! with a one-minute naptime that is one fit per hour, not sixty.

use forecast::engine::{self, Scored, Selection};
use forecast::series;
use forecast::{Config, Learned, Model};
use partition_core::calendar::{
    MICROS_PER_DAY, MICROS_PER_HOUR, UNIX_TO_PG_EPOCH_SECONDS as PG_EPOCH_UNIX_SECONDS,
};
use partition_core::KeyType;
use pgrx::prelude::*;
use serde_json::json;

use crate::catalog::alerts::{self, AlertKind, Condition, Severity};
use crate::catalog::state;
use crate::catalog::{history, settings, PartitionedTable};
use crate::error::{PredictError, Result};
use crate::gucs;
use partition_core::planner::Lookahead;

/// Backtest fits a cycle without a forecast spends on the next model
/// choice: one fit costs about what one forecast does.
const FITS_PER_CYCLE: usize = 1;
/// A bucket is scored once the key frontier is this many buckets past it,
/// so late rows have had time to arrive.
const SETTLE_STEPS: i64 = 1;
/// Forecast steps this close count when judging a miss.
const NEAR_TERM_STEPS: i32 = 6;
/// Forecasts kept per series (one is made per completed hour: a month),
/// also within the table's `retention`: the log's size, and so the cost of
/// every query on it, stays bounded per table.
const FORECASTS_KEPT: i64 = 720;
/// Samples kept per table (within `retention`): the recent detail of
/// `stats_history`. Forecasting reads only the newest hundred.
const SAMPLES_KEPT: i64 = 20_000;
/// Hours of integer-key frontier kept per table (within `retention`):
/// more than forecasting reads.
const FRONTIER_HOURS_KEPT: i64 = 1_000;

#[derive(Clone, Debug, Default)]
pub struct ForecastSummary {
    pub forecast_made: bool,
    pub steps: i64,
    pub scored: i64,
}

/// A series to forecast: values per step, when the next step starts, and
/// how to describe a step as a key range.
struct Prepared {
    name: &'static str,
    values: Vec<f64>,
    /// Step length in microseconds.
    step_micros: i64,
    /// Start of the step after the last value (PG-epoch micros).
    next_step: i64,
    /// Last completed step: forecasts for steps up to here can be scored.
    settled_until: i64,
    /// Rows per unit of the series: 1 for the key-time series, rows per key
    /// for the frontier's keys per hour.
    rows_per_unit: f64,
}

pub fn forecast(table: &PartitionedTable) -> Result<ForecastSummary> {
    let config = engine_config(table);
    let prepared = if table.key_type.is_temporal() {
        key_time(table, &config)?
    } else {
        frontier(table, &config)?
    };
    let Some(prepared) = prepared else {
        return Ok(ForecastSummary::default());
    };
    let mut learned = load_learned(table, prepared.name)?;

    let scored = score(table, &prepared)?;
    if !scored.is_empty() {
        let all: Vec<Scored> = scored.iter().map(|(s, _)| *s).collect();
        learned = engine::learn(&learned, &all, &config);
        // A miss is judged on near-term steps: a forecast made a day ago for
        // this hour says little about the forecasting now.
        let near: Vec<Scored> = scored
            .iter()
            .filter(|(_, h)| *h <= NEAR_TERM_STEPS)
            .map(|(s, _)| *s)
            .collect();
        alert_on_miss(table, &prepared, &near)?;
    }
    let mut summary = ForecastSummary {
        scored: scored.len() as i64,
        ..Default::default()
    };
    // Steps are numbered from the epoch, so a choice's origin is the same
    // however the history arrived.
    let end = prepared.next_step.div_euclid(prepared.step_micros);
    if latest_forecast_start(table, prepared.name)?.is_some_and(|start| start >= prepared.next_step)
    {
        // No forecast due: prepare the next model choice, one fit at a time.
        engine::choose(
            &prepared.values,
            end,
            &mut learned,
            &config,
            Some(FITS_PER_CYCLE),
        );
        save_learned(table, prepared.name, &learned)?;
        return Ok(summary);
    }
    let horizon = horizon_steps(table, &prepared)?;
    // The choice in use, made at once if it could not be prepared (a first
    // forecast, a pause, a naptime of an hour or more: then once a day).
    let (prediction, learned) = engine::forecast(&prepared.values, end, horizon, &config, &learned)
        .map_err(|e| PredictError::Internal(format!("forecast of {}: {e}", table.name)))?;
    save_learned(table, prepared.name, &learned)?;
    write_forecast(table, &prepared, &prediction)?;
    prune_forecasts(table, prepared.name)?;
    prune_samples(table)?;
    summary.forecast_made = true;
    summary.steps = horizon as i64;
    Ok(summary)
}

/// Date keys step by day (see [`Config::daily`]), the others by hour.
fn engine_config(table: &PartitionedTable) -> Config {
    if table.key_type == KeyType::Date {
        Config::daily()
    } else {
        Config::default()
    }
}

/// Steps of history read: what a forecast uses, and before it what the
/// choices in use and in preparation backtest on.
fn steps_read(config: &Config) -> i64 {
    (config.history_steps as i64).max(config.selection_window as i64)
        + 2 * config.selection_every as i64
}

/// The key-time series: complete hours (days for date keys) up to the frontier bucket.
fn key_time(table: &PartitionedTable, config: &Config) -> Result<Option<Prepared>> {
    let step_micros = if table.key_type == KeyType::Date {
        MICROS_PER_DAY
    } else {
        MICROS_PER_HOUR
    };
    let step_seconds = step_micros / 1_000_000;
    let window = steps_read(config) + 1;
    // Rows with outlier keys in DEFAULT (act::quarantine) are counted in
    // their buckets too, but the series ends where plausible keys end.
    let outliers_from = history::plausible_upper_time(table)?;
    let (rows, older): (Vec<(i64, f64)>, bool) = Spi::connect(|client| {
        let result = client.select(
            "WITH newest AS (SELECT pg_catalog.max(bucket_start) AS b FROM partition_predict.key_time_counts
                              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                                AND ($5::timestamptz IS NULL OR bucket_start < $5)),
                  older AS (SELECT EXISTS (SELECT 1 FROM partition_predict.key_time_counts k, newest n
                                           WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
                                             AND k.bucket_start <= n.b - pg_catalog.make_interval(secs => ($3 * $4)::float8)) AS e)
             SELECT (pg_catalog.date_part('epoch', k.bucket_start)::bigint - $2) / $3,
                    pg_catalog.sum(k.rows)::float8, pg_catalog.bool_or(o.e)
               FROM partition_predict.key_time_counts k, newest n, older o
              WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND k.bucket_start > n.b - pg_catalog.make_interval(secs => ($3 * $4)::float8)
                AND k.bucket_start <= n.b
              GROUP BY k.bucket_start",
            None,
            &[
                table.oid.into(),
                PG_EPOCH_UNIX_SECONDS.into(),
                step_seconds.into(),
                window.into(),
                outliers_from.into(),
            ],
        )?;
        let mut older = false;
        let rows = result
            .map(|r| {
                older |= r.get::<bool>(3)?.unwrap_or(false);
                Ok((
                    r.get::<i64>(1)?.unwrap_or(0),
                    r.get::<f64>(2)?.unwrap_or(0.0),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok::<_, PredictError>((rows, older))
    })?;
    let Some(last) = rows.iter().map(|(s, _)| *s).max() else {
        return Ok(None);
    };
    // History older than the window: it starts at the window's first step,
    // empty steps and all, so where it starts does not depend on which
    // steps happen to hold rows.
    let first = if older {
        last - (window - 1)
    } else {
        rows.iter().map(|(s, _)| *s).min().unwrap_or(last)
    };
    // The frontier bucket is still filling: history ends before it.
    if last <= first {
        return Ok(None);
    }
    let regular = series::from_buckets(first, last - 1, &rows);
    Ok(Some(Prepared {
        name: history::forecast_series(table),
        values: regular.values,
        step_micros,
        next_step: last * step_micros,
        settled_until: (last - SETTLE_STEPS) * step_micros,
        rows_per_unit: 1.0,
    }))
}

/// Integer keys: keys per wall-clock hour from the sampled frontier.
fn frontier(table: &PartitionedTable, config: &Config) -> Result<Option<Prepared>> {
    let samples: Vec<(f64, f64)> = Spi::connect(|client| {
        let result = client.select(
            "SELECT (pg_catalog.date_part('epoch', sampled_at) - $2) / 3600.0, frontier_raw::float8
               FROM partition_predict.frontier_hours
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND hour > pg_catalog.now() - pg_catalog.make_interval(hours => $3)
              ORDER BY hour",
            None,
            &[
                table.oid.into(),
                (PG_EPOCH_UNIX_SECONDS as f64).into(),
                (steps_read(config) as i32).into(),
            ],
        )?;
        result
            .map(|r| {
                Ok((
                    r.get::<f64>(1)?.unwrap_or(0.0),
                    r.get::<f64>(2)?.unwrap_or(0.0),
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // The frontier of the table is the running maximum over samples.
    let mut running = f64::MIN;
    let cumulative: Vec<(f64, f64)> = samples
        .into_iter()
        .map(|(t, v)| {
            running = running.max(v);
            (t, running)
        })
        .collect();
    let Some(&(first_hour, _)) = cumulative.first() else {
        return Ok(None);
    };
    let regular = series::rate_from_cumulative(&cumulative, 1.0);
    if regular.is_empty() {
        return Ok(None);
    }
    let start_hour = first_hour.ceil() as i64;
    let next = start_hour + regular.len() as i64;
    let rows_per_key = history::rows_per_key(table.oid)?;
    Ok(Some(Prepared {
        name: history::forecast_series(table),
        values: regular.values,
        step_micros: MICROS_PER_HOUR,
        next_step: next * MICROS_PER_HOUR,
        settled_until: next * MICROS_PER_HOUR,
        rows_per_unit: rows_per_key,
    }))
}

/// Steps to forecast: the table's lookahead, at least a day, and for time
/// keys past where the next arrivals may reach. Partitions starting within
/// the reach are attached now and keep the size they have: past the
/// forecast they would be sized by the plan's flat floor, which knows no
/// weekend, and a quiet weekend is joined into one range only when the
/// forecast covers it to its end. Hence the margin past the reach: as long
/// again, up to two days (a table fed every minute keeps its lookahead).
fn horizon_steps(table: &PartitionedTable, prepared: &Prepared) -> Result<usize> {
    let seconds = match settings::load(table)?.lookahead {
        Some(Lookahead::Seconds(seconds)) => seconds,
        _ => 7.0 * 86_400.0,
    };
    // Ninety days, whatever the step.
    let max_steps = (90 * MICROS_PER_DAY / prepared.step_micros).max(1) as usize;
    const MARGIN_SECONDS: f64 = 2.0 * 86_400.0;
    let steps = (seconds * 1e6 / prepared.step_micros as f64).ceil() as usize;
    // The forecast starts at the frontier's step: one more step.
    let reach_steps = if table.key_type.is_temporal() {
        let reach =
            history::reach_keys_to_forecast(table)? as f64 / table.key_type.units_per_second();
        let past_the_margin = reach + reach.min(MARGIN_SECONDS);
        (past_the_margin * 1e6 / prepared.step_micros as f64).ceil() as usize + 1
    } else {
        0
    };
    let a_day = (MICROS_PER_DAY / prepared.step_micros).max(1) as usize;
    Ok(steps.max(reach_steps).clamp(a_day, max_steps))
}

fn load_learned(table: &PartitionedTable, series: &str) -> Result<Learned> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT model, model_origin, margin, pending_origin, pending_model_errors,
                    pending_naive_errors, pending_model, pending_fingerprint
               FROM partition_predict.series_state
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND series = $2",
            None,
            &[table.oid.into(), series.into()],
        )?;
        let mut learned = Learned::default();
        for r in rows {
            learned.model = r.get::<String>(1)?.as_deref().and_then(Model::from_name);
            learned.model_origin = r.get::<i64>(2)?;
            learned.margin = r.get::<f64>(3)?.unwrap_or(1.0);
            learned.pending = match r.get::<i64>(4)? {
                Some(origin) => {
                    let model_errors = r.get::<Vec<Option<f64>>>(5)?.unwrap_or_default();
                    let naive_errors = r.get::<Vec<Option<f64>>>(6)?.unwrap_or_default();
                    let fits = model_errors
                        .into_iter()
                        .zip(naive_errors)
                        .map(|(m, n)| m.zip(n))
                        .collect();
                    Some(Selection {
                        origin,
                        fits,
                        model: r.get::<String>(7)?.as_deref().and_then(Model::from_name),
                        fingerprint: r.get::<i64>(8)?.unwrap_or(0),
                    })
                }
                None => None,
            };
        }
        Ok::<_, PredictError>(learned)
    })?;
    Ok(row)
}

fn save_learned(table: &PartitionedTable, series: &str, learned: &Learned) -> Result<()> {
    let pending = learned.pending.as_ref();
    let errors = |pick: fn(&(f64, f64)) -> f64| -> Option<Vec<Option<f64>>> {
        pending.map(|p| p.fits.iter().map(|f| f.as_ref().map(pick)).collect())
    };
    state::write(
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
            table.oid.into(),
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
    )?;
    Ok(())
}

/// Drops forecasts older than the table's retention or beyond the newest
/// `FORECASTS_KEPT`. Each forecast is found by its first step (`horizon =
/// 1`, a partial index), so this reads a bounded number of index entries.
fn prune_forecasts(table: &PartitionedTable, series: &str) -> Result<()> {
    state::write(
        "DELETE FROM partition_predict.forecast_log f
          WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
            AND f.made_at < GREATEST(
                  pg_catalog.now() - (SELECT c.history_retention FROM partition_predict.config c
                                       WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass),
                  (SELECT l.made_at FROM partition_predict.forecast_log l
                    WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                    ORDER BY l.made_at DESC OFFSET $3 - 1 LIMIT 1))",
        &[table.oid.into(), series.into(), FORECASTS_KEPT.into()],
    )?;
    Ok(())
}

/// Caps the samples of a table at `SAMPLES_KEPT` rows and its frontier
/// hours at `FRONTIER_HOURS_KEPT` (retention by age is step 1's). Run once
/// per forecast, that is at most hourly.
fn prune_samples(table: &PartitionedTable) -> Result<()> {
    state::write(
        "WITH hours AS (
             DELETE FROM partition_predict.frontier_hours f
              WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND f.hour < (SELECT l.hour FROM partition_predict.frontier_hours l
                               WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass
                               ORDER BY l.hour DESC OFFSET $3 LIMIT 1))
         DELETE FROM partition_predict.samples s
          WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND s.sampled_at < (SELECT l.sampled_at FROM partition_predict.samples l
                                 WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass
                                 ORDER BY l.sampled_at DESC OFFSET $2 LIMIT 1)",
        &[
            table.oid.into(),
            SAMPLES_KEPT.into(),
            FRONTIER_HOURS_KEPT.into(),
        ],
    )?;
    Ok(())
}

/// Start of the first step of the newest forecast: its `horizon = 1` row,
/// one entry of the partial index.
fn latest_forecast_start(table: &PartitionedTable, series: &str) -> Result<Option<i64>> {
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT (SELECT ((pg_catalog.date_part('epoch', l.step_start)::bigint - $3) * 1000000)
                   FROM partition_predict.forecast_log l
                  WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = $2 AND l.horizon = 1
                  ORDER BY l.made_at DESC LIMIT 1)",
        &[table.oid.into(), series.into(), PG_EPOCH_UNIX_SECONDS.into()],
    )?)
}

fn timestamptz_text(micros: i64) -> String {
    partition_core::calendar::format_iso_timestamp(micros, true)
}

/// Fills in what arrived for every settled, unscored forecast step.
/// Each comes with its horizon.
fn score(table: &PartitionedTable, prepared: &Prepared) -> Result<Vec<(Scored, i32)>> {
    let actual_of = |step_start: i64| -> Option<f64> {
        let first = prepared.next_step - prepared.values.len() as i64 * prepared.step_micros;
        let index = (step_start - first).checked_div(prepared.step_micros)?;
        (0..prepared.values.len() as i64)
            .contains(&index)
            .then(|| prepared.values[index as usize])
    };
    let pending: Vec<(String, i32, i64, f64, f64, f64, f64)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT made_at::text, horizon, ((pg_catalog.date_part('epoch', step_start)::bigint - $3) * 1000000),
                    predicted_rows, lower_rows, upper_rows, naive_rows
               FROM partition_predict.forecast_log
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND series = $2 AND scored_at IS NULL
                AND step_start < $4::timestamptz AND step_end <= $4::timestamptz",
            None,
            &[
                table.oid.into(),
                prepared.name.into(),
                PG_EPOCH_UNIX_SECONDS.into(),
                timestamptz_text(prepared.settled_until).into(),
            ],
        )?;
        rows.map(|r| {
            Ok((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<i32>(2)?.unwrap_or(0),
                r.get::<i64>(3)?.unwrap_or(0),
                r.get::<f64>(4)?.unwrap_or(0.0),
                r.get::<f64>(5)?.unwrap_or(0.0),
                r.get::<f64>(6)?.unwrap_or(0.0),
                r.get::<f64>(7)?.unwrap_or(0.0),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    let mut scored = Vec::new();
    let (mut made, mut horizons, mut actuals) = (Vec::new(), Vec::new(), Vec::new());
    for (made_at, horizon, step_start, point, lower, upper, naive) in pending {
        // A step before the history we hold (pruned by retention) cannot be scored any more.
        let actual = actual_of(step_start).unwrap_or(0.0) * prepared.rows_per_unit;
        scored.push((
            Scored {
                actual,
                point,
                lower,
                upper,
                naive,
            },
            horizon,
        ));
        made.push(made_at);
        horizons.push(horizon);
        actuals.push(actual);
    }
    if !made.is_empty() {
        state::write(
            "UPDATE partition_predict.forecast_log f
                SET actual_rows = u.actual, scored_at = pg_catalog.now()
               FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::int[]),
                               pg_catalog.unnest($5::float8[])) AS u(made_at, horizon, actual)
              WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = $2
                AND f.made_at = u.made_at::timestamptz AND f.horizon = u.horizon",
            &[
                table.oid.into(),
                prepared.name.into(),
                made.into(),
                horizons.into(),
                actuals.into(),
            ],
        )?;
    }
    Ok(scored)
}

/// The forecast-miss condition of a series: raised when what arrived in
/// the newly scored steps differs from the forecast by more than
/// `pg_partition_predict.forecast_alert_threshold`, kept (updated) while
/// the forecast keeps missing, resolved by the first scored steps it gets
/// right again. Hours with too few rows to judge leave it as it is.
fn alert_on_miss(table: &PartitionedTable, prepared: &Prepared, scored: &[Scored]) -> Result<()> {
    const MIN_ROWS: f64 = 100.0;
    if scored.is_empty() {
        return Ok(());
    }
    let condition = Condition::new(AlertKind::ForecastMiss, prepared.name);
    let actual: f64 = scored.iter().map(|s| s.actual).sum();
    let predicted: f64 = scored.iter().map(|s| s.point).sum();
    let threshold = gucs::forecast_alert_threshold();
    // Too few rows to judge (a nightly lull): the condition stays as it is.
    if actual.max(predicted) < MIN_ROWS {
        return Ok(());
    }
    let error = (actual - predicted).abs() / actual.max(1.0);
    if error <= threshold {
        return alerts::resolve(
            table.oid,
            condition,
            &format!(
                "the forecast is within {:.0}% again: {actual:.0} rows arrived where {predicted:.0} were predicted",
                threshold * 100.0
            ),
        );
    }
    let outside = scored
        .iter()
        .filter(|s| s.actual < s.lower || s.actual > s.upper)
        .count();
    alerts::raise(
        table.oid,
        condition,
        Severity::Warning,
        &format!(
            "forecast missed by {:.0}%: {actual:.0} rows arrived where {predicted:.0} were predicted",
            error * 100.0
        ),
        json!({
            "series": prepared.name,
            "actual_rows": actual,
            "predicted_rows": predicted,
            "relative_error": error,
            "threshold": threshold,
            "steps": scored.len(),
            "steps_outside_interval": outside,
        }),
    )
}

fn write_forecast(
    table: &PartitionedTable,
    prepared: &Prepared,
    prediction: &forecast::Prediction,
) -> Result<()> {
    let steps = prediction.point.len();
    let step_start: Vec<String> = (0..steps)
        .map(|h| timestamptz_text(prepared.next_step + h as i64 * prepared.step_micros))
        .collect();
    let step_end: Vec<String> = (0..steps)
        .map(|h| timestamptz_text(prepared.next_step + (h as i64 + 1) * prepared.step_micros))
        .collect();
    let (range_start, range_end, scale) = key_ranges(table, prepared, prediction)?;
    let scaled = |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v * scale).collect() };
    state::write(
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
            table.oid.into(),
            prepared.name.into(),
            if prediction.insufficient_history { "insufficient_history" } else { prediction.model.name() }.into(),
            step_start.into(),
            step_end.into(),
            (1..=steps as i32).collect::<Vec<i32>>().into(),
            range_start.into(),
            range_end.into(),
            scaled(&prediction.point).into(),
            scaled(&prediction.lower).into(),
            scaled(&prediction.upper).into(),
            scaled(&prediction.naive).into(),
        ],
    )?;
    Ok(())
}

/// The key range of each forecast step, and the factor turning the
/// forecast series' unit into rows (1 for the key-time series, rows per
/// key for the frontier).
fn key_ranges(
    table: &PartitionedTable,
    prepared: &Prepared,
    prediction: &forecast::Prediction,
) -> Result<(Vec<String>, Vec<String>, f64)> {
    let steps = prediction.point.len() as i64;
    let key = |raw: i64| table.key_type.value(raw).to_text();
    if table.key_type.is_temporal() {
        let to_raw = |micros: i64| {
            if table.key_type == KeyType::Date {
                micros / MICROS_PER_DAY
            } else {
                micros
            }
        };
        let starts = (0..steps)
            .map(|h| key(to_raw(prepared.next_step + h * prepared.step_micros)))
            .collect();
        let ends = (0..steps)
            .map(|h| key(to_raw(prepared.next_step + (h + 1) * prepared.step_micros)))
            .collect();
        return Ok((starts, ends, 1.0));
    }
    // Integer keys: ranges follow the frontier at the forecast speed.
    let frontier = history::frontier(table)?.unwrap_or(0);
    let (lo, hi) = table.key_type.finite_range();
    let mut position = frontier as f64 + 1.0;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for point in &prediction.point {
        let start = position.clamp(lo as f64, hi as f64) as i64;
        position += point.max(0.0);
        let end = (position.clamp(lo as f64, hi as f64) as i64).max(start);
        starts.push(key(start));
        ends.push(key(end));
    }
    Ok((starts, ends, prepared.rows_per_unit))
}

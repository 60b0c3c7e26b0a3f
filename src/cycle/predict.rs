//! Cycle step 2: score past forecasts, learn, forecast.
//!
//! Time keys forecast the key-time series (rows per hour of key time);
//! integer keys forecast the frontier's speed (keys per wall-clock hour),
//! turned into future key ranges with the observed rows per key. A series
//! is refit only when a new hour has completed since its last forecast:
//! with a one-minute naptime that is one fit per hour, not sixty.

use forecast::engine::{self, Scored};
use forecast::series;
use forecast::Config;
use partition_core::calendar::{MICROS_PER_DAY, MICROS_PER_HOUR};
use partition_core::KeyType;
use serde_json::json;

use crate::catalog::PartitionedTable;
use crate::error::{PredictError, Result};
use crate::gucs;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::counters;
use crate::state::forecasts::{self, NewForecast};
use crate::state::history::{self, History};

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
    let mut learned = forecasts::load_learned(table.oid, prepared.name)?;

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
    if forecasts::latest_start(table.oid, prepared.name)?
        .is_some_and(|start| start >= prepared.next_step)
    {
        // No forecast due: prepare the next model choice, one fit at a time.
        engine::choose(
            &prepared.values,
            end,
            &mut learned,
            &config,
            Some(FITS_PER_CYCLE),
        );
        forecasts::save_learned(table.oid, prepared.name, &learned)?;
        return Ok(summary);
    }
    let horizon = horizon_steps(table, &prepared)?;
    // The choice in use, made at once if it could not be prepared (a first
    // forecast, a pause, a naptime of an hour or more: then once a day).
    let (prediction, learned) = engine::forecast(&prepared.values, end, horizon, &config, &learned)
        .map_err(|e| PredictError::Internal(format!("forecast of {}: {e}", table.name)))?;
    forecasts::save_learned(table.oid, prepared.name, &learned)?;
    write_forecast(table, &prepared, &prediction)?;
    forecasts::prune(table.oid, prepared.name, FORECASTS_KEPT)?;
    counters::prune_samples(table.oid, SAMPLES_KEPT, FRONTIER_HOURS_KEPT)?;
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
    let (rows, older) = counters::key_time_steps(table.oid, step_seconds, window, outliers_from)?;
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
        name: forecasts::forecast_series(table),
        values: regular.values,
        step_micros,
        next_step: last * step_micros,
        settled_until: (last - SETTLE_STEPS) * step_micros,
        rows_per_unit: 1.0,
    }))
}

/// Integer keys: keys per wall-clock hour from the sampled frontier.
fn frontier(table: &PartitionedTable, config: &Config) -> Result<Option<Prepared>> {
    let samples = counters::frontier_hours(table.oid, steps_read(config) as i32)?;
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
    let rows_per_key = counters::rows_per_key(table.oid)?;
    Ok(Some(Prepared {
        name: forecasts::forecast_series(table),
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
    let known = History::read(table)?;
    let seconds = known.settings.lookahead_seconds().unwrap_or(7.0 * 86_400.0);
    // Ninety days, whatever the step.
    let max_steps = (90 * MICROS_PER_DAY / prepared.step_micros).max(1) as usize;
    const MARGIN_SECONDS: f64 = 2.0 * 86_400.0;
    let steps = (seconds * 1e6 / prepared.step_micros as f64).ceil() as usize;
    // The forecast starts at the frontier's step: one more step.
    let reach_steps = if table.key_type.is_temporal() {
        let reach = known.reach_keys_to_forecast() as f64 / table.key_type.units_per_second();
        let past_the_margin = reach + reach.min(MARGIN_SECONDS);
        (past_the_margin * 1e6 / prepared.step_micros as f64).ceil() as usize + 1
    } else {
        0
    };
    let a_day = (MICROS_PER_DAY / prepared.step_micros).max(1) as usize;
    Ok(steps.max(reach_steps).clamp(a_day, max_steps))
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
    let pending = forecasts::unscored(
        table.oid,
        prepared.name,
        &timestamptz_text(prepared.settled_until),
    )?;
    let mut scored = Vec::new();
    let (mut made, mut horizons, mut actuals) = (Vec::new(), Vec::new(), Vec::new());
    for step in pending {
        let forecasts::Unscored {
            made_at,
            horizon,
            step_start,
            point,
            lower,
            upper,
            naive,
        } = step;
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
        forecasts::record_scores(table.oid, prepared.name, made, horizons, actuals)?;
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
    let model = if prediction.insufficient_history {
        "insufficient_history"
    } else {
        prediction.model.name()
    };
    forecasts::record(
        table.oid,
        NewForecast {
            series: prepared.name,
            model,
            step_start,
            step_end,
            range_start,
            range_end,
            point: scaled(&prediction.point),
            lower: scaled(&prediction.lower),
            upper: scaled(&prediction.upper),
            naive: scaled(&prediction.naive),
        },
    )
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

//! `report()` and `report_html()`: one table's arrivals, forecast band,
//! partitions, migrations and alerts gathered for `crates/report` to draw.
//!
//! The caller must be able to read the table's rows (SELECT, no row-level
//! security limiting it), as for the views that show what the rows add up
//! to; the extension's state is then read past its owner-only policies
//! (`state::report`), through an index over the chosen period, which is
//! bounded in steps.

use partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
use partition_core::timeline::Timeline;
use partition_core::KeyType;
use pgrx::pg_sys;
use report::{Band, BandState, Chart, ForecastStep, Marker, MarkerKind, Point, Severity, Summary};

use crate::catalog::{self, PartitionedTable};
use crate::cycle::runway;
use crate::error::{PredictError, Result};
use crate::pg::relation;
use crate::state::forecasts::forecast_series;
use crate::state::history;
use crate::state::managed::is_managed;
use crate::state::report::{AlertRow, MigrationRow, PartitionRow, SummaryFigures};
use crate::state::{self, read_checked};

/// Most steps (hours, or days for date keys) one report may span.
const MAX_STEPS: i64 = 24 * 400;
/// Past forecasts drawn are those made this many steps ahead or less,
/// the longest available: what the forecast said a day (a week for days)
/// before, not an hour before.
const PAST_HORIZON_HOURS: i64 = 24;
const PAST_HORIZON_DAYS: i64 = 7;
/// Markers drawn at most (the newest win).
const MAX_MARKERS: i64 = 200;
/// Partitions listed as "next" in the HTML page.
const NEXT_PARTITIONS: usize = 8;

pub struct Period {
    pub since: Option<f64>,
    pub until: Option<f64>,
}

/// The chart and the key numbers of `parent` over the period.
pub fn gather(parent: pg_sys::Oid, period: Period) -> Result<(Chart, Summary)> {
    let name =
        relation::qualified_name(parent).ok_or(PredictError::UndefinedTable(parent.to_u32()))?;
    if !catalog::table::caller_may_read_rows(parent)? {
        return Err(PredictError::ReportNotReadable(name.to_string()));
    }
    read_checked(|| {
        // Reading is enough: the table's owner need not be the caller.
        let table = catalog::load_partitioned_table(parent, false)?;
        if !is_managed(parent)? {
            return Err(PredictError::NotManaged(table.name.to_string()));
        }
        gather_readable(&table, period)
    })
}

fn gather_readable(table: &PartitionedTable, period: Period) -> Result<(Chart, Summary)> {
    let temporal = table.key_type.is_temporal();
    let series = forecast_series(table);
    let step_seconds = if table.key_type == KeyType::Date {
        86_400
    } else {
        3_600
    };
    let zone = if table.key_type == KeyType::TimestampTz {
        state::report::time_zone(table.oid)?.unwrap_or_else(|| "UTC".into())
    } else {
        // Dates and timestamps without time zone are wall times: shown as they are.
        "UTC".to_string()
    };
    let newest = state::report::newest_forecast(table.oid, series)?;
    let frontier_time = match history::frontier(table)? {
        Some(raw) if temporal => key_to_unix(table.key_type, raw as f64),
        _ => state::report::newest_frontier_hour(table.oid)?,
    };
    let until = match period.until {
        Some(u) => finite_seconds(u, "until")?,
        None => newest
            .iter()
            .map(|s| s.end)
            .chain(frontier_time.map(|t| t + step_seconds))
            .max()
            .unwrap_or_else(|| crate::pg::backend::now_unix_seconds() as i64),
    };
    let until = until.clamp(*UNIX_SECONDS_RANGE.start(), *UNIX_SECONDS_RANGE.end());
    let since = match period.since {
        Some(s) => finite_seconds(s, "since")?,
        None => (until - step_seconds * if step_seconds == 86_400 { 70 } else { 24 * 8 })
            .max(*UNIX_SECONDS_RANGE.start()),
    };
    if since >= until {
        return Err(PredictError::InvalidPeriod(
            "since must be earlier than until".into(),
        ));
    }
    if (until - since) / step_seconds > MAX_STEPS {
        return Err(PredictError::InvalidPeriod(format!(
            "a report spans at most {MAX_STEPS} steps of the table's series ({} days of hours, or of days)",
            MAX_STEPS / 24
        )));
    }

    let actual = if temporal {
        key_time_arrivals(table, since, until, step_seconds, frontier_time)?
    } else {
        frontier_speed(table, since, until)?
    };
    let past_horizon = if step_seconds == 86_400 {
        PAST_HORIZON_DAYS
    } else {
        PAST_HORIZON_HOURS
    };
    let newest_made = newest.first().map(|s| s.start).unwrap_or(i64::MAX);
    let mut forecast: Vec<ForecastStep> =
        state::report::past_forecasts(table.oid, series, since, until, past_horizon)?
            .into_iter()
            .filter(|s| s.start < newest_made)
            .collect();
    forecast.extend(
        newest
            .iter()
            .filter(|s| s.start < until && s.end > since)
            .cloned(),
    );

    let timeline = if temporal {
        None
    } else {
        let rates: Vec<f64> = newest.iter().map(|s| s.point).collect();
        Some(
            Timeline::new(state::report::frontier_hours(table.oid, since, until)?).extended(&rates),
        )
    };
    let (partitions, listed) = partitions(table, since, until, timeline.as_ref())?;
    let markers = markers(table, since, until, timeline.as_ref(), frontier_time)?;

    let (x_caption, y_caption) = match table.key_type {
        KeyType::Date => ("key date".to_string(), "rows per day".to_string()),
        KeyType::TimestampTz => (format!("key time ({zone})"), "rows per hour".to_string()),
        KeyType::Timestamp => ("key time".to_string(), "rows per hour".to_string()),
        _ => (
            "arrival time (UTC)".to_string(),
            "keys per hour".to_string(),
        ),
    };
    let chart = Chart {
        table: table.name.to_string(),
        zone,
        x_caption,
        y_caption,
        step_seconds,
        since,
        until,
        actual,
        forecast,
        partitions,
        markers,
        now: frontier_time,
    };
    let summary = summary(table, newest.len(), listed)?;
    Ok((chart, summary))
}

fn finite_seconds(value: f64, name: &str) -> Result<i64> {
    if !value.is_finite() {
        return Err(PredictError::InvalidPeriod(format!(
            "{name} must be finite"
        )));
    }
    Ok((value.floor() as i64).clamp(*UNIX_SECONDS_RANGE.start(), *UNIX_SECONDS_RANGE.end()))
}

/// Unix seconds a `timestamptz` can hold (4713 BC to 294276 AD): keys of a
/// `date` table beyond them cannot be placed on the axis.
const UNIX_SECONDS_RANGE: std::ops::RangeInclusive<i64> = -210_866_803_200..=9_224_318_015_999;

/// A key of a time type as unix seconds (wall time read as UTC for the
/// types without a zone); `None` for infinite bounds, keys no timestamp
/// can hold and integer keys.
fn key_to_unix(key_type: KeyType, raw: f64) -> Option<i64> {
    if !raw.is_finite() || raw <= i64::MIN as f64 || raw >= i64::MAX as f64 {
        return None;
    }
    let seconds = match key_type {
        KeyType::Date => (raw as i64).checked_mul(86_400)?,
        KeyType::Timestamp | KeyType::TimestampTz => (raw as i64).div_euclid(1_000_000),
        _ => return None,
    }
    .checked_add(UNIX_TO_PG_EPOCH_SECONDS)?;
    UNIX_SECONDS_RANGE.contains(&seconds).then_some(seconds)
}

/// Rows per step of key time. Steps without a row in the counts are steps
/// where nothing arrived, between the first counted step and the frontier.
fn key_time_arrivals(
    table: &PartitionedTable,
    since: i64,
    until: i64,
    step: i64,
    frontier: Option<i64>,
) -> Result<Vec<Point>> {
    let counted = state::report::key_time_counts(table.oid, since, until)?;
    let Some(oldest) = state::report::oldest_key_time_bucket(table.oid)? else {
        return Ok(Vec::new());
    };
    let first = oldest.max(since);
    let first = since + (first - since).div_euclid(step) * step;
    // The frontier's step is still filling: drawn, it would look like a drop.
    let end = frontier.unwrap_or(until).min(until);
    let mut points = Vec::new();
    let mut counted = counted.into_iter().peekable();
    let mut t = first;
    while t + step <= end {
        let mut rows = 0.0;
        while let Some(&(start, n)) = counted.peek() {
            if start >= t + step {
                break;
            }
            if start >= t {
                rows += n;
            }
            counted.next();
        }
        points.push(Point {
            start: t,
            value: rows,
        });
        t += step;
    }
    Ok(points)
}

/// Integer keys: keys per hour, from one hour's frontier to the next.
fn frontier_speed(table: &PartitionedTable, since: i64, until: i64) -> Result<Vec<Point>> {
    let points = state::report::frontier_hours(table.oid, since, until)?;
    Ok(points
        .windows(2)
        .filter(|pair| pair[1].0 > pair[0].0)
        .map(|pair| Point {
            start: pair[0].0,
            value: (pair[1].1 - pair[0].1).max(0.0) * 3_600.0 / (pair[1].0 - pair[0].0) as f64,
        })
        .filter(|p| p.start >= since)
        .collect())
}

/// The partitions and shadows as bands on the time axis, and the shadows
/// to come (name, start, end, state and forecast rows) for the page.
fn partitions(
    table: &PartitionedTable,
    since: i64,
    until: i64,
    timeline: Option<&Timeline>,
) -> Result<(Vec<Band>, Vec<[String; 4]>)> {
    let rows = state::report::partitions(table.oid)?;
    let place = |text: &str| -> Option<i64> {
        let raw = table.key_type.parse_value(text).ok()?.raw;
        match timeline {
            None => key_to_unix(table.key_type, raw as f64),
            Some(t) => t.time_of(raw as f64),
        }
    };
    let mut bands = Vec::new();
    let mut upcoming = Vec::new();
    for PartitionRow {
        name,
        start,
        end,
        state,
        rows,
        predicted,
    } in rows
    {
        let band_state = match state.as_str() {
            "shadow" => BandState::Shadow,
            "migrating" => BandState::Migrating,
            _ => BandState::Attached,
        };
        if band_state != BandState::Attached {
            upcoming.push((
                table
                    .key_type
                    .parse_value(&start)
                    .map_or(i64::MAX, |v| v.raw),
                [
                    name.clone(),
                    start.clone(),
                    end.clone(),
                    match predicted {
                        Some(p) => format!("{state}, {p:.0} rows forecast"),
                        None => state.clone(),
                    },
                ],
            ));
        }
        // Integer partitions the frontier has not reached start beyond the
        // timeline; those it passed before the period start at its left edge.
        let from = place(&start).unwrap_or(if timeline.is_some() { until } else { since });
        let to = place(&end).unwrap_or(until);
        if to <= since || from >= until {
            continue;
        }
        let label = match (band_state, rows, predicted) {
            (BandState::Attached, Some(r), _) => format!("{name} · [{start}, {end}) · {r} rows"),
            (_, _, Some(p)) => {
                format!("{name} · [{start}, {end}) · {state} · {p:.0} rows forecast")
            }
            _ => format!("{name} · [{start}, {end}) · {state}"),
        };
        bands.push(Band {
            start: from.max(since),
            end: to.min(until),
            state: band_state,
            label,
        });
    }
    bands.sort_by_key(|b| b.start);
    upcoming.sort_by_key(|(from, _)| *from);
    Ok((
        bands,
        upcoming
            .into_iter()
            .take(NEXT_PARTITIONS)
            .map(|(_, row)| row)
            .collect(),
    ))
}

/// Migrations (at the start of the range they moved) and alerts (when they
/// were raised) of the period.
fn markers(
    table: &PartitionedTable,
    since: i64,
    until: i64,
    timeline: Option<&Timeline>,
    frontier: Option<i64>,
) -> Result<Vec<Marker>> {
    let mut markers = Vec::new();
    let migrations = state::report::migrations(table.oid, MAX_MARKERS)?;
    for MigrationRow {
        range_from,
        range_start,
        range_end,
        state,
        rows_moved,
        started_at,
    } in migrations
    {
        let at = match timeline {
            None => key_to_unix(table.key_type, range_from as f64),
            Some(_) => Some(started_at as i64),
        };
        if let Some(at) = at.filter(|t| (since..until).contains(t)) {
            markers.push(Marker {
                at,
                kind: MarkerKind::Migration,
                label: format!(
                    "migration of [{range_start}, {range_end}) out of DEFAULT: {state}, {rows_moved} rows moved"
                ),
            });
        }
    }
    // Alerts raised in the period, and those still open whenever raised.
    let alerts = state::report::alerts(table.oid, since, until, MAX_MARKERS)?;
    for AlertRow {
        raised_at,
        open,
        range_start,
        severity,
        kind,
        message,
    } in alerts
    {
        // On a key-time axis an alert about a key range sits at the range,
        // and one still open at the frontier; otherwise when it was raised.
        let at = range_start
            .and_then(|text| table.key_type.parse_value(&text).ok())
            .and_then(|v| match timeline {
                None => key_to_unix(table.key_type, v.raw as f64),
                Some(t) => t.time_of(v.raw as f64),
            })
            .or(if open { frontier } else { None })
            .unwrap_or(raised_at as i64);
        if !(since..until).contains(&at) {
            continue;
        }
        markers.push(Marker {
            at,
            kind: MarkerKind::Alert(severity_of(&severity)),
            label: format!(
                "{kind} ({severity}{}): {message}",
                if open { ", open" } else { "" }
            ),
        });
    }
    markers.sort_by_key(|m| m.at);
    Ok(markers)
}

fn severity_of(text: &str) -> Severity {
    match text {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    }
}

fn summary(
    table: &PartitionedTable,
    forecast_steps: usize,
    next_partitions: Vec<[String; 4]>,
) -> Result<Summary> {
    let mut facts = Vec::new();
    let figures = state::report::summary_figures(table.oid)?;
    let model = state::report::newest_model(table.oid, forecast_series(table))?;
    let mut generated_at = String::new();
    if let Some(SummaryFigures {
        rows_in_default,
        mase,
        coverage,
        scored_steps,
        cycle_ms,
        runway_seconds,
        now,
    }) = figures
    {
        facts.push(("rows in DEFAULT".into(), rows_in_default.to_string()));
        facts.push((
            "forecast error (MASE vs seasonal naive, last 2 days)".into(),
            mase.map_or("not scored yet".into(), |m| format!("{m:.2}")),
        ));
        facts.push((
            "95% interval coverage (last 2 days)".into(),
            coverage.map_or("not scored yet".into(), |c| format!("{:.1} %", c * 100.0)),
        ));
        facts.push(("forecast steps scored".into(), scored_steps.to_string()));
        facts.push((
            "runway (attached partitions last)".into(),
            runway_seconds.map_or("unknown".into(), runway::human),
        ));
        facts.push((
            "last cycle".into(),
            cycle_ms.map_or("not run yet".into(), |ms| format!("{ms:.0} ms")),
        ));
        generated_at = now;
    }
    facts.push((
        "model".into(),
        model.unwrap_or_else(|| "no forecast yet".into()),
    ));
    facts.push(("steps forecast ahead".into(), forecast_steps.to_string()));
    let open_alerts = state::report::open_alerts(table.oid)?;
    Ok(Summary {
        facts,
        next_partitions,
        open_alerts,
        generated_at,
    })
}

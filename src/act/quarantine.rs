//! Outlier keys in DEFAULT (a row stamped 2200-01-01 or 1970-01-01 in a
//! table receiving today's data) stay there: moved into a partition of
//! their own they would become the table's frontier, and forecasts and
//! shadows would follow them instead of the data. One `outlier_keys`
//! condition names them while they are there; `release_outliers()` lets a
//! DBA accept them on purpose, and keys the data catches up with are moved
//! like any others.

use partition_core::arrivals::{self, Plausible};
use partition_core::planner::Stranded;
use pgrx::prelude::*;
use serde_json::{json, Value};

use crate::catalog::PartitionedTable;
use crate::error::Result;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::{counters, history};

fn condition() -> Condition<'static> {
    Condition::new(AlertKind::OutlierKeys, "")
}

/// The keys DEFAULT's rows may be moved for now.
pub fn bounds(table: &PartitionedTable) -> Result<Plausible> {
    history::plausible_keys(table, &history::arrivals(table)?)
}

/// Whether DEFAULT holds only the outliers judged before: nothing was
/// written to it since, and every one of them is still outside `bounds`.
/// Then the worker need not read DEFAULT again.
pub fn only_known_outliers(
    table: &PartitionedTable,
    default: pg_sys::Oid,
    bounds: &Plausible,
) -> Result<bool> {
    let Some((_, details)) = alerts::open_subjects(table.oid, AlertKind::OutlierKeys)?
        .into_iter()
        .next()
    else {
        return Ok(false);
    };
    let Some(signature) = counters::write_signature(table.oid, default)? else {
        return Ok(false);
    };
    // Rows it left to move (a migration that could not run) are looked for again.
    if details["default_signature"].as_str() != Some(signature.as_str())
        || details["plausible_groups"].as_u64() != Some(0)
    {
        return Ok(false);
    }
    let raw = |v: &Value| v.as_str().and_then(|s| s.parse::<i64>().ok());
    let below_ok =
        raw(&details["below_high_raw"]).is_none_or(|high| bounds.lower.is_some_and(|l| high < l));
    let above_ok =
        raw(&details["above_low_raw"]).is_none_or(|low| bounds.upper.is_some_and(|u| low >= u));
    Ok(below_ok && above_ok)
}

/// Whether outlier keys are held in DEFAULT (their condition is open).
pub fn holds_any(table: &PartitionedTable) -> Result<bool> {
    Ok(alerts::rows_held_back(table.oid)? > 0)
}

/// Splits the rows found in DEFAULT: returns those to move, and raises (or
/// updates, or resolves) the condition for the others.
pub fn judge(
    table: &PartitionedTable,
    default: pg_sys::Oid,
    groups: Vec<Stranded>,
    bounds: &Plausible,
) -> Result<Vec<Stranded>> {
    let (plausible, below, above) = arrivals::split(&groups, bounds);
    if below.is_empty() && above.is_empty() {
        alerts::resolve(
            table.oid,
            condition(),
            "DEFAULT holds no outlier keys any more",
        )?;
        return Ok(plausible);
    }
    let rows: f64 = below.iter().chain(&above).map(|g| g.rows).sum();
    let key = |raw: i64| table.key_type.value(raw).to_text();
    let span = |groups: &[Stranded]| -> Option<(i64, i64)> {
        Some((
            groups.iter().map(|g| g.start).min()?,
            groups.iter().map(|g| g.end.saturating_sub(1)).max()?,
        ))
    };
    let below_span = span(&below);
    let above_span = span(&above);
    let mut parts = Vec::new();
    if let Some((low, high)) = below_span {
        parts.push(format!("from {} to {}", key(low), key(high)));
    }
    if let Some((low, high)) = above_span {
        parts.push(format!("from {} to {}", key(low), key(high)));
    }
    let bound_text = |b: Option<i64>| b.map_or("-".to_string(), key);
    alerts::raise(
        table.oid,
        condition(),
        Severity::Warning,
        &format!(
            "{rows:.0} row(s) in DEFAULT have keys far outside the table's data ({}): they stay in DEFAULT and do not move the frontier or the forecast; keys outside [{}, {}) are held back; partition_predict.release_outliers() moves them",
            parts.join(" and "),
            bound_text(bounds.lower),
            bound_text(bounds.upper),
        ),
        json!({
            "rows": rows.round() as i64,
            "below_low": below_span.map(|s| key(s.0)),
            "below_high": below_span.map(|s| key(s.1)),
            "below_high_raw": below_span.map(|s| s.1.to_string()),
            "below_low_raw": below_span.map(|s| s.0.to_string()),
            "above_low": above_span.map(|s| key(s.0)),
            "above_high": above_span.map(|s| key(s.1)),
            "above_low_raw": above_span.map(|s| s.0.to_string()),
            "above_high_raw": above_span.map(|s| s.1.to_string()),
            "plausible_from": bounds.lower.map(key),
            "plausible_to": bounds.upper.map(key),
            "default_signature": counters::write_signature(table.oid, default)?,
            "plausible_groups": plausible.len(),
        }),
    )?;
    Ok(plausible)
}

/// Accepts the outlier keys DEFAULT holds now: from the next migration on
/// they are moved like any others. Returns how many rows were released.
pub fn release(table: &PartitionedTable) -> Result<i64> {
    let Some((_, details)) = alerts::open_subjects(table.oid, AlertKind::OutlierKeys)?
        .into_iter()
        .next()
    else {
        return Ok(0);
    };
    let raw = |name: &str| details[name].as_str().and_then(|s| s.parse::<i64>().ok());
    let known = history::arrivals(table)?;
    let low = [raw("below_low_raw"), raw("above_low_raw"), known.released.0]
        .into_iter()
        .flatten()
        .min();
    let high = [
        raw("below_high_raw"),
        raw("above_high_raw"),
        known.released.1,
    ]
    .into_iter()
    .flatten()
    .max();
    history::release_keys(table.oid, low, high)?;
    let rows = details["rows"].as_i64().unwrap_or(0);
    alerts::resolve(
        table.oid,
        condition(),
        &format!("{rows} row(s) released by release_outliers()"),
    )?;
    Ok(rows)
}

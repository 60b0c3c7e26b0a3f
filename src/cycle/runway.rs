//! The cycle's last step: how long the attached partitions last at the
//! forecast rate (the runway), for `managed_tables`, and the `runway`
//! alert while it is shorter than the wait for the next cycle plus a
//! margin: then rows would reach DEFAULT before the worker can attach more.

use std::time::Duration;

use partition_core::runway;
use pgrx::prelude::*;
use serde_json::json;

use crate::catalog::alerts::{self, AlertKind, Condition, Severity};
use crate::catalog::{self, history, state, PartitionedTable};
use crate::error::Result;
use crate::gucs;

/// Hours of the newest frontier forecast used for integer keys.
const FORECAST_HOURS_READ: i64 = 168;

/// The shortest runway that is not alerted: until the next cycle, plus as
/// long again (at least a minute) for the cycle to attach what is next.
pub fn alert_below() -> Duration {
    let naptime = gucs::naptime();
    naptime + naptime.max(Duration::from_secs(60))
}

/// Measures, stores and alerts the runway of `table`; returns it in
/// seconds (`None`: no frontier, or no forecast says when keys get there).
pub fn assess(table: &PartitionedTable) -> Result<Option<f64>> {
    // This cycle may have attached partitions since `table` was read.
    let now = catalog::load_partitioned_table(table.oid, false)?;
    let seconds = match history::frontier(&now)? {
        None => None,
        Some(frontier) => match runway::ready_end(&now.attached_ranges(), frontier) {
            None => Some(0.0),
            Some(end) => {
                let rates = if now.key_type.is_temporal() {
                    Vec::new()
                } else {
                    keys_per_hour(&now)?
                };
                runway::seconds_until(now.key_type, frontier, end, &rates)
            }
        },
    };
    state::write(
        "INSERT INTO partition_predict.table_state AS s (parent, runway, runway_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass,
                 pg_catalog.make_interval(secs => pg_catalog.round($2::float8)), pg_catalog.now())
         ON CONFLICT (parent) DO UPDATE SET runway = EXCLUDED.runway, runway_at = EXCLUDED.runway_at",
        &[table.oid.into(), seconds.into()],
    )?;
    let condition = Condition::new(AlertKind::Runway, "");
    let threshold = alert_below().as_secs_f64();
    match seconds {
        Some(s) if s < threshold => alerts::raise(
            table.oid,
            condition,
            Severity::Critical,
            &format!(
                "the attached partitions last {} at the forecast rate, less than the {} until the next cycle can attach more: rows will go to DEFAULT",
                human(s),
                human(threshold)
            ),
            json!({"runway_seconds": s, "threshold_seconds": threshold}),
        )?,
        _ => alerts::resolve(
            table.oid,
            condition,
            &match seconds {
                Some(s) => format!("the attached partitions last {} again", human(s)),
                None => "no rows are forecast to reach the end of the attached partitions".into(),
            },
        )?,
    }
    Ok(seconds)
}

/// The newest forecast of an integer key's speed, hour by hour.
fn keys_per_hour(table: &PartitionedTable) -> Result<Vec<f64>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT f.predicted_rows
                   FROM (SELECT l.made_at FROM partition_predict.forecast_log l
                          WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass AND l.series = 'frontier'
                            AND l.horizon = 1
                          ORDER BY l.made_at DESC LIMIT 1) newest
                   JOIN partition_predict.forecast_log f
                     ON f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.series = 'frontier'
                    AND f.made_at = newest.made_at AND f.horizon <= $2
                  ORDER BY f.horizon",
                None,
                &[table.oid.into(), FORECAST_HOURS_READ.into()],
            )?
            .map(|row| Ok(row.get::<f64>(1)?.unwrap_or(0.0)))
            .collect::<Result<Vec<_>>>()
    })
}

/// A duration as a DBA reads it: seconds, minutes, hours or days.
pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{:.1} h", s as f64 / 3_600.0),
        _ => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

//! The cycle's last step: how long the attached partitions last at the
//! forecast rate (the runway), for `managed_tables`, and the `runway`
//! alert while it is shorter than the wait for the next cycle plus a
//! margin: then rows would reach DEFAULT before the worker can attach more.

use std::time::Duration;

use partition_core::runway;
use serde_json::json;

use crate::catalog::{self, PartitionedTable};
use crate::error::Result;
use crate::gucs;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::{forecasts, history, managed};

/// A table's first cycles, in which a short runway is a warning, not critical.
pub const GRACE_CYCLES: i64 = 3;

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
    let cycles_before = managed::record_runway(table.oid, seconds)?;
    let condition = Condition::new(AlertKind::Runway, "");
    let threshold = alert_below().as_secs_f64();
    // A table just managed often starts short (its partitions were running
    // out: that is why it is managed now), and rows in DEFAULT can keep its
    // next range from being attached until the worker's first move: its
    // first cycles say so without paging anyone.
    let settling_in = cycles_before < GRACE_CYCLES;
    match seconds {
        Some(s) if s < threshold => alerts::raise(
            table.oid,
            condition,
            if settling_in {
                Severity::Warning
            } else {
                Severity::Critical
            },
            &format!(
                "the attached partitions last {} at the forecast rate, less than the {} until the next cycle can attach more: rows will go to DEFAULT{}",
                human(s),
                human(threshold),
                if settling_in {
                    " (one of the table's first cycles: critical from its fourth on)"
                } else {
                    ""
                }
            ),
            json!({"runway_seconds": s, "threshold_seconds": threshold, "first_cycles": settling_in}),
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
    forecasts::newest_points(table.oid, "frontier", FORECAST_HOURS_READ)
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

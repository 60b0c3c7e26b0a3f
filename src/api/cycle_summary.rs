//! What the cycle functions (`collect_stats`, `forecast`, `prepartition`,
//! `run_cycle`) return.

use pgrx::prelude::*;

use crate::cycle::{self, Steps};
use crate::error::{or_report, PredictError, Result};
use crate::pg::backend;
use crate::pg::regclass::Regclass;
use crate::pg::session::with_pinned_settings;
use crate::state::managed;

pub fn run(parent: Option<Regclass>, steps: Steps) -> Vec<PgHeapTuple<'static, AllocatedByRust>> {
    if backend::in_recovery() {
        or_report::<()>(Err(crate::error::PredictError::OnStandby));
    }
    or_report(with_pinned_settings(backend::require_sql_version));
    let outcomes = match parent {
        Some(Regclass(oid)) => {
            or_report(with_pinned_settings(|| managed::load_managed_table(oid)));
            vec![cycle::run_raising(oid, steps)]
        }
        None => or_report(cycle::tables(None))
            .into_iter()
            .map(|oid| cycle::run_isolated(oid, steps))
            .collect(),
    };
    outcomes
        .into_iter()
        .map(|o| {
            let next = if steps == Steps::Cycle {
                or_report(with_pinned_settings(|| cycle::default_rows_next(&o)))
            } else {
                None
            };
            or_report(summary_row(o, next))
        })
        .collect()
}

fn summary_row(
    outcome: cycle::Outcome,
    default_rows_next: Option<String>,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let mut row = PgHeapTuple::new_composite_type("partition_predict.cycle_summary")
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    row.set_by_name("parent", Regclass(outcome.parent))
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    for (name, value) in [
        ("partitions_sampled", outcome.collected.partitions_sampled),
        ("rows_inserted", outcome.collected.rows_inserted),
        ("rows_in_default", outcome.collected.rows_in_default),
        ("queries", outcome.collected.queries),
        ("forecast_steps", outcome.forecast.steps),
        ("forecasts_scored", outcome.forecast.scored),
        ("shadows_created", outcome.shadows.created),
        ("shadows_dropped", outcome.shadows.dropped),
        ("activated", outcome.shadows.activated),
    ] {
        row.set_by_name(name, value)
            .map_err(|e| PredictError::Internal(e.to_string()))?;
    }
    row.set_by_name("duration_ms", outcome.duration_ms)
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    row.set_by_name("error", outcome.error)
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    row.set_by_name("default_rows_next", default_rows_next)
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    Ok(row)
}

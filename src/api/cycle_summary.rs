//! What the cycle functions (`collect_stats`, `forecast`, `prepartition`,
//! `run_cycle`) return, and reading a key value given as text.

use pgrx::prelude::*;

use crate::catalog::{self, PartitionedTable};
use crate::cycle::{self, Steps};
use crate::error::{or_report, PredictError, Result};
use crate::gucs;
use crate::pg::backend;
use crate::pg::regclass::Regclass;
use crate::pg::session::with_pinned_settings;
use crate::pg::subxact::try_in_subtransaction;
use crate::shmem::requests;

pub fn run(parent: Option<Regclass>, steps: Steps) -> Vec<PgHeapTuple<'static, AllocatedByRust>> {
    or_report(with_pinned_settings(backend::require_sql_version));
    let outcomes = match parent {
        Some(Regclass(oid)) => {
            or_report(with_pinned_settings(|| catalog::load_managed_table(oid)));
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
                or_report(with_pinned_settings(|| default_rows_next(&o)))
            } else {
                None
            };
            or_report(summary_row(o, next))
        })
        .collect()
}

/// Rows a cycle found in DEFAULT are moved in transactions of their own,
/// which a function called in the caller's transaction cannot run: the
/// database's worker is asked to move them as soon as this commits.
fn default_rows_next(outcome: &cycle::Outcome) -> Result<Option<String>> {
    if outcome.error.is_some() || outcome.skipped {
        return Ok(None);
    }
    if outcome.collected.rows_in_default == 0 {
        return Ok(Some("none".into()));
    }
    // Outlier keys stay where they are (act::quarantine).
    let held_back = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT (details->>'rows')::int8 FROM partition_predict.alert_log
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND kind = 'outlier_keys'
                    AND resolved_at IS NULL)",
        &[outcome.parent.into()],
    )?
    .unwrap_or(0);
    if held_back >= outcome.collected.rows_in_default {
        return Ok(Some(
            "held back: outlier keys (alert outlier_keys; release_outliers() moves them)".into(),
        ));
    }
    let worker = backend::library_preloaded()
        && gucs::enabled()
        && Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM partition_predict.worker_status
                             WHERE database = pg_catalog.current_database() AND state <> 'stopped')",
        )?
        .unwrap_or(false);
    Ok(Some(if worker {
        requests::cycle_after_commit(outcome.parent);
        "moved out by the worker when this transaction commits".into()
    } else {
        "left in DEFAULT: no worker serves this database; CALL partition_predict.migrate_default()"
            .into()
    }))
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

/// A key value written any way the key type's input accepts ('2024-03-01',
/// 'now', '2024-03-01 10:00+02', '1e6'::bigint…), read in pinned settings.
pub fn key_of_text(table: &PartitionedTable, text: &str) -> Result<i64> {
    let invalid = |reason: String| PredictError::InvalidSetting {
        setting: "up_to",
        reason,
    };
    let canonical = try_in_subtransaction(|| {
        Spi::get_one_with_args::<String>(
            &format!("SELECT $1::{}::text", table.key_type.sql_name()),
            &[text.into()],
        )
    })
    .map_err(|e| invalid(e.message))?
    .map_err(PredictError::from)?
    .ok_or_else(|| invalid("NULL".into()))?;
    table
        .key_type
        .parse_value(&canonical)
        .map(|v| v.raw)
        .map_err(|e| invalid(e.to_string()))
}

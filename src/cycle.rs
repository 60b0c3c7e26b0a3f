//! One cycle per managed table: the steps that exist so far (1 collect,
//! 2 forecast), run as the table's owner, each table's failure isolated.

use std::time::Instant;

use pgrx::prelude::*;
use serde_json::json;

use crate::alerts::{self, AlertKind};
use crate::catalog;
use crate::collect::{self, CollectSummary};
use crate::error::{or_report, PredictError, Result};
use crate::predict::{self, ForecastSummary};
use crate::session::{as_role, with_pinned_settings};
use crate::shadows::{self, ShadowSummary};
use crate::subxact::try_in_subtransaction;

/// Which steps to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    /// `collect_stats()`: step 1 only; not counted as a cycle.
    Collect,
    /// `forecast()`: step 2 only; not counted as a cycle.
    Forecast,
    /// `prepartition()`: steps 3 and 4 only; not counted as a cycle.
    Prepartition,
    /// `run_cycle()` and the workers: every step that exists, recorded in
    /// `managed_tables` (last cycle, last error).
    Cycle,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub parent: pg_sys::Oid,
    pub collected: CollectSummary,
    pub forecast: ForecastSummary,
    pub shadows: ShadowSummary,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// Another session was running this table's steps; nothing was done.
    pub skipped: bool,
}

impl Outcome {
    fn new(
        parent: pg_sys::Oid,
        started: Instant,
        results: StepResults,
        error: Option<String>,
    ) -> Outcome {
        let (collected, forecast, shadows) = results;
        Outcome {
            parent,
            collected,
            forecast,
            shadows,
            duration_ms: elapsed_ms(started),
            error,
            skipped: false,
        }
    }
}

/// The managed tables the current role may act on (row-level security on
/// the configuration hides the others), or just `only`.
pub fn managed_tables(only: Option<pg_sys::Oid>) -> Result<Vec<pg_sys::Oid>> {
    with_pinned_settings(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT parent::pg_catalog.oid FROM partition_predict.config
                  WHERE $1::pg_catalog.oid IS NULL OR parent = $1::pg_catalog.oid::pg_catalog.regclass
                  ORDER BY parent::pg_catalog.oid",
                None,
                &[only.into()],
            )?;
            rows.map(|row| {
                row.get::<pg_sys::Oid>(1)
                    .map(|oid| oid.unwrap_or(pg_sys::InvalidOid))
                    .map_err(PredictError::from)
            })
            .collect()
        })
    })
}

type StepResults = (CollectSummary, ForecastSummary, ShadowSummary);

/// First half of the advisory-lock key of a table's cycle.
const CYCLE_LOCK_SPACE: i32 = 0x7070_7000;

/// Serialises the steps of one table across sessions (a worker and a
/// manual run_cycle() must not recount the same buckets at once). Held to
/// the end of the transaction. `wait`: block until free; otherwise report
/// whether it was free.
pub fn lock_table_cycle(parent: pg_sys::Oid, wait: bool) -> Result<bool> {
    let key = parent.to_u32() as i32;
    if wait {
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
            &[CYCLE_LOCK_SPACE.into(), key.into()],
        )?;
        return Ok(true);
    }
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
        &[CYCLE_LOCK_SPACE.into(), key.into()],
    )?
    .unwrap_or(false))
}

fn run_steps(parent: pg_sys::Oid, steps: Steps) -> Result<StepResults> {
    let table = catalog::load_partitioned_table(parent, false)?;
    as_role(table.owner_oid, || {
        let collected = match steps {
            Steps::Collect | Steps::Cycle => collect::collect(&table)?,
            _ => CollectSummary::default(),
        };
        let forecast = match steps {
            Steps::Forecast | Steps::Cycle => predict::forecast(&table)?,
            _ => ForecastSummary::default(),
        };
        let mut shadows = ShadowSummary::default();
        if matches!(steps, Steps::Prepartition | Steps::Cycle) {
            shadows = shadows::prepare(&table)?;
        }
        if steps == Steps::Cycle {
            shadows.activated = shadows::activate(&table, None)?;
        }
        Ok((collected, forecast, shadows))
    })
}

/// Runs one table's steps; an error propagates to the caller.
pub fn run_raising(parent: pg_sys::Oid, steps: Steps) -> Outcome {
    let started = Instant::now();
    let started_at = or_report(with_pinned_settings(clock));
    or_report(with_pinned_settings(|| lock_table_cycle(parent, true)));
    let results = or_report(with_pinned_settings(|| run_steps(parent, steps)));
    if steps == Steps::Cycle {
        or_report(with_pinned_settings(|| record(parent, &started_at, None)));
    }
    Outcome::new(parent, started, results, None)
}

/// Runs one table's steps in a subtransaction: a failure is rolled back,
/// logged, stored as `last_error` and raised as an alert, and the caller
/// goes on with the next table.
pub fn run_isolated(parent: pg_sys::Oid, steps: Steps) -> Outcome {
    let started = Instant::now();
    let started_at = or_report(with_pinned_settings(clock));
    // Another session is running this table's steps right now: its result
    // stands for this cycle too.
    if !or_report(with_pinned_settings(|| lock_table_cycle(parent, false))) {
        let message = "skipped: another session is running this table's cycle".to_string();
        return Outcome {
            skipped: true,
            ..Outcome::new(parent, started, Default::default(), Some(message))
        };
    }
    let attempt =
        try_in_subtransaction(|| or_report(with_pinned_settings(|| run_steps(parent, steps))));
    let (results, error) = match attempt {
        Ok(done) => (done, None),
        Err(caught) => (Default::default(), Some((caught.sqlstate, caught.message))),
    };
    let message = error.as_ref().map(|(_, m)| m.clone());
    if steps == Steps::Cycle || error.is_some() {
        // The table may be gone (dropped mid-cycle): then there is nothing to record it on.
        let recorded = try_in_subtransaction(|| {
            or_report(with_pinned_settings(|| {
                record(parent, &started_at, message.as_deref())?;
                if let Some((sqlstate, message)) = &error {
                    alerts::raise(
                        Some(parent),
                        AlertKind::Failure,
                        &format!("cycle failed: {message}"),
                        json!({"sqlstate": format!("{sqlstate:?}")}),
                    )?;
                }
                Ok(())
            }))
        });
        if let Err(e) = recorded {
            pgrx::log!(
                "pg_partition_predict: could not record the cycle of table {parent:?}: {}",
                e.message
            );
        }
    }
    Outcome::new(parent, started, results, message)
}

fn clock() -> Result<String> {
    Ok(Spi::get_one::<String>("SELECT pg_catalog.clock_timestamp()::text")?.unwrap_or_default())
}

fn record(parent: pg_sys::Oid, started_at: &str, error: Option<&str>) -> Result<()> {
    Spi::run_with_args(
        "INSERT INTO partition_predict.table_state AS s
                (parent, last_cycle_start, last_cycle_end, cycles, failures, last_error, last_error_at)
         SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2::timestamptz, t.now, 1,
                CASE WHEN $3::text IS NULL THEN 0 ELSE 1 END, $3, CASE WHEN $3::text IS NULL THEN NULL ELSE t.now END
           FROM (SELECT pg_catalog.clock_timestamp() AS now) t
         ON CONFLICT (parent) DO UPDATE
            SET last_cycle_start = EXCLUDED.last_cycle_start,
                last_cycle_end = EXCLUDED.last_cycle_end,
                cycles = s.cycles + 1,
                failures = s.failures + EXCLUDED.failures,
                last_error = COALESCE(EXCLUDED.last_error, s.last_error),
                last_error_at = COALESCE(EXCLUDED.last_error_at, s.last_error_at)",
        &[parent.into(), started_at.into(), error.into()],
    )?;
    Ok(())
}

/// Milliseconds, to the microsecond.
fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Attaches every prepared shadow of `parent` (all lie within `lookahead`
/// of the frontier), for a bulk load about to run; how many. Nothing when
/// another session is running the table's steps or it is not managed.
pub fn activate_for_bulk_load(parent: pg_sys::Oid) -> Result<i64> {
    with_pinned_settings(|| {
        if !lock_table_cycle(parent, false)? || managed_tables(Some(parent))?.is_empty() {
            return Ok(0);
        }
        let table = catalog::load_partitioned_table(parent, false)?;
        as_role(table.owner_oid, || {
            shadows::activate(&table, Some(i64::MAX))
        })
    })
}

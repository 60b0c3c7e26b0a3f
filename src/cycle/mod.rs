//! The cycle, one managed table at a time, run as the table's owner, each
//! table's failure isolated:
//!
//! 1. `collect`: snapshot the statistics PostgreSQL keeps;
//! 2. `predict`: score past forecasts, learn, forecast;
//! 3. and 4. `plan`: plan future partitions and prepare shadows to match;
//!    then attach the shadows the data has reached (`act::activate`);
//! 5. `runway`: how long the attached partitions last, alerted when short.
//!
//! Moving rows out of DEFAULT is not a step of the cycle: the worker runs
//! `act::migrate` after each table's cycle, step by step, each step in a
//! transaction of its own.

pub mod collect;
pub mod plan;
pub mod predict;
pub mod runway;

use std::time::{Duration, Instant};

use pgrx::prelude::*;
use serde_json::json;

use self::collect::CollectSummary;
use self::plan::ShadowSummary;
use self::predict::ForecastSummary;
use crate::act::activate;
use crate::catalog;
use crate::error::{or_report, Result};
use crate::pg::backend;
use crate::pg::locks::lock_table_steps;
use crate::pg::session::{as_role, with_pinned_settings, with_settings};
use crate::pg::subxact::try_in_subtransaction;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::history::History;
use crate::state::managed::{self, managed_tables, StepCosts};
use crate::state::workers;
use crate::{gucs, shmem::requests};

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

/// The managed tables the current role may act on, or just `only`.
pub fn tables(only: Option<pg_sys::Oid>) -> Result<Vec<pg_sys::Oid>> {
    with_pinned_settings(|| managed_tables(only))
}

type StepResults = (CollectSummary, ForecastSummary, ShadowSummary);

/// What one step of one table's cycle cost.
#[derive(Clone, Copy, Debug, Default)]
struct StepCost {
    step: &'static str,
    duration_ms: f64,
    /// Rows of the managed table read (step 1).
    rows_read: i64,
    buffers_hit: i64,
    buffers_read: i64,
}

/// Runs `f` and measures it as `step`.
fn measured<R>(
    step: &'static str,
    costs: &mut Vec<StepCost>,
    f: impl FnOnce() -> Result<R>,
) -> Result<R> {
    let started = Instant::now();
    let (hit, read) = backend::shared_buffers_used();
    let result = f()?;
    let (hit_after, read_after) = backend::shared_buffers_used();
    costs.push(StepCost {
        step,
        duration_ms: elapsed_ms(started),
        rows_read: 0,
        buffers_hit: hit_after - hit,
        buffers_read: read_after - read,
    });
    Ok(result)
}

fn run_steps(parent: pg_sys::Oid, steps: Steps) -> Result<(StepResults, Vec<StepCost>)> {
    let table = catalog::load_partitioned_table(parent, false)?;
    let mut costs = Vec::new();
    let results = as_role(table.owner_oid, || {
        let collected = match steps {
            Steps::Collect | Steps::Cycle => {
                let collected = measured("collect", &mut costs, || collect::collect(&table))?;
                if let Some(cost) = costs.last_mut() {
                    cost.rows_read = collected.rows_read;
                }
                collected
            }
            _ => CollectSummary::default(),
        };
        let forecast = match steps {
            Steps::Forecast | Steps::Cycle => {
                measured("forecast", &mut costs, || predict::forecast(&table))?
            }
            _ => ForecastSummary::default(),
        };
        let mut shadows = ShadowSummary::default();
        if matches!(steps, Steps::Prepartition | Steps::Cycle) {
            // Planning and activation share one read of the table's history.
            #[cfg(any(test, feature = "pg_test"))]
            let reads_before = state_reads();
            let (known, waiting);
            (shadows, known, waiting) = measured("prepartition", &mut costs, || {
                let known = History::read(&table)?;
                let (summary, waiting) = plan::prepare(&table, &known)?;
                Ok((summary, known, waiting))
            })?;
            if steps == Steps::Cycle {
                shadows.activated = measured("activate", &mut costs, || {
                    activate::activate_known(&table, None, &known, waiting)
                })?;
            }
            #[cfg(any(test, feature = "pg_test"))]
            PLAN_AND_ACTIVATE_READS
                .set(state_reads().map2(reads_before, |after, before| after - before));
            if steps == Steps::Cycle {
                measured("runway", &mut costs, || runway::assess(&table))?;
            }
        }
        Ok::<_, crate::error::PredictError>((collected, forecast, shadows))
    })?;
    Ok((results, costs))
}

/// Reads of the state per family (settings, history, forecasts, shadows).
#[cfg(any(test, feature = "pg_test"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateReads {
    pub settings: u64,
    pub history: u64,
    pub forecasts: u64,
    pub shadows: u64,
    pub migrations: u64,
    pub alerts: u64,
}

#[cfg(any(test, feature = "pg_test"))]
impl StateReads {
    fn map2(self, other: StateReads, f: impl Fn(u64, u64) -> u64) -> StateReads {
        StateReads {
            settings: f(self.settings, other.settings),
            history: f(self.history, other.history),
            forecasts: f(self.forecasts, other.forecasts),
            shadows: f(self.shadows, other.shadows),
            migrations: f(self.migrations, other.migrations),
            alerts: f(self.alerts, other.alerts),
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
fn state_reads() -> StateReads {
    use crate::state::{reads, Family};
    StateReads {
        settings: reads(Family::Settings),
        history: reads(Family::History),
        forecasts: reads(Family::Forecasts),
        shadows: reads(Family::Shadows),
        migrations: reads(Family::Migrations),
        alerts: reads(Family::Alerts),
    }
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    static PLAN_AND_ACTIVATE_READS: std::cell::Cell<StateReads> =
        const {
            std::cell::Cell::new(StateReads {
                settings: 0,
                history: 0,
                forecasts: 0,
                shadows: 0,
                migrations: 0,
                alerts: 0,
            })
        };
}

/// What planning and activation of the last table this backend cycled read
/// of the state, for the tests that hold them to reading it once.
#[cfg(any(test, feature = "pg_test"))]
pub fn plan_and_activate_reads() -> StateReads {
    PLAN_AND_ACTIVATE_READS.get()
}

/// The subject of the condition "this table's cycles fail".
const FAILED_CYCLE: &str = "cycle";
/// The subject of the condition "this table's cycles keep being skipped".
const SKIPPED_CYCLES: &str = "skipped";

/// Runs one table's steps; an error propagates to the caller.
pub fn run_raising(parent: pg_sys::Oid, steps: Steps) -> Outcome {
    let started = Instant::now();
    let started_at = or_report(with_pinned_settings(clock));
    or_report(with_pinned_settings(|| lock_table_steps(parent, true)));
    let (results, costs) = or_report(with_pinned_settings(|| run_steps(parent, steps)));
    if steps == Steps::Cycle {
        or_report(with_pinned_settings(|| {
            record(parent, &started_at, None, &costs)?;
            alerts::resolve(
                parent,
                Condition::new(AlertKind::Failure, FAILED_CYCLE),
                "a later cycle succeeded",
            )
        }));
    }
    Outcome::new(parent, started, results, None)
}

/// The background worker's cycle of one table: as [`run_isolated`], and a
/// table whose steps the worker finds held by another session at every
/// cycle for three naptimes, with no cycle completed meanwhile, raises the
/// *skipped* condition (resolved by the next cycle that completes).
pub fn run_by_worker(parent: pg_sys::Oid) -> Outcome {
    run_isolated_noting(parent, Steps::Cycle, true)
}

/// Runs one table's steps in a subtransaction: a failure is rolled back,
/// logged, stored as `last_error` and raised as an alert, and the caller
/// goes on with the next table.
pub fn run_isolated(parent: pg_sys::Oid, steps: Steps) -> Outcome {
    run_isolated_noting(parent, steps, false)
}

thread_local! {
    /// The worker's view: since when each table's steps were found held by
    /// another session at every attempt (in memory: a restarted worker
    /// starts counting again).
    static SKIPPED_SINCE: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, Instant>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn run_isolated_noting(parent: pg_sys::Oid, steps: Steps, note_skips: bool) -> Outcome {
    let started = Instant::now();
    let started_at = or_report(with_pinned_settings(clock));
    // Another session is running this table's steps right now: its result
    // stands for this cycle too.
    if !or_report(with_pinned_settings(|| lock_table_steps(parent, false))) {
        let skipped_for = note_skips.then(|| {
            SKIPPED_SINCE.with(|since| {
                since
                    .borrow_mut()
                    .entry(parent)
                    .or_insert_with(Instant::now)
                    .elapsed()
            })
        });
        if let Some(skipped_for) = skipped_for.filter(|s| *s >= skipped_cycles_threshold()) {
            // Under a short lock_timeout: the session holding the table's
            // steps may hold the alert's row too, and the worker must not
            // wait for it.
            let timeout = gucs::lock_timeout_ms().to_string();
            let noted = try_in_subtransaction(|| {
                or_report(with_pinned_settings(|| {
                    with_settings(&[(c"lock_timeout", &timeout)], || {
                        note_skipped(parent, skipped_for)
                    })
                }))
            });
            if let Err(e) = noted {
                pgrx::log!(
                    "pg_partition_predict: could not note the skipped cycles of table {parent:?}: {}",
                    e.message
                );
            }
        }
        let message = "skipped: another session is running this table's cycle".to_string();
        return Outcome {
            skipped: true,
            ..Outcome::new(parent, started, Default::default(), Some(message))
        };
    }
    if note_skips {
        SKIPPED_SINCE.with(|since| since.borrow_mut().remove(&parent));
    }
    let attempt =
        try_in_subtransaction(|| or_report(with_pinned_settings(|| run_steps(parent, steps))));
    let ((results, costs), error) = match attempt {
        Ok(done) => (done, None),
        Err(caught) => (Default::default(), Some((caught.sqlstate, caught.message))),
    };
    let message = error.as_ref().map(|(_, m)| m.clone());
    if steps == Steps::Cycle || error.is_some() {
        // The table may be gone (dropped mid-cycle): then there is nothing to record it on.
        let recorded = try_in_subtransaction(|| {
            or_report(with_pinned_settings(|| {
                record(parent, &started_at, message.as_deref(), &costs)?;
                let condition = Condition::new(AlertKind::Failure, FAILED_CYCLE);
                match &error {
                    Some((sqlstate, message)) => alerts::raise(
                        parent,
                        condition,
                        Severity::Critical,
                        &format!("cycle failed: {message}"),
                        json!({"sqlstate": format!("{sqlstate:?}")}),
                    ),
                    None => alerts::resolve(parent, condition, "a later cycle succeeded"),
                }
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

/// How long the worker's attempts at a table must all find its steps held
/// before the *skipped* condition is raised.
fn skipped_cycles_threshold() -> Duration {
    3 * gucs::naptime()
}

/// The worker has found `parent`'s steps held by another session at every
/// attempt for `skipped_for` (a migration step or an ingest that does not
/// end, `run_cycle()` in a transaction left open): if no cycle has
/// completed meanwhile either, its forecasts and shadows are going stale,
/// and the DBA is told, once, until a cycle completes again. Sessions
/// that run cycles in turn (a cron job's `run_cycle()`) hold the steps
/// often, but the table is cycled: no alert.
fn note_skipped(parent: pg_sys::Oid, skipped_for: Duration) -> Result<()> {
    let threshold = skipped_cycles_threshold().as_secs_f64();
    let Some(since_cycle) = managed::seconds_since_last_cycle(parent)? else {
        return Ok(());
    };
    if since_cycle < threshold {
        return Ok(());
    }
    alerts::raise(
        parent,
        Condition::new(AlertKind::Failure, SKIPPED_CYCLES),
        Severity::Warning,
        &format!(
            "no cycle of this table for {}: another session holds its steps (a migration step, an ingest, or run_cycle() in a transaction still open), at every attempt of the worker for {}",
            runway::human(since_cycle),
            runway::human(skipped_for.as_secs_f64())
        ),
        json!({"seconds_since_last_cycle": since_cycle,
               "seconds_skipped_by_the_worker": skipped_for.as_secs_f64(),
               "threshold_seconds": threshold}),
    )
}

fn clock() -> Result<String> {
    Ok(Spi::get_one::<String>("SELECT pg_catalog.clock_timestamp()::text")?.unwrap_or_default())
}

fn record(
    parent: pg_sys::Oid,
    started_at: &str,
    error: Option<&str>,
    costs: &[StepCost],
) -> Result<()> {
    managed::record_cycle(parent, started_at, error)?;
    alerts::resolve(
        parent,
        Condition::new(AlertKind::Failure, SKIPPED_CYCLES),
        "a cycle of the table ran again",
    )?;
    if costs.is_empty() {
        return Ok(());
    }
    managed::record_step_costs(
        parent,
        StepCosts {
            steps: costs.iter().map(|c| c.step).collect(),
            duration_ms: costs.iter().map(|c| c.duration_ms).collect(),
            rows_read: costs.iter().map(|c| c.rows_read).collect(),
            buffers_hit: costs.iter().map(|c| c.buffers_hit).collect(),
            buffers_read: costs.iter().map(|c| c.buffers_read).collect(),
        },
    )
}

/// Rows a cycle found in DEFAULT are moved in transactions of their own,
/// which a function called in the caller's transaction cannot run: the
/// database's worker is asked to move them as soon as this commits.
pub fn default_rows_next(outcome: &Outcome) -> Result<Option<String>> {
    if outcome.error.is_some() || outcome.skipped {
        return Ok(None);
    }
    if outcome.collected.rows_in_default == 0 {
        return Ok(Some("none".into()));
    }
    // Outlier keys stay where they are (act::quarantine).
    let held_back = alerts::rows_held_back(outcome.parent)?;
    if held_back >= outcome.collected.rows_in_default {
        return Ok(Some(
            "held back: outlier keys (alert outlier_keys; release_outliers() moves them)".into(),
        ));
    }
    let worker = backend::library_preloaded() && gucs::enabled() && workers::running_here()?;
    Ok(Some(if worker {
        requests::cycle_after_commit(outcome.parent);
        "moved out by the worker when this transaction commits".into()
    } else {
        "left in DEFAULT: no worker serves this database; CALL partition_predict.migrate_default()"
            .into()
    }))
}

/// Milliseconds, to the microsecond.
fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

//! Background workers: a launcher (registered when the library is
//! preloaded) that keeps one worker per database listed in
//! `pg_partition_predict.database` running, and the workers, which run one
//! cycle per managed table every `naptime`.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use partition_core::databases::parse_database_list;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

use crate::cycle::{self, Steps};
use crate::gucs;
use crate::migration;
use crate::session::with_pinned_settings;
use crate::wakeup;

const LIBRARY: &str = "pg_partition_predict";
/// How often the launcher checks on its workers.
const LAUNCHER_POLL: Duration = Duration::from_secs(1);
/// A worker that dies sooner than this after starting counts as failing,
/// and is restarted with growing delays (1 s, 2 s, 4 s … up to a minute):
/// a database that does not exist must not make it spin.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_partition_predict launcher")
        .set_type("pg_partition_predict launcher")
        .set_library(LIBRARY)
        .set_function("pg_partition_predict_launcher_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// One database's worker as the launcher sees it.
#[derive(Default)]
struct Supervised {
    handle: Option<DynamicBackgroundWorker>,
    started: Option<Instant>,
    quick_deaths: u32,
    not_before: Option<Instant>,
}

impl Supervised {
    fn keep_running(&mut self, database: &str) {
        if let Some(handle) = &self.handle {
            match handle.pid() {
                Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => return,
                Err(_) => {
                    let uptime = self.started.map(|s| s.elapsed()).unwrap_or_default();
                    self.quick_deaths = if uptime < HEALTHY_UPTIME {
                        self.quick_deaths + 1
                    } else {
                        0
                    };
                    let delay = Duration::from_secs(1u64 << self.quick_deaths.min(6))
                        .min(MAX_RESTART_DELAY);
                    self.not_before = Some(Instant::now() + delay);
                    self.handle = None;
                    pgrx::log!("pg_partition_predict: worker for database \"{database}\" stopped; restarting in {delay:?}");
                }
            }
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let started =
            BackgroundWorkerBuilder::new(&format!("pg_partition_predict worker {database}"))
                .set_type("pg_partition_predict worker")
                .set_library(LIBRARY)
                .set_function("pg_partition_predict_worker_main")
                .enable_spi_access()
                .set_extra(database)
                .set_restart_time(None)
                .set_notify_pid(unsafe { pg_sys::MyProcPid })
                .load_dynamic();
        match started {
            Ok(handle) => {
                self.handle = Some(handle);
                self.started = Some(Instant::now());
            }
            Err(_) => {
                pgrx::log!("pg_partition_predict: no free background worker slot for database \"{database}\" (raise max_worker_processes)");
                self.not_before = Some(Instant::now() + MAX_RESTART_DELAY);
            }
        }
    }

    fn stop(self) {
        if let Some(handle) = self.handle {
            handle.terminate();
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_partition_predict_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let mut workers: HashMap<String, Supervised> = HashMap::new();
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let wanted = parse_database_list(&gucs::databases());
        let unwanted: Vec<String> = workers
            .keys()
            .filter(|db| !wanted.contains(db))
            .cloned()
            .collect();
        for database in unwanted {
            if let Some(worker) = workers.remove(&database) {
                worker.stop();
            }
        }
        for database in wanted {
            workers
                .entry(database.clone())
                .or_default()
                .keep_running(&database);
        }
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_POLL)) {
            break;
        }
    }
}

/// What this worker process has done, as `worker_status` shows it.
struct WorkerState {
    started_at: Option<String>,
    cycles: i64,
    errors: i64,
    last_error: Option<String>,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_partition_predict_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    wakeup::register_worker();
    let mut state = WorkerState {
        started_at: None,
        cycles: 0,
        errors: 0,
        last_error: None,
    };
    let mut next_cycle = Instant::now();
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            // A reload is acted on at once: a new naptime, a paused worker
            // resumed, an extension created since the last cycle.
            next_cycle = Instant::now();
        }
        serve_requests(&mut state);
        if Instant::now() >= next_cycle {
            if gucs::ENABLED.get() {
                run_cycles(&mut state);
            } else {
                in_transaction("recording the paused state", || {
                    report(&mut state, "paused", None)
                });
            }
            let naptime = Duration::from_secs(gucs::NAPTIME_SECONDS.get().max(1) as u64);
            next_cycle = Instant::now() + naptime;
        }
        set_activity("waiting for the next cycle");
        let until_cycle = next_cycle.saturating_duration_since(Instant::now());
        if !BackgroundWorker::wait_latch(Some(until_cycle.max(Duration::from_millis(1)))) {
            break;
        }
    }
}

/// Requests posted by bulk loads (see `bulk`): attach a table's shadows
/// before a load, run its cycle right after one. The load waiting for the
/// shadows is released as soon as they are attached.
fn serve_requests(state: &mut WorkerState) {
    for request in wakeup::take_mine() {
        if !gucs::ENABLED.get() {
            wakeup::mark_served(request.parent, request.ticket);
            continue;
        }
        if request.attach {
            set_activity("attaching shadows before a bulk load");
            in_transaction("attaching shadows before a bulk load", || {
                or_log(cycle::activate_for_bulk_load(request.parent))
            });
        }
        wakeup::mark_served(request.parent, request.ticket);
        if request.cycle {
            set_activity("cycle after a bulk load");
            let outcome = in_transaction("a table's cycle after a bulk load", || {
                cycle::run_isolated(request.parent, Steps::Cycle)
            });
            move_rows_out_of_default(request.parent, migration::Caller::WorkerAfterLoad);
            record_outcome(state, outcome);
        }
    }
}

fn record_outcome(state: &mut WorkerState, outcome: Option<cycle::Outcome>) {
    if let Some(cycle::Outcome {
        error: Some(error),
        skipped: false,
        ..
    }) = outcome
    {
        state.errors += 1;
        state.last_error = Some(error);
    }
}

fn run_cycles(state: &mut WorkerState) {
    set_activity("cycle");
    let tables = in_transaction("listing managed tables", || {
        if !extension_installed() {
            return None;
        }
        report(state, "cycling", Some("start"));
        migration::withdraw_orphaned_overrides();
        Some(or_log(cycle::managed_tables(None)).unwrap_or_default())
    });
    let Some(Some(tables)) = tables else { return };
    for parent in tables {
        if shutdown_requested() {
            return;
        }
        let outcome = in_transaction("a table's cycle", || {
            cycle::run_isolated(parent, Steps::Cycle)
        });
        move_rows_out_of_default(parent, migration::Caller::Worker);
        record_outcome(state, outcome);
        // A bulk load waiting for shadows should not wait for every table.
        serve_requests(state);
    }
    state.cycles += 1;
    in_transaction("recording the cycle", || {
        report(state, "sleeping", Some("end"))
    });
}

/// Rows found in DEFAULT are moved where they belong at once (SPEC §5),
/// each step of the migration in a transaction of its own.
fn move_rows_out_of_default(parent: pg_sys::Oid, caller: migration::Caller) {
    set_activity("moving rows out of DEFAULT");
    loop {
        if shutdown_requested() {
            return;
        }
        let next = in_transaction("moving rows out of DEFAULT", || {
            migration::step_isolated(parent, caller)
        });
        if next != Some(migration::Next::Again) {
            return;
        }
    }
}

fn extension_installed() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_partition_predict')")
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Writes this worker's row of `worker_status` (only where the extension is installed).
fn report(state: &mut WorkerState, activity: &str, cycle_mark: Option<&str>) {
    if !extension_installed() {
        return;
    }
    let result = with_pinned_settings(|| {
        if state.started_at.is_none() {
            state.started_at = Spi::get_one::<String>(
                "SELECT a.backend_start::text FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid()",
            )?;
        }
        Spi::run_with_args(
            "INSERT INTO partition_predict.worker_state AS w
                    (database, pid, state, started_at, last_cycle_start, last_cycle_end, cycles, errors, last_error)
             VALUES (pg_catalog.current_database(), pg_catalog.pg_backend_pid(), $1, $2::timestamptz,
                     CASE WHEN $3 = 'start' THEN pg_catalog.now() END, NULL, $4, $5, $6)
             ON CONFLICT (database) DO UPDATE
                SET pid = EXCLUDED.pid, state = EXCLUDED.state, started_at = EXCLUDED.started_at,
                    last_cycle_start = CASE WHEN $3 = 'start' THEN pg_catalog.now()
                                            WHEN w.pid = EXCLUDED.pid THEN w.last_cycle_start END,
                    last_cycle_end = CASE WHEN $3 = 'end' THEN pg_catalog.now()
                                          WHEN w.pid = EXCLUDED.pid THEN w.last_cycle_end END,
                    cycles = EXCLUDED.cycles, errors = EXCLUDED.errors, last_error = EXCLUDED.last_error",
            &[
                activity.into(),
                state.started_at.clone().into(),
                cycle_mark.into(),
                state.cycles.into(),
                state.errors.into(),
                state.last_error.clone().into(),
            ],
        )
    });
    if let Err(e) = result {
        pgrx::log!("pg_partition_predict: could not update worker_status: {e}");
    }
}

/// Runs `f` in its own transaction. An error aborts that transaction, is
/// logged, and the worker carries on (`f` only touches the worker's own
/// bookkeeping, which stays usable after an interrupted update).
fn in_transaction<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    let f = std::panic::AssertUnwindSafe(f);
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(|| Ok(f())).catch_others(Err).execute();
    match outcome {
        Ok(value) => {
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
                // Background workers flush their statistics themselves.
                pg_sys::pgstat_report_stat(true);
            }
            Some(value)
        }
        Err(error) => {
            let message = match &error {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            };
            unsafe { pg_sys::AbortCurrentTransaction() };
            pgrx::log!("pg_partition_predict: {what} failed: {message}");
            None
        }
    }
}

fn or_log<T>(result: crate::error::Result<T>) -> Option<T> {
    result
        .map_err(|e| pgrx::log!("pg_partition_predict: {e}"))
        .ok()
}

/// SIGTERM was received (pg_ctl stop, pg_terminate_backend): stop between tables.
fn shutdown_requested() -> bool {
    unsafe { (&raw const pg_sys::ShutdownRequestPending).read_volatile() != 0 }
}

fn set_activity(activity: &str) {
    if let Ok(text) = CString::new(activity) {
        unsafe {
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr())
        };
    }
}

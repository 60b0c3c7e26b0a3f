//! `worker_state`: one row per database whose worker runs (the
//! `worker_status` view).

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::write;
use crate::error::Result;

/// What a database's worker reports of itself.
pub struct WorkerReport<'a> {
    /// `starting`, `idle`, `cycling`, …
    pub activity: &'a str,
    /// When the worker's backend started, `timestamptz` text.
    pub started_at: Option<String>,
    /// `start` or `end` of a cycle, or `None` between cycles.
    pub cycle_mark: Option<&'a str>,
    pub cycles: i64,
    pub errors: i64,
    /// The last error, and the table it concerns.
    pub last_error: Option<(pg_sys::Oid, String)>,
}

/// Writes this backend's row of `worker_status`, for the current database.
pub fn report(report: WorkerReport) -> Result<()> {
    write(
        "INSERT INTO partition_predict.worker_state AS w
                (database, pid, state, started_at, last_cycle_start, last_cycle_end, cycles, errors, last_error,
                 last_error_table)
         VALUES (pg_catalog.current_database(), pg_catalog.pg_backend_pid(), $1, $2::timestamptz,
                 CASE WHEN $3 = 'start' THEN pg_catalog.now() END, NULL, $4, $5, $6, $7)
         ON CONFLICT (database) DO UPDATE
            SET pid = EXCLUDED.pid, state = EXCLUDED.state, started_at = EXCLUDED.started_at,
                last_cycle_start = CASE WHEN $3 = 'start' THEN pg_catalog.now()
                                        WHEN w.pid = EXCLUDED.pid THEN w.last_cycle_start END,
                last_cycle_end = CASE WHEN $3 = 'end' THEN pg_catalog.now()
                                      WHEN w.pid = EXCLUDED.pid THEN w.last_cycle_end END,
                cycles = EXCLUDED.cycles, errors = EXCLUDED.errors, last_error = EXCLUDED.last_error,
                last_error_table = EXCLUDED.last_error_table",
        &[
            report.activity.into(),
            report.started_at.into(),
            report.cycle_mark.into(),
            report.cycles.into(),
            report.errors.into(),
            report.last_error.as_ref().map(|(_, error)| error.clone()).into(),
            report.last_error.map(|(table, _)| table).into(),
        ],
    )
}

/// Whether this database's worker reports that it runs (its row of
/// `worker_status` is not `stopped`).
pub fn running_here() -> Result<bool> {
    Ok(Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.worker_status
                         WHERE database = pg_catalog.current_database() AND state <> 'stopped')",
    )?
    .unwrap_or(false))
}

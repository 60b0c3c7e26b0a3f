//! Which tables are managed (`config`'s rows, as the caller may see them),
//! and the per-table record of cycles in `table_state`.

use pgrx::prelude::*;

use super::{write, write_returning, StateRow};
use crate::catalog::{load_partitioned_table, PartitionedTable};
use crate::error::{PredictError, Result};

/// Whether `partition_predict.manage()` registered the table (and the
/// caller may see that: the configuration shows owners their own tables).
pub fn is_managed(parent: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.config
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass)",
        &[parent.into()],
    )?
    .unwrap_or(false))
}

/// A managed table the caller owns: ownership is checked first, as
/// `manage()` checks it (a non-owner could only learn "not managed").
pub fn load_managed_table(parent: pg_sys::Oid) -> Result<PartitionedTable> {
    let table = load_partitioned_table(parent, true)?;
    if !is_managed(parent)? {
        return Err(PredictError::NotManaged(table.name.to_string()));
    }
    Ok(table)
}

/// The managed tables the current role may act on (row-level security on
/// the configuration hides the others), or just `only`.
pub fn managed_tables(only: Option<pg_sys::Oid>) -> Result<Vec<pg_sys::Oid>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT parent::pg_catalog.oid FROM partition_predict.config
              WHERE $1::pg_catalog.oid IS NULL OR parent = $1::pg_catalog.oid::pg_catalog.regclass
              ORDER BY parent::pg_catalog.oid",
            None,
            &[only.into()],
        )?;
        rows.map(|row| StateRow::of("config", &row).required::<pg_sys::Oid>(1, "parent"))
            .collect()
    })
}

/// Stops managing a table: its configuration row (and, by cascade, its history).
pub fn forget(parent: pg_sys::Oid) -> Result<()> {
    write(
        "DELETE FROM partition_predict.config WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[parent.into()],
    )?;
    Ok(())
}

/// Records one cycle of `parent` (started at `started_at`, a `timestamptz`
/// as text, ending now), and its error if it failed.
pub fn record_cycle(parent: pg_sys::Oid, started_at: &str, error: Option<&str>) -> Result<()> {
    write(
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
    )
}

/// What each step of one cycle cost, one entry per step.
pub struct StepCosts {
    pub steps: Vec<&'static str>,
    pub duration_ms: Vec<f64>,
    /// Rows of the managed table read.
    pub rows_read: Vec<i64>,
    pub buffers_hit: Vec<i64>,
    pub buffers_read: Vec<i64>,
}

/// Records the cost of each step of a cycle (the newest, the count, the
/// total and the slowest per step: `cycle_costs`).
pub fn record_step_costs(parent: pg_sys::Oid, costs: StepCosts) -> Result<()> {
    write(
        "INSERT INTO partition_predict.step_costs AS c
                (parent, step, measured_at, duration_ms, rows_read, buffers_hit, buffers_read,
                 cycles, total_ms, max_ms)
         SELECT $1::pg_catalog.oid::pg_catalog.regclass, u.step, pg_catalog.now(), u.ms, u.rows, u.hit, u.read,
                1, u.ms, u.ms
           FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::float8[]),
                           pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::bigint[]),
                           pg_catalog.unnest($6::bigint[])) AS u(step, ms, rows, hit, read)
         ON CONFLICT (parent, step) DO UPDATE
            SET measured_at = EXCLUDED.measured_at, duration_ms = EXCLUDED.duration_ms,
                rows_read = EXCLUDED.rows_read, buffers_hit = EXCLUDED.buffers_hit,
                buffers_read = EXCLUDED.buffers_read, cycles = c.cycles + 1,
                total_ms = c.total_ms + EXCLUDED.duration_ms,
                max_ms = GREATEST(c.max_ms, EXCLUDED.duration_ms)",
        &[
            parent.into(),
            costs.steps.into(),
            costs.duration_ms.into(),
            costs.rows_read.into(),
            costs.buffers_hit.into(),
            costs.buffers_read.into(),
        ],
    )
}

/// Records how long the attached partitions last at the forecast rate
/// (`None`: unknown); returns how many cycles of the table completed
/// before this one.
pub fn record_runway(parent: pg_sys::Oid, seconds: Option<f64>) -> Result<i64> {
    write_returning(
        "INSERT INTO partition_predict.table_state AS s (parent, runway, runway_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass,
                 pg_catalog.make_interval(secs => pg_catalog.round($2::float8)), pg_catalog.now())
         ON CONFLICT (parent) DO UPDATE SET runway = EXCLUDED.runway, runway_at = EXCLUDED.runway_at
         RETURNING s.cycles",
        &[parent.into(), seconds.into()],
    )
}

/// Seconds since `parent`'s last cycle ended (since it was managed, if no
/// cycle has); `None` when it is not managed.
pub fn seconds_since_last_cycle(parent: pg_sys::Oid) -> Result<Option<f64>> {
    Ok(crate::pg::spi::select_one::<f64>(
        "SELECT (SELECT pg_catalog.date_part('epoch',
                          pg_catalog.clock_timestamp() - COALESCE(s.last_cycle_end, c.managed_since))
                   FROM partition_predict.config c
                   LEFT JOIN partition_predict.table_state s ON s.parent = c.parent
                  WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass)",
        &[parent.into()],
    )?)
}

//! The extension's own state: every statement on the tables of schema
//! `partition_predict` lives under this folder, one file per family of
//! tables, and no other statement does; nothing outside names those
//! tables (`tests/layout.rs`).
//! PostgreSQL's own catalog is `catalog/`'s; the tables the extension
//! creates for users are `act/`'s.
//!
//! Writes: no role is granted INSERT, UPDATE or DELETE on the state tables
//! (`sql/schema.sql`): every write is one of the statements here, run by
//! [`write`] as the extension's owner, whoever called and whatever role the
//! cycle acts as. Reads stay with the caller, under the tables' row-level
//! security, unless a caller whose right to the rows was checked first
//! asks for [`read_checked`].
//!
//! Reads: a NOT NULL column is read with [`StateRow::required`], so a NULL
//! where none can be is an error (`PredictError::CorruptState`), never a
//! silent default; [`reads`] counts the reads of each family, so tests can
//! hold the cycle to reading a table's history once.

pub mod alerts;
pub mod archive;
pub mod counters;
pub mod forecasts;
pub mod history;
pub mod ingests;
pub mod managed;
pub mod migrations;
pub mod report;
pub mod settings;
pub mod shadows;
pub mod workers;

use std::cell::Cell;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::error::{PredictError, Result};
use crate::pg::session::as_extension_owner;

/// Runs one of the extension's own writes to its state. The settings are
/// pinned again for it: the statement runs with the extension owner's
/// rights, and code of a table's owner that ran before it in this call
/// must not have chosen how its names and operators resolve.
pub fn write(sql: &str, args: &[DatumWithOid]) -> Result<()> {
    as_extension_owner(|| Ok(Spi::run_with_args(sql, args)?))
}

/// As `write`, for an `INSERT … RETURNING` of one value.
pub fn write_returning<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Result<T> {
    as_extension_owner(|| {
        Spi::get_one_with_args::<T>(sql, args)?
            .ok_or_else(|| PredictError::Internal("INSERT … RETURNING gave no row".into()))
    })
}

/// As `write`, for a statement that returns at most one row of two values.
pub fn write_returning_optional_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> Result<Option<(A, B)>> {
    as_extension_owner(|| {
        Spi::connect_mut(|client| {
            let rows = client.update(sql, None, args)?;
            let mut found = None;
            for row in rows {
                if let (Some(a), Some(b)) = (row.get::<A>(1)?, row.get::<B>(2)?) {
                    found = Some((a, b));
                }
            }
            Ok(found)
        })
    })
}

/// As `write`, for a statement that returns exactly one row of two values.
pub fn write_returning_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> Result<(A, B)> {
    write_returning_optional_two(sql, args)?
        .ok_or_else(|| PredictError::Internal("INSERT … RETURNING gave no row".into()))
}

/// Reads the extension's state as its owner, past the owner-only row
/// policies, for a caller whose right to what the rows describe was checked
/// first (as the views check it in their WHERE clauses).
pub fn read_checked<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    as_extension_owner(f)
}

/// What SPI hands back as a row: one of an iteration, or the row a
/// `SpiTupleTable` stands on after `first()`.
pub trait SpiRow {
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> pgrx::spi::Result<Option<T>>;
}

impl SpiRow for pgrx::spi::SpiHeapTupleData<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> pgrx::spi::Result<Option<T>> {
        self.get::<T>(ordinal)
    }
}

impl SpiRow for pgrx::spi::SpiTupleTable<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> pgrx::spi::Result<Option<T>> {
        self.get::<T>(ordinal)
    }
}

/// A row of a state table as SPI returns it: NOT NULL columns are read as
/// values, and a NULL there is `PredictError::CorruptState` naming the
/// column, not a default that would plan with a guess.
pub struct StateRow<'row, R: SpiRow> {
    row: &'row R,
    table: &'static str,
}

impl<'row, R: SpiRow> StateRow<'row, R> {
    pub fn of(table: &'static str, row: &'row R) -> Self {
        StateRow { row, table }
    }

    /// Column `ordinal` (from 1), declared NOT NULL as `column`.
    pub fn required<T: FromDatum + IntoDatum>(
        &self,
        ordinal: usize,
        column: &'static str,
    ) -> Result<T> {
        self.row
            .value::<T>(ordinal)?
            .ok_or(PredictError::CorruptState {
                table: self.table,
                column,
            })
    }

    /// A nullable column, or an aggregate that is NULL over no rows.
    pub fn optional<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Result<Option<T>> {
        Ok(self.row.value::<T>(ordinal)?)
    }
}

/// The families of state tables whose reads are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `config`.
    Settings,
    /// `samples`, `partition_counters`, `key_time_counts`, `frontier_hours`
    /// and the learned arrivals in `table_state`.
    History,
    /// `forecast_log`, `series_state`.
    Forecasts,
    /// `shadows`.
    Shadows,
    /// `migrations`.
    Migrations,
    /// `alert_log`.
    Alerts,
}

const FAMILIES: usize = 6;

thread_local! {
    static READS: [Cell<u64>; FAMILIES] = const { [const { Cell::new(0) }; FAMILIES] };
}

/// Counts one statement reading `family`, issued by this backend. Every
/// read of the families above calls it: what the tests count is what the
/// cycle issues.
fn count_read(family: Family) {
    READS.with(|reads| {
        let cell = &reads[family as usize];
        cell.set(cell.get() + 1);
    });
}

/// Statements that read `family` in this backend since it started (tests
/// take the difference around what they measure).
#[cfg(any(test, feature = "pg_test"))]
pub fn reads(family: Family) -> u64 {
    READS.with(|reads| reads[family as usize].get())
}

//! Writes to the extension's state tables. No role is granted INSERT,
//! UPDATE or DELETE on them (`sql/schema.sql`): every write is one of the
//! extension's own statements, run here as the extension's owner, whoever
//! called and whatever role the cycle acts as. Reads stay with the caller,
//! under the tables' row-level security.

use std::cell::Cell;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::pg::session::{as_role, with_pinned_settings};

thread_local! {
    /// `(extension OID, its owner)`: the owner of the extension as it is now.
    static OWNER: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

fn extension_owner() -> Result<pg_sys::Oid> {
    let extension = backend::extension_oid().ok_or_else(|| {
        PredictError::Internal("extension pg_partition_predict is not installed".into())
    })?;
    if let Some((cached, owner)) = OWNER.get() {
        if cached == extension {
            return Ok(owner);
        }
    }
    let owner = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT extowner FROM pg_catalog.pg_extension WHERE oid = $1)",
        &[extension.into()],
    )?
    .ok_or_else(|| PredictError::Internal("extension pg_partition_predict has no owner".into()))?;
    OWNER.set(Some((extension, owner)));
    Ok(owner)
}

/// Runs one of the extension's own writes to its state. The settings are
/// pinned again for it: the statement runs with the extension owner's
/// rights, and code of a table's owner that ran before it in this call
/// must not have chosen how its names and operators resolve.
pub fn write(sql: &str, args: &[DatumWithOid]) -> Result<()> {
    with_pinned_settings(|| {
        let owner = extension_owner()?;
        Ok(as_role(owner, || Spi::run_with_args(sql, args))?)
    })
}

/// As `write`, for an `INSERT … RETURNING` of one value.
pub fn write_returning<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Result<T> {
    with_pinned_settings(|| {
        let owner = extension_owner()?;
        as_role(owner, || Spi::get_one_with_args::<T>(sql, args))?
            .ok_or_else(|| PredictError::Internal("INSERT … RETURNING gave no row".into()))
    })
}

/// As `write`, for a statement that returns at most one row of two values.
pub fn write_returning_optional_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> Result<Option<(A, B)>> {
    with_pinned_settings(|| {
        let owner = extension_owner()?;
        as_role(owner, || {
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
    with_pinned_settings(|| {
        let owner = extension_owner()?;
        as_role(owner, f)
    })
}

//! `manage()` and `unmanage()`.

use pgrx::prelude::*;

use crate::act::retention;
use crate::catalog::{self, create, migrations, settings, shadows, table};
use crate::cycle::collect;
use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::pg::locks::lock_table_steps;
use crate::pg::session::as_role;
use crate::shmem::{requests, routing};

pub fn manage(
    parent: pg_sys::Oid,
    arguments: settings::Arguments,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let table = catalog::load_partitioned_table(parent, true)?;
    if table::is_managed(parent)? {
        return Err(PredictError::AlreadyManaged(table.name.to_string()));
    }
    let validated = settings::validate(table.key_type, table.owner_oid, &arguments)?;
    if table.default_partition.is_none() {
        create::add_default_partition(&table)?;
    }
    let row = settings::store(parent, &validated)?;
    // The baseline of the statistics: every row that arrives from now on counts.
    let table = catalog::load_partitioned_table(parent, true)?;
    as_role(table.owner_oid, || collect::collect(&table))?;
    Ok(row)
}

/// The name of a managed table the caller owns (or may act for), or the
/// error that says which of these it is not.
fn owned_managed_table(parent: pg_sys::Oid) -> Result<String> {
    let (name, owner_rights) = table::name_and_owner_rights(parent)?
        .ok_or(PredictError::UndefinedTable(parent.to_u32()))?;
    let name = name.to_string();
    if !owner_rights {
        return Err(PredictError::NotOwner(name));
    }
    if !table::is_managed(parent)? {
        return Err(PredictError::NotManaged(name));
    }
    Ok(name)
}

pub fn unmanage(parent: pg_sys::Oid) -> Result<()> {
    let name = owned_managed_table(parent)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(name));
    }
    create::drop_unused(parent)?;
    // An override a rolled-back step left behind (no migration is active).
    if backend::library_preloaded() {
        routing::withdraw(parent)?;
    }
    table::forget(parent)
}

pub fn set_time_zone(parent: pg_sys::Oid, time_zone: &str) -> Result<()> {
    let name = owned_managed_table(parent)?;
    let table = catalog::load_managed_table(parent)?;
    let time_zone = settings::validate_time_zone(table.key_type, time_zone)?;
    // Whether a shadow holds rows must be read as of now, not as of a
    // snapshot older than a migration step another session committed.
    if backend::transaction_uses_one_snapshot() {
        return Err(PredictError::SnapshotIsolation("set_time_zone()"));
    }
    // After any cycle or migration step under way on the table.
    lock_table_steps(parent, true)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(name));
    }
    if settings::load(&table)?.zone.name() == time_zone {
        return Ok(());
    }
    settings::store_time_zone(parent, &time_zone)?;
    // Shadows laid out on the old zone's clock are dropped while empty; the
    // cycle asked for here plans them again on the new one.
    for shadow in shadows::waiting(parent)? {
        if !shadow.migrating && create::is_empty(&table, &shadow)? {
            create::drop_shadow(&table, &shadow)?;
        }
    }
    if backend::library_preloaded() {
        requests::cycle_after_commit(parent);
    }
    Ok(())
}

pub fn set_retention(parent: pg_sys::Oid, arguments: settings::RetentionArguments) -> Result<()> {
    owned_managed_table(parent)?;
    let table = catalog::load_managed_table(parent)?;
    let retention = settings::validate_retention(table.key_type, table.owner_oid, &arguments)?;
    settings::store_retention(parent, retention.as_ref())
}

/// The owner's: the boundary it shows comes from the newest row.
pub fn retention_preview(parent: pg_sys::Oid) -> Result<Vec<retention::Verdict>> {
    owned_managed_table(parent)?;
    let table = catalog::load_managed_table(parent)?;
    retention::preview(&table)
}

pub fn apply_retention(parent: pg_sys::Oid) -> Result<Vec<retention::Verdict>> {
    owned_managed_table(parent)?;
    let table = catalog::load_managed_table(parent)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(table.name.to_string()));
    }
    retention::apply(&table)
}

//! `manage()` and `unmanage()`.

use pgrx::prelude::*;

use crate::catalog::{self, create, migrations, settings, table};
use crate::cycle::collect;
use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::pg::session::as_role;
use crate::shmem::routing;

pub fn manage(
    parent: pg_sys::Oid,
    arguments: settings::Arguments,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let table = catalog::load_partitioned_table(parent, true)?;
    if table::is_managed(parent)? {
        return Err(PredictError::AlreadyManaged(table.name.to_string()));
    }
    let validated = settings::validate(table.key_type, &arguments)?;
    if table.default_partition.is_none() {
        create::add_default_partition(&table)?;
    }
    let row = settings::store(parent, &validated)?;
    // The baseline of the statistics: every row that arrives from now on counts.
    let table = catalog::load_partitioned_table(parent, true)?;
    as_role(table.owner_oid, || collect::collect(&table))?;
    Ok(row)
}

pub fn unmanage(parent: pg_sys::Oid) -> Result<()> {
    let (name, owner_rights) = table::name_and_owner_rights(parent)?
        .ok_or(PredictError::UndefinedTable(parent.to_u32()))?;
    let name = name.to_string();
    if !owner_rights {
        return Err(PredictError::NotOwner(name));
    }
    if !table::is_managed(parent)? {
        return Err(PredictError::NotManaged(name));
    }
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

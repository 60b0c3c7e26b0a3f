//! `manage()` and `unmanage()`.

use pgrx::prelude::*;

use crate::act::{create, retention};
use crate::catalog::{self, partman, table, PartitionedTable};
use crate::cycle::collect;
use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::pg::locks::lock_table_steps;
use crate::pg::relation;
use crate::pg::session::as_role;
use crate::shmem::{requests, routing};
use crate::state::managed::{self, is_managed, load_managed_table};
use crate::state::{migrations, settings, shadows};

pub fn manage(
    parent: pg_sys::Oid,
    arguments: settings::Arguments,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let table = catalog::load_partitioned_table(parent, true)?;
    if is_managed(parent)? {
        return Err(PredictError::AlreadyManaged(table.name.to_string()));
    }
    refuse_partition(&table)?;
    // Two managers of one table would race to create the same ranges. A
    // pg_partman whose configuration cannot be read does not stop manage().
    match partman::config_of(&table) {
        Ok(Some(config)) if config.maintained => {
            return Err(PredictError::MaintainedByPartman(table.name.to_string()))
        }
        Ok(_) => {}
        Err(e) => pgrx::warning!(
            "{e}: not checked whether pg_partman maintains {}",
            table.name
        ),
    }
    register(table, arguments)
}

fn register(
    table: PartitionedTable,
    arguments: settings::Arguments,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let parent = table.oid;
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
    if !is_managed(parent)? {
        return Err(PredictError::NotManaged(name));
    }
    Ok(name)
}

pub fn unmanage(parent: pg_sys::Oid) -> Result<()> {
    let name = owned_managed_table(parent)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(name));
    }
    create::drop_unused(&catalog::load_partitioned_table(parent, false)?)?;
    // An override a rolled-back step left behind (no migration is active).
    if backend::library_preloaded() {
        routing::withdraw(parent)?;
        routing::forget_on_standbys(parent);
    }
    managed::forget(parent)
}

pub fn set_time_zone(parent: pg_sys::Oid, time_zone: &str) -> Result<()> {
    let name = owned_managed_table(parent)?;
    let table = load_managed_table(parent)?;
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
    let table = load_managed_table(parent)?;
    let retention = settings::validate_retention(table.key_type, table.owner_oid, &arguments)?;
    settings::store_retention(parent, retention.as_ref())
}

/// The owner's: the boundary it shows comes from the newest row. The data
/// checks run with the owner's rights, never the caller's: they may run
/// the owner's code (an index predicate), as the worker's would.
pub fn retention_preview(parent: pg_sys::Oid) -> Result<Vec<retention::Verdict>> {
    owned_managed_table(parent)?;
    let table = load_managed_table(parent)?;
    as_role(table.owner_oid, || retention::preview(&table))
}

pub fn apply_retention(parent: pg_sys::Oid) -> Result<Vec<retention::Verdict>> {
    owned_managed_table(parent)?;
    let table = load_managed_table(parent)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(table.name.to_string()));
    }
    retention::apply(&table)
}

/// Takes a table over from pg_partman: every partition stays, partman's
/// settings become this table's (its premake as lookahead, its retention as
/// data retention, new partitions about as full as its recent ones), and
/// partman's automatic maintenance of the table is switched off in the same
/// transaction. Arguments given override what is read from partman.
pub fn adopt_partman(
    parent: pg_sys::Oid,
    target_rows: Option<i64>,
    session_time_zone: &str,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let table = catalog::load_partitioned_table(parent, true)?;
    let name = table.name.to_string();
    if is_managed(parent)? {
        return Err(PredictError::AlreadyManaged(name));
    }
    refuse_partition(&table)?;
    let config =
        partman::config_of(&table)?.ok_or(PredictError::NotPartmanManaged(name.clone()))?;
    let unsupported = |reason: String| PredictError::PartmanUnsupported {
        table: name.clone(),
        reason,
    };
    if config.sub_partitioned {
        return Err(unsupported("it is sub-partitioned".into()));
    }
    if config.epoch != "none" {
        return Err(unsupported(format!(
            "its integer column holds epoch {} (pg_partman's epoch option); only plain time or integer keys are managed",
            config.epoch
        )));
    }
    if config.control != table.key_column {
        return Err(unsupported(format!(
            "pg_partman's control column {} is not the partition key {}",
            config.control, table.key_column
        )));
    }
    let lookahead = partman_lookahead(&table, &config)?;
    let target_rows = match target_rows {
        Some(rows) => rows,
        None => typical_partition_rows(&table)?,
    };
    let expired = match (&config.retention_schema, config.retention_keep_table) {
        (Some(_), _) => "archive",
        (None, true) => "detach",
        (None, false) => "drop",
    };
    let arguments = settings::Arguments {
        target_rows,
        lookahead: Some(&lookahead),
        min_span: None,
        max_span: None,
        history_retention: None,
        tablespaces: None,
        time_zone: None,
        session_time_zone,
        retention: settings::RetentionArguments {
            keep: config.retention.as_deref(),
            expired: config.retention.as_ref().map(|_| expired),
            archive_schema: config
                .retention
                .as_ref()
                .and(config.retention_schema.as_deref()),
            archive_tablespace: None,
        },
    };
    // pg_partman makes partitions as the role that runs create_parent() or
    // its maintenance (a superuser, usually); the worker acts as the
    // table's owner, who must own them all. A superuser hands them over
    // (what the DBA would do by hand); anyone else is told to.
    let foreign = table::partitions_of_another_owner(&table)?;
    if !foreign.is_empty() {
        if !backend::is_superuser() {
            return Err(PredictError::PartitionsOfAnotherOwner {
                table: name,
                owner: table.owner.clone(),
                count: foreign.len(),
                example: foreign[0].clone(),
            });
        }
        create::give_partitions_to_owner(&table, &foreign)?;
        pgrx::notice!(
            "{} partition(s) of {name} that pg_partman made as another role now belong to {}, the table's owner",
            foreign.len(),
            table.owner
        );
    }
    partman::stop_maintaining(&table, &config)?;
    let row = register(table, arguments)?;
    pgrx::notice!(
        "took {name} over from pg_partman: lookahead {lookahead} (premake {} × {}), target_rows {target_rows}, retention {}; pg_partman's automatic maintenance of it is off",
        config.premake,
        config.interval,
        config.retention.as_deref().map(|keep| format!("{keep} ({expired})")).unwrap_or_else(|| "none".into())
    );
    Ok(row)
}

/// pg_partman makes `premake` partitions of `interval` ahead: as far ahead
/// is prepared here.
fn partman_lookahead(table: &PartitionedTable, config: &partman::PartmanConfig) -> Result<String> {
    let premake = config.premake.max(1);
    if table.key_type.is_temporal() {
        return partman::interval_times(&config.interval, premake)?.ok_or_else(|| {
            PredictError::PartmanUnsupported {
                table: table.name.to_string(),
                reason: format!("its interval \"{}\" is not an interval", config.interval),
            }
        });
    }
    let keys: i64 =
        config
            .interval
            .trim()
            .parse()
            .map_err(|_| PredictError::PartmanUnsupported {
                table: table.name.to_string(),
                reason: format!(
                    "its interval \"{}\" is not a number of key values",
                    config.interval
                ),
            })?;
    Ok(keys.saturating_mul(premake as i64).to_string())
}

/// Rows of a typical partition pg_partman made (the median of those that
/// hold rows, as the statistics estimate them), so that new partitions
/// come out about as full; the default when none holds rows yet.
fn typical_partition_rows(table: &PartitionedTable) -> Result<i64> {
    Ok(table::median_partition_rows(table)?
        .map(|rows| (rows.round() as i64).max(1_000))
        .unwrap_or(settings::DEFAULT_TARGET_ROWS))
}

/// A partitioned table that is itself a partition belongs to its parent's
/// manager (pg_partman's sub-partitions, a level of a hand-made hierarchy).
fn refuse_partition(table: &PartitionedTable) -> Result<()> {
    if !relation::is_partition(table.oid) {
        return Ok(());
    }
    match table::partition_parent(table.oid)? {
        Some(parent) => Err(PredictError::IsPartition {
            table: table.name.to_string(),
            parent: table::relation_name(parent)?,
        }),
        None => Ok(()),
    }
}

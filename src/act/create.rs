//! Tables the extension creates for a managed table: its DEFAULT partition
//! and its shadows, always as standalone tables that are attached later
//! (`CREATE TABLE … PARTITION OF` would take ACCESS EXCLUSIVE on the parent).

use partition_core::naming;
use partition_core::planner::PlannedRange;
use partition_core::KeyType;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::catalog::table::{relation_exists, PartitionedTable, QualifiedName};
use crate::error::{PredictError, Result};
use crate::pg::lock_retry::run_with_lock_retry;
use crate::pg::session::as_role;
use crate::pg::{backend, relation};
use crate::state::settings::PlanningSettings;
use crate::state::shadows::{self, NewShadow, Origin, Shadow};

/// Name of the CHECK constraint that lets ATTACH skip its scan.
pub const BOUND_CONSTRAINT: &str = "partition_predict_bound";

/// A name `{base}_{suffix}` (or `_{suffix}_2`, …) that no relation in the
/// schema uses yet.
fn free_relation_name(schema: &str, base: &str, suffix: &str) -> Result<String> {
    for n in 1..10 {
        let numbered = if n == 1 {
            suffix.to_string()
        } else {
            format!("{suffix}_{n}")
        };
        let candidate = naming::derived_name(base, &numbered);
        if !relation_exists(schema, &candidate)? {
            return Ok(candidate);
        }
    }
    // Taken nine times over: maybe by a role who may create in the schema
    // and took every name it could predict. A suffix nobody can predict.
    for _ in 0..20 {
        let candidate = naming::derived_name(base, &format!("{suffix}_{:08x}", unpredictable()));
        if !relation_exists(schema, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(PredictError::NoFreeName {
        name: format!("{base}_{suffix}"),
        schema: schema.to_string(),
    })
}

/// 32 bits no other role can guess (the hasher's keys are random per process).
fn unpredictable() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
}

/// Creates an empty table shaped like the parent (columns, defaults, CHECK
/// and NOT NULL constraints, storage, comments, generated columns,
/// statistics) in `tablespace` (default: the parent's), owned by the
/// parent's owner. Indexes are not copied: ATTACH builds the partitioned
/// indexes' counterparts itself, on a table that is still empty.
fn create_table_like_parent(
    table: &PartitionedTable,
    name: &QualifiedName,
    tablespace: Option<&str>,
) -> Result<()> {
    let tablespace = match tablespace {
        Some(chosen) => Some(chosen.to_string()),
        None => Spi::get_one_with_args::<String>(
            "SELECT (SELECT t.spcname::text FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace WHERE c.oid = $1)",
            &[table.oid.into()],
        )?,
    };
    let tablespace_clause = tablespace
        .map(|t| format!(" TABLESPACE {}", quote_identifier(t)))
        .unwrap_or_default();
    Spi::run(&format!(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE \
         INCLUDING COMMENTS INCLUDING COMPRESSION INCLUDING GENERATED INCLUDING STATISTICS){}",
        name.quoted(),
        table.name.quoted(),
        tablespace_clause
    ))?;
    // Replica identity is not inherited: a parent without a primary key
    // that a DBA set to FULL for its publications needs its partitions so.
    if crate::catalog::table::replica_identity_full(table.oid)? {
        Spi::run(&format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL",
            name.quoted()
        ))?;
    }
    let current_user = Spi::get_one::<String>("SELECT current_user::text")?.unwrap_or_default();
    if current_user != table.owner {
        Spi::run(&format!(
            "ALTER TABLE {} OWNER TO {}",
            name.quoted(),
            quote_identifier(&table.owner)
        ))?;
    }
    Ok(())
}

/// Gives `partitions` (qualified, quoted) to the table's owner; the caller
/// is a superuser.
pub fn give_partitions_to_owner(table: &PartitionedTable, partitions: &[String]) -> Result<()> {
    for partition in partitions {
        Spi::run(&format!(
            "ALTER TABLE {partition} OWNER TO {}",
            quote_identifier(&table.owner)
        ))?;
    }
    Ok(())
}

/// Adds a DEFAULT partition the non-blocking way: built standalone, then
/// attached (SHARE UPDATE EXCLUSIVE on the parent, not ACCESS EXCLUSIVE as
/// `CREATE TABLE … PARTITION OF … DEFAULT` would take).
pub fn add_default_partition(table: &PartitionedTable) -> Result<QualifiedName> {
    let name = QualifiedName {
        schema: table.name.schema.clone(),
        name: free_relation_name(&table.name.schema, &table.name.name, "default")?,
    };
    // Made by the caller (the owner may lack CREATE on the schema, as the
    // partitions PostgreSQL makes need none), given to the owner, and
    // attached as the owner: ATTACH runs the table's own code (an IMMUTABLE
    // function in a CHECK is folded to prove the partition constraint),
    // which a superuser's manage() must not run with a superuser's rights.
    create_table_like_parent(table, &name, None)?;
    as_role(table.owner_oid, || {
        run_with_lock_retry(
            &table.name,
            "attaching the DEFAULT partition",
            &format!(
                "ALTER TABLE {} ATTACH PARTITION {} DEFAULT",
                table.name.quoted(),
                name.quoted()
            ),
        )
    })?;
    Ok(name)
}

/// A shadow just made.
pub struct CreatedShadow {
    pub oid: pg_sys::Oid,
    pub name: QualifiedName,
}

/// Creates the shadow of a planned range: an empty table shaped like the
/// parent, owned by its owner, with the access rules of the parent and a
/// validated CHECK equal to the bound, recorded in `shadows`. An orphan of
/// the same name (see `orphan`) is adopted instead of made again.
pub fn shadow(
    table: &PartitionedTable,
    settings: &PlanningSettings,
    range: &PlannedRange,
    origin: Origin,
) -> Result<CreatedShadow> {
    // Named by the local clock of the table's zone, as its bounds were laid out.
    let named_from = if table.key_type == KeyType::TimestampTz {
        settings.zone.local(range.from)
    } else {
        range.from
    };
    let suffix = naming::shadow_suffix(table.key_type, named_from);
    let column = quote_identifier(&table.key_column);
    let (oid, name, placement) = match orphan(table, &suffix)? {
        Some((oid, name)) => {
            Spi::run(&format!(
                "ALTER TABLE {} DROP CONSTRAINT {BOUND_CONSTRAINT}",
                name.quoted()
            ))?;
            (oid, name, None)
        }
        None => {
            let name = QualifiedName {
                schema: table.name.schema.clone(),
                name: free_relation_name(&table.name.schema, &table.name.name, &suffix)?,
            };
            let placement =
                choose_tablespace(table, settings.tablespaces.as_deref(), range.expected_rows)?;
            create_table_like_parent(
                table,
                &name,
                placement.as_ref().map(|p| p.tablespace.as_str()),
            )?;
            copy_access_rules(table, &name)?;
            let oid = Spi::get_one_with_args::<pg_sys::Oid>(
                "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
                &[name.quoted().into()],
            )?
            .ok_or_else(|| PredictError::Internal(format!("created shadow {name} not found")))?;
            (oid, name, placement)
        }
    };
    let from = table.key_type.value(range.from).to_sql_literal();
    let to = table.key_type.value(range.to).to_sql_literal();
    // NOT NULL and a validated CHECK equal to the bound: ATTACH then needs no scan.
    Spi::run(&format!(
        "ALTER TABLE {} ALTER COLUMN {column} SET NOT NULL",
        name.quoted()
    ))?;
    Spi::run(&format!(
        "ALTER TABLE {} ADD CONSTRAINT {BOUND_CONSTRAINT} CHECK ({column} >= {from} AND {column} < {to})",
        name.quoted()
    ))?;
    // Until it is attached, the shadow is the parent's business alone: a
    // plain DROP TABLE of the parent takes it along (its column defaults may
    // use the parent's sequences, which would otherwise block that DROP).
    relation::drop_along_with(oid, table.oid);
    shadows::record(NewShadow {
        parent: table.oid,
        shadow: oid,
        name: &name.quoted(),
        from: range.from,
        to: range.to,
        range_start: table.key_type.value(range.from).to_text(),
        range_end: table.key_type.value(range.to).to_text(),
        predicted_rows: range.expected_rows,
        predicted_bytes: placement.as_ref().map(|p| p.predicted_bytes).unwrap_or(0),
        tablespace: placement.map(|p| p.tablespace),
        origin,
    })?;
    Ok(CreatedShadow { oid, name })
}

/// A shadow this extension made for the table that lost its records: a
/// restore (`pg_dump` carries the table but not the extension's runtime
/// state nor the dependency `drop_along_with` records) or `pg_upgrade`. It
/// has the name `create::shadow` would give this range, the parent's owner
/// and columns (`can_stand_for`), the extension's bound constraint, no
/// rows, and no record in `shadows`.
/// Anything else of that name is left alone (the new shadow gets `_2`).
fn orphan(table: &PartitionedTable, suffix: &str) -> Result<Option<(pg_sys::Oid, QualifiedName)>> {
    let name = QualifiedName {
        schema: table.name.schema.clone(),
        name: naming::derived_name(&table.name.name, suffix),
    };
    let candidate =
        shadows::unrecorded_standin(&name.schema, &name.name, table.oid, BOUND_CONSTRAINT)?;
    let Some(oid) = candidate else {
        return Ok(None);
    };
    let empty = as_role(table.owner_oid, || {
        Spi::get_one::<bool>(&format!(
            "SELECT NOT EXISTS (SELECT 1 FROM ONLY {})",
            name.quoted()
        ))
    })?
    .unwrap_or(false);
    Ok(empty.then_some((oid, name)))
}

struct Placement {
    tablespace: String,
    predicted_bytes: i64,
}

/// With `manage(… tablespaces => …)`: the listed tablespace with the most
/// headroom for this shadow, headroom being the free space of its
/// filesystem less what the shadows already waiting there are expected to
/// take. Without the setting, `None` (the parent's tablespace).
fn choose_tablespace(
    table: &PartitionedTable,
    tablespaces: Option<&[String]>,
    expected_rows: f64,
) -> Result<Option<Placement>> {
    let Some(tablespaces) = tablespaces else {
        return Ok(None);
    };
    let candidates = shadows::tablespaces_with_reserved_bytes(tablespaces)?;
    if candidates.is_empty() {
        return Ok(None);
    }
    let predicted_bytes = (expected_rows * bytes_per_row(table)?) as i64;
    let best = candidates
        .into_iter()
        .map(|(name, location, reserved)| {
            let free = backend::free_bytes(&location).unwrap_or(0);
            (free - reserved - predicted_bytes, name)
        })
        .fold(None::<(i64, String)>, |best, (headroom, name)| match best {
            Some((b, _)) if b >= headroom => best,
            _ => Some((headroom, name)),
        });
    Ok(best.map(|(_, tablespace)| Placement {
        tablespace,
        predicted_bytes,
    }))
}

/// Bytes per row of the table's partitions (indexes included), 100 when unknown.
fn bytes_per_row(table: &PartitionedTable) -> Result<f64> {
    Ok(Spi::get_one_with_args::<f64>(
        "SELECT (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(i.inhrelid))::float8
                        / NULLIF(pg_catalog.sum(GREATEST(c.reltuples, 0)), 0)
                   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1)",
        &[table.oid.into()],
    )?
    .filter(|b| b.is_finite() && *b > 0.0)
    .unwrap_or(100.0))
}

/// The parent's `ENABLE ROW LEVEL SECURITY`, and not its grants: like a
/// partition PostgreSQL makes, a shadow is reached through the parent, whose
/// grants and policies decide; copied grants would outlive a later REVOKE on
/// the parent, and let a role write into a shadow that waits to be attached,
/// past the parent's triggers and keys. `FORCE ROW LEVEL SECURITY` comes
/// with the ATTACH (`activate::force_row_security_like_parent`): forced,
/// with no policy of its own, a shadow would hide its rows from the owner
/// the extension acts as (a move could not fill it, nor a check see that
/// it holds rows).
fn copy_access_rules(table: &PartitionedTable, name: &QualifiedName) -> Result<()> {
    if crate::catalog::table::row_security(table.oid)?.enabled {
        Spi::run(&format!(
            "ALTER TABLE {} ENABLE ROW LEVEL SECURITY",
            name.quoted()
        ))?;
    }
    Ok(())
}

/// Whether a shadow holds no row, read as the table's owner (a shadow gone
/// since holds none).
pub fn is_empty(table: &PartitionedTable, shadow: &Shadow) -> Result<bool> {
    let Some(name) = &shadow.current_name else {
        return Ok(true);
    };
    let has_rows = as_role(table.owner_oid, || {
        Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {name})"))
    })?;
    Ok(!has_rows.unwrap_or(false))
}

/// Drops a shadow that was never attached, and its record.
pub fn drop_shadow(table: &PartitionedTable, shadow: &Shadow) -> Result<()> {
    if let Some(name) = &shadow.current_name {
        drop_waiting(table, shadow, name)?;
    }
    shadows::forget(table.oid, shadow.from)?;
    Ok(())
}

/// Drops the shadows of a table that were never attached (for `unmanage`).
pub fn drop_unused(table: &PartitionedTable) -> Result<i64> {
    let mut dropped = 0;
    for shadow in shadows::waiting(table.oid)? {
        if let Some(name) = &shadow.current_name {
            drop_waiting(table, &shadow, name)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// A waiting shadow is never dropped with rows in it: rows written
/// straight into it (by its owner, or a role the parent's grants let
/// write) are inserted through the parent first, where its triggers, keys
/// and constraints see them as they would have, in the same transaction
/// as the DROP. A row the parent refuses fails the whole step, and the
/// shadow and its rows stay.
fn drop_waiting(table: &PartitionedTable, shadow: &Shadow, name: &str) -> Result<()> {
    if !is_empty(table, shadow)? {
        let columns = crate::catalog::table::copied_columns(table)?;
        let returned = as_role(table.owner_oid, || {
            Spi::get_one::<i64>(&format!(
                "WITH taken AS (DELETE FROM ONLY {name} RETURNING {columns}),
                      placed AS (INSERT INTO {parent} ({columns}) OVERRIDING SYSTEM VALUE
                                 SELECT {columns} FROM taken RETURNING 1)
                 SELECT pg_catalog.count(*) FROM placed",
                parent = table.name.quoted()
            ))
        })?
        .unwrap_or(0);
        pgrx::warning!(
            "{returned} row(s) written straight into {name}, a partition of {} waiting to be attached, were inserted through {} before it was dropped",
            table.name,
            table.name
        );
    }
    Spi::run(&format!("DROP TABLE {name}"))?;
    Ok(())
}

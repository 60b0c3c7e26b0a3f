//! A managed table: what the PostgreSQL catalogs say about it (read in two
//! queries); whether the extension manages it is `state::managed`'s.

use partition_core::{KeyType, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::error::{PredictError, Result};
use crate::pg::relation::qualified_name;
pub use crate::pg::relation::QualifiedName;

/// An attached partition; the planner works from the bounds.
#[derive(Clone, Debug)]
pub struct Partition {
    pub bound: PartitionBound,
}

/// A range-partitioned table that passed every check `manage` makes.
#[derive(Clone, Debug)]
pub struct PartitionedTable {
    pub oid: pg_sys::Oid,
    pub name: QualifiedName,
    /// Owner's role name and OID: shadows get this owner, and the cycle acts
    /// with its rights.
    pub owner: String,
    pub owner_oid: pg_sys::Oid,
    pub key_column: String,
    pub key_type: KeyType,
    pub default_partition: Option<pg_sys::Oid>,
    pub partitions: Vec<Partition>,
}

/// Facts about one relation, before deciding whether it can be managed.
struct RelationFacts {
    name: QualifiedName,
    relkind: String,
    persistence: String,
    owner: String,
    owner_oid: pg_sys::Oid,
    caller_has_owner_rights: bool,
    strategy: Option<String>,
    key_columns: Option<i16>,
    key_attnum: Option<i16>,
    key_column: Option<String>,
    key_type_name: Option<String>,
    default_partition: Option<pg_sys::Oid>,
}

const RELATION_FACTS: &str = "
    SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
           pg_catalog.pg_get_userbyid(c.relowner)::text,
           pg_catalog.pg_has_role(c.relowner, 'USAGE'),
           pt.partstrat::text, pt.partnatts, pt.partattrs[0],
           a.attname::text, pg_catalog.format_type(a.atttypid, NULL),
           NULLIF(pt.partdefid, 0), c.relowner
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = c.oid
      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
     WHERE c.oid = $1";

const PARTITIONS: &str = "
    SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid)
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = $1
     ORDER BY c.oid";

fn relation_facts(oid: pg_sys::Oid) -> Result<RelationFacts> {
    Spi::connect(|client| {
        let rows = client.select(RELATION_FACTS, Some(1), &[oid.into()])?;
        let row = rows.first();
        if row.is_empty() {
            return Err(PredictError::UndefinedTable(oid.to_u32()));
        }
        let text = |i: usize| -> Result<String> {
            row.get::<String>(i)?
                .ok_or_else(|| PredictError::Internal(format!("NULL catalog column {i}")))
        };
        Ok(RelationFacts {
            name: QualifiedName {
                schema: text(1)?,
                name: text(2)?,
            },
            relkind: text(3)?,
            persistence: text(4)?,
            owner: text(5)?,
            caller_has_owner_rights: row.get::<bool>(6)?.unwrap_or(false),
            strategy: row.get::<String>(7)?,
            key_columns: row.get::<i16>(8)?,
            key_attnum: row.get::<i16>(9)?,
            key_column: row.get::<String>(10)?,
            key_type_name: row.get::<String>(11)?,
            default_partition: row.get::<pg_sys::Oid>(12)?,
            owner_oid: row
                .get::<pg_sys::Oid>(13)?
                .ok_or_else(|| PredictError::Internal("NULL catalog column relowner".into()))?,
        })
    })
}

/// Reads a table and checks everything a managed table must be: range
/// partitioned on one plain column of a supported type, not temporary,
/// without sub-partitions, with bounds that can be read.
/// Ownership is checked only when `require_owner` is set.
pub fn load_partitioned_table(oid: pg_sys::Oid, require_owner: bool) -> Result<PartitionedTable> {
    let facts = relation_facts(oid)?;
    let display = facts.name.to_string();
    if facts.relkind != "p" {
        return Err(PredictError::NotPartitioned(display));
    }
    if require_owner && !facts.caller_has_owner_rights {
        return Err(PredictError::NotOwner(display));
    }
    if facts.persistence == "t" {
        return Err(PredictError::TemporaryTable(display));
    }
    match facts.strategy.as_deref() {
        Some("r") => {}
        Some("l") => {
            return Err(PredictError::NotRangePartitioned {
                table: display,
                strategy: "LIST",
            })
        }
        Some("h") => {
            return Err(PredictError::NotRangePartitioned {
                table: display,
                strategy: "HASH",
            })
        }
        other => {
            return Err(PredictError::Internal(format!(
                "unknown partition strategy {other:?}"
            )))
        }
    }
    if facts.key_columns != Some(1) {
        return Err(PredictError::MultiColumnKey(display));
    }
    if facts.key_attnum == Some(0) {
        return Err(PredictError::ExpressionKey(display));
    }
    let key_column = facts.key_column.ok_or_else(|| {
        PredictError::Internal(format!("partition key column of {display} not found"))
    })?;
    let type_name = facts.key_type_name.unwrap_or_default();
    let key_type =
        KeyType::from_sql_name(&type_name).map_err(|_| PredictError::UnsupportedKeyType {
            table: display.clone(),
            column: quote_identifier(&key_column),
            type_name,
        })?;
    let partitions = load_partitions(oid, key_type, &display)?;
    Ok(PartitionedTable {
        oid,
        name: facts.name,
        owner: facts.owner,
        owner_oid: facts.owner_oid,
        key_column,
        key_type,
        default_partition: facts.default_partition,
        partitions,
    })
}

/// One row of `pg_inherits` for a parent, before interpretation.
struct RawPartition {
    oid: pg_sys::Oid,
    name: QualifiedName,
    is_partitioned: bool,
    bound_text: String,
}

fn raw_partitions(parent: pg_sys::Oid) -> Result<Vec<RawPartition>> {
    Spi::connect(|client| {
        let mut partitions = Vec::new();
        for row in client.select(PARTITIONS, None, &[parent.into()])? {
            partitions.push(RawPartition {
                oid: row
                    .get(1)?
                    .ok_or_else(|| PredictError::Internal("NULL partition oid".into()))?,
                name: QualifiedName {
                    schema: row.get::<String>(2)?.ok_or_else(|| {
                        PredictError::Internal("NULL catalog column nspname".into())
                    })?,
                    name: row.get::<String>(3)?.ok_or_else(|| {
                        PredictError::Internal("NULL catalog column relname".into())
                    })?,
                },
                is_partitioned: row.get::<String>(4)?.as_deref() == Some("p"),
                bound_text: row.get::<String>(5)?.unwrap_or_default(),
            });
        }
        Ok(partitions)
    })
}

fn load_partitions(
    parent: pg_sys::Oid,
    key_type: KeyType,
    parent_display: &str,
) -> Result<Vec<Partition>> {
    raw_partitions(parent)?
        .into_iter()
        .map(|raw| {
            if raw.is_partitioned {
                return Err(PredictError::SubPartitioned {
                    table: parent_display.to_string(),
                    partition: raw.name.to_string(),
                });
            }
            let bound = PartitionBound::parse(&raw.bound_text, key_type).map_err(|e| {
                PredictError::UnreadableBound {
                    table: parent_display.to_string(),
                    partition: raw.name.to_string(),
                    reason: e.to_string(),
                }
            })?;
            Ok(Partition { bound })
        })
        .collect()
}

/// A partition's bounds as display text; `None` where a bound is absent or unreadable.
pub struct DisplayBounds {
    pub partition: pg_sys::Oid,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub is_default: bool,
}

/// Bounds of every partition of any relation, never failing on an odd one.
pub fn lenient_bounds(parent: pg_sys::Oid) -> Result<Vec<DisplayBounds>> {
    let key_type = crate::pg::spi::select_one::<String>(
        "SELECT (SELECT pg_catalog.format_type(a.atttypid, NULL)
                   FROM pg_catalog.pg_partitioned_table pt
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
                  WHERE pt.partrelid = $1 AND pt.partnatts = 1)",
        &[parent.into()],
    )?
    .and_then(|name| KeyType::from_sql_name(&name).ok());
    Ok(raw_partitions(parent)?
        .into_iter()
        .map(|raw| {
            let bound = key_type.and_then(|t| PartitionBound::parse(&raw.bound_text, t).ok());
            let (range_start, range_end, is_default) = match bound {
                Some(PartitionBound::Range { from, to }) => {
                    (Some(from.to_text()), Some(to.to_text()), false)
                }
                Some(PartitionBound::Default) => (None, None, true),
                None => (None, None, raw.bound_text == "DEFAULT"),
            };
            DisplayBounds {
                partition: raw.oid,
                range_start,
                range_end,
                is_default,
            }
        })
        .collect())
}

/// The relation's name as SQL needs it (quoted, schema-qualified), rebuilt
/// from its OID.
pub fn relation_name(oid: pg_sys::Oid) -> Result<String> {
    qualified_name(oid)
        .map(|n| n.quoted())
        .ok_or(PredictError::UndefinedTable(oid.to_u32()))
}

/// Whether a relation of this name exists in the schema (any kind).
pub fn relation_exists(schema: &str, name: &str) -> Result<bool> {
    // A table's row type takes its name among the schema's types as well:
    // a type of that name (another role's, say) makes CREATE TABLE fail.
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relname = $2)
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                         WHERE n.nspname = $1 AND t.typname = $2)",
        &[schema.into(), name.into()],
    )?
    .unwrap_or(false))
}

impl PartitionedTable {
    /// The key ranges of the attached partitions, DEFAULT aside.
    pub fn attached_ranges(&self) -> Vec<(i64, i64)> {
        self.partitions
            .iter()
            .filter_map(|p| p.bound.raw_range())
            .collect()
    }
}

/// Name and whether the caller has the owner's rights, for any relation
/// (`None` if it does not exist).
pub fn name_and_owner_rights(oid: pg_sys::Oid) -> Result<Option<(QualifiedName, bool)>> {
    let Some(name) = qualified_name(oid) else {
        return Ok(None);
    };
    let rights = crate::pg::spi::select_one::<bool>(
        "SELECT (SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $1)",
        &[oid.into()],
    )?;
    Ok(Some((name, rights == Some(true))))
}

/// The median rows of the partitions of `table` that hold rows, DEFAULT
/// aside, as the statistics estimate them (`None`: none holds rows yet).
pub fn median_partition_rows(table: &PartitionedTable) -> Result<Option<f64>> {
    Ok(crate::pg::spi::select_one::<f64>(
        "SELECT pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY c.reltuples)
           FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1 AND c.oid <> $2 AND c.reltuples > 0",
        &[
            table.oid.into(),
            table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
        ],
    )?)
}

/// The partitions of `table` its owner does not own (pg_partman creates
/// them as the role that runs its maintenance), qualified and quoted.
pub fn partitions_of_another_owner(table: &PartitionedTable) -> Result<Vec<String>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                   FROM pg_catalog.pg_inherits i
                   JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE i.inhparent = $1 AND c.relowner <> $2
                  ORDER BY c.relname",
                None,
                &[table.oid.into(), table.owner_oid.into()],
            )?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect()
    })
}

/// A relation's row-level security flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowSecurity {
    pub enabled: bool,
    pub forced: bool,
}

/// The row-level security flags of `relation` (none if it is gone).
pub fn row_security(relation: pg_sys::Oid) -> Result<RowSecurity> {
    let (enabled, forced) = crate::pg::spi::select_two::<bool, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relrowsecurity),
                EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relforcerowsecurity)",
        &[relation.into()],
    )?;
    Ok(RowSecurity {
        enabled: enabled.unwrap_or(false),
        forced: forced.unwrap_or(false),
    })
}

/// Whether `DELETE FROM ONLY default` in replica mode, as `owner`, runs
/// no code of any role's: no rule on it, no trigger enabled `ALWAYS` or
/// `REPLICA` (replica mode fires those), no row-level security at all, and
/// `owner` owns it. (A DELETE evaluates no CHECK, index or column type.)
/// The caller holds a lock on it that keeps new ones out until it commits.
pub fn runs_nothing_on_delete_in_replica_mode(
    default: pg_sys::Oid,
    owner: pg_sys::Oid,
) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = $1)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                             WHERE t.tgrelid = $1 AND NOT t.tgisinternal AND t.tgenabled IN ('A', 'R'))
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                         WHERE c.oid = $1 AND c.relowner = $2 AND NOT c.relrowsecurity)",
        &[default.into(), owner.into()],
    )?
    .unwrap_or(false))
}

/// What the publications of this database replicate of a leaf partition
/// (through itself, an ancestor, their schemas or `FOR ALL TABLES`).
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Some publication replicates both its inserts and its deletes.
    pub rows: bool,
    /// A publication a move cannot serve, if any: one of deletes but not
    /// inserts (a subscriber would lose the moved rows); one of inserts but
    /// not deletes beside one of both (either would get them twice or
    /// lose them), or covering every table of a schema or the database (the
    /// shadow's own rows would be published under its name).
    pub unserved: Option<String>,
}

pub fn published(partition: pg_sys::Oid) -> Result<Published> {
    let (rows, unserved) = crate::pg::spi::select_two::<bool, String>(
        "WITH tree AS (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a),
              covering AS (
                SELECT p.pubname, p.pubinsert, p.pubdelete,
                       p.puballtables OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r
                                                     WHERE r.prpubid = p.oid AND r.prrelid IN (SELECT relid FROM tree)) AS wide
                  FROM pg_catalog.pg_publication p
                 WHERE p.puballtables
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r
                                WHERE r.prpubid = p.oid AND r.prrelid IN (SELECT relid FROM tree))
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_namespace n
                                 JOIN pg_catalog.pg_class c ON c.relnamespace = n.pnnspid
                                WHERE n.pnpubid = p.oid AND c.oid IN (SELECT relid FROM tree)))
         SELECT EXISTS (SELECT 1 FROM covering WHERE pubinsert AND pubdelete),
                (SELECT pg_catalog.quote_ident(pubname) FROM covering
                  WHERE (pubdelete AND NOT pubinsert)
                     OR (pubinsert AND NOT pubdelete
                         AND (wide OR EXISTS (SELECT 1 FROM covering b WHERE b.pubinsert AND b.pubdelete)))
                  ORDER BY pubname LIMIT 1)",
        &[partition.into()],
    )?;
    Ok(Published {
        rows: rows.unwrap_or(false),
        unserved,
    })
}

/// Whether a published DELETE from `relation` can name its rows: a replica
/// identity of FULL, of an index, or the default one with a primary key.
pub fn has_replica_identity(relation: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT (SELECT c.relreplident = 'f'
                     OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                                           WHERE i.indrelid = c.oid AND i.indisreplident))
                     OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                                           WHERE i.indrelid = c.oid AND i.indisprimary))
                   FROM pg_catalog.pg_class c WHERE c.oid = $1)",
        &[relation.into()],
    )?
    .unwrap_or(false))
}

/// Whether `relation` (a table) holds a row, its own only.
pub fn holds_rows(relation: pg_sys::Oid) -> Result<bool> {
    let name = relation_name(relation)?;
    Ok(crate::pg::spi::select_one::<bool>(
        &format!("SELECT EXISTS (SELECT 1 FROM ONLY {name})"),
        &[],
    )?
    .unwrap_or(false))
}

/// Whether `role` may create temporary tables in this database.
pub fn may_create_temporary_tables(role: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'TEMPORARY')",
        &[role.into()],
    )?
    .unwrap_or(false))
}

/// Whether `relation` has `REPLICA IDENTITY FULL`.
pub fn replica_identity_full(relation: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT (SELECT c.relreplident = 'f' FROM pg_catalog.pg_class c WHERE c.oid = $1)",
        &[relation.into()],
    )?
    .unwrap_or(false))
}

/// Whether `table`'s owner is a superuser.
pub fn owned_by_superuser(table: &PartitionedTable) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = $1)",
        &[table.owner_oid.into()],
    )?
    .unwrap_or(false))
}

/// Whether relation `oid` has a rule (a plain table has none of its own).
pub fn has_rules(oid: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = $1)",
        &[oid.into()],
    )?
    .unwrap_or(false))
}

/// The table's columns that can be copied as they are (generated columns
/// are computed again, identically, on insert).
pub fn copied_columns(table: &PartitionedTable) -> Result<String> {
    Ok(crate::pg::spi::select_one::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum)
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
        &[table.oid.into()],
    )?
    .unwrap_or_default())
}

/// The table `oid` is a partition of, if it is one.
pub fn partition_parent(oid: pg_sys::Oid) -> Result<Option<pg_sys::Oid>> {
    Ok(crate::pg::spi::select_one::<pg_sys::Oid>(
        "SELECT (SELECT i.inhparent FROM pg_catalog.pg_inherits i
                   JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhrelid = $1 AND c.relispartition)",
        &[oid.into()],
    )?)
}

/// A value of `table`'s key written any way the key type's input accepts
/// ('2024-03-01', 'now', '2024-03-01 10:00+02', '1e6'::bigint…), read in
/// the pinned settings; `setting` names the argument in errors.
pub fn key_of_text(table: &PartitionedTable, text: &str, setting: &'static str) -> Result<i64> {
    let invalid = |reason: String| PredictError::InvalidSetting { setting, reason };
    let canonical = crate::pg::subxact::try_in_subtransaction(|| {
        crate::pg::spi::select_one::<String>(
            &format!("SELECT $1::{}::text", table.key_type.sql_name()),
            &[text.into()],
        )
    })
    .map_err(|e| invalid(e.message))?
    .map_err(PredictError::from)?
    .ok_or_else(|| invalid("NULL".into()))?;
    table
        .key_type
        .parse_value(&canonical)
        .map(|v| v.raw)
        .map_err(|e| invalid(e.to_string()))
}

/// Whether the caller may read every row of `parent`: SELECT on it, and no
/// row-level security limiting what it sees (a report would show counts of
/// rows it cannot read).
pub fn caller_may_read_rows(parent: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, 'SELECT') AND NOT pg_catalog.row_security_active($1)",
        &[parent.into()],
    )?
    // NULL: the table is gone meanwhile.
    .unwrap_or(false))
}

/// The owner of `oid` and its DEFAULT partition, if it is a partitioned
/// table (`None`: no such relation).
pub fn owner_and_default(oid: pg_sys::Oid) -> Result<Option<(pg_sys::Oid, Option<pg_sys::Oid>)>> {
    let (owner, default) = crate::pg::spi::select_two::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT (SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1),
                (SELECT NULLIF(partdefid, 0) FROM pg_catalog.pg_partitioned_table WHERE partrelid = $1)",
        &[oid.into()],
    )?;
    Ok(owner.map(|owner| (owner, default)))
}

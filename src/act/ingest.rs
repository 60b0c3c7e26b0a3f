//! `ingest(parent, source)`: a batch loaded with its partitions made ready
//! first (staged activation), never through DEFAULT.
//!
//! The procedure commits between stages, so no stage holds a lock longer
//! than it needs and no reader ever sees part of the batch:
//! 1. `prepare`: check the source, group its keys, plan the partitions the
//!    batch needs (shadows it falls in, new right-sized ranges for keys no
//!    shadow covers) and create the new ones as standalone tables.
//! 2. `activate`: attach them one per transaction, each with the usual
//!    `lock_timeout` and retries, so DEFAULT is locked for one ATTACH at a time.
//! 3. `load`: one `INSERT … SELECT` into the parent. Every row lands in a
//!    partition prepared in 1-2, or the whole load is rolled back; it holds
//!    no lock stronger than ROW EXCLUSIVE, so readers never wait for it and
//!    see the batch all at once, at its commit.
//!
//! A failure in 1 or 2 leaves only empty partitions (or shadows, which the
//! cycle then looks after), never rows.

use partition_core::planner;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use super::activate;
use super::key_groups::{destinations, key_groups};
use crate::catalog::{self, PartitionedTable};
use crate::error::{PredictError, Result};
use crate::gucs;
use crate::pg::backend;
use crate::pg::locks::lock_table_steps;
use crate::pg::session::as_role;
use crate::pg::stand_aside::while_ingesting;
use crate::pg::subxact::try_in_subtransaction;
use crate::shmem::requests;
use crate::state::alerts::{self, AlertKind, Severity};
use crate::state::ingests::{self, Ingest};
use crate::state::shadows::{self, Origin};
use crate::state::{managed, migrations};

/// What stage 1 found and made.
pub struct Prepared {
    pub created: i32,
    /// Shadows to attach, as SQL names them.
    pub targets: Vec<String>,
    /// DEFAULT holds rows in a range the batch needs: they must move out
    /// first (`migrate_default`), or the ATTACH would fail.
    pub default_overlap: bool,
}

/// The source's columns the parent receives, quoted and comma-separated,
/// after checking everything that would make the load fail or misplace
/// rows: what the source is, the caller's right to read it, its columns,
/// the key's type, and that every column converts (a plan of the INSERT is
/// made, nothing runs).
fn check_source(table: &PartitionedTable, source: pg_sys::Oid) -> Result<String> {
    // One row whether or not the source still exists (a dropped OID).
    let facts = Spi::get_three_with_args::<String, String, bool>(
        "SELECT (SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1),
                (SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = $1),
                (SELECT pg_catalog.has_table_privilege(c.oid, 'SELECT') FROM pg_catalog.pg_class c WHERE c.oid = $1)",
        &[source.into()],
    )?;
    let (Some(name), Some(kind), Some(readable)) = facts else {
        return Err(PredictError::UndefinedTable(source.to_u32()));
    };
    if !["r", "p", "v", "m", "f"].contains(&kind.as_str()) {
        return Err(PredictError::SourceNotTable(name));
    }
    let is_target = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors($1) a WHERE a.relid = $2)",
        &[source.into(), table.oid.into()],
    )?
    .unwrap_or(false);
    if is_target {
        return Err(PredictError::SourceIsTarget {
            batch: name,
            table: table.name.to_string(),
        });
    }
    if !readable {
        return Err(PredictError::SourceUnreadable(name));
    }
    let columns: Vec<(String, String, Option<String>, bool)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT s.attname::text, pg_catalog.format_type(s.atttypid, s.atttypmod),
                    pg_catalog.format_type(p.atttypid, p.atttypmod), p.attgenerated <> ''
               FROM pg_catalog.pg_attribute s
               LEFT JOIN pg_catalog.pg_attribute p
                      ON p.attrelid = $2 AND p.attname = s.attname AND p.attnum > 0 AND NOT p.attisdropped
              WHERE s.attrelid = $1 AND s.attnum > 0 AND NOT s.attisdropped
              ORDER BY s.attnum",
            None,
            &[source.into(), table.oid.into()],
        )?;
        rows.map(|r| {
            let source_column = |i: usize| -> Result<String> {
                r.get::<String>(i)?.ok_or_else(|| {
                    PredictError::Internal(format!("NULL catalog value {i} of a source column"))
                })
            };
            Ok((
                source_column(1)?,
                source_column(2)?,
                r.get::<String>(3)?,
                // No column of that name in the table: not generated there.
                r.get::<bool>(4)?.unwrap_or(false),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    let mut key_seen = false;
    for (column, source_type, parent_type, generated) in &columns {
        let Some(parent_type) = parent_type else {
            return Err(PredictError::SourceColumnUnknown {
                column: column.clone(),
                batch: name,
                table: table.name.to_string(),
            });
        };
        if *generated {
            return Err(PredictError::SourceColumnGenerated {
                column: column.clone(),
                batch: name,
                table: table.name.to_string(),
            });
        }
        if *column == table.key_column {
            key_seen = true;
            if source_type != parent_type {
                return Err(PredictError::SourceKeyType {
                    column: column.clone(),
                    batch: name,
                    batch_type: source_type.clone(),
                    table: table.name.to_string(),
                    key_type: parent_type.clone(),
                });
            }
        }
    }
    if !key_seen {
        return Err(PredictError::SourceWithoutKey {
            column: table.key_column.clone(),
            batch: name,
            table: table.name.to_string(),
        });
    }
    let list = columns
        .iter()
        .map(|(c, ..)| quote_identifier(c))
        .collect::<Vec<_>>()
        .join(", ");
    let plan_only = format!(
        "EXPLAIN (COSTS OFF) INSERT INTO {} ({list}) SELECT {list} FROM {name}",
        table.name.quoted()
    );
    let planned = while_ingesting(|| try_in_subtransaction(|| Spi::run(&plan_only)));
    match planned {
        Ok(result) => result?,
        Err(caught) => {
            return Err(PredictError::SourceDoesNotFit {
                batch: name,
                table: table.name.to_string(),
                sqlstate: caught.sqlstate,
                message: caught.message,
            })
        }
    }
    Ok(list)
}

/// Stage 1.
pub fn prepare(parent: pg_sys::Oid, source: pg_sys::Oid) -> Result<Prepared> {
    if backend::in_transaction_block() {
        return Err(PredictError::InTransactionBlock(
            "ingest(), which commits between its stages,",
        ));
    }
    lock_table_steps(parent, true)?;
    let table = managed::load_managed_table(parent)?;
    if migrations::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(table.name.to_string()));
    }
    // The batch goes into the owner's table, so it is read, planned and
    // loaded with the owner's rights: the table's own defaults, triggers and
    // constraints never run with a caller's (a superuser's) rights.
    let owner = table.owner_oid;
    as_role(owner, || check_source(&table, source))?;
    let source_name = catalog::table::relation_name(source)?;
    let keys = as_role(owner, || key_groups(&table, &source_name))?;
    if keys.null_keys > 0 {
        return Err(PredictError::SourceNullKeys {
            rows: keys.null_keys,
            batch: source_name,
            column: table.key_column.clone(),
            table: table.name.to_string(),
        });
    }
    as_role(table.owner_oid, || {
        let mut prepared = Prepared {
            created: 0,
            targets: Vec::new(),
            default_overlap: false,
        };
        let all = usize::MAX;
        for destination in destinations(
            &table,
            &keys.groups,
            planner::plan_ingest,
            all,
            Origin::Ingest,
        )? {
            let range = destination.range;
            if activate::rows_in_default(&table, range.from, range.to)?.is_some() {
                prepared.default_overlap = true;
            }
            prepared.created += i32::from(destination.created);
            prepared.targets.push(destination.name);
        }
        Ok(prepared)
    })
}

/// Stage 2, for one shadow: whether this call attached it (false when
/// it was attached meanwhile, by the worker for instance).
pub fn activate(parent: pg_sys::Oid, target: &str) -> Result<bool> {
    lock_table_steps(parent, true)?;
    let table = managed::load_managed_table(parent)?;
    as_role(table.owner_oid, || {
        let standalone = shadows::standalone(table.oid)?;
        let Some((from, to, oid, name)) = standalone.into_iter().find(|s| s.3 == target) else {
            return Ok(false);
        };
        if migrations::in_progress(parent)? {
            return Err(PredictError::MigrationInProgress(table.name.to_string()));
        }
        activate::attach(&table, oid, from, to, &name)?;
        Ok(true)
    })
}

/// What stage 3 loaded.
pub struct Loaded {
    pub rows: i64,
    pub per_partition: serde_json::Value,
}

/// Stage 3: the load, and what it taught (forecast against arrival).
pub fn load(
    parent: pg_sys::Oid,
    source: pg_sys::Oid,
    created: i32,
    activated: i32,
    started_at: &str,
) -> Result<Loaded> {
    let table = managed::load_managed_table(parent)?;
    // Again: the source may have been altered since stage 1 committed.
    let columns = as_role(table.owner_oid, || check_source(&table, source))?;
    let source_name = catalog::table::relation_name(source)?;
    let key = quote_identifier(&table.key_column);
    let default = table.default_partition.unwrap_or(pg_sys::InvalidOid);
    let per_partition: Vec<(pg_sys::Oid, String, i64)> = as_role(table.owner_oid, || {
        while_ingesting(|| {
            Spi::connect_mut(|client| {
                let rows = client.update(
                &format!(
                    "WITH loaded AS (INSERT INTO {parent} ({columns}) SELECT {columns} FROM {source_name}
                                     RETURNING tableoid)
                     SELECT tableoid, tableoid::pg_catalog.regclass::text, pg_catalog.count(*)
                       FROM loaded GROUP BY tableoid ORDER BY 2",
                    parent = table.name.quoted()
                ),
                None,
                &[],
            )?;
                rows.map(|r| {
                    Ok((
                        r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                        r.get::<String>(2)?.unwrap_or_default(),
                        r.get::<i64>(3)?.unwrap_or(0),
                    ))
                })
                .collect::<Result<Vec<_>>>()
            })
        })
    })?;
    if let Some((_, _, rows)) = per_partition.iter().find(|p| p.0 == default) {
        return Err(PredictError::RowsOutsidePartitions {
            rows: *rows,
            batch: source_name,
            table: table.name.to_string(),
            column: key,
        });
    }
    let rows: i64 = per_partition.iter().map(|p| p.2).sum();
    let forecast = shadows::forecast_rows(table.oid, per_partition.iter().map(|p| p.0).collect())?;
    let per_partition_json = serde_json::Value::Array(
        per_partition
            .iter()
            .map(|(oid, name, rows)| {
                let predicted = forecast.iter().find(|f| f.0 == *oid).map(|f| f.1);
                json!({"partition": name, "rows": rows, "forecast_rows": predicted})
            })
            .collect(),
    );
    let forecast_rows: Option<f64> =
        (!forecast.is_empty()).then(|| forecast.iter().map(|f| f.1).sum());
    let rows_in_forecast: i64 = per_partition
        .iter()
        .filter(|p| forecast.iter().any(|f| f.0 == p.0))
        .map(|p| p.2)
        .sum();
    ingests::record(
        table.oid,
        Ingest {
            source: &source_name,
            rows_loaded: rows,
            partitions_created: created,
            partitions_activated: activated,
            rows_per_partition: per_partition_json.clone(),
            forecast: forecast_rows.map(|expected| (expected, rows_in_forecast)),
            started_at,
        },
    )?;
    if let Some(expected) = forecast_rows {
        let threshold = gucs::forecast_alert_threshold();
        if rows_in_forecast as f64 > expected.max(1.0) * (1.0 + threshold) {
            alerts::event(
                table.oid,
                AlertKind::ForecastMiss,
                Severity::Warning,
                &format!(
                    "ingest of {source_name} brought {rows_in_forecast} row(s) into partitions forecast to hold {expected:.0} in all"
                ),
                json!({"event": "ingest", "source": source_name, "rows": rows_in_forecast,
                       "forecast_rows": expected, "threshold": threshold}),
            )?;
        }
    }
    // The worker's next cycle of this table (collect, score, replan) comes
    // right after this commits, not a naptime later.
    requests::cycle_after_commit(table.oid);
    Ok(Loaded {
        rows,
        per_partition: per_partition_json,
    })
}

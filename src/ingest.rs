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

use std::sync::atomic::{AtomicBool, Ordering};

use partition_core::planner::{self, MigrationInput, PlannedRange};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode;
use serde_json::json;

use crate::alerts::{self, AlertKind};
use crate::catalog::{self, PartitionedTable};
use crate::cycle;
use crate::error::{PredictError, Result};
use crate::gucs;
use crate::migration;
use crate::session::as_role;
use crate::shadows::{self, Origin};
use crate::subxact::try_in_subtransaction;

/// Set while this backend runs ingest's own statements: its INSERT is not
/// a bulk load for the planner hook to prepare (ingest prepared it).
static INGESTING: AtomicBool = AtomicBool::new(false);

pub fn ingesting_here() -> bool {
    INGESTING.load(Ordering::Relaxed)
}

fn while_ingesting<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            INGESTING.store(false, Ordering::Relaxed);
        }
    }
    INGESTING.store(true, Ordering::Relaxed);
    let _reset = Reset;
    f()
}

/// What stage 1 found and made.
pub struct Prepared {
    pub created: i32,
    /// Shadows to attach, as SQL names them.
    pub targets: Vec<String>,
    /// DEFAULT holds rows in a range the batch needs: they must move out
    /// first (`migrate_default`), or the ATTACH would fail.
    pub default_overlap: bool,
}

fn invalid_source(sqlstate: PgSqlErrorCode, message: String) -> PredictError {
    PredictError::Postgres { sqlstate, message }
}

/// The source's columns the parent receives, quoted and comma-separated,
/// after checking everything that would make the load fail or misplace
/// rows: what the source is, the caller's right to read it, its columns,
/// the key's type, and that every column converts (a plan of the INSERT is
/// made, nothing runs).
fn check_source(table: &PartitionedTable, source: pg_sys::Oid) -> Result<String> {
    let facts = Spi::get_three_with_args::<String, String, bool>(
        "SELECT c.oid::pg_catalog.regclass::text, c.relkind::text,
                pg_catalog.has_table_privilege(c.oid, 'SELECT')
           FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[source.into()],
    )?;
    let (Some(name), Some(kind), Some(readable)) = facts else {
        return Err(PredictError::UndefinedTable(source.to_u32()));
    };
    if !["r", "p", "v", "m", "f"].contains(&kind.as_str()) {
        return Err(invalid_source(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("source {name} is not a table, view or materialized view"),
        ));
    }
    let is_target = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors($1) a WHERE a.relid = $2)",
        &[source.into(), table.oid.into()],
    )?
    .unwrap_or(false);
    if is_target {
        return Err(invalid_source(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("source {name} is {} or one of its partitions", table.name),
        ));
    }
    if !readable {
        return Err(invalid_source(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied to read source {name}: ingest reads it with the caller's rights"
            ),
        ));
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
            Ok((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?,
                r.get::<bool>(4)?.unwrap_or(false),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    let mut key_seen = false;
    for (column, source_type, parent_type, generated) in &columns {
        let Some(parent_type) = parent_type else {
            return Err(invalid_source(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{column}\" of source {name} does not exist in {}",
                    table.name
                ),
            ));
        };
        if *generated {
            return Err(invalid_source(
                PgSqlErrorCode::ERRCODE_GENERATED_ALWAYS,
                format!(
                    "column \"{column}\" of {} is generated; leave it out of source {name}",
                    table.name
                ),
            ));
        }
        if *column == table.key_column {
            key_seen = true;
            if source_type != parent_type {
                return Err(invalid_source(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "column \"{column}\" of source {name} has type {source_type}, but it is the partition key of {}, of type {parent_type}",
                        table.name
                    ),
                ));
            }
        }
    }
    if !key_seen {
        return Err(invalid_source(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "source {name} has no column \"{}\", the partition key of {}",
                table.key_column, table.name
            ),
        ));
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
            return Err(invalid_source(
                caught.sqlstate,
                format!(
                    "source {name} does not fit {}: {}",
                    table.name, caught.message
                ),
            ))
        }
    }
    Ok(list)
}

/// Stage 1.
pub fn prepare(parent: pg_sys::Oid, source: pg_sys::Oid) -> Result<Prepared> {
    if unsafe { pg_sys::IsTransactionBlock() } {
        return Err(PredictError::Postgres {
            sqlstate: PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            message:
                "ingest() commits between its stages and cannot run inside a transaction block (or a query string of several statements)"
                    .into(),
        });
    }
    cycle::lock_table_cycle(parent, true)?;
    let table = catalog::load_managed_table(parent)?;
    if migration::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(table.name.to_string()));
    }
    check_source(&table, source)?;
    // Read with the caller's rights, before anything changes.
    let source_name = catalog::relation_name(source)?;
    let keys = migration::key_groups(&table, &source_name)?;
    if keys.null_keys > 0 {
        return Err(invalid_source(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            format!(
                "{} row(s) of source {} have a NULL \"{}\"; the partition key of {} cannot be NULL (such rows would land in DEFAULT)",
                keys.null_keys,
                source_name,
                table.key_column,
                table.name
            ),
        ));
    }
    as_role(table.owner_oid, || {
        let settings = shadows::load_settings(&table)?;
        let taken = shadows::attached_ranges(&table);
        let standalone = shadows::standalone_shadows(table.oid)?;
        let shadow_ranges: Vec<(i64, i64)> = standalone.iter().map(|s| (s.0, s.1)).collect();
        let plan = planner::plan_ingest(&MigrationInput {
            key_type: table.key_type,
            taken: &taken,
            shadows: &shadow_ranges,
            stranded: &keys.groups,
            target_rows: settings.target_rows,
            min_span: settings.min_span,
            max_span: settings.max_span,
        });
        let mut prepared = Prepared {
            created: 0,
            targets: Vec::new(),
            default_overlap: false,
        };
        for range in plan {
            if shadows::rows_in_default(&table, range.from, range.to)?.is_some() {
                prepared.default_overlap = true;
            }
            let name = if range.into_shadow {
                standalone
                    .iter()
                    .find(|s| s.0 == range.from)
                    .map(|s| s.3.clone())
                    .ok_or_else(|| PredictError::Internal("planned shadow vanished".into()))?
            } else {
                prepared.created += 1;
                shadows::create_shadow(
                    &table,
                    &PlannedRange {
                        from: range.from,
                        to: range.to,
                        expected_rows: range.rows,
                    },
                    Origin::Ingest,
                )?
                .quoted()
            };
            prepared.targets.push(name);
        }
        Ok(prepared)
    })
}

/// Stage 2, for one shadow: whether this call attached it (false when
/// it was attached meanwhile, by the worker for instance).
pub fn activate(parent: pg_sys::Oid, target: &str) -> Result<bool> {
    cycle::lock_table_cycle(parent, true)?;
    let table = catalog::load_managed_table(parent)?;
    as_role(table.owner_oid, || {
        let standalone = shadows::standalone_shadows(table.oid)?;
        let Some((from, to, _, name)) = standalone.into_iter().find(|s| s.3 == target) else {
            return Ok(false);
        };
        if migration::in_progress(parent)? {
            return Err(PredictError::MigrationInProgress(table.name.to_string()));
        }
        shadows::attach(&table, from, to, &name)?;
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
    let table = catalog::load_managed_table(parent)?;
    // Again: the source may have been altered since stage 1 committed.
    let columns = check_source(&table, source)?;
    let source_name = catalog::relation_name(source)?;
    let key = quote_identifier(&table.key_column);
    let default = table.default_partition.unwrap_or(pg_sys::InvalidOid);
    let per_partition: Vec<(pg_sys::Oid, String, i64)> = while_ingesting(|| {
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
    })?;
    if let Some((_, _, rows)) = per_partition.iter().find(|p| p.0 == default) {
        return Err(PredictError::Postgres {
            sqlstate: PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            message: format!(
                "{rows} row(s) of {source_name} fall outside every partition of {} (rows with new keys or NULL {key} were added to the source while ingest ran); nothing was loaded",
                table.name
            ),
        });
    }
    let rows: i64 = per_partition.iter().map(|p| p.2).sum();
    let forecast: Vec<(pg_sys::Oid, f64)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT shadow, predicted_rows FROM partition_predict.shadows
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND origin = 'forecast'
                AND shadow = ANY ($2)",
            None,
            &[
                table.oid.into(),
                per_partition.iter().map(|p| p.0).collect::<Vec<_>>().into(),
            ],
        )?;
        rows.map(|r| {
            Ok((
                r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                r.get::<f64>(2)?.unwrap_or(0.0),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
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
    Spi::run_with_args(
        "INSERT INTO partition_predict.ingests (parent, source, rows_loaded, partitions_created, partitions_activated,
                                                rows_per_partition, forecast_rows, rows_in_forecast, started_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.timestamptz)",
        &[
            table.oid.into(),
            source_name.clone().into(),
            rows.into(),
            created.into(),
            activated.into(),
            pgrx::JsonB(per_partition_json.clone()).into(),
            forecast_rows.into(),
            forecast_rows.map(|_| rows_in_forecast).into(),
            started_at.into(),
        ],
    )?;
    if let Some(expected) = forecast_rows {
        let threshold = gucs::FORECAST_ALERT_THRESHOLD.get();
        if rows_in_forecast as f64 > expected.max(1.0) * (1.0 + threshold) {
            alerts::raise(
                Some(table.oid),
                AlertKind::ForecastMiss,
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
    crate::bulk::cycle_after_commit(table.oid);
    Ok(Loaded {
        rows,
        per_partition: per_partition_json,
    })
}

//! DDL that never queues other sessions behind it.
//!
//! A lock request waits in the lock queue, and every later request that
//! conflicts with it waits behind it: one ALTER TABLE behind a long report
//! stalls all inserts. So every statement here runs under a short
//! `lock_timeout` in a subtransaction and, when it times out, steps out of
//! the queue, sleeps and tries again.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode;

use crate::catalog::{self, PartitionedTable, QualifiedName};
use crate::error::{PredictError, Result};
use crate::gucs;
use crate::session::with_settings;
use crate::subxact::try_in_subtransaction;

const MAX_BACKOFF_MS: u64 = 2_000;

/// Runs `sql` with `pg_partition_predict.lock_timeout`, retrying lock
/// timeouts up to `pg_partition_predict.lock_retries` times with
/// exponential back-off. Other errors are raised as they are.
pub fn run_with_lock_retry(
    relation: &QualifiedName,
    action: &'static str,
    sql: &str,
) -> Result<()> {
    run_with_lock_retry_watching(relation, action, sql, &[])
}

/// As `run_with_lock_retry`; an attempt is skipped (counted, and followed by
/// the back-off) while a transaction open for more than ten times
/// `lock_timeout` (and at least a second) holds a lock on one of `watched`:
/// such a transaction is a long report, not a busy moment, the request
/// would only wait out its timeout, and every query needing those tables
/// would queue behind it meanwhile. Shorter holders are waited for as usual.
pub fn run_with_lock_retry_watching(
    relation: &QualifiedName,
    action: &'static str,
    sql: &str,
    watched: &[pg_sys::Oid],
) -> Result<()> {
    let timeout_ms = gucs::lock_timeout_ms();
    let attempts = gucs::lock_retries() + 1;
    let mut backoff_ms: u64 = 10;
    for attempt in 1..=attempts {
        if !watched.is_empty() && old_transaction_holds_lock(watched, timeout_ms)? {
            if attempt < attempts {
                sleep_interruptibly(backoff_ms);
                backoff_ms = (backoff_ms * 2).min(MAX_BACKOFF_MS);
            }
            continue;
        }
        let timeout = format!("{timeout_ms}ms");
        let outcome = with_settings(&[(c"lock_timeout", &timeout)], || {
            try_in_subtransaction(|| Spi::run(sql))
        });
        match outcome {
            Ok(result) => return result.map_err(PredictError::from),
            Err(caught) if caught.sqlstate == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => {
                if attempt < attempts {
                    sleep_interruptibly(backoff_ms);
                    backoff_ms = (backoff_ms * 2).min(MAX_BACKOFF_MS);
                }
            }
            Err(caught) => {
                return Err(PredictError::Postgres {
                    sqlstate: caught.sqlstate,
                    message: caught.message,
                })
            }
        }
    }
    Err(PredictError::LockUnavailable {
        relation: relation.to_string(),
        action,
        attempts,
        timeout_ms,
    })
}

fn old_transaction_holds_lock(relations: &[pg_sys::Oid], timeout_ms: i32) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                         WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
                           AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                           AND l.relation = ANY ($1)
                           AND a.xact_start < pg_catalog.clock_timestamp()
                                              - pg_catalog.make_interval(secs => GREATEST($2 * 10 / 1000.0, 1)))",
        &[relations.to_vec().into(), timeout_ms.into()],
    )?
    .unwrap_or(false))
}

fn sleep_interruptibly(ms: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        pg_sys::check_for_interrupts!();
        unsafe { pg_sys::pg_usleep(10_000) };
    }
}

/// A name `{base}_{suffix}` (or `_{suffix}_2`, …) that no relation in the
/// schema uses yet.
pub fn free_relation_name(schema: &str, base: &str, suffix: &str) -> Result<String> {
    for n in 1..1000 {
        let numbered = if n == 1 {
            suffix.to_string()
        } else {
            format!("{suffix}_{n}")
        };
        let candidate = partition_core::naming::derived_name(base, &numbered);
        if !catalog::relation_exists(schema, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(PredictError::Internal(format!(
        "no free name for {base}_{suffix} in schema {schema}"
    )))
}

/// Creates an empty table shaped like the parent (columns, defaults, CHECK
/// and NOT NULL constraints, storage, comments, generated columns,
/// statistics) in `tablespace` (default: the parent's), owned by the
/// parent's owner. Indexes are not copied: ATTACH builds the partitioned
/// indexes' counterparts itself, on a table that is still empty.
pub fn create_table_like_parent(
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

/// Adds a DEFAULT partition the non-blocking way: built standalone, then
/// attached (SHARE UPDATE EXCLUSIVE on the parent, not ACCESS EXCLUSIVE as
/// `CREATE TABLE … PARTITION OF … DEFAULT` would take).
pub fn add_default_partition(table: &PartitionedTable) -> Result<QualifiedName> {
    let name = QualifiedName {
        schema: table.name.schema.clone(),
        name: free_relation_name(&table.name.schema, &table.name.name, "default")?,
    };
    create_table_like_parent(table, &name, None)?;
    run_with_lock_retry(
        &table.name,
        "attaching the DEFAULT partition",
        &format!(
            "ALTER TABLE {} ATTACH PARTITION {} DEFAULT",
            table.name.quoted(),
            name.quoted()
        ),
    )?;
    Ok(name)
}

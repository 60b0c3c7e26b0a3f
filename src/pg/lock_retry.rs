//! Statements that take locks on busy tables without queueing other
//! sessions behind them.
//!
//! A lock request waits in the lock queue, and every later request that
//! conflicts with it waits behind it: one ALTER TABLE behind a long report
//! stalls all inserts. So every statement here runs under a short
//! `lock_timeout` in a subtransaction and, when it times out, steps out of
//! the queue, sleeps and tries again.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::backend::sleep_interruptibly;
use super::relation::QualifiedName;
use super::session::with_settings;
use super::subxact::try_in_subtransaction;
use crate::error::{PredictError, Result};
use crate::gucs;

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
    run_with_lock_retry_inner(relation, action, sql, watched, false)
}

/// As `run_with_lock_retry_watching`, but gives up at once (with
/// `LockHeldByLongTransaction`) when such a long transaction holds a lock
/// on one of `watched`: for a caller that others wait for meanwhile.
pub fn run_with_lock_retry_unless_long_holder(
    relation: &QualifiedName,
    action: &'static str,
    sql: &str,
    watched: &[pg_sys::Oid],
) -> Result<()> {
    run_with_lock_retry_inner(relation, action, sql, watched, true)
}

fn run_with_lock_retry_inner(
    relation: &QualifiedName,
    action: &'static str,
    sql: &str,
    watched: &[pg_sys::Oid],
    give_up_on_long_holder: bool,
) -> Result<()> {
    let timeout_ms = gucs::lock_timeout_ms();
    let attempts = gucs::lock_retries() + 1;
    let mut backoff_ms: u64 = 10;
    for attempt in 1..=attempts {
        let holder = if watched.is_empty() {
            None
        } else {
            old_transaction_holding_lock(watched, timeout_ms)?
        };
        if let Some(holder) = holder {
            if give_up_on_long_holder {
                return Err(PredictError::LockHeldByLongTransaction {
                    relation: relation.to_string(),
                    action,
                    seconds: long_transaction_seconds(timeout_ms),
                    holder,
                });
            }
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
            Err(caught) => return Err(caught.into()),
        }
    }
    Err(PredictError::LockUnavailable {
        relation: relation.to_string(),
        action,
        attempts,
        timeout_ms,
    })
}

/// How long a transaction must have been open to count as long: ten times
/// `lock_timeout`, at least a second.
fn long_transaction_seconds(timeout_ms: i32) -> i32 {
    (timeout_ms / 100).max(1)
}

fn old_transaction_holding_lock(
    relations: &[pg_sys::Oid],
    timeout_ms: i32,
) -> Result<Option<String>> {
    // Named by process and role: a role needs no privilege on a table to
    // hold a lock on it (PostgreSQL locks before it checks, and `PREPARE`
    // keeps the lock to the end of the transaction), and the DBA must find
    // it. Read as the extension's owner: `pg_stat_activity` hides when
    // another role's transaction began from a role without
    // `pg_read_all_stats`, and the check must work for a table's owner too;
    // the message tells only what `pg_stat_activity` shows every role.
    crate::pg::session::as_extension_owner(|| {
        Ok(crate::pg::spi::select_one::<String>(
            "SELECT (SELECT pg_catalog.format('process %s of role %s', a.pid, a.usename)
                       FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                      WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
                        AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                        AND l.relation = ANY ($1)
                        AND a.xact_start < pg_catalog.clock_timestamp()
                                           - pg_catalog.make_interval(secs => GREATEST($2 * 10 / 1000.0, 1))
                      ORDER BY a.xact_start LIMIT 1)",
            &[relations.to_vec().into(), timeout_ms.into()],
        )?)
    })
}

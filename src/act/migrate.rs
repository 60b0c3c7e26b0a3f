//! Moving rows out of DEFAULT, online.
//!
//! One range at a time, as a sequence of steps, each its own transaction
//! (`migrate_default()` commits between them, the worker runs each in a
//! transaction of its own). The state lives in `state::migrations`,
//! so whoever runs the next step (the same call, the worker, a call after a
//! crash) carries on where the last one stopped:
//!
//! - *start*: pick the range (an existing shadow, or a new right-sized one),
//!   publish the routing override (shared memory and state file), record
//!   the migration as `starting`.
//! - `starting`: wait until every transaction that held a lock on the parent
//!   before the override existed has ended (it may have planned a query that
//!   does not read the shadow); writers that arrived since wait for us in
//!   the planner hook and are not waited for. Then `moving`.
//! - `moving`: move a batch (`DELETE … RETURNING` into the shadow). A short
//!   batch means DEFAULT holds no more of the range: `attaching`, from which
//!   on INSERTs wait in the planner hook too (cached plans are invalidated).
//! - `attaching`: wait for INSERTs already running, take the locks (with
//!   `lock_timeout` and retries), move what arrived meanwhile, ATTACH, done.
//!   If the locks cannot be had, `yielding`.
//! - `yielding`: move the rows back, batch by batch, then `yielded`; the
//!   next step withdraws the override, so waiting writers go on.
//!
//! Each move is one transaction: under any snapshot a row is in DEFAULT or
//! in the shadow, and every query on the parent reads both.

use std::time::Duration;

use partition_core::planner::{self, Stranded};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use super::activate;
use super::key_groups::{destinations, key_groups, Destination};
use super::quarantine;
use crate::catalog::{self, PartitionedTable};
use crate::error::{or_report, PredictError, Result};
use crate::gucs;
use crate::pg::backend;
use crate::pg::lock_retry::run_with_lock_retry_watching;
use crate::pg::locks::{self, lock_table_steps, Conflicting};
use crate::pg::relation;
use crate::pg::session::{as_role, with_pinned_settings, with_superuser_settings};
use crate::pg::stand_aside;
use crate::pg::subxact::try_in_subtransaction;
use crate::shmem::routing::{self, Override};
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::history;
use crate::state::migrations::{self, Migration, MigrationState};
use crate::state::shadows::Origin;

/// How long `starting` waits for transactions older than the override.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a migration of a table gave way, the worker leaves the table alone this long.
const YIELD_BACKOFF_MINUTES: i32 = 10;

/// What the caller should do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run the next step (after committing this one).
    Again,
    /// Nothing (more) to move.
    Done,
    /// The migration gave way to a transaction holding locks it needed;
    /// the rows are back in DEFAULT.
    Yielded(String),
    /// Another session is running this table's steps.
    Busy,
    /// The worker's step failed (rolled back, alerted): the message.
    Failed(String),
}

impl Next {
    /// As `migration_step()` returns it; the reason of a yield is the
    /// migration's `message`.
    pub fn as_text(&self) -> &'static str {
        match self {
            Next::Again => "again",
            Next::Done => "done",
            Next::Yielded(_) => "yielded",
            Next::Busy => "busy",
            Next::Failed(_) => "failed",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `migrate_default()`: errors are raised; waits for the table.
    User,
    /// The worker: skips a busy table, backs off after a yield, and looks
    /// in DEFAULT only when its collect step saw keys there.
    Worker,
    /// The worker right after a bulk load committed: looks in DEFAULT
    /// regardless (the load's statistics may not have reached it yet).
    WorkerAfterLoad,
}

/// One step of the migration of `parent`'s DEFAULT.
pub fn step(parent: pg_sys::Oid, batch_rows: i64, caller: Caller) -> Result<Next> {
    if !backend::library_preloaded() {
        return Err(PredictError::NotPreloaded("move rows out of DEFAULT"));
    }
    if batch_rows < 1 {
        return Err(PredictError::InvalidSetting {
            setting: "batch_rows",
            reason: format!("{batch_rows}: must be at least 1"),
        });
    }
    let superuser = backend::is_superuser();
    with_pinned_settings(|| {
        if !lock_table_steps(parent, caller == Caller::User)? {
            return Ok(Next::Busy);
        }
        let table = catalog::load_partitioned_table(parent, caller == Caller::User)?;
        as_role(table.owner_oid, || {
            stand_aside::as_migrator(|| step_as_owner(&table, batch_rows, caller, superuser))
        })
    })
}

fn step_as_owner(
    table: &PartitionedTable,
    batch_rows: i64,
    caller: Caller,
    superuser: bool,
) -> Result<Next> {
    let current = migrations::active(table.oid)?;
    if let Some(next) = tidy_override(table, current.as_ref())? {
        return Ok(next);
    }
    let Some(migration) = current else {
        return start(table, caller, superuser);
    };
    refuse_in_transaction_block(caller)?;
    // INSERTs wait while attaching (also after a restart, which clears it).
    routing::set_finishing(table.oid, migration.state == MigrationState::Attaching);
    if routing::override_of(table.oid).is_none_or(|o| o.migration_id != migration.id) {
        // Lost (a state file that could not be read): publish it again and
        // wait out the transactions that planned without it.
        publish(table, &migration)?;
        migrations::set_state(migration.id, MigrationState::Starting, None)?;
        return Ok(Next::Again);
    }
    match migration.state {
        MigrationState::Starting => pass_barrier(table, &migration),
        MigrationState::Moving | MigrationState::Attaching if !gucs::routing() => {
            give_way(
                table,
                &migration,
                "pg_partition_predict.routing was turned off",
            )?;
            Ok(Next::Again)
        }
        MigrationState::Moving => move_batch(table, &migration, batch_rows, superuser),
        MigrationState::Attaching => finish(table, &migration, superuser),
        MigrationState::Yielding => move_back(table, &migration, batch_rows, superuser),
        MigrationState::Yielded | MigrationState::Done => Err(PredictError::Internal(format!(
            "migration {} is over but was taken for active",
            migration.id
        ))),
    }
}

/// The names, rebuilt from their OIDs, of the tables a migration moves
/// rows between: `(DEFAULT, shadow)`.
fn endpoints(m: &Migration) -> Result<(String, String)> {
    Ok((
        catalog::table::relation_name(m.default_partition)?,
        catalog::table::relation_name(m.shadow)?,
    ))
}

/// Withdraws an override whose migration is over (committed by an earlier
/// step, so no query can need it any more). A yield is reported once, here.
fn tidy_override(table: &PartitionedTable, current: Option<&Migration>) -> Result<Option<Next>> {
    let Some(o) = routing::override_of(table.oid) else {
        return Ok(None);
    };
    if current.is_some_and(|m| m.id == o.migration_id) {
        return Ok(None);
    }
    let ended = migrations::outcome(o.migration_id)?;
    routing::withdraw(table.oid)?;
    relation::invalidate_plans(table.oid);
    match ended {
        Some((MigrationState::Yielded, message)) => Ok(Some(Next::Yielded(
            message.unwrap_or_else(|| "it could not take its locks".into()),
        ))),
        _ => Ok(None),
    }
}

/// An override is published at once, for every backend, and the state file
/// outlives a rollback: a step that publishes or moves must be a
/// transaction that commits, never one of several in a transaction block.
/// (The worker runs each step in a subtransaction of a transaction that
/// commits it, which is never a block of several.)
fn refuse_in_transaction_block(caller: Caller) -> Result<()> {
    if caller == Caller::User && backend::in_transaction_block() {
        return Err(PredictError::InTransactionBlock("a migration step"));
    }
    Ok(())
}

fn range_text(table: &PartitionedTable, from: i64, to: i64) -> String {
    format!(
        "{}, {}",
        table.key_type.value(from),
        table.key_type.value(to)
    )
}

/// Picks the first range DEFAULT holds rows of and starts moving it.
fn start(table: &PartitionedTable, caller: Caller, superuser: bool) -> Result<Next> {
    let Some(default) = table.default_partition else {
        return Ok(Next::Done);
    };
    if caller == Caller::Worker && !history::collector_saw_keys_in(table, default)? {
        quarantine::nothing_held(table)?;
        return Ok(Next::Done);
    }
    // Outlier keys stay in DEFAULT (act::quarantine); once judged, DEFAULT
    // is not read again until something is written to it or the data
    // catches up with them.
    let bounds = quarantine::bounds(table)?;
    if quarantine::only_known_outliers(table, default, &bounds)? {
        return Ok(Next::Done);
    }
    let stranded = quarantine::judge(table, default, stranded_rows(table, default)?, &bounds)?;
    if stranded.is_empty() {
        return Ok(Next::Done);
    }
    if !gucs::routing() {
        return match caller {
            Caller::User => Err(PredictError::RoutingOff(table.name.to_string())),
            Caller::Worker | Caller::WorkerAfterLoad => Ok(Next::Done),
        };
    }
    if caller != Caller::User && migrations::yielded_within(table.oid, YIELD_BACKOFF_MINUTES)? {
        return Ok(Next::Done);
    }
    refuse_in_transaction_block(caller)?;
    if !superuser {
        refuse_if_rows_have_side_effects(table, default)?;
    }
    let destination = destinations(
        table,
        &stranded,
        planner::plan_migration,
        1,
        Origin::Migration,
    )?
    .pop();
    let Some(Destination {
        range,
        table: shadow,
        name: shadow_name,
        ..
    }) = destination
    else {
        return Ok(Next::Done);
    };
    // The override is exact only if every row of the shadow came out of DEFAULT.
    if Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {shadow_name})"))?
        .unwrap_or(false)
    {
        return Err(PredictError::ShadowNotEmpty(shadow_name));
    }
    let id = migrations::start(
        table.oid,
        shadow,
        &shadow_name,
        default,
        range.from,
        range.to,
        table.key_type.value(range.from).to_text(),
        table.key_type.value(range.to).to_text(),
    )?;
    let migration = Migration {
        id,
        shadow,
        default_partition: default,
        from: range.from,
        to: range.to,
        state: MigrationState::Starting,
        rows_moved: 0,
    };
    publish(table, &migration)?;
    Ok(Next::Again)
}

/// Publishes the override and makes every backend re-plan cached plans of
/// the parent (the relcache invalidation is sent when this step commits).
fn publish(table: &PartitionedTable, m: &Migration) -> Result<()> {
    routing::publish(
        Override {
            database: backend::database_id().to_u32(),
            parent: table.oid.to_u32(),
            shadow: m.shadow.to_u32(),
            default_partition: m.default_partition.to_u32(),
            migration_id: m.id,
            since: backend::now_timestamp(),
            finishing: false,
        },
        routing::Quota {
            per_database: gucs::max_migrations_per_database(),
            per_role: gucs::max_migrations_per_role(),
            owner_of: |parent| relation::owner(pg_sys::Oid::from(parent)),
        },
    )?;
    relation::invalidate_plans(table.oid);
    Ok(())
}

/// Groups of rows in DEFAULT with a key (NULL keys can go nowhere else).
fn stranded_rows(table: &PartitionedTable, default: pg_sys::Oid) -> Result<Vec<Stranded>> {
    let default_name = catalog::table::relation_name(default)?;
    Ok(key_groups(table, &format!("ONLY {default_name}"))?.groups)
}

/// Without superuser rights, triggers and foreign-key actions would fire on
/// every moved row (a DELETE and an INSERT): refuse rather than surprise.
fn refuse_if_rows_have_side_effects(table: &PartitionedTable, default: pg_sys::Oid) -> Result<()> {
    let (triggers, referenced) = Spi::get_two_with_args::<bool, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $2 AND NOT tgisinternal),
                EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid = $1)",
        &[table.oid.into(), default.into()],
    )?;
    if triggers == Some(true) || referenced == Some(true) {
        return Err(PredictError::SideEffects {
            table: table.name.to_string(),
            what: if triggers == Some(true) {
                "triggers"
            } else {
                "foreign-key actions"
            },
        });
    }
    Ok(())
}

/// Waits for the transactions that held a lock on the parent when this
/// step began, except those waiting in the planner hook for this
/// migration; false on timeout.
fn wait_for_earlier_transactions(
    parent: pg_sys::Oid,
    holding: Conflicting,
    timeout: Duration,
) -> bool {
    locks::wait_for_holders(&locks::lock_holders(parent, holding), timeout, |h| {
        routing::is_waiting_for(h.backend_id, h.local_xid, parent)
    })
}

fn pass_barrier(table: &PartitionedTable, m: &Migration) -> Result<Next> {
    if wait_for_earlier_transactions(table.oid, Conflicting::WithEveryone, BARRIER_TIMEOUT) {
        migrations::set_state(m.id, MigrationState::Moving, None)?;
        return Ok(Next::Again);
    }
    // Nothing has moved: the override can go at once.
    let reason = format!(
        "transactions that were using {} did not end within {} s",
        table.name,
        BARRIER_TIMEOUT.as_secs()
    );
    migrations::set_state(m.id, MigrationState::Yielded, Some(&reason))?;
    routing::withdraw(table.oid)?;
    alerts::event(
        table.oid,
        AlertKind::Migration,
        Severity::Warning,
        &format!(
            "migration of [{}) did not start: {reason}",
            range_text(table, m.from, m.to)
        ),
        json!({"outcome": "yielded", "migration": m.id, "reason": reason}),
    )?;
    Ok(Next::Yielded(reason))
}

/// Which way rows move.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From DEFAULT into the shadow.
    OutOfDefault,
    /// From the shadow back into DEFAULT (a migration that gives way).
    BackIntoDefault,
}

/// Moves up to `limit` rows of `[from, to)` (all when `None`) between
/// DEFAULT and the shadow in the current transaction; returns how many.
///
/// A moved row must not fire DEFAULT's triggers or foreign-key actions
/// (it only changes partition), which `session_replication_role =
/// replica` prevents; but replica mode turns every trigger and foreign key
/// of every table off, a superuser's power, for whatever code runs in it.
/// So out of DEFAULT, the rows are copied into the shadow in normal mode
/// (its CHECKs, indexes and types are the owner's code, run as the owner),
/// and only the DELETE from DEFAULT, which runs no such code, is in replica
/// mode; and that only once DEFAULT is locked against new triggers, rules
/// and policies and found to have none that would run in it. Back into
/// DEFAULT, the INSERT runs the owner's code: in replica mode only for a
/// table a superuser owns (its code gains nothing), otherwise in normal
/// mode, where DEFAULT's triggers fire as the owner's.
fn move_rows(
    table: &PartitionedTable,
    m: &Migration,
    limit: Option<i64>,
    direction: Direction,
    superuser: bool,
) -> Result<i64> {
    let (default_name, shadow_name) = endpoints(m)?;
    let columns = crate::catalog::table::copied_columns(table)?;
    let key = quote_identifier(&table.key_column);
    let in_range = format!(
        "{key} >= {} AND {key} < {}",
        table.key_type.value(m.from).to_sql_literal(),
        table.key_type.value(m.to).to_sql_literal()
    );
    let (source, destination) = match direction {
        Direction::OutOfDefault => (&default_name, &shadow_name),
        Direction::BackIntoDefault => (&shadow_name, &default_name),
    };
    // Rows locked by someone else are left for the final step, which waits
    // for them; a batch never waits on a row lock.
    let locking = match limit {
        Some(n) => format!("LIMIT {n} FOR UPDATE SKIP LOCKED"),
        None => "FOR UPDATE".to_string(),
    };
    if direction == Direction::BackIntoDefault {
        // Otherwise DEFAULT's triggers fire for the rows that go back, as
        // the owner's: refusing would leave the table's writes waiting on a
        // move that can neither finish nor give way.
        let replica = superuser && catalog::table::owned_by_superuser(table)?;
        let statement = format!(
            "WITH moved AS (DELETE FROM ONLY {source}
                             WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY {source} WHERE {in_range} {locking}))
                            RETURNING {columns}),
                  placed AS (INSERT INTO {destination} ({columns}) OVERRIDING SYSTEM VALUE
                             SELECT {columns} FROM moved RETURNING 1)
             SELECT (SELECT pg_catalog.count(*) FROM moved), (SELECT pg_catalog.count(*) FROM placed)"
        );
        let (taken, placed) = with_replica(replica, || Spi::get_two::<i64, i64>(&statement))?;
        let (taken, placed) = (taken.unwrap_or(0), placed.unwrap_or(0));
        if placed != taken {
            // A trigger of DEFAULT's returned NULL: the rows stay in the
            // shadow, where queries still see them, rather than vanish.
            return Err(PredictError::ShadowTurnsRowsAway {
                shadow: destination.clone(),
                reason: format!("{placed} of {taken} row(s) going back reached it"),
            });
        }
        return Ok(placed);
    }
    let rows: Vec<String> = Spi::get_one::<Vec<String>>(&format!(
        "SELECT ARRAY(SELECT ctid::text FROM ONLY {source} WHERE {in_range} {locking})"
    ))?
    .unwrap_or_default();
    if rows.is_empty() {
        return Ok(0);
    }
    // A rule would send the rows elsewhere: then they must stay where they are.
    if catalog::table::has_rules(m.shadow)? {
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: destination.clone(),
            reason: "it has a rule".into(),
        });
    }
    let copied = Spi::get_one_with_args::<i64>(
        &format!(
            "WITH placed AS (INSERT INTO {destination} ({columns}) OVERRIDING SYSTEM VALUE
                             SELECT {columns} FROM ONLY {source} WHERE ctid = ANY ($1::pg_catalog.tid[])
                             RETURNING 1)
             SELECT pg_catalog.count(*) FROM placed"
        ),
        &[rows.clone().into()],
    )?
    .unwrap_or(0);
    if copied != rows.len() as i64 {
        // A trigger or rule of the shadow's kept rows out: never delete
        // what did not arrive.
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: destination.clone(),
            reason: format!(
                "{copied} of {} row(s) reached it (a trigger returned NULL)",
                rows.len()
            ),
        });
    }
    relation::lock_row_exclusive(m.default_partition);
    let replica = superuser
        && catalog::table::runs_nothing_on_delete_in_replica_mode(
            m.default_partition,
            table.owner_oid,
        )?;
    if !replica {
        refuse_if_rows_have_side_effects(table, m.default_partition)?;
    }
    let deleted = with_replica(replica, || {
        Spi::get_one_with_args::<i64>(
            &format!(
                "WITH gone AS (DELETE FROM ONLY {source} WHERE ctid = ANY ($1::pg_catalog.tid[]) RETURNING 1)
                 SELECT pg_catalog.count(*) FROM gone"
            ),
            &[rows.into()],
        )
    })?
    .unwrap_or(0);
    if deleted != copied {
        // Row-level security or a trigger of DEFAULT's kept rows in it: the
        // copies go with the rollback.
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: source.clone(),
            reason: format!("{copied} row(s) were copied out of it but {deleted} deleted"),
        });
    }
    Ok(deleted)
}

/// Runs `f` in replica mode when `replica` (the caller is a superuser).
fn with_replica<R>(replica: bool, f: impl FnOnce() -> R) -> R {
    if replica {
        with_superuser_settings(&[(c"session_replication_role", "replica")], f)
    } else {
        f()
    }
}

fn move_batch(
    table: &PartitionedTable,
    m: &Migration,
    batch_rows: i64,
    superuser: bool,
) -> Result<Next> {
    let moved = move_rows(
        table,
        m,
        Some(batch_rows),
        Direction::OutOfDefault,
        superuser,
    )?;
    migrations::record_batch(m.id, moved)?;
    if moved == batch_rows {
        return Ok(Next::Again);
    }
    // DEFAULT holds no more of the range. From now on INSERTs wait in the
    // planner hook until the ATTACH, and cached plans (which do not pass
    // the hook) are invalidated when this commits: no INSERT may route a
    // row to DEFAULT and then meet DEFAULT's new partition constraint.
    migrations::set_state(m.id, MigrationState::Attaching, None)?;
    routing::set_finishing(table.oid, true);
    relation::invalidate_plans(table.oid);
    Ok(Next::Again)
}

/// The last, short transaction: locks, the rows that arrived since the last
/// batch, ATTACH. The override is withdrawn by the next step, after this
/// one has committed (until then the hook sees the shadow is attached and
/// leaves queries alone).
fn finish(table: &PartitionedTable, m: &Migration, superuser: bool) -> Result<Next> {
    let (default_name, shadow_name) = endpoints(m)?;
    // INSERTs that were already running when the hook began holding them.
    if !wait_for_earlier_transactions(table.oid, Conflicting::WithWriters, writers_timeout()) {
        give_way(
            table,
            m,
            "transactions writing the table did not end in time for the ATTACH",
        )?;
        return Ok(Next::Again);
    }
    let locked = run_with_lock_retry_watching(
        &table.name,
        "attaching a migrated range",
        &format!(
            "LOCK TABLE ONLY {} IN SHARE UPDATE EXCLUSIVE MODE; LOCK TABLE {shadow_name}, {default_name} IN ACCESS EXCLUSIVE MODE",
            table.name.quoted(),
        ),
        &[m.shadow, m.default_partition],
    );
    match locked {
        Ok(()) => {}
        Err(e @ PredictError::LockUnavailable { .. }) => {
            give_way(table, m, &e.to_string())?;
            return Ok(Next::Again);
        }
        Err(e) => return Err(e),
    }
    let remainder = move_rows(table, m, None, Direction::OutOfDefault, superuser)?;
    activate::attach(table, m.shadow, m.from, m.to, &shadow_name)?;
    let total = m.rows_moved + remainder;
    migrations::set_rows_moved(m.id, total)?;
    migrations::set_state(m.id, MigrationState::Done, None)?;
    alerts::event(
        table.oid,
        AlertKind::Migration,
        Severity::Info,
        &format!(
            "migration finished: {total} row(s) of [{}) moved out of DEFAULT; {} attached",
            range_text(table, m.from, m.to),
            shadow_name
        ),
        json!({"outcome": "finished", "migration": m.id, "rows": total, "partition": shadow_name,
               "range_start": table.key_type.value(m.from).to_text(),
               "range_end": table.key_type.value(m.to).to_text()}),
    )?;
    Ok(Next::Again)
}

/// The migration's one event is raised when the rows are back in DEFAULT
/// (`move_back`), not now.
fn give_way(table: &PartitionedTable, m: &Migration, reason: &str) -> Result<()> {
    migrations::set_state(m.id, MigrationState::Yielding, Some(reason))?;
    routing::set_finishing(table.oid, false);
    Ok(())
}

fn move_back(
    table: &PartitionedTable,
    m: &Migration,
    batch_rows: i64,
    superuser: bool,
) -> Result<Next> {
    let (_, shadow_name) = endpoints(m)?;
    let moved = move_rows(
        table,
        m,
        Some(batch_rows),
        Direction::BackIntoDefault,
        superuser,
    )?;
    migrations::record_batch(m.id, -moved)?;
    if moved == batch_rows {
        return Ok(Next::Again);
    }
    let left = Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {shadow_name})"))?
        .unwrap_or(false);
    if !left {
        migrations::set_state(m.id, MigrationState::Yielded, None)?;
        alerts::event(
            table.oid,
            AlertKind::Migration,
            Severity::Warning,
            &format!(
                "migration of [{}) gave way to other sessions: its rows are back in DEFAULT and it will be tried again",
                range_text(table, m.from, m.to)
            ),
            json!({"outcome": "yielded", "migration": m.id}),
        )?;
    }
    Ok(Next::Again)
}

/// How long the final step waits for writers that were already running:
/// as long as its lock requests may take in all.
fn writers_timeout() -> Duration {
    let attempts = u64::from(gucs::lock_retries()) + 1;
    Duration::from_millis(u64::try_from(gucs::lock_timeout_ms()).unwrap_or(100) * attempts)
        .max(Duration::from_secs(1))
}

/// Rows per batch when the worker moves rows.
pub const WORKER_BATCH_ROWS: i64 = 10_000;

/// The subject of the condition "the worker's migration steps of this
/// table fail".
const FAILED_STEP: &str = "migration step";

/// A step run by the worker: a failure is rolled back and raised as an
/// alert; the worker goes on with the next table.
pub fn step_isolated(parent: pg_sys::Oid, caller: Caller) -> Next {
    let attempt = try_in_subtransaction(|| or_report(step(parent, WORKER_BATCH_ROWS, caller)));
    match attempt {
        Ok(next) => {
            let resolved = try_in_subtransaction(|| {
                or_report(with_pinned_settings(|| {
                    alerts::resolve(
                        parent,
                        Condition::new(AlertKind::Failure, FAILED_STEP),
                        "a later migration step succeeded",
                    )
                }))
            });
            if let Err(e) = resolved {
                pgrx::log!(
                    "pg_partition_predict: could not resolve a failed migration step: {}",
                    e.message
                );
            }
            next
        }
        Err(caught) => {
            let recorded = try_in_subtransaction(|| {
                or_report(with_pinned_settings(|| {
                    alerts::raise(
                        parent,
                        Condition::new(AlertKind::Failure, FAILED_STEP),
                        Severity::Warning,
                        &format!("migration step failed: {}", caught.message),
                        json!({"sqlstate": format!("{:?}", caught.sqlstate)}),
                    )
                }))
            });
            if let Err(e) = recorded {
                pgrx::log!(
                    "pg_partition_predict: could not record a failed migration step: {}",
                    e.message
                );
            }
            Next::Failed(caught.message)
        }
    }
}

/// Withdraws overrides of tables (and databases) that were dropped
/// mid-migration (their rows of `migrations` went with them), so their
/// slots are free again and queries stop paying for a look at them.
pub fn withdraw_orphaned_overrides() {
    match Spi::connect(|client| {
        client
            .select("SELECT oid FROM pg_catalog.pg_database", None, &[])?
            .map(|r| {
                r.get::<pg_sys::Oid>(1)?.map(|o| o.to_u32()).ok_or_else(|| {
                    PredictError::Internal("NULL catalog column pg_database.oid".into())
                })
            })
            .collect::<Result<Vec<u32>>>()
    }) {
        Ok(databases) => {
            if let Err(e) = routing::withdraw_other_databases(&databases) {
                pgrx::log!("pg_partition_predict: could not withdraw the overrides of dropped databases: {e}");
            }
        }
        Err(e) => pgrx::log!("pg_partition_predict: could not list databases: {e}"),
    }
    for o in routing::overrides_here() {
        let parent = pg_sys::Oid::from(o.parent);
        if !relation::exists(parent) {
            if let Err(e) = routing::withdraw(parent) {
                pgrx::log!("pg_partition_predict: could not withdraw the override of dropped table {}: {e}", o.parent);
            }
        }
    }
}

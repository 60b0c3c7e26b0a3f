//! Moving rows out of DEFAULT.
//!
//! A range of DEFAULT moves into its partition in one transaction: the
//! rows are copied into the range's shadow and deleted from DEFAULT, and
//! the shadow is attached, all committed together. Every observer sees the
//! rows in DEFAULT before that commit and in their partition after it,
//! never anywhere else: a query on the primary, a hot standby at any LSN,
//! a dump's snapshot, a base backup. Two steps, each its own transaction
//! (`migrate_default()` commits between them, the worker runs each in a
//! transaction of its own); the state lives in `state::migrations`:
//!
//! - *start*: pick the range (an existing shadow, or a new right-sized one),
//!   publish the routing override (shared memory only: a crash ends the
//!   move, so no restart or base backup may keep it), record the migration
//!   as `starting`. From its commit on, a query
//!   that writes the table waits in the planner hook until the move is over
//!   (cached plans are invalidated), so that no INSERT routes a row to
//!   DEFAULT by a partition map from before the ATTACH and then meets
//!   DEFAULT's new partition constraint.
//! - *move*: wait for the writers that were running before the override,
//!   then, in a subtransaction: lock DEFAULT against writers (plain reads go
//!   on), copy and delete the range's rows, ATTACH (an ACCESS EXCLUSIVE lock
//!   on DEFAULT, taken with `lock_timeout` and retries). If the locks cannot
//!   be had, nothing moved: the migration is over (`yielded`), the rows stay
//!   in DEFAULT, and it is tried again later. Any other failure ends it too.
//!   Either way the override goes, so writers never wait past one attempt.
//!
//! Rows never wait anywhere between the two (they are never put back into
//! DEFAULT, whose triggers would fire). Migrations begun by version 0.2
//! moved rows into the shadow in batches while the override made queries
//! read it too; such a migration is concluded by the same move, and keeps
//! its override until its rows are attached.

use std::time::Duration;

use partition_core::planner::{self, Stranded};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgTryBuilder;
use serde_json::json;

use super::activate;
use super::key_groups::{destinations, key_groups, Destination};
use super::quarantine;
use crate::catalog::table::Published;
use crate::catalog::{self, PartitionedTable};
use crate::error::{or_report, PredictError, Result};
use crate::gucs;
use crate::pg::backend;
use crate::pg::lock_retry::run_with_lock_retry_unless_long_holder;
use crate::pg::locks::{self, lock_table_steps, Conflicting};
use crate::pg::relation;
use crate::pg::session::{as_role, unrestricted, with_pinned_settings, with_superuser_settings};
use crate::pg::stand_aside;
use crate::pg::subxact::{in_subtransaction_kept_if_ok, try_in_subtransaction};
use crate::shmem::routing::{self, Override};
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::history;
use crate::state::migrations::{self, Migration, MigrationState};
use crate::state::shadows::Origin;

/// After a migration of a table was put off, the worker leaves the table alone this long.
const YIELD_BACKOFF_MINUTES: i32 = 10;

/// What the caller should do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run the next step (after committing this one).
    Again,
    /// Nothing (more) to move.
    Done,
    /// The move could not take its locks (or routing is off): nothing
    /// moved, the rows are still in DEFAULT; tried again later.
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

/// One step of the migration of `parent`'s DEFAULT. (`batch_rows` is
/// checked for the SQL signature's sake: since 0.3 a range moves whole.)
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
        // Refused whatever the step would do: `migrate_default()` commits
        // after each step, which a transaction block cannot.
        refuse_in_transaction_block(caller)?;
        as_role(table.owner_oid, || {
            stand_aside::as_migrator(|| step_as_owner(&table, caller, superuser))
        })
    })
}

fn step_as_owner(table: &PartitionedTable, caller: Caller, superuser: bool) -> Result<Next> {
    let current = migrations::active(table.oid)?;
    if let Some(next) = tidy_override(table, current.as_ref())? {
        return Ok(next);
    }
    let Some(migration) = current else {
        return start(table, caller, superuser);
    };
    if routing::override_of(table.oid).is_none_or(|o| o.migration_id != migration.id) {
        if !rows_wait_in_shadow(&migration)? {
            // Its move failed or was cancelled (and withdrew the override),
            // or a restart ended it: over, and a new one starts.
            migrations::set_state(
                migration.id,
                MigrationState::Yielded,
                Some(migrations::INTERRUPTED),
            )?;
            // Its error path withdrew the override without telling standbys.
            routing::forget_on_standbys(table.oid);
            // Its rows are still in DEFAULT, whatever the statistics say
            // (a crash restart resets them).
            let caller = match caller {
                Caller::Worker => Caller::WorkerAfterLoad,
                other => other,
            };
            return start(table, caller, superuser);
        }
        // Rows of a 0.2 migration wait in the shadow: queries must read
        // them again, and the move waits for those planned without it.
        publish(table, &migration, true)?;
        return Ok(Next::Again);
    }
    conclude(table, &migration, superuser)
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

/// What its publications make impossible, checked before a move starts
/// (and before DEFAULT is scanned, as a refused move would be every cycle),
/// when DEFAULT holds a row: a publication a move cannot serve, no replica
/// identity, an owner who may not create the temporary table a published
/// move needs. Returns whether a publication replicates the moved rows (a
/// move then goes through the temporary table).
fn refuse_what_publications_forbid(table: &PartitionedTable, default: pg_sys::Oid) -> Result<bool> {
    let published = catalog::table::published(default)?;
    if (published.unserved.is_none() && !published.rows) || !catalog::table::holds_rows(default)? {
        return Ok(published.rows);
    }
    refuse_unserved_publications(table, &published)?;
    if published.rows {
        // A published DELETE names its rows by the replica identity, of
        // DEFAULT now and of the new partition later (the parent's).
        for relation in [default, table.oid] {
            if !catalog::table::has_replica_identity(relation)? {
                return Err(PredictError::NoReplicaIdentity {
                    default: catalog::table::relation_name(relation)?,
                });
            }
        }
        if !catalog::table::may_create_temporary_tables(table.owner_oid)? {
            return Err(PredictError::NoTemporaryTables(table.owner.clone()));
        }
    }
    Ok(published.rows)
}

/// Picks the first range DEFAULT holds rows of and starts moving it.
fn start(table: &PartitionedTable, caller: Caller, superuser: bool) -> Result<Next> {
    let Some(default) = table.default_partition else {
        return Ok(Next::Done);
    };
    // The collector saw no key in DEFAULT: nothing to move, unless outlier
    // keys are held there (the collector's view of DEFAULT can miss them,
    // and their condition must last exactly as long as they do: it is
    // judged below, without reading DEFAULT while nothing was written to it).
    if caller == Caller::Worker
        && !history::collector_saw_keys_in(table, default)?
        && !quarantine::holds_any(table)?
    {
        return Ok(Next::Done);
    }
    // Outlier keys stay in DEFAULT (act::quarantine); once judged, DEFAULT
    // is not read again until something is written to it or the data
    // catches up with them.
    let bounds = quarantine::bounds(table)?;
    if quarantine::only_known_outliers(table, default, &bounds)? {
        return Ok(Next::Done);
    }
    // Refused before DEFAULT is scanned (a refused move would scan it every
    // cycle), if it holds a row at all.
    let published = refuse_what_publications_forbid(table, default)?;
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
    if !may_use_replica_mode(table, superuser)? {
        refuse_if_rows_have_side_effects(table, default, published)?;
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
    activate::unforce_row_security(table, shadow, &shadow_name)?;
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
    publish(table, &migration, false)?;
    Ok(Next::Again)
}

/// Publishes the override and makes every backend re-plan cached plans of
/// the parent (the relcache invalidation is sent when this step commits).
fn publish(table: &PartitionedTable, m: &Migration, rows_waiting: bool) -> Result<()> {
    withdraw_orphaned_overrides_here();
    routing::publish(
        Override {
            database: backend::database_id().to_u32(),
            parent: table.oid.to_u32(),
            shadow: m.shadow.to_u32(),
            default_partition: m.default_partition.to_u32(),
            migration_id: m.id,
            since: backend::now_timestamp(),
            durable: rows_waiting,
            replayed: false,
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

/// Whether the move's DELETE from DEFAULT may run in replica mode: only
/// for a superuser, on a table a superuser owns. Replica mode turns every
/// trigger and foreign key of every table off for whatever code runs in
/// it, and planning a DELETE runs code of the table's owner (an index's
/// predicate or expressions folded, an operator class's support function
/// while estimating): for any other owner, that would be a superuser's
/// power in the owner's hands.
fn may_use_replica_mode(table: &PartitionedTable, superuser: bool) -> Result<bool> {
    Ok(superuser && catalog::table::owned_by_superuser(table)?)
}

/// Outside replica mode, DEFAULT's DELETE triggers and foreign-key actions
/// would fire on every moved row: refuse rather than surprise. (Its
/// INSERT triggers do not fire: rows are only ever deleted from it.)
fn refuse_if_rows_have_side_effects(
    table: &PartitionedTable,
    default: pg_sys::Oid,
    published: bool,
) -> Result<()> {
    // DELETE triggers (TRIGGER_TYPE_DELETE); INSERT ones too (TRIGGER_TYPE_INSERT)
    // when the moved rows are inserted after the ATTACH for a publication
    // (`place_published`).
    let kinds: i32 = if published { 8 | 4 } else { 8 };
    let (triggers, referenced) = crate::pg::spi::select_two::<bool, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                         WHERE tgrelid = $2 AND NOT tgisinternal AND tgenabled <> 'D'
                           AND (tgtype::pg_catalog.int4 OPERATOR(pg_catalog.&) $3) <> 0),
                EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid = $1)",
        &[table.oid.into(), default.into(), kinds.into()],
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

/// Whether rows of the migration wait in its shadow (only a migration begun
/// by version 0.2 can have moved rows before its ATTACH).
fn rows_wait_in_shadow(m: &Migration) -> Result<bool> {
    if m.rows_moved > 0 {
        return Ok(true);
    }
    let (_, shadow_name) = endpoints(m)?;
    Ok(
        Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {shadow_name})"))?
            .unwrap_or(false),
    )
}

/// The move: waits for writers that may have planned without the
/// override, then moves the range and attaches it in a subtransaction.
/// When it cannot (its locks, the writers it waits for, routing turned
/// off), nothing has moved: the migration ends there and queries go on at
/// once. Any other failure withdraws the override before it is raised.
fn conclude(table: &PartitionedTable, m: &Migration, superuser: bool) -> Result<Next> {
    let rows_waiting = rows_wait_in_shadow(m)?;
    if rows_waiting {
        return conclude_attempt(table, m, superuser, rows_waiting);
    }
    // Nothing has moved when the attempt fails, and the migration's state
    // rolls back with the error: the override goes with it, whether the
    // attempt returns the error or a cancel (statement_timeout, the
    // worker's table_time_limit, a terminated backend) ends it anywhere,
    // or writers would wait for a move that is not coming.
    let parent = table.oid;
    let log_failure = |e: PredictError| {
        pgrx::log!(
            "pg_partition_predict: could not withdraw the override of {}: {e}",
            parent.to_u32()
        );
    };
    let outcome = PgTryBuilder::new(|| conclude_attempt(table, m, superuser, false))
        .catch_others(|caught| {
            if let Err(e) = routing::withdraw_unlogged(parent) {
                log_failure(e);
            }
            caught.rethrow()
        })
        .execute();
    if outcome.is_err() {
        if let Err(e) = routing::withdraw(parent) {
            log_failure(e);
        }
        relation::invalidate_plans(parent);
    }
    outcome
}

fn conclude_attempt(
    table: &PartitionedTable,
    m: &Migration,
    superuser: bool,
    rows_waiting: bool,
) -> Result<Next> {
    let attempt = if !gucs::routing() && !rows_waiting {
        Err(NotNow("pg_partition_predict.routing was turned off".into()))
    } else if !wait_for_earlier_transactions(table.oid, Conflicting::WithWriters, writers_timeout())
    {
        Err(NotNow(
            "transactions writing the table did not end in time for the move".into(),
        ))
    } else {
        // Standbys read the shadow too while the move's commit replays.
        routing::announce(table.oid);
        in_subtransaction_kept_if_ok(|| move_and_attach(table, m, superuser)).map_err(|e| match e {
            PredictError::LockUnavailable { .. }
            | PredictError::LockHeldByLongTransaction { .. } => NotNow(e.to_string()),
            other => Failure(other),
        })
    };
    match attempt {
        Ok(moved) => {
            finished(table, m, moved)?;
            Ok(Next::Again)
        }
        Err(NotNow(reason)) if rows_waiting => {
            // The rows already moved stay where queries read them: the
            // override stays too, and the move is tried again later.
            migrations::set_state(m.id, m.state, Some(&reason))?;
            Ok(Next::Yielded(reason))
        }
        Err(NotNow(reason)) => {
            put_off(table, m, &reason)?;
            Ok(Next::Yielded(reason))
        }
        Err(Failure(e)) => Err(e),
    }
}

/// Why a move did not happen.
enum Unmoved {
    /// It could not have its locks, or routing is off: tried again later.
    NotNow(String),
    /// It failed; raised.
    Failure(PredictError),
}
use Unmoved::{Failure, NotNow};

/// In one transaction: DEFAULT locked against writers, the range's rows
/// copied into the shadow and deleted from DEFAULT, the shadow attached.
fn move_and_attach(table: &PartitionedTable, m: &Migration, superuser: bool) -> Result<i64> {
    let (default_name, shadow_name) = endpoints(m)?;
    // EXCLUSIVE lets plain reads go on while the rows are copied (queries
    // read the shadow too while the override is up); only the ATTACH takes
    // DEFAULT and the shadow from them, for its scan.
    run_with_lock_retry_unless_long_holder(
        &table.name,
        "moving a range out of DEFAULT",
        &format!(
            "LOCK TABLE ONLY {} IN SHARE UPDATE EXCLUSIVE MODE; LOCK TABLE {default_name}, {shadow_name} IN EXCLUSIVE MODE",
            table.name.quoted(),
        ),
        &[m.shadow, m.default_partition],
    )?;
    let published = catalog::table::published(m.default_partition)?;
    refuse_unserved_publications(table, &published)?;
    // For a published table the rows wait in a temporary table, never
    // published, and reach the shadow once it is a partition (see
    // `place_published`); otherwise they are copied into the shadow at once.
    let via = if published.rows {
        Via::Temporary
    } else {
        Via::Shadow
    };
    let moved = move_rows(table, m, superuser, via)?;
    // Before the commit: a REPEATABLE READ snapshot taken before it must
    // find the move settled whenever it plans (see `routing::Settled`).
    routing::settle(
        table.oid,
        m.default_partition,
        backend::top_full_transaction_id(),
        table.owner_oid,
    );
    // The shadow before DEFAULT, the order in which a query reading the
    // parent under the override locks them (ATTACH would take DEFAULT
    // first): the other order deadlocks with such a query until one of the
    // two times out. Taken in each attempt of the ATTACH, so that an
    // attempt that times out (waiting for a table a foreign key needs, say)
    // does not keep readers out while it backs off.
    activate::attach_after(
        table,
        m.shadow,
        m.from,
        m.to,
        &shadow_name,
        &format!("LOCK TABLE {shadow_name}, {default_name} IN ACCESS EXCLUSIVE MODE;"),
        true,
    )?;
    if via == Via::Temporary {
        place_published(table, m, superuser, moved)?;
    }
    activate::force_row_security_like_parent(table, m.shadow, &shadow_name)?;
    Ok(moved)
}

/// Where a move puts the rows it takes out of DEFAULT before the ATTACH.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Shadow,
    Temporary,
}

/// The temporary table a published move keeps its rows in until the ATTACH
/// (dropped at commit, or with the move's subtransaction).
fn temporary_name(m: &Migration) -> String {
    format!("pg_temp.pg_partition_predict_move_{}", m.id)
}

/// A publication a move cannot serve (`Published::unserved`) would give a
/// subscriber the moved rows twice, or lose them: refused, before anything
/// moves. (One of inserts only, alone and naming the table, is served: the
/// rows are copied into the shadow before its ATTACH, which it does not
/// replicate, and the deletes from DEFAULT are not replicated either.)
fn refuse_unserved_publications(table: &PartitionedTable, published: &Published) -> Result<()> {
    match &published.unserved {
        Some(publication) => Err(PredictError::PublishedHalfway {
            table: table.name.to_string(),
            publication: publication.clone(),
        }),
        None => Ok(()),
    }
}

/// For logical replication, in the move's transaction, after its ATTACH:
/// the moved rows go from the temporary table into the shadow, now a
/// partition of the parent.
///
/// A publication replicates the DELETE from DEFAULT; an INSERT into the
/// shadow before the ATTACH would not be replicated (through the parent),
/// or would be under the shadow's own name (`FOR ALL TABLES`), which no
/// subscriber has. Inserted after the ATTACH, the rows reach subscribers
/// through the parent, after all the deletes, in the same transaction. The
/// owner's triggers are not fired: in replica mode on a superuser's table
/// (as the DELETE), otherwise the move is refused if the shadow has INSERT
/// or DELETE triggers.
fn place_published(
    table: &PartitionedTable,
    m: &Migration,
    superuser: bool,
    rows: i64,
) -> Result<()> {
    let (_, shadow_name) = endpoints(m)?;
    let temporary = temporary_name(m);
    let columns = crate::catalog::table::copied_columns(table)?;
    // Deletes of these rows will be published too: a shadow made before the
    // DBA gave the parent REPLICA IDENTITY FULL takes it now.
    if catalog::table::replica_identity_full(table.oid)?
        && !catalog::table::has_replica_identity(m.shadow)?
    {
        stand_aside::as_attacher(|| {
            Spi::run(&format!("ALTER TABLE {shadow_name} REPLICA IDENTITY FULL"))
        })?;
    }
    let replica = may_use_replica_mode(table, superuser)?
        && catalog::table::runs_nothing_on_delete_in_replica_mode(m.shadow, table.owner_oid)?;
    if !replica {
        refuse_if_rows_have_side_effects(table, m.shadow, true)?;
    }
    let placed = with_replica(replica, || {
        // Rows a 0.2 migration moved into the shadow before the upgrade
        // were never published either: they join the others (their deletes
        // are skipped by subscribers, which lack them), all deleted before
        // any is inserted.
        let waiting = if m.rows_moved > 0 {
            Spi::get_one::<i64>(&format!(
                "WITH taken AS (DELETE FROM ONLY {shadow_name} RETURNING {columns}),
                      kept AS (INSERT INTO {temporary} ({columns}) SELECT {columns} FROM taken RETURNING 1)
                 SELECT pg_catalog.count(*) FROM kept"
            ))?
            .unwrap_or(0)
        } else {
            0
        };
        let placed = Spi::get_one::<i64>(&format!(
            "WITH placed AS (INSERT INTO {shadow_name} ({columns}) OVERRIDING SYSTEM VALUE
                             SELECT {columns} FROM {temporary} RETURNING 1)
             SELECT pg_catalog.count(*) FROM placed"
        ))?
        .unwrap_or(0);
        Ok::<_, pgrx::spi::Error>(placed - waiting)
    })?;
    unrestricted(|| Spi::run(&format!("DROP TABLE {temporary}")))?;
    if placed != rows {
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: shadow_name,
            reason: format!("{rows} row(s) left DEFAULT but {placed} reached it"),
        });
    }
    Ok(())
}

/// A move that did not happen: the migration is over, nothing having
/// moved, and its override goes at once.
fn put_off(table: &PartitionedTable, m: &Migration, reason: &str) -> Result<()> {
    migrations::set_state(m.id, MigrationState::Yielded, Some(reason))?;
    routing::withdraw(table.oid)?;
    relation::invalidate_plans(table.oid);
    alerts::event(
        table.oid,
        AlertKind::Migration,
        Severity::Warning,
        &format!(
            "migration of [{}) put off: {reason}; its rows stay in DEFAULT and it will be tried again",
            range_text(table, m.from, m.to)
        ),
        json!({"outcome": "yielded", "migration": m.id, "reason": reason}),
    )
}

fn finished(table: &PartitionedTable, m: &Migration, moved: i64) -> Result<()> {
    let (_, shadow_name) = endpoints(m)?;
    let total = m.rows_moved + moved;
    migrations::record_move(m.id, total)?;
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
    )
}

/// Moves the rows of `[from, to)` from DEFAULT into the shadow, in the
/// current transaction, which holds DEFAULT against writers; returns how
/// many.
///
/// A moved row should not fire DEFAULT's DELETE triggers or foreign-key
/// actions (it only changes partition), which `session_replication_role =
/// replica` prevents; but replica mode turns every trigger and foreign key
/// of every table off, a superuser's power, for whatever code runs in it.
/// So the rows are copied into the shadow in normal mode (its CHECKs,
/// indexes and types are the owner's code, run as the owner), and only the
/// DELETE from DEFAULT (and, for a published table, the INSERT of the same
/// rows into the shadow once attached) is in replica mode, only on a table a superuser
/// owns (`may_use_replica_mode`), and only once DEFAULT is locked against
/// new triggers, rules and policies and found to have none that would run
/// in it. For any other table the DELETE runs in normal mode, refused
/// before the move starts if DEFAULT has DELETE triggers (or INSERT ones,
/// for a published table) or is referenced. A published table's rows go
/// into a temporary table instead of the shadow (`Via::Temporary`).
fn move_rows(table: &PartitionedTable, m: &Migration, superuser: bool, via: Via) -> Result<i64> {
    let (default_name, shadow_name) = endpoints(m)?;
    let columns = crate::catalog::table::copied_columns(table)?;
    let key = quote_identifier(&table.key_column);
    let in_range = format!(
        "{key} >= {} AND {key} < {}",
        table.key_type.value(m.from).to_sql_literal(),
        table.key_type.value(m.to).to_sql_literal()
    );
    // A rule would send the rows elsewhere: then they must stay where they are.
    if catalog::table::has_rules(m.shadow)? {
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: shadow_name,
            reason: "it has a rule".into(),
        });
    }
    let published = via == Via::Temporary;
    let copied = if published {
        // Made by the owner (the move's role), empty; filled by the DELETE.
        unrestricted(|| {
            Spi::run(&format!(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {columns} FROM ONLY {default_name} WITH NO DATA",
                temporary_name(m)
            ))
        })?;
        None
    } else {
        Some(
            Spi::get_one::<i64>(&format!(
                "WITH placed AS (INSERT INTO {shadow_name} ({columns}) OVERRIDING SYSTEM VALUE
                                 SELECT {columns} FROM ONLY {default_name} WHERE {in_range}
                                 RETURNING 1)
                 SELECT pg_catalog.count(*) FROM placed"
            ))?
            .unwrap_or(0),
        )
    };
    let replica = may_use_replica_mode(table, superuser)?
        && catalog::table::runs_nothing_on_delete_in_replica_mode(
            m.default_partition,
            table.owner_oid,
        )?;
    if !replica {
        refuse_if_rows_have_side_effects(table, m.default_partition, published)?;
    }
    let deleted = with_replica(replica, || {
        Spi::get_one::<i64>(&if published {
            format!(
                "WITH gone AS (DELETE FROM ONLY {default_name} WHERE {in_range} RETURNING {columns}),
                      kept AS (INSERT INTO {} SELECT * FROM gone RETURNING 1)
                 SELECT pg_catalog.count(*) FROM kept",
                temporary_name(m)
            )
        } else {
            format!(
                "WITH gone AS (DELETE FROM ONLY {default_name} WHERE {in_range} RETURNING 1)
                 SELECT pg_catalog.count(*) FROM gone"
            )
        })
    })?
    .unwrap_or(0);
    let Some(copied) = copied else {
        return Ok(deleted);
    };
    if deleted != copied {
        // A trigger of the shadow's kept rows out, or one of DEFAULT's (or
        // row-level security) kept them in: the copies go with the rollback.
        return Err(PredictError::ShadowTurnsRowsAway {
            shadow: shadow_name,
            reason: format!("{copied} row(s) reached it but {deleted} left DEFAULT"),
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

/// How long the move waits for writers that were already running: as long
/// as its lock requests may take in all.
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
    routing::tell_standbys_what_they_missed();
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
        Ok(databases) => match routing::withdraw_other_databases(&databases) {
            Ok(0) => {}
            Ok(freed) => pgrx::log!(
                "pg_partition_predict: withdrew {freed} routing override(s) of dropped databases"
            ),
            Err(e) => pgrx::log!(
                "pg_partition_predict: could not withdraw the overrides of dropped databases: {e}"
            ),
        },
        Err(e) => pgrx::log!("pg_partition_predict: could not list databases: {e}"),
    }
    withdraw_orphaned_overrides_here();
}

/// Withdraws the overrides of this database's tables that were dropped
/// mid-migration; also before a move takes a slot, so that dropped tables
/// never keep one from it, with a worker or without.
fn withdraw_orphaned_overrides_here() {
    for o in routing::overrides_here() {
        let parent = pg_sys::Oid::from(o.parent);
        if !relation::exists(parent) {
            if let Err(e) = routing::withdraw(parent) {
                pgrx::log!("pg_partition_predict: could not withdraw the override of dropped table {}: {e}", o.parent);
            }
        }
    }
}

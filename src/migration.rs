//! Moving rows out of DEFAULT, online (SPEC §4).
//!
//! One range at a time, as a sequence of steps, each its own transaction
//! (`migrate_default()` commits between them, the worker runs each in a
//! transaction of its own). The state lives in `partition_predict.migrations`,
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

use std::time::{Duration, Instant};

use partition_core::planner::{self, MigrationInput, PlannedRange, Stranded};
use partition_core::KeyType;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use crate::alerts::{self, AlertKind};
use crate::catalog::{self, PartitionedTable};
use crate::cycle;
use crate::ddl;
use crate::error::{PredictError, Result};
use crate::gucs;
use crate::routing::{self, Override};
use crate::session::{as_role, with_pinned_settings, with_superuser_settings};
use crate::shadows;
use crate::subxact::try_in_subtransaction;

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
}

impl Next {
    pub fn as_text(&self) -> String {
        match self {
            Next::Again => "again".into(),
            Next::Done => "done".into(),
            Next::Yielded(reason) => format!("yielded: {reason}"),
            Next::Busy => "busy".into(),
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

struct Migration {
    id: i64,
    shadow: pg_sys::Oid,
    shadow_name: String,
    default_partition: pg_sys::Oid,
    from: i64,
    to: i64,
    state: String,
    rows_moved: i64,
}

/// One step of the migration of `parent`'s DEFAULT.
pub fn step(parent: pg_sys::Oid, batch_rows: i64, caller: Caller) -> Result<Next> {
    if !crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(PredictError::NotPreloaded("move rows out of DEFAULT"));
    }
    if batch_rows < 1 {
        return Err(PredictError::InvalidSetting {
            setting: "batch_rows",
            reason: format!("{batch_rows}: must be at least 1"),
        });
    }
    // Moving a row is a DELETE and an INSERT: with superuser rights, user
    // triggers and foreign-key actions are kept out of it.
    let superuser = unsafe { pg_sys::superuser() };
    let settings: &[(&std::ffi::CStr, &str)] = if superuser {
        &[(c"session_replication_role", "replica")]
    } else {
        &[]
    };
    with_pinned_settings(|| {
        with_superuser_settings(settings, || {
            if !cycle::lock_table_cycle(parent, caller == Caller::User)? {
                return Ok(Next::Busy);
            }
            let table = catalog::load_partitioned_table(parent, caller == Caller::User)?;
            as_role(table.owner_oid, || {
                routing::as_migrator(|| step_as_owner(&table, batch_rows, caller, superuser))
            })
        })
    })
}

fn step_as_owner(
    table: &PartitionedTable,
    batch_rows: i64,
    caller: Caller,
    superuser: bool,
) -> Result<Next> {
    let current = active_migration(table.oid)?;
    if let Some(next) = tidy_override(table, current.as_ref())? {
        return Ok(next);
    }
    let Some(migration) = current else {
        return start(table, caller, superuser);
    };
    // INSERTs wait while attaching (also after a restart, which clears it).
    routing::set_finishing(table.oid, migration.state == "attaching");
    if routing::override_of(table.oid).is_none_or(|o| o.migration_id != migration.id) {
        // Lost (a state file that could not be read): publish it again and
        // wait out the transactions that planned without it.
        publish(table, &migration)?;
        set_state(migration.id, "starting", None)?;
        return Ok(Next::Again);
    }
    match migration.state.as_str() {
        "starting" => pass_barrier(table, &migration),
        "moving" | "attaching" if !gucs::ROUTING.get() => {
            give_way(
                table,
                &migration,
                "pg_partition_predict.routing was turned off",
            )?;
            Ok(Next::Again)
        }
        "moving" => move_batch(table, &migration, batch_rows),
        "attaching" => {
            let default_name = catalog::relation_name(migration.default_partition)?;
            finish(table, &migration, &default_name)
        }
        "yielding" => move_back(table, &migration, batch_rows),
        other => Err(PredictError::Internal(format!(
            "migration {} is in unknown state {other}",
            migration.id
        ))),
    }
}

fn active_migration(parent: pg_sys::Oid) -> Result<Option<Migration>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT id, shadow, shadow_name, default_partition, range_from, range_to, state, rows_moved
               FROM partition_predict.migrations
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND state IN ('starting', 'moving', 'attaching', 'yielding')",
            None,
            &[parent.into()],
        )?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(Migration {
            id: r.get::<i64>(1)?.unwrap_or(0),
            shadow: r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
            shadow_name: r.get::<String>(3)?.unwrap_or_default(),
            default_partition: r.get::<pg_sys::Oid>(4)?.unwrap_or(pg_sys::InvalidOid),
            from: r.get::<i64>(5)?.unwrap_or(0),
            to: r.get::<i64>(6)?.unwrap_or(0),
            state: r.get::<String>(7)?.unwrap_or_default(),
            rows_moved: r.get::<i64>(8)?.unwrap_or(0),
        }))
    })
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
    let ended = Spi::get_two_with_args::<String, String>(
        "SELECT (SELECT state FROM partition_predict.migrations WHERE id = $1),
                (SELECT message FROM partition_predict.migrations WHERE id = $1)",
        &[o.migration_id.into()],
    )?;
    routing::withdraw(table.oid)?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table.oid) };
    match ended {
        (Some(state), message) if state == "yielded" => Ok(Some(Next::Yielded(
            message.unwrap_or_else(|| "it could not take its locks".into()),
        ))),
        _ => Ok(None),
    }
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
    if caller == Caller::Worker && !collector_saw_keys_in(table, default)? {
        return Ok(Next::Done);
    }
    let stranded = stranded_rows(table, default)?;
    if stranded.is_empty() {
        return Ok(Next::Done);
    }
    if !gucs::ROUTING.get() {
        return match caller {
            Caller::User => Err(PredictError::RoutingOff(table.name.to_string())),
            Caller::Worker | Caller::WorkerAfterLoad => Ok(Next::Done),
        };
    }
    if caller != Caller::User && yielded_recently(table.oid)? {
        return Ok(Next::Done);
    }
    if !superuser {
        refuse_if_rows_have_side_effects(table, default)?;
    }
    let settings = shadows::load_settings(table)?;
    let taken = shadows::attached_ranges(table);
    let standalone = shadows::standalone_shadows(table.oid)?;
    let shadow_ranges: Vec<(i64, i64)> = standalone.iter().map(|s| (s.0, s.1)).collect();
    let plan = planner::plan_migration(&MigrationInput {
        key_type: table.key_type,
        taken: &taken,
        shadows: &shadow_ranges,
        stranded: &stranded,
        target_rows: settings.target_rows,
        min_span: settings.min_span,
        max_span: settings.max_span,
    });
    let Some(range) = plan.first() else {
        return Ok(Next::Done);
    };
    let (shadow, shadow_name) = if range.into_shadow {
        let s = standalone
            .iter()
            .find(|s| s.0 == range.from)
            .ok_or_else(|| PredictError::Internal("planned shadow vanished".into()))?;
        (s.2, s.3.clone())
    } else {
        let name = shadows::create_shadow(
            table,
            &PlannedRange {
                from: range.from,
                to: range.to,
                expected_rows: range.rows,
            },
            shadows::Origin::Migration,
        )?;
        let oid = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[name.quoted().into()],
        )?
        .ok_or_else(|| PredictError::Internal(format!("created shadow {name} not found")))?;
        (oid, name.quoted())
    };
    // The override is exact only if every row of the shadow came out of DEFAULT.
    if Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {shadow_name})"))?
        .unwrap_or(false)
    {
        return Err(PredictError::Internal(format!(
            "shadow {shadow_name} is not empty; rows of DEFAULT cannot be moved into it"
        )));
    }
    let id = Spi::get_one_with_args::<i64>(
        "INSERT INTO partition_predict.migrations
                (parent, shadow, shadow_name, default_partition, range_from, range_to, range_start, range_end, state)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, 'starting')
         RETURNING id",
        &[
            table.oid.into(),
            shadow.into(),
            shadow_name.clone().into(),
            default.into(),
            range.from.into(),
            range.to.into(),
            table.key_type.value(range.from).to_text().into(),
            table.key_type.value(range.to).to_text().into(),
        ],
    )?
    .ok_or_else(|| PredictError::Internal("INSERT … RETURNING gave no row".into()))?;
    let migration = Migration {
        id,
        shadow,
        shadow_name: shadow_name.clone(),
        default_partition: default,
        from: range.from,
        to: range.to,
        state: "starting".into(),
        rows_moved: 0,
    };
    publish(table, &migration)?;
    alerts::raise(
        Some(table.oid),
        AlertKind::Migration,
        &format!(
            "migration started: about {:.0} row(s) of [{}) move out of DEFAULT into {shadow_name}",
            range.rows,
            range_text(table, range.from, range.to)
        ),
        json!({"event": "started", "migration": id, "range_start": table.key_type.value(range.from).to_text(),
               "range_end": table.key_type.value(range.to).to_text(), "shadow": shadow_name, "rows": range.rows}),
    )?;
    Ok(Next::Again)
}

/// Publishes the override and makes every backend re-plan cached plans of
/// the parent (the relcache invalidation is sent when this step commits).
fn publish(table: &PartitionedTable, m: &Migration) -> Result<()> {
    routing::publish(Override {
        database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        parent: table.oid.to_u32(),
        shadow: m.shadow.to_u32(),
        default_partition: m.default_partition.to_u32(),
        migration_id: m.id,
        since: unsafe { pg_sys::GetCurrentTimestamp() },
        finishing: false,
    })?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table.oid) };
    Ok(())
}

/// Groups of rows in DEFAULT with a key (NULL keys can go nowhere else).
fn stranded_rows(table: &PartitionedTable, default: pg_sys::Oid) -> Result<Vec<Stranded>> {
    let default_name = catalog::relation_name(default)?;
    Ok(key_groups(table, &format!("ONLY {default_name}"))?.groups)
}

/// The keys of a relation, grouped: per hour (time keys), day (dates) or a
/// thousandth of the key span (integers), in key order.
pub struct KeyGroups {
    pub groups: Vec<Stranded>,
    pub null_keys: i64,
    pub rows: i64,
}

/// Groups the keys of `relation` (SQL: a quoted name, maybe `ONLY …`),
/// whose key column is named and typed as the table's, in one scan.
pub fn key_groups(table: &PartitionedTable, relation: &str) -> Result<KeyGroups> {
    let column = quote_identifier(&table.key_column);
    // date_bin and integer division: grouping by text or numeric costs
    // two to three times as much on a large batch.
    let bucket = match table.key_type {
        KeyType::Timestamp => format!(
            "pg_catalog.date_bin('1 hour', {column}, '2000-01-01 00:00:00'::pg_catalog.timestamp)"
        ),
        KeyType::TimestampTz => format!(
            "pg_catalog.date_bin('1 hour', {column}, '2000-01-01 00:00:00+00'::pg_catalog.timestamptz)"
        ),
        KeyType::Date => column.clone(),
        _ => {
            let (min, max) = Spi::get_two::<i64, i64>(&format!(
                "SELECT pg_catalog.min({column})::bigint, pg_catalog.max({column})::bigint FROM {relation}"
            ))?;
            match (min, max) {
                (Some(min), Some(max)) => {
                    let width = partition_core::calendar::round_step_up(
                        (((max as i128 - min as i128) / 1000) as i64).max(1),
                    );
                    format!("{column}::bigint / {width}")
                }
                // No key at all: one group, of the NULL keys if any.
                _ => "NULL::bigint".to_string(),
            }
        }
    };
    let rows: Vec<(Option<String>, Option<String>, i64)> = Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT pg_catalog.min({column})::text, pg_catalog.max({column})::text, pg_catalog.count(*)
                   FROM {relation} GROUP BY {bucket} ORDER BY 1"
            ),
            None,
            &[],
        )?;
        rows.map(|r| {
            Ok((
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?.unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    let mut groups = KeyGroups {
        groups: Vec::new(),
        null_keys: 0,
        rows: 0,
    };
    for (min, max, count) in rows {
        groups.rows += count;
        let (Some(min), Some(max)) = (min, max) else {
            groups.null_keys += count;
            continue;
        };
        if let (Ok(min), Ok(max)) = (
            table.key_type.parse_value(&min),
            table.key_type.parse_value(&max),
        ) {
            groups.groups.push(Stranded {
                start: min.raw,
                end: max.raw.saturating_add(1),
                rows: count as f64,
            });
        }
    }
    groups.groups.sort_by_key(|s| s.start);
    Ok(groups)
}

/// Whether the cycle's collect step, which just ran, found keys in DEFAULT
/// (so the worker does not scan an empty DEFAULT every cycle).
fn collector_saw_keys_in(table: &PartitionedTable, default: pg_sys::Oid) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.partition_counters
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2
                           AND frontier_raw IS NOT NULL)",
        &[table.oid.into(), default.into()],
    )?
    .unwrap_or(false))
}

fn yielded_recently(parent: pg_sys::Oid) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.migrations
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND state = 'yielded'
                           AND finished_at > pg_catalog.now() - pg_catalog.make_interval(mins => $2))",
        &[parent.into(), YIELD_BACKOFF_MINUTES.into()],
    )?
    .unwrap_or(false))
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
        return Err(PredictError::Postgres {
            sqlstate: pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message: format!(
                "moving rows of {} would fire its {}: only a superuser (or the background worker) can move them with those suppressed",
                table.name,
                if triggers == Some(true) { "triggers" } else { "foreign-key actions" }
            ),
        });
    }
    Ok(())
}

fn set_state(id: i64, state: &str, message: Option<&str>) -> Result<()> {
    Spi::run_with_args(
        "UPDATE partition_predict.migrations
            SET state = $2, message = COALESCE($3, message),
                finished_at = CASE WHEN $2 IN ('done', 'yielded') THEN pg_catalog.now() END
          WHERE id = $1",
        &[id.into(), state.into(), message.into()],
    )?;
    Ok(())
}

/// Waits for the transactions that held a lock on the parent when this
/// step began, except those waiting in the planner hook for this
/// migration. Returns false on timeout.
/// `conflicting_with`: AccessExclusiveLock for every holder, ShareLock for
/// writers only.
fn wait_for_earlier_transactions(
    parent: pg_sys::Oid,
    conflicting_with: u32,
    timeout: Duration,
) -> bool {
    let tag = routing::relation_lock_tag(parent);
    let mut count: std::ffi::c_int = 0;
    let holders: Vec<pg_sys::VirtualTransactionId> = unsafe {
        let array =
            pg_sys::GetLockConflicts(&tag, conflicting_with as pg_sys::LOCKMODE, &mut count);
        if array.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(array, usize::try_from(count).unwrap_or(0)).to_vec()
        }
    };
    let deadline = Instant::now() + timeout;
    for holder in holders {
        loop {
            let ended = unsafe { pg_sys::VirtualXactLock(holder, false) };
            if ended || routing::is_waiting_for(holder.backendId, holder.localTransactionId, parent)
            {
                break;
            }
            if Instant::now() > deadline {
                return false;
            }
            pg_sys::check_for_interrupts!();
            unsafe { pg_sys::pg_usleep(5_000) };
        }
    }
    true
}

fn pass_barrier(table: &PartitionedTable, m: &Migration) -> Result<Next> {
    if wait_for_earlier_transactions(table.oid, pg_sys::AccessExclusiveLock, BARRIER_TIMEOUT) {
        set_state(m.id, "moving", None)?;
        return Ok(Next::Again);
    }
    // Nothing has moved: the override can go at once.
    let reason = format!(
        "transactions that were using {} did not end within {} s",
        table.name,
        BARRIER_TIMEOUT.as_secs()
    );
    set_state(m.id, "yielded", Some(&reason))?;
    routing::withdraw(table.oid)?;
    alerts::raise(
        Some(table.oid),
        AlertKind::Migration,
        &format!(
            "migration of [{}) did not start: {reason}",
            range_text(table, m.from, m.to)
        ),
        json!({"event": "yielded", "migration": m.id, "reason": reason}),
    )?;
    Ok(Next::Yielded(reason))
}

/// The table's columns that can be copied as they are (generated columns
/// are computed again, identically, on insert).
pub fn copied_columns(table: &PartitionedTable) -> Result<String> {
    Ok(Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum)
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
        &[table.oid.into()],
    )?
    .unwrap_or_default())
}

/// Moves up to `limit` rows of `[from, to)` (all when `None`) from one
/// table to the other in the current transaction; returns how many.
fn move_rows(
    table: &PartitionedTable,
    m: &Migration,
    source: &str,
    destination: &str,
    limit: Option<i64>,
) -> Result<i64> {
    let columns = copied_columns(table)?;
    let key = quote_identifier(&table.key_column);
    let in_range = format!(
        "{key} >= {} AND {key} < {}",
        table.key_type.value(m.from).to_sql_literal(),
        table.key_type.value(m.to).to_sql_literal()
    );
    // Rows locked by someone else are left for the final step, which waits
    // for them; a batch never waits on a row lock.
    let selection = match limit {
        Some(n) => format!(
            "ctid = ANY (ARRAY(SELECT ctid FROM ONLY {source} WHERE {in_range} LIMIT {n} FOR UPDATE SKIP LOCKED))"
        ),
        None => in_range,
    };
    Ok(Spi::get_one::<i64>(&format!(
        "WITH moved AS (DELETE FROM ONLY {source} WHERE {selection} RETURNING {columns}),
              placed AS (INSERT INTO {destination} ({columns}) OVERRIDING SYSTEM VALUE
                         SELECT {columns} FROM moved RETURNING 1)
         SELECT pg_catalog.count(*) FROM placed"
    ))?
    .unwrap_or(0))
}

fn record_progress(id: i64, moved: i64) -> Result<()> {
    Spi::run_with_args(
        "UPDATE partition_predict.migrations SET rows_moved = rows_moved + $2, batches = batches + 1 WHERE id = $1",
        &[id.into(), moved.into()],
    )?;
    Ok(())
}

fn move_batch(table: &PartitionedTable, m: &Migration, batch_rows: i64) -> Result<Next> {
    let default_name = catalog::relation_name(m.default_partition)?;
    let moved = move_rows(table, m, &default_name, &m.shadow_name, Some(batch_rows))?;
    record_progress(m.id, moved)?;
    if moved == batch_rows {
        return Ok(Next::Again);
    }
    // DEFAULT holds no more of the range. From now on INSERTs wait in the
    // planner hook until the ATTACH, and cached plans (which do not pass
    // the hook) are invalidated when this commits: no INSERT may route a
    // row to DEFAULT and then meet DEFAULT's new partition constraint.
    set_state(m.id, "attaching", None)?;
    routing::set_finishing(table.oid, true);
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table.oid) };
    Ok(Next::Again)
}

/// The last, short transaction: locks, the rows that arrived since the last
/// batch, ATTACH. The override is withdrawn by the next step, after this
/// one has committed (until then the hook sees the shadow is attached and
/// leaves queries alone).
fn finish(table: &PartitionedTable, m: &Migration, default_name: &str) -> Result<Next> {
    // INSERTs that were already running when the hook began holding them.
    if !wait_for_earlier_transactions(table.oid, pg_sys::ShareLock, writers_timeout()) {
        give_way(
            table,
            m,
            "transactions writing the table did not end in time for the ATTACH",
        )?;
        return Ok(Next::Again);
    }
    let locked = ddl::run_with_lock_retry_watching(
        &table.name,
        "attaching a migrated range",
        &format!(
            "LOCK TABLE ONLY {} IN SHARE UPDATE EXCLUSIVE MODE; LOCK TABLE {}, {default_name} IN ACCESS EXCLUSIVE MODE",
            table.name.quoted(),
            m.shadow_name
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
    let remainder = move_rows(table, m, default_name, &m.shadow_name, None)?;
    shadows::attach(table, m.from, m.to, &m.shadow_name)?;
    let total = m.rows_moved + remainder;
    Spi::run_with_args(
        "UPDATE partition_predict.migrations SET rows_moved = $2 WHERE id = $1",
        &[m.id.into(), total.into()],
    )?;
    set_state(m.id, "done", None)?;
    alerts::raise(
        Some(table.oid),
        AlertKind::Migration,
        &format!(
            "migration finished: {total} row(s) of [{}) moved out of DEFAULT; {} attached",
            range_text(table, m.from, m.to),
            m.shadow_name
        ),
        json!({"event": "finished", "migration": m.id, "rows": total, "partition": m.shadow_name}),
    )?;
    Ok(Next::Again)
}

fn give_way(table: &PartitionedTable, m: &Migration, reason: &str) -> Result<()> {
    set_state(m.id, "yielding", Some(reason))?;
    routing::set_finishing(table.oid, false);
    alerts::raise(
        Some(table.oid),
        AlertKind::Migration,
        &format!(
            "migration of [{}) gives way, moving its rows back to DEFAULT: {reason}",
            range_text(table, m.from, m.to)
        ),
        json!({"event": "yielding", "migration": m.id, "reason": reason}),
    )
}

fn move_back(table: &PartitionedTable, m: &Migration, batch_rows: i64) -> Result<Next> {
    let default_name = catalog::relation_name(m.default_partition)?;
    let moved = move_rows(table, m, &m.shadow_name, &default_name, Some(batch_rows))?;
    record_progress(m.id, -moved)?;
    if moved == batch_rows {
        return Ok(Next::Again);
    }
    let left = Spi::get_one::<bool>(&format!(
        "SELECT EXISTS (SELECT 1 FROM ONLY {})",
        m.shadow_name
    ))?
    .unwrap_or(false);
    if !left {
        set_state(m.id, "yielded", None)?;
    }
    Ok(Next::Again)
}

/// Whether a migration of the table is under way (for `unmanage`).
pub fn in_progress(parent: pg_sys::Oid) -> Result<bool> {
    Ok(active_migration(parent)?.is_some())
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

/// A step run by the worker: a failure is rolled back and raised as an
/// alert; the worker goes on with the next table.
pub fn step_isolated(parent: pg_sys::Oid, caller: Caller) -> Next {
    let attempt =
        try_in_subtransaction(|| crate::error::or_report(step(parent, WORKER_BATCH_ROWS, caller)));
    match attempt {
        Ok(next) => next,
        Err(caught) => {
            let recorded = try_in_subtransaction(|| {
                crate::error::or_report(with_pinned_settings(|| {
                    alerts::raise(
                        Some(parent),
                        AlertKind::Migration,
                        &format!("migration step failed: {}", caught.message),
                        json!({"event": "failed", "sqlstate": format!("{:?}", caught.sqlstate)}),
                    )
                }))
            });
            if let Err(e) = recorded {
                pgrx::log!(
                    "pg_partition_predict: could not record a failed migration step: {}",
                    e.message
                );
            }
            Next::Done
        }
    }
}

/// Withdraws overrides of tables that were dropped mid-migration (their
/// rows of `migrations` went with them), so queries elsewhere stop paying
/// for a look at them.
pub fn withdraw_orphaned_overrides() {
    for o in routing::overrides_here() {
        let parent = pg_sys::Oid::from(o.parent);
        if unsafe { pg_sys::get_rel_relkind(parent) } == 0 {
            if let Err(e) = routing::withdraw(parent) {
                pgrx::log!("pg_partition_predict: could not withdraw the override of dropped table {}: {e}", o.parent);
            }
        }
    }
}

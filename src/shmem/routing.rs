//! Routing overrides: which tables are having rows moved out of DEFAULT,
//! and into which table, in shared memory and in a crash-safe state file.
//!
//! Overrides live in shared memory, so every backend sees a new one at its
//! next planning (the planner hook, `hooks::rewrite`, acts on them), and in
//! a state file in the data directory, so that after a crash restart (which
//! reinitialises shared memory) they are back before any query runs. An
//! override left over after its shadow was attached is ignored (the shadow
//! is then a partition, read through the parent) and removed by the next
//! migration step.

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};

use super::replay::{self, Replayed};
pub use super::replay::{Override, Settled};
use crate::error::{PredictError, Result};
use crate::pg::backend;

/// Migrations that can be in flight at once, over all databases.
pub const MAX_OVERRIDES: usize = 64;
/// Writers waiting on a migration are recorded per backend id up to this.
const MAX_WAITERS: usize = 4096;
/// Where overrides survive a crash restart (relative to the data directory).
const STATE_FILE: &str = "pg_partition_predict.routing";
const STATE_FILE_TMP: &str = "pg_partition_predict.routing.tmp";

impl Override {
    fn in_use(&self) -> bool {
        self.parent != 0
    }
}

/// A backend waiting, before planning, for the migration of `parent`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Waiter {
    database: u32,
    parent: u32,
    local_xid: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Registry {
    overrides: [Override; MAX_OVERRIDES],
    waiters: [Waiter; MAX_WAITERS],
    /// Whether standbys were told, since shared memory was made, that no
    /// move of this server is in flight (`reset_on_standbys`).
    reset_logged: bool,
    /// Overrides withdrawn without telling standbys (`withdraw_unlogged`),
    /// as `(database, parent)`: told at the next publication or withdrawal.
    unlogged: [(u32, u32); UNLOGGED_KEPT],
    /// The newest move of each parent, for snapshots older than its commit.
    settled: [Settled; MAX_SETTLED],
    /// Snapshots whose xmin is below a mark's full transaction ID may not
    /// see a move no entry records any more, of a table of the mark's
    /// owner (0: of any table): one evicted to make room, or one replayed
    /// before this server's recovery began.
    uncertain: [Uncertain; UNCERTAIN_KEPT],
}

/// See `Registry::uncertain`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Uncertain {
    /// 0: every table.
    pub owner: u32,
    /// 0: no mark.
    pub below: u64,
}

/// Owners with a mark of their own at once; past that, marks are merged
/// into one for every table.
const UNCERTAIN_KEPT: usize = 64;

/// Parents with a settled move kept at once, over all databases; the entry
/// of the oldest transaction gives way when they are all taken.
const MAX_SETTLED: usize = 256;

/// Withdrawals kept for standbys until the next record can be written.
const UNLOGGED_KEPT: usize = 16;

unsafe impl PGRXSharedMemory for Registry {}

impl Registry {
    fn empty() -> Registry {
        Registry {
            overrides: [Override::default(); MAX_OVERRIDES],
            waiters: [Waiter::default(); MAX_WAITERS],
            reset_logged: false,
            unlogged: [(0, 0); UNLOGGED_KEPT],
            settled: [Settled::default(); MAX_SETTLED],
            uncertain: [Uncertain::default(); UNCERTAIN_KEPT],
        }
    }

    fn active(&self) -> u32 {
        self.overrides.iter().filter(|o| o.in_use()).count() as u32
    }

    fn settled_count(&self) -> u32 {
        self.settled.iter().filter(|s| s.parent != 0).count() as u32
    }

    /// Forgets the entries and marks no snapshot can be older than
    /// (`horizon`, a full transaction ID: every running transaction's
    /// snapshot sees every transaction before it).
    fn purge(&mut self, horizon: u64) {
        for s in self.settled.iter_mut() {
            if s.parent != 0 && s.xid < horizon {
                *s = Settled::default();
            }
        }
        for u in self.uncertain.iter_mut() {
            if u.below != 0 && u.below <= horizon {
                *u = Uncertain::default();
            }
        }
    }

    fn uncertain_count(&self) -> u32 {
        self.uncertain.iter().filter(|u| u.below != 0).count() as u32
    }

    /// Marks snapshots older than `below` uncertain for `owner`'s tables
    /// (0: every table).
    fn mark_uncertain(&mut self, owner: u32, below: u64) {
        let slot = self
            .uncertain
            .iter()
            .position(|u| u.below != 0 && u.owner == owner)
            .or_else(|| self.uncertain.iter().position(|u| u.below == 0));
        match slot {
            Some(slot) => {
                let u = &mut self.uncertain[slot];
                *u = Uncertain {
                    owner,
                    below: u.below.max(below),
                };
            }
            None => {
                // No room: one mark for every table, as late as any.
                let latest = self.uncertain.iter().map(|u| u.below).max().unwrap_or(0);
                self.uncertain = [Uncertain::default(); UNCERTAIN_KEPT];
                self.uncertain[0] = Uncertain {
                    owner: 0,
                    below: latest.max(below),
                };
            }
        }
    }

    /// Records `entry` (replacing its parent's). With every slot taken, the
    /// oldest entry of the role with the most entries goes, and snapshots
    /// older than it are treated as missing a move of any of that role's
    /// tables: a role that moves many tables of its own makes its own
    /// snapshots cost more, never another role's miss a row or its writes
    /// fail.
    fn settle(&mut self, entry: Settled, horizon: u64) {
        self.purge(horizon);
        for s in self.settled.iter_mut() {
            if s.database == entry.database && s.parent == entry.parent {
                *s = Settled::default();
            }
        }
        let slot = match self.settled.iter().position(|s| s.parent == 0) {
            Some(free) => free,
            None => {
                let mut per_owner: std::collections::HashMap<u32, usize> =
                    std::collections::HashMap::new();
                for s in self.settled.iter() {
                    *per_owner.entry(s.owner).or_default() += 1;
                }
                let crowded = per_owner
                    .iter()
                    .max_by_key(|(owner, n)| (**n, **owner == entry.owner))
                    .map(|(owner, _)| *owner)
                    .unwrap_or(entry.owner);
                let (slot, evicted) = self
                    .settled
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.owner == crowded)
                    .min_by_key(|(_, s)| s.xid)
                    .map(|(slot, s)| (slot, *s))
                    .unwrap_or((0, self.settled[0]));
                self.mark_uncertain(evicted.owner, evicted.xid.saturating_add(1));
                slot
            }
        };
        self.settled[slot] = entry;
    }
}

static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"pg_partition_predict_routing") };
/// Overrides in use: the planner hook's whole cost when it is 0.
static ACTIVE: PgAtomic<AtomicU32> =
    unsafe { PgAtomic::new(c"pg_partition_predict_routing_active") };
/// Settled moves kept, and whether snapshots may be uncertain: what a
/// planning costs when both are 0.
static SETTLED: PgAtomic<AtomicU32> =
    unsafe { PgAtomic::new(c"pg_partition_predict_routing_settled") };
static UNCERTAIN: PgAtomic<AtomicU64> =
    unsafe { PgAtomic::new(c"pg_partition_predict_routing_uncertain") };
/// When the settled moves were last purged (PostgreSQL timestamp).
static LAST_PURGE: PgAtomic<AtomicI64> =
    unsafe { PgAtomic::new(c"pg_partition_predict_routing_purged") };

/// Shared memory and the WAL resource manager; only while preloading.
pub fn init() {
    pg_shmem_init!(REGISTRY = load_state_file());
    pg_shmem_init!(ACTIVE = AtomicU32::new(load_state_file().active()));
    pg_shmem_init!(SETTLED = AtomicU32::new(0));
    pg_shmem_init!(UNCERTAIN = AtomicU64::new(0));
    pg_shmem_init!(LAST_PURGE = AtomicI64::new(0));
    replay::init(on_replay, end_replayed_moves, recovery_begins);
}

fn load_state_file() -> Registry {
    let mut registry = Registry::empty();
    let Ok(text) = fs::read_to_string(STATE_FILE) else {
        return registry;
    };
    let mut slot = 0;
    for line in text.lines().skip(1) {
        let fields: Vec<i64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let ([database, parent, shadow, default_partition, migration_id, since], true) =
            (fields.as_slice(), slot < MAX_OVERRIDES)
        {
            registry.overrides[slot] = Override {
                database: *database as u32,
                parent: *parent as u32,
                shadow: *shadow as u32,
                default_partition: *default_partition as u32,
                migration_id: *migration_id,
                since: *since,
                durable: true,
                replayed: false,
            };
            slot += 1;
        }
    }
    registry
}

/// Writes every override to the state file, durably, before the caller
/// goes on: a migration must not move a row before its override would
/// survive a crash.
fn write_state_file(registry: &Registry) -> Result<()> {
    let mut text = String::from("pg_partition_predict routing overrides v1\n");
    for o in registry
        .overrides
        .iter()
        .filter(|o| o.in_use() && o.durable)
    {
        text.push_str(&format!(
            "{} {} {} {} {} {}\n",
            o.database, o.parent, o.shadow, o.default_partition, o.migration_id, o.since
        ));
    }
    let io = |e: std::io::Error| PredictError::StateFile {
        file: STATE_FILE,
        reason: e.to_string(),
    };
    let mut file = fs::File::create(STATE_FILE_TMP).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(STATE_FILE_TMP, STATE_FILE).map_err(io)?;
    fs::File::open(".")
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(())
}

fn database() -> u32 {
    backend::database_id().to_u32()
}

/// Whether any override is in use in the cluster: the planner hook's
/// whole cost when there is none.
pub fn any_active() -> bool {
    ACTIVE.get().load(Ordering::Acquire) != 0
}

/// How many overrides one database, and the tables of one role in it, may
/// hold at once; `owner_of` tells whose table a parent is.
pub struct Quota<F: Fn(u32) -> Option<pg_sys::Oid>> {
    pub per_database: usize,
    pub per_role: usize,
    pub owner_of: F,
}

/// Makes the override of a migration visible to every backend (replacing
/// the parent's previous one, if any) and durable.
pub fn publish<F: Fn(u32) -> Option<pg_sys::Oid>>(entry: Override, quota: Quota<F>) -> Result<()> {
    tell_standbys_what_they_missed();
    let mut registry = REGISTRY.exclusive();
    let replacing = registry
        .overrides
        .iter()
        .position(|o| o.database == entry.database && o.parent == entry.parent);
    let in_database: Vec<&Override> = registry
        .overrides
        .iter()
        .filter(|o| o.in_use() && o.database == entry.database)
        .collect();
    if replacing.is_none() && in_database.len() >= quota.per_database {
        return Err(PredictError::TooManyOverrides(quota.per_database));
    }
    // One role's tables cannot take every slot of the database: counted
    // here, under the lock, so that two moves starting at once cannot both
    // take the last one.
    let owner = (quota.owner_of)(entry.parent);
    let of_owner = in_database
        .iter()
        .filter(|o| owner.is_some() && (quota.owner_of)(o.parent) == owner)
        .count();
    if replacing.is_none() && of_owner >= quota.per_role {
        return Err(PredictError::TooManyOverridesOfRole(quota.per_role));
    }
    let slot = replacing
        .or_else(|| registry.overrides.iter().position(|o| !o.in_use()))
        .ok_or(PredictError::TooManyOverrides(MAX_OVERRIDES))?;
    let previous = registry.overrides[slot];
    registry.overrides[slot] = entry;
    if let Err(e) = write_state_file(&registry) {
        registry.overrides[slot] = previous;
        return Err(e);
    }
    ACTIVE.get().store(registry.active(), Ordering::Release);
    drop(registry);
    replay::log_published(&entry);
    Ok(())
}

/// Logs the override of `parent` again, so that a standby which began
/// replaying after its publication (one cloned, or restarted, since) has it
/// before the move that follows.
pub fn announce(parent: pg_sys::Oid) {
    if let Some(o) = override_of(parent) {
        replay::log_published(&o);
    }
}

/// Removes the override of `parent` in this database, if any.
pub fn withdraw(parent: pg_sys::Oid) -> Result<()> {
    tell_standbys_what_they_missed();
    if withdraw_quietly(parent)? {
        replay::log_withdrawn(database(), parent.to_u32());
    }
    Ok(())
}

/// Logs the reset a starting server owes its standbys, and the withdrawals
/// made without a record (a move's error path), before any new record.
pub fn tell_standbys_what_they_missed() {
    reset_on_standbys();
    let missed: Vec<(u32, u32)> = {
        let mut registry = REGISTRY.exclusive();
        let missed = registry
            .unlogged
            .iter()
            .copied()
            .filter(|(_, parent)| *parent != 0)
            .collect();
        registry.unlogged = [(0, 0); UNLOGGED_KEPT];
        missed
    };
    for (database, parent) in missed {
        replay::log_withdrawn(database, parent);
    }
}

/// `withdraw` without telling standbys, for a move's error path (no WAL is
/// written while an error is being handled): kept, and told at the next
/// record or worker cycle (`tell_standbys_what_they_missed`). Meanwhile a
/// standby reads the empty shadow too, which changes no result.
pub fn withdraw_unlogged(parent: pg_sys::Oid) -> Result<bool> {
    let withdrawn = withdraw_quietly(parent)?;
    if withdrawn {
        let mut registry = REGISTRY.exclusive();
        let entry = (database(), parent.to_u32());
        let slot = registry
            .unlogged
            .iter()
            .position(|e| e.1 == 0 || *e == entry)
            .unwrap_or(0);
        registry.unlogged[slot] = entry;
    }
    Ok(withdrawn)
}

fn withdraw_quietly(parent: pg_sys::Oid) -> Result<bool> {
    let mut registry = REGISTRY.exclusive();
    let db = database();
    let mut changed = false;
    for o in registry.overrides.iter_mut() {
        if o.database == db && o.parent == parent.to_u32() {
            *o = Override::default();
            changed = true;
        }
    }
    if changed {
        write_state_file(&registry)?;
        ACTIVE.get().store(registry.active(), Ordering::Release);
    }
    Ok(changed)
}

/// Removes every override of databases not in `existing` (a dropped
/// database's migrations can never finish); how many.
pub fn withdraw_other_databases(existing: &[u32]) -> Result<usize> {
    let mut registry = REGISTRY.exclusive();
    let mut removed = Vec::new();
    for o in registry.overrides.iter_mut() {
        if o.in_use() && !existing.contains(&o.database) {
            removed.push((o.database, o.parent));
            *o = Override::default();
        }
    }
    if !removed.is_empty() {
        write_state_file(&registry)?;
        ACTIVE.get().store(registry.active(), Ordering::Release);
        drop(registry);
        for (database, parent) in &removed {
            replay::log_withdrawn(*database, *parent);
        }
    }
    Ok(removed.len())
}

/// Tells standbys that `parent`'s override is gone, whether or not this
/// server still had one: a move's error path withdraws it without logging
/// (`withdraw_unlogged`), and its migration's next step calls this.
pub fn forget_on_standbys(parent: pg_sys::Oid) {
    replay::log_withdrawn(database(), parent.to_u32());
}

/// Tells standbys, once after the server starts (or restarts after a
/// crash, which makes shared memory anew), that none of its moves is in
/// flight any more: their overrides end there.
pub fn reset_on_standbys() {
    if backend::in_recovery() {
        return;
    }
    let first = {
        let mut registry = REGISTRY.exclusive();
        !std::mem::replace(&mut registry.reset_logged, true)
    };
    if first {
        replay::log_reset();
    }
}

/// WAL replay (see `shmem::replay`), on a standby or in crash recovery.
fn on_replay(replayed: Replayed) {
    match replayed {
        Replayed::Published(o) => replay_published(o),
        Replayed::Withdrawn { database, parent } => replay_withdrawn(database, parent),
        Replayed::Reset => end_replayed_moves(),
        Replayed::Settled(entry) => keep_settled(entry),
    }
}

/// A publication. An override this server published itself is left as it
/// is. With every slot taken, the oldest replayed override of a move gives
/// way: moves follow their publication at once, so the newest are the ones
/// a standby's queries need (and no role can keep slots by leaving
/// overrides behind).
fn replay_published(entry: Override) {
    let mut registry = REGISTRY.exclusive();
    let existing = registry
        .overrides
        .iter()
        .position(|o| o.in_use() && o.database == entry.database && o.parent == entry.parent);
    if existing.is_some_and(|slot| !registry.overrides[slot].replayed) {
        return;
    }
    let oldest_replayed_move = || {
        registry
            .overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| o.in_use() && o.replayed && !o.durable)
            .min_by_key(|(_, o)| o.since)
            .map(|(slot, _)| slot)
    };
    let Some(slot) = existing
        .or_else(|| registry.overrides.iter().position(|o| !o.in_use()))
        .or_else(oldest_replayed_move)
    else {
        pgrx::log!("pg_partition_predict: no slot for a replayed routing override");
        return;
    };
    registry.overrides[slot] = entry;
    if entry.durable {
        if let Err(e) = write_state_file(&registry) {
            pgrx::log!("pg_partition_predict: {e}");
        }
    }
    ACTIVE.get().store(registry.active(), Ordering::Release);
}

/// A withdrawal: the override goes, whoever published it.
fn replay_withdrawn(database: u32, parent: u32) {
    let mut registry = REGISTRY.exclusive();
    let mut durable = false;
    for o in registry.overrides.iter_mut() {
        if o.in_use() && o.database == database && o.parent == parent {
            durable |= o.durable;
            *o = Override::default();
        }
    }
    if durable {
        if let Err(e) = write_state_file(&registry) {
            pgrx::log!("pg_partition_predict: {e}");
        }
    }
    ACTIVE.get().store(registry.active(), Ordering::Release);
}

/// At the end of recovery (a promotion, or the end of crash recovery):
/// replayed overrides of moves, which were one transaction each, end; their
/// moves either committed or are gone, and the migration's next step
/// starts it again.
fn end_replayed_moves() {
    let mut registry = REGISTRY.exclusive();
    for o in registry.overrides.iter_mut() {
        if o.in_use() && o.replayed && !o.durable {
            *o = Override::default();
        }
    }
    ACTIVE.get().store(registry.active(), Ordering::Release);
}

/// Records, in the move's own transaction `xid` (a full transaction ID,
/// before it commits), that it moves rows of `parent` out of
/// `default_partition`, for the snapshots that will not see its commit
/// (see `Settled`); and tells standbys.
pub fn settle(parent: pg_sys::Oid, default_partition: pg_sys::Oid, xid: u64, owner: pg_sys::Oid) {
    let entry = Settled {
        database: database(),
        parent: parent.to_u32(),
        default_partition: default_partition.to_u32(),
        xid,
        owner: owner.to_u32(),
    };
    keep_settled(entry);
    replay::log_settled(&entry);
}

fn keep_settled(entry: Settled) {
    let horizon = backend::oldest_snapshot_horizon();
    let mut registry = REGISTRY.exclusive();
    registry.settle(entry, horizon);
    publish_settled(&registry);
}

fn publish_settled(registry: &Registry) {
    SETTLED
        .get()
        .store(registry.settled_count(), Ordering::Release);
    UNCERTAIN
        .get()
        .store(u64::from(registry.uncertain_count()), Ordering::Release);
}

/// Recovery begins: a standby (or a restored backup) serving reads during
/// recovery does not know the moves whose records came before the point it
/// starts from, so snapshots older than the transactions then assigned are
/// uncertain. (Crash recovery serves no reads, and every snapshot after it
/// sees every move that committed before the crash.)
fn recovery_begins() {
    if !backend::archive_recovery() {
        return;
    }
    let next = backend::next_full_transaction_id();
    let mut registry = REGISTRY.exclusive();
    registry.mark_uncertain(0, next);
    publish_settled(&registry);
}

/// Whether no settled move is kept and no snapshot is uncertain, in any
/// database: the planner hook's whole cost for them then.
pub fn nothing_settled() -> bool {
    SETTLED.get().load(Ordering::Acquire) == 0 && UNCERTAIN.get().load(Ordering::Acquire) == 0
}

/// The settled moves of this database, and the marks below which a
/// snapshot's xmin makes it uncertain for an owner's tables.
pub fn settled_here() -> (Vec<Settled>, Vec<Uncertain>) {
    if nothing_settled() {
        return (Vec::new(), Vec::new());
    }
    purge_now_and_then();
    let db = database();
    let registry = REGISTRY.share();
    (
        registry
            .settled
            .iter()
            .filter(|s| s.parent != 0 && s.database == db)
            .copied()
            .collect(),
        registry
            .uncertain
            .iter()
            .filter(|u| u.below != 0)
            .copied()
            .collect(),
    )
}

/// Forgets, at most once a second, the settled moves no snapshot is older
/// than any more (on a standby too, where no new move purges them).
fn purge_now_and_then() {
    let now = backend::now_timestamp();
    let last = LAST_PURGE.get().load(Ordering::Relaxed);
    if now.saturating_sub(last) < 1_000_000
        || LAST_PURGE
            .get()
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let horizon = backend::oldest_snapshot_horizon();
    let mut registry = REGISTRY.exclusive();
    registry.purge(horizon);
    publish_settled(&registry);
}

/// The overrides of this database.
pub fn overrides_here() -> Vec<Override> {
    if !any_active() {
        return Vec::new();
    }
    let db = database();
    REGISTRY
        .share()
        .overrides
        .iter()
        .filter(|o| o.in_use() && o.database == db)
        .copied()
        .collect()
}

pub fn override_of(parent: pg_sys::Oid) -> Option<Override> {
    overrides_here()
        .into_iter()
        .find(|o| o.parent == parent.to_u32())
}

/// Whether backend `backend_id` is, in transaction `local_xid`, waiting
/// before planning for the migration of `parent` (so it planned nothing
/// that could miss moved rows).
pub fn is_waiting_for(backend_id: i32, local_xid: u32, parent: pg_sys::Oid) -> bool {
    let Ok(index) = usize::try_from(backend_id) else {
        return false;
    };
    if index >= MAX_WAITERS {
        return false;
    }
    let waiter = REGISTRY.share().waiters[index];
    waiter.database == database()
        && waiter.parent == parent.to_u32()
        && waiter.local_xid == local_xid
}

/// Records, until the returned guard is dropped, that this backend waits
/// before planning for the migration behind `o` (so a migration waiting for
/// older transactions knows this one planned nothing yet).
pub fn wait_for(o: &Override, backend_id: i32, local_xid: u32) -> WaitRecord {
    let slot = usize::try_from(backend_id)
        .ok()
        .filter(|b| *b < MAX_WAITERS);
    if let Some(slot) = slot {
        REGISTRY.exclusive().waiters[slot] = Waiter {
            database: o.database,
            parent: o.parent,
            local_xid,
        };
    }
    WaitRecord(slot)
}

/// Clears this backend's waiter entry when dropped (also on error unwind).
pub struct WaitRecord(Option<usize>);

impl Drop for WaitRecord {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            REGISTRY.exclusive().waiters[slot] = Waiter::default();
        }
    }
}

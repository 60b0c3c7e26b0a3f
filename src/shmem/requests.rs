//! Requests to a database's worker, posted in shared memory and delivered
//! by setting the worker's latch.
//!
//! A bulk load (COPY, a large INSERT … SELECT) wants the prepared shadows
//! attached before it runs, and a cycle as soon as it has committed, so
//! rows that reached DEFAULT move out at once rather than a naptime later.
//! Neither may happen inside the loading transaction: an ATTACH there would
//! hold DEFAULT's ACCESS EXCLUSIVE lock until the load commits. The worker
//! does both in transactions of its own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::pg::backend;

/// Databases with a worker, over the cluster.
const MAX_WORKERS: usize = 64;
/// Tables with a request not yet served, over the cluster.
const MAX_REQUESTS: usize = 256;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct WorkerSlot {
    database: u32,
    pid: i32,
    /// The table the worker is working on (0: none), and its owner, so that
    /// its successor knows whose code outlived the time limit and ended it.
    busy_with: u32,
    busy_owner: u32,
    /// Roles whose tables are left alone for having ended a worker, until
    /// when (PostgreSQL timestamps), passed on from worker to worker: by
    /// role, since a role can make new tables (new OIDs) at will.
    penalties: [(u32, i64); PENALTIES_KEPT],
}

const PENALTIES_KEPT: usize = 8;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Request {
    database: u32,
    parent: u32,
    attach: bool,
    cycle: bool,
    /// Ticket of the newest request for this table.
    posted: u64,
    /// Every request up to this ticket has been served.
    served: u64,
}

impl Request {
    fn pending(&self) -> bool {
        self.attach || self.cycle
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Board {
    workers: [WorkerSlot; MAX_WORKERS],
    requests: [Request; MAX_REQUESTS],
    next_ticket: u64,
}

unsafe impl PGRXSharedMemory for Board {}

impl Default for Board {
    fn default() -> Board {
        Board {
            workers: [WorkerSlot::default(); MAX_WORKERS],
            requests: [Request::default(); MAX_REQUESTS],
            next_ticket: 1,
        }
    }
}

static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pg_partition_predict_requests") };

/// What a worker is asked to do for a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Attach the table's prepared shadows now (a bulk load is about to run).
    Attach,
    /// Run the table's cycle now, and move any rows out of DEFAULT.
    Cycle,
}

/// A request taken by the worker.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    pub parent: pg_sys::Oid,
    pub attach: bool,
    pub cycle: bool,
    pub ticket: u64,
}

/// Shared memory; only while preloading.
pub fn init() {
    pg_shmem_init!(BOARD = Board::default());
}

fn database() -> u32 {
    backend::database_id().to_u32()
}

fn alive(pid: i32) -> bool {
    backend::process_alive(pid)
}

/// Called by a worker once connected: requests for its database reach it.
/// Returns the roles whose tables to leave alone, and for how long: those
/// whose table ended an earlier worker of this database (the one it was
/// ended working for is left alone for `penalty`).
pub fn register_worker(penalty: std::time::Duration) -> Vec<(pg_sys::Oid, std::time::Duration)> {
    let (db, pid) = (database(), backend::process_id());
    let now = backend::now_timestamp();
    let mut board = BOARD.exclusive();
    let slot = board
        .workers
        .iter()
        .position(|w| w.database == db)
        .or_else(|| board.workers.iter().position(|w| !alive(w.pid)));
    let Some(slot) = slot else {
        return Vec::new();
    };
    let previous = board.workers[slot];
    let mut penalties: Vec<(u32, i64)> = if previous.database == db {
        previous
            .penalties
            .iter()
            .copied()
            .filter(|(table, until)| *table != 0 && *until > now)
            .collect()
    } else {
        Vec::new()
    };
    if previous.database == db && previous.busy_with != 0 && previous.busy_owner != 0 {
        penalties.retain(|(owner, _)| *owner != previous.busy_owner);
        penalties.push((
            previous.busy_owner,
            now.saturating_add(penalty.as_micros().min(i64::MAX as u128) as i64),
        ));
    }
    // The latest ending first: those are kept when there are too many.
    penalties.sort_by_key(|(_, until)| std::cmp::Reverse(*until));
    penalties.truncate(PENALTIES_KEPT);
    let mut kept = [(0, 0); PENALTIES_KEPT];
    for (i, p) in penalties.iter().enumerate() {
        kept[i] = *p;
    }
    board.workers[slot] = WorkerSlot {
        database: db,
        pid,
        busy_with: 0,
        busy_owner: 0,
        penalties: kept,
    };
    penalties
        .into_iter()
        .map(|(owner, until)| {
            (
                pg_sys::Oid::from(owner),
                std::time::Duration::from_micros(until.saturating_sub(now).max(0) as u64),
            )
        })
        .collect()
}

/// Records whose tables this database's worker works on now (0: none).
pub fn worker_busy_for(owner: u32) {
    with_my_slot(|w| w.busy_owner = owner);
}

/// Records the table this database's worker works on now (`None`: none).
pub fn worker_busy_with(parent: Option<pg_sys::Oid>) {
    with_my_slot(|w| w.busy_with = parent.map_or(0, |p| p.to_u32()));
}

/// Changes this worker's own slot, if it has one.
fn with_my_slot(change: impl FnOnce(&mut WorkerSlot)) {
    let (db, pid) = (database(), backend::process_id());
    let mut board = BOARD.exclusive();
    if let Some(w) = board
        .workers
        .iter_mut()
        .find(|w| w.database == db && w.pid == pid)
    {
        change(w);
    }
}

/// The pid of this database's worker, if one is running.
pub fn worker_here() -> Option<i32> {
    let db = database();
    let pid = BOARD
        .share()
        .workers
        .iter()
        .find(|w| w.database == db)
        .map(|w| w.pid)?;
    alive(pid).then_some(pid)
}

/// Posts a request for `parent` to this database's worker and wakes it;
/// the ticket to wait for, or `None` when there is no worker or no room.
/// Never raises an error (it runs in commit callbacks).
pub fn post(parent: pg_sys::Oid, ask: Ask) -> Option<u64> {
    let pid = worker_here()?;
    let db = database();
    let ticket = {
        let mut board = BOARD.exclusive();
        let slot = board
            .requests
            .iter()
            .position(|r| r.database == db && r.parent == parent.to_u32())
            .or_else(|| {
                board
                    .requests
                    .iter()
                    .position(|r| !r.pending() && r.served >= r.posted)
            })?;
        let ticket = board.next_ticket;
        board.next_ticket += 1;
        let request = &mut board.requests[slot];
        if request.database != db || request.parent != parent.to_u32() {
            *request = Request {
                database: db,
                parent: parent.to_u32(),
                served: ticket - 1,
                ..Request::default()
            };
        }
        request.posted = ticket;
        match ask {
            Ask::Attach => request.attach = true,
            Ask::Cycle => request.cycle = true,
        }
        ticket
    };
    backend::wake_process(pid);
    Some(ticket)
}

/// Waits until the worker has served `ticket` for `parent`, or `timeout`
/// has passed; whether it was served.
pub fn wait_served(parent: pg_sys::Oid, ticket: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let db = database();
    loop {
        let served = BOARD
            .share()
            .requests
            .iter()
            .find(|r| r.database == db && r.parent == parent.to_u32())
            .is_none_or(|r| r.served >= ticket);
        if served {
            return true;
        }
        if Instant::now() >= deadline || worker_here().is_none() {
            return false;
        }
        backend::wait_on_latch(5);
    }
}

/// For the worker: the requests of its database, cleared from the board
/// (a request posted meanwhile is taken next time).
pub fn take_mine() -> Vec<Taken> {
    let db = database();
    let mut board = BOARD.exclusive();
    board
        .requests
        .iter_mut()
        .filter(|r| r.database == db && r.pending())
        .map(|r| {
            let taken = Taken {
                parent: pg_sys::Oid::from(r.parent),
                attach: r.attach,
                cycle: r.cycle,
                ticket: r.posted,
            };
            r.attach = false;
            r.cycle = false;
            taken
        })
        .collect()
}

/// For the worker: requests for `parent` up to `ticket` are served.
pub fn mark_served(parent: pg_sys::Oid, ticket: u64) {
    let db = database();
    let mut board = BOARD.exclusive();
    if let Some(r) = board
        .requests
        .iter_mut()
        .find(|r| r.database == db && r.parent == parent.to_u32())
    {
        r.served = r.served.max(ticket);
    }
}

/// Tables whose cycle the worker runs when this transaction commits.
static CYCLE_AT_COMMIT: Mutex<Vec<pg_sys::Oid>> = Mutex::new(Vec::new());
static mut CALLBACK_REGISTERED: bool = false;

/// Asks this database's worker for a cycle of `parent` once the current
/// transaction commits (nothing if it aborts).
pub fn cycle_after_commit(parent: pg_sys::Oid) {
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            CALLBACK_REGISTERED = true;
        }
    }
    if let Ok(mut pending) = CYCLE_AT_COMMIT.lock() {
        if !pending.contains(&parent) {
            pending.push(parent);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    let commit = event == pg_sys::XactEvent::XACT_EVENT_COMMIT;
    let ended = commit
        || event == pg_sys::XactEvent::XACT_EVENT_ABORT
        || event == pg_sys::XactEvent::XACT_EVENT_PREPARE;
    if !ended {
        return;
    }
    let parents = match CYCLE_AT_COMMIT.lock() {
        Ok(mut pending) => std::mem::take(&mut *pending),
        Err(_) => return,
    };
    if commit {
        for parent in parents {
            post(parent, Ask::Cycle);
        }
    }
}

//! Heavyweight locks: lock tags, what this backend holds, and waiting for
//! the transactions that hold a lock to end.

use std::time::{Duration, Instant};

use pgrx::pg_sys;

use crate::error::Result;

/// The lock tag of a relation of this database (SET_LOCKTAG_RELATION).
fn relation_lock_tag(relation: pg_sys::Oid) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: relation.to_u32(),
        locktag_field3: 0,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// Whether this backend holds a lock of any mode on `relation`.
pub fn holds_any_lock_on(relation: pg_sys::Oid) -> bool {
    let tag = relation_lock_tag(relation);
    (1..=pg_sys::AccessExclusiveLock as i32).any(|mode| held_by_me(&tag, mode))
}

#[cfg(any(feature = "pg15", feature = "pg16"))]
fn held_by_me(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) -> bool {
    unsafe { pg_sys::LockHeldByMe(tag, mode) }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn held_by_me(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) -> bool {
    unsafe { pg_sys::LockHeldByMe(tag, mode, false) }
}

/// Takes ACCESS SHARE on `relation` until the end of the transaction.
pub fn lock_for_reading(relation: pg_sys::Oid) {
    unsafe { pg_sys::LockRelationOid(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
}

/// A transaction of another backend, by virtual transaction id.
#[derive(Clone, Copy, Debug)]
pub struct Holder {
    pub backend_id: i32,
    pub local_xid: u32,
    vxid: pg_sys::VirtualTransactionId,
}

/// The lock modes a waiter can ask `lock_holders` about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflicting {
    /// Transactions holding a lock that conflicts with SHARE: writers.
    WithWriters,
}

/// The transactions that hold a lock on `relation` conflicting with `mode`.
pub fn lock_holders(relation: pg_sys::Oid, mode: Conflicting) -> Vec<Holder> {
    let tag = relation_lock_tag(relation);
    let lock_mode = match mode {
        Conflicting::WithWriters => pg_sys::ShareLock,
    } as pg_sys::LOCKMODE;
    let mut count: std::ffi::c_int = 0;
    unsafe {
        let array = pg_sys::GetLockConflicts(&tag, lock_mode, &mut count);
        if array.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(array, usize::try_from(count).unwrap_or(0))
            .iter()
            .map(|vxid| Holder {
                backend_id: backend_of(vxid),
                local_xid: vxid.localTransactionId,
                vxid: *vxid,
            })
            .collect()
    }
}

/// Waits until each holder's transaction has ended or `excused(holder)` is
/// true, at most `timeout` in all; whether every one was passed.
pub fn wait_for_holders(
    holders: &[Holder],
    timeout: Duration,
    excused: impl Fn(&Holder) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    for holder in holders {
        loop {
            let ended = unsafe { pg_sys::VirtualXactLock(holder.vxid, false) };
            if ended || excused(holder) {
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

/// This backend's virtual transaction: `(backend id, local xid)`. The
/// backend id is PostgreSQL's BackendId before 17 and ProcNumber from 17 on;
/// either is the same number `lock_holders` reports for this backend.
#[cfg(any(feature = "pg15", feature = "pg16"))]
pub fn my_transaction() -> (i32, u32) {
    unsafe { (pg_sys::MyBackendId, (*pg_sys::MyProc).lxid) }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
pub fn my_transaction() -> (i32, u32) {
    unsafe { (pg_sys::MyProcNumber, (*pg_sys::MyProc).vxid.lxid) }
}

#[cfg(any(feature = "pg15", feature = "pg16"))]
fn backend_of(vxid: &pg_sys::VirtualTransactionId) -> i32 {
    vxid.backendId
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn backend_of(vxid: &pg_sys::VirtualTransactionId) -> i32 {
    vxid.procNumber
}

/// The second field of the lock tag of a table's steps.
const TABLE_STEPS_LOCK_SPACE: u32 = 0x7070_7000;
/// The last field of that tag. SQL's advisory-lock functions only ever use
/// 1 (one bigint key) or 2 (two integer keys), so no role can take a lock
/// with this tag: none can hold a table's steps up by taking its key.
const EXTENSION_ONLY_ADVISORY: u16 = 0x7070;

/// The lock tag of `parent`'s steps: an advisory lock of this database
/// (SET_LOCKTAG_ADVISORY) that only this code names.
fn table_steps_lock_tag(parent: pg_sys::Oid) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: TABLE_STEPS_LOCK_SPACE,
        locktag_field3: parent.to_u32(),
        locktag_field4: EXTENSION_ONLY_ADVISORY,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Serialises the steps of one table across sessions (a worker and a
/// manual run_cycle() must not recount the same buckets at once). Held to
/// the end of the transaction. `wait`: block until free; otherwise report
/// whether it was free.
pub fn lock_table_steps(parent: pg_sys::Oid, wait: bool) -> Result<bool> {
    let tag = table_steps_lock_tag(parent);
    let acquired = unsafe {
        pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            !wait,
        )
    };
    Ok(acquired != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL)
}

/// Releases every session-level advisory lock of this backend: the
/// worker's, after each of its transactions. Code of a table's owner that
/// the worker ran (a trigger, a policy) may have taken one, and it would
/// otherwise stay held by the worker, for every application that uses that
/// key, until the worker restarts. The worker takes none of its own.
pub fn release_session_advisory_locks() {
    unsafe { pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as pg_sys::LOCKMETHODID) };
}

/// Takes `SHARE UPDATE EXCLUSIVE` on `relation` (kept to the end of the
/// transaction) if no one holds a conflicting lock; false otherwise, or if
/// the relation is gone.
pub fn try_lock_against_ddl(relation: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::ConditionalLockRelationOid(
            relation,
            pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE,
        ) && crate::pg::relation::exists(relation)
    }
}

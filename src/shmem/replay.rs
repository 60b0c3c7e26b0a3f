//! Routing overrides in the WAL, for hot standbys.
//!
//! A standby's queries plan with the partition map they find, like the
//! primary's. One planned before a move's commit is replayed and run after
//! it would read DEFAULT without the moved rows and not yet their
//! partition: the primary's queries are kept from that by the override's
//! rewrite (`hooks::rewrite`), and so are the standby's, since publishing
//! and withdrawing an override write a WAL record of this resource manager
//! which the standby replays into its own shared memory (`routing`
//! registers what replaying does). Each move logs its override again just
//! before it starts, for standbys that began replaying after it was first
//! published; a primary that starts logs a reset, since none of its moves
//! survived the restart.
//!
//! The record format is fixed (a version byte, then fixed-width fields): a
//! standby may run an older library than its primary, and it skips, with a
//! warning, a record it cannot read rather than stop replaying.

use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::gucs;

const PUBLISHED: u8 = 0x10;
const WITHDRAWN: u8 = 0x20;
const RESET: u8 = 0x30;
/// A `Settled`, written as an override whose `migration_id` carries the
/// transaction ID and `shadow` the owner (the format is the same for every
/// kind).
const SETTLED: u8 = 0x40;
const FORMAT: u8 = 1;
const RECORD_LEN: usize = 1 + 4 * 4 + 8 * 2 + 1;

/// A routing override, as shared memory (`routing`) and the WAL hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Override {
    pub database: u32,
    pub parent: u32,
    pub shadow: u32,
    pub default_partition: u32,
    pub migration_id: i64,
    /// When it was published (PostgreSQL timestamp, microseconds).
    pub since: i64,
    /// Kept in the state file across a crash restart: only for rows that
    /// wait in the shadow (a migration begun by version 0.2). A move of 0.3
    /// is one transaction, which a crash rolls back: its override must not
    /// outlive it (writers would wait for a move that is not coming), nor
    /// reach a base backup taken meanwhile.
    pub durable: bool,
    /// Set by WAL replay (this module), on a standby or in crash
    /// recovery: a replayed override that is not durable ends with
    /// recovery, since no move on this server will conclude it.
    pub replayed: bool,
}

/// The newest move out of DEFAULT of a parent, by the transaction that made
/// it. A snapshot taken before that transaction committed still sees the
/// moved rows in DEFAULT (their deletion is not visible to it) and not in
/// their new partition (nor is their insertion), while the partition map it
/// plans with, read from the catalog, no longer sends their keys to
/// DEFAULT: in a REPEATABLE READ or SERIALIZABLE transaction such a
/// snapshot outlives the move, and `hooks::rewrite` reads DEFAULT apart for
/// it. One entry per parent is enough: moves of one parent follow one
/// another, so a snapshot that sees the newest sees every earlier one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Settled {
    pub database: u32,
    pub parent: u32,
    pub default_partition: u32,
    /// The move's top-level transaction ID, in full (epoch included): it
    /// is compared long after, past any wraparound of the 32-bit one.
    pub xid: u64,
    /// The table's owner: when entries must give way, one role's entries
    /// give way to its own (see `routing`).
    pub owner: u32,
}

/// What replaying a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    Published(Override),
    Withdrawn {
        database: u32,
        parent: u32,
    },
    /// The primary started: no move of its is in flight.
    Reset,
    /// A move's transaction, for snapshots older than its commit.
    Settled(Settled),
}

struct Handlers {
    replay: fn(Replayed),
    end_of_recovery: fn(),
    start_of_recovery: fn(),
}

static HANDLERS: OnceLock<Handlers> = OnceLock::new();

static mut RESOURCE_MANAGER: pg_sys::RmgrData = pg_sys::RmgrData {
    rm_name: c"pg_partition_predict".as_ptr(),
    rm_redo: Some(redo),
    rm_desc: Some(describe),
    rm_identify: Some(identify),
    rm_startup: Some(start_of_recovery),
    rm_cleanup: Some(end_of_recovery),
    rm_mask: None,
    rm_decode: None,
};

/// Only while preloading: registers the resource manager, whose records
/// `replay` applies, and whose recovery begins with `start_of_recovery`
/// and ends with `end_of_recovery`.
pub fn init(replay: fn(Replayed), end_of_recovery: fn(), start_of_recovery: fn()) {
    let _ = HANDLERS.set(Handlers {
        replay,
        end_of_recovery,
        start_of_recovery,
    });
    unsafe {
        pg_sys::RegisterCustomRmgr(gucs::wal_resource_manager_id(), &raw mut RESOURCE_MANAGER);
    }
}

fn encode(o: &Override) -> [u8; RECORD_LEN] {
    let mut record = [0u8; RECORD_LEN];
    record[0] = FORMAT;
    let fields = [o.database, o.parent, o.shadow, o.default_partition];
    for (i, f) in fields.iter().enumerate() {
        record[1 + i * 4..1 + i * 4 + 4].copy_from_slice(&f.to_le_bytes());
    }
    record[17..25].copy_from_slice(&o.migration_id.to_le_bytes());
    record[25..33].copy_from_slice(&o.since.to_le_bytes());
    record[33] = u8::from(o.durable);
    record
}

fn decode(record: &[u8]) -> Option<Override> {
    if record.len() != RECORD_LEN || record[0] != FORMAT {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(record[i..i + 4].try_into().unwrap());
    let i64_at = |i: usize| i64::from_le_bytes(record[i..i + 8].try_into().unwrap());
    Some(Override {
        database: u32_at(1),
        parent: u32_at(5),
        shadow: u32_at(9),
        default_partition: u32_at(13),
        migration_id: i64_at(17),
        since: i64_at(25),
        durable: record[33] != 0,
        replayed: true,
    })
}

/// What a record of kind `info` with `data` asks replay to do.
fn interpret(info: u8, data: &[u8]) -> Option<Replayed> {
    match (info, decode(data)) {
        (PUBLISHED, Some(o)) => Some(Replayed::Published(o)),
        (WITHDRAWN, Some(o)) => Some(Replayed::Withdrawn {
            database: o.database,
            parent: o.parent,
        }),
        (RESET, Some(_)) => Some(Replayed::Reset),
        (SETTLED, Some(o)) => u64::try_from(o.migration_id).ok().map(|xid| {
            Replayed::Settled(Settled {
                database: o.database,
                parent: o.parent,
                default_partition: o.default_partition,
                xid,
                owner: o.shadow,
            })
        }),
        _ => None,
    }
}

/// Whether standbys can be reading this server's WAL.
fn standbys_may_read() -> bool {
    unsafe {
        pg_sys::wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32
            && !pg_sys::RecoveryInProgress()
    }
}

fn insert(info: u8, o: &Override) {
    if !standbys_may_read() {
        return;
    }
    let mut record = encode(o);
    unsafe {
        pg_sys::XLogBeginInsert();
        #[cfg(feature = "pg15")]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast::<c_char>(), RECORD_LEN as i32);
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast::<c_char>(), RECORD_LEN as u32);
        #[cfg(feature = "pg18")]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast(), RECORD_LEN as u32);
        pg_sys::XLogInsert(gucs::wal_resource_manager_id(), info);
    }
}

pub fn log_published(o: &Override) {
    insert(PUBLISHED, o);
}

pub fn log_withdrawn(database: u32, parent: u32) {
    insert(
        WITHDRAWN,
        &Override {
            database,
            parent,
            ..Override::default()
        },
    );
}

pub fn log_settled(s: &Settled) {
    insert(
        SETTLED,
        &Override {
            database: s.database,
            parent: s.parent,
            default_partition: s.default_partition,
            shadow: s.owner,
            migration_id: i64::try_from(s.xid).unwrap_or(i64::MAX),
            ..Override::default()
        },
    );
}

/// Logged by a primary as it starts (by the launcher).
pub fn log_reset() {
    insert(RESET, &Override::default());
}

unsafe fn contents(record: *mut pg_sys::XLogReaderState) -> (u8, Vec<u8>) {
    unsafe {
        let decoded = (*record).record;
        let info = (*decoded).header.xl_info & !(pg_sys::XLR_INFO_MASK as u8);
        let len = (*decoded).main_data_len as usize;
        let data = if len == 0 || (*decoded).main_data.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts((*decoded).main_data.cast::<u8>(), len).to_vec()
        };
        (info, data)
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn redo(record: *mut pg_sys::XLogReaderState) {
    let (info, data) = unsafe { contents(record) };
    match (interpret(info, &data), HANDLERS.get()) {
        (Some(replayed), Some(handlers)) => (handlers.replay)(replayed),
        // An error here would stop the standby: a record this library
        // cannot read costs it only the rewrite of one move.
        _ => pgrx::warning!(
            "pg_partition_predict: skipped a WAL record it cannot read (kind {info:#x}, {} byte(s)); upgrade the library on this server",
            data.len()
        ),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn describe(
    buf: pg_sys::StringInfo,
    record: *mut pg_sys::XLogReaderState,
) {
    let (info, data) = unsafe { contents(record) };
    let text = match interpret(info, &data) {
        Some(Replayed::Published(o)) => format!(
            "database {} parent {} shadow {} default {} migration {}",
            o.database, o.parent, o.shadow, o.default_partition, o.migration_id
        ),
        Some(Replayed::Withdrawn { database, parent }) => {
            format!("database {database} parent {parent}")
        }
        Some(Replayed::Reset) => String::new(),
        Some(Replayed::Settled(s)) => format!(
            "database {} parent {} default {} xid {}",
            s.database, s.parent, s.default_partition, s.xid
        ),
        None => format!("unreadable ({} byte(s))", data.len()),
    };
    let text = std::ffi::CString::new(text).unwrap_or_default();
    unsafe { pg_sys::appendStringInfoString(buf, text.as_ptr()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn identify(info: u8) -> *const c_char {
    let name: &CStr = match info & !(pg_sys::XLR_INFO_MASK as u8) {
        PUBLISHED => c"OVERRIDE_PUBLISHED",
        WITHDRAWN => c"OVERRIDE_WITHDRAWN",
        RESET => c"OVERRIDES_RESET",
        SETTLED => c"MOVE_SETTLED",
        _ => return std::ptr::null(),
    };
    name.as_ptr()
}

#[pg_guard]
unsafe extern "C-unwind" fn start_of_recovery() {
    if let Some(handlers) = HANDLERS.get() {
        (handlers.start_of_recovery)();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn end_of_recovery() {
    if let Some(handlers) = HANDLERS.get() {
        (handlers.end_of_recovery)();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn a_record_reads_back_as_what_it_was_written_from() {
        let o = Override {
            database: 5,
            parent: u32::MAX,
            shadow: 16_385,
            default_partition: 16_390,
            migration_id: i64::MAX,
            since: -3,
            durable: true,
            replayed: false,
        };
        assert_eq!(
            interpret(PUBLISHED, &encode(&o)),
            Some(Replayed::Published(Override {
                replayed: true,
                ..o
            }))
        );
        assert_eq!(
            interpret(WITHDRAWN, &encode(&o)),
            Some(Replayed::Withdrawn {
                database: 5,
                parent: u32::MAX
            })
        );
        // Another length, another format or kind: skipped, not applied.
        assert_eq!(interpret(PUBLISHED, &encode(&o)[1..]), None);
        let mut other_format = encode(&o);
        other_format[0] = FORMAT + 1;
        assert_eq!(interpret(PUBLISHED, &other_format), None);
        assert_eq!(interpret(0x50, &encode(&o)), None);
        let settled = Settled {
            database: 5,
            parent: 7,
            default_partition: 9,
            xid: u64::from(u32::MAX) + 7,
            owner: 10,
        };
        let mut record = Override {
            database: 5,
            parent: 7,
            shadow: 10,
            default_partition: 9,
            migration_id: i64::from(u32::MAX) + 7,
            ..Override::default()
        };
        assert_eq!(
            interpret(SETTLED, &encode(&record)),
            Some(Replayed::Settled(settled))
        );
        // A transaction ID out of range is not one.
        record.migration_id = -1;
        assert_eq!(interpret(SETTLED, &encode(&record)), None);
    }
}

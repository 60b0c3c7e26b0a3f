//! Routing overrides in the WAL, for hot standbys.
//!
//! A standby's queries plan with the partition map they find, like the
//! primary's. One planned before a move's commit is replayed and run after
//! it would read DEFAULT without the moved rows and not yet their
//! partition: the primary's queries are kept from that by the override's
//! rewrite (`hooks::rewrite`), and so are the standby's, since publishing
//! and withdrawing an override write a WAL record of this resource manager
//! which the standby replays into its own shared memory. Each move logs its
//! override again just before it starts, for standbys that began replaying
//! after it was first published.
//!
//! Overrides of moves are not durable: one replayed by a standby ends with
//! recovery (promotion, or the end of crash recovery), when the move it
//! belongs to has either committed or gone with the primary.

use std::ffi::{c_char, CStr};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::routing::{self, Override};
use crate::gucs;

const PUBLISHED: u8 = 0x10;
const WITHDRAWN: u8 = 0x20;
const RECORD_LEN: usize = 4 * 4 + 8 * 2 + 1;

static mut RESOURCE_MANAGER: pg_sys::RmgrData = pg_sys::RmgrData {
    rm_name: c"pg_partition_predict".as_ptr(),
    rm_redo: Some(redo),
    rm_desc: Some(describe),
    rm_identify: Some(identify),
    rm_startup: None,
    rm_cleanup: Some(end_of_recovery),
    rm_mask: None,
    rm_decode: None,
};

/// Only while preloading.
pub fn init() {
    unsafe {
        pg_sys::RegisterCustomRmgr(gucs::wal_resource_manager_id(), &raw mut RESOURCE_MANAGER);
    }
}

fn encode(o: &Override) -> [u8; RECORD_LEN] {
    let mut record = [0u8; RECORD_LEN];
    let fields = [o.database, o.parent, o.shadow, o.default_partition];
    for (i, f) in fields.iter().enumerate() {
        record[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
    }
    record[16..24].copy_from_slice(&o.migration_id.to_le_bytes());
    record[24..32].copy_from_slice(&o.since.to_le_bytes());
    record[32] = u8::from(o.durable);
    record
}

fn decode(record: &[u8]) -> Option<Override> {
    if record.len() != RECORD_LEN {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(record[i..i + 4].try_into().unwrap());
    let i64_at = |i: usize| i64::from_le_bytes(record[i..i + 8].try_into().unwrap());
    Some(Override {
        database: u32_at(0),
        parent: u32_at(4),
        shadow: u32_at(8),
        default_partition: u32_at(12),
        migration_id: i64_at(16),
        since: i64_at(24),
        durable: record[32] != 0,
        replayed: true,
    })
}

/// Whether standbys can be reading this server's WAL.
fn standbys_may_read() -> bool {
    unsafe {
        pg_sys::wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32
            && !pg_sys::RecoveryInProgress()
    }
}

fn insert(info: u8, record: &mut [u8]) {
    if !standbys_may_read() {
        return;
    }
    unsafe {
        pg_sys::XLogBeginInsert();
        #[cfg(any(feature = "pg15"))]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast::<c_char>(), record.len() as i32);
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast::<c_char>(), record.len() as u32);
        #[cfg(feature = "pg18")]
        pg_sys::XLogRegisterData(record.as_mut_ptr().cast(), record.len() as u32);
        pg_sys::XLogInsert(gucs::wal_resource_manager_id(), info);
    }
}

pub(super) fn log_published(o: &Override) {
    insert(PUBLISHED, &mut encode(o));
}

pub(super) fn log_withdrawn(database: u32, parent: u32) {
    let mut record = encode(&Override {
        database,
        parent,
        ..Override::default()
    });
    insert(WITHDRAWN, &mut record);
}

unsafe fn contents(record: *mut pg_sys::XLogReaderState) -> (u8, Option<Override>) {
    unsafe {
        let decoded = (*record).record;
        let info = (*decoded).header.xl_info & !(pg_sys::XLR_INFO_MASK as u8);
        let data = std::slice::from_raw_parts(
            (*decoded).main_data.cast::<u8>(),
            (*decoded).main_data_len as usize,
        );
        (info, decode(data))
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn redo(record: *mut pg_sys::XLogReaderState) {
    match unsafe { contents(record) } {
        (PUBLISHED, Some(o)) => routing::replay_published(o),
        (WITHDRAWN, Some(o)) => routing::replay_withdrawn(o.database, o.parent),
        (info, _) => pgrx::error!("pg_partition_predict: unknown WAL record {info:#x}"),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn describe(
    buf: pg_sys::StringInfo,
    record: *mut pg_sys::XLogReaderState,
) {
    let (_, o) = unsafe { contents(record) };
    if let Some(o) = o {
        let text = format!(
            "database {} parent {} shadow {} default {} migration {}\0",
            o.database, o.parent, o.shadow, o.default_partition, o.migration_id
        );
        unsafe { pg_sys::appendStringInfoString(buf, text.as_ptr().cast()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn identify(info: u8) -> *const c_char {
    let name: &CStr = match info & !(pg_sys::XLR_INFO_MASK as u8) {
        PUBLISHED => c"OVERRIDE_PUBLISHED",
        WITHDRAWN => c"OVERRIDE_WITHDRAWN",
        _ => return std::ptr::null(),
    };
    name.as_ptr()
}

#[pg_guard]
unsafe extern "C-unwind" fn end_of_recovery() {
    routing::end_replayed_moves();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn a_record_reads_back_as_the_override_it_was_written_from() {
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
        let back = decode(&encode(&o)).unwrap();
        assert_eq!(
            back,
            Override {
                replayed: true,
                ..o
            }
        );
        assert!(decode(&encode(&o)[1..]).is_none());
    }
}

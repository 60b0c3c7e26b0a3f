//! The hooks through which PostgreSQL calls the extension inside users'
//! statements: the planner hook (routing overrides, large INSERT … SELECT)
//! and the ProcessUtility hook (`COPY … FROM`), each installed by its
//! file's `init()` while preloading, chaining to whatever was installed
//! before; and an event trigger before `DROP EXTENSION`, installed by
//! `sql/schema.sql` (it works without preloading).
//!
//! The extension's own statements must not be rewritten or treated as bulk
//! loads: `as_migrator` and `while_ingesting` make the hooks stand aside
//! in this backend for their duration.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod bulk_load;
pub mod drop_extension;
pub mod planner;
pub mod rewrite;
pub mod utility;

/// Only while preloading.
pub fn init() {
    planner::init();
    utility::init();
}

/// Set while this backend runs a migration's own statements, which must see
/// DEFAULT and the shadow as they are.
static MIGRATING_HERE: AtomicBool = AtomicBool::new(false);
/// Set while this backend runs ingest's own statements: its INSERT is not
/// a bulk load for the hooks to prepare (ingest prepared it).
static INGESTING_HERE: AtomicBool = AtomicBool::new(false);
/// Set while this backend attaches a shadow: the one ATTACH PARTITION the
/// utility hook lets through on a table whose rows are being moved.
static ATTACHING_HERE: AtomicBool = AtomicBool::new(false);

fn standing_aside<R>(flag: &'static AtomicBool, f: impl FnOnce() -> R) -> R {
    struct Reset(&'static AtomicBool, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.store(self.1, Ordering::Relaxed);
        }
    }
    let _reset = Reset(flag, flag.swap(true, Ordering::Relaxed));
    f()
}

/// Runs `f` as the migration itself: its statements on DEFAULT and the
/// shadow are neither rewritten nor made to wait.
pub fn as_migrator<R>(f: impl FnOnce() -> R) -> R {
    standing_aside(&MIGRATING_HERE, f)
}

/// Runs `f` as `ingest`: its load is not taken for a bulk load to prepare.
pub fn while_ingesting<R>(f: impl FnOnce() -> R) -> R {
    standing_aside(&INGESTING_HERE, f)
}

/// Runs `f`, the extension's own ATTACH of a shadow.
pub fn as_attacher<R>(f: impl FnOnce() -> R) -> R {
    standing_aside(&ATTACHING_HERE, f)
}

fn attaching_here() -> bool {
    ATTACHING_HERE.load(Ordering::Relaxed)
}

fn migrating_here() -> bool {
    MIGRATING_HERE.load(Ordering::Relaxed)
}

fn ingesting_here() -> bool {
    INGESTING_HERE.load(Ordering::Relaxed)
}

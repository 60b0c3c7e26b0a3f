//! Session state that makes the hooks stand aside for the extension's own
//! statements in this backend: a migration's statements on DEFAULT and the
//! shadow must see them as they are, `ingest`'s load is not a bulk load to
//! prepare, and the extension's own ATTACH of a shadow is the one the
//! utility hook lets through on a table whose rows are being moved.
//!
//! The flags are per backend (a static in each process) and reset when the
//! closure returns or unwinds, so an error cannot leave a hook switched off.

use std::sync::atomic::{AtomicBool, Ordering};

static MIGRATING_HERE: AtomicBool = AtomicBool::new(false);
static INGESTING_HERE: AtomicBool = AtomicBool::new(false);
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

pub fn attaching_here() -> bool {
    ATTACHING_HERE.load(Ordering::Relaxed)
}

pub fn migrating_here() -> bool {
    MIGRATING_HERE.load(Ordering::Relaxed)
}

pub fn ingesting_here() -> bool {
    INGESTING_HERE.load(Ordering::Relaxed)
}

//! The hooks through which PostgreSQL calls the extension inside users'
//! statements: the planner hook (routing overrides, large INSERT … SELECT)
//! and the ProcessUtility hook (`COPY … FROM`), each installed by its
//! file's `init()` while preloading, chaining to whatever was installed
//! before; and an event trigger before `DROP EXTENSION`, installed by
//! `sql/schema.sql` (it works without preloading).
//!
//! The extension's own statements must not be rewritten or treated as bulk
//! loads: `pg::stand_aside` makes the hooks stand aside in this backend
//! for their duration.

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

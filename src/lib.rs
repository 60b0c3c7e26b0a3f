//! pg_partition_predict: PostgreSQL glue around the pure `partition_core`
//! and `forecast` crates. The tree reads top-down as the program runs;
//! CONTRIBUTING.md draws the layers and the rule each follows.
//!
//! - `api`: the SQL functions; `worker`: the background workers.
//! - `cycle`: one cycle per table (collect → predict → plan);
//!   `act`: activation, migration out of DEFAULT, ingest, retention, and
//!   the tables the extension creates.
//! - `hooks`: the planner and ProcessUtility hooks.
//! - `state`: every statement on the extension's own tables.
//! - `catalog`: what the extension reads of PostgreSQL's catalog.
//! - `shmem`: routing overrides and worker requests in shared memory.
//! - `pg`: safe wrappers over PostgreSQL internals.
//! - `gucs`, `error`: settings and errors, used everywhere.
#![deny(ffi_unwind_calls)]
// `unsafe` lives only where PostgreSQL internals are touched: `pg`,
// `hooks`, `shmem`, and the entry points below.
#![deny(unsafe_code)]

use pgrx::prelude::*;

mod act;
mod api;
mod catalog;
mod cycle;
mod error;
mod gucs;
#[allow(unsafe_code)]
mod hooks;
#[allow(unsafe_code)]
mod pg;
#[allow(unsafe_code)]
mod shmem;
mod state;
mod worker;

// PostgreSQL 18 shows the name and version in pg_get_loaded_modules().
pgrx::pg_module_magic!(name = c"pg_partition_predict", version = MODULE_VERSION);

const MODULE_VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(version) => version,
    Err(_) => panic!("the crate version has a NUL byte"),
};

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!(
    "../sql/procedures.sql",
    name = "procedures",
    requires = [
        api::partition_predict::activate,
        api::partition_predict::migration_step,
        api::partition_predict::ingest_prepare,
        api::partition_predict::ingest_activate,
        api::partition_predict::ingest_load
    ]
);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    pg::backend::reserve_guc_prefix(gucs::PREFIX);
    // Shared memory, hooks and background workers can only be set up
    // while the postmaster preloads the library.
    if pg::backend::note_preloading() {
        gucs::init_postmaster();
        shmem::init();
        hooks::init();
        // pg_upgrade runs both servers in binary-upgrade mode, where
        // nothing but the upgrade may change a table.
        if pg::backend::in_binary_upgrade() {
            pg::backend::note_binary_upgrade();
        } else {
            worker::init();
        }
    }
}

#[pg_guard]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_partition_predict_launcher_main(_arg: pg_sys::Datum) {
    worker::launcher::run();
}

#[pg_guard]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_partition_predict_worker_main(_arg: pg_sys::Datum) {
    worker::database::run();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_partition_predict'"]
    }
}

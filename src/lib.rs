//! pg_partition_predict: PostgreSQL glue around the pure `partition_core` crate.
//!
//! One module per concern: settings (`gucs`), the SQL API (`api`), catalog
//! reads (`catalog`), the cycle's steps (`collect`, `predict`, `shadows`,
//! `cycle`), moving rows out of DEFAULT (`migration`, `routing`), bulk loads
//! (`ingest`, `bulk`), the workers (`worker`, `wakeup`), non-blocking DDL
//! (`ddl`), pinned session settings (`session`), subtransactions (`subxact`)
//! and errors (`error`). CONTRIBUTING.md has the full map.
#![deny(ffi_unwind_calls)]

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

mod alerts;
mod api;
mod bulk;
mod catalog;
mod collect;
mod cycle;
mod ddl;
mod error;
mod gucs;
mod ingest;
mod migration;
mod predict;
mod regclass;
mod routing;
mod session;
mod settings;
mod shadows;
mod subxact;
mod wakeup;
mod worker;

pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", finalize);

/// Set when the postmaster loaded the library through
/// `shared_preload_libraries`; backends inherit it through fork.
static PRELOADED: AtomicBool = AtomicBool::new(false);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
    let preloaded = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloaded, Ordering::Relaxed);
    // Background workers can only be registered while preloading.
    if preloaded {
        worker::register_launcher();
        routing::install();
        wakeup::install();
        bulk::install();
    }
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

//! Background workers: the launcher (registered while preloading) and one
//! worker per database it maintains.

pub mod database;
pub mod launcher;

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};

const LIBRARY: &str = "pg_partition_predict";

/// Registers the launcher; only while preloading.
pub fn init() {
    BackgroundWorkerBuilder::new("pg_partition_predict launcher")
        .set_type("pg_partition_predict launcher")
        .set_library(LIBRARY)
        .set_function("pg_partition_predict_launcher_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

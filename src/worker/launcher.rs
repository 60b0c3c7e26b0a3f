//! The launcher: keeps one worker running per database listed in
//! `pg_partition_predict.database`, restarting failing ones with growing
//! delays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use partition_core::databases::parse_database_list;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};

use super::LIBRARY;
use crate::gucs;
use crate::pg::backend;
use crate::shmem::routing;

/// How often the launcher checks on its workers.
const LAUNCHER_POLL: Duration = Duration::from_secs(1);
/// A worker that dies sooner than this after starting counts as failing,
/// and is restarted with growing delays (1 s, 2 s, 4 s … up to a minute):
/// a database that does not exist must not make it spin.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// One database's worker as the launcher sees it.
#[derive(Default)]
struct Supervised {
    handle: Option<DynamicBackgroundWorker>,
    started: Option<Instant>,
    quick_deaths: u32,
    not_before: Option<Instant>,
}

impl Supervised {
    fn keep_running(&mut self, database: &str) {
        if let Some(handle) = &self.handle {
            match handle.pid() {
                Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => return,
                Err(_) => {
                    let uptime = self.started.map(|s| s.elapsed()).unwrap_or_default();
                    self.quick_deaths = if uptime < HEALTHY_UPTIME {
                        self.quick_deaths + 1
                    } else {
                        0
                    };
                    let delay = Duration::from_secs(1u64 << self.quick_deaths.min(6))
                        .min(MAX_RESTART_DELAY);
                    self.not_before = Some(Instant::now() + delay);
                    self.handle = None;
                    pgrx::log!("pg_partition_predict: worker for database \"{database}\" stopped; restarting in {delay:?}");
                }
            }
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let started =
            BackgroundWorkerBuilder::new(&format!("pg_partition_predict worker {database}"))
                .set_type("pg_partition_predict worker")
                .set_library(LIBRARY)
                .set_function("pg_partition_predict_worker_main")
                .enable_spi_access()
                .set_extra(database)
                .set_restart_time(None)
                .set_notify_pid(backend::process_id())
                .load_dynamic();
        match started {
            Ok(handle) => {
                self.handle = Some(handle);
                self.started = Some(Instant::now());
            }
            Err(_) => {
                pgrx::log!("pg_partition_predict: no free background worker slot for database \"{database}\" (raise max_worker_processes)");
                self.not_before = Some(Instant::now() + MAX_RESTART_DELAY);
            }
        }
    }

    fn stop(self) {
        if let Some(handle) = self.handle {
            handle.terminate();
        }
    }
}

/// The launcher's main loop (entered from `pg_partition_predict_launcher_main`).
pub fn run() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    routing::reset_on_standbys();
    let mut workers: HashMap<String, Supervised> = HashMap::new();
    loop {
        if BackgroundWorker::sighup_received() {
            backend::reload_configuration();
        }
        let wanted = parse_database_list(&gucs::databases());
        let unwanted: Vec<String> = workers
            .keys()
            .filter(|db| !wanted.contains(db))
            .cloned()
            .collect();
        for database in unwanted {
            if let Some(worker) = workers.remove(&database) {
                worker.stop();
            }
        }
        for database in wanted {
            workers
                .entry(database.clone())
                .or_default()
                .keep_running(&database);
        }
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_POLL)) {
            break;
        }
    }
}

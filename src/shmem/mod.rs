//! Shared memory: the routing overrides (with their crash-safe state file)
//! and the request board through which backends ask a database's worker
//! for work.

pub mod replay;
pub mod requests;
pub mod routing;

/// Only while preloading.
pub fn init() {
    routing::init();
    requests::init();
}

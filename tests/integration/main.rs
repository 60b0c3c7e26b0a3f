//! Integration tests: a real PostgreSQL cluster per test, driven through
//! a client, with the extension as `cargo pgrx install` put it.
//! Run by `scripts/test` (`cargo test --features integration --test integration`).

mod arrivals;
mod cluster;
mod forecasting;
mod foundation;
mod ingest;
mod lifecycle;
mod migration;
mod monitoring;
mod partman;
mod replicas;
mod retention;
mod security;
mod shadows;
mod time_zones;
mod traps;
mod workers;

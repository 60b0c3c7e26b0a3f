//! Pure-Rust core of pg_partition_predict.
//!
//! Nothing here links against PostgreSQL: the extension crate feeds catalog
//! text in and gets plain values out, so everything in this crate is tested
//! with `cargo test -p partition_core` in milliseconds.
#![forbid(unsafe_code)]

pub mod arrivals;
pub mod bound;
pub mod calendar;
pub mod counters;
pub mod databases;
pub mod fairness;
pub mod key;
pub mod naming;
pub mod planner;
pub mod retention;
pub mod runway;
pub mod sampling;
pub mod shadows;
pub mod timeline;
pub mod zone;

pub use bound::{Bound, BoundError, PartitionBound};
pub use key::{KeyType, KeyValue, UnsupportedKeyType};
pub use zone::Zone;

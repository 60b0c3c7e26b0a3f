//! Safe wrappers over PostgreSQL internals: the only layer below the
//! extension's own logic, and with `hooks/` and `shmem/` the only place
//! where `unsafe` code and `pg_sys` calls live. Differences between
//! PostgreSQL versions belong here.
//!
//! Nothing here knows about the extension's state tables.

pub mod backend;
pub mod lock_retry;
pub mod locks;
pub mod regclass;
pub mod relation;
pub mod session;
pub mod spi;
pub mod stand_aside;
pub mod subxact;

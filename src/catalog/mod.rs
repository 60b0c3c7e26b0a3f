//! The extension's state (the tables of schema `partition_predict`) and the
//! PostgreSQL catalog as the extension reads it, and the tables it creates.
//! The cycle's steps keep the queries of their own private history
//! (`cycle::collect`'s counters, `cycle::predict`'s forecast log); whatever
//! more than one part of the program reads or writes lives here.

pub mod alerts;
pub mod create;
pub mod history;
pub mod migrations;
pub mod partman;
pub mod settings;
pub mod shadows;
pub mod state;
pub mod table;

pub use table::{load_managed_table, load_partitioned_table, PartitionedTable, QualifiedName};

//! PostgreSQL's catalog as the extension reads it: a partitioned table,
//! its key and partitions, names rebuilt from OIDs (`table`), the
//! tablespaces, schemas and intervals settings name (`objects`), and
//! pg_partman's configuration of a table it maintains (`partman`). The
//! extension's own tables are `state/`'s.

pub mod objects;
pub mod partman;
pub mod table;

pub use table::{load_partitioned_table, PartitionedTable, QualifiedName};

//! What the extension does to a managed table beyond planning: attach
//! shadows (`activate`), move rows out of DEFAULT (`migrate`) and load a
//! batch with its partitions ready first (`ingest`); outlier keys are held
//! back in DEFAULT (`quarantine`). Old partitions expire (`retention`).
//! The tables the extension makes (DEFAULT partitions, shadows) are
//! `create`'s.

pub mod activate;
pub mod create;
pub mod ingest;
mod key_groups;
pub mod migrate;
pub mod quarantine;
pub mod retention;

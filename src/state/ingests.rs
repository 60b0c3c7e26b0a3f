//! `ingests`: one row per batch `ingest()` loaded, with what the forecast
//! expected of the partitions it filled.

use pgrx::prelude::*;

use super::write;
use crate::error::Result;

/// One loaded batch.
pub struct Ingest<'a> {
    pub source: &'a str,
    pub rows_loaded: i64,
    pub partitions_created: i32,
    pub partitions_activated: i32,
    pub rows_per_partition: serde_json::Value,
    /// Rows the forecast expected in the partitions a forecast prepared,
    /// and the rows of the batch that went there (`None`: no such partition).
    pub forecast: Option<(f64, i64)>,
    /// `timestamptz` text.
    pub started_at: &'a str,
}

pub fn record(parent: pg_sys::Oid, ingest: Ingest) -> Result<()> {
    write(
        "INSERT INTO partition_predict.ingests (parent, source, rows_loaded, partitions_created, partitions_activated,
                                                rows_per_partition, forecast_rows, rows_in_forecast, started_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.timestamptz)",
        &[
            parent.into(),
            ingest.source.into(),
            ingest.rows_loaded.into(),
            ingest.partitions_created.into(),
            ingest.partitions_activated.into(),
            pgrx::JsonB(ingest.rows_per_partition).into(),
            ingest.forecast.map(|f| f.0).into(),
            ingest.forecast.map(|f| f.1).into(),
            ingest.started_at.into(),
        ],
    )
}

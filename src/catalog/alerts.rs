//! Alerts: a row in `alert_log`, a `NOTIFY partition_predict_alerts` with
//! the same content as JSON, and a line in the server log.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::state;
use crate::error::Result;

pub const CHANNEL: &str = "partition_predict_alerts";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD_BYTES: usize = 7_900;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Failure,
    ForecastMiss,
    RowsInDefault,
    Migration,
}

impl AlertKind {
    fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failure => "failure",
            AlertKind::ForecastMiss => "forecast_miss",
            AlertKind::RowsInDefault => "rows_in_default",
            AlertKind::Migration => "migration",
        }
    }
}

pub fn raise(
    parent: Option<pg_sys::Oid>,
    kind: AlertKind,
    message: &str,
    details: Value,
) -> Result<()> {
    let id = state::write_returning::<i64>(
        "INSERT INTO partition_predict.alert_log (parent, kind, message, details)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4) RETURNING id",
        &[
            parent.into(),
            kind.as_str().into(),
            message.into(),
            JsonB(details.clone()).into(),
        ],
    )?;
    let parent_name = match parent {
        Some(oid) => Spi::get_one_with_args::<String>(
            "SELECT $1::pg_catalog.oid::pg_catalog.regclass::text",
            &[oid.into()],
        )?,
        None => None,
    };
    let mut payload = json!({
        "id": id,
        "parent": parent_name,
        "kind": kind.as_str(),
        "message": message,
        "details": details,
    })
    .to_string();
    if payload.len() > MAX_PAYLOAD_BYTES {
        payload =
            json!({"id": id, "parent": parent_name, "kind": kind.as_str(), "truncated": true})
                .to_string();
    }
    Spi::run_with_args(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[CHANNEL.into(), payload.into()],
    )?;
    pgrx::log!(
        "pg_partition_predict alert ({}) on {}: {}",
        kind.as_str(),
        parent_name.as_deref().unwrap_or("-"),
        message
    );
    Ok(())
}

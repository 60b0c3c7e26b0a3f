//! Alerts as conditions: a condition is raised once, updated while it
//! lasts and resolved when it ends; events are recorded once. Each raise,
//! resolve and event is a row change in `alert_log`, a
//! `NOTIFY partition_predict_alerts` with the same content as JSON, and a
//! line in the server log. A condition seen again by a later cycle only
//! updates its row: whoever listens hears it once.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::{
    count_read, write_returning, write_returning_optional_two, write_returning_two, Family,
    StateRow,
};
use crate::error::Result;

pub const CHANNEL: &str = "partition_predict_alerts";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Failure,
    ForecastMiss,
    RowsInDefault,
    Migration,
    Runway,
    OutlierKeys,
    Retention,
}

impl AlertKind {
    fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failure => "failure",
            AlertKind::ForecastMiss => "forecast_miss",
            AlertKind::RowsInDefault => "rows_in_default",
            AlertKind::Migration => "migration",
            AlertKind::Runway => "runway",
            AlertKind::OutlierKeys => "outlier_keys",
            AlertKind::Retention => "retention",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing to do.
    Info,
    /// The extension is working around it; a DBA may want to look.
    Warning,
    /// Rows will land in DEFAULT or maintenance has stopped unless someone acts.
    Critical,
}

impl Severity {
    fn from_text(text: &str) -> Option<Severity> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What one condition is about: its kind and a subject within the table
/// (a key range, a series; empty for the table as a whole).
#[derive(Clone, Copy, Debug)]
pub struct Condition<'a> {
    pub kind: AlertKind,
    pub subject: &'a str,
}

impl<'a> Condition<'a> {
    pub fn new(kind: AlertKind, subject: &'a str) -> Self {
        Self { kind, subject }
    }
}

/// Raises `condition` on `parent`, or updates it (message, details,
/// severity, one more occurrence) if it is already open. Only a new
/// condition is announced.
pub fn raise(
    parent: pg_sys::Oid,
    condition: Condition,
    severity: Severity,
    message: &str,
    details: Value,
) -> Result<()> {
    // The open alert's severity before this raise ('' when there was none).
    let (id, before) = write_returning_two::<i64, String>(
        "WITH open AS (SELECT o.severity FROM partition_predict.alert_log o
                        WHERE o.parent = $1::pg_catalog.oid::pg_catalog.regclass AND o.kind = $2
                          AND o.subject = $3 AND o.resolved_at IS NULL)
         INSERT INTO partition_predict.alert_log AS a (parent, kind, subject, severity, message, details)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4::partition_predict.alert_severity, $5, $6)
         ON CONFLICT (parent, kind, subject) WHERE resolved_at IS NULL
         DO UPDATE SET severity = EXCLUDED.severity, message = EXCLUDED.message, details = EXCLUDED.details,
                       updated_at = pg_catalog.now(), occurrences = a.occurrences + 1
         RETURNING a.id, COALESCE((SELECT open.severity::text FROM open), '')",
        &[
            parent.into(),
            condition.kind.as_str().into(),
            condition.subject.into(),
            severity.as_str().into(),
            message.into(),
            JsonB(details).into(),
        ],
    )?;
    match Severity::from_text(&before) {
        None => announce(id, parent, condition, severity, "raised", message)?,
        // A pager hears of a warning that became critical.
        Some(was) if was < severity => {
            announce(id, parent, condition, severity, "escalated", message)?
        }
        Some(_) => {}
    }
    Ok(())
}

/// Resolves `condition` on `parent` if it is open; says so once.
pub fn resolve(parent: pg_sys::Oid, condition: Condition, why: &str) -> Result<()> {
    if let Some((id, severity)) = write_returning_optional_two::<i64, String>(
        "UPDATE partition_predict.alert_log
            SET resolved_at = pg_catalog.now(), updated_at = pg_catalog.now(),
                details = details || pg_catalog.jsonb_build_object('resolution', $4::text)
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND kind = $2 AND subject = $3
            AND resolved_at IS NULL
         RETURNING id, severity::text",
        &[
            parent.into(),
            condition.kind.as_str().into(),
            condition.subject.into(),
            why.into(),
        ],
    )? {
        let severity = Severity::from_text(&severity).unwrap_or(Severity::Info);
        announce(id, parent, condition, severity, "resolved", why)?;
    }
    Ok(())
}

/// The subjects of the open conditions of `kind` on `parent`, with their
/// details (few: at most one per key range the cycle looks at).
pub fn open_subjects(parent: pg_sys::Oid, kind: AlertKind) -> Result<Vec<(String, Value)>> {
    count_read(Family::Alerts);
    Spi::connect(|client| {
        client
            .select(
                "SELECT subject, details FROM partition_predict.alert_log
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND kind = $2 AND resolved_at IS NULL
                  ORDER BY subject",
                None,
                &[parent.into(), kind.as_str().into()],
            )?
            .map(|row| {
                let r = StateRow::of("alert_log", &row);
                Ok((
                    r.required(1, "subject")?,
                    r.required::<JsonB>(2, "details")?.0,
                ))
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// Records something that happened once (a migration that ended, a batch
/// that missed its forecast): raised and resolved in one row.
pub fn event(
    parent: pg_sys::Oid,
    kind: AlertKind,
    severity: Severity,
    message: &str,
    details: Value,
) -> Result<()> {
    let id = write_returning::<i64>(
        "INSERT INTO partition_predict.alert_log (parent, kind, subject, severity, is_event, message, details, resolved_at)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, '', $3::partition_predict.alert_severity, true, $4, $5,
                 pg_catalog.now())
         RETURNING id",
        &[
            parent.into(),
            kind.as_str().into(),
            severity.as_str().into(),
            message.into(),
            JsonB(details).into(),
        ],
    )?;
    announce(
        id,
        parent,
        Condition::new(kind, ""),
        severity,
        "event",
        message,
    )
}

fn announce(
    id: i64,
    parent: pg_sys::Oid,
    condition: Condition,
    severity: Severity,
    state: &str,
    message: &str,
) -> Result<()> {
    let parent_name = crate::pg::relation::regclass_text(parent)?;
    let kind = condition.kind.as_str();
    // Any role may LISTEN, and any role may NOTIFY on the channel: the
    // payload names the alert and says nothing a role could not see in
    // pg_class, and a listener reads the rest (message, details) from
    // `alert_history` by id, where it sees only what it may.
    let payload = json!({
        "id": id,
        "parent": parent_name,
        "kind": kind,
        "severity": severity.as_str(),
        "state": state,
    })
    .to_string();
    crate::pg::backend::notify(CHANNEL, &payload)?;
    pgrx::log!(
        "pg_partition_predict alert ({kind}, {}, {state}) on {}: {message}",
        severity.as_str(),
        parent_name.as_deref().unwrap_or("-"),
    );
    Ok(())
}

/// Rows of `parent`'s DEFAULT held back as outlier keys (its open
/// `outlier_keys` condition), 0 when none are.
pub fn rows_held_back(parent: pg_sys::Oid) -> Result<i64> {
    count_read(Family::Alerts);
    Ok(crate::pg::spi::select_one::<i64>(
        "SELECT (SELECT (details->>'rows')::int8 FROM partition_predict.alert_log
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND kind = 'outlier_keys'
                    AND resolved_at IS NULL)",
        &[parent.into()],
    )?
    // No open condition, or one whose details name no rows.
    .unwrap_or(0))
}

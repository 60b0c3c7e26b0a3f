//! Data retention: partitions whose whole range lies before the table's
//! retention boundary are dropped, detached or archived, one per
//! transaction, with the rights of the table's owner.
//!
//! The boundary is `keep` back from the newest row outside DEFAULT, or
//! from now if that is earlier: a feed that stalls does not lose its last
//! rows to the clock. A partition expires only when its bound says every
//! key it can hold is older (`partition_core::retention`) and the data
//! agrees: under a lock that stops writes to it, it is searched for a row
//! at or after the boundary, and one such row keeps it (and raises an
//! alert). DEFAULT is never touched.
//!
//! DROP and DETACH need the parent's ACCESS EXCLUSIVE lock. They are taken
//! with `lock_timeout` and retried, so no query queues behind them for
//! long, and the worker commits each partition's step at once, so the lock
//! is held only for the catalog change. Moving an archived table to
//! another tablespace copies it: that happens after the detach has
//! committed, in a transaction of its own, when queries on the parent no
//! longer see it.

use partition_core::retention::{self, Fate};
use partition_core::{KeyType, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use crate::catalog::alerts::{self, AlertKind, Condition, Severity};
use crate::catalog::settings::{self, DataRetention, Expired};
use crate::catalog::{self, history, migrations, PartitionedTable, QualifiedName};
use crate::error::{or_report, PredictError, Result};
use crate::pg::lock_retry::run_with_lock_retry;
use crate::pg::locks::lock_table_steps;
use crate::pg::relation::qualified_name;
use crate::pg::session::{as_role, with_pinned_settings, with_settings};
use crate::pg::subxact::try_in_subtransaction;

/// Partitions expired per table and worker cycle: a table that switches
/// retention on with years of old partitions catches up over a few
/// cycles instead of one long one.
pub const MAX_EXPIRED_PER_CYCLE: usize = 32;

/// The subject of the condition "this table's retention steps fail".
const FAILED_RETENTION: &str = "retention";

/// What retention did, or would do, with one partition.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub partition: String,
    pub range_start: String,
    pub range_end: String,
    /// `drop`, `detach`, `archive`, or `keep`.
    pub action: &'static str,
    pub reason: String,
}

/// A partition before (or across) the boundary.
#[derive(Clone, Debug)]
struct Candidate {
    oid: pg_sys::Oid,
    name: QualifiedName,
    bound: PartitionBound,
    fate: Fate,
}

impl Candidate {
    fn verdict(&self, action: &'static str, reason: String) -> Verdict {
        let (start, end) = match self.bound {
            PartitionBound::Range { from, to } => (from.to_text(), to.to_text()),
            PartitionBound::Default => ("DEFAULT".into(), "DEFAULT".into()),
        };
        Verdict {
            partition: self.name.to_string(),
            range_start: start,
            range_end: end,
            action,
            reason,
        }
    }
}

/// The retention boundary of `table` in raw key units: keys before it have
/// expired. `None` when nothing expires (no `keep`, or no row yet).
fn boundary(table: &PartitionedTable, keep: &str) -> Result<Option<i64>> {
    let (Some(frontier), _) = history::frontiers(table)? else {
        return Ok(None);
    };
    if !table.key_type.is_temporal() {
        let keep: i64 = keep.parse().map_err(|_| {
            PredictError::UntrustedState(format!("keep \"{keep}\" of an integer key"))
        })?;
        return Ok(Some(retention::integer_boundary(frontier, keep)));
    }
    let frontier_micros = match table.key_type {
        KeyType::Date => frontier.saturating_mul(partition_core::calendar::MICROS_PER_DAY),
        _ => frontier,
    };
    let zone = settings::load(table)?.zone.name().to_string();
    // Months and days are counted on the table's clock; the instant comes
    // back as microseconds since 2000-01-01 UTC, the raw unit of the keys.
    let micros = Spi::get_one_with_args::<i64>(
        "SELECT ((EXTRACT(epoch FROM pg_catalog.timezone($3,
                    pg_catalog.timezone($3, LEAST(pg_catalog.now(),
                        pg_catalog.to_timestamp($1::float8 / 1000000 + $4)))
                    - $2::pg_catalog.interval)) - $4) * 1000000)::bigint",
        &[
            frontier_micros.into(),
            keep.into(),
            zone.as_str().into(),
            (partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS as f64).into(),
        ],
    )?;
    Ok(micros.map(|m| match table.key_type {
        // A date is kept while any of its day is.
        KeyType::Date => m.div_euclid(partition_core::calendar::MICROS_PER_DAY),
        _ => m,
    }))
}

/// Partitions that have expired or reach across `boundary`, oldest first.
fn candidates(table: &PartitionedTable, boundary: i64) -> Result<Vec<Candidate>> {
    let rows: Vec<(pg_sys::Oid, String)> = Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                   FROM pg_catalog.pg_inherits i
                   JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1 AND c.oid <> $2",
                None,
                &[
                    table.oid.into(),
                    table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
                ],
            )?
            .map(|row| {
                Ok((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut found = Vec::new();
    for (oid, bound_text) in rows {
        let Ok(bound) = PartitionBound::parse(&bound_text, table.key_type) else {
            continue;
        };
        let Some(range) = bound.raw_range() else {
            continue;
        };
        let fate = retention::fate(range, boundary);
        if fate == Fate::Kept {
            continue;
        }
        let Some(name) = qualified_name(oid) else {
            continue;
        };
        found.push((
            range.0,
            Candidate {
                oid,
                name,
                bound,
                fate,
            },
        ));
    }
    found.sort_by_key(|(from, c)| (*from, c.oid.to_u32()));
    Ok(found.into_iter().map(|(_, c)| c).collect())
}

/// Whether `candidate` holds a row at or after `boundary`. Row-level
/// security must not hide one: with it in force the search fails instead.
fn holds_kept_rows(table: &PartitionedTable, candidate: &Candidate, boundary: i64) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {} >= {})",
        candidate.name.quoted(),
        quote_identifier(&table.key_column),
        table.key_type.value(boundary).to_sql_literal()
    );
    with_settings(&[(c"row_security", "off")], || {
        Ok(Spi::get_one::<bool>(&sql)?.unwrap_or(true))
    })
}

fn boundary_text(table: &PartitionedTable, boundary: i64) -> String {
    table.key_type.value(boundary).to_text()
}

/// What retention would do now with `table`'s partitions, without doing
/// it (the data checks run; no lock beyond reading is taken).
pub fn preview(table: &PartitionedTable) -> Result<Vec<Verdict>> {
    let Some(retention) = settings::load_retention(table.oid)? else {
        return Ok(Vec::new());
    };
    let Some(boundary) = boundary(table, &retention.keep)? else {
        return Ok(Vec::new());
    };
    let at = boundary_text(table, boundary);
    candidates(table, boundary)?
        .into_iter()
        .map(|c| {
            Ok(match c.fate {
                Fate::Straddles => c.verdict("keep", format!("reaches past the boundary {at}")),
                _ if holds_kept_rows(table, &c, boundary)? => {
                    c.verdict("keep", format!("holds rows at or after the boundary {at}"))
                }
                _ => c.verdict(
                    retention.expired.as_str(),
                    format!("every key is before the boundary {at}"),
                ),
            })
        })
        .collect()
}

/// What one retention step did.
pub enum Step {
    /// One partition expired; an archived one still to move to a tablespace.
    Expired {
        verdict: Verdict,
        to_tablespace: Option<(pg_sys::Oid, String)>,
    },
    /// Nothing (more) to expire now.
    Done,
}

/// Expires the oldest expired partition of `table` in the current
/// transaction. Partitions that hold rows at or after the boundary are
/// passed over (and alerted).
fn expire_next(table: &PartitionedTable) -> Result<Step> {
    let Some(retention) = settings::load_retention(table.oid)? else {
        return Ok(Step::Done);
    };
    // Rows moving out of DEFAULT go to partitions near the frontier, never
    // to expired ones; still, one change of the partition set at a time.
    if migrations::in_progress(table.oid)? {
        return Ok(Step::Done);
    }
    let Some(boundary) = boundary(table, &retention.keep)? else {
        return Ok(Step::Done);
    };
    for candidate in candidates(table, boundary)? {
        if candidate.fate != Fate::Expired {
            continue;
        }
        // Writes to the partition wait from here on; readers do not.
        run_with_lock_retry(
            &candidate.name,
            "checking an expired partition",
            &format!("LOCK TABLE {} IN SHARE MODE", candidate.name.quoted()),
        )?;
        let subject = candidate.name.to_string();
        if holds_kept_rows(table, &candidate, boundary)? {
            alerts::raise(
                table.oid,
                Condition::new(AlertKind::Retention, &subject),
                Severity::Warning,
                &format!(
                    "kept expired partition {subject}: its bound ends before the retention boundary {} but it holds rows at or after it",
                    boundary_text(table, boundary)
                ),
                json!({"partition": subject, "boundary": boundary_text(table, boundary)}),
            )?;
            continue;
        }
        alerts::resolve(
            table.oid,
            Condition::new(AlertKind::Retention, &subject),
            "the partition expired",
        )?;
        return act(table, &retention, candidate, boundary);
    }
    Ok(Step::Done)
}

fn act(
    table: &PartitionedTable,
    retention: &DataRetention,
    candidate: Candidate,
    boundary: i64,
) -> Result<Step> {
    let partition = candidate.name.quoted();
    let detach = format!(
        "ALTER TABLE {} DETACH PARTITION {partition}",
        table.name.quoted()
    );
    let mut to_tablespace = None;
    match retention.expired {
        Expired::Drop => run_with_lock_retry(
            &table.name,
            "dropping an expired partition",
            &format!("DROP TABLE {partition}"),
        )?,
        Expired::Detach => {
            run_with_lock_retry(&table.name, "detaching an expired partition", &detach)?
        }
        Expired::Archive => {
            run_with_lock_retry(&table.name, "detaching an expired partition", &detach)?;
            if let Some(schema) = &retention.archive_schema {
                Spi::run(&format!(
                    "ALTER TABLE {partition} SET SCHEMA {}",
                    quote_identifier(schema)
                ))?;
            }
            to_tablespace = retention
                .archive_tablespace
                .clone()
                .map(|tablespace| (candidate.oid, tablespace));
        }
    }
    let now_named = qualified_name(candidate.oid)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let done = match retention.expired {
        Expired::Drop => "dropped".to_string(),
        Expired::Detach => format!("detached (kept as table {now_named})"),
        Expired::Archive => format!("archived as {now_named}"),
    };
    let verdict = candidate.verdict(
        retention.expired.as_str(),
        format!(
            "{done}: every key was before the boundary {}",
            boundary_text(table, boundary)
        ),
    );
    alerts::event(
        table.oid,
        AlertKind::Retention,
        Severity::Info,
        &format!(
            "expired partition {} [{}, {}) {}",
            verdict.partition, verdict.range_start, verdict.range_end, verdict.reason
        ),
        json!({
            "partition": verdict.partition,
            "range_start": verdict.range_start,
            "range_end": verdict.range_end,
            "action": verdict.action,
            "now": now_named,
            "boundary": boundary_text(table, boundary),
            "archive_tablespace": retention.archive_tablespace,
        }),
    )?;
    Ok(Step::Expired {
        verdict,
        to_tablespace,
    })
}

/// Moves an archived (detached) table and its indexes to `tablespace`.
fn move_to_tablespace(oid: pg_sys::Oid, tablespace: &str) -> Result<()> {
    let Some(name) = qualified_name(oid) else {
        return Ok(());
    };
    let tablespace = quote_identifier(tablespace);
    run_with_lock_retry(
        &name,
        "moving an archived partition",
        &format!("ALTER TABLE {} SET TABLESPACE {tablespace}", name.quoted()),
    )?;
    let indexes: Vec<pg_sys::Oid> = Spi::connect(|client| {
        client
            .select(
                "SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = $1",
                None,
                &[oid.into()],
            )?
            .map(|row| Ok(row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)))
            .collect::<Result<Vec<_>>>()
    })?;
    for index in indexes {
        if let Some(index) = qualified_name(index) {
            Spi::run(&format!(
                "ALTER INDEX {} SET TABLESPACE {tablespace}",
                index.quoted()
            ))?;
        }
    }
    Ok(())
}

/// `apply_retention()`: every expired partition of `table`, in the
/// caller's transaction (the parent stays locked until it commits).
pub fn apply(table: &PartitionedTable) -> Result<Vec<Verdict>> {
    if !lock_table_steps(table.oid, true)? {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    as_role(table.owner_oid, || {
        loop {
            match expire_next(table)? {
                Step::Done => break,
                Step::Expired {
                    verdict,
                    to_tablespace,
                } => {
                    if let Some((oid, tablespace)) = to_tablespace {
                        move_to_tablespace(oid, &tablespace)?;
                    }
                    done.push(verdict);
                }
            }
        }
        Ok::<_, PredictError>(())
    })?;
    Ok(done)
}

/// What the worker does next with a table's retention.
pub enum Next {
    /// One partition expired; maybe more.
    Again {
        to_tablespace: Option<(pg_sys::Oid, String)>,
    },
    Done,
    Failed(String),
}

/// One retention step of the worker: a failure is rolled back and raised
/// as an alert; the worker goes on with the next table.
pub fn step_isolated(parent: pg_sys::Oid) -> Next {
    let attempt = try_in_subtransaction(|| {
        or_report(with_pinned_settings(|| {
            // Most tables keep everything: one lookup of the settings, and done.
            if settings::load_retention(parent)?.is_none() || !lock_table_steps(parent, false)? {
                return Ok(Step::Done);
            }
            let table = catalog::load_managed_table(parent)?;
            as_role(table.owner_oid, || expire_next(&table))
        }))
    });
    match attempt {
        Ok(step) => {
            record(parent, None);
            match step {
                Step::Done => Next::Done,
                Step::Expired { to_tablespace, .. } => Next::Again { to_tablespace },
            }
        }
        Err(caught) => {
            record(parent, Some(&caught.message));
            Next::Failed(caught.message)
        }
    }
}

/// The worker's move of an archived table to its tablespace, after the
/// detach committed. A failure leaves the table detached where it is, and
/// says so.
pub fn move_isolated(parent: pg_sys::Oid, oid: pg_sys::Oid, tablespace: &str) {
    let attempt = try_in_subtransaction(|| {
        or_report(with_pinned_settings(|| {
            let table = catalog::load_managed_table(parent)?;
            as_role(table.owner_oid, || move_to_tablespace(oid, tablespace))
        }))
    });
    if let Err(caught) = attempt {
        let name = qualified_name(oid)
            .map(|n| n.to_string())
            .unwrap_or_default();
        record(
            parent,
            Some(&format!(
                "archived table {name} stays in its tablespace: {}; move it with ALTER TABLE … SET TABLESPACE",
                caught.message
            )),
        );
    }
}

fn record(parent: pg_sys::Oid, failure: Option<&str>) {
    let outcome = try_in_subtransaction(|| {
        or_report(with_pinned_settings(|| {
            let condition = Condition::new(AlertKind::Failure, FAILED_RETENTION);
            match failure {
                None => alerts::resolve(parent, condition, "a later retention step succeeded"),
                Some(message) => alerts::raise(
                    parent,
                    condition,
                    Severity::Warning,
                    &format!("retention step failed: {message}"),
                    json!({}),
                ),
            }
        }))
    });
    if let Err(e) = outcome {
        pgrx::log!(
            "pg_partition_predict: could not record a retention step: {}",
            e.message
        );
    }
}

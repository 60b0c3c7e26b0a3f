//! Data retention: partitions whose whole range lies before the table's
//! retention boundary are dropped, detached or archived, with the rights
//! of the table's owner.
//!
//! The boundary is `keep` back from the reference: the newest row outside
//! DEFAULT, or now if that is earlier, so a feed that stalls does not lose
//! its last rows to the clock. An integer key has no clock: its reference
//! is the 16th highest key when an index leads with the key, so a few
//! wrong keys far above the others do not move it. A partition expires
//! only when its bound says every key it can hold is older
//! (`partition_core::retention`) and the data agrees: under a lock that
//! stops writes to it, and after checking it is still this table's
//! partition with that bound, it is searched for a row at or after the
//! boundary; one such row keeps it (and raises an alert). DEFAULT and
//! foreign tables never expire.
//!
//! DROP and DETACH need the parent's ACCESS EXCLUSIVE lock. They are taken
//! with `lock_timeout` and retried, so no query queues behind them for
//! long. Every data check runs before that lock is taken, and the worker
//! commits each partition's step at once, so the lock is held only for the
//! catalog change. A partition that cannot expire (a failure, rows within
//! retention) is alerted on its own and the others go on. Moving an
//! archived table to another tablespace copies it: it is recorded with the
//! detach and done by the worker afterwards, in a transaction of its own,
//! until it succeeds.

use partition_core::retention::{self, Fate};
use partition_core::{KeyType, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use crate::catalog::{PartitionedTable, QualifiedName};
use crate::error::{or_report, PredictError, Result};
use crate::pg::backend;
use crate::pg::lock_retry::run_with_lock_retry;
use crate::pg::locks::lock_table_steps;
use crate::pg::relation::{self, qualified_name, TableState};
use crate::pg::session::{as_role, with_pinned_settings, with_settings};
use crate::pg::subxact::try_in_subtransaction;
use crate::shmem::requests;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::settings::{self, DataRetention, Expired};
use crate::state::{archive, history, managed, migrations};

/// Partitions expired per table and worker cycle: a table that switches
/// retention on with years of old partitions catches up over a few
/// cycles instead of one long one.
pub const MAX_EXPIRED_PER_CYCLE: usize = 32;

/// Archived tables moved to their tablespace per table and worker cycle:
/// each is a copy, and the worker serves the database's other tables too.
pub const MAX_MOVES_PER_CYCLE: usize = 4;

/// How many of the highest integer keys a wrong key must outnumber to move
/// the reference: the reference is the key this far from the top.
const INTEGER_REFERENCE_RANK: i64 = 16;

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
    bound_text: String,
    bound: PartitionBound,
    fate: Fate,
    foreign: bool,
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

    fn subject(&self) -> String {
        self.name.to_string()
    }
}

/// The `INTEGER_REFERENCE_RANK`-th highest key, read through an index that
/// leads with the key (a bounded index scan); `None` without such an index
/// or with fewer rows.
fn dense_top_key(table: &PartitionedTable) -> Result<Option<i64>> {
    // A valid, whole btree index whose order a backward scan gives as
    // ORDER BY key DESC (NULLS FIRST): anything else would sort the table.
    let indexed = crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                          JOIN pg_catalog.pg_am m ON m.oid = c.relam AND m.amname = 'btree'
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                         WHERE i.indrelid = $1 AND a.attname = $2 AND i.indisvalid
                           AND i.indpred IS NULL AND i.indoption[0] IN (0, 3))",
        &[table.oid.into(), table.key_column.as_str().into()],
    )?
    .unwrap_or(false);
    if !indexed {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {key}::bigint FROM {parent} WHERE {key} IS NOT NULL ORDER BY {key} DESC OFFSET {} LIMIT 1",
        INTEGER_REFERENCE_RANK - 1,
        key = quote_identifier(&table.key_column),
        parent = table.name.quoted(),
    );
    // Row-level security forced on the owner makes the query fail rather
    // than miss rows: then the highest key stands.
    let read = try_in_subtransaction(|| {
        with_settings(&[(c"row_security", "off")], || {
            Spi::connect(|client| {
                let rows = client.select(&sql, Some(1), &[])?;
                rows.first().get::<i64>(1)
            })
        })
    });
    Ok(read.ok().and_then(|r| r.ok()).flatten())
}

/// The retention boundary of `table` in raw key units: keys before it have
/// expired. `None` when nothing expires (no row outside DEFAULT yet).
fn boundary(table: &PartitionedTable, keep: &str) -> Result<Option<i64>> {
    let (Some(frontier), _) = history::frontiers(table)? else {
        return Ok(None);
    };
    if !table.key_type.is_temporal() {
        let keep: i64 = keep.parse().map_err(|_| {
            PredictError::UntrustedState(format!("keep \"{keep}\" of an integer key"))
        })?;
        let reference = match dense_top_key(table)? {
            Some(dense) => dense.min(frontier),
            None => frontier,
        };
        return Ok(Some(retention::integer_boundary(reference, keep)));
    }
    let frontier_micros = match table.key_type {
        KeyType::Date => frontier.checked_mul(partition_core::calendar::MICROS_PER_DAY),
        _ => Some(frontier),
    }
    // A frontier of 'infinity' or beyond what a timestamp holds: now.
    .filter(|micros| backend::TIMESTAMP_RANGE.contains(micros));
    let epoch = partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
    let zone = settings::load(table)?.zone.name().to_string();
    // With the table's zone as TimeZone, timestamptz - interval counts
    // months and days on its calendar and hours as elapsed time (a day
    // across a daylight-saving change is 23 or 25 hours, an hour an hour).
    let reference_and_boundary = with_settings(&[(c"TimeZone", &zone)], || {
        crate::pg::spi::select_two::<i64, i64>(
            "WITH r AS (SELECT LEAST(pg_catalog.now(),
                                     COALESCE(pg_catalog.to_timestamp($1::float8 / 1000000 + $3), pg_catalog.now())) AS at)
             SELECT ((EXTRACT(epoch FROM r.at) - $3) * 1000000)::bigint,
                    ((EXTRACT(epoch FROM r.at - $2::pg_catalog.interval) - $3) * 1000000)::bigint
               FROM r",
            &[
                frontier_micros.map(|m| m as f64).into(),
                keep.into(),
                (epoch as f64).into(),
            ],
        )
    })?;
    let (Some(reference), Some(micros)) = reference_and_boundary else {
        return Ok(None);
    };
    // An interval with parts of both signs could land past the reference.
    let micros = micros.min(reference);
    Ok(Some(match table.key_type {
        // A date is kept while any of its day is.
        KeyType::Date => micros.div_euclid(partition_core::calendar::MICROS_PER_DAY),
        _ => micros,
    }))
}

/// Partitions that have expired or reach across `boundary`, oldest first.
fn candidates(table: &PartitionedTable, boundary: i64) -> Result<Vec<Candidate>> {
    let rows: Vec<(pg_sys::Oid, String, bool)> = Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid, pg_catalog.pg_get_expr(c.relpartbound, c.oid), c.relkind = 'f'
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
                    row.get::<pg_sys::Oid>(1)?.ok_or_else(|| {
                        PredictError::Internal("NULL catalog column pg_class.oid".into())
                    })?,
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<bool>(3)?.unwrap_or(true),
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut found = Vec::new();
    for (oid, bound_text, foreign) in rows {
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
                bound_text,
                bound,
                fate,
                foreign,
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
        Ok(crate::pg::spi::select_one::<bool>(&sql, &[])?.unwrap_or(true))
    })
}

fn boundary_text(table: &PartitionedTable, boundary: i64) -> String {
    table.key_type.value(boundary).to_text()
}

/// What retention would do now with `table`'s partitions, without doing
/// it (the data checks run; no lock beyond reading is taken). Run with the
/// rights of the table's owner, whose code the data checks may run.
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
                _ if c.foreign => c.verdict("keep", "a foreign table never expires".into()),
                _ => {
                    match try_in_subtransaction(|| or_report(holds_kept_rows(table, &c, boundary)))
                    {
                        Err(caught) => {
                            c.verdict("keep", format!("could not be checked: {}", caught.message))
                        }
                        Ok(true) => {
                            c.verdict("keep", format!("holds rows at or after the boundary {at}"))
                        }
                        Ok(false) => match archive_obstacle(&retention, &c)? {
                            Some(obstacle) => c.verdict("keep", obstacle),
                            None => c.verdict(
                                retention.expired.as_str(),
                                format!("every key is before the boundary {at}"),
                            ),
                        },
                    }
                }
            })
        })
        .collect()
}

/// Checks that `candidate` may expire, and keeps it from changing until
/// the transaction ends (writes wait, readers do not): still this table's
/// partition with the same bound and name, and no row at or after the
/// boundary. `false` (alerted when rows are found) when it must stay.
fn cleared(
    table: &PartitionedTable,
    retention: &DataRetention,
    candidate: &Candidate,
    boundary: i64,
) -> Result<bool> {
    run_with_lock_retry(
        &candidate.name,
        "checking an expired partition",
        &format!("LOCK TABLE {} IN SHARE MODE", candidate.name.quoted()),
    )?;
    // Detached, renamed or re-bounded by someone else meanwhile: not ours to judge now.
    let unchanged = crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                         WHERE i.inhrelid = $1 AND i.inhparent = $2
                           AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) = $3)",
        &[
            candidate.oid.into(),
            table.oid.into(),
            candidate.bound_text.as_str().into(),
        ],
    )?
    .unwrap_or(false);
    if !unchanged || qualified_name(candidate.oid).as_ref() != Some(&candidate.name) {
        return Ok(false);
    }
    let subject = candidate.subject();
    // An archive that cannot take the table would detach it only to roll
    // back: say so instead, and leave it attached.
    if let Some(obstacle) = archive_obstacle(retention, candidate)? {
        alerts::raise(
            table.oid,
            Condition::new(AlertKind::Retention, &subject),
            Severity::Warning,
            &format!("could not expire partition {subject}: {obstacle}"),
            json!({"partition": subject}),
        )?;
        return Ok(false);
    }
    if holds_kept_rows(table, candidate, boundary)? {
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
        return Ok(false);
    }
    Ok(true)
}

/// Why the archive cannot take `candidate` now (a name taken, a right
/// lost since `set_retention`), checked with the owner's rights.
fn archive_obstacle(retention: &DataRetention, candidate: &Candidate) -> Result<Option<String>> {
    if retention.expired != Expired::Archive {
        return Ok(None);
    }
    if let Some(schema) = &retention.archive_schema {
        let (usable, taken) = crate::pg::spi::select_two::<bool, bool>(
            "SELECT (SELECT pg_catalog.has_schema_privilege(n.oid, 'CREATE')
                            AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                       FROM pg_catalog.pg_namespace n WHERE n.nspname = $1),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = $2)",
            &[schema.as_str().into(), candidate.name.name.as_str().into()],
        )?;
        if usable != Some(true) {
            return Ok(Some(format!(
                "the table's owner may not create tables in archive schema {}",
                quote_identifier(schema)
            )));
        }
        if taken == Some(true) {
            return Ok(Some(format!(
                "archive schema {} already has a relation named {}",
                quote_identifier(schema),
                quote_identifier(&candidate.name.name)
            )));
        }
    }
    if let Some(tablespace) = &retention.archive_tablespace {
        let usable = crate::pg::spi::select_one::<bool>(
            "SELECT (SELECT $1 = 'pg_default' OR pg_catalog.has_tablespace_privilege(t.oid, 'CREATE')
                       FROM pg_catalog.pg_tablespace t WHERE t.spcname = $1)",
            &[tablespace.as_str().into()],
        )?;
        if usable != Some(true) {
            return Ok(Some(format!(
                "the table's owner may not create tables in archive tablespace {}",
                quote_identifier(tablespace)
            )));
        }
    }
    Ok(None)
}

/// Expires `candidate`, cleared before: dropped, detached or archived
/// (an archive tablespace move is recorded for the worker).
fn expire(
    table: &PartitionedTable,
    retention: &DataRetention,
    candidate: &Candidate,
    boundary: i64,
) -> Result<Verdict> {
    let partition = candidate.name.quoted();
    let detach = format!(
        "ALTER TABLE {} DETACH PARTITION {partition}",
        table.name.quoted()
    );
    // Each statement names its tables, and a name is looked up when the
    // statement runs: a schema renamed meanwhile (no lock stops that) could
    // make it act on another table. What it did is checked by OID, and
    // anything else rolls the partition's step back (see for_partition).
    let acted_on_another = || {
        PredictError::Internal(format!(
        "the statement for {} acted on another table (a schema was renamed meanwhile); nothing was changed",
        candidate.name
    ))
    };
    match retention.expired {
        Expired::Drop => {
            run_with_lock_retry(
                &table.name,
                "dropping an expired partition",
                &format!("DROP TABLE {partition}"),
            )?;
            if relation::exists(candidate.oid) {
                return Err(acted_on_another());
            }
        }
        Expired::Detach | Expired::Archive => {
            run_with_lock_retry(&table.name, "detaching an expired partition", &detach)?;
            if relation::table_state(candidate.oid) != TableState::Standalone {
                return Err(acted_on_another());
            }
        }
    }
    if retention.expired == Expired::Archive {
        if let Some(schema) = &retention.archive_schema {
            Spi::run(&format!(
                "ALTER TABLE {partition} SET SCHEMA {}",
                quote_identifier(schema)
            ))?;
            if qualified_name(candidate.oid).map(|n| n.schema).as_deref() != Some(schema.as_str()) {
                return Err(acted_on_another());
            }
        }
        if let Some(tablespace) = &retention.archive_tablespace {
            archive::record_move(table.oid, candidate.oid, tablespace)?;
        }
    }
    let now_named = qualified_name(candidate.oid)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let done = match (retention.expired, &retention.archive_tablespace) {
        (Expired::Drop, _) => "dropped".to_string(),
        (Expired::Detach, _) => format!("detached (kept as table {now_named})"),
        (Expired::Archive, None) => format!("archived as {now_named}"),
        (Expired::Archive, Some(tablespace)) => {
            format!("archived as {now_named}, to move to tablespace {tablespace}")
        }
    };
    let verdict = candidate.verdict(
        retention.expired.as_str(),
        format!(
            "{done}: every key was before the boundary {}",
            boundary_text(table, boundary)
        ),
    );
    alerts::resolve(
        table.oid,
        Condition::new(AlertKind::Retention, &candidate.subject()),
        "the partition expired",
    )?;
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
    Ok(verdict)
}

/// Runs `f` for one partition in a subtransaction: a failure is rolled
/// back and alerted with the partition as subject, and `None` returned so
/// that the others go on.
fn for_partition<R>(
    table: &PartitionedTable,
    candidate: &Candidate,
    f: impl FnOnce() -> Result<Option<R>>,
) -> Result<Option<R>> {
    let f = std::panic::AssertUnwindSafe(f);
    match try_in_subtransaction(|| or_report(f())) {
        Ok(result) => Ok(result),
        Err(caught) => {
            let subject = candidate.subject();
            alerts::raise(
                table.oid,
                Condition::new(AlertKind::Retention, &subject),
                Severity::Warning,
                &format!("could not expire partition {subject}: {}", caught.message),
                json!({"partition": subject, "sqlstate": format!("{:?}", caught.sqlstate)}),
            )?;
            Ok(None)
        }
    }
}

/// The retention of `table` with its boundary, unless nothing can expire
/// now (no retention, a migration moving rows, no row yet).
fn settings_and_boundary(table: &PartitionedTable) -> Result<Option<(DataRetention, i64)>> {
    let Some(retention) = settings::load_retention(table.oid)? else {
        return Ok(None);
    };
    // One change of the partition set at a time; and a table attached to
    // another since it was managed has its data kept by that one's rules.
    if migrations::in_progress(table.oid)? || relation::is_partition(table.oid) {
        return Ok(None);
    }
    Ok(boundary(table, &retention.keep)?.map(|b| (retention, b)))
}

/// Expires the oldest partition of `table` that may expire, in the
/// current transaction; `None` when none may now.
/// Partitions in `passed` (kept earlier in this worker cycle, and alerted)
/// are not looked at again; the ones kept now are added to it.
fn expire_next(table: &PartitionedTable, passed: &mut Vec<u32>) -> Result<Option<Verdict>> {
    let Some((retention, boundary)) = settings_and_boundary(table)? else {
        return Ok(None);
    };
    for candidate in candidates(table, boundary)? {
        if candidate.fate != Fate::Expired
            || candidate.foreign
            || passed.contains(&candidate.oid.to_u32())
        {
            continue;
        }
        let done = for_partition(table, &candidate, || {
            if !cleared(table, &retention, &candidate, boundary)? {
                return Ok(None);
            }
            expire(table, &retention, &candidate, boundary).map(Some)
        })?;
        if done.is_some() {
            return Ok(done);
        }
        passed.push(candidate.oid.to_u32());
    }
    Ok(None)
}

/// `apply_retention()`: every partition of `table` that may expire, in
/// the caller's transaction. All are checked before the first is dropped
/// or detached (no partition is read under the parent's lock); tablespace
/// moves are left to the worker, after this commits.
pub fn apply(table: &PartitionedTable) -> Result<Vec<Verdict>> {
    lock_table_steps(table.oid, true)?;
    as_role(table.owner_oid, || {
        let Some((retention, boundary)) = settings_and_boundary(table)? else {
            return Ok(Vec::new());
        };
        let mut ready = Vec::new();
        for candidate in candidates(table, boundary)? {
            if candidate.fate != Fate::Expired || candidate.foreign {
                continue;
            }
            if for_partition(table, &candidate, || {
                Ok(cleared(table, &retention, &candidate, boundary)?.then_some(()))
            })?
            .is_some()
            {
                ready.push(candidate);
            }
        }
        let mut done = Vec::new();
        for candidate in ready {
            if let Some(verdict) = for_partition(table, &candidate, || {
                expire(table, &retention, &candidate, boundary).map(Some)
            })? {
                done.push(verdict);
            }
        }
        if retention.archive_tablespace.is_some()
            && !done.is_empty()
            && backend::library_preloaded()
        {
            requests::cycle_after_commit(table.oid);
        }
        Ok(done)
    })
}

/// Archived tables waiting to move to their tablespace, oldest first,
/// verified: still a table of its own, of the table's owner. Entries that
/// are no longer such a table (dropped, attached again, given away) are
/// forgotten.
fn pending_moves(table: &PartitionedTable, tried: &[i64]) -> Result<Vec<(pg_sys::Oid, String)>> {
    let rows: Vec<(pg_sys::Oid, String, bool)> =
        archive::oldest_waiting(table.oid, table.owner_oid, tried)?
            .into_iter()
            .collect();
    let mut pending = Vec::new();
    for (oid, tablespace, valid) in rows {
        if valid {
            pending.push((oid, tablespace));
        } else {
            forget_move(table.oid, oid)?;
        }
    }
    Ok(pending)
}

fn forget_move(parent: pg_sys::Oid, oid: pg_sys::Oid) -> Result<()> {
    archive::forget_move(parent, oid)?;
    alerts::resolve(
        parent,
        Condition::new(AlertKind::Retention, &move_subject(oid)),
        "the archived table no longer waits for a move",
    )
}

fn move_subject(oid: pg_sys::Oid) -> String {
    format!("archive move of table {}", oid.to_u32())
}

/// Moves an archived table and its indexes to `tablespace`.
fn move_to_tablespace(oid: pg_sys::Oid, tablespace: &str) -> Result<()> {
    let Some(name) = qualified_name(oid) else {
        return Ok(());
    };
    let tablespace_name = tablespace;
    let tablespace = quote_identifier(tablespace);
    run_with_lock_retry(
        &name,
        "moving an archived partition",
        &format!("ALTER TABLE {} SET TABLESPACE {tablespace}", name.quoted()),
    )?;
    // By OID: a schema renamed meanwhile could have made the name another table's.
    let moved = crate::pg::spi::select_one::<bool>(
        "SELECT COALESCE((SELECT t.spcname FROM pg_catalog.pg_tablespace t WHERE t.oid = c.reltablespace),
                         (SELECT t.spcname FROM pg_catalog.pg_database d
                            JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
                           WHERE d.datname = pg_catalog.current_database())) = $2
           FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[oid.into(), tablespace_name.into()],
    )?;
    if moved != Some(true) {
        return Err(PredictError::Internal(format!(
            "moving {name} acted on another table (a schema was renamed meanwhile); nothing was changed"
        )));
    }
    let indexes: Vec<pg_sys::Oid> = Spi::connect(|client| {
        client
            .select(
                "SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = $1",
                None,
                &[oid.into()],
            )?
            .map(|row| {
                row.get::<pg_sys::Oid>(1)?.ok_or_else(|| {
                    PredictError::Internal("NULL catalog column pg_index.indexrelid".into())
                })
            })
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

/// Whether the worker has anything of `parent`'s retention to look at: it
/// keeps only some data, or an archived table waits for its move. One
/// primary-key lookup; most tables keep everything.
pub fn wanted(parent: pg_sys::Oid) -> bool {
    let found =
        try_in_subtransaction(|| with_pinned_settings(|| archive::retention_wanted(parent)));
    matches!(found, Ok(Ok(true)))
}

/// What the worker does next with a table's retention.
pub enum Next {
    /// One partition expired; maybe more.
    Again,
    Done,
    Failed(String),
}

/// One retention step of the worker, in its own transaction: the next
/// partition that may expire, passing over those in `passed` (kept
/// earlier in this cycle; the ones kept now are added). A failure is
/// rolled back and raised as an alert.
pub fn step_isolated(parent: pg_sys::Oid, passed: &mut Vec<u32>) -> Next {
    let mut seen = passed.clone();
    let attempt = try_in_subtransaction(move || {
        or_report(with_pinned_settings(|| {
            // Most tables keep everything: one lookup of the settings, and done.
            if settings::load_retention(parent)?.is_none() {
                return Ok(None);
            }
            if !lock_table_steps(parent, false)? {
                return Ok(Some((false, seen)));
            }
            let table = managed::load_managed_table(parent)?;
            as_role(table.owner_oid, || {
                let expired = expire_next(&table, &mut seen)?.is_some();
                Ok(Some((expired, seen)))
            })
        }))
    });
    match attempt {
        Ok(None) => Next::Done,
        Ok(Some((again, seen))) => {
            *passed = seen;
            record(parent, None);
            if again {
                Next::Again
            } else {
                Next::Done
            }
        }
        Err(caught) => {
            record(parent, Some(&caught.message));
            Next::Failed(caught.message)
        }
    }
}

/// The worker's next move of an archived table to its tablespace, in its
/// own transaction, skipping the tables in `tried` (this cycle's). Returns
/// the table tried, or `None` when none is left. A failure is alerted for
/// that table (resolved when it moves) and the move stays recorded.
pub fn move_next_isolated(parent: pg_sys::Oid, tried: &[pg_sys::Oid]) -> Option<pg_sys::Oid> {
    let tried: Vec<i64> = tried.iter().map(|oid| oid.to_u32() as i64).collect();
    let attempt = try_in_subtransaction(move || {
        or_report(with_pinned_settings(|| {
            // Nearly always nothing waits: one probe of the primary key, and done.
            let waiting = archive::any_waiting(parent)?;
            if !waiting || !lock_table_steps(parent, false)? {
                return Ok(None);
            }
            let table = managed::load_managed_table(parent)?;
            as_role(table.owner_oid, || {
                let Some((oid, tablespace)) = pending_moves(&table, &tried)?.into_iter().next()
                else {
                    return Ok(None);
                };
                move_one(&table, oid, &tablespace)?;
                Ok(Some(oid))
            })
        }))
    });
    match attempt {
        Ok(tried) => tried,
        Err(caught) => {
            pgrx::log!(
                "pg_partition_predict: moving an archived table failed: {}",
                caught.message
            );
            None
        }
    }
}

/// Moves one archived table, or says why it could not (alerted, left
/// recorded for the next cycle).
fn move_one(table: &PartitionedTable, oid: pg_sys::Oid, tablespace: &str) -> Result<()> {
    let subject = move_subject(oid);
    let tablespace_owned = tablespace.to_string();
    match try_in_subtransaction(|| or_report(move_to_tablespace(oid, &tablespace_owned))) {
        Ok(()) => {
            forget_move(table.oid, oid)?;
            alerts::resolve(
                table.oid,
                Condition::new(AlertKind::Retention, &subject),
                "the archived table moved",
            )
        }
        Err(caught) => {
            let name = qualified_name(oid)
                .map(|n| n.to_string())
                .unwrap_or_default();
            alerts::raise(
                table.oid,
                Condition::new(AlertKind::Retention, &subject),
                Severity::Warning,
                &format!(
                    "archived table {name} could not move to tablespace {tablespace} yet (tried again next cycle): {}",
                    caught.message
                ),
                json!({"table": name, "tablespace": tablespace}),
            )
        }
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

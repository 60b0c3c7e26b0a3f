//! Activation: shadows attached ahead of the data, never blocking queries.
//!
//! ATTACH takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on
//! the shadow and on DEFAULT (which it scans); it skips scanning the shadow
//! because a validated CHECK equal to the bound (and NOT NULL on the key)
//! proves every row fits. Every lock request goes through
//! `pg::lock_retry`, so a long-running query never makes other sessions
//! queue behind the extension for longer than `lock_timeout`.

use partition_core::planner;
use partition_core::{Bound, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use super::create::BOUND_CONSTRAINT;
use crate::catalog::{self, PartitionedTable};
use crate::error::or_report;
use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::pg::lock_retry::{
    run_with_lock_retry, run_with_lock_retry_unless_long_holder, run_with_lock_retry_watching,
};
use crate::pg::locks::lock_table_steps;
use crate::pg::relation;
use crate::pg::session::{as_role, with_pinned_settings};
use crate::pg::stand_aside;
use crate::pg::subxact::try_in_subtransaction;
use crate::state::alerts::{self, AlertKind, Condition, Severity};
use crate::state::history::History;
use crate::state::shadows::{self, Shadow};
use crate::state::{counters, managed, migrations};

/// Attaches the shadows that the data has reached: those starting at or
/// below `up_to` (for `activate(parent, up_to)`), or, by default, those the
/// frontier is within one partition-length lead of, or within the reach
/// learned from how the table's rows arrive. A shadow whose range
/// already has rows in DEFAULT is not attached blindly: an alert is raised
/// and the range waits for migration, while the shadows after it are
/// attached as usual.
pub fn activate(table: &PartitionedTable, up_to: Option<i64>) -> Result<i64> {
    activate_known(
        table,
        up_to,
        &History::read(table)?,
        shadows::waiting(table.oid)?,
    )
}

/// As [`activate`], from what the cycle already read of the table's history
/// and the shadows waiting (in key order) as planning left them.
pub fn activate_known(
    table: &PartitionedTable,
    up_to: Option<i64>,
    known: &History,
    waiting: Vec<Shadow>,
) -> Result<i64> {
    let frontier = known.frontier();
    // How far the next arrivals may reach past the frontier (a week for a
    // table fed weekly): everything they can land in is attached now.
    let reach = known.reach_keys();
    let mut activated = 0;
    let mut found_clean = Vec::new();
    let scans_before = default_scans(table)?;
    activate_due(
        table,
        &waiting,
        up_to,
        frontier,
        reach,
        &mut activated,
        &mut found_clean,
    )?;
    count_own_scans(table, scans_before)?;
    // A range ends its condition once it was looked at and DEFAULT held
    // none of its rows, or once no shadow waits for it any more (the
    // migration attached it, or it was reshaped or dropped). A range not
    // looked at this time (not due, or behind another) stays as it was.
    // Shadows attached just now were looked at: they are in `found_clean`.
    let open = alerts::open_subjects(table.oid, AlertKind::RowsInDefault)?;
    if !open.is_empty() {
        let waiting: Vec<String> = waiting
            .iter()
            .map(|s| range_subject(table, s.from, s.to))
            .collect();
        for (subject, _) in open {
            if found_clean.contains(&subject) || !waiting.contains(&subject) {
                alerts::resolve(
                    table.oid,
                    Condition::new(AlertKind::RowsInDefault, &subject),
                    "no rows of the range wait in DEFAULT in front of a shadow any more",
                )?;
            }
        }
    }
    Ok(activated)
}

/// Scans of DEFAULT in this transaction so far (sequential, index).
fn default_scans(table: &PartitionedTable) -> Result<(i64, i64)> {
    let Some(default) = table.default_partition else {
        return Ok((0, 0));
    };
    let (seq, idx) = Spi::get_two_with_args::<i64, i64>(
        "SELECT COALESCE(pg_catalog.sum(x.seq_scan), 0)::int8, COALESCE(pg_catalog.sum(x.idx_scan), 0)::int8
           FROM pg_catalog.pg_stat_xact_all_tables x WHERE x.relid = $1",
        &[default.into()],
    )?;
    Ok((seq.unwrap_or(0), idx.unwrap_or(0)))
}

/// DEFAULT read to check a shadow's range and by ATTACH is the extension's
/// own traffic: left for the next sample to discount, as the collector's
/// own reads are, so `stats_history` shows only the table's users.
fn count_own_scans(table: &PartitionedTable, before: (i64, i64)) -> Result<()> {
    let Some(default) = table.default_partition else {
        return Ok(());
    };
    let after = default_scans(table)?;
    let (seq, idx) = (after.0 - before.0, after.1 - before.1);
    if seq <= 0 && idx <= 0 {
        return Ok(());
    }
    counters::add_own_scans(table.oid, default, seq.max(0), idx.max(0))
}

fn range_subject(table: &PartitionedTable, from: i64, to: i64) -> String {
    format!(
        "[{}, {})",
        table.key_type.value(from).to_text(),
        table.key_type.value(to).to_text()
    )
}

fn activate_due(
    table: &PartitionedTable,
    waiting: &[Shadow],
    up_to: Option<i64>,
    frontier: Option<i64>,
    reach: i64,
    activated: &mut i64,
    found_clean: &mut Vec<String>,
) -> Result<()> {
    for shadow in waiting {
        let due = match up_to {
            Some(limit) => shadow.from <= limit,
            None => frontier.is_some_and(|f| {
                let lead = planner::activation_lead(table.key_type, shadow.from, shadow.to);
                f.saturating_add(lead.max(reach)) >= shadow.from
            }),
        };
        if !due {
            break;
        }
        let Some(shadow_name) = shadow.current_name.as_deref() else {
            if relation::table_state(shadow.oid) == relation::TableState::Attached {
                // Attached by hand: from now on a partition like any other.
                relation::keep_one_dependency(shadow.oid, table.oid);
                shadows::mark_activated(table.oid, shadow.from)?;
                // No longer waiting: its rows-in-DEFAULT condition, if any, ends.
                found_clean.push(range_subject(table, shadow.from, shadow.to));
            }
            continue;
        };
        if shadow.migrating {
            // The migration attaches it when the last rows are in; until
            // then the rows are still in DEFAULT. The shadows after it do
            // not wait for it: their ranges are theirs, and rows keep coming.
            continue;
        }
        if let Some(rows) = rows_in_default(table, shadow.from, shadow.to)? {
            let subject = range_subject(table, shadow.from, shadow.to);
            alerts::raise(
                table.oid,
                Condition::new(AlertKind::RowsInDefault, &subject),
                Severity::Warning,
                &format!(
                    "{rows} row(s) in DEFAULT fall in [{}, {}): shadow {} not attached; the rows are moved out of DEFAULT by migrate_default() or the worker",
                    table.key_type.value(shadow.from),
                    table.key_type.value(shadow.to),
                    shadow.name
                ),
                json!({"range_start": table.key_type.value(shadow.from).to_text(),
                       "range_end": table.key_type.value(shadow.to).to_text(), "rows": rows, "shadow": shadow.name}),
            )?;
            continue;
        }
        found_clean.push(range_subject(table, shadow.from, shadow.to));
        match attach(table, shadow.oid, shadow.from, shadow.to, shadow_name) {
            Ok(()) => *activated += 1,
            // A long-running transaction holds a conflicting lock: the next cycle tries again.
            Err(PredictError::LockUnavailable { .. }) if up_to.is_none() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Rows DEFAULT holds in `[from, to)` (counted up to 1,000), if any.
pub fn rows_in_default(table: &PartitionedTable, from: i64, to: i64) -> Result<Option<i64>> {
    let Some(default) = table.default_partition else {
        return Ok(None);
    };
    let column = quote_identifier(&table.key_column);
    let count = Spi::get_one_with_args::<i64>(
        &format!(
            "SELECT pg_catalog.count(*) FROM (SELECT 1 FROM {} WHERE {column} >= {} AND {column} < {} LIMIT 1000) d",
            catalog::table::relation_name(default)?,
            table.key_type.value(from).to_sql_literal(),
            table.key_type.value(to).to_sql_literal()
        ),
        &[],
    )?
    .unwrap_or(0);
    Ok((count > 0).then_some(count))
}

/// Attaches shadow `shadow` (named `shadow_name` in SQL) as the partition
/// of `[from, to)` and records it as activated.
pub fn attach(
    table: &PartitionedTable,
    shadow: pg_sys::Oid,
    from: i64,
    to: i64,
    shadow_name: &str,
) -> Result<()> {
    attach_after(table, shadow, from, to, shadow_name, "", false)?;
    force_row_security_like_parent(table, shadow, shadow_name)
}

/// Once a shadow is a partition (and filled, when a move attaches it): the
/// parent's `FORCE ROW LEVEL SECURITY`, which a standalone shadow does not
/// carry (see `create::copy_access_rules`). The caller's ATTACH holds the
/// shadow's ACCESS EXCLUSIVE lock already.
pub fn force_row_security_like_parent(
    table: &PartitionedTable,
    shadow: pg_sys::Oid,
    shadow_name: &str,
) -> Result<()> {
    if catalog::table::row_security(table.oid)?.forced
        && !catalog::table::row_security(shadow)?.forced
    {
        stand_aside::as_attacher(|| {
            run_with_lock_retry(
                &table.name,
                "forcing row-level security on the attached shadow",
                &format!("ALTER TABLE {shadow_name} FORCE ROW LEVEL SECURITY"),
            )
        })?;
    }
    Ok(())
}

/// Takes `FORCE ROW LEVEL SECURITY` off a standalone shadow (one made
/// before shadows came without it): forced, with no policy of its own, it
/// hides its rows from the owner the extension acts as.
pub fn unforce_row_security(
    table: &PartitionedTable,
    shadow: pg_sys::Oid,
    shadow_name: &str,
) -> Result<()> {
    if catalog::table::row_security(shadow)?.forced {
        stand_aside::as_attacher(|| {
            run_with_lock_retry(
                &table.name,
                "lifting forced row-level security from a waiting shadow",
                &format!("ALTER TABLE {shadow_name} NO FORCE ROW LEVEL SECURITY"),
            )
        })?;
    }
    Ok(())
}

/// As `attach`, with `first` (statements ending in `;`) run before the
/// ATTACH in each attempt: locks a caller needs taken in its own order,
/// given back with the attempt when it times out. With
/// `others_wait_for_it`, gives up at once when a long transaction holds a
/// lock on the shadow or DEFAULT rather than waiting it out.
pub fn attach_after(
    table: &PartitionedTable,
    shadow: pg_sys::Oid,
    from: i64,
    to: i64,
    shadow_name: &str,
    first: &str,
    others_wait_for_it: bool,
) -> Result<()> {
    let bound = PartitionBound::range(
        Bound::Value(table.key_type.value(from)),
        Bound::Value(table.key_type.value(to)),
    );
    let watched: Vec<pg_sys::Oid> = std::iter::once(shadow)
        .chain(table.default_partition)
        .collect();
    let retry = if others_wait_for_it {
        run_with_lock_retry_unless_long_holder
    } else {
        run_with_lock_retry_watching
    };
    stand_aside::as_attacher(|| {
        retry(
            &table.name,
            "attaching a shadow partition",
            &format!(
                "{first} ALTER TABLE {} ATTACH PARTITION {shadow_name} {}",
                table.name.quoted(),
                bound.to_sql()
            ),
            &watched,
        )
    })?;
    shadows::mark_activated(table.oid, from)?;
    relation::keep_one_dependency(shadow, table.oid);
    // The partition constraint now does the CHECK's job; dropping it needs a
    // short ACCESS EXCLUSIVE on the new partition, so it waits its turn too.
    let dropped = stand_aside::as_attacher(|| {
        run_with_lock_retry(
            &table.name,
            "dropping the attached shadow's bound constraint",
            &format!("ALTER TABLE {shadow_name} DROP CONSTRAINT IF EXISTS {BOUND_CONSTRAINT}"),
        )
    });
    if let Err(e) = dropped {
        pgrx::log!("pg_partition_predict: kept the redundant constraint on {shadow_name}: {e}");
    }
    force_replan(table.oid)
}

/// Invalidates cached plans that involve the table, in every backend: a
/// relcache invalidation of the parent and each partition is sent through
/// the shared invalidation queue at commit.
pub fn force_replan(parent: pg_sys::Oid) -> Result<()> {
    let partitions: Vec<pg_sys::Oid> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1",
            None,
            &[parent.into()],
        )?;
        rows.map(|r| {
            r.get::<pg_sys::Oid>(1)?.ok_or_else(|| {
                PredictError::Internal("NULL catalog column pg_inherits.inhrelid".into())
            })
        })
        .collect::<Result<Vec<_>>>()
    })?;
    for oid in std::iter::once(parent).chain(partitions) {
        relation::invalidate_plans(oid);
    }
    Ok(())
}

/// Attaches every prepared shadow of `parent` (all lie within `lookahead`
/// of the frontier), for a bulk load about to run; how many. Nothing when
/// another session is running the table's steps or it is not managed.
pub fn activate_for_bulk_load(parent: pg_sys::Oid) -> Result<i64> {
    with_pinned_settings(|| {
        if !lock_table_steps(parent, false)? || managed::managed_tables(Some(parent))?.is_empty() {
            return Ok(0);
        }
        let table = catalog::load_partitioned_table(parent, false)?;
        as_role(table.owner_oid, || activate(&table, Some(i64::MAX)))
    })
}

/// Partitions attached ahead of the data (the learned reach attaches a
/// week ahead for a table fed weekly) are sized by the forecast of the
/// day they were planned. When the newest forecast expects one to
/// overflow (over 1.5x `target_rows`, and a smaller span is possible) and
/// no row has reached it yet, it is detached and dropped, so the plan can
/// lay out smaller ones there; returns the ranges taken away.
///
/// Only partitions this extension made and attached to this table are
/// touched, never while rows move out of DEFAULT, and never in a REPEATABLE
/// READ or SERIALIZABLE transaction (an older snapshot could miss a row
/// just committed into it). Each is detached in a subtransaction (DETACH
/// takes the parent's lock, then the partition's, in the order inserts
/// take them, under `lock_timeout` with retries), found empty under those
/// locks, then dropped; a row found, or any error, rolls the
/// subtransaction back and the partition stays as it was. The parent
/// stays locked until the cycle commits, a moment later.
pub fn reshape_attached_ahead(
    table: &PartitionedTable,
    frontier: i64,
    overflowing: impl Fn(i64, i64) -> bool,
) -> Result<Vec<(i64, i64)>> {
    if backend::transaction_uses_one_snapshot() || migrations::active(table.oid)?.is_some() {
        return Ok(Vec::new());
    }
    let mut reshaped = Vec::new();
    for (from, to, oid) in shadows::attached_past(table.oid, frontier)? {
        if !overflowing(from, to) {
            continue;
        }
        let ours = table
            .partitions
            .iter()
            .any(|p| p.bound.raw_range() == Some((from, to)))
            && Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = $1 AND inhparent = $2)",
                &[oid.into(), table.oid.into()],
            )?
            .unwrap_or(false);
        if !ours {
            continue;
        }
        let name = catalog::table::relation_name(oid)?;
        if Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {name})"))?
            .unwrap_or(true)
        {
            continue;
        }
        let parent = table.name.quoted();
        let attempt = try_in_subtransaction(|| {
            or_report((|| -> Result<()> {
                stand_aside::as_attacher(|| {
                    run_with_lock_retry(
                        &table.name,
                        "detaching an empty partition to reshape it",
                        &format!("ALTER TABLE {parent} DETACH PARTITION {name}"),
                    )
                })?;
                if Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {name})"))?
                    .unwrap_or(true)
                {
                    return Err(PredictError::Internal(format!("{name} got a row: kept")));
                }
                Spi::run(&format!("DROP TABLE {name}"))?;
                shadows::forget(table.oid, from)?;
                Ok(())
            })())
        });
        if attempt.is_ok() {
            reshaped.push((from, to));
        }
    }
    Ok(reshaped)
}

//! Bulk loads that bypass `ingest()`: `COPY … FROM` into a managed parent
//! (a ProcessUtility hook) and a large `INSERT … SELECT` into one (seen by
//! the planner hook: at least `BULK_ROWS` rows estimated when planned).
//!
//! Before the load, this database's worker attaches the table's prepared
//! shadows (they all lie within `lookahead` of the frontier) and the load
//! waits for that, at most `attach_wait()`. After the load commits, the
//! worker runs the table's cycle at once and moves whatever reached DEFAULT.
//! Both happen in the worker's own transactions: an ATTACH inside the
//! loading transaction would keep DEFAULT locked until the load commits.

use std::time::Duration;

use pgrx::pg_sys;

use crate::gucs;
use crate::pg::backend;
use crate::pg::locks::holds_any_lock_on;
use crate::pg::relation::{current_user_may, Privilege};
use crate::pg::session::with_pinned_settings;
use crate::pg::stand_aside;
use crate::pg::subxact::try_in_subtransaction;
use crate::shmem::requests::{self, Ask};
use crate::state::shadows;

/// An INSERT … SELECT planned to write at least this many rows is a bulk load.
pub const BULK_ROWS: f64 = 10_000.0;

/// How long a load waits for the worker to attach shadows before going
/// ahead anyway (rows beyond the partitions then reach DEFAULT and are
/// moved out right after the commit).
fn attach_wait() -> Duration {
    Duration::from_millis((gucs::lock_timeout_ms().max(1) as u64 * 10).max(1_000))
}

/// A managed parent about to be bulk-loaded.
pub struct Watched {
    parent: pg_sys::Oid,
    default_partition: Option<pg_sys::Oid>,
    inserted_into_default: i64,
}

fn inserted_by_this_transaction(relation: Option<pg_sys::Oid>) -> i64 {
    relation.map_or(0, backend::inserted_by_this_transaction)
}

/// Before a bulk load into `parent` (a partitioned table): if it is managed,
/// has the worker attach its waiting shadows, and returns what to check
/// after the load. Never fails the user's statement: a problem here only
/// means the load runs as it would without the extension.
pub fn before_bulk_load(parent: pg_sys::Oid) -> Option<Watched> {
    if !gucs::enabled() || stand_aside::ingesting_here() {
        return None;
    }
    // The hooks run before PostgreSQL's own permission check of the load:
    // a role that may not write the table gets nothing done for it.
    if !current_user_may(parent, Privilege::Insert) {
        return None;
    }
    if !backend::extension_installed() || requests::worker_here().is_none() {
        return None;
    }
    let target = match try_in_subtransaction(|| {
        with_pinned_settings(|| shadows::bulk_load_target(parent))
    }) {
        Ok(Ok(Some(target))) => target,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            pgrx::debug1!("pg_partition_predict: bulk load check skipped: {e}");
            return None;
        }
        Err(caught) => {
            pgrx::debug1!(
                "pg_partition_predict: bulk load check skipped: {}",
                caught.message
            );
            return None;
        }
    };
    let (waiting, default_partition) = target;
    // An ATTACH needs ACCESS EXCLUSIVE on DEFAULT: not while this
    // transaction holds any lock on it.
    let blocked = default_partition.is_some_and(holds_any_lock_on);
    if waiting && !blocked {
        if let Some(ticket) = requests::post(parent, Ask::Attach) {
            if requests::wait_served(parent, ticket, attach_wait()) {
                // The new partitions, for the tuple routing about to start.
                backend::accept_invalidations();
            }
        }
    }
    Some(Watched {
        parent,
        default_partition,
        inserted_into_default: inserted_by_this_transaction(default_partition),
    })
}

/// After a bulk load: a cycle right after the commit if rows reached
/// DEFAULT or the load was large.
pub fn after_bulk_load(watched: &Watched, rows: Option<u64>) {
    let into_default =
        inserted_by_this_transaction(watched.default_partition) > watched.inserted_into_default;
    if into_default || rows.is_none_or(|r| r as f64 >= BULK_ROWS) {
        requests::cycle_after_commit(watched.parent);
    }
}

/// After planning an INSERT: a large INSERT … SELECT into a partitioned
/// table is a bulk load (before its execution starts).
pub unsafe fn insert_planned(parse: *mut pg_sys::Query, planned: *mut pg_sys::PlannedStmt) {
    unsafe {
        if (*parse).commandType != pg_sys::CmdType::CMD_INSERT || (*parse).resultRelation <= 0 {
            return;
        }
        let rtable = pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*parse).rtable);
        let Some(rte) = rtable.get_ptr((*parse).resultRelation as usize - 1) else {
            return;
        };
        if (*rte).relkind as u8 != pg_sys::RELKIND_PARTITIONED_TABLE {
            return;
        }
        let tree = (*planned).planTree;
        if tree.is_null() {
            return;
        }
        let source = if (*tree).lefttree.is_null() {
            tree
        } else {
            (*tree).lefttree
        };
        if (*source).plan_rows < BULK_ROWS {
            return;
        }
        // Planned, not run: whether rows reach DEFAULT is unknown yet, and
        // a load this large earns the cycle anyway.
        if before_bulk_load((*rte).relid).is_some() {
            requests::cycle_after_commit((*rte).relid);
        }
    }
}

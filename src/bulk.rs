//! Bulk loads that bypass `ingest()`: `COPY … FROM` into a managed parent
//! (a ProcessUtility hook) and a large `INSERT … SELECT` into one (seen by
//! the planner hook: at least `BULK_ROWS` rows estimated when planned).
//!
//! Before the load, this database's worker attaches the table's prepared
//! shadows (they all lie within `lookahead` of the frontier) and the load
//! waits for that, at most `BULK_ATTACH_WAIT`. After the load commits, the
//! worker runs the table's cycle at once and moves whatever reached DEFAULT.
//! Both happen in the worker's own transactions: an ATTACH inside the
//! loading transaction would keep DEFAULT locked until the load commits.

use std::ffi::c_char;
use std::sync::Mutex;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::gucs;
use crate::session::as_role;
use crate::subxact::try_in_subtransaction;
use crate::wakeup::{self, Ask};

/// An INSERT … SELECT planned to write at least this many rows is a bulk load.
pub const BULK_ROWS: f64 = 10_000.0;

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Tables whose cycle the worker runs when this transaction commits.
static CYCLE_AT_COMMIT: Mutex<Vec<pg_sys::Oid>> = Mutex::new(Vec::new());
static mut CALLBACK_REGISTERED: bool = false;

/// The ProcessUtility hook; only while preloading.
pub fn install() {
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(utility_with_bulk_loads);
    }
}

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

/// Rows this transaction has inserted into `relation` so far, committed
/// subtransactions and the current one (pg_stat_get_xact_tuples_inserted).
fn inserted_by_this_transaction(relation: Option<pg_sys::Oid>) -> i64 {
    let Some(relation) = relation else { return 0 };
    unsafe {
        let entry = pg_sys::find_tabstat_entry(relation);
        if entry.is_null() {
            return 0;
        }
        let mut total = (*entry).t_counts.t_tuples_inserted;
        let mut level = (*entry).trans;
        while !level.is_null() {
            total += (*level).tuples_inserted;
            level = (*level).upper;
        }
        total
    }
}

/// `(managed, shadows waiting, DEFAULT)` of a partitioned table, read as its
/// owner (the configuration is visible to owners only).
fn bulk_target(parent: pg_sys::Oid) -> crate::error::Result<Option<(bool, Option<pg_sys::Oid>)>> {
    let (owner, default) = Spi::get_two_with_args::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT (SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1),
                (SELECT NULLIF(partdefid, 0) FROM pg_catalog.pg_partitioned_table WHERE partrelid = $1)",
        &[parent.into()],
    )?;
    let Some(owner) = owner else { return Ok(None) };
    as_role(owner, || {
        let (managed, waiting) = Spi::get_two_with_args::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM partition_predict.config
                             WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass),
                    EXISTS (SELECT 1 FROM partition_predict.shadows s
                              JOIN pg_catalog.pg_class c ON c.oid = s.shadow AND NOT c.relispartition
                             WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND s.activated_at IS NULL)",
            &[parent.into()],
        )?;
        Ok((managed == Some(true)).then_some((waiting == Some(true), default)))
    })
}

/// Before a bulk load into `parent` (a partitioned table): if it is managed,
/// has the worker attach its waiting shadows, and returns what to check
/// after the load. Never fails the user's statement: a problem here only
/// means the load runs as it would without the extension.
pub fn before_bulk_load(parent: pg_sys::Oid) -> Option<Watched> {
    if !gucs::ENABLED.get() || crate::ingest::ingesting_here() {
        return None;
    }
    let installed = unsafe { pg_sys::get_extension_oid(c"pg_partition_predict".as_ptr(), true) };
    if installed == pg_sys::InvalidOid || wakeup::worker_here().is_none() {
        return None;
    }
    let target = match try_in_subtransaction(|| bulk_target(parent)) {
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
    let blocked =
        default_partition.is_some_and(|d| unsafe { crate::routing::holds_any_lock_on(d.to_u32()) });
    if waiting && !blocked {
        if let Some(ticket) = wakeup::post(parent, Ask::Attach) {
            if wakeup::wait_served(parent, ticket, attach_wait()) {
                // The new partitions, for the tuple routing about to start.
                unsafe { pg_sys::AcceptInvalidationMessages() };
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
fn after_bulk_load(watched: &Watched, rows: Option<u64>) {
    let into_default =
        inserted_by_this_transaction(watched.default_partition) > watched.inserted_into_default;
    if into_default || rows.is_none_or(|r| r as f64 >= BULK_ROWS) {
        cycle_after_commit(watched.parent);
    }
}

/// Asks this database's worker for a cycle of `parent` once the current
/// transaction commits (nothing if it aborts).
pub fn cycle_after_commit(parent: pg_sys::Oid) {
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            CALLBACK_REGISTERED = true;
        }
    }
    if let Ok(mut pending) = CYCLE_AT_COMMIT.lock() {
        if !pending.contains(&parent) {
            pending.push(parent);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    let commit = event == pg_sys::XactEvent::XACT_EVENT_COMMIT;
    let ended = commit
        || event == pg_sys::XactEvent::XACT_EVENT_ABORT
        || event == pg_sys::XactEvent::XACT_EVENT_PREPARE;
    if !ended {
        return;
    }
    let parents = match CYCLE_AT_COMMIT.lock() {
        Ok(mut pending) => std::mem::take(&mut *pending),
        Err(_) => return,
    };
    if commit {
        for parent in parents {
            wakeup::post(parent, Ask::Cycle);
        }
    }
}

/// The partitioned table a `COPY … FROM` writes, if that is what `pstmt` is.
unsafe fn copy_from_target(pstmt: *mut pg_sys::PlannedStmt) -> Option<pg_sys::Oid> {
    unsafe {
        let node = (*pstmt).utilityStmt;
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_CopyStmt {
            return None;
        }
        let copy = node as *mut pg_sys::CopyStmt;
        if !(*copy).is_from || (*copy).relation.is_null() {
            return None;
        }
        let oid = pg_sys::RangeVarGetRelidExtended(
            (*copy).relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (oid != pg_sys::InvalidOid
            && pg_sys::get_rel_relkind(oid) as u8 == pg_sys::RELKIND_PARTITIONED_TABLE)
            .then_some(oid)
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
            cycle_after_commit((*rte).relid);
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_with_bulk_loads(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let watched = unsafe { copy_from_target(pstmt) }.and_then(before_bulk_load);
    unsafe {
        match PREVIOUS_UTILITY {
            Some(previous) => call_previous_utility(
                previous,
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
    if let Some(watched) = watched {
        let rows = (!qc.is_null()).then(|| unsafe { (*qc).nprocessed });
        after_bulk_load(&watched, rows);
    }
}

/// Another library's hook may raise an ERROR (a longjmp): see
/// `routing::call_previous_planner`.
#[allow(ffi_unwind_calls, clippy::too_many_arguments)]
unsafe fn call_previous_utility(
    previous: unsafe extern "C-unwind" fn(
        *mut pg_sys::PlannedStmt,
        *const c_char,
        bool,
        pg_sys::ProcessUtilityContext::Type,
        pg_sys::ParamListInfo,
        *mut pg_sys::QueryEnvironment,
        *mut pg_sys::DestReceiver,
        *mut pg_sys::QueryCompletion,
    ),
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            previous(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            )
        })
    }
}

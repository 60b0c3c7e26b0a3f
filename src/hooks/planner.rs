//! The planner hook: before planning, routing overrides (see `rewrite`);
//! after planning an INSERT, the bulk-load check (see `bulk_load`).

use pgrx::pg_sys;
use pgrx::prelude::*;

use std::cell::RefCell;

use super::rewrite::{Applied, Unrewritten};
use crate::pg::stand_aside;

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;
static mut PREVIOUS_RELATION_INFO: pg_sys::get_relation_info_hook_type = None;

thread_local! {
    /// For each planning under way (a planning can start another, through
    /// a function folded at plan time): the parents a read of which the
    /// rewrite must have reached (see `rewrite::Unrewritten`).
    static UNREWRITTEN: RefCell<Vec<Unrewritten>> = const { RefCell::new(Vec::new()) };
}

pub fn init() {
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(plan);
        PREVIOUS_RELATION_INFO = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(relation_info);
    }
}

/// Pops this planning's entry of `UNREWRITTEN` when the planning ends,
/// by an error too.
struct Planning;

impl Drop for Planning {
    fn drop(&mut self) {
        UNREWRITTEN.with(|stack| stack.borrow_mut().pop());
    }
}

/// The planner's look at a relation, after the rewrite: a read of a parent
/// that a snapshot older than a move needs rewritten, and that the rewrite
/// could not reach (a SQL function inlined by the planner), would prune
/// DEFAULT and miss the moved rows: a serialization failure instead.
#[pg_guard]
unsafe extern "C-unwind" fn relation_info(
    root: *mut pg_sys::PlannerInfo,
    relation: pg_sys::Oid,
    inherited: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    unsafe {
        if let Some(previous) = PREVIOUS_RELATION_INFO {
            call_previous_relation_info(previous, root, relation, inherited, rel);
        }
        // A table the query names, not one of its partitions (a
        // partition that is partitioned itself is planned under the name
        // of the table the query named).
        if !inherited
            || root.is_null()
            || rel.is_null()
            || (*rel).reloptkind != pg_sys::RelOptKind::RELOPT_BASEREL
        {
            return;
        }
        let refused = UNREWRITTEN.with(|stack| stack.borrow().last().cloned());
        let Some(refused) = refused else { return };
        let index = (*rel).relid as usize;
        if index == 0 || index >= (*root).simple_rel_array_size as usize {
            return;
        }
        let rte = *(*root).simple_rte_array.add(index);
        if !rte.is_null() && super::rewrite::unrewritten_read(&refused, relation, rte) {
            super::rewrite::refuse_unrewritten(relation);
        }
    }
}

#[allow(ffi_unwind_calls)]
unsafe fn call_previous_relation_info(
    previous: unsafe extern "C-unwind" fn(
        *mut pg_sys::PlannerInfo,
        pg_sys::Oid,
        bool,
        *mut pg_sys::RelOptInfo,
    ),
    root: *mut pg_sys::PlannerInfo,
    relation: pg_sys::Oid,
    inherited: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| previous(root, relation, inherited, rel))
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn plan(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let migrating_here = stand_aside::migrating_here();
    let mut applied = Applied::default();
    if super::rewrite::anything_to_apply() && !migrating_here {
        applied = unsafe { super::rewrite::apply_overrides(parse) };
    }
    UNREWRITTEN.with(|stack| stack.borrow_mut().push(applied.unrewritten.clone()));
    let planning = Planning;
    let planned = unsafe {
        match PREVIOUS_PLANNER {
            Some(previous) => {
                call_previous_planner(previous, parse, query_string, cursor_options, bound_params)
            }
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    drop(planning);
    if applied.transient && !planned.is_null() {
        // Made for this snapshot, or reading a table a move settled lately
        // (a snapshot older than that move may come to run it): a cached
        // plan is made again when the transaction's xmin changes.
        unsafe { (*planned).transientPlan = true };
    }
    if !migrating_here && unsafe { (*parse).commandType } == pg_sys::CmdType::CMD_INSERT {
        unsafe { super::bulk_load::insert_planned(parse, planned) };
    }
    planned
}

/// Another library's planner hook may raise an ERROR (a longjmp): it is
/// called inside `pg_guard_ffi_boundary`, which turns that into a Rust
/// unwind this crate's `#[pg_guard]` boundary hands back to PostgreSQL.
#[allow(ffi_unwind_calls)]
unsafe fn call_previous_planner(
    previous: unsafe extern "C-unwind" fn(
        *mut pg_sys::Query,
        *const std::ffi::c_char,
        std::ffi::c_int,
        pg_sys::ParamListInfo,
    ) -> *mut pg_sys::PlannedStmt,
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            previous(parse, query_string, cursor_options, bound_params)
        })
    }
}

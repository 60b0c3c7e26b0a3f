//! The planner hook: before planning, routing overrides (see `rewrite`);
//! after planning an INSERT, the bulk-load check (see `bulk_load`).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::stand_aside;

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;

pub fn init() {
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(plan);
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
    let mut for_this_snapshot = false;
    if super::rewrite::anything_to_apply() && !migrating_here {
        for_this_snapshot = unsafe { super::rewrite::apply_overrides(parse) };
    }
    let planned = unsafe {
        match PREVIOUS_PLANNER {
            Some(previous) => {
                call_previous_planner(previous, parse, query_string, cursor_options, bound_params)
            }
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    if for_this_snapshot && !planned.is_null() {
        // Read DEFAULT whole for a snapshot older than a move: a cached
        // plan is made again once the session's snapshots are all newer.
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

//! The ProcessUtility hook: a `COPY … FROM` into a managed parent is a bulk
//! load (see `bulk_load`). While rows of a table are being moved out of its
//! DEFAULT, any `ALTER TABLE` (`SET SCHEMA` included) or `TRUNCATE` of it,
//! and any `ALTER TABLE`, `TRUNCATE` or `DROP TABLE` of its DEFAULT or of
//! the shadow receiving the rows (but for a DROP of the table itself), and a
//! `DROP SCHEMA … CASCADE` that would take them along, are refused: the
//! move and the planner hook read both by OID, with the parent's columns,
//! the move attaches, and a TRUNCATE would miss rows.
//! `DROP SCHEMA … CASCADE` of the schema the extension was created in is
//! refused to all but the extension's owner and superusers: it would drop
//! the extension, and the state of every table, with it.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::bulk_load;
use crate::catalog::objects;
use crate::error::{or_report, PredictError};
use crate::pg::backend;
use crate::pg::relation::is_partitioned_table;
use crate::pg::relation::qualified_name;
use crate::pg::session::with_pinned_settings;
use crate::pg::stand_aside;
use crate::shmem::routing;

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

pub fn init() {
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
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
        if !(*copy).is_from {
            return None;
        }
        relation_of((*copy).relation).filter(|oid| is_partitioned_table(*oid))
    }
}

/// The schemas a `DROP SCHEMA … CASCADE` in `pstmt` names (those that exist).
unsafe fn schemas_dropped_with_cascade(pstmt: *mut pg_sys::PlannedStmt) -> Vec<pg_sys::Oid> {
    unsafe {
        let node = (*pstmt).utilityStmt;
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_DropStmt {
            return Vec::new();
        }
        let drop = node as *mut pg_sys::DropStmt;
        if (*drop).removeType != pg_sys::ObjectType::OBJECT_SCHEMA
            || (*drop).behavior != pg_sys::DropBehavior::DROP_CASCADE
        {
            return Vec::new();
        }
        pgrx::PgList::<pg_sys::Node>::from_pg((*drop).objects)
            .iter_ptr()
            .filter(|node| !node.is_null() && (**node).type_ == pg_sys::NodeTag::T_String)
            .map(|node| pg_sys::get_namespace_oid((*node.cast::<pg_sys::String>()).sval, true))
            .filter(|oid| *oid != pg_sys::InvalidOid)
            .collect()
    }
}

/// Refuses a `DROP SCHEMA … CASCADE` of the extension's schema by a role
/// that is neither a superuser nor the extension's owner (the schema's
/// owner, say: `public` belongs to the database's owner).
fn guard_extension_schema(schemas: &[pg_sys::Oid]) {
    if schemas.is_empty() || backend::is_superuser() || backend::extension_oid().is_none() {
        return;
    }
    let Some((schema, owner)) =
        or_report(with_pinned_settings(objects::extension_schema_and_owner))
    else {
        return;
    };
    if schemas.contains(&schema)
        && !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), owner) }
    {
        let name = unsafe {
            let name = pg_sys::get_namespace_name(schema);
            if name.is_null() {
                schema.to_u32().to_string()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            }
        };
        PredictError::ExtensionSchemaDrop(name).report();
    }
}

/// The tables a statement changes in a way a migration cannot live with.
#[derive(Default)]
struct Touched {
    tables: Vec<pg_sys::Oid>,
    /// Changes a parent it names (any ALTER TABLE, RENAME, SET SCHEMA,
    /// TRUNCATE).
    parent_changes: bool,
    /// A DROP: of the parent itself, it takes shadow and DEFAULT along.
    drop: bool,
}

/// The relation a name in a statement means now, if it exists (no lock:
/// PostgreSQL takes its own when the statement runs).
fn relation_of(range_var: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if range_var.is_null() {
        return None;
    }
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            range_var,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// What `ALTER TABLE`, `ALTER … RENAME`, `TRUNCATE` or `DROP TABLE` in
/// `pstmt` would change.
unsafe fn tables_touched(pstmt: *mut pg_sys::PlannedStmt) -> Touched {
    unsafe {
        let node = (*pstmt).utilityStmt;
        if node.is_null() {
            return Touched::default();
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {}
            pg_sys::NodeTag::T_TruncateStmt => {
                let truncate = node as *mut pg_sys::TruncateStmt;
                return Touched {
                    tables: pgrx::PgList::<pg_sys::RangeVar>::from_pg((*truncate).relations)
                        .iter_ptr()
                        .filter_map(relation_of)
                        .collect(),
                    parent_changes: true,
                    drop: false,
                };
            }
            pg_sys::NodeTag::T_DropStmt => {
                let drop = node as *mut pg_sys::DropStmt;
                if (*drop).removeType != pg_sys::ObjectType::OBJECT_TABLE {
                    return Touched::default();
                }
                return Touched {
                    tables: pgrx::PgList::<pg_sys::List>::from_pg((*drop).objects)
                        .iter_ptr()
                        .filter_map(|names| relation_of(pg_sys::makeRangeVarFromNameList(names)))
                        .collect(),
                    parent_changes: false,
                    drop: true,
                };
            }
            // A renamed column of DEFAULT or the shadow is a column the
            // move and the rewrite no longer find by the parent's name.
            // (A renamed table keeps its OID, which is all the move uses.)
            pg_sys::NodeTag::T_RenameStmt => {
                let renamed = node as *mut pg_sys::RenameStmt;
                if (*renamed).renameType != pg_sys::ObjectType::OBJECT_COLUMN {
                    return Touched::default();
                }
                return Touched {
                    tables: relation_of((*renamed).relation).into_iter().collect(),
                    parent_changes: true,
                    drop: false,
                };
            }
            pg_sys::NodeTag::T_AlterObjectSchemaStmt => {
                let moved = node as *mut pg_sys::AlterObjectSchemaStmt;
                return Touched {
                    tables: relation_of((*moved).relation).into_iter().collect(),
                    parent_changes: true,
                    drop: false,
                };
            }
            _ => return Touched::default(),
        }
        // Any change of the parent: its columns are the shadow's and
        // DEFAULT's, its partitions and owner the move's.
        let alter = node as *mut pg_sys::AlterTableStmt;
        Touched {
            tables: relation_of((*alter).relation).into_iter().collect(),
            parent_changes: true,
            drop: false,
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let schemas_dropped = unsafe { schemas_dropped_with_cascade(pstmt) };
    if !stand_aside::attaching_here() && routing::any_active() {
        let touched = unsafe { tables_touched(pstmt) };
        // A schema dropped with CASCADE takes its tables along: DEFAULT or
        // the shadow without the table is what a DROP TABLE of them would be.
        let in_dropped_schema = |raw: u32| {
            schemas_dropped.contains(&unsafe { pg_sys::get_rel_namespace(pg_sys::Oid::from(raw)) })
        };
        let moving = routing::overrides_here().into_iter().find(|o| {
            let is = |raw: u32| touched.tables.contains(&pg_sys::Oid::from(raw));
            let parent_too = is(o.parent);
            (touched.parent_changes && parent_too)
                || ((is(o.shadow) || is(o.default_partition)) && !(touched.drop && parent_too))
                || ((in_dropped_schema(o.shadow) || in_dropped_schema(o.default_partition))
                    && !in_dropped_schema(o.parent))
        });
        if let Some(o) = moving {
            let parent = pg_sys::Oid::from(o.parent);
            let name = qualified_name(parent)
                .map(|n| n.to_string())
                .unwrap_or_else(|| o.parent.to_string());
            PredictError::MigrationInProgress(name).report();
        }
    }
    guard_extension_schema(&schemas_dropped);
    let watched = unsafe { copy_from_target(pstmt) }.and_then(bulk_load::before_bulk_load);
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
        bulk_load::after_bulk_load(&watched, rows);
    }
}

/// Another library's hook may raise an ERROR (a longjmp): see
/// `planner::call_previous_planner`.
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

//! `DROP EXTENSION pg_partition_predict`, seen by an event trigger at
//! `ddl_command_start` (created by `sql/schema.sql`), before anything is
//! dropped: shadows that hold no rows go with the extension; while rows
//! are being moved out of a DEFAULT the drop is refused, since they would
//! be left in a table nobody reads and the routing override would outlive
//! the extension.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::catalog::create;
use crate::error::or_report;
use crate::pg::session::with_pinned_settings;

/// PG_FUNCTION_INFO_V1 of the event trigger function below.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pg_partition_predict_before_drop_extension(
) -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// `partition_predict.before_drop_extension()`, an event trigger function.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_partition_predict_before_drop_extension(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    if unsafe { drops_this_extension(fcinfo) } {
        or_report(with_pinned_settings(create::clear_for_extension_drop));
    }
    pg_sys::Datum::from(0)
}

/// Whether the statement the event trigger fires for is a DROP EXTENSION
/// naming this extension.
unsafe fn drops_this_extension(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            return false;
        }
        let tree = (*context.cast::<pg_sys::EventTriggerData>()).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_DropStmt {
            return false;
        }
        let drop = tree.cast::<pg_sys::DropStmt>();
        if (*drop).removeType != pg_sys::ObjectType::OBJECT_EXTENSION {
            return false;
        }
        PgList::<pg_sys::Node>::from_pg((*drop).objects)
            .iter_ptr()
            .any(|node| {
                !node.is_null()
                    && (*node).type_ == pg_sys::NodeTag::T_String
                    && CStr::from_ptr((*node.cast::<pg_sys::String>()).sval).to_bytes()
                        == b"pg_partition_predict"
            })
    }
}

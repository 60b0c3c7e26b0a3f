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

use crate::error::{or_report, PredictError, Result};
use crate::gucs;
use crate::pg::lock_retry::run_with_lock_retry_unless_long_holder;
use crate::pg::locks::lock_table_steps;
use crate::pg::session::{as_role, with_pinned_settings};
use crate::state::{managed, migrations, shadows};

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
        or_report(with_pinned_settings(clear_for_extension_drop));
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

/// Before `DROP EXTENSION pg_partition_predict`: drops every shadow that
/// was never attached and holds no row, or refuses while rows are being
/// moved out of a DEFAULT (they live in a shadow until it is attached).
fn clear_for_extension_drop() -> Result<()> {
    // Wait for every table's steps under way (a worker's cycle, a migration
    // step) to commit, and keep new ones out: the drop then takes the state
    // tables' locks after them rather than in a deadlock with them.
    // Bounded like every lock the extension takes: a session that keeps a
    // table's steps (`run_cycle()` in a transaction left open) fails the
    // drop, naming the table, rather than holding it up, and every other
    // table's cycles with it, for good.
    for parent in managed::managed_tables(None)? {
        lock_steps_or_give_up(parent)?;
    }
    let moving = migrations::tables_moving()?;
    if !moving.is_empty() {
        return Err(PredictError::ExtensionInUse(format!(
            "rows are being moved out of the DEFAULT partition of {}",
            moving.join(", ")
        )));
    }
    // Read and dropped as their owner: whoever drops the extension does not
    // lend a superuser's rights to anything of a table's owner.
    let waiting: Vec<(String, pg_sys::Oid, pg_sys::Oid)> = shadows::waiting_everywhere()?
        .into_iter()
        .filter_map(|s| s.current_name.map(|name| (name, s.owner, s.oid)))
        .collect();
    let mut holding = Vec::new();
    for (name, owner, oid) in &waiting {
        // Locked before it is looked at, to the drop: no row can be written
        // into it between the look and the drop.
        // A long transaction holding it (any role can lock any table)
        // fails the drop at once, named, rather than after every retry
        // while every table's steps are held.
        if let Some(qualified) = crate::pg::relation::qualified_name(*oid) {
            as_role(*owner, || {
                run_with_lock_retry_unless_long_holder(
                    &qualified,
                    "dropping a shadow with the extension",
                    &format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"),
                    &[*oid],
                )
            })?;
        }
        let has_rows = as_role(*owner, || {
            Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {name})"))
        })?
        .unwrap_or(false);
        if has_rows {
            holding.push(name.clone());
        }
    }
    if !holding.is_empty() {
        return Err(PredictError::ExtensionInUse(format!(
            "shadow table(s) {} hold rows",
            holding.join(", ")
        )));
    }
    for (name, owner, _) in waiting {
        as_role(owner, || Spi::run(&format!("DROP TABLE {name}")))?;
    }
    Ok(())
}

/// Takes `parent`'s steps lock, trying for `lock_timeout` × (`lock_retries`
/// + 1) at most.
fn lock_steps_or_give_up(parent: pg_sys::Oid) -> Result<()> {
    let timeout_ms = gucs::lock_timeout_ms();
    let attempts = gucs::lock_retries() + 1;
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(timeout_ms.max(1) as u64 * u64::from(attempts));
    loop {
        if lock_table_steps(parent, false)? {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(PredictError::LockUnavailable {
                relation: crate::pg::relation::qualified_name(parent)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| parent.to_u32().to_string()),
                action: "dropping the extension (another session runs the table's steps: a cycle or a migration step, maybe in a transaction left open)",
                attempts,
                timeout_ms,
            });
        }
        crate::pg::backend::sleep_interruptibly(10);
    }
}

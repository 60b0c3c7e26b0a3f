//! Settings pinned while the extension reads catalogs and writes DDL.
//!
//! Partition bounds are printed by `pg_get_expr` in the session's DateStyle
//! and TimeZone, and an unqualified name would resolve through the caller's
//! search_path. Pinning these for the duration of a call (restored when it
//! returns, or by transaction abort when it fails) makes every statement the
//! extension issues mean one thing, whoever calls it.

use std::cell::Cell;
use std::ffi::{CStr, CString};

use pgrx::pg_sys;

use super::backend;
use crate::error::{PredictError, Result};

const CATALOG_SETTINGS: [(&CStr, &str); 5] = [
    (c"search_path", "pg_catalog, pg_temp"),
    (c"DateStyle", "ISO, YMD"),
    (c"TimeZone", "UTC"),
    (c"IntervalStyle", "postgres"),
    // Statistics collection reads new rows by TID range: never a full scan.
    (c"enable_tidscan", "on"),
];

/// Runs `f` with the catalog settings pinned, as `CREATE FUNCTION … SET` would.
pub fn with_pinned_settings<R>(f: impl FnOnce() -> R) -> R {
    with_settings(&CATALOG_SETTINGS, f)
}

/// Runs `f` with each `(name, value)` set for its duration only.
pub fn with_settings<R>(settings: &[(&CStr, &str)], f: impl FnOnce() -> R) -> R {
    with_settings_in_context(settings, pg_sys::GucContext::PGC_USERSET, f)
}

/// As `with_settings`, for superuser-only settings; the caller has checked
/// that the session is a superuser's.
pub fn with_superuser_settings<R>(settings: &[(&CStr, &str)], f: impl FnOnce() -> R) -> R {
    with_settings_in_context(settings, pg_sys::GucContext::PGC_SUSET, f)
}

fn with_settings_in_context<R>(
    settings: &[(&CStr, &str)],
    context: pg_sys::GucContext::Type,
    f: impl FnOnce() -> R,
) -> R {
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        // Values are ours, never user input; an interior NUL is a bug.
        let value = CString::new(*value).expect("setting values contain no NUL byte");
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                context,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pgrx::PgLogLevel::ERROR as i32,
                false,
            );
        }
    }
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}

/// Runs `f` as `role`, security-restricted (as autovacuum runs ANALYZE and
/// REFRESH MATERIALIZED VIEW runs its query): whatever user code `f` reaches
/// runs with the rights of the table's owner, never the worker's superuser,
/// and any setting that code changes (`set_config(…, false)` in a policy or
/// trigger function) is undone when `f` returns, as ANALYZE undoes it: it
/// must not reach the caller's session or the extension's next statement.
/// If `f` raises, the enclosing (sub)transaction's abort restores the
/// previous user and settings.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let result = f();
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    result
}

/// Runs `f`, one of the extension's own statements, with the current role
/// but outside the security-restricted operation `as_role` starts (which
/// forbids temporary tables): for the temporary table a move of a
/// published table keeps its rows in. No code of the role runs in `f`.
pub fn unrestricted<R>(f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            user,
            context & !(pg_sys::SECURITY_RESTRICTED_OPERATION as i32),
        );
    }
    let result = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

thread_local! {
    /// `(extension OID, its owner)`: the owner of the extension as it is now.
    static EXTENSION_OWNER: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

fn extension_owner() -> Result<pg_sys::Oid> {
    let extension = backend::extension_oid().ok_or_else(|| {
        PredictError::Internal("extension pg_partition_predict is not installed".into())
    })?;
    if let Some((cached, owner)) = EXTENSION_OWNER.get() {
        if cached == extension {
            return Ok(owner);
        }
    }
    let owner = crate::pg::spi::select_one::<pg_sys::Oid>(
        "SELECT (SELECT extowner FROM pg_catalog.pg_extension WHERE oid = $1)",
        &[extension.into()],
    )?
    .ok_or_else(|| PredictError::Internal("extension pg_partition_predict has no owner".into()))?;
    EXTENSION_OWNER.set(Some((extension, owner)));
    Ok(owner)
}

/// Runs `f` as the extension's owner, with the settings pinned again: code
/// of a table's owner that ran before it in this call must not have chosen
/// how its names and operators resolve.
pub fn as_extension_owner<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    with_pinned_settings(|| {
        let owner = extension_owner()?;
        as_role(owner, f)
    })
}

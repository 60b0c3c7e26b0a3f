//! Running a piece of work in a subtransaction so that one failure (a lock
//! timeout, a bad setting value) can be caught and handled without aborting
//! the caller's transaction.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// The SQLSTATE and message of an error caught in a subtransaction.
#[derive(Debug)]
pub struct Caught {
    pub sqlstate: pgrx::PgSqlErrorCode,
    pub message: String,
}

/// An error caught in a subtransaction, passed on as PostgreSQL raised it.
impl From<Caught> for crate::error::PredictError {
    fn from(caught: Caught) -> Self {
        crate::error::PredictError::Postgres {
            sqlstate: caught.sqlstate,
            message: caught.message,
        }
    }
}

/// Runs `f` in a subtransaction: committed if it returns, rolled back (and
/// the error returned) if it raises an ERROR.
pub fn try_in_subtransaction<R>(
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, Caught> {
    in_subtransaction(f, |_| true)
}

/// As `try_in_subtransaction` for work that returns a `Result`: committed
/// only if it returns `Ok`, rolled back if it returns an error or raises
/// one (which is returned with its SQLSTATE).
pub fn in_subtransaction_kept_if_ok<T>(
    f: impl FnOnce() -> crate::error::Result<T> + std::panic::UnwindSafe,
) -> crate::error::Result<T> {
    in_subtransaction(f, |result| result.is_ok())?
}

/// Runs `f` in a subtransaction, committed if it returns and `keep` says
/// so of what it returned, rolled back otherwise or if it raises an ERROR
/// (which is returned).
fn in_subtransaction<R>(
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
    keep: impl FnOnce(&R) -> bool,
) -> Result<R, Caught> {
    let (outer_context, outer_owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // Results must outlive the subtransaction's memory context.
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let outcome = PgTryBuilder::new(|| Ok(f()))
        .catch_others(|error| {
            Err(match error {
                CaughtError::PostgresError(report)
                | CaughtError::ErrorReport(report)
                | CaughtError::RustPanic {
                    ereport: report, ..
                } => Caught {
                    sqlstate: report.sql_error_code(),
                    message: report.message().to_string(),
                },
            })
        })
        .execute();
    unsafe {
        if outcome.as_ref().is_ok_and(keep) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(outer_context);
        pg_sys::CurrentResourceOwner = outer_owner;
    }
    outcome
}

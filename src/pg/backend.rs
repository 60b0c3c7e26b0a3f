//! This backend: who it is, its transactions, its wait points and what it
//! reports to `pg_stat_activity`.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{IntoDatum, PgTryBuilder};

/// Set when the postmaster loaded the library through
/// `shared_preload_libraries`; backends inherit it through fork.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init`: whether the library is being preloaded (the
/// only time background workers, hooks and shared memory can be set up).
pub fn note_preloading() -> bool {
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloading, Ordering::Relaxed);
    preloading
}

/// Whether the library came in through `shared_preload_libraries`, which
/// the workers, the routing overrides and the hooks need.
pub fn library_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// OID of the database this backend is connected to.
pub fn database_id() -> pg_sys::Oid {
    unsafe { pg_sys::MyDatabaseId }
}

pub fn process_id() -> i32 {
    unsafe { pg_sys::MyProcPid }
}

/// Whether the current user is a superuser.
pub fn is_superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

/// Whether a transaction block (BEGIN, or a multi-statement query string) is open.
pub fn in_transaction_block() -> bool {
    unsafe { pg_sys::IsTransactionBlock() }
}

/// The current time as a PostgreSQL timestamp (microseconds since 2000).
pub fn now_timestamp() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The timestamps PostgreSQL accepts (4714-11-24 BC to 294276 AD), in its
/// microseconds since 2000-01-01: `MIN_TIMESTAMP` to `END_TIMESTAMP`.
pub const TIMESTAMP_RANGE: std::ops::Range<i64> =
    -211_813_488_000_000_000..9_223_371_331_200_000_000;

/// A PostgreSQL timestamp as a `timestamptz` value.
pub fn timestamptz(timestamp: i64) -> Option<pgrx::datum::TimestampWithTimeZone> {
    use pgrx::FromDatum;
    unsafe { pgrx::datum::TimestampWithTimeZone::from_datum(pg_sys::Datum::from(timestamp), false) }
}

/// The start of this transaction (`now()`) in seconds since 1970-01-01 UTC.
pub fn now_unix_seconds() -> f64 {
    pg_micros_as_unix_seconds(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() })
}

/// Microseconds since 2000-01-01 as seconds since 1970-01-01, with one
/// rounding, as PostgreSQL's `date_part('epoch', …)` computes them.
fn pg_micros_as_unix_seconds(micros: i64) -> f64 {
    (micros as i128 + partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS as i128 * 1_000_000) as f64
        / 1e6
}

/// Sends `payload` on `channel` (`pg_notify`), delivered when the
/// transaction commits.
pub fn notify(channel: &str, payload: &str) -> crate::error::Result<()> {
    pgrx::spi::Spi::run_with_args(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[channel.into(), payload.into()],
    )?;
    Ok(())
}

/// A `timestamptz` as seconds since 1970-01-01 UTC, as
/// `date_part('epoch', …)` gives it (`±infinity` for the infinite ones).
pub fn unix_seconds(timestamp: pgrx::datum::TimestampWithTimeZone) -> f64 {
    let micros = timestamp
        .into_datum()
        .map_or(0, |datum| datum.value() as i64);
    match micros {
        i64::MAX => f64::INFINITY,
        i64::MIN => f64::NEG_INFINITY,
        _ => pg_micros_as_unix_seconds(micros),
    }
}

/// The data directory (where pg_default's files live).
fn data_directory() -> CString {
    unsafe { CStr::from_ptr(pg_sys::DataDir) }.to_owned()
}

/// Free bytes on the filesystem of a tablespace directory ('' is the data
/// directory, where pg_default lives).
pub fn free_bytes(location: &str) -> Option<i64> {
    let path = if location.is_empty() {
        data_directory()
    } else {
        CString::new(location).ok()?
    };
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    i64::try_from(stats.f_bavail as u128 * stats.f_frsize as u128).ok()
}

/// Sleeps `ms` milliseconds, answering interrupts (cancel, terminate) every 10 ms.
pub fn sleep_interruptibly(ms: u64) {
    let deadline = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        pg_sys::check_for_interrupts!();
        unsafe { pg_sys::pg_usleep(10_000) };
    }
}

/// Waits on this backend's latch for at most `ms` milliseconds (woken
/// early when someone sets it), then answers interrupts.
pub fn wait_on_latch(ms: i64) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

/// Sets the latch of backend `pid`, if it is still running.
pub fn wake_process(pid: i32) {
    let proc = unsafe { pg_sys::BackendPidGetProc(pid) };
    if !proc.is_null() {
        unsafe { pg_sys::SetLatch(&raw mut (*proc).procLatch) };
    }
}

/// Whether a backend with this pid is running.
pub fn process_alive(pid: i32) -> bool {
    pid != 0 && !unsafe { pg_sys::BackendPidGetProc(pid) }.is_null()
}

/// Whether the server runs for pg_upgrade (`postgres -b`).
pub fn in_binary_upgrade() -> bool {
    unsafe { pg_sys::IsBinaryUpgrade }
}

/// Left in the data directory by a server in binary-upgrade mode: this
/// cluster came out of pg_upgrade (see `worker::database`). Only the
/// server's OS user can write it.
const BINARY_UPGRADE_MARK: &str = "pg_partition_predict.pg_upgrade";

/// Called while preloading, in the data directory.
pub fn note_binary_upgrade() {
    if in_binary_upgrade() {
        if let Err(e) = std::fs::write(BINARY_UPGRADE_MARK, b"pg_upgrade ran here\n") {
            pgrx::log!("pg_partition_predict: could not write {BINARY_UPGRADE_MARK}: {e}");
        }
    }
}

/// Whether this cluster has run in binary-upgrade mode (pg_upgrade) and
/// this database's worker has not yet acted on it (`note_upgrade_handled`).
pub fn binary_upgrade_unhandled_here() -> bool {
    match std::fs::read_to_string(BINARY_UPGRADE_MARK) {
        Ok(text) => {
            let me = database_id().to_u32().to_string();
            !text.lines().any(|line| line == me)
        }
        Err(_) => false,
    }
}

/// Records in the mark that this database's worker acted on the upgrade.
pub fn note_upgrade_handled() {
    use std::io::Write;
    let line = format!("{}\n", database_id().to_u32());
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(BINARY_UPGRADE_MARK)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = written {
        pgrx::log!("pg_partition_predict: could not write {BINARY_UPGRADE_MARK}: {e}");
    }
}

/// Whether this recovery is a standby's or a restored backup's (reads may
/// be served while it runs), not crash recovery's. Read in the startup
/// process.
pub fn archive_recovery() -> bool {
    unsafe { pg_sys::ArchiveRecoveryRequested }
}

/// Whether this server is a standby (or still recovering).
pub fn in_recovery() -> bool {
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Processes catalog invalidations other sessions have sent (new
/// partitions, dropped tables) before looking at the catalog again.
pub fn accept_invalidations() {
    unsafe { pg_sys::AcceptInvalidationMessages() };
}

/// Re-reads the configuration files (after SIGHUP).
pub fn reload_configuration() {
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

/// Makes SIGTERM end this background worker as it ends a backend
/// (PostgreSQL's `die`: the next interrupt check raises FATAL), rather than
/// only setting a flag the worker reads between statements.
pub fn terminate_on_sigterm() {
    // As pqsignal() installs a handler (its name and signature differ
    // between PostgreSQL versions): every signal blocked while it runs.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = postgres_die as *const () as libc::sighandler_t;
        libc::sigfillset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn postgres_die(postgres_signal_arg: std::ffi::c_int);
}

/// SIGTERM was received (pg_ctl stop, pg_terminate_backend).
pub fn shutdown_requested() -> bool {
    unsafe { (&raw const pg_sys::ShutdownRequestPending).read_volatile() != 0 }
}

/// What `pg_stat_activity.query` shows for this (worker) process.
pub fn set_activity(activity: &str) {
    if let Ok(text) = CString::new(activity) {
        unsafe {
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr())
        };
    }
}

/// Reserves a GUC prefix: `prefix.anything` not defined by the library is
/// then an error, not a silently created placeholder.
pub fn reserve_guc_prefix(prefix: &CStr) {
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) };
}

/// The transaction's top-level ID in full (epoch included), assigned now
/// if it has none.
pub fn top_full_transaction_id() -> u64 {
    unsafe { pg_sys::GetTopFullTransactionId().value }
}

/// The next transaction ID to be assigned, in full.
pub fn next_full_transaction_id() -> u64 {
    unsafe { pg_sys::ReadNextFullTransactionId().value }
}

/// `xid` (not in the future) in full: the epoch of the newest IDs, or the
/// one before for those past the last wraparound.
pub fn full_transaction_id(xid: pg_sys::TransactionId, next_full: u64) -> u64 {
    let behind = (next_full as u32).wrapping_sub(xid.into_inner());
    next_full.saturating_sub(u64::from(behind))
}

/// A full transaction ID every running transaction's snapshot, anywhere
/// in the cluster (standbys with feedback and replication slots included),
/// sees as finished with everything before it.
pub fn oldest_snapshot_horizon() -> u64 {
    let next = next_full_transaction_id();
    let oldest = unsafe { pg_sys::GetOldestNonRemovableTransactionId(std::ptr::null_mut()) };
    if oldest.into_inner() < pg_sys::FirstNormalTransactionId.into_inner() {
        return 0;
    }
    full_transaction_id(oldest, next)
}

/// Whether the transaction reads through one snapshot (REPEATABLE READ or
/// SERIALIZABLE): it does not see rows other sessions commit meanwhile.
pub fn transaction_uses_one_snapshot() -> bool {
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// The session's `TimeZone` setting as it was set (a name the zone
/// database then spells canonically).
pub fn session_time_zone() -> String {
    // SAFETY: GetConfigOption returns a pointer into the GUC's own storage
    // (or NULL), valid until the setting changes; it is copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(c"TimeZone".as_ptr(), false, false);
        if value.is_null() {
            return "UTC".into();
        }
        std::ffi::CStr::from_ptr(value)
            .to_string_lossy()
            .into_owned()
    }
}

/// Rows this transaction has inserted into `relation` so far, committed
/// subtransactions and the current one. Through the SQL-callable function,
/// whose result is the same on every version while the pgstat structures
/// behind it are not.
pub fn inserted_by_this_transaction(relation: pg_sys::Oid) -> i64 {
    unsafe {
        pgrx::direct_function_call::<i64>(
            pg_sys::pg_stat_get_xact_tuples_inserted,
            &[relation.into_datum()],
        )
    }
    .unwrap_or(0)
}

/// Shared buffers this backend has found in memory and read in so far
/// (the counters behind EXPLAIN's `Buffers: shared hit=… read=…`).
pub fn shared_buffers_used() -> (i64, i64) {
    unsafe {
        let usage = &raw const pg_sys::pgBufferUsage;
        ((*usage).shared_blks_hit, (*usage).shared_blks_read)
    }
}

/// Runs `f` with a statement timeout armed for what is left until
/// `deadline`: a background worker has none of its own (PostgreSQL arms
/// statement_timeout for a client's statements only), and a table's
/// trigger, policy or lock must not hold the worker past its time. A
/// timeout that fires after `f` returned is cleared, so that it cannot
/// cancel whatever the worker does next.
///
/// A table owner's PL/pgSQL can catch that cancel (`EXCEPTION WHEN
/// query_canceled`) and go on: from a second past the deadline the cancel
/// is raised again every 250 ms, and `DEADLINE_GRACE` past it the worker
/// is ended (a FATAL no code can catch; its successor leaves that table
/// alone for a while, see `worker::database`).
pub fn with_deadline<R>(deadline: Option<std::time::Instant>, f: impl FnOnce() -> R) -> R {
    let Some(deadline) = deadline else {
        return f();
    };
    let left = deadline
        .saturating_duration_since(std::time::Instant::now())
        .as_millis()
        .clamp(1, i32::MAX as u128) as i32;
    let timer = cancel_again_timer();
    unsafe {
        let deadline_at = pg_sys::GetCurrentTimestamp() + i64::from(left) * 1_000;
        END_WORKER_AT.store(
            deadline_at + DEADLINE_GRACE.as_micros() as i64,
            Ordering::Relaxed,
        );
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            enable_timeout_after(STATEMENT_TIMEOUT, left);
            if let Some(timer) = timer {
                enable_timeout_every(timer, deadline_at + 1_000_000, 250);
            }
        })
    };
    let result = f();
    unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            disable_timeout(STATEMENT_TIMEOUT, false);
            if let Some(timer) = timer {
                disable_timeout(timer, false);
            }
        });
        pg_sys::QueryCancelPending = 0;
    }
    result
}

/// How long past a table's deadline the worker goes on cancelling before
/// it ends itself.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(10);

/// When the worker ends itself (PostgreSQL timestamp; read in a signal
/// handler, hence an atomic).
static END_WORKER_AT: AtomicI64 = AtomicI64::new(i64::MAX);

/// The timeout that cancels again (registered once per process: -1 until
/// then, -2 if there was no room).
static CANCEL_AGAIN: AtomicI32 = AtomicI32::new(-1);

fn cancel_again_timer() -> Option<std::ffi::c_int> {
    let id = match CANCEL_AGAIN.load(Ordering::Relaxed) {
        -1 => {
            let id = unsafe {
                pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                    RegisterTimeout(USER_TIMEOUT, cancel_again)
                })
            };
            CANCEL_AGAIN.store(id, Ordering::Relaxed);
            id
        }
        id => id,
    };
    (id >= USER_TIMEOUT).then_some(id)
}

/// Runs in the SIGALRM handler: only sets flags, as PostgreSQL's own
/// statement timeout does.
extern "C" fn cancel_again() {
    unsafe {
        pg_sys::QueryCancelPending = 1;
        if pg_sys::GetCurrentTimestamp() >= END_WORKER_AT.load(Ordering::Relaxed) {
            pg_sys::ProcDiePending = 1;
        }
        pg_sys::InterruptPending = 1;
    }
}

// utils/timeout.h, which pgrx's bindings leave out. `STATEMENT_TIMEOUT` is
// the fourth `TimeoutId` in PostgreSQL 15 to 18 alike (its handler is
// registered for every backend, workers included, by InitPostgres);
// `USER_TIMEOUT`, the first a library may register, follows the built-in
// ones, of which 17 added one (`TRANSACTION_TIMEOUT`).
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
#[cfg(any(feature = "pg15", feature = "pg16"))]
const USER_TIMEOUT: std::ffi::c_int = 12;
#[cfg(any(feature = "pg17", feature = "pg18"))]
const USER_TIMEOUT: std::ffi::c_int = 13;
unsafe extern "C" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn enable_timeout_every(id: std::ffi::c_int, fin_time: i64, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn RegisterTimeout(id: std::ffi::c_int, handler: extern "C" fn()) -> std::ffi::c_int;
}

/// For a background worker between transactions: runs `f` in a transaction
/// of its own. An error aborts that transaction, is logged with `what`,
/// and `None` is returned so the worker carries on.
pub fn in_own_transaction<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    let f = std::panic::AssertUnwindSafe(f);
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(|| Ok(f())).catch_others(Err).execute();
    match outcome {
        Ok(value) => {
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
                // Background workers flush their statistics themselves.
                pg_sys::pgstat_report_stat(true);
            }
            Some(value)
        }
        Err(error) => {
            let message = match &error {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            };
            unsafe { pg_sys::AbortCurrentTransaction() };
            pgrx::log!("pg_partition_predict: {what} failed: {message}");
            None
        }
    }
}

/// Whether the extension is installed in this database (a worker may run
/// where it was never created, or dropped) in this library's version: SQL
/// objects of another version are left alone until they are updated.
pub fn extension_installed() -> bool {
    extension_oid().is_some() && sql_version_mismatch().is_none()
}

/// The extension whose SQL objects were last found to be of this
/// library's version in this backend (an UPDATE cannot take them back).
static MATCHED_EXTENSION: AtomicU32 = AtomicU32::new(0);

/// The version of the extension's SQL objects in this database when it is
/// not this library's (after a new package, before `ALTER EXTENSION …
/// UPDATE`); `None` when it is, or when the extension is not installed.
pub fn sql_version_mismatch() -> Option<String> {
    let oid = extension_oid()?;
    if MATCHED_EXTENSION.load(Ordering::Relaxed) == oid.to_u32() {
        return None;
    }
    let installed = crate::pg::spi::select_one::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
    )
    .ok()
    .flatten()?;
    if installed == env!("CARGO_PKG_VERSION") {
        MATCHED_EXTENSION.store(oid.to_u32(), Ordering::Relaxed);
        return None;
    }
    Some(installed)
}

/// Refuses to go on with SQL objects of another version: their tables and
/// functions are not the ones this library reads and writes.
pub fn require_sql_version() -> crate::error::Result<()> {
    match sql_version_mismatch() {
        None => Ok(()),
        Some(sql) => Err(crate::error::PredictError::SqlVersionMismatch {
            library: env!("CARGO_PKG_VERSION"),
            sql,
        }),
    }
}

/// The OID of the extension in this database, if it is installed.
pub fn extension_oid() -> Option<pg_sys::Oid> {
    let oid = unsafe { pg_sys::get_extension_oid(c"pg_partition_predict".as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

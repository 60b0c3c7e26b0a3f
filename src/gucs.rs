//! The `pg_partition_predict.*` settings: private statics, one typed
//! accessor each, registered by `init()`.

use std::ffi::{CStr, CString};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static NAPTIME_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
static DATABASES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(100);
static LOCK_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(20);
static FORECAST_ALERT_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static ROUTING: GucSetting<bool> = GucSetting::<bool>::new(true);
static MAX_SHADOWS_PER_TABLE: GucSetting<i32> = GucSetting::<i32>::new(100);
static MAX_MIGRATIONS_PER_DATABASE: GucSetting<i32> = GucSetting::<i32>::new(16);
static MAX_MIGRATIONS_PER_ROLE: GucSetting<i32> = GucSetting::<i32>::new(4);
static TABLE_TIME_LIMIT_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
static ROLE_TIME_SHARE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(30);
static WAL_RESOURCE_MANAGER_ID: GucSetting<i32> = GucSetting::<i32>::new(175);

/// Reserved by `_PG_init`: a typo such as `pg_partition_predict.naptim`
/// is an error, not a silently created placeholder.
pub const PREFIX: &CStr = c"pg_partition_predict";

/// Settings fixed at server start; only while preloading (PostgreSQL
/// refuses to define them later).
pub fn init_postmaster() {
    GucRegistry::define_int_guc(
        c"pg_partition_predict.wal_resource_manager_id",
        c"The ID of the extension's WAL resource manager (custom range 128-255).",
        c"Routing overrides are WAL-logged under it so that hot standbys read moving ranges exactly; it must be the same on the primary and its standbys, and not used by another extension.",
        &WAL_RESOURCE_MANAGER_ID,
        128,
        255,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_partition_predict.enabled",
        c"Whether the background workers run maintenance cycles.",
        c"When off, workers stay connected but skip their cycles.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.naptime",
        c"Time between two maintenance cycles of a worker.",
        c"",
        &NAPTIME_SECONDS,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"pg_partition_predict.database",
        c"Comma-separated list of databases the workers maintain.",
        c"One worker runs per listed database; databases without the extension are skipped until it is created.",
        &DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.lock_timeout",
        c"Longest wait for one lock request of the extension's DDL.",
        c"A request that times out is retried with back-off, so a long-running query never makes other queries queue behind the extension.",
        &LOCK_TIMEOUT_MS,
        1,
        60_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.lock_retries",
        c"How many times a lock request that timed out is retried before giving up.",
        c"",
        &LOCK_RETRIES,
        0,
        1_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"pg_partition_predict.forecast_alert_threshold",
        c"Relative forecast error above which an alert is raised.",
        c"0.5 means an alert when the rows that arrived differ from the forecast by more than 50%.",
        &FORECAST_ALERT_THRESHOLD,
        0.0,
        1_000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_partition_predict.routing",
        c"Whether rows found in DEFAULT may be moved out of it online.",
        c"While rows move, the planner hook makes every query on the table read them where they are. Off: no migration starts, and one under way gives way (moves its rows back); the hook keeps honouring overrides until then.",
        &ROUTING,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.max_shadows_per_table",
        c"Most shadow partitions a table may have waiting at once.",
        c"The forecast's plan stops there; it bounds what any settings can make the cycle create.",
        &MAX_SHADOWS_PER_TABLE,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.max_migrations_per_database",
        c"Most migrations out of DEFAULT one database may have under way at once.",
        c"The cluster has 64 routing slots; this keeps one database from taking them all.",
        &MAX_MIGRATIONS_PER_DATABASE,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.table_time_limit",
        c"Longest the worker spends on one table in a cycle (its cycle, moves out of DEFAULT and retention), in seconds; 0: no limit.",
        c"Past it the table's statement is cancelled and the worker goes on with the next table; a table that keeps running out of time is left alone for 2, 4, … up to 64 naptimes.",
        &TABLE_TIME_LIMIT_SECONDS,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.role_time_share",
        c"Longest the worker spends on the tables of one role in a cycle, in seconds, when other roles' tables wait too; 0: no limit.",
        c"Roles take turns, one table each; the tables of a role past its share wait for the next cycle, where they come first.",
        &ROLE_TIME_SHARE_SECONDS,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_partition_predict.max_migrations_per_role",
        c"Most migrations out of DEFAULT the tables of one role may have under way at once in a database.",
        c"Keeps one owner from taking every slot of the database; a move past it waits for the next cycle.",
        &MAX_MIGRATIONS_PER_ROLE,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn wal_resource_manager_id() -> u8 {
    u8::try_from(WAL_RESOURCE_MANAGER_ID.get()).unwrap_or(175)
}

pub fn enabled() -> bool {
    ENABLED.get()
}

pub fn naptime() -> std::time::Duration {
    std::time::Duration::from_secs(NAPTIME_SECONDS.get().max(1) as u64)
}

/// The database list as written; see `partition_core::databases` for its syntax.
pub fn databases() -> String {
    DATABASES
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}

pub fn lock_retries() -> u32 {
    LOCK_RETRIES.get().max(0) as u32
}

pub fn forecast_alert_threshold() -> f64 {
    FORECAST_ALERT_THRESHOLD.get()
}

pub fn routing() -> bool {
    ROUTING.get()
}

pub fn max_shadows_per_table() -> usize {
    MAX_SHADOWS_PER_TABLE.get().max(1) as usize
}

/// How long the worker may spend on one table in a cycle (`None`: no limit).
pub fn table_time_limit() -> Option<std::time::Duration> {
    match TABLE_TIME_LIMIT_SECONDS.get() {
        seconds if seconds > 0 => Some(std::time::Duration::from_secs(seconds as u64)),
        _ => None,
    }
}

/// How long the worker may spend on one role's tables in a cycle while
/// other roles' tables wait (`None`: no limit).
pub fn role_time_share() -> Option<std::time::Duration> {
    match ROLE_TIME_SHARE_SECONDS.get() {
        seconds if seconds > 0 => Some(std::time::Duration::from_secs(seconds as u64)),
        _ => None,
    }
}

pub fn max_migrations_per_role() -> usize {
    MAX_MIGRATIONS_PER_ROLE.get().max(1) as usize
}

pub fn max_migrations_per_database() -> usize {
    MAX_MIGRATIONS_PER_DATABASE.get().max(1) as usize
}

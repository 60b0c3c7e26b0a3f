//! Routing overrides and the planner hook (SPEC §4, migration).
//!
//! While rows of a range are moved out of DEFAULT into a detached shadow,
//! each batch in its own transaction, a row is in DEFAULT or in the shadow
//! for any one snapshot, never both and never neither. So a query that reads
//! `parent UNION ALL shadow` under one snapshot sees every row exactly once.
//! The planner hook makes that rewrite for every query that reads the
//! parent, the way view expansion replaces a relation by a subquery.
//!
//! Overrides live in shared memory, so every backend sees a new one at its
//! next planning, and in a state file in the data directory, so that after a
//! crash restart (which reinitialises shared memory) they are back before
//! any query runs. An override left over after its shadow was attached is
//! ignored (the shadow is then a partition, read through the parent) and
//! removed by the next migration step.
//!
//! Statements that write the parent (UPDATE, DELETE, MERGE, INSERT … ON
//! CONFLICT, SELECT … FOR UPDATE/SHARE), and the rare reads the rewrite
//! cannot express (system columns, TABLESAMPLE), cannot be pointed at two
//! tables: they wait, before planning, until the range's migration is over,
//! then plan against the attached partition.

use std::ffi::{c_void, CStr, CString};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgList, PgLwLock, PgSqlErrorCode};

use crate::error::{PredictError, Result};

/// Migrations that can be in flight at once, over all databases.
pub const MAX_OVERRIDES: usize = 64;
/// Writers waiting on a migration are recorded per backend id up to this.
const MAX_WAITERS: usize = 4096;
/// Where overrides survive a crash restart (relative to the data directory).
const STATE_FILE: &str = "pg_partition_predict.routing";
const STATE_FILE_TMP: &str = "pg_partition_predict.routing.tmp";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Override {
    pub database: u32,
    pub parent: u32,
    pub shadow: u32,
    pub default_partition: u32,
    pub migration_id: i64,
    /// When it was published (PostgreSQL timestamp, microseconds).
    pub since: i64,
    /// The migration is attaching: INSERTs wait too (one routed to DEFAULT
    /// just before the ATTACH would fail DEFAULT's new partition constraint).
    /// Not kept in the state file: a restart ends the attempt.
    pub finishing: bool,
}

impl Override {
    fn in_use(&self) -> bool {
        self.parent != 0
    }
}

/// A backend waiting, before planning, for the migration of `parent`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Waiter {
    database: u32,
    parent: u32,
    local_xid: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Registry {
    overrides: [Override; MAX_OVERRIDES],
    waiters: [Waiter; MAX_WAITERS],
}

unsafe impl PGRXSharedMemory for Registry {}

impl Registry {
    fn empty() -> Registry {
        Registry {
            overrides: [Override::default(); MAX_OVERRIDES],
            waiters: [Waiter::default(); MAX_WAITERS],
        }
    }

    fn active(&self) -> u32 {
        self.overrides.iter().filter(|o| o.in_use()).count() as u32
    }
}

static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"pg_partition_predict_routing") };
/// Overrides in use: the planner hook's whole cost when it is 0.
static ACTIVE: PgAtomic<AtomicU32> =
    unsafe { PgAtomic::new(c"pg_partition_predict_routing_active") };

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;

/// Set while this backend runs a migration's own statements, which must see
/// DEFAULT and the shadow as they are.
static MIGRATING_HERE: AtomicBool = AtomicBool::new(false);

/// Shared memory and the planner hook; only while preloading.
pub fn install() {
    pg_shmem_init!(REGISTRY = load_state_file());
    pg_shmem_init!(ACTIVE = AtomicU32::new(load_state_file().active()));
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(plan_with_overrides);
    }
}

fn load_state_file() -> Registry {
    let mut registry = Registry::empty();
    let Ok(text) = fs::read_to_string(STATE_FILE) else {
        return registry;
    };
    let mut slot = 0;
    for line in text.lines().skip(1) {
        let fields: Vec<i64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let ([database, parent, shadow, default_partition, migration_id, since], true) =
            (fields.as_slice(), slot < MAX_OVERRIDES)
        {
            registry.overrides[slot] = Override {
                database: *database as u32,
                parent: *parent as u32,
                shadow: *shadow as u32,
                default_partition: *default_partition as u32,
                migration_id: *migration_id,
                since: *since,
                finishing: false,
            };
            slot += 1;
        }
    }
    registry
}

/// Writes every override to the state file, durably, before the caller
/// goes on: a migration must not move a row before its override would
/// survive a crash.
fn write_state_file(registry: &Registry) -> Result<()> {
    let mut text = String::from("pg_partition_predict routing overrides v1\n");
    for o in registry.overrides.iter().filter(|o| o.in_use()) {
        text.push_str(&format!(
            "{} {} {} {} {} {}\n",
            o.database, o.parent, o.shadow, o.default_partition, o.migration_id, o.since
        ));
    }
    let io = |e: std::io::Error| PredictError::Postgres {
        sqlstate: PgSqlErrorCode::ERRCODE_IO_ERROR,
        message: format!("could not write {STATE_FILE}: {e}"),
    };
    let mut file = fs::File::create(STATE_FILE_TMP).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(STATE_FILE_TMP, STATE_FILE).map_err(io)?;
    fs::File::open(".")
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(())
}

fn database() -> u32 {
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Makes the override of a migration visible to every backend (replacing
/// the parent's previous one, if any) and durable.
pub fn publish(entry: Override) -> Result<()> {
    let mut registry = REGISTRY.exclusive();
    let slot = registry
        .overrides
        .iter()
        .position(|o| o.database == entry.database && o.parent == entry.parent)
        .or_else(|| registry.overrides.iter().position(|o| !o.in_use()))
        .ok_or(PredictError::TooManyOverrides(MAX_OVERRIDES))?;
    let previous = registry.overrides[slot];
    registry.overrides[slot] = entry;
    if let Err(e) = write_state_file(&registry) {
        registry.overrides[slot] = previous;
        return Err(e);
    }
    ACTIVE.get().store(registry.active(), Ordering::Release);
    Ok(())
}

/// Removes the override of `parent` in this database, if any.
pub fn withdraw(parent: pg_sys::Oid) -> Result<()> {
    let mut registry = REGISTRY.exclusive();
    let db = database();
    let mut changed = false;
    for o in registry.overrides.iter_mut() {
        if o.database == db && o.parent == parent.to_u32() {
            *o = Override::default();
            changed = true;
        }
    }
    if changed {
        write_state_file(&registry)?;
        ACTIVE.get().store(registry.active(), Ordering::Release);
    }
    Ok(())
}

/// Marks the override of `parent` as attaching (or not any more).
pub fn set_finishing(parent: pg_sys::Oid, finishing: bool) {
    let db = database();
    let mut registry = REGISTRY.exclusive();
    for o in registry.overrides.iter_mut() {
        if o.database == db && o.parent == parent.to_u32() {
            o.finishing = finishing;
        }
    }
}

/// The overrides of this database.
pub fn overrides_here() -> Vec<Override> {
    if ACTIVE.get().load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    let db = database();
    REGISTRY
        .share()
        .overrides
        .iter()
        .filter(|o| o.in_use() && o.database == db)
        .copied()
        .collect()
}

pub fn override_of(parent: pg_sys::Oid) -> Option<Override> {
    overrides_here()
        .into_iter()
        .find(|o| o.parent == parent.to_u32())
}

/// Runs `f` as the migration itself: its statements on DEFAULT and the
/// shadow are neither rewritten nor made to wait.
pub fn as_migrator<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MIGRATING_HERE.store(self.0, Ordering::Relaxed);
        }
    }
    let _reset = Reset(MIGRATING_HERE.swap(true, Ordering::Relaxed));
    f()
}

/// Whether backend `backend_id` is, in transaction `local_xid`, waiting
/// before planning for the migration of `parent` (so it planned nothing
/// that could miss moved rows).
pub fn is_waiting_for(backend_id: i32, local_xid: u32, parent: pg_sys::Oid) -> bool {
    let Ok(index) = usize::try_from(backend_id) else {
        return false;
    };
    if index >= MAX_WAITERS {
        return false;
    }
    let waiter = REGISTRY.share().waiters[index];
    waiter.database == database()
        && waiter.parent == parent.to_u32()
        && waiter.local_xid == local_xid
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ShadowState {
    Gone,
    Standalone,
    Attached,
}

unsafe fn shadow_state(shadow: pg_sys::Oid) -> ShadowState {
    if unsafe { pg_sys::get_rel_relkind(shadow) } as u8 != pg_sys::RELKIND_RELATION {
        ShadowState::Gone
    } else if unsafe { pg_sys::get_rel_relispartition(shadow) } {
        ShadowState::Attached
    } else {
        ShadowState::Standalone
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn plan_with_overrides(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let migrating_here = MIGRATING_HERE.load(Ordering::Relaxed);
    if ACTIVE.get().load(Ordering::Acquire) != 0 && !migrating_here {
        unsafe { apply_overrides(parse) };
    }
    let planned = unsafe {
        match PREVIOUS_PLANNER {
            Some(previous) => {
                call_previous_planner(previous, parse, query_string, cursor_options, bound_params)
            }
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    if !migrating_here && unsafe { (*parse).commandType } == pg_sys::CmdType::CMD_INSERT {
        unsafe { crate::bulk::insert_planned(parse, planned) };
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

#[pg_guard]
unsafe extern "C-unwind" fn collect_queries(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    unsafe {
        if (*node).type_ == pg_sys::NodeTag::T_Query {
            let query = node.cast::<pg_sys::Query>();
            (*context.cast::<Vec<*mut pg_sys::Query>>()).push(query);
            return pg_sys::query_tree_walker(query, Some(collect_queries), context, 0);
        }
        pg_sys::expression_tree_walker(node, Some(collect_queries), context)
    }
}

/// The query and every query nested in it (subqueries, CTEs, sublinks).
unsafe fn all_queries(parse: *mut pg_sys::Query) -> Vec<*mut pg_sys::Query> {
    let mut found = vec![parse];
    unsafe {
        pg_sys::query_tree_walker(
            parse,
            Some(collect_queries),
            (&raw mut found).cast::<c_void>(),
            0,
        );
    }
    found
}

unsafe fn range_table(query: *mut pg_sys::Query) -> PgList<pg_sys::RangeTblEntry> {
    unsafe { PgList::from_pg((*query).rtable) }
}

unsafe fn relation_of(rtable: &PgList<pg_sys::RangeTblEntry>, rti: i64) -> pg_sys::Oid {
    let Ok(index) = usize::try_from(rti - 1) else {
        return pg_sys::InvalidOid;
    };
    match rtable.get_ptr(index) {
        Some(rte) if unsafe { (*rte).rtekind } == pg_sys::RTEKind::RTE_RELATION => unsafe {
            (*rte).relid
        },
        _ => pg_sys::InvalidOid,
    }
}

/// System columns (ctid, tableoid, …) among the columns read.
unsafe fn reads_system_columns(rte: *mut pg_sys::RangeTblEntry) -> bool {
    let first = unsafe { pg_sys::bms_next_member((*rte).selectedCols, -1) };
    // Members are attnos offset by -FirstLowInvalidHeapAttributeNumber: 0 is
    // the whole row, below it system columns.
    (0..-pg_sys::FirstLowInvalidHeapAttributeNumber).contains(&first)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    /// Until the migration is over.
    ForMigration,
    /// An INSERT: only while the migration attaches.
    WhileAttaching,
}

/// Whether some query writes the parent (or its DEFAULT), or reads it in a
/// way the rewrite cannot express.
unsafe fn must_wait(queries: &[*mut pg_sys::Query], o: &Override) -> Wait {
    let mut wait = Wait::No;
    let is_ours = |oid: pg_sys::Oid| {
        oid != pg_sys::InvalidOid
            && (oid.to_u32() == o.parent || oid.to_u32() == o.default_partition)
    };
    for &query in queries {
        unsafe {
            let rtable = range_table(query);
            let target = relation_of(&rtable, (*query).resultRelation as i64);
            let writes = match (*query).commandType {
                pg_sys::CmdType::CMD_UPDATE
                | pg_sys::CmdType::CMD_DELETE
                | pg_sys::CmdType::CMD_MERGE => is_ours(target),
                pg_sys::CmdType::CMD_INSERT => !(*query).onConflict.is_null() && is_ours(target),
                _ => false,
            };
            if writes {
                return Wait::ForMigration;
            }
            if (*query).commandType == pg_sys::CmdType::CMD_INSERT && is_ours(target) {
                wait = Wait::WhileAttaching;
            }
            let marks = PgList::<pg_sys::RowMarkClause>::from_pg((*query).rowMarks);
            for mark in marks.iter_ptr() {
                if is_ours(relation_of(&rtable, (*mark).rti as i64)) {
                    return Wait::ForMigration;
                }
            }
            for rte in rtable.iter_ptr() {
                if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION
                    && (*rte).relid.to_u32() == o.parent
                    && (*rte).inh
                    && (!(*rte).tablesample.is_null() || reads_system_columns(rte))
                {
                    return Wait::ForMigration;
                }
            }
        }
    }
    wait
}

/// The lock tag of a relation of this database (SET_LOCKTAG_RELATION).
pub fn relation_lock_tag(relation: pg_sys::Oid) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: relation.to_u32(),
        locktag_field3: 0,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

pub unsafe fn holds_any_lock_on(relation: u32) -> bool {
    let tag = relation_lock_tag(pg_sys::Oid::from(relation));
    (1..=pg_sys::AccessExclusiveLock as i32).any(|mode| unsafe { pg_sys::LockHeldByMe(&tag, mode) })
}

/// Waits until the migration of `o.parent` is over (its override withdrawn
/// or its shadow attached). A transaction that already holds a lock on
/// DEFAULT or the shadow would keep the migration from attaching while it
/// waits for the migration: it gets a serialization failure instead, which
/// applications retry.
unsafe fn wait_for_migration(o: &Override, wait: Wait) {
    if wait == Wait::WhileAttaching && !o.finishing {
        return;
    }
    if unsafe { holds_any_lock_on(o.default_partition) || holds_any_lock_on(o.shadow) } {
        let name = unsafe { relation_display_name(pg_sys::Oid::from(o.parent)) };
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            format!("could not write {name} while rows are being moved out of its DEFAULT partition"),
            "pg_partition_predict",
        )
        .set_detail("This transaction read or wrote the table earlier, before or during the move; waiting here could hold the move up forever.")
        .set_hint("Retry the transaction.")
        .report(PgLogLevel::ERROR);
    }
    let backend = unsafe { pg_sys::MyBackendId };
    let local_xid = unsafe { (*pg_sys::MyProc).lxid };
    let slot = usize::try_from(backend).ok().filter(|b| *b < MAX_WAITERS);
    struct Clear(Option<usize>);
    impl Drop for Clear {
        fn drop(&mut self) {
            if let Some(slot) = self.0 {
                REGISTRY.exclusive().waiters[slot] = Waiter::default();
            }
        }
    }
    if let Some(slot) = slot {
        REGISTRY.exclusive().waiters[slot] = Waiter {
            database: o.database,
            parent: o.parent,
            local_xid,
        };
    }
    let _clear = Clear(slot);
    loop {
        unsafe { pg_sys::AcceptInvalidationMessages() };
        let current = override_of(pg_sys::Oid::from(o.parent));
        let over = match current {
            None => true,
            Some(c) if wait == Wait::WhileAttaching && !c.finishing => true,
            Some(c) => {
                let state = unsafe { shadow_state(pg_sys::Oid::from(c.shadow)) };
                state != ShadowState::Standalone
            }
        };
        if over {
            break;
        }
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                10,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
    }
}

unsafe fn apply_overrides(parse: *mut pg_sys::Query) {
    let mut overrides = overrides_here();
    if overrides.is_empty() {
        return;
    }
    let queries = unsafe { all_queries(parse) };
    let mut waited = false;
    for o in &overrides {
        let wait = unsafe { must_wait(&queries, o) };
        if wait != Wait::No {
            unsafe { wait_for_migration(o, wait) };
            waited = true;
        }
    }
    if waited {
        // Plan against what the migrations left: attached partitions.
        unsafe { pg_sys::AcceptInvalidationMessages() };
        overrides = overrides_here();
    }
    for o in &overrides {
        for &query in &queries {
            unsafe {
                let result_relation = (*query).resultRelation as usize;
                let rtable = range_table(query);
                for (index, rte) in rtable.iter_ptr().enumerate() {
                    if index + 1 != result_relation
                        && (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION
                        && (*rte).relid.to_u32() == o.parent
                        && (*rte).inh
                    {
                        read_shadow_too(rte, o);
                    }
                }
            }
        }
    }
}

unsafe fn relation_display_name(oid: pg_sys::Oid) -> String {
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        if name.is_null() || schema.is_null() {
            return format!("relation {}", oid.to_u32());
        }
        format!(
            "{}.{}",
            quote_identifier(CStr::from_ptr(schema).to_string_lossy().as_ref()),
            quote_identifier(CStr::from_ptr(name).to_string_lossy().as_ref())
        )
    }
}

/// Replaces the parent's range table entry by `parent UNION ALL shadow`.
/// Columns keep the parent's positions (a dropped column is a NULL), so the
/// query's references to the entry stay valid. Permissions stay those the
/// query was checked for on the parent; the shadow's rows are the parent's.
unsafe fn read_shadow_too(rte: *mut pg_sys::RangeTblEntry, o: &Override) {
    let shadow = pg_sys::Oid::from(o.shadow);
    let parent = pg_sys::Oid::from(o.parent);
    unsafe {
        // Locked before looking: an ATTACH of the shadow cannot then commit
        // until this query is over, so it cannot be read twice.
        pg_sys::LockRelationOid(shadow, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if shadow_state(shadow) != ShadowState::Standalone {
            return;
        }
        let relation = pg_sys::RelationIdGetRelation(parent);
        if relation.is_null() {
            return;
        }
        let descriptor = (*relation).rd_att;
        let columns: Vec<String> = (*descriptor)
            .attrs
            .as_slice((*descriptor).natts as usize)
            .iter()
            .map(|a| {
                if a.attisdropped {
                    "NULL::pg_catalog.int4".to_string()
                } else {
                    quote_identifier(
                        CStr::from_ptr(a.attname.data.as_ptr())
                            .to_string_lossy()
                            .as_ref(),
                    )
                }
            })
            .collect();
        pg_sys::RelationClose(relation);
        let columns = columns.join(", ");
        let sql = format!(
            "SELECT {columns} FROM {} UNION ALL SELECT {columns} FROM {}",
            relation_display_name(parent),
            relation_display_name(shadow)
        );
        let Ok(sql) = CString::new(sql) else { return };
        let sql = pg_sys::pstrdup(sql.as_ptr());
        let statements = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            sql,
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        let Some(statement) = statements.get_ptr(0) else {
            return;
        };
        let union = pg_sys::parse_analyze_fixedparams(
            statement,
            sql,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        for query in all_queries(union) {
            for inner in range_table(query).iter_ptr() {
                if (*inner).rtekind != pg_sys::RTEKind::RTE_RELATION {
                    continue;
                }
                if (*inner).relid == parent {
                    (*inner).requiredPerms = (*rte).requiredPerms;
                    (*inner).checkAsUser = (*rte).checkAsUser;
                    (*inner).selectedCols = pg_sys::bms_copy((*rte).selectedCols);
                } else if (*inner).relid == shadow {
                    (*inner).requiredPerms = 0;
                    (*inner).selectedCols = std::ptr::null_mut();
                }
            }
        }
        // As the rewriter turns a view's entry into a subquery.
        (*rte).rtekind = pg_sys::RTEKind::RTE_SUBQUERY;
        (*rte).subquery = union;
        (*rte).security_barrier = false;
        (*rte).relid = pg_sys::InvalidOid;
        (*rte).relkind = 0;
        (*rte).rellockmode = 0;
        (*rte).tablesample = std::ptr::null_mut();
        (*rte).inh = false;
        (*rte).requiredPerms = 0;
        (*rte).checkAsUser = pg_sys::InvalidOid;
        (*rte).selectedCols = std::ptr::null_mut();
        (*rte).insertedCols = std::ptr::null_mut();
        (*rte).updatedCols = std::ptr::null_mut();
        (*rte).extraUpdatedCols = std::ptr::null_mut();
    }
}

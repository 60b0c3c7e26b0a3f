//! Routing overrides applied by the planner hook.
//!
//! While a range of DEFAULT moves (`act::migrate`), every statement that
//! writes the parent (INSERT, UPDATE, DELETE, MERGE, SELECT … FOR
//! UPDATE/SHARE), and the rare reads the rewrite cannot express (system
//! columns, TABLESAMPLE), waits before planning until the move is over,
//! then plans against the attached partition: planned before it, an INSERT
//! could route a row to DEFAULT by the old partition map, and an UPDATE
//! could miss rows moved under it.
//!
//! Reads are rewritten into `parent UNION ALL shadow`, the way view
//! expansion replaces a relation by a subquery. A move of version 0.3 fills
//! the shadow and attaches it in one transaction, so the shadow is empty for
//! every snapshot that reads it; a migration begun by version 0.2 moved
//! rows in batches, each in its own transaction, and until it is concluded
//! a row is in DEFAULT or in its shadow for any one snapshot, never both
//! and never neither: under one snapshot the rewritten query sees every row
//! exactly once either way.
//!
//! A REPEATABLE READ or SERIALIZABLE transaction keeps one snapshot, which
//! can be older than a move that committed since (`routing::Settled`): it
//! still sees the moved rows in DEFAULT and not in their new partition, but
//! plans with today's partition map, which prunes DEFAULT for their keys.
//! Its reads of the parent are rewritten into `parent without DEFAULT UNION
//! ALL DEFAULT`, which under that snapshot holds every row once; a write or
//! a row lock there, and a read the rewrite cannot express, gets a
//! serialization failure (after waiting for a move in flight, if any),
//! which such transactions retry anyway.

use std::ffi::{c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{PgList, PgTupleDesc};

use crate::error::PredictError;
use crate::pg::backend;
use crate::pg::locks::{holds_any_lock_on, lock_for_reading, my_transaction};
use crate::pg::relation::{qualified_name, table_state, TableState};
use crate::shmem::routing::{self, Override};

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

/// System columns (ctid, tableoid, …) among the columns `query` reads
/// through `rte`. Unknown counts as yes: the query then waits rather than
/// being rewritten.
unsafe fn reads_system_columns(query: *mut pg_sys::Query, rte: *mut pg_sys::RangeTblEntry) -> bool {
    let Some(selected) = (unsafe { permissions::selected_columns(query, rte) }) else {
        return true;
    };
    let first = unsafe { pg_sys::bms_next_member(selected, -1) };
    // Members are attnos offset by -FirstLowInvalidHeapAttributeNumber: 0 is
    // the whole row, below it system columns.
    (0..-pg_sys::FirstLowInvalidHeapAttributeNumber).contains(&first)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    /// An INSERT: one routed to DEFAULT by a partition map from before the
    /// move's ATTACH would fail DEFAULT's new partition constraint.
    ForInsert,
    /// An UPDATE, DELETE, MERGE, a row lock or a read the rewrite cannot
    /// express: it would miss rows moved under it.
    ForMigration,
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
                wait = Wait::ForInsert;
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
                    && (!(*rte).tablesample.is_null() || reads_system_columns(query, rte))
                {
                    return Wait::ForMigration;
                }
            }
        }
    }
    wait
}

/// Waits until the migration of `o.parent` is over (its override withdrawn
/// or its shadow attached). A transaction that already holds a lock on
/// DEFAULT or the shadow keeps the move from committing (its ATTACH needs
/// an ACCESS EXCLUSIVE lock on both) until it ends: its INSERT goes on at
/// once; anything else (which would miss rows a 0.2 migration left in the
/// shadow) gets a serialization failure, which applications retry.
unsafe fn wait_for_migration(o: &Override, wait: Wait) {
    if holds_any_lock_on(oid(o.default_partition)) || holds_any_lock_on(oid(o.shadow)) {
        if wait == Wait::ForInsert {
            return;
        }
        PredictError::WriteDuringMigration(display_name(oid(o.parent))).report();
    }
    let (backend_id, local_xid) = my_transaction();
    let _waiting = routing::wait_for(o, backend_id, local_xid);
    loop {
        backend::accept_invalidations();
        let over = match routing::override_of(oid(o.parent)) {
            None => true,
            Some(c) => table_state(oid(c.shadow)) != TableState::Standalone,
        };
        if over {
            break;
        }
        backend::wait_on_latch(10);
    }
}

/// Whether the planner hook has anything to do here: an override in use, a
/// settled move, or snapshots that may miss a move no entry records.
pub fn anything_to_apply() -> bool {
    routing::any_active() || !routing::nothing_settled()
}

/// What the snapshot this planning runs under misses (see
/// `routing::Settled`).
#[derive(Default)]
struct OlderSnapshot {
    /// Moves it does not see: `(parent, DEFAULT)`.
    moves: Vec<(u32, u32)>,
    /// Owners of tables it may have missed a move of that no entry records
    /// any more (0: any owner): their parents' DEFAULT is read apart.
    uncertain_owners: Vec<u32>,
    /// Parents of this database with a settled move, whatever this
    /// snapshot sees: a plan reading them may be kept and reused under an
    /// older snapshot (an imported one, say), so it is made transient.
    settled_parents: Vec<u32>,
}

/// What the planning's snapshot misses. That is the active snapshot: a
/// REPEATABLE READ or SERIALIZABLE transaction's own, or, in READ
/// COMMITTED, that of the statement a function's queries run under (a
/// STABLE function plans its queries when first called, after a move that
/// its statement's snapshot does not see). A top-level READ COMMITTED
/// statement planned just before a move's commit runs under a newer one:
/// the rewrite then reads DEFAULT apart for nothing, which changes no
/// result.
unsafe fn older_snapshot() -> OlderSnapshot {
    let (settled, marks) = routing::settled_here();
    if settled.is_empty() && marks.is_empty() {
        return OlderSnapshot::default();
    }
    let settled_parents = settled.iter().map(|s| s.parent).collect();
    unsafe {
        let snapshot = if pg_sys::ActiveSnapshotSet() {
            pg_sys::GetActiveSnapshot()
        } else if backend::transaction_uses_one_snapshot() {
            pg_sys::GetTransactionSnapshot()
        } else {
            std::ptr::null_mut()
        };
        if snapshot.is_null() {
            return OlderSnapshot {
                settled_parents,
                ..OlderSnapshot::default()
            };
        }
        let next = backend::next_full_transaction_id();
        let xmin = backend::full_transaction_id((*snapshot).xmin, next);
        OlderSnapshot {
            // At or after the xmin, and so within 2^31 of the next ID: the
            // 32-bit ID the snapshot knows it by is unambiguous.
            moves: settled
                .iter()
                .filter(|s| {
                    s.xid >= xmin
                        && pg_sys::XidInMVCCSnapshot(
                            pg_sys::TransactionId::from_inner(s.xid as u32),
                            snapshot,
                        )
                })
                .map(|s| (s.parent, s.default_partition))
                .collect(),
            uncertain_owners: marks
                .iter()
                .filter(|m| xmin < m.below)
                .map(|m| m.owner)
                .collect(),
            settled_parents,
        }
    }
}

/// The owner and the DEFAULT partition of partitioned table `parent`, if
/// it has one.
fn owner_and_default(parent: pg_sys::Oid) -> Option<(u32, pg_sys::Oid)> {
    unsafe {
        let relation = pg_sys::RelationIdGetRelation(parent);
        if relation.is_null() {
            return None;
        }
        let owner = (*(*relation).rd_rel).relowner.to_u32();
        let default = if (*(*relation).rd_rel).relkind == pg_sys::RELKIND_PARTITIONED_TABLE as i8 {
            default_partition_of(relation)
        } else {
            pg_sys::InvalidOid
        };
        pg_sys::RelationClose(relation);
        (default != pg_sys::InvalidOid).then_some((owner, default))
    }
}

/// The DEFAULT of `parent` if the snapshot is uncertain for its owner's
/// tables (`owners`, 0: any).
fn uncertain_default(owners: &[u32], parent: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if owners.is_empty() {
        return None;
    }
    let (owner, default) = owner_and_default(parent)?;
    (owners.contains(&0) || owners.contains(&owner)).then_some(default)
}

/// Parents whose reads a transaction of one snapshot must have rewritten:
/// one the rewrite did not reach (a SQL function's query that the planner
/// inlines later) would prune DEFAULT and miss the moved rows.
#[derive(Clone, Debug, Default)]
pub struct Unrewritten {
    parents: Vec<u32>,
    /// And every partitioned table with a DEFAULT of these owners (0: any).
    owners: Vec<u32>,
}

/// What `apply_overrides` did, for the rest of the planning.
#[derive(Default)]
pub struct Applied {
    /// The plan suits this snapshot only, or may be reused under an older
    /// one: made again when the transaction's xmin changes.
    pub transient: bool,
    pub unrewritten: Unrewritten,
}

/// The alias of the parent in the arm the rewrite reads DEFAULT apart from,
/// with a suffix drawn once per process: a query's author cannot give a
/// read of its own that alias ahead of time and pass the check on reads the
/// rewrite did not reach.
fn arm_alias() -> &'static str {
    static ALIAS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ALIAS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        format!("pg_partition_predict_arm_{:016x}", hasher.finish())
    })
}

/// Before planning `parse`: waits where it must (see `must_wait`), then
/// rewrites every read of a parent under migration, or moved out of DEFAULT
/// after the planning's snapshot.
pub unsafe fn apply_overrides(parse: *mut pg_sys::Query) -> Applied {
    let mut overrides = routing::overrides_here();
    let queries = unsafe { all_queries(parse) };
    if backend::in_recovery() {
        // A standby writes nothing, and the move its overrides come from
        // ends with a WAL record it may never receive (a primary that
        // crashed): its queries are never held. One the primary would hold
        // (a read of system columns, TABLESAMPLE) is planned as it is.
        overrides.retain(|o| unsafe { must_wait(&queries, o) } == Wait::No);
    } else {
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
            backend::accept_invalidations();
            overrides = routing::overrides_here();
        }
    }
    let older = unsafe { older_snapshot() };
    // The parents read (or written) with inheritance, and the DEFAULT each
    // must be read apart from for this snapshot.
    let mut apart: Vec<(u32, u32)> = older.moves.clone();
    let mut reads_settled = false;
    for &query in &queries {
        for rte in unsafe { range_table(query) }.iter_ptr() {
            unsafe {
                if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION || !(*rte).inh {
                    continue;
                }
                let parent = (*rte).relid.to_u32();
                reads_settled |= older.settled_parents.contains(&parent);
                if !apart.iter().any(|(p, _)| *p == parent) {
                    if let Some(default) = uncertain_default(&older.uncertain_owners, (*rte).relid)
                    {
                        apart.push((parent, default.to_u32()));
                    }
                }
            }
        }
    }
    let one_snapshot = backend::transaction_uses_one_snapshot();
    // What the rewrite cannot express (a write, a row lock, system
    // columns, TABLESAMPLE): a transaction of one snapshot gets a
    // serialization failure; in READ COMMITTED the statement is planned as
    // it is, since it runs under a snapshot taken after its planning.
    let mut expressible = Vec::with_capacity(apart.len());
    for (parent, default) in apart {
        let moved = Override {
            parent,
            default_partition: default,
            ..Override::default()
        };
        if unsafe { must_wait(&queries, &moved) } != Wait::ForMigration {
            expressible.push((parent, default));
        } else if one_snapshot {
            PredictError::SnapshotOlderThanMove(display_name(oid(parent))).report();
        }
    }
    let apart = expressible;
    let mut applied = Applied {
        transient: reads_settled || !apart.is_empty(),
        unrewritten: if one_snapshot {
            Unrewritten {
                parents: apart.iter().map(|(p, _)| *p).collect(),
                owners: older.uncertain_owners.clone(),
            }
        } else {
            Unrewritten::default()
        },
    };
    if overrides.is_empty() && apart.is_empty() {
        return applied;
    }
    // Innermost queries first: a policy's subquery is rewritten before the
    // policy is copied onto the arms of an outer rewrite.
    for &query in queries.iter().rev() {
        unsafe {
            let result_relation = (*query).resultRelation as usize;
            let rtable = range_table(query);
            for (index, rte) in rtable.iter_ptr().enumerate() {
                if index + 1 == result_relation
                    || (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION
                    || !(*rte).inh
                {
                    continue;
                }
                let parent = (*rte).relid.to_u32();
                let rti = index as i32 + 1;
                // A snapshot older than the last move reads DEFAULT whole,
                // which holds for it every row a move in flight takes too.
                if let Some((_, default)) = apart.iter().find(|(p, _)| *p == parent) {
                    read_through_union(query, rte, rti, Arm::DefaultApart(oid(*default)));
                    applied.transient = true;
                } else if let Some(o) = overrides.iter().find(|o| o.parent == parent) {
                    read_through_union(query, rte, rti, Arm::Shadow(oid(o.shadow)));
                }
            }
        }
    }
    applied
}

/// Whether the planner, asked about `parent` read with inheritance by
/// range table entry `rte`, is planning a read the rewrite should have
/// reached and did not, under `refused`.
pub unsafe fn unrewritten_read(
    refused: &Unrewritten,
    parent: pg_sys::Oid,
    rte: *mut pg_sys::RangeTblEntry,
) -> bool {
    let concerned = refused.parents.contains(&parent.to_u32())
        || uncertain_default(&refused.owners, parent).is_some();
    if !concerned {
        return false;
    }
    unsafe {
        let alias = (*rte).alias;
        let ours = !alias.is_null()
            && !(*alias).aliasname.is_null()
            && CStr::from_ptr((*alias).aliasname).to_bytes() == arm_alias().as_bytes();
        !ours
    }
}

/// Raises the serialization failure of a read of `parent` the rewrite could
/// not reach, for a snapshot older than a move out of its DEFAULT.
pub fn refuse_unrewritten(parent: pg_sys::Oid) -> ! {
    PredictError::SnapshotOlderThanMove(display_name(parent)).report()
}

/// A relation's name for SQL and messages, rebuilt from its OID.
fn display_name(relation: pg_sys::Oid) -> String {
    qualified_name(relation)
        .map(|n| n.quoted())
        .unwrap_or_else(|| format!("relation {}", relation.to_u32()))
}

fn oid(raw: u32) -> pg_sys::Oid {
    pg_sys::Oid::from(raw)
}

/// Whether every live column of `parent` has a column of the same name,
/// type, typmod and collation in `shadow`.
unsafe fn same_column_types(parent: pg_sys::Relation, shadow: pg_sys::Relation) -> bool {
    unsafe {
        let parent_columns = columns_of(parent);
        let shadow_columns = columns_of(shadow);
        parent_columns.iter().filter(|a| !a.attisdropped).all(|p| {
            let name = CStr::from_ptr(p.attname.data.as_ptr());
            shadow_columns.iter().any(|s| {
                !s.attisdropped
                    && CStr::from_ptr(s.attname.data.as_ptr()) == name
                    && s.atttypid == p.atttypid
                    && s.atttypmod == p.atttypmod
                    && s.attcollation == p.attcollation
            })
        })
    }
}

/// A copy of the security quals of `rte` (entry `rti` of its query) for
/// entry `arm_rti` of an arm of the UNION: the same expressions on that
/// relation's columns (`map`: the parent's column numbers to the arm's, and
/// the arm's row type, into which a whole-row reference is converted; none
/// when the arm reads the parent itself).
unsafe fn policies_for(
    rte: *mut pg_sys::RangeTblEntry,
    rti: i32,
    arm_rti: i32,
    map: Option<(*mut pg_sys::AttrMap, pg_sys::Oid)>,
) -> *mut pg_sys::List {
    unsafe {
        let quals = pg_sys::copyObjectImpl((*rte).securityQuals.cast()).cast::<pg_sys::Node>();
        pg_sys::ChangeVarNodes(quals, rti, arm_rti, 0);
        let Some((map, row_type)) = map else {
            return quals.cast();
        };
        let mut whole_row = false;
        pg_sys::map_variable_attnos(quals, arm_rti, 0, map, row_type, &mut whole_row).cast()
    }
}

/// The attributes of an open relation, dropped ones included, in order.
unsafe fn columns_of(relation: pg_sys::Relation) -> Vec<pg_sys::FormData_pg_attribute> {
    let descriptor = unsafe { PgTupleDesc::from_pg_unchecked((*relation).rd_att) };
    descriptor.iter().copied().collect()
}

/// What the parent's entry is replaced by.
#[derive(Clone, Copy)]
enum Arm {
    /// `parent UNION ALL shadow`: a shadow that rows move into, not yet
    /// attached.
    Shadow(pg_sys::Oid),
    /// `parent without DEFAULT UNION ALL DEFAULT`: DEFAULT read whole, for a
    /// snapshot older than a move out of it.
    DefaultApart(pg_sys::Oid),
}

/// The partition `parent` (open) sends keys no other partition takes.
unsafe fn default_partition_of(parent: pg_sys::Relation) -> pg_sys::Oid {
    unsafe {
        let descriptor = pg_sys::RelationGetPartitionDesc(parent, true);
        if descriptor.is_null() || (*descriptor).boundinfo.is_null() {
            return pg_sys::InvalidOid;
        }
        let index = (*(*descriptor).boundinfo).default_index;
        match usize::try_from(index) {
            Ok(i) if index < (*descriptor).nparts => *(*descriptor).oids.add(i),
            _ => pg_sys::InvalidOid,
        }
    }
}

/// Replaces the parent's range table entry by a UNION of two arms (`arm`).
/// Columns keep the parent's positions (a dropped column is a NULL), so the
/// query's references to the entry stay valid. Permissions stay those the
/// query was checked for on the parent; the other arm's rows are the
/// parent's, read as its owner.
unsafe fn read_through_union(
    query: *mut pg_sys::Query,
    rte: *mut pg_sys::RangeTblEntry,
    rti: i32,
    arm: Arm,
) {
    let parent = unsafe { (*rte).relid };
    // Checked now, as the executor will, and before anything about the
    // other arm is touched or named: the planner estimates with the
    // statistics of DEFAULT and the shadow, which must not be consulted for
    // a query the role may not run.
    unsafe { permissions::check_now(query, rte, parent) };
    let other = match arm {
        Arm::Shadow(shadow) => {
            // Locked before looking: an ATTACH of the shadow cannot then
            // commit until this query is over, so it cannot be read twice.
            lock_for_reading(shadow);
            if table_state(shadow) != TableState::Standalone {
                return;
            }
            shadow
        }
        Arm::DefaultApart(default) => {
            lock_for_reading(default);
            default
        }
    };
    unsafe {
        let relation = pg_sys::RelationIdGetRelation(parent);
        if relation.is_null() {
            return;
        }
        if let Arm::DefaultApart(default) = arm {
            // DEFAULT detached or replaced since: the parent is read as it
            // is now, as after any DETACH.
            if default_partition_of(relation) != default {
                pg_sys::RelationClose(relation);
                return;
            }
        }
        // The migration published a shadow it verified. One that has since
        // changed hands or columns is not read as the parent's rows (through
        // the UNION a column of another type would be taken for the
        // parent's), nor skipped (its rows would be missed): the query fails.
        let other_relation = pg_sys::RelationIdGetRelation(other);
        if other_relation.is_null() {
            pg_sys::RelationClose(relation);
            return;
        }
        // A shadow must still be the parent owner's; DEFAULT is a partition
        // of the parent whoever owns it, and is read as its own owner.
        let other_owner = (*(*other_relation).rd_rel).relowner;
        let unchanged = match arm {
            Arm::Shadow(_) => other_owner == (*(*relation).rd_rel).relowner,
            Arm::DefaultApart(_) => true,
        } && same_column_types(relation, other_relation);
        // Row-level security of the parent, for the other arm's columns.
        let other_columns = (unchanged && !(*rte).securityQuals.is_null())
            .then(|| permissions::columns_by_name(other_relation, relation));
        let other_row_type = (*(*other_relation).rd_rel).reltype;
        pg_sys::RelationClose(other_relation);
        if !unchanged {
            pg_sys::RelationClose(relation);
            match arm {
                // DEFAULT's columns are the parent's: not reached.
                Arm::DefaultApart(_) => {
                    PredictError::SnapshotOlderThanMove(display_name(parent)).report()
                }
                // An override replayed from the primary may be one whose
                // move ended there without a record this standby got: the
                // table is read as it is rather than made unreadable.
                Arm::Shadow(_) if backend::in_recovery() => return,
                Arm::Shadow(shadow) => PredictError::ShadowChanged(display_name(shadow)).report(),
            }
        }
        let owner = (*(*relation).rd_rel).relowner;
        let columns: Vec<String> = columns_of(relation)
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
        let sql = match arm {
            Arm::Shadow(shadow) => format!(
                "SELECT {columns} FROM {} UNION ALL SELECT {columns} FROM {}",
                display_name(parent),
                display_name(shadow)
            ),
            Arm::DefaultApart(default) => format!(
                "SELECT {columns} FROM {} AS {} WHERE tableoid OPERATOR(pg_catalog.<>) '{}'::pg_catalog.oid
                 UNION ALL SELECT {columns} FROM ONLY {}",
                display_name(parent),
                arm_alias(),
                default.to_u32(),
                display_name(default)
            ),
        };
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
        permissions::carry_over(query, rte, union, parent, other, owner, other_owner);
        // The parent's policies filter each arm of the UNION, on the arm's
        // own relation: the planner keeps such quals below the query's own
        // (no leaky function sees a hidden row) and, seeing them, does not
        // show the statistics of those relations to leaky functions either.
        if !(*rte).securityQuals.is_null() {
            for union_arm in all_queries(union) {
                // A policy with a subquery brings its SubLinks along.
                (*union_arm).hasSubLinks |= (*query).hasSubLinks;
                (*union_arm).hasRowSecurity = true;
                for (index, inner) in range_table(union_arm).iter_ptr().enumerate() {
                    if (*inner).rtekind != pg_sys::RTEKind::RTE_RELATION {
                        continue;
                    }
                    let map = if (*inner).relid == parent {
                        None
                    } else if (*inner).relid == other {
                        other_columns.map(|columns| (columns, other_row_type))
                    } else {
                        continue;
                    };
                    (*inner).securityQuals = policies_for(rte, rti, index as i32 + 1, map);
                }
            }
            (*rte).securityQuals = std::ptr::null_mut();
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
    }
}

/// Where the permissions the executor checks live: on the range table entry
/// up to PostgreSQL 15, in the query's list of `RTEPermissionInfo` from 16 on.
///
/// The rewrite keeps what the query was checked for: the parent inside the
/// UNION carries the original entry's permissions (user, privileges, columns
/// read), the outer entry none, and the shadow is read as its owner, who is
/// the parent's owner (checked before): its rows are the parent's rows.
#[cfg(feature = "pg15")]
mod permissions {
    use super::{all_queries, range_table};
    use pgrx::pg_sys;
    use pgrx::PgList;

    /// Raises PostgreSQL's own permission error unless the role may read
    /// what the query reads through `rte`.
    pub unsafe fn check_now(
        _query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
        _parent: pg_sys::Oid,
    ) {
        let mut entries = PgList::<pg_sys::RangeTblEntry>::new();
        entries.push(rte);
        unsafe { pg_sys::ExecCheckRTPerms(entries.into_pg(), true) };
    }

    /// For each column of `to`, the number of the same-named column of `from`.
    pub unsafe fn columns_by_name(
        from: pg_sys::Relation,
        to: pg_sys::Relation,
    ) -> *mut pg_sys::AttrMap {
        unsafe { pg_sys::build_attrmap_by_name((*from).rd_att, (*to).rd_att) }
    }

    pub unsafe fn selected_columns(
        _query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
    ) -> Option<*mut pg_sys::Bitmapset> {
        Some(unsafe { (*rte).selectedCols })
    }

    pub unsafe fn carry_over(
        _query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
        union: *mut pg_sys::Query,
        parent: pg_sys::Oid,
        shadow: pg_sys::Oid,
        _owner: pg_sys::Oid,
        shadow_owner: pg_sys::Oid,
    ) {
        unsafe {
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
                        (*inner).checkAsUser = shadow_owner;
                    }
                }
            }
            (*rte).requiredPerms = 0;
            (*rte).checkAsUser = pg_sys::InvalidOid;
            (*rte).selectedCols = std::ptr::null_mut();
            (*rte).insertedCols = std::ptr::null_mut();
            (*rte).updatedCols = std::ptr::null_mut();
            (*rte).extraUpdatedCols = std::ptr::null_mut();
        }
    }
}

#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
mod permissions {
    use super::{all_queries, range_table};
    use pgrx::pg_sys;

    /// Raises PostgreSQL's own permission error unless the role may read
    /// what the query reads through `rte`.
    pub unsafe fn check_now(
        query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
        parent: pg_sys::Oid,
    ) {
        unsafe {
            let Some(info) = info_of(query, rte) else {
                return;
            };
            if (*info).requiredPerms != 0 && !pg_sys::ExecCheckOneRelPerms(info) {
                pg_sys::aclcheck_error(
                    pg_sys::AclResult::ACLCHECK_NO_PRIV,
                    pg_sys::get_relkind_objtype(pg_sys::get_rel_relkind(parent)),
                    pg_sys::get_rel_name(parent),
                );
            }
        }
    }

    /// For each column of `to`, the number of the same-named column of `from`.
    pub unsafe fn columns_by_name(
        from: pg_sys::Relation,
        to: pg_sys::Relation,
    ) -> *mut pg_sys::AttrMap {
        unsafe { pg_sys::build_attrmap_by_name((*from).rd_att, (*to).rd_att, false) }
    }

    unsafe fn info_of(
        query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
    ) -> Option<*mut pg_sys::RTEPermissionInfo> {
        unsafe {
            if (*rte).perminfoindex == 0 {
                return None;
            }
            Some(pg_sys::getRTEPermissionInfo((*query).rteperminfos, rte))
        }
    }

    pub unsafe fn selected_columns(
        query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
    ) -> Option<*mut pg_sys::Bitmapset> {
        unsafe { info_of(query, rte).map(|info| (*info).selectedCols) }
    }

    pub unsafe fn carry_over(
        query: *mut pg_sys::Query,
        rte: *mut pg_sys::RangeTblEntry,
        union: *mut pg_sys::Query,
        parent: pg_sys::Oid,
        shadow: pg_sys::Oid,
        owner: pg_sys::Oid,
        shadow_owner: pg_sys::Oid,
    ) {
        unsafe {
            // Nothing to check on the parent (no entry, or no privilege
            // asked): it is read as its owner, like the shadow.
            let checked = info_of(query, rte).filter(|info| (**info).requiredPerms != 0);
            for inner_query in all_queries(union) {
                for inner in range_table(inner_query).iter_ptr() {
                    if (*inner).rtekind != pg_sys::RTEKind::RTE_RELATION {
                        continue;
                    }
                    let Some(info) = info_of(inner_query, inner) else {
                        continue;
                    };
                    match checked {
                        Some(original) if (*inner).relid == parent => {
                            (*info).requiredPerms = (*original).requiredPerms;
                            (*info).checkAsUser = (*original).checkAsUser;
                            (*info).selectedCols = pg_sys::bms_copy((*original).selectedCols);
                        }
                        _ if (*inner).relid == parent => {
                            (*info).checkAsUser = owner;
                        }
                        _ if (*inner).relid == shadow => {
                            (*info).checkAsUser = shadow_owner;
                        }
                        _ => {}
                    }
                }
            }
            // The outer entry's own permission info is left unreferenced
            // (the planner copies only referenced ones into the plan): the
            // parent's copy inside the UNION is what the executor checks.
            (*rte).perminfoindex = 0;
        }
    }
}

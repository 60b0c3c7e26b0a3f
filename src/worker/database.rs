//! A database's worker: one cycle per managed table every `naptime`, rows
//! found in DEFAULT moved out after each table's cycle, and requests from
//! bulk loads served in between.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use partition_core::fairness::{self, Visit};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

use crate::act::{activate, migrate, retention};
use crate::cycle;
use crate::gucs;
use crate::pg::session::with_pinned_settings;
use crate::pg::{backend, locks, relation};
use crate::shmem::requests;
use crate::state::shadows;
use crate::state::workers::{self, WorkerReport};

/// What this worker process has done, as `worker_status` shows it.
struct WorkerState {
    started_at: Option<String>,
    cycles: i64,
    errors: i64,
    /// The last error and the table it concerns (the view shows it only to
    /// roles that may read that table).
    last_error: Option<(pg_sys::Oid, String)>,
    /// The SQL objects were found of another version (logged once).
    told_version_mismatch: bool,
    /// Tables that ran out of their time limit, left alone for a while.
    backoff: HashMap<pg_sys::Oid, Backoff>,
    /// Roles a table of which ended a worker: all their tables left alone
    /// until then.
    left_alone: HashMap<u32, Instant>,
    /// When each table was last served (see `partition_core::fairness`).
    last_served: HashMap<pg_sys::Oid, Instant>,
    /// The worker's start: `last_served` as a number for the ordering.
    epoch: Instant,
    /// Time spent on each role's tables (by owner OID) since the last cycle
    /// began, bulk loads' cycles included (see `role_time_share`).
    spent: HashMap<u32, Duration>,
    /// Whether more than one role owned managed tables at the last cycle.
    several_roles: bool,
    /// Whether the first cycle looked for shadows to recognise again after
    /// pg_upgrade.
    relinked: bool,
}

/// Strikes past which the backoff grows no longer (2^6 = 64 naptimes).
const MAX_STRIKES: u32 = 6;

/// A table that ran out of `table_time_limit` `strikes` cycles in a row:
/// the worker leaves it alone until `until` (2, 4, … 64 naptimes), so that
/// it cannot take its whole time limit from the other tables every cycle.
struct Backoff {
    strikes: u32,
    until: Instant,
}

impl WorkerState {
    /// Whether the tables of `owner` have had their `role_time_share` since
    /// the last cycle began, while other roles own managed tables too.
    fn past_share(&self, owner: u32) -> bool {
        self.several_roles
            && gucs::role_time_share()
                .is_some_and(|share| self.spent.get(&owner).is_some_and(|s| *s >= share))
    }

    fn owner_left_alone(&self, owner: u32) -> bool {
        self.left_alone
            .get(&owner)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn backing_off(&self, parent: pg_sys::Oid) -> bool {
        self.backoff
            .get(&parent)
            .is_some_and(|b| Instant::now() < b.until)
    }

    /// After a table's work: a strike if it ran out of time, else a clean
    /// slate. (Not for taking long within its limit: another role's long
    /// transaction on the table can make it do that.)
    fn note_time(&mut self, parent: pg_sys::Oid, deadline: Option<Instant>) {
        let Some(deadline) = deadline else { return };
        let now = Instant::now();
        if now < deadline {
            self.backoff.remove(&parent);
            return;
        }
        let strikes = self.backoff.get(&parent).map_or(0, |b| b.strikes) + 1;
        let naptimes = 1u32 << strikes.min(MAX_STRIKES);
        self.backoff.insert(
            parent,
            Backoff {
                strikes,
                until: now + gucs::naptime() * naptimes,
            },
        );
        pgrx::log!(
            "pg_partition_predict: table {} ran out of pg_partition_predict.table_time_limit ({strikes} cycle(s) in a row): left alone for {naptimes} naptimes",
            parent.to_u32()
        );
    }
}

/// A transaction of the worker's own (see `backend::in_own_transaction`)
/// with the catalog settings pinned (the worker's session has the
/// search_path of postgresql.conf and of ALTER DATABASE/ROLE … SET, and
/// nothing it runs may resolve through it), which leaves no session-level
/// advisory lock behind (`locks::release_session_advisory_locks`).
fn in_own_transaction<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    backend::in_own_transaction(what, || {
        locks::release_session_advisory_locks();
        let result = with_pinned_settings(f);
        locks::release_session_advisory_locks();
        result
    })
}

/// When the worker's time for a table it starts now runs out.
fn deadline() -> Option<Instant> {
    gucs::table_time_limit().map(|limit| Instant::now() + limit)
}

/// A database worker's main loop (entered from `pg_partition_predict_worker_main`).
pub fn run() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SIGTERM (a fast shutdown, pg_terminate_backend) ends the worker at its
    // next interrupt check, in a table's statement too: the code of a
    // table's owner (a trigger that sleeps) must not hold a shutdown up.
    backend::terminate_on_sigterm();
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    let left_alone = requests::register_worker(gucs::naptime() * (1 << MAX_STRIKES));
    let mut state = WorkerState {
        started_at: None,
        cycles: 0,
        errors: 0,
        last_error: None,
        told_version_mismatch: false,
        backoff: HashMap::new(),
        left_alone: HashMap::new(),
        last_served: HashMap::new(),
        epoch: Instant::now(),
        spent: HashMap::new(),
        several_roles: false,
        relinked: false,
    };
    // Roles whose table's code outlived its deadline and ended an earlier
    // worker (catching every cancel): all their tables left alone the
    // longest (a role can make new tables at will, not new roles).
    for (owner, left) in left_alone {
        state
            .left_alone
            .insert(owner.to_u32(), Instant::now() + left);
        pgrx::log!(
            "pg_partition_predict: a table of role {} ended a worker past its pg_partition_predict.table_time_limit: its tables are left alone for {} s more",
            owner.to_u32(),
            left.as_secs()
        );
    }
    let mut next_cycle = Instant::now();
    loop {
        if BackgroundWorker::sighup_received() {
            backend::reload_configuration();
            // A reload is acted on at once: a new naptime, a paused worker
            // resumed, an extension created since the last cycle.
            next_cycle = Instant::now();
        }
        serve_requests(&mut state);
        if Instant::now() >= next_cycle {
            if gucs::enabled() {
                run_cycles(&mut state);
            } else {
                in_own_transaction("recording the paused state", || {
                    report(&mut state, "paused", None)
                });
            }
            next_cycle = Instant::now() + gucs::naptime();
        }
        backend::set_activity("waiting for the next cycle");
        let until_cycle = next_cycle.saturating_duration_since(Instant::now());
        if !BackgroundWorker::wait_latch(Some(until_cycle.max(Duration::from_millis(1)))) {
            break;
        }
    }
}

/// Requests posted by bulk loads (see `bulk`): attach a table's shadows
/// before a load, run its cycle right after one. The load waiting for the
/// shadows is released as soon as they are attached.
fn serve_requests(state: &mut WorkerState) {
    for request in requests::take_mine() {
        if !gucs::enabled() {
            requests::mark_served(request.parent, request.ticket);
            continue;
        }
        let owner = in_own_transaction("looking up a table's owner", || {
            relation::owner(request.parent).map_or(0, |o| o.to_u32())
        })
        .unwrap_or(0);
        // Attaching for a load is the table's work like its cycle: within
        // its time limit, counted against its owner's share, and not while
        // the table backs off (the load then finds DEFAULT, as without the
        // extension).
        let left_alone = state.owner_left_alone(owner);
        requests::worker_busy_for(owner);
        if request.attach
            && !left_alone
            && !state.backing_off(request.parent)
            && !state.past_share(owner)
        {
            backend::set_activity("attaching shadows before a bulk load");
            let started = Instant::now();
            let deadline = deadline();
            on_table(request.parent, deadline, || {
                in_own_transaction("attaching shadows before a bulk load", || {
                    or_log(activate::activate_for_bulk_load(request.parent))
                })
            });
            state.note_time(request.parent, deadline);
            *state.spent.entry(owner).or_default() += started.elapsed();
        }
        requests::mark_served(request.parent, request.ticket);
        // A load may ask for a cycle, not for more of the worker's time
        // than the table's backoff, or its owner's share, leaves it.
        if request.cycle && !left_alone && !state.backing_off(request.parent) {
            if state.past_share(owner) {
                pgrx::log!(
                    "pg_partition_predict: the cycle a bulk load of table {} asked for waits for the next cycle: its owner had its share of this one (pg_partition_predict.role_time_share)",
                    request.parent.to_u32()
                );
                continue;
            }
            backend::set_activity("cycle after a bulk load");
            let started = Instant::now();
            let deadline = deadline();
            let outcome = on_table(request.parent, deadline, || {
                in_own_transaction("a table's cycle after a bulk load", || {
                    cycle::run_by_worker(request.parent)
                })
            });
            move_rows_out_of_default(
                state,
                request.parent,
                migrate::Caller::WorkerAfterLoad,
                deadline,
            );
            // apply_retention() leaves its archive moves to this.
            expire_old_partitions(state, request.parent, deadline);
            record_outcome(state, request.parent, outcome);
            state.note_time(request.parent, deadline);
            *state.spent.entry(owner).or_default() += started.elapsed();
        }
    }
}

fn record_outcome(state: &mut WorkerState, parent: pg_sys::Oid, outcome: Option<cycle::Outcome>) {
    if let Some(cycle::Outcome {
        error: Some(error),
        skipped: false,
        ..
    }) = outcome
    {
        state.errors += 1;
        state.last_error = Some((parent, error));
    }
}

/// pg_upgrade recreates each table from a dump, which does not carry the
/// automatic dependency that marks a shadow as one this extension made for
/// its parent (`state::shadows::is_shadow_of`): without it the state naming
/// the shadow is refused. When the server has run in binary-upgrade mode
/// (`backend::note_binary_upgrade`), the first cycle of each database
/// records the dependency again for every shadow its state names whose OID
/// (pg_upgrade keeps OIDs) still has the recorded name, owner and columns,
/// once per database (the mark lists the databases done).
fn relink_shadows_after_pg_upgrade() {
    if !backend::binary_upgrade_unhandled_here() {
        return;
    }
    match shadows::relink_after_pg_upgrade() {
        Ok((marked, 0)) => {
            if marked > 0 {
                pgrx::log!(
                    "pg_partition_predict: {marked} shadow(s) recognised again after pg_upgrade"
                );
            }
            backend::note_upgrade_handled();
        }
        Ok((marked, busy)) => pgrx::log!(
            "pg_partition_predict: {marked} shadow(s) recognised again after pg_upgrade, {busy} locked by others (tried again at the next start of the worker)"
        ),
        Err(e) => pgrx::log!("pg_partition_predict: shadows after pg_upgrade: {e}"),
    }
}

fn run_cycles(state: &mut WorkerState) {
    backend::set_activity("cycle");
    let tables = in_own_transaction("listing managed tables", || {
        if let Some(sql) = backend::sql_version_mismatch() {
            if !state.told_version_mismatch {
                pgrx::warning!(
                    "pg_partition_predict: the library is version {} but the extension's SQL objects in this database are version {sql}: cycles wait for ALTER EXTENSION pg_partition_predict UPDATE",
                    env!("CARGO_PKG_VERSION")
                );
                state.told_version_mismatch = true;
            }
            return None;
        }
        if !backend::extension_installed() {
            return None;
        }
        report(state, "cycling", Some("start"));
        if !state.relinked {
            state.relinked = true;
            relink_shadows_after_pg_upgrade();
        }
        migrate::withdraw_orphaned_overrides();
        let tables = or_log(cycle::tables(None)).unwrap_or_default();
        Some(
            tables
                .into_iter()
                .map(|table| Visit {
                    table: table.to_u32(),
                    owner: relation::owner(table).map_or(0, |o| o.to_u32()),
                    last_served: state
                        .last_served
                        .get(&table)
                        .map(|at| at.duration_since(state.epoch).as_millis() as u64),
                })
                .collect::<Vec<_>>(),
        )
    });
    let Some(Some(tables)) = tables else { return };
    state
        .last_served
        .retain(|table, _| tables.iter().any(|v| v.table == table.to_u32()));
    // Roles take turns; while other roles' tables wait too, one role's
    // tables get at most `role_time_share` of the cycle (and of the time
    // until the next, for the cycles its bulk loads ask for).
    state.several_roles = tables.iter().any(|v| v.owner != tables[0].owner);
    state.spent.clear();
    let mut left_for_next_cycle = 0;
    for visit in fairness::interleave(&tables) {
        let parent = pg_sys::Oid::from(visit.table);
        if backend::shutdown_requested() {
            return;
        }
        if state.backing_off(parent) || state.owner_left_alone(visit.owner) {
            continue;
        }
        if state.past_share(visit.owner) {
            left_for_next_cycle += 1;
            continue;
        }
        let started = Instant::now();
        let deadline = deadline();
        requests::worker_busy_for(visit.owner);
        let outcome = on_table(parent, deadline, || {
            in_own_transaction("a table's cycle", || cycle::run_by_worker(parent))
        });
        move_rows_out_of_default(state, parent, migrate::Caller::Worker, deadline);
        expire_old_partitions(state, parent, deadline);
        requests::worker_busy_for(0);
        record_outcome(state, parent, outcome);
        state.note_time(parent, deadline);
        *state.spent.entry(visit.owner).or_default() += started.elapsed();
        state.last_served.insert(parent, Instant::now());
        // A bulk load waiting for shadows should not wait for every table.
        serve_requests(state);
    }
    if left_for_next_cycle > 0 {
        pgrx::log!(
            "pg_partition_predict: {left_for_next_cycle} table(s) wait for the next cycle: their owners had their share of this one (pg_partition_predict.role_time_share)"
        );
    }
    state.cycles += 1;
    in_own_transaction("recording the cycle", || {
        report(state, "sleeping", Some("end"))
    });
}

/// Rows found in DEFAULT are moved where they belong at once, each step of
/// the migration in a transaction of its own.
fn move_rows_out_of_default(
    state: &mut WorkerState,
    parent: pg_sys::Oid,
    caller: migrate::Caller,
    deadline: Option<Instant>,
) {
    backend::set_activity("moving rows out of DEFAULT");
    loop {
        if backend::shutdown_requested() || out_of_time(deadline) {
            return;
        }
        let next = on_table(parent, deadline, || {
            in_own_transaction("moving rows out of DEFAULT", || {
                migrate::step_isolated(parent, caller)
            })
        });
        match next {
            Some(migrate::Next::Again) => {}
            Some(migrate::Next::Failed(error)) => {
                state.errors += 1;
                state.last_error = Some((parent, error));
                return;
            }
            _ => return,
        }
    }
}

/// Partitions past the table's retention are dropped, detached or
/// archived, each in a transaction of its own (the parent's lock is held
/// only for that one change); then archived tables move to their
/// tablespace, each in a transaction of its own too.
fn expire_old_partitions(state: &mut WorkerState, parent: pg_sys::Oid, deadline: Option<Instant>) {
    if out_of_time(deadline)
        || on_table(parent, deadline, || {
            in_own_transaction("looking at a table's retention", || {
                retention::wanted(parent)
            })
        }) != Some(true)
    {
        return;
    }
    backend::set_activity("expiring old partitions");
    let mut passed = Vec::new();
    for _ in 0..retention::MAX_EXPIRED_PER_CYCLE {
        if backend::shutdown_requested() {
            return;
        }
        if out_of_time(deadline) {
            return;
        }
        match on_table(parent, deadline, || {
            in_own_transaction("expiring an old partition", || {
                retention::step_isolated(parent, &mut passed)
            })
        }) {
            Some(retention::Next::Again) => {}
            Some(retention::Next::Failed(error)) => {
                state.errors += 1;
                state.last_error = Some((parent, error));
                break;
            }
            _ => break,
        }
    }
    let mut tried = Vec::new();
    while tried.len() < retention::MAX_MOVES_PER_CYCLE
        && !backend::shutdown_requested()
        && !out_of_time(deadline)
    {
        let next = on_table(parent, deadline, || {
            in_own_transaction("moving an archived partition", || {
                retention::move_next_isolated(parent, &tried)
            })
        });
        match next {
            Some(Some(oid)) => tried.push(oid),
            _ => break,
        }
    }
}

/// Works on `parent` until `deadline` (see `backend::with_deadline`),
/// recorded where this worker's successor finds it should the table's code
/// outlive the deadline and end the worker.
fn on_table<R>(parent: pg_sys::Oid, deadline: Option<Instant>, f: impl FnOnce() -> R) -> R {
    requests::worker_busy_with(Some(parent));
    let result = backend::with_deadline(deadline, f);
    requests::worker_busy_with(None);
    result
}

fn out_of_time(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Writes this worker's row of `worker_status` (only where the extension is installed).
fn report(state: &mut WorkerState, activity: &str, cycle_mark: Option<&str>) {
    if !backend::extension_installed() {
        return;
    }
    let result = with_pinned_settings(|| {
        if state.started_at.is_none() {
            state.started_at = Spi::get_one::<String>(
                "SELECT a.backend_start::text FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid()",
            )?;
        }
        workers::report(WorkerReport {
            activity,
            started_at: state.started_at.clone(),
            cycle_mark,
            cycles: state.cycles,
            errors: state.errors,
            last_error: state.last_error.clone(),
        })
    });
    if let Err(e) = result {
        pgrx::log!("pg_partition_predict: could not update worker_status: {e}");
    }
}

fn or_log<T>(result: crate::error::Result<T>) -> Option<T> {
    result
        .map_err(|e| pgrx::log!("pg_partition_predict: {e}"))
        .ok()
}

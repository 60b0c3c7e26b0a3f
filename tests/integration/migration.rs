//! Moving rows out of DEFAULT online: exact reads, exact updates, crashes,
//! the planner hook next to another library's.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use postgres::Client;

use crate::cluster::{scalar_i64, wait_for, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

/// `ev` partitioned by `k`, one partition [0, 1,000,000) and DEFAULT, and
/// `ledger`, a plain table that receives every row `ev` does, in the same
/// statement: what a query on `ev` must return under any snapshot.
fn table_with_ledger(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE ev (id bigint NOT NULL, k bigint NOT NULL, v int NOT NULL DEFAULT 0) PARTITION BY RANGE (k);
             CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (1000000);
             CREATE TABLE ledger (id bigint NOT NULL, k bigint NOT NULL);
             SELECT partition_predict.manage('ev', target_rows => 100000);",
        )
        .unwrap();
}

/// `rows` rows with ids from `first_id` and keys from 1,000,000 up: all in DEFAULT.
fn fill_default(client: &mut Client, first_id: i64, rows: i64) {
    client
        .batch_execute(&format!(
            "WITH r AS (INSERT INTO ev (id, k) SELECT {first_id} + g, 1000000 + g FROM generate_series(0, {rows} - 1) g
                        RETURNING id, k)
             INSERT INTO ledger SELECT id, k FROM r"
        ))
        .unwrap();
}

fn default_rows(client: &mut Client) -> i64 {
    scalar_i64(client, "SELECT count(*) FROM ONLY ev_default")
}

/// Each query's (count, sum of ids) on `ev` against the ledger's, from
/// the same statement and so the same snapshot; plus whether an override
/// was active, so the test knows it exercised one.
const CHECKS: [&str; 2] = [
    "SELECT (SELECT count(*) FROM ev), (SELECT coalesce(sum(id), 0)::bigint FROM ev),
            (SELECT count(*) FROM ledger), (SELECT coalesce(sum(id), 0)::bigint FROM ledger),
            (SELECT count(*) FROM partition_predict.routing_overrides)",
    "SELECT (SELECT count(*) FROM ev WHERE k >= 1050000 AND k < 1150000),
            (SELECT coalesce(sum(id), 0)::bigint FROM ev WHERE k >= 1050000 AND k < 1150000),
            (SELECT count(*) FROM ledger WHERE k >= 1050000 AND k < 1150000),
            (SELECT coalesce(sum(id), 0)::bigint FROM ledger WHERE k >= 1050000 AND k < 1150000),
            (SELECT count(*) FROM partition_predict.routing_overrides)",
];

#[derive(Default)]
struct ReaderTally {
    queries: AtomicI64,
    during_override: AtomicI64,
    mismatches: Mutex<Vec<String>>,
}

fn spawn_reader(
    cluster: &Cluster,
    index: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<ReaderTally>,
) -> thread::JoinHandle<()> {
    let mut client = cluster.connect("postgres");
    thread::spawn(move || {
        // One reader runs cached generic plans: they must be re-planned
        // when an override begins and ends.
        if index == 3 {
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .unwrap();
        }
        let statements: Vec<_> = CHECKS
            .iter()
            .map(|sql| client.prepare(sql).unwrap())
            .collect();
        let mut i = index;
        while !stop.load(Ordering::Relaxed) {
            let row = client.query_one(&statements[i % 2], &[]).unwrap();
            let (count, sum, expected_count, expected_sum, overrides): (i64, i64, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            tally.queries.fetch_add(1, Ordering::Relaxed);
            if overrides > 0 {
                tally.during_override.fetch_add(1, Ordering::Relaxed);
            }
            if (count, sum) != (expected_count, expected_sum) {
                tally.mismatches.lock().unwrap().push(format!(
                    "query {} saw ({count}, {sum}), ledger ({expected_count}, {expected_sum})",
                    i % 2
                ));
            }
            i += 1;
        }
    })
}

#[test]
fn every_query_is_exact_while_rows_move_out_of_default() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 200_000);
    assert_eq!(default_rows(&mut client), 200_000);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(ReaderTally::default());
    let readers: Vec<_> = (0..4)
        .map(|i| spawn_reader(&cluster, i, stop.clone(), tally.clone()))
        .collect();
    // A fifth session keeps inserting rows with known ids, half of them
    // into the range being moved (they land in DEFAULT, then move too).
    let inserted = Arc::new(AtomicI64::new(0));
    let inserter = {
        let mut client = cluster.connect("postgres");
        let (stop, inserted) = (stop.clone(), inserted.clone());
        thread::spawn(move || {
            let insert = client
                .prepare(
                    "WITH r AS (INSERT INTO ev (id, k) VALUES ($1, $2) RETURNING id, k)
                     INSERT INTO ledger SELECT id, k FROM r",
                )
                .unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = 10_000_000 + n;
                let k = if n % 2 == 0 {
                    1_000_000 + (n * 7_919) % 200_000
                } else {
                    n % 1_000_000
                };
                client.execute(&insert, &[&id, &k]).unwrap();
                inserted.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        })
    };

    thread::sleep(Duration::from_millis(300));
    migrate_under_load(&mut client, 2000);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    inserter.join().unwrap();

    let mismatches = tally.mismatches.lock().unwrap();
    let queries = tally.queries.load(Ordering::Relaxed);
    let during = tally.during_override.load(Ordering::Relaxed);
    assert!(
        mismatches.is_empty(),
        "{} of {queries} queries were wrong, first: {:?}",
        mismatches.len(),
        mismatches.first()
    );
    assert!(
        during >= 20,
        "only {during} of {queries} queries ran during a migration"
    );
    assert!(inserted.load(Ordering::Relaxed) > 0);
    // Rows inserted into the moving range after its last batch went to
    // DEFAULT; one more call moves them too.
    migrate_under_load(&mut client, 2000);
    assert_eq!(default_rows(&mut client), 0);
    let active: Vec<(String, String)> = client
        .query(
            "SELECT range_start, range_end FROM partition_predict.partitions
              WHERE parent = 'ev'::regclass AND state = 'active' AND range_start::bigint >= 1000000
              ORDER BY range_start::bigint",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        active,
        vec![
            ("1000000".to_string(), "1100000".to_string()),
            ("1100000".to_string(), "1200000".to_string())
        ]
    );
    let row = client.query_one(CHECKS[0], &[]).unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (row.get(2), row.get(3))
    );
    assert_eq!(
        row.get::<_, i64>(4),
        0,
        "an override outlived its migration"
    );
    // One event per migration, when it ends; none stays open.
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT details->>'migration'),
                    count(*) FILTER (WHERE details->>'outcome' = 'finished')
               FROM partition_predict.alert_history WHERE kind = 'migration'",
            &[],
        )
        .unwrap();
    let (events, migrations, finished): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(events, migrations, "a migration reported more than once");
    assert!(finished >= 2, "{finished} finished migrations reported");
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE kind = 'migration'"
        ),
        0
    );
}

#[test]
fn updates_of_moving_rows_are_applied_exactly_once() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 50_000);

    let stop = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicI64::new(0));
    let missed = Arc::new(Mutex::new(Vec::<i64>::new()));
    let retried = Arc::new(AtomicI64::new(0));
    let updaters: Vec<_> = (0..4i64)
        .map(|u| {
            let mut client = cluster.connect("postgres");
            let (stop, applied, missed, retried) = (
                stop.clone(),
                applied.clone(),
                missed.clone(),
                retried.clone(),
            );
            thread::spawn(move || {
                let update = client
                    .prepare("UPDATE ev SET v = v + 1 WHERE id = $1")
                    .unwrap();
                let mut n = u;
                while !stop.load(Ordering::Relaxed) {
                    let id = 1 + (n * 9_973) % 50_000;
                    match client.execute(&update, &[&id]) {
                        Ok(1) => {
                            applied.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => missed.lock().unwrap().push(id),
                        Err(e) if e.code().map(|c| c.code()) == Some("40001") => {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("UPDATE of id {id}: {e}"),
                    }
                    n += 4;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    migrate_under_load(&mut client, 1000);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for updater in updaters {
        updater.join().unwrap();
    }
    let missed = missed.lock().unwrap();
    assert!(
        missed.is_empty(),
        "UPDATEs found no row for ids {:?}",
        &missed[..missed.len().min(10)]
    );
    let applied = applied.load(Ordering::Relaxed);
    assert!(applied > 100, "only {applied} updates ran");
    assert_eq!(
        scalar_i64(&mut client, "SELECT sum(v)::bigint FROM ev"),
        applied
    );
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), 50_000);
    assert_eq!(default_rows(&mut client), 0);
}

/// `migrate_default()` while other sessions hammer the table. Each reader's
/// statement takes about 100 ms on two cores (more under a loaded CI), back
/// to back, and the ATTACH's lock waits for those running: lock_timeout is
/// set above that, as a DBA would for such a load. If the move still cannot
/// have its locks it is put off (nothing moved, 55P03) and called again, as
/// the hint says. Readers stay exact throughout.
fn migrate_under_load(client: &mut Client, batch_rows: i64) {
    client
        .batch_execute("SET pg_partition_predict.lock_timeout = '1s'")
        .unwrap();
    for _ in 0..5 {
        match client.batch_execute(&format!(
            "CALL partition_predict.migrate_default('ev', {batch_rows})"
        )) {
            Ok(()) => return,
            Err(e) if e.code().map(|c| c.code()) == Some("55P03") => continue,
            Err(e) => panic!("migrate_default: {e:?}"),
        }
    }
    panic!("migrate_default gave way five times in a row");
}

/// Starts a migration by hand: its override is up (queries read the
/// shadow too, writers wait) and its move is the next step.
fn migration_under_way(client: &mut Client, batch_rows: i64) {
    let next: String = client
        .query_one(
            "SELECT partition_predict.migration_step('ev', $1)",
            &[&batch_rows],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, "again");
    assert_eq!(
        scalar_i64(
            client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        1
    );
}

/// Holds DEFAULT (an open transaction that read it) so that the move of
/// the session with `pid` copies its rows and then waits for its ATTACH;
/// returns once it does (the copies are made, not committed).
fn move_copied_and_waiting(client: &mut Client, pid: i32) {
    wait_for(
        "the move waiting for its ATTACH",
        Duration::from_secs(30),
        || {
            (scalar_i64(
            client,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE pid = {pid} AND NOT granted AND mode = 'AccessExclusiveLock'"
            ),
        ) > 0)
            .then_some(())
        },
    );
}

/// A session that read DEFAULT in a transaction it keeps open.
fn hold_default(cluster: &Cluster) -> Client {
    let mut holder = cluster.connect("postgres");
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM ev_default;")
        .unwrap();
    holder
}

fn totals(client: &mut Client) -> (i64, i64, i64, i64) {
    let row = client.query_one(CHECKS[0], &[]).unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[test]
fn a_crash_mid_migration_loses_nothing_and_the_next_cycle_finishes_it() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 60_000);

    // kill -9 of the backend in the middle of migrate_default(): its move
    // has copied the rows and waits for the ATTACH's locks.
    let _holder = hold_default(&cluster);
    let migrator = {
        let mut client = cluster.connect("postgres");
        thread::spawn(move || {
            client.batch_execute("CALL partition_predict.migrate_default('ev', 200)")
        })
    };
    let pid = wait_for("migrate_default running", Duration::from_secs(30), || {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL partition_predict.migrate_default%'",
                &[],
            )
            .ok()?
            .map(|r| r.get::<_, i32>(0))
    });
    move_copied_and_waiting(&mut client, pid);
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        migrator.join().unwrap().is_err(),
        "the killed CALL did not fail"
    );
    let mut client = wait_for(
        "the server back from crash recovery",
        Duration::from_secs(60),
        // The postmaster ends every backend and reinitialises shared
        // memory: connect once it says it is ready again.
        || {
            let ready = cluster
                .log()
                .matches("database system is ready to accept connections")
                .count();
            (ready >= 2)
                .then(|| cluster.try_connect("postgres"))
                .flatten()
        },
    );
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!(
        (count, sum),
        (expected_count, expected_sum),
        "after kill -9"
    );
    // The move's transaction rolled back with the crash: its override went
    // with it, and writers do not wait for a move that is not coming.
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0,
        "an override outlived the crash of its move"
    );
    client
        .batch_execute("SET statement_timeout = '5s'; INSERT INTO ev (id, k) VALUES (-1, 5); DELETE FROM ev WHERE id = -1; RESET statement_timeout;")
        .unwrap();

    // An immediate shutdown of the whole cluster, mid-move again.
    let _holder = hold_default(&cluster);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mover = thread::spawn(move || {
        client.batch_execute("CALL partition_predict.migrate_default('ev', 500)")
    });
    move_copied_and_waiting(&mut cluster.connect("postgres"), pid);
    cluster.stop_immediate();
    assert!(
        mover.join().unwrap().is_err(),
        "the move outlived the shutdown"
    );
    cluster.start_again();
    let mut client = cluster.connect("postgres");
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!(
        (count, sum),
        (expected_count, expected_sum),
        "after an immediate shutdown"
    );

    // The next cycle completes the migration.
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('ev')")
        .unwrap();
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(default_rows(&mut client), 0);
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!(
        (count, sum),
        (expected_count, expected_sum),
        "after the migration finished"
    );
    assert_eq!(count, 60_000);
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
}

#[test]
fn the_worker_finishes_a_migration_a_crash_interrupted() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.enabled = off",
        ],
    );
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 20_000);
    migration_under_way(&mut client, 1_000);
    cluster.stop_immediate();
    cluster.start_again();
    let mut client = cluster.connect("postgres");
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!((count, sum), (expected_count, expected_sum));
    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.enabled = on")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(
        "the worker to empty DEFAULT",
        Duration::from_secs(60),
        || {
            (default_rows(&mut client) == 0
                && scalar_i64(
                    &mut client,
                    "SELECT count(*) FROM partition_predict.routing_overrides",
                ) == 0)
                .then_some(())
        },
    );
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!((count, sum), (expected_count, expected_sum));
}

fn explain(client: &mut Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

const PLANNED: [&str; 3] = [
    "SELECT count(*) FROM ev",
    "SELECT id FROM ev WHERE k = 1000500",
    "SELECT e.id FROM ev e JOIN ledger l USING (id) WHERE e.k BETWEEN 5 AND 10",
];

#[test]
fn explain_shows_the_shadow_only_while_an_override_is_active() {
    let plain = Cluster::start(false);
    let preloaded = Cluster::start_with(true, NO_WORKER);
    let mut plans = Vec::new();
    for cluster in [&plain, &preloaded] {
        let mut client = cluster.connect("postgres");
        client
            .batch_execute("CREATE EXTENSION pg_partition_predict")
            .unwrap();
        table_with_ledger(&mut client);
        fill_default(&mut client, 1, 5_000);
        client.batch_execute("ANALYZE ev, ledger").unwrap();
        plans.push(PLANNED.map(|sql| explain(&mut client, sql)));
    }
    assert_eq!(
        plans[0], plans[1],
        "the library changed plans with no override active"
    );

    let mut client = preloaded.connect("postgres");
    migration_under_way(&mut client, 1_000);
    let shadow: String = client
        .query_one(
            "SELECT target::text FROM partition_predict.routing_overrides",
            &[],
        )
        .unwrap()
        .get(0);
    let during = explain(&mut client, PLANNED[0]);
    assert!(
        during.contains(&format!("Seq Scan on {shadow}")),
        "{during}"
    );
    assert!(during.contains("ev_default"), "{during}");
    // A key outside the moving range: the shadow's CHECK excludes it.
    let elsewhere = explain(&mut client, PLANNED[2]);
    assert!(!elsewhere.contains(&shadow), "{elsewhere}");
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), 5_000);
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ev WHERE k = 1000500"),
        1
    );
    // Whole rows and column subsets read through the override too.
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(DISTINCT e) FROM ev e WHERE k >= 1000000"
        ),
        5_000
    );
    // System columns cannot be read through a subquery: such a query waits
    // for the migration instead, so with one paused it must not run now.
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let waited = client.query("SELECT count(DISTINCT tableoid) FROM ev", &[]);
    assert_eq!(
        waited.unwrap_err().code().map(|c| c.code()),
        Some("57014"),
        "a query reading tableoid did not wait for the migration"
    );
    client.batch_execute("RESET statement_timeout").unwrap();
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), 5_000);
}

#[test]
fn the_planner_hook_chains_with_pg_stat_statements_in_either_order() {
    for libraries in [
        "pg_stat_statements, pg_partition_predict",
        "pg_partition_predict, pg_stat_statements",
    ] {
        let setting = format!("shared_preload_libraries = '{libraries}'");
        let cluster = Cluster::start_with(
            false,
            &[
                &setting,
                "pg_partition_predict.database = ''",
                "pg_stat_statements.track = all",
            ],
        );
        let mut client = cluster.connect("postgres");
        client
            .batch_execute(
                "CREATE EXTENSION pg_partition_predict; CREATE EXTENSION pg_stat_statements",
            )
            .unwrap();
        table_with_ledger(&mut client);
        fill_default(&mut client, 1, 3_000);
        migration_under_way(&mut client, 1_000);
        assert_eq!(
            scalar_i64(&mut client, "SELECT count(*) FROM ev /* chained */"),
            3_000,
            "{libraries}"
        );
        let seen = scalar_i64(
            &mut client,
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE '%FROM ev /* chained */%'",
        );
        assert!(seen >= 1, "{libraries}: pg_stat_statements saw no call");
        let plan = explain(&mut client, "SELECT count(*) FROM ev");
        assert!(plan.contains("ev_p1000000"), "{libraries}: {plan}");
    }
}

#[test]
fn migration_refuses_without_routing_and_unmanage_waits_for_it() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 3_000);
    migration_under_way(&mut client, 1_000);
    let refused = client
        .batch_execute("SELECT partition_predict.unmanage('ev')")
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("55006"), "{refused}");

    // Routing off: the migration under way gives way, rows go back to DEFAULT.
    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.routing = off")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    thread::sleep(Duration::from_millis(300));
    let failed = client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap_err();
    assert_eq!(failed.code().map(|c| c.code()), Some("55P03"), "{failed}");
    assert_eq!(default_rows(&mut client), 3_000);
    let (count, sum, expected_count, expected_sum) = totals(&mut client);
    assert_eq!((count, sum), (expected_count, expected_sum));
    let refused = client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("55000"), "{refused}");
    assert!(
        refused.to_string().contains("routing is off")
            || format!("{refused:?}").contains("routing is off")
    );
}

#[test]
fn a_table_with_forced_row_security_moves_and_keeps_its_policies() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE rls_owner LOGIN;
             GRANT USAGE, CREATE ON SCHEMA public TO rls_owner;",
        )
        .unwrap();
    let mut owner = cluster.connect_as("postgres", "rls_owner");
    owner
        .batch_execute(
            "CREATE TABLE fr (id bigint NOT NULL, k bigint NOT NULL, shown boolean NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE fr_low PARTITION OF fr FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('fr', target_rows => 100000);
             INSERT INTO fr SELECT g, 1000000 + g, g % 2 = 0 FROM generate_series(0, 199999) g;
             CREATE POLICY only_shown ON fr USING (shown);
             ALTER TABLE fr ENABLE ROW LEVEL SECURITY;
             ALTER TABLE fr FORCE ROW LEVEL SECURITY;",
        )
        .unwrap();
    assert_eq!(scalar_i64(&mut owner, "SELECT count(*) FROM fr"), 100_000);

    owner
        .batch_execute("CALL partition_predict.migrate_default('fr')")
        .unwrap();

    // Every row left DEFAULT, none lost (read by the superuser, whom no
    // policy limits) ...
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ONLY fr_default"),
        0
    );
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM fr"), 200_000);
    assert_eq!(
        scalar_i64(&mut client, "SELECT sum(id)::bigint FROM fr"),
        199_999 * 200_000 / 2
    );
    // ... the new partitions carry the parent's flags, and the owner still
    // reads through its policy.
    let flags: Vec<(String, bool, bool)> = client
        .query(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'fr'::regclass AND c.relname NOT IN ('fr_low', 'fr_default')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(flags.len() >= 2, "{flags:?}");
    assert!(flags.iter().all(|(_, e, f)| *e && *f), "{flags:?}");
    assert_eq!(scalar_i64(&mut owner, "SELECT count(*) FROM fr"), 100_000);
    assert_eq!(
        scalar_i64(&mut owner, "SELECT count(*) FROM fr WHERE NOT shown"),
        0
    );
}

/// `ev`'s (count, sum of ids) against the ledger's, over all keys and over
/// one moved range (a query that prunes by key).
fn exact_in_one_snapshot(client: &mut Client) -> Vec<String> {
    CHECKS
        .iter()
        .filter_map(|check| {
            let row = client.query_one(*check, &[]).unwrap();
            let (count, sum, expected_count, expected_sum): (i64, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            ((count, sum) != (expected_count, expected_sum)).then(|| {
                format!("({count}, {sum}) where the ledger has ({expected_count}, {expected_sum}): {check}")
            })
        })
        .collect()
}

#[test]
fn a_snapshot_older_than_a_move_still_reads_every_row_and_cannot_write_past_it() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 200_000);

    // Transactions of one snapshot, taken before the moves (by reading
    // another table: a transaction that had read `ev` would hold DEFAULT
    // and put the moves off).
    let mut older: Vec<Client> = ["REPEATABLE READ", "SERIALIZABLE", "REPEATABLE READ"]
        .iter()
        .enumerate()
        .map(|(i, level)| {
            let mut c = cluster.connect("postgres");
            if i == 2 {
                // One prepared before the moves, run with a generic plan.
                c.batch_execute(
                    "SET plan_cache_mode = force_generic_plan;
                     PREPARE in_range(bigint, bigint) AS
                       SELECT count(*), coalesce(sum(id), 0)::bigint FROM ev WHERE k >= $1 AND k < $2",
                )
                .unwrap();
            }
            c.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM ledger"
            ))
            .unwrap();
            c
        })
        .collect();

    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(default_rows(&mut client), 0);
    // Rows inserted since, into a moved range: invisible to the old
    // snapshots, which compare with the ledger they see.
    fill_default(&mut client, 500_000, 10);

    for (i, c) in older.iter_mut().enumerate() {
        let wrong = exact_in_one_snapshot(c);
        assert!(wrong.is_empty(), "snapshot {i}: {wrong:?}");
    }
    let row = older[2]
        .query_one("EXECUTE in_range(1050000, 1150000)", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (100_000, (50_001..=150_000).sum::<i64>())
    );
    // A write or a row lock under such a snapshot would miss the moved
    // rows: it is a serialization failure, which the application retries.
    for (sql, c) in [
        ("UPDATE ev SET v = 1 WHERE k = 1100000", 0),
        ("SELECT id FROM ev WHERE k = 1100000 FOR UPDATE", 1),
        ("DELETE FROM ev WHERE k BETWEEN 1100000 AND 1100010", 2),
    ] {
        let e = older[c].batch_execute(sql).unwrap_err();
        assert_eq!(
            e.code().map(|s| s.code().to_string()),
            Some("40001".into()),
            "{sql}: {e}"
        );
        older[c].batch_execute("ROLLBACK").unwrap();
    }
    // The plan made for the old snapshot is not kept for newer ones.
    let plan_of = |c: &mut Client, sql: &str| -> String {
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .unwrap();
        let plan = c
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n");
        c.batch_execute("COMMIT").unwrap();
        plan
    };
    let plan = plan_of(&mut older[2], "EXPLAIN EXECUTE in_range(1050000, 1150000)");
    assert!(!plan.contains("ev_default"), "{plan}");
    // Retried, it sees the move and succeeds.
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE ev SET v = 1 WHERE k = 1100000; COMMIT",
        )
        .unwrap();
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ev WHERE v = 1"),
        1
    );
    // A new snapshot reads the partitions as they are, DEFAULT pruned.
    let plan = plan_of(
        &mut client,
        "EXPLAIN SELECT count(*) FROM ev WHERE k >= 1050000 AND k < 1150000",
    );
    assert!(!plan.contains("ev_default"), "{plan}");
}

#[test]
fn migrate_default_in_a_transaction_block_is_refused_with_a_hint() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    // With DEFAULT empty (nothing to move) and with rows in it: the same
    // answer, and nothing moved.
    for rows in [0, 1000] {
        fill_default(&mut client, 1, rows);
        client.batch_execute("BEGIN").unwrap();
        let e = client
            .batch_execute("CALL partition_predict.migrate_default('ev')")
            .unwrap_err();
        client.batch_execute("ROLLBACK").unwrap();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(db.code().code(), "25001", "{rows} rows: {e}");
        assert!(
            db.hint().is_some_and(|h| h.contains("outside BEGIN")),
            "{db:?}"
        );
        assert_eq!(default_rows(&mut client), rows);
    }
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(default_rows(&mut client), 0);
}

/// What the rewrite for old snapshots cannot reach is refused, and what it
/// can is exact: a SQL function the planner inlines (refused: 40001), a
/// STABLE function whose queries run under the snapshot of a READ
/// COMMITTED statement that began before the move (exact), and a snapshot
/// imported from before the move running a plan cached after it (exact).
#[test]
fn old_snapshots_through_functions_and_imported_snapshots_miss_no_row() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 200_000);
    client
        .batch_execute(
            "CREATE FUNCTION in_range(lo bigint, hi bigint) RETURNS SETOF ev LANGUAGE sql STABLE
               AS 'SELECT * FROM ev WHERE k >= lo AND k < hi';
             CREATE FUNCTION count_key(key bigint) RETURNS bigint LANGUAGE plpgsql STABLE AS $$
             BEGIN RETURN (SELECT count(*) FROM ev WHERE k = key); END $$;",
        )
        .unwrap();
    let mut inlined = cluster.connect("postgres");
    inlined
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ledger")
        .unwrap();
    let mut exporter = cluster.connect("postgres");
    let exported: String = exporter
        .query_one(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot()",
            &[],
        )
        .unwrap_or_else(|_| {
            exporter
                .batch_execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ")
                .unwrap();
            exporter
                .query_one("SELECT pg_export_snapshot()", &[])
                .unwrap()
        })
        .get(0);
    // A READ COMMITTED statement that sleeps, then calls the STABLE
    // function: the move commits while it sleeps.
    let stable = {
        let mut c = cluster.connect("postgres");
        thread::spawn(move || {
            let row = c
                .query_one("SELECT pg_sleep(4), count_key(1100005)", &[])
                .unwrap();
            row.get::<_, i64>(1)
        })
    };
    thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "the move took {:?}: longer than the statement's sleep",
        started.elapsed()
    );
    assert_eq!(default_rows(&mut client), 0);
    assert_eq!(stable.join().unwrap(), 1, "the STABLE function's count");

    let e = inlined
        .query_one("SELECT count(*) FROM in_range(1050000, 1150000)", &[])
        .unwrap_err();
    assert_eq!(
        e.code().map(|c| c.code().to_string()),
        Some("40001".to_string()),
        "{e:?}"
    );

    let mut importer = cluster.connect("postgres");
    importer
        .batch_execute(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE one_key(bigint) AS SELECT count(*) FROM ev WHERE k = $1;
             EXECUTE one_key(1100005);",
        )
        .unwrap();
    importer
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{exported}'"
        ))
        .unwrap();
    assert_eq!(
        scalar_i64(&mut importer, "EXECUTE one_key(1100005)"),
        1,
        "a plan cached after the move, run under a snapshot from before it"
    );
    importer.batch_execute("COMMIT").unwrap();
    exporter.batch_execute("COMMIT").unwrap();
}

/// A role that moves rows of hundreds of tables of its own cannot make an
/// older snapshot lose what it needs to read another role's table exactly,
/// let a write under it go past the move, or make writes to tables it never
/// touched fail.
#[test]
fn moving_many_tables_cannot_make_an_old_snapshot_miss_another_s_rows() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE mallory LOGIN;
             GRANT CREATE ON SCHEMA public TO mallory;
             CREATE TABLE calm (id bigint, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE calm_low PARTITION OF calm FOR VALUES FROM (0) TO (10);
             CREATE TABLE calm_default PARTITION OF calm DEFAULT;
             INSERT INTO calm VALUES (1, 1), (2, 20);",
        )
        .unwrap();
    table_with_ledger(&mut client);
    fill_default(&mut client, 1, 1000);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..300 LOOP
                 EXECUTE format('CREATE TABLE many_%s (k bigint NOT NULL) PARTITION BY RANGE (k)', i);
                 EXECUTE format('CREATE TABLE many_%s_low PARTITION OF many_%s FOR VALUES FROM (0) TO (10)', i, i);
                 PERFORM partition_predict.manage(format('many_%s', i)::regclass, target_rows => 100);
                 EXECUTE format('INSERT INTO many_%s VALUES (20)', i);
             END LOOP; END $$;",
        )
        .unwrap();
    // Her tables the moves leave uncertain: one whose DEFAULT another role
    // owns, one with a partition partitioned in turn with its own DEFAULT.
    mallory
        .batch_execute(
            "CREATE TABLE mx (k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE mx_low PARTITION OF mx FOR VALUES FROM (0) TO (10);
             CREATE TABLE mx_default PARTITION OF mx DEFAULT;
             INSERT INTO mx VALUES (1), (20);
             CREATE TABLE msub (k bigint NOT NULL, r int NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE msub_a PARTITION OF msub FOR VALUES FROM (0) TO (10) PARTITION BY LIST (r);
             CREATE TABLE msub_a1 PARTITION OF msub_a FOR VALUES IN (1);
             CREATE TABLE msub_ad PARTITION OF msub_a DEFAULT;
             CREATE TABLE msub_default PARTITION OF msub DEFAULT;
             INSERT INTO msub VALUES (1, 1), (2, 2), (30, 1);",
        )
        .unwrap();
    client
        .batch_execute("ALTER TABLE mx_default OWNER TO postgres")
        .unwrap();
    // A transaction holding an ID keeps every snapshot's xmin old.
    let mut holder = cluster.connect_as("postgres", "mallory");
    holder
        .batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .unwrap();
    let mut older = cluster.connect("postgres");
    older
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ledger")
        .unwrap();
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    for i in 1..=300 {
        mallory
            .batch_execute(&format!(
                "CALL partition_predict.migrate_default('many_{i}')"
            ))
            .unwrap();
    }
    assert_eq!(
        scalar_i64(
            &mut older,
            "SELECT count(*) FROM ev WHERE k >= 1000000 AND k < 1000500"
        ),
        500
    );
    older
        .batch_execute("SAVEPOINT a; UPDATE calm SET id = 3 WHERE k = 20; RELEASE a")
        .unwrap();
    let e = older
        .batch_execute("UPDATE ev SET v = 1 WHERE k = 1000005")
        .unwrap_err();
    assert_eq!(
        e.code().map(|c| c.code().to_string()),
        Some("40001".to_string()),
        "{e:?}"
    );
    // Her own uncertain tables read fine, in READ COMMITTED and in a
    // transaction of one snapshot alike.
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM mx"), 2);
    mallory
        .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .unwrap();
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM msub"), 3);
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM mx"), 2);
    mallory.batch_execute("COMMIT").unwrap();
    holder.batch_execute("COMMIT").unwrap();
}

//! Every observer of the data sees every row while rows move out of
//! DEFAULT: a hot standby at any replayed point, a standby promoted
//! mid-migration, a logical subscriber of the parent, a dump and a base
//! backup taken mid-migration. The extension's views and reports read on a
//! standby; its writing functions refuse there.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use postgres::Client;

use crate::cluster::{scalar_i64, sqlstate, wait_for, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

/// `ev` (with a primary key), one partition below 1,000,000 and `rows` rows
/// above it, all in DEFAULT (three ranges' worth); `ledger` holds the same
/// rows: what a query on `ev` must return under any snapshot.
fn rows_in_default(client: &mut Client, rows: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE ev (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
             CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (1000000);
             CREATE TABLE ledger (id bigint PRIMARY KEY, k bigint NOT NULL);
             SELECT partition_predict.manage('ev', target_rows => 100000);
             INSERT INTO ev SELECT g, 1000000 + g FROM generate_series(0, {rows} - 1) g;
             INSERT INTO ledger SELECT g, 1000000 + g FROM generate_series(0, {rows} - 1) g;"
        ))
        .unwrap();
}

/// `ev`'s and `ledger`'s counts and sums of ids, in one snapshot.
const TOTALS: &str = "SELECT (SELECT count(*) FROM ev), (SELECT coalesce(sum(id), 0)::bigint FROM ev),
                             (SELECT count(*) FROM ledger), (SELECT coalesce(sum(id), 0)::bigint FROM ledger)";

fn totals(client: &mut Client) -> (i64, i64, i64, i64) {
    let row = client.query_one(TOTALS, &[]).unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Waits until the standby has replayed everything the primary wrote so far.
fn wait_for_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .unwrap()
        .get(0);
    wait_for("the standby to replay", Duration::from_secs(60), || {
        standby
            .query_one(
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
            .then_some(())
    });
}

/// Runs `migration_step` on `table` until it says `done`.
fn migrate_until_done(client: &mut Client, table: &str) -> usize {
    for steps in 1..50 {
        let next: String = client
            .query_one(
                &format!("SELECT partition_predict.migration_step('{table}')"),
                &[],
            )
            .unwrap()
            .get(0);
        if next == "done" {
            return steps;
        }
    }
    panic!("the migration of {table} never ended");
}

/// Moves every row out of `table`'s DEFAULT, step by step, and checks that
/// none is left there.
fn empty_default(client: &mut Client, table: &str) {
    migrate_until_done(client, table);
    assert_eq!(
        scalar_i64(
            client,
            &format!("SELECT count(*) FROM ONLY {table}_default")
        ),
        0,
        "{table}'s DEFAULT after its migration"
    );
}

fn overrides_in_memory(client: &mut Client) -> i64 {
    scalar_i64(
        client,
        "SELECT count(*) FROM partition_predict.routing_overrides_in_memory()",
    )
}

#[test]
fn a_hot_standby_sees_every_row_while_rows_move_out_of_default() {
    let primary = Cluster::start_with(true, NO_WORKER);
    let mut client = primary.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    rows_in_default(&mut client, 300_000);
    let standby = Cluster::standby_of(&primary, &[]);
    let mut reader = standby.connect("postgres");
    wait_for_replay(&mut client, &mut reader);

    // Readers on the standby compare the table with the ledger in every
    // snapshot they take, while the primary moves the rows.
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicI64::new(0));
    let mismatches = Arc::new(Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = standby.connect("postgres");
            let (stop, queries, mismatches) = (stop.clone(), queries.clone(), mismatches.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (count, sum, expected_count, expected_sum) = totals(&mut c);
                    queries.fetch_add(1, Ordering::Relaxed);
                    if (count, sum) != (expected_count, expected_sum) {
                        mismatches.lock().unwrap().push(format!(
                            "({count}, {sum}) where the ledger has ({expected_count}, {expected_sum})"
                        ));
                    }
                }
            })
        })
        .collect();

    let mut steps = 0;
    loop {
        let next: String = client
            .query_one("SELECT partition_predict.migration_step('ev')", &[])
            .unwrap()
            .get(0);
        wait_for_replay(&mut client, &mut reader);
        assert_eq!(
            totals(&mut reader),
            totals(&mut client),
            "the standby after step {steps} ({next})"
        );
        steps += 1;
        if next == "done" {
            break;
        }
        assert!(steps < 50, "the migration never ended");
    }
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let mismatches = mismatches.lock().unwrap();
    assert!(
        mismatches.is_empty(),
        "{} of {} standby queries were wrong, first: {:?}",
        mismatches.len(),
        queries.load(Ordering::Relaxed),
        mismatches.first()
    );
    assert!(queries.load(Ordering::Relaxed) > 0);
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ONLY ev_default"),
        0
    );
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ONLY ev_default"),
        0
    );
    assert_eq!(totals(&mut reader).0, 300_000);

    // Cycles go on on the primary (rows arriving, some of them late, into
    // DEFAULT, forecasts, activation, moves): the standby replays them all
    // without an error in its log.
    for round in 0..12_i64 {
        let (low, high) = (300_000 + round * 5_000, 300_000 + round * 5_000 + 4_999);
        client
            .batch_execute(&format!(
                "INSERT INTO ev SELECT g, 1000000 + g FROM generate_series({low}, {high}) g;
                 INSERT INTO ledger SELECT g, 1000000 + g FROM generate_series({low}, {high}) g;
                 SELECT * FROM partition_predict.run_cycle('ev');"
            ))
            .unwrap();
        migrate_until_done(&mut client, "ev");
    }
    wait_for_replay(&mut client, &mut reader);
    assert_eq!(totals(&mut reader), totals(&mut client));
    assert_eq!(totals(&mut reader).0, 360_000);

    // The views and reports read fine on the standby.
    for sql in [
        "SELECT count(*) FROM partition_predict.managed_tables",
        "SELECT count(*) FROM partition_predict.partitions",
        "SELECT count(*) FROM partition_predict.routing_overrides",
        "SELECT count(*) FROM partition_predict.migrations_history",
        "SELECT count(*) FROM partition_predict.alerts",
        "SELECT count(*) FROM partition_predict.alert_history",
        "SELECT count(*) FROM partition_predict.forecasts",
        "SELECT count(*) FROM partition_predict.metrics",
        "SELECT count(*) FROM partition_predict.worker_status",
        "SELECT count(*) FROM partition_predict.cycle_costs",
        "SELECT partition_predict.report('ev')::text",
        "SELECT partition_predict.report_html('ev')::text",
    ] {
        assert_eq!(
            sqlstate(reader.query(sql, &[])),
            "ok",
            "{sql} on the standby"
        );
    }
    // What writes refuses, with the SQLSTATE of a read-only transaction.
    for sql in [
        "SELECT partition_predict.migration_step('ev')",
        "SELECT * FROM partition_predict.run_cycle('ev')",
        "CALL partition_predict.migrate_default('ev')",
    ] {
        assert_eq!(
            sqlstate(reader.query(sql, &[])),
            "25006",
            "{sql} on the standby"
        );
    }
    let log = standby.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("changes nothing on a standby"))
        .collect();
    assert!(errors.is_empty(), "the standby's log: {errors:?}");
}

/// `ev`'s and `ledger`'s counts and sums of ids over one range of keys (a
/// query that prunes by key), in one snapshot.
const RANGE_TOTALS: &str = "SELECT (SELECT count(*) FROM ev WHERE k >= 1050000 AND k < 1150000),
                                   (SELECT coalesce(sum(id), 0)::bigint FROM ev WHERE k >= 1050000 AND k < 1150000),
                                   (SELECT count(*) FROM ledger WHERE k >= 1050000 AND k < 1150000),
                                   (SELECT coalesce(sum(id), 0)::bigint FROM ledger WHERE k >= 1050000 AND k < 1150000)";

#[test]
fn a_standby_snapshot_older_than_a_move_still_reads_every_row() {
    let primary = Cluster::start_with(true, NO_WORKER);
    let mut client = primary.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    rows_in_default(&mut client, 200_000);
    // Feedback keeps the primary from removing rows the old snapshot reads.
    let standby = Cluster::standby_of(&primary, &["hot_standby_feedback = on"]);
    let mut reader = standby.connect("postgres");
    wait_for_replay(&mut client, &mut reader);
    let mut older = standby.connect("postgres");
    older
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ledger")
        .unwrap();

    empty_default(&mut client, "ev");
    client
        .batch_execute(
            "INSERT INTO ev SELECT g, 1000000 + g FROM generate_series(200000, 200009) g;
             INSERT INTO ledger SELECT g, 1000000 + g FROM generate_series(200000, 200009) g;",
        )
        .unwrap();
    wait_for_replay(&mut client, &mut reader);
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ONLY ev_default"),
        10
    );

    for (what, sql) in [("all keys", TOTALS), ("one moved range", RANGE_TOTALS)] {
        let row = older.query_one(sql, &[]).unwrap();
        let (count, sum, expected_count, expected_sum): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            (count, sum),
            (expected_count, expected_sum),
            "{what}, old snapshot"
        );
        assert!(count >= 100_000, "{what}: {count}");
        let row = reader.query_one(sql, &[]).unwrap();
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (row.get(2), row.get(3)),
            "{what}, new snapshot"
        );
    }
    older.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_standby_promoted_mid_migration_reads_every_row_and_finishes_the_move() {
    let primary = Cluster::start_with(true, NO_WORKER);
    let mut client = primary.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    rows_in_default(&mut client, 30_000);
    let standby = Cluster::standby_of(&primary, NO_WORKER);
    let mut reader = standby.connect("postgres");
    let first: String = client
        .query_one("SELECT partition_predict.migration_step('ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(first, "again", "the migration started");
    wait_for_replay(&mut client, &mut reader);
    assert_eq!(
        overrides_in_memory(&mut reader),
        1,
        "the standby replayed the override"
    );
    // Reads the rewrite cannot express run as they are on the standby.
    for sql in [
        "SELECT count(*) FROM ev TABLESAMPLE SYSTEM (100)",
        "SELECT count(*) FROM (SELECT ctid, tableoid::regclass, id FROM ev) r",
        "SELECT count(*) FROM ev",
    ] {
        assert_eq!(scalar_i64(&mut reader, sql), 30_000, "{sql} on the standby");
    }
    drop(reader);

    // The primary is lost between the migration's start and its move.
    primary.stop_immediate();
    standby.promote();
    let mut promoted = standby.connect("postgres");
    let (count, sum, expected_count, expected_sum) = totals(&mut promoted);
    assert_eq!(
        (count, sum),
        (expected_count, expected_sum),
        "the first query on the new primary"
    );
    assert_eq!(count, 30_000);
    assert_eq!(
        overrides_in_memory(&mut promoted),
        0,
        "no override outlives the promotion: nothing on the new primary would end it"
    );
    // Writers do not wait for a move the old primary took with it.
    promoted
        .batch_execute(
            "SET statement_timeout = '5s';
             INSERT INTO ev VALUES (-1, 1000500); INSERT INTO ledger VALUES (-1, 1000500);
             UPDATE ev SET id = id WHERE k = 1000100;
             RESET statement_timeout;",
        )
        .unwrap();
    empty_default(&mut promoted, "ev");
    let (count, sum, expected_count, expected_sum) = totals(&mut promoted);
    assert_eq!((count, sum), (expected_count, expected_sum));
    assert_eq!(count, 30_001);
    assert_eq!(
        scalar_i64(&mut promoted, "SELECT count(DISTINCT (id, k)) FROM ev"),
        30_001,
        "no row twice"
    );
}

#[test]
fn a_dump_and_a_base_backup_taken_mid_migration_restore_every_row_once() {
    let primary = Cluster::start_with(true, NO_WORKER);
    let mut client = primary.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    rows_in_default(&mut client, 30_000);
    let first: String = client
        .query_one("SELECT partition_predict.migration_step('ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(first, "again", "the migration started");

    let dump = tempfile::NamedTempFile::new().unwrap();
    let dump_path = dump.path().to_str().unwrap().to_string();
    primary.client_program("pg_dump", &["-Fc", "-d", "postgres", "-f", &dump_path]);
    let copy = Cluster::restored_from_backup_of(&primary, NO_WORKER);

    client.batch_execute("CREATE DATABASE restored").unwrap();
    primary.client_program("pg_restore", &["-d", "restored", &dump_path]);
    let mut restored = primary.connect("restored");
    let mut from_backup = copy.connect("postgres");
    for (what, c) in [
        ("the restored dump", &mut restored),
        ("the base backup", &mut from_backup),
    ] {
        let (count, sum, expected_count, expected_sum) = totals(c);
        assert_eq!((count, sum), (expected_count, expected_sum), "{what}");
        assert_eq!(count, 30_000, "{what}");
        // Nothing there waits for a move that is not coming, and the
        // migration can be carried to its end.
        c.batch_execute(
            "SET statement_timeout = '5s';
             INSERT INTO ev VALUES (-1, 1000500); INSERT INTO ledger VALUES (-1, 1000500);
             RESET statement_timeout;",
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        migrate_until_done(c, "ev");
        assert_eq!(
            scalar_i64(c, "SELECT count(*) FROM ONLY ev_default"),
            0,
            "{what}"
        );
        let (count, sum, expected_count, expected_sum) = totals(c);
        assert_eq!((count, sum), (expected_count, expected_sum), "{what}");
        assert_eq!(count, 30_001, "{what}");
        assert_eq!(
            scalar_i64(
                c,
                "SELECT count(*) FROM partition_predict.partitions WHERE state = 'migrating'"
            ),
            0,
            "{what}"
        );
    }
    // The original finishes its migration as well.
    migrate_until_done(&mut client, "ev");
    assert_eq!(totals(&mut client).0, 30_000);
}

/// A move of `table` refused before it starts: `55000`, no override left
/// up, every row still in DEFAULT (`rows`); the error, for its text.
fn refused_move(client: &mut Client, table: &str, rows: i64) -> postgres::error::DbError {
    let refused = client
        .query_one(
            &format!("SELECT partition_predict.migration_step('{table}')"),
            &[],
        )
        .unwrap_err();
    let db_error = refused
        .as_db_error()
        .expect("an error from the server")
        .clone();
    assert_eq!(db_error.code().code(), "55000", "{db_error:?}");
    assert_eq!(overrides_in_memory(client), 0);
    assert_eq!(
        scalar_i64(
            client,
            &format!("SELECT count(*) FROM ONLY {table}_default")
        ),
        rows
    );
    db_error
}

/// `table`'s count and sum of ids.
fn count_and_sum(client: &mut Client, table: &str) -> (i64, i64) {
    let row = client
        .query_one(
            &format!("SELECT count(*), coalesce(sum(id), 0)::bigint FROM {table}"),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits until the subscriber's `table` holds what the publisher's does.
fn wait_for_subscriber(publisher: &mut Client, subscriber: &mut Client, table: &str) {
    let expected = count_and_sum(publisher, table);
    let mut last = (0, 0);
    let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "the subscriber to catch up",
            Duration::from_secs(60),
            || {
                last = count_and_sum(subscriber, table);
                (last == expected).then_some(())
            },
        )
    }));
    assert!(
        caught_up.is_ok(),
        "the subscriber's {table} holds (count, sum) {last:?} where the publisher's holds {expected:?}"
    );
}

#[test]
fn a_logical_subscriber_of_the_parent_ends_with_every_row_after_moves() {
    let publisher = Cluster::start_with(
        true,
        &["pg_partition_predict.database = ''", "wal_level = logical"],
    );
    let subscriber = Cluster::start(false);
    let mut client = publisher.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    rows_in_default(&mut client, 60_000);
    // ev2 has no primary key: its DEFAULT has no replica identity.
    client
        .batch_execute(
            "CREATE TABLE ev2 (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE ev2_low PARTITION OF ev2 FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('ev2', target_rows => 100000);
             INSERT INTO ev2 SELECT g, 1000000 + g FROM generate_series(0, 9999) g;
             INSERT INTO ev2 SELECT 7, 1000007 FROM generate_series(1, 3);
             CREATE PUBLICATION everything FOR TABLE ev, ev2 WITH (publish_via_partition_root = true);
             CREATE TABLE ev3 (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
             SELECT partition_predict.manage('ev3', target_rows => 100000);
             INSERT INTO ev3 SELECT g, 1000000 + g FROM generate_series(0, 999) g;
             CREATE PUBLICATION inserts_only FOR TABLE ev3 WITH (publish = 'insert', publish_via_partition_root = true);
             CREATE TABLE ev4 (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
             SELECT partition_predict.manage('ev4', target_rows => 100000);
             INSERT INTO ev4 SELECT g, 1000000 + g FROM generate_series(0, 999) g;
             CREATE PUBLICATION deletes_only FOR TABLE ev4 WITH (publish = 'delete', publish_via_partition_root = true);",
        )
        .unwrap();
    let mut sub = subscriber.connect("postgres");
    sub.batch_execute(
        "CREATE TABLE ev (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
         CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (1000000);
         CREATE TABLE ev_rest PARTITION OF ev DEFAULT;
         CREATE TABLE ev2 (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
         CREATE TABLE ev2_all PARTITION OF ev2 DEFAULT;
         CREATE TABLE ev3 (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k));",
    )
    .unwrap();
    // Its own statement: CREATE SUBSCRIPTION cannot run in a transaction block.
    sub.batch_execute(&format!(
        "CREATE SUBSCRIPTION everything CONNECTION 'host={} port=5432 dbname=postgres user=postgres'
                PUBLICATION everything",
        publisher.socket_dir().display()
    ))
    .unwrap();
    sub.batch_execute(&format!(
        "CREATE SUBSCRIPTION inserts_only CONNECTION 'host={} port=5432 dbname=postgres user=postgres'
                PUBLICATION inserts_only",
        publisher.socket_dir().display()
    ))
    .unwrap();
    wait_for_subscriber(&mut client, &mut sub, "ev");
    wait_for_subscriber(&mut client, &mut sub, "ev2");
    wait_for_subscriber(&mut client, &mut sub, "ev3");

    empty_default(&mut client, "ev");
    wait_for_subscriber(&mut client, &mut sub, "ev");
    // The moved rows are there to change: an UPDATE or DELETE of a row the
    // subscriber lacks would be a silent no-op there.
    client
        .batch_execute(
            "UPDATE ev SET id = id + 1000000 WHERE k < 1010000;
             DELETE FROM ev WHERE k >= 1050000;
             INSERT INTO ev SELECT g, 1000000 + g FROM generate_series(70000, 70999) g;",
        )
        .unwrap();
    wait_for_subscriber(&mut client, &mut sub, "ev");
    assert_eq!(count_and_sum(&mut sub, "ev").0, 51_000);

    // ev2's move is refused before anything happens, with what to do.
    let db_error = refused_move(&mut client, "ev2", 10_003);
    assert!(
        db_error.message().contains("replica identity"),
        "{}",
        db_error.message()
    );
    assert!(
        db_error
            .hint()
            .unwrap_or("")
            .contains("REPLICA IDENTITY FULL"),
        "{db_error:?}"
    );
    client
        .batch_execute(
            "SET statement_timeout = '5s';
             INSERT INTO ev2 VALUES (-1, 1000500);
             RESET statement_timeout;
             ALTER TABLE ev2 REPLICA IDENTITY FULL;
             ALTER TABLE ev2_default REPLICA IDENTITY FULL;",
        )
        .unwrap();
    empty_default(&mut client, "ev2");
    client
        .batch_execute("DELETE FROM ev2 WHERE k >= 1000000 AND k < 1000100 AND k <> 1000007")
        .unwrap();
    wait_for_subscriber(&mut client, &mut sub, "ev2");
    // Rows that are exact copies of each other arrive as many times.
    assert_eq!(count_and_sum(&mut sub, "ev2").0, 9_905);
    assert_eq!(
        scalar_i64(&mut sub, "SELECT count(*) FROM ev2 WHERE k = 1000007"),
        4
    );

    // A publication of inserts only, naming the table, keeps its copies:
    // the move neither deletes nor inserts anything it replicates.
    empty_default(&mut client, "ev3");
    client
        .batch_execute("INSERT INTO ev3 VALUES (5000, 1000500)")
        .unwrap();
    wait_for_subscriber(&mut client, &mut sub, "ev3");
    assert_eq!(count_and_sum(&mut sub, "ev3").0, 1_001);

    // A publication of deletes only would lose them: the move is refused
    // before anything happens, naming it.
    let db_error = refused_move(&mut client, "ev4", 1_000);
    assert!(
        db_error.message().contains("deletes_only"),
        "{}",
        db_error.message()
    );
}

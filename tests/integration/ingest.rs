//! Bulk ingestion: `ingest()`, and COPY / large INSERT … SELECT into a
//! managed parent (the worker attaches shadows first, migrates after).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::cluster::{flush_stats, scalar_i64, wait_for, Cluster};
use crate::shadows::{insert_hours, with_long_reader};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

/// A managed event table with three days of history (2024-01-01 to
/// 2024-01-04, 650 rows an hour, about 15,600 a day), a forecast, and
/// daily shadows for the next two days.
fn event_table(client: &mut Client, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int, batch int)
                 PARTITION BY RANGE (at);
             CREATE INDEX ON {table} (at);
             CREATE TABLE {table}_history PARTITION OF {table} FOR VALUES FROM ('2024-01-01') TO ('2024-01-04');
             SELECT partition_predict.manage('{table}', target_rows => 20000, lookahead => '2 days');"
        ))
        .unwrap();
    insert_hours(client, table, 0, &vec![650.0; 72]);
    flush_stats(client);
    client
        .batch_execute(&format!(
            "SELECT * FROM partition_predict.collect_stats('{table}');
             SELECT * FROM partition_predict.forecast('{table}');
             SELECT * FROM partition_predict.prepartition('{table}');"
        ))
        .unwrap();
}

fn count(client: &mut Client, sql: &str) -> i64 {
    scalar_i64(client, sql)
}

fn rows_in_default(client: &mut Client, table: &str) -> i64 {
    count(
        client,
        &format!(
            "SELECT count(*) FROM {table} WHERE tableoid = (SELECT partdefid FROM pg_partitioned_table
                                                            WHERE partrelid = '{table}'::regclass)"
        ),
    )
}

/// Readers that keep counting the batch's rows in the parent until `stop`:
/// every count they saw.
fn batch_watcher(
    cluster: &Cluster,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<i64>> {
    let config = cluster.config("postgres");
    thread::spawn(move || {
        let mut client = config.connect(postgres::NoTls).unwrap();
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE batch = 1"),
                    &[],
                )
                .unwrap()
                .get(0);
            seen.push(n);
            thread::sleep(Duration::from_millis(30));
        }
        seen
    })
}

/// The backfill of the issue: 500,000 rows from 30 days before the newest
/// data to 2 days after it, loaded by ingest() while a long report holds
/// the table, readers count the batch and traffic runs point queries.
#[test]
fn a_backfill_through_ingest_never_touches_default_and_appears_at_once() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    event_table(&mut client, "backfill");
    let shadows_before = count(
        &mut client,
        "SELECT count(*) FROM partition_predict.partitions WHERE parent = 'backfill'::regclass AND state = 'shadow'",
    );
    assert!(shadows_before >= 1, "no shadow prepared ahead of the data");
    client
        .batch_execute(
            "CREATE TABLE staging (at timestamptz, v int, batch int);
             INSERT INTO staging
             SELECT '2023-12-05 00:00+00'::timestamptz + g * (interval '32 days' / 500000), g, 1
               FROM generate_series(0, 499999) g;",
        )
        .unwrap();
    let before = count(&mut client, "SELECT count(*) FROM backfill");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = batch_watcher(&cluster, "backfill", Arc::clone(&stop));
    let (run, result) = with_long_reader(
        &cluster,
        "backfill",
        "CALL partition_predict.ingest('backfill', 'staging')",
    );
    result.expect("ingest completes");
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();

    println!(
        "ingest: slowest traffic round {:?}, longest lock wait seen {:?}, {} batch counts seen",
        run.slowest,
        run.longest_lock_wait,
        seen.len()
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM backfill WHERE batch = 1"),
        500_000
    );
    assert_eq!(
        rows_in_default(&mut client, "backfill"),
        0,
        "rows reached DEFAULT"
    );
    assert!(count(&mut client, "SELECT count(*) FROM backfill") >= before + 500_000);
    // Atomic: every reader saw none of the batch or all of it.
    let partial: Vec<&i64> = seen.iter().filter(|n| **n != 0 && **n != 500_000).collect();
    assert!(
        partial.is_empty(),
        "readers saw part of the batch: {partial:?}"
    );
    assert!(
        seen.contains(&0) && seen.contains(&500_000),
        "the watcher never saw the switch: {seen:?}"
    );
    // Point queries were never held up by more than a lock_timeout (100 ms) plus noise.
    assert!(
        run.longest_lock_wait < Duration::from_millis(500),
        "a session waited {:?} for a lock",
        run.longest_lock_wait
    );
    assert!(
        run.slowest < Duration::from_millis(1000),
        "traffic waited {:?}",
        run.slowest
    );
    // The past got daily partitions, the shadows ahead were used.
    let (created, activated, recorded): (i32, i32, i64) = {
        let row = client
            .query_one(
                "SELECT partitions_created, partitions_activated, rows_loaded FROM partition_predict.ingest_history
                  WHERE parent = 'backfill'::regclass",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(recorded, 500_000);
    assert!(
        created >= 27,
        "only {created} partitions created for 27 past days"
    );
    assert!(
        activated > created,
        "the prepared shadows were not used ({activated} attached, {created} created)"
    );
    let largest = count(
        &mut client,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM backfill
                              WHERE tableoid <> 'backfill_history'::regclass GROUP BY tableoid) p",
    );
    assert!(
        largest <= 24_000,
        "a partition made for the batch holds {largest} rows (target 20,000)"
    );
}

/// Every bad source is refused before anything changes.
#[test]
fn ingest_refuses_a_bad_source_and_changes_nothing() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE app_owner LOGIN; CREATE ROLE stranger;
             GRANT CREATE ON SCHEMA public TO app_owner;
             CREATE TABLE secret (at timestamptz, v int);
             INSERT INTO secret VALUES ('2023-12-20', 1);
             ALTER TABLE secret OWNER TO stranger;",
        )
        .unwrap();
    let mut client = cluster.connect("postgres");
    client.batch_execute("SET ROLE app_owner").unwrap();
    event_table(&mut client, "guarded");
    client
        .batch_execute(
            "CREATE TABLE extra_column (at timestamptz, v int, colour text);
             INSERT INTO extra_column VALUES ('2023-12-20', 1, 'red');
             CREATE TABLE no_key (v int);
             INSERT INTO no_key VALUES (1);
             CREATE TABLE null_keys (at timestamptz, v int);
             INSERT INTO null_keys VALUES ('2023-12-20', 1), (NULL, 2);
             CREATE TABLE text_keys (at text, v int);
             INSERT INTO text_keys VALUES ('2023-12-20', 1);
             CREATE TABLE bad_values (at timestamptz, v text);
             INSERT INTO bad_values VALUES ('2023-12-20', 'not a number');
             CREATE TABLE good (at timestamptz, v int);
             INSERT INTO good VALUES ('2023-12-20', 1);",
        )
        .unwrap();
    let state = |client: &mut Client| -> (i64, i64, i64, i64) {
        (
            count(client, "SELECT count(*) FROM guarded"),
            count(
                client,
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'guarded'::regclass",
            ),
            count(client, "SELECT count(*) FROM partition_predict.shadows"),
            count(client, "SELECT count(*) FROM partition_predict.ingests"),
        )
    };
    let unchanged = state(&mut client);
    let cases: &[(&str, &str, &str)] = &[
        (
            "CALL partition_predict.ingest('guarded', 'extra_column')",
            "42703",
            "colour",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'no_key')",
            "42703",
            "partition key",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'null_keys')",
            "23502",
            "NULL",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'text_keys')",
            "42804",
            "partition key",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'bad_values')",
            "42804",
            "does not fit",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'secret')",
            "42501",
            "permission denied",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'guarded')",
            "22023",
            "partitions",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'guarded_history')",
            "22023",
            "partitions",
        ),
        (
            "CALL partition_predict.ingest('guarded', 'pg_class_oid_index')",
            "42809",
            "not a table",
        ),
        (
            "BEGIN; CALL partition_predict.ingest('guarded', 'good')",
            "25001",
            "transaction block",
        ),
    ];
    for (sql, sqlstate, words) in cases {
        let error = client
            .batch_execute(sql)
            .expect_err(&format!("{sql} was accepted"));
        let db = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(db.code().code(), *sqlstate, "{sql}: {}", db.message());
        assert!(db.message().contains(words), "{sql}: {}", db.message());
        client.batch_execute("ROLLBACK").unwrap();
        assert_eq!(state(&mut client), unchanged, "{sql} changed something");
    }
    // The same call with a good source works, as the table's owner.
    client
        .batch_execute("CALL partition_predict.ingest('guarded', 'good')")
        .unwrap();
    assert_eq!(state(&mut client).0, unchanged.0 + 1);
    assert_eq!(rows_in_default(&mut client, "guarded"), 0);
}

/// A batch that brings four times what the forecast expected into a
/// prepared shadow is recorded against the forecast and raises an alert.
#[test]
fn ingest_scores_the_batch_against_the_forecast() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    event_table(&mut client, "scored");
    let (start, end, predicted): (String, String, f64) = {
        let row = client
            .query_one(
                "SELECT range_start, range_end, predicted_rows::float8 FROM partition_predict.partitions
                  WHERE parent = 'scored'::regclass AND state = 'shadow' ORDER BY range_start LIMIT 1",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert!(predicted > 5_000.0, "the shadow expects {predicted} rows");
    let burst = (predicted * 4.0) as i64;
    client
        .batch_execute(&format!(
            "CREATE TABLE burst (at timestamptz, v int);
             INSERT INTO burst SELECT '{start}'::timestamptz + g * (('{end}'::timestamptz - '{start}') / {burst}), g
               FROM generate_series(0, {burst} - 1) g;"
        ))
        .unwrap();
    // On its own: a query string of several statements is one transaction block.
    client
        .batch_execute("CALL partition_predict.ingest('scored', 'burst')")
        .unwrap();
    let row = client
        .query_one(
            "SELECT forecast_rows, rows_in_forecast FROM partition_predict.ingest_history WHERE parent = 'scored'::regclass",
            &[],
        )
        .unwrap();
    let (forecast_rows, rows_in_forecast): (Option<f64>, Option<i64>) = (row.get(0), row.get(1));
    assert_eq!(rows_in_forecast, Some(burst));
    assert!(
        forecast_rows.is_some_and(|f| (f - predicted).abs() < 1.0),
        "forecast_rows {forecast_rows:?}, shadow predicted {predicted}"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM partition_predict.alert_history
              WHERE parent = 'scored'::regclass AND kind = 'forecast_miss' AND details->>'event' = 'ingest'
                AND state = 'event'"
        ),
        1
    );
}

/// COPY and a large INSERT … SELECT into a managed parent: keys in the
/// shadows' ranges find them attached (the worker did it before the load
/// ran), keys beyond every shadow are moved out of DEFAULT right after the
/// commit. The worker's naptime is an hour, so only the hooks explain it.
#[test]
fn copy_into_a_managed_table_finds_its_partitions_ready() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
        ],
    );
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    wait_for("the worker", Duration::from_secs(30), || {
        (count(&mut client, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_partition_predict worker'") > 0)
            .then_some(())
    });
    event_table(&mut client, "copied");
    let shadows: Vec<(String, String)> = client
        .query(
            "SELECT range_start, range_end FROM partition_predict.partitions
              WHERE parent = 'copied'::regclass AND state = 'shadow' ORDER BY range_start",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!shadows.is_empty(), "no shadows prepared");
    let last_shadow_end = shadows.last().map(|s| s.1.clone()).unwrap_or_default();

    // Keys across every shadow: none may reach DEFAULT.
    let mut lines = String::new();
    let first = &shadows[0].0;
    let rows = 30_000;
    let start: i64 = client
        .query_one(
            &format!("SELECT extract(epoch FROM '{first}'::timestamptz)::bigint"),
            &[],
        )
        .unwrap()
        .get(0);
    let end: i64 = client
        .query_one(
            &format!("SELECT extract(epoch FROM '{last_shadow_end}'::timestamptz)::bigint"),
            &[],
        )
        .unwrap()
        .get(0);
    for i in 0..rows {
        let at = start + (end - start - 1) * i / rows;
        lines.push_str(&format!("{}\t{i}\t2\n", at_text(at)));
    }
    copy_in(&mut client, "copied", &lines);
    assert_eq!(
        rows_in_default(&mut client, "copied"),
        0,
        "COPY rows reached DEFAULT"
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM copied WHERE batch = 2"),
        rows
    );

    // Keys beyond every shadow: DEFAULT is emptied seconds after the commit.
    let mut lines = String::new();
    for i in 0..5_000 {
        lines.push_str(&format!(
            "{}\t{i}\t3\n",
            at_text(end + 10 * 86_400 + i * 10)
        ));
    }
    let committed = Instant::now();
    copy_in(&mut client, "copied", &lines);
    wait_for(
        "DEFAULT emptied after the COPY",
        Duration::from_secs(15),
        || (rows_in_default(&mut client, "copied") == 0).then_some(()),
    );
    println!(
        "DEFAULT emptied {:?} after the COPY committed",
        committed.elapsed()
    );
    // The rows did land in DEFAULT (no partition was there for them) and were moved.
    let migrated = |client: &mut Client| {
        count(
            client,
            "SELECT count(*) FROM partition_predict.migrations_history WHERE parent = 'copied'::regclass AND state = 'done'",
        )
    };
    assert!(
        migrated(&mut client) >= 1,
        "no migration ran: the far keys had a partition already"
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM copied WHERE batch = 3"),
        5_000
    );

    // A large INSERT … SELECT beyond everything, inside a transaction:
    // whatever of it reached DEFAULT leaves it after the commit.
    let far = end + 40 * 86_400;
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO copied (at, v, batch)
             SELECT to_timestamp({far}) + g * interval '1 second', g, 4 FROM generate_series(1, 20000) g;"
        ))
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    client.batch_execute("COMMIT").unwrap();
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM copied WHERE batch = 4"),
        20_000
    );
    wait_for(
        "DEFAULT emptied after the INSERT … SELECT",
        Duration::from_secs(15),
        || (rows_in_default(&mut client, "copied") == 0).then_some(()),
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM copied WHERE batch = 4"),
        20_000
    );
}

fn at_text(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let seconds = epoch_seconds.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}+00",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

fn copy_in(client: &mut Client, table: &str, lines: &str) {
    use std::io::Write;
    let mut writer = client
        .copy_in(&format!("COPY {table} (at, v, batch) FROM STDIN"))
        .unwrap();
    writer.write_all(lines.as_bytes()).unwrap();
    writer.finish().unwrap();
}

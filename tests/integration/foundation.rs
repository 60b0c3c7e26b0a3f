use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{scalar_i64, Cluster};

const EVENTS_TABLE: &str = r#"
    CREATE SCHEMA "My Schema";
    CREATE TABLE "My Schema"."Ev""ents 2024" (
        id bigint GENERATED ALWAYS AS IDENTITY,
        at timestamptz NOT NULL,
        payload text
    ) PARTITION BY RANGE (at);
    CREATE INDEX ON "My Schema"."Ev""ents 2024" (at);
    CREATE TABLE "My Schema"."Ev""ents 2024 jan" PARTITION OF "My Schema"."Ev""ents 2024"
        FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
"#;
const EVENTS: &str = r#""My Schema"."Ev""ents 2024""#;

#[test]
fn create_extension_warns_only_when_not_preloaded() {
    let preloaded = Cluster::start(true);
    let (mut client, notices) = preloaded.connect_recording_notices("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    let seen = notices.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|n| n.contains("shared_preload_libraries")),
        "unexpected warning: {seen:?}"
    );
    assert!(client
        .query_one("SELECT partition_predict.is_preloaded()", &[])
        .unwrap()
        .get::<_, bool>(0));

    let plain = Cluster::start(false);
    let (mut client, notices) = plain.connect_recording_notices("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    let seen = notices.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|n| n.starts_with("WARNING") && n.contains("not in shared_preload_libraries")),
        "no warning about the missing preload: {seen:?}"
    );
    // The SQL functions still work by hand.
    client.batch_execute(EVENTS_TABLE).unwrap();
    client
        .execute(
            &format!(
                "SELECT partition_predict.manage('{}')",
                EVENTS.replace('\'', "''")
            ),
            &[],
        )
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.managed_tables"
        ),
        1
    );
}

#[test]
fn drop_extension_keeps_user_tables_and_data() {
    let cluster = Cluster::start(true);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    client.batch_execute(EVENTS_TABLE).unwrap();
    client
        .execute(&format!("SELECT partition_predict.manage('{EVENTS}')"), &[])
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {EVENTS} (at, payload) SELECT '2024-01-01'::timestamptz + g * interval '1 hour', 'row ' || g
               FROM generate_series(0, 1999) g"
        ))
        .unwrap();
    let in_default = scalar_i64(
        &mut client,
        r#"SELECT count(*) FROM "My Schema"."Ev""ents 2024_default""#,
    );
    assert!(in_default > 0, "rows past January should be in DEFAULT");

    client
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut client, &format!("SELECT count(*) FROM {EVENTS}")),
        2000
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            r#"SELECT count(*) FROM "My Schema"."Ev""ents 2024_default""#
        ),
        in_default
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            &format!("SELECT count(*) FROM pg_inherits WHERE inhparent = '{EVENTS}'::regclass")
        ),
        2
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'partition_predict'"
        ),
        0
    );
}

/// Every setting of every managed table, one line per table.
fn managed_settings(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT concat_ws(' | ', parent, key_column, key_type, target_rows, lookahead, min_span, max_span,
                              default_partition)
               FROM partition_predict.managed_tables ORDER BY parent::text",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

type Layout = Vec<(String, String, Option<String>, Option<String>, String)>;

fn partition_layout(client: &mut postgres::Client) -> Layout {
    client
        .query(
            "SELECT parent::text, partition::text, range_start, range_end, state
               FROM partition_predict.partitions ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[test]
fn dump_and_restore_keeps_tables_managed_with_their_settings() {
    let cluster = Cluster::start(true);
    let mut client = cluster.connect("postgres");
    client.batch_execute("CREATE DATABASE source").unwrap();
    client.batch_execute("CREATE DATABASE target").unwrap();
    let mut source = cluster.connect("source");
    source
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    source.batch_execute(EVENTS_TABLE).unwrap();
    source
        .execute(
            &format!(
                "SELECT partition_predict.manage('{EVENTS}', 250000, '3 days', '1 hour', '1 mon')"
            ),
            &[],
        )
        .unwrap();
    source
        .batch_execute("CREATE TABLE readings (sensor int, n bigint) PARTITION BY RANGE (n)")
        .unwrap();
    source
        .execute(
            "SELECT partition_predict.manage('readings', 5000, '100000')",
            &[],
        )
        .unwrap();
    source
        .batch_execute(&format!(
            "INSERT INTO {EVENTS} (at) VALUES ('2024-01-02'), ('2024-03-01')"
        ))
        .unwrap();
    let before = managed_settings(&mut source);
    assert_eq!(before.len(), 2);
    assert!(
        before[0].contains("250000 | 3 days | 01:00:00 | 1 mon"),
        "{before:?}"
    );
    let before_rows = partition_layout(&mut source);

    let dump = cluster.socket_dir().join("source.dump");
    cluster.client_program("pg_dump", &["-Fc", "-f", dump.to_str().unwrap(), "source"]);
    cluster.client_program(
        "pg_restore",
        &["--exit-on-error", "-d", "target", dump.to_str().unwrap()],
    );

    let mut target = cluster.connect("target");
    assert_eq!(managed_settings(&mut target), before);
    assert_eq!(partition_layout(&mut target), before_rows);
    assert_eq!(
        scalar_i64(&mut target, &format!("SELECT count(*) FROM {EVENTS}")),
        2
    );
    // Still managed means still refused a second time.
    let err = target
        .execute("SELECT partition_predict.manage('readings')", &[])
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::DUPLICATE_OBJECT),
        "{err}"
    );
}

/// The DEFAULT partition is attached under a short lock_timeout with retries:
/// while another session holds a conflicting lock, `manage` keeps stepping
/// out of the lock queue, so readers and writers of the table are never
/// stuck behind it; once the lock is free it succeeds.
#[test]
fn manage_waits_for_locks_without_blocking_others() {
    let cluster = Cluster::start(true);
    let mut setup = cluster.connect("postgres");
    setup
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE metrics (at timestamptz NOT NULL, v float8) PARTITION BY RANGE (at);
             CREATE TABLE metrics_2024 PARTITION OF metrics FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
        )
        .unwrap();

    // A maintenance-style lock that conflicts with ATTACH (SHARE UPDATE EXCLUSIVE), held for a while.
    let mut holder = cluster.connect("postgres");
    holder
        .batch_execute("BEGIN; LOCK TABLE metrics IN SHARE UPDATE EXCLUSIVE MODE")
        .unwrap();

    let config = cluster.config("postgres");
    let manager = thread::spawn(move || {
        let mut client = config.connect(postgres::NoTls).unwrap();
        client
            .batch_execute("SET pg_partition_predict.lock_timeout = 50; SET pg_partition_predict.lock_retries = 200")
            .unwrap();
        let started = Instant::now();
        client
            .execute("SELECT partition_predict.manage('metrics')", &[])
            .map(|_| started.elapsed())
    });

    // Meanwhile ordinary traffic goes through without waiting on the manager.
    let mut worker = cluster.connect("postgres");
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_millis(1500);
    let mut inserted = 0;
    while Instant::now() < until {
        let t = Instant::now();
        worker
            .execute("INSERT INTO metrics VALUES ('2024-06-01', 1)", &[])
            .unwrap();
        worker
            .query_one("SELECT count(*) FROM metrics", &[])
            .unwrap();
        slowest = slowest.max(t.elapsed());
        inserted += 1;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a query waited {slowest:?} behind manage()"
    );
    assert!(
        !manager.is_finished(),
        "manage() should still be waiting for the lock"
    );
    holder.batch_execute("COMMIT").unwrap();

    let waited = manager
        .join()
        .unwrap()
        .expect("manage succeeds once the lock is free");
    assert!(
        waited >= Duration::from_millis(1500),
        "manage returned after {waited:?}, before the lock was free"
    );
    assert_eq!(
        scalar_i64(
            &mut setup,
            "SELECT count(*) FROM partition_predict.managed_tables"
        ),
        1
    );
    assert_eq!(
        scalar_i64(&mut setup, "SELECT count(*) FROM metrics"),
        inserted
    );
}

/// When the lock never comes free, `manage` gives up after its retries with
/// SQLSTATE 55P03 and leaves nothing behind.
#[test]
fn manage_gives_up_cleanly_when_the_lock_never_comes() {
    let cluster = Cluster::start(true);
    let mut setup = cluster.connect("postgres");
    setup
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE orders (id bigint NOT NULL) PARTITION BY RANGE (id);",
        )
        .unwrap();
    let mut holder = cluster.connect("postgres");
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE")
        .unwrap();

    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "SET pg_partition_predict.lock_timeout = 20; SET pg_partition_predict.lock_retries = 3",
        )
        .unwrap();
    let err = client
        .execute("SELECT partition_predict.manage('orders')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(
        db.code(),
        &postgres::error::SqlState::LOCK_NOT_AVAILABLE,
        "{db:?}"
    );
    assert!(
        db.message().contains("could not lock public.orders"),
        "{}",
        db.message()
    );
    assert!(db.message().contains("4 attempts"), "{}", db.message());
    holder.batch_execute("COMMIT").unwrap();

    assert_eq!(
        scalar_i64(&mut setup, "SELECT count(*) FROM partition_predict.config"),
        0
    );
    assert_eq!(
        scalar_i64(
            &mut setup,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'orders_default%'"
        ),
        0
    );
}

/// The server under test is the one the run asked for, and from PostgreSQL
/// 18 on the library names itself and its version in
/// `pg_get_loaded_modules()` (its module magic block).
#[test]
fn the_library_runs_on_the_server_asked_for_and_names_itself() {
    let cluster = Cluster::start(true);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    let major = scalar_i64(
        &mut client,
        "SELECT current_setting('server_version_num')::bigint / 10000",
    );
    if let Some(asked) = std::env::var_os("PPP_PG_BIN") {
        let asked = asked.to_string_lossy().into_owned();
        // The major is the last number in the path: /usr/lib/postgresql/15/bin,
        // /opt/pg_partition_predict/pg17/bin.
        let expected: i64 = asked
            .split(|c: char| !c.is_ascii_digit())
            .filter(|part| !part.is_empty())
            .last()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert_eq!(major, expected, "server from {asked}");
    }
    let extension_version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_partition_predict'",
            &[],
        )
        .unwrap()
        .get(0);
    if major >= 18 {
        let row = client
            .query_one(
                "SELECT module_name, version FROM pg_get_loaded_modules()
                 WHERE file_name LIKE 'pg_partition_predict%'",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "pg_partition_predict");
        assert_eq!(row.get::<_, String>(1), extension_version);
    }
}

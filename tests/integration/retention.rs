//! Data retention: only partitions whose every key is past `keep` go, the
//! data is checked, nothing queues behind the drop, the worker archives,
//! and only the owner decides.

use std::time::{Duration, Instant};

use postgres::Client;

use crate::cluster::{flush_stats, partition_names, scalar_i64, wait_for, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

fn sqlstate<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    result
        .expect_err("expected an error")
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_default()
}

/// `ev`, keyed by time: day partitions for the 11 days before today
/// (days 0 and 1, then one wide partition over days 2–7, then days 8, 9
/// and 10), 24 rows a day up to the last hour of day 9 (the frontier).
/// With `keep => '4 days'` the boundary falls on day 5: days 0 and 1
/// expire, the wide partition reaches past it and holds rows on both sides.
fn days_of_events(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE ev (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
             CREATE TEMP TABLE base AS SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') - interval '11 days' AS t0;
             DO $$
             DECLARE t0 timestamptz := (SELECT t0 FROM base);
             BEGIN
               EXECUTE format('CREATE TABLE ev_d0 PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', t0, t0 + interval '1 day');
               EXECUTE format('CREATE TABLE ev_d1 PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', t0 + interval '1 day', t0 + interval '2 days');
               EXECUTE format('CREATE TABLE ev_wide PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', t0 + interval '2 days', t0 + interval '8 days');
               EXECUTE format('CREATE TABLE ev_d8 PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', t0 + interval '8 days', t0 + interval '9 days');
               EXECUTE format('CREATE TABLE ev_d9 PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', t0 + interval '9 days', t0 + interval '11 days');
               INSERT INTO ev SELECT t0 + g * interval '1 hour', g FROM generate_series(0, 10 * 24 - 1) g;
             END $$;
             CREATE INDEX ON ev (at);",
        )
        .unwrap();
}

/// (partition, action) of the preview or of what was done.
fn verdicts(client: &mut Client, sql: &str) -> Vec<(String, String)> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(3)))
        .collect()
}

#[test]
fn only_partitions_wholly_past_keep_expire_and_the_wide_one_keeps_its_rows() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    days_of_events(&mut client);
    client
        .batch_execute("SELECT partition_predict.manage('ev', keep => '4 days', expired => 'drop')")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('ev')")
        .unwrap();
    let rows_before = scalar_i64(&mut client, "SELECT count(*) FROM ev");

    // The dry run says what would happen and does nothing.
    let preview = verdicts(
        &mut client,
        "SELECT * FROM partition_predict.retention_preview('ev')",
    );
    assert_eq!(
        preview,
        vec![
            ("public.ev_d0".to_string(), "drop".to_string()),
            ("public.ev_d1".to_string(), "drop".to_string()),
            ("public.ev_wide".to_string(), "keep".to_string()),
        ]
    );
    let reason: String = client
        .query_one(
            "SELECT reason FROM partition_predict.retention_preview('ev') WHERE partition = 'public.ev_wide'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.contains("reaches past the boundary"), "{reason}");
    assert!(partition_names(&mut client, "ev").contains(&"ev_d0".to_string()));

    let done = verdicts(
        &mut client,
        "SELECT * FROM partition_predict.apply_retention('ev')",
    );
    assert_eq!(
        done,
        vec![
            ("public.ev_d0".to_string(), "drop".to_string()),
            ("public.ev_d1".to_string(), "drop".to_string()),
        ]
    );
    // (Ranges the cycle made ahead, ev_p…, depend on today's weekday.)
    let made_by_hand: Vec<String> = partition_names(&mut client, "ev")
        .into_iter()
        .filter(|name| !name.starts_with("ev_p"))
        .collect();
    assert_eq!(
        made_by_hand,
        vec!["ev_d8", "ev_d9", "ev_default", "ev_wide"]
    );
    // Exactly the two expired days went; the wide partition kept the old
    // rows it holds beside the rows within retention.
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ev"),
        rows_before - 48
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ev_wide"),
        6 * 24
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alert_history WHERE kind = 'retention' AND state = 'event'"
        ),
        2
    );
    // Nothing more expires until the boundary passes the wide partition.
    assert!(verdicts(
        &mut client,
        "SELECT * FROM partition_predict.apply_retention('ev')"
    )
    .is_empty());
}

#[test]
fn the_worker_archives_expired_partitions_of_an_integer_key() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
        ],
    );
    let mut client = cluster.connect("postgres");
    let cold = cluster.server_owned_dir("cold");
    client
        .batch_execute(&format!(
            "CREATE TABLESPACE cold LOCATION '{}'",
            cold.display()
        ))
        .unwrap();
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE SCHEMA attic;
             CREATE TABLE ids (id bigint NOT NULL, v int) PARTITION BY RANGE (id);
             CREATE TABLE ids_0 PARTITION OF ids FOR VALUES FROM (0) TO (1000);
             CREATE TABLE ids_1 PARTITION OF ids FOR VALUES FROM (1000) TO (2000);
             CREATE TABLE ids_2 PARTITION OF ids FOR VALUES FROM (2000) TO (3000);
             CREATE TABLE ids_3 PARTITION OF ids FOR VALUES FROM (3000) TO (4000);
             CREATE INDEX ON ids (id);
             INSERT INTO ids SELECT g, g FROM generate_series(0, 3499) g;
             SELECT partition_predict.manage('ids', target_rows => 1000,
                    keep => '1480', expired => 'archive', archive_schema => 'attic',
                    archive_tablespace => 'cold');",
        )
        .unwrap();
    flush_stats(&mut client);
    // The reference is the 16th highest key (3484, through the index): keys
    // from 3484 - 1480 = 2004 on are kept, so ids_0 and ids_1 go.
    let archived = wait_for(
        "the worker to archive ids_0 and ids_1",
        Duration::from_secs(60),
        || {
            let names: Vec<String> = client
            .query(
                "SELECT relname::text FROM pg_class WHERE relnamespace = 'attic'::regnamespace AND relkind = 'r' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
            (names.len() == 2).then_some(names)
        },
    );
    assert_eq!(archived, vec!["ids_0", "ids_1"]);
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM attic.ids_0"),
        1000
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM attic.ids_1"),
        1000
    );
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ids"), 1500);
    // Moved after the detach committed, indexes along.
    wait_for(
        "the archived tables and their indexes in tablespace cold",
        Duration::from_secs(30),
        || {
            (scalar_i64(
                &mut client,
                "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
              WHERE c.relnamespace = 'attic'::regnamespace AND t.spcname = 'cold'",
            ) == 4)
                .then_some(())
        },
    );
    assert_eq!(scalar_i64(&mut client, "SELECT min(id) FROM ids"), 2000);
    let events = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.alert_history
          WHERE kind = 'retention' AND state = 'event' AND details->>'now' LIKE 'attic.%'",
    );
    assert_eq!(events, 2);
}

/// A report reading the table holds its lock: the drop waits its turn
/// without making anyone else wait behind it, and happens after.
#[test]
fn an_expiring_partition_never_makes_queries_queue() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.lock_timeout = '50ms'",
            "pg_partition_predict.lock_retries = 2",
        ],
    );
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    days_of_events(&mut client);
    let mut report = cluster.connect("postgres");
    report
        .batch_execute("BEGIN; SELECT count(*) FROM ev")
        .unwrap();
    client
        .batch_execute("SELECT partition_predict.manage('ev', keep => '4 days', expired => 'drop')")
        .unwrap();
    flush_stats(&mut client);
    wait_for(
        "the partition that could not expire alerted",
        Duration::from_secs(60),
        || {
            (scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE kind = 'retention' AND subject = 'public.ev_d0' AND message LIKE '%could not lock%'",
        ) > 0)
            .then_some(())
        },
    );
    // While the worker keeps trying, queries run without waiting for it.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        client.batch_execute("SELECT count(*) FROM ev").unwrap();
        client
            .batch_execute("INSERT INTO ev VALUES (now() - interval '1 day', 0)")
            .unwrap();
        worst = worst.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        worst < Duration::from_millis(500),
        "a query waited {worst:?}"
    );
    assert!(partition_names(&mut client, "ev").contains(&"ev_d0".to_string()));
    report.batch_execute("COMMIT").unwrap();
    wait_for(
        "the expired partitions to be dropped",
        Duration::from_secs(60),
        || {
            let parts = partition_names(&mut client, "ev");
            (!parts.contains(&"ev_d0".to_string()) && !parts.contains(&"ev_d1".to_string()))
                .then_some(())
        },
    );
    wait_for(
        "the retention alerts resolved",
        Duration::from_secs(30),
        || {
            (scalar_i64(
                &mut client,
                "SELECT count(*) FROM partition_predict.alerts WHERE kind = 'retention'",
            ) == 0)
                .then_some(())
        },
    );
}

#[test]
fn only_the_owner_sets_or_previews_retention() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE mallory LOGIN;
             CREATE ROLE owner_role LOGIN;
             GRANT CREATE ON SCHEMA public TO mallory, owner_role;
             CREATE SCHEMA locked;",
        )
        .unwrap();
    let mut owner = cluster.connect_as("postgres", "owner_role");
    days_of_events(&mut owner);
    owner
        .batch_execute("GRANT SELECT ON ev TO mallory; SELECT partition_predict.manage('ev')")
        .unwrap();
    let mut mallory = cluster.connect_as("postgres", "mallory");
    for sql in [
        "SELECT partition_predict.set_retention('ev', '1 day', 'drop')",
        "SELECT * FROM partition_predict.retention_preview('ev')",
        "SELECT * FROM partition_predict.apply_retention('ev')",
    ] {
        assert_eq!(sqlstate(mallory.batch_execute(sql)), "42501", "{sql}");
    }
    // The owner cannot archive into a schema it may not create tables in:
    // the worker would act with its rights.
    assert_eq!(
        sqlstate(owner.batch_execute(
            "SELECT partition_predict.set_retention('ev', '1 day', 'archive', archive_schema => 'locked')"
        )),
        "22023"
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.config WHERE keep IS NOT NULL"
        ),
        0
    );
}

/// Hours are elapsed time even across a daylight-saving change: with
/// `keep => '24 hours'` on a Berlin table, the day the clocks go forward
/// keeps exactly the last 24 hours, not 23.
#[test]
fn keep_in_hours_is_elapsed_time_across_a_daylight_saving_change() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE dst (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             DO $$
             DECLARE h timestamptz;
             BEGIN
               FOR h IN SELECT generate_series('2026-03-28 06:00+00'::timestamptz, '2026-03-29 10:00+00', interval '1 hour') LOOP
                 EXECUTE format('CREATE TABLE %I PARTITION OF dst FOR VALUES FROM (%L) TO (%L)',
                                'dst_' || to_char(h AT TIME ZONE 'UTC', 'MMDD_HH24'), h, h + interval '1 hour');
               END LOOP;
             END $$;
             INSERT INTO dst SELECT generate_series('2026-03-28 06:30+00'::timestamptz, '2026-03-29 10:00+00', interval '1 hour');
             INSERT INTO dst VALUES ('2026-03-29 10:00+00');
             CREATE INDEX ON dst (at);
             SELECT partition_predict.manage('dst', time_zone => 'Europe/Berlin', keep => '24 hours', expired => 'drop');",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('dst')")
        .unwrap();
    let expiring: Vec<String> = client
        .query(
            "SELECT partition FROM partition_predict.retention_preview('dst') WHERE action = 'drop' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The newest row is at 10:00 UTC on the 29th: everything from 10:00 UTC
    // on the 28th stays, the four hours before it go.
    assert_eq!(
        expiring,
        vec![
            "public.dst_0328_06",
            "public.dst_0328_07",
            "public.dst_0328_08",
            "public.dst_0328_09"
        ]
    );
    client
        .batch_execute("SELECT * FROM partition_predict.apply_retention('dst')")
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM dst WHERE at >= '2026-03-28 10:00+00'"
        ),
        25
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM dst WHERE at < '2026-03-28 10:00+00'"
        ),
        0
    );
}

/// A partition the archive cannot take (its name is taken there) stays
/// attached, alerted, without being detached and rolled back each time;
/// the next one is archived.
#[test]
fn a_partition_the_archive_cannot_take_stays_and_the_others_go() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE SCHEMA attic;
             CREATE TABLE attic.ids_0 (taken int);
             CREATE TABLE ids (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE ids_0 PARTITION OF ids FOR VALUES FROM (0) TO (1000);
             CREATE TABLE ids_1 PARTITION OF ids FOR VALUES FROM (1000) TO (2000);
             CREATE TABLE ids_2 PARTITION OF ids FOR VALUES FROM (2000) TO (3000);
             INSERT INTO ids SELECT generate_series(0, 2999);
             SELECT partition_predict.manage('ids', keep => '900', expired => 'archive', archive_schema => 'attic');",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('ids')")
        .unwrap();
    let reason: String = client
        .query_one(
            "SELECT action || ': ' || reason FROM partition_predict.retention_preview('ids') WHERE partition = 'public.ids_0'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        reason.starts_with("keep: archive schema attic already has a relation named ids_0"),
        "{reason}"
    );
    let done: Vec<String> = client
        .query(
            "SELECT partition FROM partition_predict.apply_retention('ids')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(done, vec!["public.ids_1"]);
    let left = partition_names(&mut client, "ids");
    assert!(
        left.contains(&"ids_0".to_string()) && !left.contains(&"ids_1".to_string()),
        "{left:?}"
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM attic.ids_1"),
        1000
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts
              WHERE kind = 'retention' AND subject = 'public.ids_0' AND message LIKE '%already has a relation named ids_0%'"
        ),
        1
    );
}

/// Names are looked up when a statement runs, and renaming a schema takes
/// no lock on its tables: a blue/green swap of schemas while retention
/// waits for its lock must not make it drop the new deployment's
/// partition. The step is rolled back, and tried again by name later.
#[test]
fn a_schema_swapped_while_retention_waits_loses_nothing() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE SCHEMA app; CREATE SCHEMA app_new;
             CREATE TABLE app.ev (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE app.ev_p0 PARTITION OF app.ev FOR VALUES FROM (0) TO (1000);
             CREATE TABLE app.ev_p1 PARTITION OF app.ev FOR VALUES FROM (1000) TO (3000);
             INSERT INTO app.ev SELECT generate_series(0, 2999);
             CREATE TABLE app_new.ev (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE app_new.ev_p0 PARTITION OF app_new.ev FOR VALUES FROM (0) TO (1000);
             INSERT INTO app_new.ev VALUES (7);
             SELECT partition_predict.manage('app.ev', keep => '1000', expired => 'drop');",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('app.ev')")
        .unwrap();
    // A report holds the old table's partitions: the DROP has to wait.
    let mut report = cluster.connect("postgres");
    report
        .batch_execute("BEGIN; SELECT count(*) FROM app.ev")
        .unwrap();
    let config = cluster.config("postgres");
    let retention = std::thread::spawn(move || {
        let mut client = config.connect(postgres::NoTls).unwrap();
        client
            .batch_execute("SET pg_partition_predict.lock_timeout = '100ms'; SET pg_partition_predict.lock_retries = 40")
            .unwrap();
        client
            .query(
                "SELECT partition FROM partition_predict.apply_retention('app.ev')",
                &[],
            )
            .unwrap()
            .len()
    });
    std::thread::sleep(Duration::from_millis(600));
    client
        .batch_execute("ALTER SCHEMA app RENAME TO app_old; ALTER SCHEMA app_new RENAME TO app")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    report.batch_execute("COMMIT").unwrap();
    let expired = retention.join().unwrap();
    assert_eq!(expired, 0, "retention reported a partition expired");
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM app.ev"),
        1,
        "the new deployment lost its row"
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM app_old.ev_p0"),
        1000
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE kind = 'retention' AND message LIKE '%acted on another table%'"
        ),
        1
    );
}

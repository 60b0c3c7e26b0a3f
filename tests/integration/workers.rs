//! Background workers and statistics collection (cycle step 1).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::cluster::{flush_stats, scalar_i64, wait_for, Cluster};

const FAST_WORKER: &[&str] = &["pg_partition_predict.naptime = 1"];
/// No worker: tests that call collect_stats() by hand and want no interleaving.
const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

fn worker_cycles(client: &mut Client) -> Option<(i32, i64, String)> {
    client
        .query_opt("SELECT pid, cycles, state FROM partition_predict.worker_status WHERE database = 'postgres'", &[])
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Waits until the worker has cycled the managed tables once (their baseline).
fn wait_for_first_cycle(client: &mut Client) {
    wait_for("a first cycle", Duration::from_secs(15), || {
        (scalar_i64(
            client,
            "SELECT coalesce(max(cycles), 0) FROM partition_predict.managed_tables",
        ) >= 1)
            .then_some(())
    });
}

fn daily_events_table(client: &mut Client, name: &str, days: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int)
                 PARTITION BY RANGE (at);
             CREATE INDEX ON {name} (at);"
        ))
        .unwrap();
    for day in 0..days {
        client
            .batch_execute(&format!(
                "CREATE TABLE {name}_d{day} PARTITION OF {name}
                     FOR VALUES FROM ('2024-01-01'::timestamptz + {day} * interval '1 day')
                                  TO ('2024-01-01'::timestamptz + {} * interval '1 day')",
                day + 1
            ))
            .unwrap();
    }
    client
        .execute(&format!("SELECT partition_predict.manage('{name}')"), &[])
        .unwrap();
}

/// Rows inserted while the worker cycles show up in stats_history as
/// per-partition deltas that add up exactly; worker_status shows it cycling.
#[test]
fn worker_samples_add_up_to_the_rows_inserted() {
    let cluster = Cluster::start_with(true, FAST_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    daily_events_table(&mut client, "events", 3);
    // The first cycle of a table is its baseline.
    wait_for_first_cycle(&mut client);

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let batches = [(0, 120), (1, 7), (0, 33), (2, 500), (1, 1), (2, 64)];
    for (day, rows) in batches {
        client
            .batch_execute(&format!(
                "INSERT INTO events (at, v) SELECT '2024-01-01'::timestamptz + {day} * interval '1 day'
                                                   + g * interval '1 second', g
                   FROM generate_series(1, {rows}) g"
            ))
            .unwrap();
        flush_stats(&mut client);
        *expected.entry(format!("public.events_d{day}")).or_default() += rows;
        std::thread::sleep(Duration::from_millis(600));
    }
    let total: i64 = expected.values().sum();
    wait_for(
        "stats_history to account for every row",
        Duration::from_secs(20),
        || {
            (scalar_i64(&mut client, "SELECT coalesce(sum(rows_inserted), 0)::bigint FROM partition_predict.stats_history")
            == total)
            .then_some(())
        },
    );
    let per_partition: BTreeMap<String, i64> = client
        .query(
            "SELECT partition_name, sum(rows_inserted)::bigint FROM partition_predict.stats_history
              GROUP BY 1 HAVING sum(rows_inserted) > 0",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_partition, expected);
    // Nobody read the DEFAULT partition but the collector itself, which counts
    // it exactly every cycle: that must not show up as traffic.
    assert_eq!(
        scalar_i64(&mut client, "SELECT coalesce(sum(seq_scans + idx_scans), 0)::bigint FROM partition_predict.stats_history WHERE is_default"),
        0
    );
    let samples = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.stats_history WHERE rows_inserted > 0",
    );
    assert!(
        samples >= 2,
        "the inserts were spread over several samples, got {samples}"
    );

    let (_, cycles_before, _) = worker_cycles(&mut client).expect("worker_status row");
    std::thread::sleep(Duration::from_millis(2500));
    let (pid, cycles_after, state) = worker_cycles(&mut client).unwrap();
    assert!(
        cycles_after >= cycles_before + 2,
        "worker cycles {cycles_before} -> {cycles_after}"
    );
    assert!(
        pid > 0 && (state == "sleeping" || state == "cycling"),
        "state {state}"
    );
    let frontier: String = client
        .query_one("SELECT frontier FROM partition_predict.stats_history WHERE partition_name = 'public.events_d2' ORDER BY sampled_at DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        frontier, "2024-01-03 00:08:20+00",
        "highest key of the last day (500 seconds in)"
    );
}

/// pg_stat_reset() in the middle of a run: no negative delta, no spike, and
/// the deltas still add up to what was inserted after the baseline.
#[test]
fn stats_reset_gives_no_negative_delta_and_no_spike() {
    let cluster = Cluster::start_with(true, FAST_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    daily_events_table(&mut client, "events", 1);
    wait_for_first_cycle(&mut client);
    let insert = |client: &mut Client, rows: i64| {
        client
            .batch_execute(&format!(
                "INSERT INTO events (at) SELECT '2024-01-01'::timestamptz + g * interval '1 second'
                   FROM generate_series(1, {rows}) g"
            ))
            .unwrap();
        flush_stats(client);
    };
    insert(&mut client, 1000);
    wait_for(
        "the first batch to be sampled",
        Duration::from_secs(15),
        || {
            (scalar_i64(&mut client, "SELECT coalesce(sum(rows_inserted), 0)::bigint FROM partition_predict.stats_history") == 1000)
            .then_some(())
        },
    );
    client.batch_execute("SELECT pg_stat_reset()").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    insert(&mut client, 10);
    wait_for(
        "the batch after the reset to be sampled",
        Duration::from_secs(15),
        || {
            (scalar_i64(&mut client, "SELECT coalesce(sum(rows_inserted), 0)::bigint FROM partition_predict.stats_history") >= 1010)
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (min, max, sum): (i64, i64, i64) = {
        let r = client
            .query_one(
                "SELECT min(least(rows_inserted, rows_updated, rows_deleted, seq_scans, idx_scans)),
                        max(rows_inserted), sum(rows_inserted)::bigint
                   FROM partition_predict.stats_history",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert!(min >= 0, "negative delta {min}");
    assert!(max <= 1000, "a spike of {max} rows");
    assert_eq!(sum, 1010);
}

/// One table's failing cycle (its owner lost the right to read it) is
/// recorded and alerted, and the other table keeps cycling.
#[test]
fn a_failing_table_does_not_stop_the_others() {
    let cluster = Cluster::start_with(true, FAST_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE team;
             CREATE TABLE healthy (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE broken (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE broken_1 PARTITION OF broken FOR VALUES FROM (0) TO (1000);
             ALTER TABLE healthy OWNER TO team;
             ALTER TABLE broken OWNER TO team;
             ALTER TABLE broken_1 OWNER TO team;
             SELECT partition_predict.manage('healthy');
             SELECT partition_predict.manage('broken');
             INSERT INTO broken VALUES (1);",
        )
        .unwrap();
    let (mut listener, _) = cluster.connect_recording_notices("postgres");
    listener
        .batch_execute("LISTEN partition_predict_alerts")
        .unwrap();
    // The owner can no longer read its partition: a superuser could, the owner cannot.
    client
        .batch_execute("REVOKE ALL ON broken_1 FROM team")
        .unwrap();
    client
        .batch_execute("INSERT INTO broken VALUES (2)")
        .unwrap();
    flush_stats(&mut client);

    let error = wait_for(
        "the broken table's failure",
        Duration::from_secs(15),
        || {
            client
            .query_opt(
                "SELECT last_error FROM partition_predict.managed_tables WHERE parent = 'broken'::regclass AND state = 'failing'",
                &[],
            )
            .unwrap()
            .map(|r| r.get::<_, String>(0))
        },
    );
    assert!(error.contains("permission denied"), "{error}");
    let healthy_before = scalar_i64(
        &mut client,
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'healthy'::regclass",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let healthy_after = scalar_i64(
        &mut client,
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'healthy'::regclass",
    );
    assert!(
        healthy_after >= healthy_before + 2,
        "healthy table cycles {healthy_before} -> {healthy_after}"
    );
    let state: String = client
        .query_one(
            "SELECT state FROM partition_predict.managed_tables WHERE parent = 'healthy'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "ok");

    let alert: String = client
        .query_one(
            "SELECT message FROM partition_predict.alerts WHERE parent = 'broken'::regclass AND kind = 'failure' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(alert.contains("permission denied"), "{alert}");
    let notification = wait_for(
        "a NOTIFY on partition_predict_alerts",
        Duration::from_secs(10),
        || {
            let mut notifications = listener.notifications();
            let mut iter = notifications.timeout_iter(Duration::from_millis(200));
            postgres::fallible_iterator::FallibleIterator::next(&mut iter)
                .ok()
                .flatten()
        },
    );
    assert!(
        notification.payload().contains("\"kind\":\"failure\""),
        "{}",
        notification.payload()
    );
    assert!(cluster
        .log()
        .contains("pg_partition_predict alert (failure, critical, raised) on public.broken"));

    // A managed table dropped while the worker runs just disappears from its list.
    client.batch_execute("DROP TABLE broken").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let healthy_later = scalar_i64(
        &mut client,
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'healthy'::regclass",
    );
    assert!(healthy_later > healthy_after);
}

/// SIGHUP applies a new naptime; a worker killed with SIGTERM is restarted
/// by the launcher; a fast shutdown is prompt with workers running.
#[test]
fn workers_follow_reload_restart_and_shutdown() {
    let cluster = Cluster::start_with(true, &["pg_partition_predict.naptime = 3600"]);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    // The worker found no extension at its first cycle; a reload wakes it and it picks it up.
    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.naptime = 3600")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let (pid, cycles, _) = wait_for("the worker to appear", Duration::from_secs(15), || {
        worker_cycles(&mut client)
    });
    std::thread::sleep(Duration::from_millis(2000));
    let (_, still, _) = worker_cycles(&mut client).unwrap();
    assert!(
        still <= cycles + 1,
        "naptime 3600 s but cycles went {cycles} -> {still}"
    );

    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.naptime = 1")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(
        "cycles every second after the reload",
        Duration::from_secs(10),
        || {
            let (_, now, _) = worker_cycles(&mut client).unwrap();
            (now >= still + 3).then_some(())
        },
    );

    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let (new_pid, _, _) = wait_for(
        "the launcher to restart the worker",
        Duration::from_secs(20),
        || worker_cycles(&mut client).filter(|(p, _, state)| *p != pid && state != "stopped"),
    );
    assert_ne!(new_pid, pid);
    drop(client);

    let took = cluster.stop_fast();
    assert!(
        took < Duration::from_secs(10),
        "pg_ctl stop -m fast took {took:?}"
    );
}

/// The key-time series (rows per hour of the key's own time) is the same
/// whether 14 days of history are loaded in one go or hour by hour.
#[test]
fn replay_and_real_time_arrival_give_the_same_key_time_series() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    daily_events_table(&mut client, "replayed", 14);
    daily_events_table(&mut client, "live", 14);
    client
        .batch_execute("SELECT partition_predict.collect_stats()")
        .unwrap();

    // Rows per hour follow a daily pattern: 5 + (hour of day) rows.
    let hour_rows = |hour: u32| 5 + (hour % 24);
    let insert_hour = |client: &mut Client, table: &str, hour: u32| {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (at, v) SELECT '2024-01-01'::timestamptz + {hour} * interval '1 hour'
                                                    + g * (interval '1 hour' / {n}), g
                   FROM generate_series(0, {n} - 1) g",
                n = hour_rows(hour)
            ))
            .unwrap();
    };
    let mut loader = cluster.connect("postgres");
    for hour in 0..14 * 24 {
        insert_hour(&mut loader, "replayed", hour);
    }
    flush_stats(&mut loader);
    client
        .batch_execute("SELECT partition_predict.collect_stats('replayed')")
        .unwrap();

    for hour in 0..14 * 24 {
        insert_hour(&mut loader, "live", hour);
        flush_stats(&mut loader);
        client
            .batch_execute("SELECT partition_predict.collect_stats('live')")
            .unwrap();
    }

    let series = |client: &mut Client, table: &str| -> Vec<(String, i64)> {
        client
            .query(
                &format!(
                    "SELECT bucket_start::text, rows FROM partition_predict.key_time_series
                      WHERE parent = '{table}'::regclass ORDER BY bucket_start"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let replayed = series(&mut client, "replayed");
    let live = series(&mut client, "live");
    assert_eq!(replayed.len(), 14 * 24);
    assert_eq!(replayed, live);
    let expected: Vec<i64> = (0..14 * 24).map(|h| hour_rows(h) as i64).collect();
    assert_eq!(
        replayed.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(replayed[0].0, "2024-01-01 00:00:00+00");
}

/// The worker acts with the table owner's rights and a safe search_path:
/// functions and operators the owner planted in a schema on the default
/// search_path are never executed by it.
#[test]
fn worker_never_runs_code_planted_by_the_table_owner() {
    let cluster = Cluster::start_with(true, FAST_WORKER);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE app LOGIN;
             CREATE SCHEMA app AUTHORIZATION app;
             GRANT CREATE ON SCHEMA public TO app;",
        )
        .unwrap();
    let mut app = cluster
        .config("postgres")
        .user("app")
        .connect(postgres::NoTls)
        .unwrap();
    app.batch_execute(
        r#"
        CREATE TABLE public.calls (what text, caller text);
        CREATE FUNCTION public.spy_count(anyelement) RETURNS bigint LANGUAGE sql VOLATILE AS
            $$ INSERT INTO public.calls VALUES ('count', current_user); SELECT 0::bigint $$;
        CREATE FUNCTION public.count(anyelement) RETURNS bigint LANGUAGE sql VOLATILE AS
            $$ SELECT public.spy_count($1) $$;
        CREATE FUNCTION public.spy_eq(regclass, regclass) RETURNS boolean LANGUAGE sql VOLATILE AS
            $$ INSERT INTO public.calls VALUES ('=', current_user); SELECT $1::oid = $2::oid $$;
        CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = public.spy_eq);
        CREATE FUNCTION public.date_trunc(text, timestamptz) RETURNS timestamptz LANGUAGE sql VOLATILE AS
            $$ INSERT INTO public.calls VALUES ('date_trunc', current_user); SELECT pg_catalog.date_trunc($1, $2) $$;
        CREATE TABLE app.readings (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
        CREATE TABLE app.readings_1 PARTITION OF app.readings FOR VALUES FROM ('2024-01-01') TO ('2024-01-04');
        SELECT partition_predict.manage('app.readings');
        "#,
    )
    .unwrap();
    // The trap works: an unqualified `=` on regclass in a normal session picks the planted operator.
    app.batch_execute("SELECT 'app.readings'::regclass = 'app.readings'::regclass")
        .unwrap();
    assert_eq!(scalar_i64(&mut app, "WITH d AS (DELETE FROM public.calls WHERE what = '=' RETURNING 1) SELECT count(*) FROM d"), 1);

    // Three days of readings, one day per batch: enough for a forecast, so
    // the worker also plans, creates and attaches shadows as the owner.
    for day in 0..3 {
        app.batch_execute(&format!(
            "INSERT INTO app.readings SELECT '2024-01-01'::timestamptz + interval '{day} days' + g * interval '3 minutes', g
               FROM generate_series(0, 479) g"
        ))
        .unwrap();
        flush_stats(&mut app);
        std::thread::sleep(Duration::from_millis(1200));
    }
    wait_for(
        "the worker to sample app.readings",
        Duration::from_secs(15),
        || {
            (scalar_i64(&mut admin, "SELECT coalesce(sum(rows_inserted), 0)::bigint FROM partition_predict.stats_history") == 1440)
            .then_some(())
        },
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM public.calls"),
        0,
        "planted code was executed"
    );
    // What the extension created for the table belongs to the table's owner.
    let owner: String = admin
        .query_one("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'app.readings_default'::regclass", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app");
    wait_for(
        "the worker to prepare shadows",
        Duration::from_secs(15),
        || {
            (scalar_i64(&mut admin, "SELECT count(*) FROM partition_predict.shadows") >= 1)
                .then_some(())
        },
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.shadows s JOIN pg_class c ON c.oid = s.shadow
              WHERE pg_get_userbyid(c.relowner) <> 'app'"
        ),
        0,
        "shadows made by the worker belong to the table's owner"
    );
    assert!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.shadows WHERE activated_at IS NOT NULL"
        ) >= 1
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM public.calls"),
        0,
        "planted code was executed"
    );
}

/// One cycle over a table with 1,000 partitions takes well under a second
/// and a bounded number of statements, not one per partition.
#[test]
fn collection_cost_is_bounded_for_a_thousand_partitions() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE wide (id bigint NOT NULL, v int) PARTITION BY RANGE (id);
             CREATE INDEX ON wide (id);
             DO $$ BEGIN
                 FOR g IN 0..999 LOOP
                     EXECUTE format('CREATE TABLE wide_%s PARTITION OF wide FOR VALUES FROM (%s) TO (%s)',
                                    g, g * 1000, (g + 1) * 1000);
                 END LOOP;
             END $$;
             SELECT partition_predict.manage('wide');",
        )
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'wide'::regclass"
        ),
        1001
    );
    let run = |client: &mut Client| -> (f64, i64, i64) {
        let started = Instant::now();
        let row = client
            .query_one(
                "SELECT queries, partitions_sampled FROM partition_predict.run_cycle('wide')",
                &[],
            )
            .unwrap();
        (
            started.elapsed().as_secs_f64() * 1e3,
            row.get(0),
            row.get(1),
        )
    };
    let (baseline_ms, baseline_queries, _) = run(&mut client);
    client
        .batch_execute("INSERT INTO wide SELECT g, g FROM generate_series(0, 2999) g")
        .unwrap();
    flush_stats(&mut client);
    let (steady_ms, steady_queries, sampled) = run(&mut client);
    println!(
        "1,000 partitions: first cycle {baseline_ms:.0} ms / {baseline_queries} statements, \
         next cycle {steady_ms:.0} ms / {steady_queries} statements ({sampled} partitions changed)"
    );
    assert!(
        baseline_ms < 1000.0 && steady_ms < 1000.0,
        "cycle took {baseline_ms:.0} / {steady_ms:.0} ms"
    );
    assert_eq!(sampled, 3, "three partitions received rows");
    // Fixed statements plus one frontier read per changed partition.
    assert!(steady_queries <= 10 + 3, "{steady_queries} statements");
    assert!(
        baseline_queries <= 10,
        "{baseline_queries} statements for a table of empty partitions"
    );
}

/// The worker and a DBA running run_cycle() by hand on the same table at
/// the same time: the per-table lock makes one wait or skip, never fail.
#[test]
fn manual_cycles_beside_the_worker_never_collide() {
    let cluster = Cluster::start_with(true, FAST_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    daily_events_table(&mut client, "shared", 3);
    let mut loader = cluster.connect("postgres");
    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < Duration::from_secs(4) {
        loader
            .batch_execute(&format!(
                "INSERT INTO shared (at, v) SELECT '2024-01-01'::timestamptz + ({cycles} * 60 + g) * interval '1 second', g
                   FROM generate_series(1, 50) g"
            ))
            .unwrap();
        flush_stats(&mut loader);
        let error: Option<String> = client
            .query_one(
                "SELECT error FROM partition_predict.run_cycle('shared')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(error, None);
        cycles += 1;
    }
    assert!(cycles >= 5);
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE kind = 'failure'"
        ),
        0
    );
    let (worker_errors, failures): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT coalesce(max(errors), 0) FROM partition_predict.worker_status),
                        (SELECT failures FROM partition_predict.managed_tables WHERE parent = 'shared'::regclass)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((worker_errors, failures), (0, 0));
    assert_eq!(
        scalar_i64(&mut client, "SELECT sum(rows)::bigint FROM partition_predict.key_time_series WHERE parent = 'shared'::regclass"),
        scalar_i64(&mut client, "SELECT count(*) FROM shared"),
        "the key-time series counts every row exactly once"
    );
}

fn key_time_total(client: &mut Client, table: &str) -> i64 {
    scalar_i64(
        client,
        &format!(
            "SELECT coalesce(sum(rows), 0)::bigint FROM partition_predict.key_time_series
              WHERE parent = '{table}'::regclass"
        ),
    )
}

fn rows_in_hour(client: &mut Client, table: &str, hour: &str) -> i64 {
    scalar_i64(
        client,
        &format!(
            "SELECT coalesce(sum(rows), 0)::bigint FROM partition_predict.key_time_series
              WHERE parent = '{table}'::regclass AND bucket_start = '{hour}'::timestamptz"
        ),
    )
}

/// What step 1 of the last cycle of `table` read of the table.
fn collect_rows_read(client: &mut Client, table: &str) -> i64 {
    scalar_i64(
        client,
        &format!(
            "SELECT last_rows_read FROM partition_predict.cycle_costs
              WHERE parent = '{table}'::regclass AND step = 'collect'"
        ),
    )
}

/// A cycle reads the rows that arrived since the previous one, not the
/// partition they arrived in, index or no index: late rows are counted into
/// their own hour, a bulk load is read from a bounded sample, and the
/// key-time series still adds up to the rows present. A DELETE is reflected
/// by the next cycle's recount of the (small) partition.
#[test]
fn a_cycle_reads_what_arrived_not_the_partition() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE big (id bigint NOT NULL, at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
             CREATE TABLE big_2024 PARTITION OF big FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             INSERT INTO big SELECT g, '2024-01-01'::timestamptz + g * interval '10 seconds', g
               FROM generate_series(0, 199999) g;
             SELECT partition_predict.manage('big', lookahead => '1 day');",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('big')")
        .unwrap();
    // manage() counted the partition once; a cycle reads at most the
    // window of the newest 64 pages (about 11,000 rows) again.
    assert_eq!(key_time_total(&mut client, "big"), 200_000);
    assert!(collect_rows_read(&mut client, "big") < 15_000);
    let late_hour = "2024-01-20 05:00:00+00";
    let before_late = rows_in_hour(&mut client, "big", late_hour);
    assert_eq!(before_late, 360);

    // 600 rows in order after the frontier, and 6 late into an old hour.
    client
        .batch_execute(&format!(
            "INSERT INTO big SELECT g, '2024-01-01'::timestamptz + g * interval '10 seconds', g
               FROM generate_series(200000, 200599) g;
             INSERT INTO big SELECT g, '{late_hour}'::timestamptz + g * interval '1 second', g
               FROM generate_series(1, 6) g;"
        ))
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('big')")
        .unwrap();
    // The new rows and the window of the newest 64 pages, read again each
    // cycle for rows that commit late: not the 200,000 rows of the partition.
    let read = collect_rows_read(&mut client, "big");
    assert!((606..15_000).contains(&read), "{read} rows read");
    assert_eq!(key_time_total(&mut client, "big"), 200_606);
    assert_eq!(rows_in_hour(&mut client, "big", late_hour), before_late + 6);

    // A bulk load of 50,000 rows between two cycles: read from a sample.
    client
        .batch_execute(
            "INSERT INTO big SELECT g, '2024-01-01'::timestamptz + g * interval '10 seconds', g
               FROM generate_series(200600, 250599) g;",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('big')")
        .unwrap();
    let read = collect_rows_read(&mut client, "big");
    assert!(read < 20_000, "{read} rows read for a batch of 50,000");
    let total = key_time_total(&mut client, "big");
    assert!((total - 250_606).abs() <= 150, "series adds up to {total}");

    // An index on the key changes nothing of that.
    client
        .batch_execute(
            "CREATE INDEX ON big (at);
             INSERT INTO big SELECT g, '2024-01-01'::timestamptz + g * interval '10 seconds', g
               FROM generate_series(250600, 250699) g;",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('big')")
        .unwrap();
    let read = collect_rows_read(&mut client, "big");
    assert!((100..15_000).contains(&read), "{read} rows read");
    let total_now = key_time_total(&mut client, "big");
    assert_eq!(total_now, total + 100);

    // Queries alone (scans, no writes) cost the next cycle no read.
    client
        .batch_execute("SELECT count(*) FROM big; SELECT count(*) FROM big WHERE v = 7;")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('big')")
        .unwrap();
    assert_eq!(collect_rows_read(&mut client, "big"), 0);

    // A small partition whose rows are deleted is counted again at once.
    client
        .batch_execute(
            "CREATE TABLE small (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE small_2024 PARTITION OF small FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             INSERT INTO small SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 2879) g;
             SELECT partition_predict.manage('small', lookahead => '1 day');",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('small')")
        .unwrap();
    assert_eq!(
        rows_in_hour(&mut client, "small", "2024-01-01 10:00:00+00"),
        60
    );
    client
        .batch_execute(
            "DELETE FROM small WHERE at >= '2024-01-01 10:00:00+00' AND at < '2024-01-01 10:30:00+00'",
        )
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT * FROM partition_predict.run_cycle('small')")
        .unwrap();
    assert_eq!(
        rows_in_hour(&mut client, "small", "2024-01-01 10:00:00+00"),
        30
    );
    assert_eq!(key_time_total(&mut client, "small"), 2880 - 30);

    // Every step of the cycle reports its cost.
    let steps = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.cycle_costs
          WHERE parent = 'big'::regclass AND cycles = 5 AND last_ms >= 0",
    );
    assert_eq!(
        steps, 5,
        "collect, forecast, prepartition, activate, runway"
    );
}

/// Rows of a transaction that commits after later rows were counted, and
/// rows of sessions filling their own pages side by side, all end up in
/// the key-time series.
#[test]
fn rows_committed_late_or_side_by_side_are_counted() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE busy (id bigint NOT NULL, at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
             CREATE TABLE busy_2024 PARTITION OF busy FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             SELECT partition_predict.manage('busy', lookahead => '1 day');",
        )
        .unwrap();
    let cycle = |client: &mut Client| {
        flush_stats(client);
        client
            .batch_execute("SELECT * FROM partition_predict.run_cycle('busy')")
            .unwrap();
    };
    cycle(&mut client);
    // A long transaction writes first; others commit 30,000 rows after it
    // (well past the re-read window) and are counted; then it commits.
    let mut long = cluster.connect("postgres");
    long.batch_execute(
        "BEGIN;
         INSERT INTO busy SELECT g, '2024-02-01'::timestamptz + g * interval '1 second', g
           FROM generate_series(1, 2000) g;",
    )
    .unwrap();
    let mut others: Vec<Client> = (0..3).map(|_| cluster.connect("postgres")).collect();
    for round in 0..10 {
        for (i, other) in others.iter_mut().enumerate() {
            other
                .batch_execute(&format!(
                    "INSERT INTO busy SELECT g, '2024-01-01'::timestamptz + g * interval '1 second', g
                       FROM generate_series({from}, {from} + 999) g",
                    from = (round * 3 + i) * 1000
                ))
                .unwrap();
            flush_stats(other);
        }
        cycle(&mut client);
    }
    assert_eq!(key_time_total(&mut client, "busy"), 30_000);
    long.batch_execute("COMMIT").unwrap();
    flush_stats(&mut long);
    cycle(&mut client);
    assert_eq!(key_time_total(&mut client, "busy"), 32_000);
    assert_eq!(
        rows_in_hour(&mut client, "busy", "2024-02-01 00:00:00+00"),
        2000
    );
}

//! Rows arriving the way real systems deliver them: in weekly batches, and
//! with the odd key far outside the rest. DEFAULT stays empty of the data,
//! and one bad key derails nothing.

use postgres::Client;

use crate::cluster::{default_rows_next, flush_stats, scalar_i64, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

fn in_default(client: &mut Client, table: &str) -> i64 {
    scalar_i64(client, &format!("SELECT count(*) FROM {table}_default"))
}

fn cycle(client: &mut Client, table: &str) {
    flush_stats(client);
    let error: Option<String> = client
        .query_one(
            &format!("SELECT error FROM partition_predict.run_cycle('{table}')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(error, None);
}

/// A week of calls from `monday` (one row every five minutes, more by
/// day), loaded from a staging table in one `INSERT … SELECT` the planner
/// knows is small (a few thousand rows): not a bulk load the hooks
/// prepare for, as a nightly export's weekly file is not.
fn week_batch(client: &mut Client, monday: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS staging (at timestamptz, agent int);
             TRUNCATE staging;
             INSERT INTO staging
             SELECT t, g % 7
               FROM generate_series(timestamptz '{monday}', timestamptz '{monday}' + interval '7 days' - interval '5 minutes',
                                    interval '5 minutes') t,
                    generate_series(1, CASE WHEN extract(hour FROM t) BETWEEN 8 AND 17 THEN 2 ELSE 1 END) g;
             ANALYZE staging;
             INSERT INTO calls SELECT * FROM staging;"
        ))
        .unwrap();
}

#[test]
fn weekly_batches_find_next_week_ready() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE calls (at timestamptz NOT NULL, agent int) PARTITION BY RANGE (at);
             CREATE TABLE calls_first PARTITION OF calls FOR VALUES FROM ('2026-01-05') TO ('2026-01-26');
             SELECT partition_predict.manage('calls', target_rows => 500, lookahead => '2 days');",
        )
        .unwrap();
    // Three weeks into the partition the DBA made, a cycle after each.
    for monday in ["2026-01-05", "2026-01-12", "2026-01-19"] {
        week_batch(&mut client, monday);
        cycle(&mut client, "calls");
    }
    let reaches: Vec<i64> = client
        .query_one(
            "SELECT arrival_reaches FROM partition_predict.table_state WHERE parent = 'calls'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        reaches.iter().any(|r| *r >= 6 * 86_400_000_000),
        "the weekly jumps were learned: {reaches:?}"
    );
    // From now on each week lands in partitions attached before it came,
    // though the lookahead is two days and each batch (a few thousand
    // rows) is too small to be prepared for as a bulk load.
    for monday in ["2026-01-26", "2026-02-02", "2026-02-09"] {
        week_batch(&mut client, monday);
        assert_eq!(in_default(&mut client, "calls"), 0, "week of {monday}");
        cycle(&mut client, "calls");
        // What is attached for next week was sized by the forecast, not
        // by a flat guess past its end: the forecast runs past all of it.
        let unforecast = scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.partitions
              WHERE parent = 'calls'::regclass AND state = 'active' AND rows = 0
                AND range_end::timestamptz > (SELECT max(step_end) FROM partition_predict.forecasts
                                               WHERE parent = 'calls'::regclass)",
        );
        assert_eq!(unforecast, 0, "after the week of {monday}");
    }
    let oversized = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.partitions
          WHERE parent = 'calls'::regclass AND state = 'active' AND range_start >= '2026-01-26'
            AND rows > 2 * 500",
    );
    assert_eq!(
        oversized, 0,
        "partitions made for the batches stay near the target"
    );
}

/// A table fed day by day: the newest forecast made, and where the shadows
/// reach past the frontier.
fn forecast_and_shadows(client: &mut Client) -> (String, String) {
    let row = client
        .query_one(
            "SELECT (SELECT max(step_start)::text FROM partition_predict.forecasts WHERE parent = 'ev'::regclass),
                    (SELECT max(range_end) FROM partition_predict.partitions
                      WHERE parent = 'ev'::regclass AND state IN ('shadow', 'active'))",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn day_of_minutes(client: &mut Client, day: &str) {
    client
        .batch_execute(&format!(
            "INSERT INTO ev (ts) SELECT timestamptz '{day}' + g * interval '1 minute' FROM generate_series(0, 1439) g"
        ))
        .unwrap();
}

#[test]
fn far_future_and_far_past_keys_stay_in_default_and_derail_nothing() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE ev (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE ev_first PARTITION OF ev FOR VALUES FROM ('2026-11-01') TO ('2026-11-05');
             SELECT partition_predict.manage('ev', target_rows => 2000, lookahead => '1 day');",
        )
        .unwrap();
    for day in ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"] {
        day_of_minutes(&mut client, day);
        cycle(&mut client, "ev");
    }
    client
        .batch_execute("INSERT INTO ev VALUES ('2200-01-01'), ('1970-01-01')")
        .unwrap();
    for day in ["2026-11-05", "2026-11-06", "2026-11-07", "2026-11-08"] {
        day_of_minutes(&mut client, day);
        cycle(&mut client, "ev");
        // What the worker does after each cycle.
        client
            .batch_execute("CALL partition_predict.migrate_default('ev')")
            .unwrap();
        cycle(&mut client, "ev");
        assert_eq!(
            in_default(&mut client, "ev"),
            2,
            "on {day} only the two outliers are in DEFAULT"
        );
        let (forecast_until, shadows_until) = forecast_and_shadows(&mut client);
        assert!(
            forecast_until.as_str() > day && forecast_until.as_str() < "2026-12",
            "on {day} the newest forecast reaches {forecast_until}"
        );
        assert!(
            shadows_until.as_str() > day && shadows_until.as_str() < "2026-12",
            "on {day} the partitions reach {shadows_until}"
        );
    }
    let alerts = client
        .query(
            "SELECT state, details->>'rows', message FROM partition_predict.alert_history
              WHERE parent = 'ev'::regclass AND kind = 'outlier_keys'",
            &[],
        )
        .unwrap();
    assert_eq!(alerts.len(), 1, "one condition, however many cycles saw it");
    let (state, rows, message): (String, String, String) =
        (alerts[0].get(0), alerts[0].get(1), alerts[0].get(2));
    assert_eq!((state.as_str(), rows.as_str()), ("open", "2"));
    assert!(
        message.contains("2200-01-01") && message.contains("1970-01-01"),
        "{message}"
    );

    let next = default_rows_next(&mut client, "ev");
    assert!(next.starts_with("held back"), "{next}");

    // A DBA who means it releases them: the next migration moves them.
    let released = scalar_i64(
        &mut client,
        "SELECT partition_predict.release_outliers('ev')",
    );
    assert_eq!(released, 2);
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(in_default(&mut client, "ev"), 0);
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE parent = 'ev'::regclass AND kind = 'outlier_keys'"
        ),
        0
    );
}

#[test]
fn outlier_keys_the_worker_holds_back_stay_one_open_alert_while_they_stay() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.enabled = off",
        ],
    );
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE ev (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE ev_first PARTITION OF ev FOR VALUES FROM ('2026-11-01') TO ('2026-11-05');
             SELECT partition_predict.manage('ev', target_rows => 2000, lookahead => '1 day');",
        )
        .unwrap();
    for day in ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"] {
        day_of_minutes(&mut client, day);
        cycle(&mut client, "ev");
    }
    client
        .batch_execute("INSERT INTO ev VALUES ('2030-01-01'), ('2030-01-01 00:00:01')")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.enabled = on")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let cycles = |client: &mut Client| {
        scalar_i64(
            client,
            "SELECT COALESCE(sum(cycles), 0)::bigint FROM partition_predict.worker_status",
        )
    };
    crate::cluster::wait_for(
        "six worker cycles",
        std::time::Duration::from_secs(60),
        || (cycles(&mut client) >= 6).then_some(()),
    );
    assert_eq!(in_default(&mut client, "ev"), 2);
    let history: Vec<(String, Option<String>)> = client
        .query(
            "SELECT state, details->>'rows' FROM partition_predict.alert_history
              WHERE parent = 'ev'::regclass AND kind = 'outlier_keys' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        history,
        vec![("open".to_string(), Some("2".to_string()))],
        "one alert, open while the rows stay"
    );
    let next = default_rows_next(&mut client, "ev");
    assert!(next.starts_with("held back"), "{next}");

    // Deleted, they are gone: the alert ends with them.
    client
        .batch_execute("DELETE FROM ev WHERE ts >= '2030-01-01'")
        .unwrap();
    flush_stats(&mut client);
    let after = cycles(&mut client);
    crate::cluster::wait_for(
        "three more cycles",
        std::time::Duration::from_secs(60),
        || (cycles(&mut client) >= after + 3).then_some(()),
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.alerts WHERE parent = 'ev'::regclass AND kind = 'outlier_keys'"
        ),
        0
    );
}

#[test]
fn a_range_made_for_rows_moved_out_of_default_is_sized_by_the_forecast() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE ev (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE ev_first PARTITION OF ev FOR VALUES FROM ('2026-11-01') TO ('2026-11-05');
             SELECT partition_predict.manage('ev', target_rows => 2000, lookahead => '1 day');",
        )
        .unwrap();
    // Four days of a row a minute; statistics and forecasts only (no
    // partitions prepared ahead), as when a table's partitions ran out.
    for day in ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"] {
        day_of_minutes(&mut client, day);
        flush_stats(&mut client);
        client
            .batch_execute("SELECT * FROM partition_predict.collect_stats('ev')")
            .unwrap();
    }
    client
        .batch_execute("SELECT * FROM partition_predict.forecast('ev')")
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.partitions
              WHERE parent = 'ev'::regclass AND range_end::timestamptz > '2026-11-05'"
        ),
        0,
        "nothing prepared past the data"
    );
    // The first four hours of the next day land in DEFAULT.
    client
        .batch_execute(
            "INSERT INTO ev (ts) SELECT timestamptz '2026-11-05' + g * interval '1 minute' FROM generate_series(0, 239) g",
        )
        .unwrap();
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(in_default(&mut client, "ev"), 0);
    // The range made for them also receives the rest of the day as it
    // comes (a row a minute, as forecast): a day holds 1,440 rows, a week
    // (what the moved rows alone would fill) 10,080 against a target of 2,000.
    let (start, end): (String, String) = {
        let r = client
            .query_one(
                "SELECT range_start, range_end FROM partition_predict.partitions
                  WHERE parent = 'ev'::regclass AND range_start::timestamptz <= '2026-11-05 01:00'
                    AND range_end::timestamptz > '2026-11-05 01:00'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let days = scalar_i64(
        &mut client,
        &format!("SELECT extract(epoch FROM '{end}'::timestamptz - '{start}'::timestamptz)::bigint / 3600"),
    );
    assert!(days <= 24, "[{start}, {end}): {days} hours");
}

#[test]
fn rows_from_a_clock_days_fast_are_held_back_once_the_stream_is_learned() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    // A live stream, a row a minute, up to now; cycled hour by hour for its
    // last six hours, so the table learns how its rows arrive.
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE logs (ts timestamptz NOT NULL, msg text) PARTITION BY RANGE (ts);
             CREATE TABLE logs_past PARTITION OF logs
               FOR VALUES FROM (date_trunc('hour', now()) - interval '4 days') TO (date_trunc('hour', now()) + interval '1 hour');
             SELECT partition_predict.manage('logs', target_rows => 2000);
             INSERT INTO logs (ts, msg) SELECT g, 'stream'
               FROM generate_series(date_trunc('hour', now()) - interval '4 days',
                                    date_trunc('hour', now()) - interval '6 hours', interval '1 minute') g;",
        )
        .unwrap();
    cycle(&mut client, "logs");
    for hour in (0..6).rev() {
        client
            .batch_execute(&format!(
                "INSERT INTO logs (ts, msg) SELECT g, 'stream'
                   FROM generate_series(date_trunc('hour', now()) - interval '{} hours' + interval '1 minute',
                                        date_trunc('hour', now()) - interval '{hour} hours', interval '1 minute') g",
                hour + 1
            ))
            .unwrap();
        cycle(&mut client, "logs");
    }
    let partitions_before = crate::cluster::partition_names(&mut client, "logs");
    // 500 rows from a client whose clock is 13 days fast.
    client
        .batch_execute(
            "INSERT INTO logs (ts, msg) SELECT now() + interval '13 days' + g * interval '1 s', 'skewed clock'
               FROM generate_series(1, 500) g",
        )
        .unwrap();
    cycle(&mut client, "logs");
    client
        .batch_execute("CALL partition_predict.migrate_default('logs')")
        .unwrap();
    cycle(&mut client, "logs");
    // Held back in DEFAULT, named by one alert; no partition made for them.
    assert_eq!(in_default(&mut client, "logs"), 500);
    let alerts: Vec<(String, String)> = client
        .query(
            "SELECT state, details->>'rows' FROM partition_predict.alert_history
              WHERE parent = 'logs'::regclass AND kind = 'outlier_keys'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(alerts, vec![("open".to_string(), "500".to_string())]);
    let far = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.partitions
          WHERE parent = 'logs'::regclass AND range_end::timestamptz > now() + interval '12 days'",
    );
    assert_eq!(far, 0, "partitions before: {partitions_before:?}");
    let next = default_rows_next(&mut client, "logs");
    assert!(next.starts_with("held back"), "{next}");
}

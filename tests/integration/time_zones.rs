//! Natural boundaries of `timestamptz` keys in the table's time zone.

use postgres::Client;

use crate::cluster::{scalar_i64, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

/// A week around each of 2026's daylight-saving changes in Europe
/// (29 March, 25 October), a row every 90 seconds: 960 rows a day.
fn staging(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE staging (at timestamptz, v int);
             INSERT INTO staging
             SELECT t, 1 FROM generate_series(timestamptz '2026-03-25 00:00+00', '2026-04-02 00:00+00', interval '90 seconds') t
             UNION ALL
             SELECT t, 2 FROM generate_series(timestamptz '2026-10-21 00:00+00', '2026-10-29 00:00+00', interval '90 seconds') t;",
        )
        .unwrap();
}

/// A table managed in `zone` (a day's rows are about `target_rows`), loaded
/// from `staging` through `ingest()`, which creates the partitions the rows
/// need.
fn loaded_table(client: &mut Client, table: &str, zone: &str, lookahead: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int)
                 PARTITION BY RANGE (at);
             SELECT partition_predict.manage('{table}', target_rows => 1000, lookahead => '{lookahead}',
                                             time_zone => '{zone}');"
        ))
        .unwrap();
    // ingest() commits between its stages: a statement of its own.
    client
        .batch_execute(&format!(
            "CALL partition_predict.ingest('{table}', 'staging')"
        ))
        .unwrap();
}

/// The table's partitions other than DEFAULT, in key order: start and end
/// on the zone's clock (`YYYY-MM-DD HH24:MI`), and the name.
fn partitions(client: &mut Client, table: &str, zone: &str) -> Vec<(String, String, String)> {
    client
        .query(
            "SELECT pg_catalog.to_char(range_start::timestamptz AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI'),
                    pg_catalog.to_char(range_end::timestamptz AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI'),
                    partition::text
               FROM partition_predict.partitions
              WHERE parent = $1::text::regclass AND state <> 'default'
              ORDER BY range_start::timestamptz",
            &[&table, &zone],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn hours_of_partition_holding(client: &mut Client, table: &str, instant: &str) -> f64 {
    client
        .query_one(
            "SELECT pg_catalog.date_part('epoch', range_end::timestamptz - range_start::timestamptz) / 3600
               FROM partition_predict.partitions
              WHERE parent = $1::text::regclass AND state <> 'default'
                AND range_start::timestamptz <= $2::text::timestamptz AND $2::text::timestamptz < range_end::timestamptz",
            &[&table, &instant],
        )
        .unwrap()
        .get(0)
}

/// Every partition starts and ends at midnight on the zone's clock, and
/// within each week they follow one another without gap or overlap.
fn assert_daily_at_local_midnight(parts: &[(String, String, String)], zone: &str) {
    assert!(parts.len() >= 14, "{zone}: {parts:?}");
    for (start, end, name) in parts {
        assert!(
            start.ends_with("00:00") && end.ends_with("00:00"),
            "{zone}: {name} runs from {start} to {end}"
        );
    }
    // One break only: between the spring week and the autumn one.
    let breaks: Vec<_> = parts
        .windows(2)
        .filter(|pair| pair[0].1 != pair[1].0)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    assert_eq!(breaks.len(), 1, "{zone}: gaps or overlaps {breaks:?}");
    assert!(
        breaks[0].0 .1 < breaks[0].1 .0,
        "{zone}: overlap {breaks:?}"
    );
    assert!(breaks[0].1 .0.starts_with("2026-10-"), "{zone}: {breaks:?}");
}

#[test]
fn boundaries_follow_the_table_s_time_zone_across_daylight_saving_changes() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    staging(&mut client);
    let rows = scalar_i64(&mut client, "SELECT count(*) FROM staging");
    loaded_table(&mut client, "in_berlin", "Europe/Berlin", "1 day");
    loaded_table(&mut client, "in_utc", "UTC", "1 day");

    for table in ["in_berlin", "in_utc"] {
        assert_eq!(
            scalar_i64(&mut client, &format!("SELECT count(*) FROM {table}")),
            rows,
            "{table}: every row loaded"
        );
        assert_eq!(
            scalar_i64(
                &mut client,
                &format!("SELECT count(*) FROM {table}_default")
            ),
            0,
            "{table}: rows in DEFAULT"
        );
    }
    let berlin = partitions(&mut client, "in_berlin", "Europe/Berlin");
    println!("Berlin: {berlin:?}");
    assert_daily_at_local_midnight(&berlin, "Europe/Berlin");
    let utc = partitions(&mut client, "in_utc", "UTC");
    assert_daily_at_local_midnight(&utc, "UTC");

    // The spring day is 23 hours long in Berlin, the autumn one 25; in UTC both are 24.
    let spring = "2026-03-29 12:00+02";
    let autumn = "2026-10-25 12:00+01";
    for (table, instant, hours) in [
        ("in_berlin", spring, 23.0),
        ("in_berlin", autumn, 25.0),
        ("in_utc", spring, 24.0),
        ("in_utc", autumn, 24.0),
    ] {
        assert_eq!(
            hours_of_partition_holding(&mut client, table, instant),
            hours,
            "{table}: the partition holding {instant}"
        );
    }

    // Names follow the local date.
    let spring_day = berlin
        .iter()
        .find(|(start, _, _)| start == "2026-03-29 00:00")
        .expect("a partition for 29 March in Berlin");
    assert!(spring_day.2.ends_with("p20260329"), "{spring_day:?}");
}

#[test]
fn the_time_zone_defaults_to_the_session_s_and_can_be_changed() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE t (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             SET TimeZone = 'Asia/Tokyo';
             SELECT partition_predict.manage('t');",
        )
        .unwrap();
    let zone = |client: &mut Client| -> String {
        client
            .query_one(
                "SELECT time_zone FROM partition_predict.managed_tables WHERE parent = 't'::regclass",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(zone(&mut client), "Asia/Tokyo");
    client
        .batch_execute("SELECT partition_predict.set_time_zone('t', 'America/New_York')")
        .unwrap();
    assert_eq!(zone(&mut client), "America/New_York");
    let error = client
        .batch_execute("SELECT partition_predict.set_time_zone('t', 'Mars/Olympus_Mons')")
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22023"), "{error:?}");
    assert_eq!(
        zone(&mut client),
        "America/New_York",
        "unchanged after the refusal"
    );
    let error = client
        .batch_execute(
            "CREATE TABLE u (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             SELECT partition_predict.manage('u', time_zone => 'Nowhere/Land');",
        )
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22023"), "{error:?}");
    // Names are kept as the zone database spells them.
    client
        .batch_execute("SELECT partition_predict.set_time_zone('t', 'europe/berlin')")
        .unwrap();
    assert_eq!(zone(&mut client), "Europe/Berlin");
    // Only a timestamptz key has a zone.
    let error = client
        .batch_execute(
            "CREATE TABLE d (day date NOT NULL) PARTITION BY RANGE (day);
             SELECT partition_predict.manage('d', time_zone => 'Europe/Berlin');",
        )
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22023"), "{error:?}");
    // It reads what other sessions committed: not under one snapshot.
    let error = client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             SELECT partition_predict.set_time_zone('t', 'Asia/Tokyo');",
        )
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("25000"), "{error:?}");
    client.batch_execute("ROLLBACK").unwrap();
    // A session zone that is not an IANA name: UTC, said in a notice.
    client
        .batch_execute(
            "SET TimeZone = '<+03>-03';
             CREATE TABLE v (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             SELECT partition_predict.manage('v');",
        )
        .unwrap();
    let v: String = client
        .query_one(
            "SELECT time_zone FROM partition_predict.managed_tables WHERE parent = 'v'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, "UTC");
}

/// Shadows prepared on one zone's clock are prepared again on the new
/// one's; partitions that exist keep their bounds.
#[test]
fn changing_the_zone_replans_what_is_not_attached_yet() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    staging(&mut client);
    loaded_table(&mut client, "moving", "UTC", "5 days");
    // Shadows ahead of the data, on UTC midnights.
    client
        .batch_execute(
            "SELECT * FROM partition_predict.collect_stats('moving');
             SELECT * FROM partition_predict.forecast('moving');
             SELECT * FROM partition_predict.prepartition('moving');",
        )
        .unwrap();
    let shadows = |client: &mut Client, zone: &str| -> Vec<String> {
        client
            .query(
                "SELECT pg_catalog.to_char(range_start::timestamptz AT TIME ZONE $1, 'HH24:MI')
                   FROM partition_predict.partitions WHERE parent = 'moving'::regclass AND state = 'shadow'
                  ORDER BY range_start::timestamptz",
                &[&zone],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let attached = |client: &mut Client| -> Vec<(String, String)> {
        client
            .query(
                "SELECT range_start, range_end FROM partition_predict.partitions
                  WHERE parent = 'moving'::regclass AND state = 'active' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let attached_before = attached(&mut client);
    let utc_shadows = shadows(&mut client, "UTC");
    assert!(!utc_shadows.is_empty(), "no shadow was prepared");
    assert!(
        utc_shadows.iter().all(|start| start == "00:00"),
        "{utc_shadows:?}"
    );
    client
        .batch_execute(
            "SELECT partition_predict.set_time_zone('moving', 'Asia/Tokyo');
             SELECT * FROM partition_predict.prepartition('moving');",
        )
        .unwrap();
    // The last partition ends at a UTC midnight (09:00 in Tokyo): shorter
    // ranges lead to the first Tokyo midnight, whole days after it.
    let tokyo_shadows = shadows(&mut client, "Asia/Tokyo");
    println!("UTC shadows {utc_shadows:?}, after the change (Tokyo clock) {tokyo_shadows:?}");
    let first_midnight = tokyo_shadows
        .iter()
        .position(|start| start == "00:00")
        .expect("a shadow starting at a Tokyo midnight");
    assert!(
        tokyo_shadows[first_midnight..]
            .iter()
            .all(|start| start == "00:00"),
        "shadows not on Tokyo midnights: {tokyo_shadows:?}"
    );
    assert!(first_midnight <= 3, "{tokyo_shadows:?}");
    assert_eq!(
        attached(&mut client),
        attached_before,
        "attached partitions changed"
    );
}

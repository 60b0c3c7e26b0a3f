//! Cycle step 2 on a real cluster, fed by the project's workload generator.

use forecast::workload::{row_stream, scenarios};
use partition_core::calendar::{days_from_civil, MICROS_PER_DAY};
use postgres::Client;

use crate::cluster::{flush_stats, Cluster};

const HOUR: i64 = 3_600_000_000;

fn insert_keys(client: &mut Client, keys: &[i64]) {
    for chunk in keys.chunks(20_000) {
        client
            .execute(
                "INSERT INTO arrivals (at) SELECT '2000-01-01 00:00:00+00'::timestamptz + k * interval '1 microsecond'
                   FROM unnest($1::bigint[]) k",
                &[&chunk],
            )
            .unwrap();
    }
    flush_stats(client);
}

#[test]
fn forecasts_cover_the_lookahead_and_accuracy_fills_in_as_actuals_arrive() {
    let cluster = Cluster::start_with(true, &["pg_partition_predict.database = ''"]);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE arrivals (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL)
                 PARTITION BY RANGE (at);
             CREATE INDEX ON arrivals (at);
             CREATE TABLE arrivals_2024q1 PARTITION OF arrivals FOR VALUES FROM ('2024-01-01') TO ('2024-04-01');
             SELECT partition_predict.manage('arrivals', lookahead => '2 days');",
        )
        .unwrap();
    let mut scenario = scenarios()
        .into_iter()
        .find(|s| s.name == "seasonal_trend")
        .unwrap();
    scenario.base = 40.0;
    scenario.hours = 4 * 168 + 24;
    let series = scenario.series();
    let start = days_from_civil(2024, 1, 1) * MICROS_PER_DAY; // a Monday
    let keys = row_stream(&series, start, 0.02, 3, 11);
    let history_end = start + 4 * 168 * HOUR;
    // Rows in arrival order: four weeks first, then the next day hour by hour.
    let (history, next_day): (Vec<i64>, Vec<i64>) = {
        let split = keys
            .iter()
            .position(|k| *k >= history_end)
            .unwrap_or(keys.len());
        (keys[..split].to_vec(), keys[split..].to_vec())
    };
    insert_keys(&mut client, &history);
    let row = client
        .query_one(
            "SELECT forecast_steps, error FROM partition_predict.run_cycle('arrivals')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, i64>(0), 48, "two days of hours");

    // Every future hour the planner will need, contiguous from the frontier's hour, each sane.
    let ranges: Vec<(String, String, f64, f64, f64)> = client
        .query(
            "SELECT range_start, range_end, predicted_rows, lower, upper FROM partition_predict.forecasts
              WHERE parent = 'arrivals'::regclass ORDER BY horizon",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(ranges.len(), 48);
    assert_eq!(
        ranges[0].0, "2024-01-28 23:00:00+00",
        "starts at the hour still filling"
    );
    assert_eq!(ranges[47].1, "2024-01-30 23:00:00+00");
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "ranges are contiguous");
    }
    for (start, _, point, lower, upper) in &ranges {
        assert!(
            *lower >= 0.0 && lower <= point && point <= upper,
            "{start}: {lower} <= {point} <= {upper}"
        );
    }
    let predicted_day: f64 = ranges[1..25].iter().map(|r| r.2).sum();
    let expected_day: f64 = series[4 * 168..4 * 168 + 24].iter().sum();
    assert!(
        (predicted_day - expected_day).abs() / expected_day < 0.3,
        "a Monday of {expected_day} rows predicted as {predicted_day}"
    );

    // The next day arrives hour by hour; each cycle scores what has settled.
    let mut scored = 0;
    for hour in 0..24 {
        let (lo, hi) = (history_end + hour * HOUR, history_end + (hour + 1) * HOUR);
        let batch: Vec<i64> = next_day
            .iter()
            .copied()
            .filter(|k| (lo..hi).contains(k))
            .collect();
        insert_keys(&mut client, &batch);
        let row = client
            .query_one(
                "SELECT forecasts_scored FROM partition_predict.run_cycle('arrivals')",
                &[],
            )
            .unwrap();
        scored += row.get::<_, i64>(0);
    }
    assert!(scored >= 20, "only {scored} forecast steps were scored");
    let (n, mape, coverage): (i64, f64, f64) = {
        let r = client
            .query_one(
                "SELECT sum(n)::bigint, sum(mape * n) / sum(n), sum(coverage * n)::float8 / sum(n)
                   FROM partition_predict.forecast_accuracy WHERE parent = 'arrivals'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    println!("forecast_accuracy: {n} scored steps, MAPE {mape:.3}, coverage {coverage:.3}");
    assert_eq!(n, scored);
    assert!(mape < 0.5, "MAPE {mape}");
    assert!(coverage > 0.6, "coverage {coverage}");
    let horizons: i64 = client
        .query_one(
            "SELECT count(DISTINCT horizon) FROM partition_predict.forecast_accuracy",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(horizons >= 3, "accuracy is reported by horizon");
}

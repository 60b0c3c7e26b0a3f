//! Cycle step 2 on a real cluster, fed by the project's workload generator.

use forecast::workload::{row_stream, scenarios};
use partition_core::calendar::{days_from_civil, MICROS_PER_DAY};
use postgres::Client;

use crate::cluster::{flush_stats, Cluster};

const HOUR: i64 = 3_600_000_000;

fn insert_keys(client: &mut Client, keys: &[i64]) {
    insert_keys_into(client, "arrivals", keys);
}

fn insert_keys_into(client: &mut Client, table: &str, keys: &[i64]) {
    for chunk in keys.chunks(20_000) {
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (at) SELECT '2000-01-01 00:00:00+00'::timestamptz + k * interval '1 microsecond'
                       FROM unnest($1::bigint[]) k"
                ),
                &[&chunk],
            )
            .unwrap();
    }
    flush_stats(client);
}

/// The generator's daily and weekly cycle with a trend, 40 rows an hour at
/// its base, for `hours` hours.
fn seasonal_trend(hours: usize) -> Vec<f64> {
    let mut scenario = scenarios()
        .into_iter()
        .find(|s| s.name == "seasonal_trend")
        .unwrap();
    scenario.base = 40.0;
    scenario.hours = hours;
    scenario.series()
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
    let series = seasonal_trend(4 * 168 + 24);
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

/// What `series_state` holds for a table: the model in use, its origin,
/// and the choice being prepared (origin, fits done, model once made).
fn choice(
    client: &mut Client,
    table: &str,
) -> (
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
) {
    let r = client
        .query_one(
            "SELECT model, model_origin, pending_origin, coalesce(cardinality(pending_model_errors), 0)::bigint,
                    pending_model
               FROM partition_predict.series_state WHERE parent = $1::text::regclass",
            &[&table],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

fn newest_forecast(client: &mut Client, table: &str) -> Vec<(String, f64)> {
    client
        .query(
            "SELECT range_start, predicted_rows FROM partition_predict.forecasts
              WHERE parent = $1::text::regclass ORDER BY horizon",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The next model choice is prepared one backtest fit per cycle while the
/// current one is used, and a table that received the same day in one
/// batch (a backfill) ends with the same choice and the same forecast.
#[test]
fn the_model_choice_is_prepared_a_fit_per_cycle_and_a_backfill_gets_the_same_forecast() {
    let cluster = Cluster::start_with(true, &["pg_partition_predict.database = ''"]);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict;")
        .unwrap();
    for table in ["live", "backfill"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL)
                     PARTITION BY RANGE (at);
                 CREATE TABLE {table}_2024q1 PARTITION OF {table} FOR VALUES FROM ('2024-01-01') TO ('2024-04-01');
                 SELECT partition_predict.manage('{table}', lookahead => '1 day');"
            ))
            .unwrap();
    }
    let series = seasonal_trend(4 * 168 + 48);
    let start = days_from_civil(2024, 1, 1) * MICROS_PER_DAY;
    let keys = row_stream(&series, start, 0.0, 3, 11);
    let history_end = start + 4 * 168 * HOUR;
    let split = |from: i64, to: i64| -> Vec<i64> {
        keys.iter()
            .copied()
            .filter(|k| (from..to).contains(k))
            .collect()
    };
    let cycle = |client: &mut Client, table: &str| {
        let row = client
            .query_one(
                "SELECT error FROM partition_predict.run_cycle($1::text::regclass)",
                &[&table],
            )
            .unwrap();
        assert_eq!(row.get::<_, Option<String>>(0), None);
    };
    for table in ["live", "backfill"] {
        insert_keys_into(&mut client, table, &split(i64::MIN, history_end));
        cycle(&mut client, table);
    }
    // The first forecast made the choice it needed at once.
    let (model, in_use, pending, fits, _) = choice(&mut client, "live");
    assert!(model.is_some() && in_use.is_some());
    assert_eq!(pending, None, "a forecast does not prepare the next choice");
    assert_eq!(fits, 0);

    // Cycles with no forecast due each add one fit to the next choice.
    let mut previous = 0;
    let mut prepared = None;
    for _ in 0..40 {
        cycle(&mut client, "live");
        let (_, _, pending, fits, pending_model) = choice(&mut client, "live");
        assert_eq!(
            fits,
            previous
                + if pending_model.is_some() && fits == previous {
                    0
                } else {
                    1
                },
            "one fit per cycle, then none once the choice is made"
        );
        assert!(pending > in_use, "the next choice is for a later origin");
        previous = fits;
        if pending_model.is_some() {
            prepared = pending.zip(pending_model);
            break;
        }
    }
    let (prepared_origin, prepared_model) =
        prepared.expect("the next choice was made within 40 cycles");
    assert!(
        previous > 1,
        "the choice took {previous} fits, spread over as many cycles"
    );

    // The next day's first 20 hours (the choice in use moves at its
    // midnight): hour by hour into one table, in one batch into the other.
    let day_end = history_end + 20 * HOUR;
    for hour in 0..20 {
        let from = history_end + hour * HOUR;
        insert_keys_into(&mut client, "live", &split(from, from + HOUR));
        cycle(&mut client, "live");
    }
    insert_keys_into(&mut client, "backfill", &split(history_end, day_end));
    cycle(&mut client, "backfill");

    let live = choice(&mut client, "live");
    let backfill = choice(&mut client, "backfill");
    assert_eq!(
        live.1,
        Some(prepared_origin),
        "the prepared choice is in use a day later"
    );
    assert_eq!(live.0.as_deref(), Some(prepared_model.as_str()));
    assert_eq!(
        (&live.0, live.1),
        (&backfill.0, backfill.1),
        "same choice live and backfilled"
    );
    let (live_forecast, backfill_forecast) = (
        newest_forecast(&mut client, "live"),
        newest_forecast(&mut client, "backfill"),
    );
    // The lookahead (a day) live; the backfill's batch reached 20 hours at
    // once, and its forecast runs further past that reach. Over the hours
    // both cover it is the same forecast.
    assert_eq!(live_forecast.len(), 24);
    assert!(backfill_forecast.len() >= 24, "{}", backfill_forecast.len());
    assert_eq!(
        live_forecast[..],
        backfill_forecast[..24],
        "same forecast live and backfilled"
    );
}

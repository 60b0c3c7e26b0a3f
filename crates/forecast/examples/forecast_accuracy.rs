//! Accuracy and cost of the forecasting engine on generated workloads.
//! Run with `bench/forecast_accuracy` (release build, one thread).

use std::time::Instant;

use forecast::engine::{choose, forecast, predict};
use forecast::evaluation;
use forecast::metrics;
use forecast::workload::{scenarios, Scenario};
use forecast::{Config, Learned, Model};

const DAY: usize = 24;
const WEEK: usize = 168;

struct Row {
    scenario: &'static str,
    engine_mase: f64,
    engine_coverage: f64,
    naive_coverage: f64,
    models: String,
    ms_per_forecast: f64,
}

/// Day-ahead forecasts from every day of weeks 5 and 6, learning as actuals arrive.
fn evaluate(s: &Scenario) -> Row {
    let series = s.series();
    let started = Instant::now();
    let e = evaluation::rolling(&series, 4 * WEEK, series.len(), DAY, DAY);
    // Includes a backtest whenever the model choice is due.
    let ms_per_forecast = started.elapsed().as_secs_f64() * 1e3 / e.forecasts.max(1) as f64;
    // A fixed baseline for every scenario: the same hour one week earlier.
    let weekly_naive: Vec<f64> = (0..e.forecasts)
        .flat_map(|i| {
            let origin = 4 * WEEK + i * DAY;
            series[origin - WEEK..origin - WEEK + DAY].to_vec()
        })
        .collect();
    // The baseline's own interval: seasonal naive with its empirical spread.
    let (mut naive_lo, mut naive_hi) = (vec![], vec![]);
    for i in 0..e.forecasts {
        let origin = 4 * WEEK + i * DAY;
        let seasonal_naive = Learned {
            model: Some(Model::SeasonalNaive),
            ..Learned::default()
        };
        let baseline =
            predict(&series[..origin], DAY, &Config::default(), &seasonal_naive).expect("baseline");
        naive_lo.extend_from_slice(&baseline.lower);
        naive_hi.extend_from_slice(&baseline.upper);
    }
    Row {
        scenario: s.name,
        engine_mase: metrics::mase(&e.actual, &e.point, &weekly_naive).unwrap_or(f64::NAN),
        engine_coverage: metrics::coverage(&e.actual, &e.lower, &e.upper),
        naive_coverage: metrics::coverage(&e.actual, &naive_lo, &naive_hi),
        models: e
            .models
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        ms_per_forecast,
    }
}

fn main() {
    println!("## Accuracy: day-ahead forecasts from each day of weeks 5-6 (hourly data, 95% intervals)\n");
    println!("MASE is the engine's mean absolute error over that of weekly seasonal naive (same hour a week earlier) on the same points; below 1 is better.\n");
    println!("| scenario | MASE vs weekly seasonal naive | coverage (engine) | coverage (seasonal naive) | models used | ms per forecast |");
    println!("|---|---|---|---|---|---|");
    for s in scenarios() {
        let r = evaluate(&s);
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {} | {:.0} |",
            r.scenario,
            r.engine_mase,
            r.engine_coverage,
            r.naive_coverage,
            r.models,
            r.ms_per_forecast
        );
    }

    // Cost: 1,000 series of 4 weeks of hourly points, on one thread.
    let base = scenarios();
    let series: Vec<Vec<f64>> = (0..1000)
        .map(|i| {
            let mut s = base[i % base.len()].clone();
            s.seed = 1000 + i as u64;
            s.hours = 4 * WEEK;
            s.step = None;
            s.series()
        })
        .collect();
    let config = Config::default();
    let started = Instant::now();
    let learned: Vec<Learned> = series
        .iter()
        .map(|s| {
            forecast(s, s.len() as i64, DAY, &config, &Learned::default())
                .expect("forecast")
                .1
        })
        .collect();
    let cold = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (s, l) in series.iter().zip(&learned) {
        predict(s, DAY, &config, l).expect("forecast");
    }
    let warm = started.elapsed().as_secs_f64();
    // The next choice, prepared one fit per call as the worker's cycles
    // without a forecast do it: the most one such cycle spends on it.
    let (mut calls, mut slowest, mut total) = (0usize, 0f64, 0f64);
    for (s, l) in series.iter().zip(&learned) {
        let mut l = l.clone();
        // A day later, once the hours before the day's origin have settled.
        let later = DAY + config.settle_steps;
        let end = (s.len() + later) as i64;
        let extended: Vec<f64> = s.iter().chain(&s[s.len() - later..]).copied().collect();
        for _ in 0..100 {
            let started = Instant::now();
            choose(&extended, end, &mut l, &config, Some(1));
            let ms = started.elapsed().as_secs_f64() * 1e3;
            calls += 1;
            total += ms;
            slowest = slowest.max(ms);
            if l.pending.as_ref().is_some_and(|p| p.model.is_some()) {
                break;
            }
        }
    }
    println!("\n## Cost: 1,000 series x 672 hourly points, one thread\n");
    println!("| pass | total | per series |");
    println!("|---|---|---|");
    println!(
        "| model choice (backtest of every candidate) + forecast | {cold:.1} s | {:.1} ms |",
        cold
    );
    println!(
        "| forecast with the chosen model (the steady state) | {warm:.1} s | {:.1} ms |",
        warm
    );
    println!(
        "\nThe next choice prepared one fit per call (a worker cycle without a forecast): {calls} calls, {:.1} ms on average, {slowest:.1} ms at most.",
        total / calls.max(1) as f64
    );
}

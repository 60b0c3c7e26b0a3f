//! Accuracy and cost of the forecasting engine on generated workloads.
//! Run with `bench/forecast_accuracy` (release build, one thread).

use std::time::Instant;

use forecast::engine::{learn, predict, Scored};
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
    let config = Config::default();
    let mut learned = Learned::default();
    let (mut actual, mut point, mut naive, mut lo, mut hi, mut naive_lo, mut naive_hi) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut models: Vec<Model> = vec![];
    let mut previous: Option<(usize, forecast::Prediction)> = None;
    let started = Instant::now();
    let mut forecasts = 0;
    let mut origin = 4 * WEEK;
    while origin + DAY <= series.len() {
        if let Some((o, p)) = previous.take() {
            let scored: Vec<Scored> = (0..DAY)
                .map(|h| Scored {
                    actual: series[o + h],
                    point: p.point[h],
                    lower: p.lower[h],
                    upper: p.upper[h],
                    naive: p.naive[h],
                })
                .collect();
            learned = learn(&learned, &scored, &config);
        }
        let (p, next) = predict(&series[..origin], DAY, &config, &learned).expect("forecast");
        learned = next;
        forecasts += 1;
        // The baseline's own interval: seasonal naive with its empirical spread.
        let baseline = predict(
            &series[..origin],
            DAY,
            &config,
            &Learned {
                model: Some(Model::SeasonalNaive),
                ..Learned::default()
            },
        )
        .expect("baseline")
        .0;
        actual.extend_from_slice(&series[origin..origin + DAY]);
        point.extend_from_slice(&p.point);
        // A fixed baseline for every scenario: the same hour one week earlier.
        naive.extend_from_slice(&series[origin - WEEK..origin - WEEK + DAY]);
        lo.extend_from_slice(&p.lower);
        hi.extend_from_slice(&p.upper);
        naive_lo.extend_from_slice(&baseline.lower);
        naive_hi.extend_from_slice(&baseline.upper);
        if !models.contains(&p.model) {
            models.push(p.model);
        }
        previous = Some((origin, p));
        origin += DAY;
    }
    Row {
        scenario: s.name,
        engine_mase: metrics::mase(&actual, &point, &naive).unwrap_or(f64::NAN),
        engine_coverage: metrics::coverage(&actual, &lo, &hi),
        naive_coverage: metrics::coverage(&actual, &naive_lo, &naive_hi),
        models: models
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        // Includes the baseline prediction made alongside, so an upper bound.
        ms_per_forecast: started.elapsed().as_secs_f64() * 1e3 / forecasts as f64,
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
            predict(s, DAY, &config, &Learned::default())
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
}

//! The engine on generated series, evaluated as it runs in production:
//! rolling origins, forecasts scored against what arrived next, state
//! carried from one prediction to the next.

use forecast::evaluation::{rolling, Setup};
use forecast::metrics;
use forecast::workload::{scenarios, Scenario};

const DAY: usize = 24;

/// Day-ahead forecasts from every `every` hours between `from` and `to`.
fn evaluate(
    series: &[f64],
    from: usize,
    to: usize,
    every: usize,
) -> forecast::evaluation::Evaluation {
    rolling(series, from, to, every, DAY, &Setup::default())
}

fn scenario(name: &str) -> Scenario {
    scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario")
}

#[test]
fn seasonal_series_with_trend_beats_seasonal_naive_with_honest_intervals() {
    let series = scenario("seasonal_trend").series();
    let e = evaluate(&series, 4 * 168, 6 * 168, DAY);
    let mase = metrics::mase(&e.actual, &e.point, &e.naive).unwrap();
    let coverage = metrics::coverage(&e.actual, &e.lower, &e.upper);
    println!(
        "seasonal_trend: MASE {mase:.3}, 95% coverage {coverage:.3} over {} points",
        e.actual.len()
    );
    assert!(mase < 1.0, "MASE {mase}");
    assert!((0.85..=0.99).contains(&coverage), "coverage {coverage}");
}

#[test]
fn white_noise_gets_a_wide_interval_not_a_pretend_pattern() {
    let series = scenario("white_noise").series();
    let e = evaluate(&series, 4 * 168, 6 * 168, DAY);
    let coverage = metrics::coverage(&e.actual, &e.lower, &e.upper);
    let mean = series.iter().sum::<f64>() / series.len() as f64;
    let sd = (series.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / series.len() as f64).sqrt();
    let mean_half_width = e
        .upper
        .iter()
        .zip(&e.lower)
        .map(|(u, l)| (u - l) / 2.0)
        .sum::<f64>()
        / e.upper.len() as f64;
    println!(
        "white_noise: coverage {coverage:.3}, half-width {mean_half_width:.1} vs noise sd {sd:.1}"
    );
    assert!(coverage >= 0.85, "coverage {coverage}");
    // An honest 95% interval on noise is about ±2 standard deviations.
    assert!(
        mean_half_width >= 1.5 * sd,
        "half-width {mean_half_width} for noise sd {sd}"
    );
}

#[test]
fn after_a_10x_step_the_error_comes_back_within_two_days() {
    let s = scenario("step_10x");
    let (step_at, _) = s.step.unwrap();
    let series = s.series();
    let e = evaluate(&series, step_at - 2 * DAY, step_at + 5 * DAY, 4);
    let error_at = |lo: usize, hi: usize| -> Vec<f64> {
        e.mape_by_origin
            .iter()
            .filter(|(o, _)| (lo..hi).contains(o))
            .map(|(_, m)| *m)
            .collect()
    };
    let before = error_at(step_at - 2 * DAY, step_at - DAY);
    let hit = error_at(step_at - DAY + 1, step_at + 1);
    let after = error_at(step_at + 2 * DAY, step_at + 5 * DAY);
    println!("step_10x: MAPE before {before:?}\n hit {hit:?}\n after {after:?}");
    assert!(
        before.iter().all(|m| *m < 0.3),
        "before the step {before:?}"
    );
    assert!(
        hit.iter().any(|m| *m > 0.5),
        "the step must be a surprise: {hit:?}"
    );
    assert!(
        after.iter().all(|m| *m < 0.3),
        "still wrong two days after the step: {after:?}"
    );
}

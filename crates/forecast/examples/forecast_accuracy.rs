//! Accuracy and cost of the forecasting engine on generated workloads
//! and, given `--series DIR`, on the real series `bench/forecast_peer.py`
//! extracts there (`--results DIR` then receives every forecast point, for
//! the comparison with statsforecast). Run with `bench/forecast_accuracy`
//! (release build, one thread).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use forecast::engine::{choose, forecast, predict};
use forecast::evaluation::{self, Setup};
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
    let e = evaluation::rolling(&series, 4 * WEEK, series.len(), DAY, DAY, &Setup::default());
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

#[derive(Clone, Copy)]
enum Step {
    Hour,
    Day,
}

/// The real series, in the order of the report; `bench/forecast_peer.py`
/// names and evaluates the same.
const REAL_SERIES: [(&str, Step); 3] = [
    ("load_taylor", Step::Hour),
    ("bank_calls", Step::Hour),
    ("chicago", Step::Day),
];

/// Where forecasts start and how far they reach, for one kind of step.
struct Protocol {
    horizon: usize,
    /// Steps between two origins.
    every: usize,
    /// The newest steps, where the origins are.
    evaluated: usize,
    /// Steps in a week: the baseline repeats the value a week earlier.
    week: usize,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Hour => "hour",
            Step::Day => "day",
        }
    }

    /// The configuration the extension gives the engine for such keys.
    fn config(self) -> Config {
        match self {
            Step::Hour => Config::default(),
            Step::Day => Config::daily(),
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            // A day ahead from each midnight of the last four weeks.
            Step::Hour => Protocol {
                horizon: DAY,
                every: DAY,
                evaluated: 4 * WEEK,
                week: WEEK,
            },
            // A week ahead from each day of the last eight weeks.
            Step::Day => Protocol {
                horizon: 7,
                every: 1,
                evaluated: 8 * 7,
                week: 7,
            },
        }
    }
}

/// A series as `step,start,value` lines: the step number of its first
/// value and the values, which must be on consecutive steps.
fn read_series(path: &Path) -> (i64, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (bench/forecast_peer.py extract writes it)",
            path.display()
        )
    });
    let mut first_step = None;
    let mut values = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let parse_error = || panic!("{}: line {}: {line}", path.display(), i + 2);
        let [step, _, value] = fields[..] else {
            parse_error()
        };
        let (Ok(step), Ok(value)) = (step.parse::<i64>(), value.parse::<f64>()) else {
            parse_error()
        };
        let first = *first_step.get_or_insert(step);
        assert_eq!(
            step,
            first + i as i64,
            "{}: a gap in the steps at line {}",
            path.display(),
            i + 2
        );
        values.push(value);
    }
    (first_step.expect("an empty series"), values)
}

struct RealRow {
    series: &'static str,
    step: Step,
    forecasts: usize,
    mase: f64,
    coverage: f64,
    models: String,
    ms_per_forecast: f64,
    choices: usize,
    ms_per_choice: f64,
    /// `series,origin_step,h,actual,weekly_naive,point,lower,upper` lines.
    points: String,
}

/// The engine on one real series, as the extension runs it: its
/// configuration for the step, four weeks of steps per forecast, choices
/// at the extension's step numbers, the learned state carried forward.
fn evaluate_real(name: &'static str, step: Step, dir: &Path) -> RealRow {
    let (first_step, series) = read_series(&dir.join(format!("{name}.csv")));
    let p = step.protocol();
    let from = series.len() - p.evaluated;
    let config = step.config();
    assert!(
        from >= config.history_steps && p.horizon <= p.week,
        "{name}: too short for the protocol"
    );
    let setup = Setup { config, first_step };
    let e = evaluation::rolling(&series, from, series.len(), p.every, p.horizon, &setup);
    let mut weekly_naive = Vec::new();
    let mut points = String::new();
    for (i, (origin, _)) in e.mape_by_origin.iter().enumerate() {
        for h in 0..p.horizon {
            let at = i * p.horizon + h;
            let naive = series[origin - p.week + h];
            weekly_naive.push(naive);
            writeln!(
                points,
                "{name},{},{h},{},{naive},{},{},{}",
                first_step + *origin as i64,
                e.actual[at],
                e.point[at],
                e.lower[at],
                e.upper[at]
            )
            .expect("writing to a string");
        }
    }
    let models = e
        .models
        .iter()
        .map(|m| {
            let used = e.model_by_forecast.iter().filter(|u| *u == m).count();
            format!("{} ({used})", m.name())
        })
        .collect::<Vec<_>>()
        .join(", ");
    RealRow {
        series: name,
        step,
        forecasts: e.forecasts,
        mase: metrics::mase(&e.actual, &e.point, &weekly_naive).unwrap_or(f64::NAN),
        coverage: metrics::coverage(&e.actual, &e.lower, &e.upper),
        models,
        ms_per_forecast: e.predicting.as_secs_f64() * 1e3 / e.forecasts.max(1) as f64,
        choices: e.choices,
        ms_per_choice: e.choosing.as_secs_f64() * 1e3 / e.choices.max(1) as f64,
        points,
    }
}

fn report_real(series_dir: &Path, results_dir: Option<&Path>) {
    println!("\n## Accuracy on real series, run as the extension runs it (95% intervals)\n");
    println!(
        "Hourly series: a day ahead from each midnight of the last four weeks; daily: a week ahead from each day of the last eight weeks. \
         Each forecast sees the {} hours or {} days before its origin, with the extension's configuration for its step \
         (`Config::default()`, `Config::daily()`), model choices where the extension makes them (step numbers from 2000-01-01 UTC) \
         and the learned state carried from one forecast to the next. MASE is against weekly seasonal naive (the same hour, or day, \
         a week earlier). ms per forecast: the forecast with the model chosen, what a cycle pays at once; ms per choice: a backtest \
         of every candidate, which the worker spreads over its cycles one fit at a time.\n",
        Config::default().history_steps,
        Config::daily().history_steps,
    );
    println!("| series | step | forecasts | MASE vs weekly seasonal naive | coverage (engine) | models used (forecasts) | ms per forecast | ms per choice (choices) |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = String::from(
        "series\tstep\tforecasts\tmase\tcoverage\tms_per_forecast\tchoices\tms_per_choice\tmodels\n",
    );
    let mut points = String::from("series,origin_step,h,actual,weekly_naive,point,lower,upper\n");
    for (name, step) in REAL_SERIES {
        let r = evaluate_real(name, step, series_dir);
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {} | {:.1} | {:.0} ({}) |",
            r.series,
            r.step.name(),
            r.forecasts,
            r.mase,
            r.coverage,
            r.models,
            r.ms_per_forecast,
            r.ms_per_choice,
            r.choices
        );
        writeln!(
            summary,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.series,
            r.step.name(),
            r.forecasts,
            r.mase,
            r.coverage,
            r.ms_per_forecast,
            r.choices,
            r.ms_per_choice,
            r.models
        )
        .expect("writing to a string");
        points.push_str(&r.points);
    }
    if let Some(dir) = results_dir {
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        };
        write("engine_summary.tsv", &summary);
        write("engine_points.csv", &points);
    }
}

/// `--series DIR` and `--results DIR`, both optional; `--real-only` skips
/// the generated scenarios and the cost passes (minutes) when only the
/// real series are of interest; `--generated-only` prints the generated
/// scenarios alone.
fn arguments() -> (Option<PathBuf>, Option<PathBuf>, bool, bool) {
    let (mut series, mut results, mut real_only, mut generated_only) = (None, None, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--series" => &mut series,
            "--results" => &mut results,
            "--real-only" => {
                real_only = true;
                continue;
            }
            "--generated-only" => {
                generated_only = true;
                continue;
            }
            _ => panic!(
                "usage: forecast_accuracy [--generated-only | --series DIR [--results DIR] [--real-only]]"
            ),
        };
        *slot = Some(PathBuf::from(
            args.next().expect("a directory after the flag"),
        ));
    }
    (series, results, real_only, generated_only)
}

fn main() {
    let (series_dir, results_dir, real_only, generated_only) = arguments();
    if real_only {
        let dir = series_dir.expect("--real-only needs --series DIR");
        report_real(&dir, results_dir.as_deref());
        return;
    }
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
    if generated_only {
        return;
    }

    if let Some(dir) = &series_dir {
        report_real(dir, results_dir.as_deref());
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

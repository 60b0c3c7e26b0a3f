//! Model choice, prediction intervals and adaptive learning.
//!
//! Candidates: seasonal naive (the fallback and the baseline), AutoETS, and
//! MSTL with an AutoETS trend when seasonality is detected. The choice is
//! made per series by rolling-origin backtest and kept for
//! [`Config::reselect_every`] predictions, or until scoring shows the chosen
//! model doing worse than the baseline. A level shift (a sudden, lasting
//! change of rate, such as a 10x step) is detected by comparing the newest
//! points with the same time one period earlier; history before it is
//! rescaled so the models see one consistent level.

use augurs::ets::trend::AutoETSTrendModel;
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::seasons::{Detector as _, PeriodogramDetector};
use augurs::{Fit, Predict};

use crate::metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    SeasonalNaive,
    Ets,
    Mstl,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::SeasonalNaive => "seasonal_naive",
            Model::Ets => "ets",
            Model::Mstl => "mstl",
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        [Model::SeasonalNaive, Model::Ets, Model::Mstl]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Prediction interval level, e.g. 0.95.
    pub level: f64,
    /// Seasonal periods looked for, in steps (24 and 168 for hourly data).
    pub periods: Vec<usize>,
    /// Steps per backtest fold.
    pub backtest_horizon: usize,
    pub backtest_folds: usize,
    /// Fewer observed points than this: seasonal naive only, flagged.
    pub min_history: usize,
    /// Predictions between two backtests of the same series.
    pub reselect_every: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            level: 0.95,
            periods: vec![24, 168],
            backtest_horizon: 24,
            backtest_folds: 2,
            min_history: 48,
            reselect_every: 24,
        }
    }
}

/// What the engine has learned about one series; stored between cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    pub model: Option<Model>,
    /// Multiplier on the interval's half-width, adapted to observed coverage.
    pub margin: f64,
    pub predictions_since_selection: u32,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            model: None,
            margin: 1.0,
            predictions_since_selection: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub model: Model,
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// The seasonal-naive forecast of the same steps: the baseline MASE is scored against.
    pub naive: Vec<f64>,
    /// Seasonal periods detected.
    pub periods: Vec<usize>,
    /// Too little history: the forecast is a plain fallback.
    pub insufficient_history: bool,
    /// Whether a level shift was found and the history rescaled.
    pub level_shift: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("empty series")]
    Empty,
}

/// z-score of a two-sided interval at `level`.
fn z_of(level: f64) -> f64 {
    // Acklam's rational approximation of the normal quantile.
    let p = 0.5 + level.clamp(0.5, 0.9999) / 2.0;
    let q = p - 0.5;
    if (0.02425..=0.97575).contains(&p) {
        let r = q * q;
        let a = [
            -39.696_830_286_653_76,
            220.946_098_424_520_5,
            -275.928_510_446_968_7,
            138.357_751_867_269,
            -30.664_798_066_147_16,
            2.506_628_277_459_239,
        ];
        let b = [
            -54.476_098_798_224_06,
            161.585_836_858_040_9,
            -155.698_979_859_886_6,
            66.801_311_887_719_72,
            -13.280_681_552_885_72,
        ];
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    } else {
        let r = (-2.0 * (1.0 - p).ln()).sqrt();
        let c = [
            -0.007_784_894_002_430_293,
            -0.322_396_458_041_136_5,
            -2.400_758_277_161_838,
            -2.549_732_539_343_734,
            4.374_664_141_464_968,
            2.938_163_982_698_783,
        ];
        let d = [
            0.007_784_695_709_041_462,
            0.322_467_129_070_039_8,
            2.445_134_137_142_996,
            3.754_408_661_907_416,
        ];
        -(((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5])
            / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1.0)
    }
}

/// Seasonal periods of `values` among `candidates`. A period counts when
/// the periodogram finds a peak within 5% of it, or when the series is
/// clearly autocorrelated at that lag: Welch's periodogram needs many
/// periods of data, and four weeks are too few for it to see a weekly cycle
/// that the autocorrelation shows plainly.
pub fn detect_periods(values: &[f64], candidates: &[usize]) -> Vec<usize> {
    const MIN_AUTOCORRELATION: f64 = 0.4;
    let usable: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|p| values.len() >= 2 * p + 1 && *p > 1)
        .collect();
    if usable.is_empty() {
        return Vec::new();
    }
    let max = *usable.iter().max().unwrap_or(&2);
    let detector = PeriodogramDetector::builder()
        .min_period(2)
        .max_period(max as u32 + max as u32 / 10)
        .threshold(0.5)
        .build();
    let found = detector.detect(values);
    usable
        .into_iter()
        .filter(|p| {
            found
                .iter()
                .any(|f| ((*f as f64) - *p as f64).abs() <= (*p as f64 * 0.05).max(1.0))
                || autocorrelation(values, *p) >= MIN_AUTOCORRELATION
        })
        .collect()
}

fn autocorrelation(values: &[f64], lag: usize) -> f64 {
    let n = values.len();
    if lag >= n {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let variance: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    if variance == 0.0 {
        return 0.0;
    }
    (lag..n)
        .map(|i| (values[i] - mean) * (values[i - lag] - mean))
        .sum::<f64>()
        / variance
}

/// Seasonal naive: each step repeats the value one `period` earlier.
fn seasonal_naive(history: &[f64], horizon: usize, period: usize) -> Vec<f64> {
    let n = history.len();
    let period = period.clamp(1, n.max(1));
    (0..horizon)
        .map(|h| history[n - period + (h % period)])
        .collect()
}

/// Finds a lasting change of level at the end of the series and rescales
/// the history before it by the ratio, so that seasonality learnt from the
/// old level carries over. Returns the adjusted series and whether it did.
pub fn adjust_level_shift(values: &[f64], lag: usize) -> (Vec<f64>, bool) {
    const RUN: usize = 8;
    const FACTOR: f64 = 3.0;
    let n = values.len();
    if lag == 0 || n < lag + RUN + 1 {
        return (values.to_vec(), false);
    }
    let ratio = |i: usize| (values[i] + 1.0) / (values[i - lag] + 1.0);
    // The newest RUN points all moved the same way by at least FACTOR …
    let recent: Vec<f64> = (n - RUN..n).map(ratio).collect();
    let up = recent.iter().all(|r| *r >= FACTOR);
    let down = recent.iter().all(|r| *r <= 1.0 / FACTOR);
    if !up && !down {
        return (values.to_vec(), false);
    }
    // … find where that run started (at most one lag back: after that the
    // comparison is between two shifted points) …
    let mut start = n - RUN;
    while start > lag && start > n - lag {
        let r = ratio(start - 1);
        if (up && r >= FACTOR) || (down && r <= 1.0 / FACTOR) {
            start -= 1;
        } else {
            break;
        }
    }
    let mut ratios: Vec<f64> = (start..n).map(ratio).collect();
    ratios.sort_by(f64::total_cmp);
    let factor = ratios[ratios.len() / 2];
    let mut adjusted = values.to_vec();
    for v in &mut adjusted[..start] {
        *v = (*v + 1.0) * factor - 1.0;
    }
    (adjusted, true)
}

struct Candidate {
    model: Model,
    periods: Vec<usize>,
}

/// Point forecast and (unscaled) interval of one candidate.
fn run_candidate(
    c: &Candidate,
    history: &[f64],
    horizon: usize,
    level: f64,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let to_triplet = |f: augurs::Forecast| {
        let intervals = f.intervals?;
        Some((f.point, intervals.lower, intervals.upper))
    };
    match c.model {
        Model::SeasonalNaive => {
            let period = c.periods.first().copied().unwrap_or(1);
            let point = seasonal_naive(history, horizon, period);
            // Spread of the seasonal differences, growing with the number of
            // periods ahead (a random walk over periods).
            let diffs: Vec<f64> = (period..history.len())
                .map(|i| history[i] - history[i - period])
                .collect();
            let sigma = if diffs.len() > 1 {
                let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
                (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64)
                    .sqrt()
            } else {
                history.iter().map(|v| v.abs()).sum::<f64>() / history.len().max(1) as f64
            };
            let z = z_of(level);
            let half: Vec<f64> = (0..horizon)
                .map(|h| z * sigma * ((h / period + 1) as f64).sqrt())
                .collect();
            let lower = point.iter().zip(&half).map(|(p, w)| p - w).collect();
            let upper = point.iter().zip(&half).map(|(p, w)| p + w).collect();
            Some((point, lower, upper))
        }
        Model::Ets => {
            let fitted = AutoETS::non_seasonal().fit(history).ok()?;
            to_triplet(fitted.predict(horizon, level).ok()?)
        }
        Model::Mstl => {
            let trend = AutoETSTrendModel::from(AutoETS::non_seasonal());
            let fitted = MSTLModel::new(c.periods.clone(), trend).fit(history).ok()?;
            to_triplet(fitted.predict(horizon, level).ok()?)
        }
    }
}

/// Rolling-origin backtest: mean absolute error over the folds, relative to
/// seasonal naive on the same folds (lower is better; 1 = as good as naive).
fn backtest(c: &Candidate, history: &[f64], config: &Config, naive_period: usize) -> Option<f64> {
    let h = config.backtest_horizon;
    let mut model_error = 0.0;
    let mut naive_error = 0.0;
    for fold in 1..=config.backtest_folds {
        let cut = history.len().checked_sub(fold * h)?;
        let train = &history[..cut];
        if train.len() < config.min_history {
            return None;
        }
        let test = &history[cut..cut + h];
        let (point, _, _) = run_candidate(c, train, h, config.level)?;
        model_error += metrics::mae(test, &point);
        naive_error += metrics::mae(test, &seasonal_naive(train, h, naive_period));
    }
    Some(if naive_error > 0.0 {
        model_error / naive_error
    } else if model_error > 0.0 {
        f64::INFINITY
    } else {
        1.0
    })
}

/// Forecasts `horizon` steps after `history`. Returns the prediction and
/// the updated learned state (the model choice, if it was made now).
pub fn predict(
    history: &[f64],
    horizon: usize,
    config: &Config,
    learned: &Learned,
) -> Result<(Prediction, Learned), ForecastError> {
    if history.is_empty() {
        return Err(ForecastError::Empty);
    }
    let mut learned = learned.clone();
    let periods = detect_periods(history, &config.periods);
    // Compare with the longest cycle the history covers (a week ago): a
    // shorter lag would take a weekly pattern (quiet weekends) for a shift,
    // and a day ago may already be after the shift.
    let lag = config
        .periods
        .iter()
        .copied()
        .filter(|p| history.len() > p + 8)
        .max()
        .unwrap_or(0);
    let (adjusted, level_shift) = adjust_level_shift(history, lag);
    // The baseline repeats the longest cycle: with a weekly pattern,
    // yesterday is a poor guess for a Saturday.
    let naive_period = periods.iter().copied().max().unwrap_or(1);
    let naive = seasonal_naive(&adjusted, horizon, naive_period);
    let insufficient = adjusted.len() < config.min_history;

    let mut candidates = vec![Candidate {
        model: Model::SeasonalNaive,
        periods: vec![naive_period],
    }];
    if !insufficient {
        candidates.push(Candidate {
            model: Model::Ets,
            periods: Vec::new(),
        });
        if !periods.is_empty() {
            candidates.push(Candidate {
                model: Model::Mstl,
                periods: periods.clone(),
            });
        }
    }
    let due = learned.model.is_none()
        || learned.predictions_since_selection >= config.reselect_every
        || level_shift
        || !candidates.iter().any(|c| Some(c.model) == learned.model);
    if due {
        let mut best = (Model::SeasonalNaive, f64::INFINITY);
        for c in &candidates {
            if let Some(score) = backtest(c, &adjusted, config, naive_period) {
                if score < best.1 {
                    best = (c.model, score);
                }
            }
        }
        learned.model = Some(best.0);
        learned.predictions_since_selection = 0;
    }
    learned.predictions_since_selection += 1;

    let chosen = learned.model.unwrap_or(Model::SeasonalNaive);
    let candidate = candidates
        .iter()
        .find(|c| c.model == chosen)
        .unwrap_or(&candidates[0]);
    let (model, (point, lower, upper)) =
        match run_candidate(candidate, &adjusted, horizon, config.level) {
            Some(result) => (chosen, result),
            None => (
                Model::SeasonalNaive,
                run_candidate(&candidates[0], &adjusted, horizon, config.level)
                    .ok_or(ForecastError::Empty)?,
            ),
        };
    // Counts are never negative; the learned margin widens or narrows the
    // interval; and arrivals are at least as uncertain as a Poisson process
    // (a perfectly regular history does not make the future certain).
    let z = z_of(config.level);
    let poisson = |p: f64| z * p.max(1.0).sqrt();
    let point: Vec<f64> = point.iter().map(|p| p.max(0.0)).collect();
    let lower = point
        .iter()
        .zip(&lower)
        .map(|(p, l)| (p - ((p - l).max(0.0) * learned.margin).max(poisson(*p))).max(0.0))
        .collect();
    let upper = point
        .iter()
        .zip(&upper)
        .map(|(p, u)| p + ((u - p).max(0.0) * learned.margin).max(poisson(*p)))
        .collect();
    Ok((
        Prediction {
            model,
            point,
            lower,
            upper,
            naive,
            periods,
            insufficient_history: insufficient,
            level_shift,
        },
        learned,
    ))
}

/// One forecast step scored against what arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub actual: f64,
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub naive: f64,
}

/// Learns from scored forecasts: the interval margin follows the observed
/// coverage toward the target level, and a model doing worse than seasonal
/// naive is dropped so the next prediction selects again.
pub fn learn(learned: &Learned, scored: &[Scored], config: &Config) -> Learned {
    let mut next = learned.clone();
    if scored.is_empty() {
        return next;
    }
    let inside = scored
        .iter()
        .filter(|s| s.lower <= s.actual && s.actual <= s.upper)
        .count() as f64;
    let coverage = inside / scored.len() as f64;
    if coverage < config.level - 0.05 {
        next.margin = (next.margin * 1.25).min(10.0);
    } else if coverage > (config.level + 0.03).min(0.995) {
        next.margin = (next.margin * 0.9).max(0.5);
    }
    let actual: Vec<f64> = scored.iter().map(|s| s.actual).collect();
    let point: Vec<f64> = scored.iter().map(|s| s.point).collect();
    let naive: Vec<f64> = scored.iter().map(|s| s.naive).collect();
    if metrics::mase(&actual, &point, &naive).is_some_and(|m| m > 1.25) {
        next.model = None;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_scores() {
        assert!((z_of(0.95) - 1.959_96).abs() < 1e-3);
        assert!((z_of(0.8) - 1.281_55).abs() < 1e-3);
        assert!((z_of(0.999) - 3.290_5).abs() < 1e-2);
    }

    #[test]
    fn level_shift_is_found_and_undone() {
        let mut values: Vec<f64> = (0..200).map(|i| 10.0 + (i % 24) as f64).collect();
        for v in &mut values[190..] {
            *v *= 10.0;
        }
        let (adjusted, shifted) = adjust_level_shift(&values, 24);
        assert!(shifted);
        // Before the shift, the history now sits at the new level.
        assert!(
            (adjusted[100] / values[100] - 10.0).abs() < 1.5,
            "{} vs {}",
            adjusted[100],
            values[100]
        );
        assert_eq!(adjusted[195], values[195]);
        let steady: Vec<f64> = (0..200).map(|i| 10.0 + (i % 24) as f64).collect();
        assert!(!adjust_level_shift(&steady, 24).1);
    }

    #[test]
    fn learning_widens_an_interval_that_misses() {
        let config = Config::default();
        let scored: Vec<Scored> = (0..20)
            .map(|i| Scored {
                actual: 10.0 + i as f64,
                point: 10.0,
                lower: 9.0,
                upper: 11.0,
                naive: 10.0,
            })
            .collect();
        let next = learn(&Learned::default(), &scored, &config);
        assert!(next.margin > 1.0);
    }

    #[test]
    fn model_names_round_trip() {
        for m in [Model::SeasonalNaive, Model::Ets, Model::Mstl] {
            assert_eq!(Model::from_name(m.name()), Some(m));
        }
    }
}

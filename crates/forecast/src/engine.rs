//! Model choice, prediction intervals and adaptive learning.
//!
//! Candidates: seasonal naive (the fallback and the baseline), AutoETS, and
//! MSTL with an AutoETS trend when seasonality is detected. The choice is
//! made per series by rolling-origin backtest on the history before an
//! origin (every [`Config::selection_every`] steps), and used from one
//! period after it: the choice is prepared a fit at a time while the
//! previous one is in use, so no single call pays for a whole backtest, and
//! it depends only on that history, never on how the work was split or
//! when the engine was called. A level shift (a sudden, lasting change of
//! rate, such as a 10x step) is detected by comparing the newest points
//! with the same time one period earlier; history before it is rescaled so
//! the models see one consistent level.

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

    pub const ALL: [Model; 3] = [Model::SeasonalNaive, Model::Ets, Model::Mstl];

    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
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
    /// Steps between two model choices; a choice is made on the history
    /// before a multiple of this (absolute step numbers) and used for the
    /// `selection_every` steps after the next one.
    pub selection_every: usize,
    /// Steps of history a choice backtests on (the newest before its origin).
    pub selection_window: usize,
    /// Steps after an origin before its choice is prepared: the last steps
    /// before it may still change (late rows, a filling hour).
    pub settle_steps: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            level: 0.95,
            periods: vec![24, 168],
            backtest_horizon: 24,
            backtest_folds: 7,
            min_history: 48,
            selection_every: 24,
            selection_window: 4 * 168,
            settle_steps: 2,
        }
    }
}

/// Steps of history a forecast is made from (hours, or days for `date`
/// keys): four weeks of hours, two weekly cycles for MSTL. The extension
/// and the accuracy benchmark both cut the history here.
pub const FORECAST_HISTORY_STEPS: usize = 4 * 168;

impl Config {
    /// Steps of a day (`date` keys): weekly and yearly seasons in days, two
    /// weeks of history before the first real model, backtests a week
    /// ahead, and a model choice a week over the last eight weeks. Shared by
    /// the extension and the accuracy benchmark, so what is measured is
    /// what runs.
    pub fn daily() -> Config {
        Config {
            periods: vec![7, 365],
            min_history: 14,
            backtest_horizon: 7,
            selection_every: 7,
            selection_window: 8 * 7,
            ..Config::default()
        }
    }
}

/// What the engine has learned about one series; stored between cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    /// The model forecasts use (seasonal naive when none is chosen yet).
    pub model: Option<Model>,
    /// The origin the model was chosen at.
    pub model_origin: Option<i64>,
    /// A choice in progress (or made ahead of its turn).
    pub pending: Option<Selection>,
    /// Multiplier on the interval's half-width, adapted to observed coverage.
    pub margin: f64,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            model: None,
            model_origin: None,
            pending: None,
            margin: 1.0,
        }
    }
}

/// A model choice for one origin, done one backtest fit at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Absolute step number: the choice backtests on the steps before it.
    pub origin: i64,
    /// Model and seasonal-naive error of each fit done, in task order;
    /// `None` for a fit that could not be made.
    pub fits: Vec<Option<(f64, f64)>>,
    /// The model chosen, once every fit is done.
    pub model: Option<Model>,
    /// The history the fits were made on (see [`fingerprint`]): a choice
    /// in progress whose history changed since (late rows, a recount)
    /// starts over.
    pub fingerprint: i64,
}

impl Selection {
    pub fn new(origin: i64) -> Selection {
        Selection {
            origin,
            fits: Vec::new(),
            model: None,
            fingerprint: 0,
        }
    }
}

/// A hash of a history's values (FNV-1a over their bits).
pub fn fingerprint(history: &[f64]) -> i64 {
    let hash = history
        .iter()
        .chain(std::iter::once(&(history.len() as f64)))
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, v| {
            v.to_bits()
                .to_le_bytes()
                .iter()
                .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
        });
    hash as i64
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
        .filter(|p| values.len() > 2 * p && *p > 1)
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
///
/// A quiet stretch one period ago (a holiday, an outage) is not an old
/// level: where the history reaches two periods back, the newest points
/// must have moved against both; and a rise from hours that were far below
/// what the series usually holds at that time of day is no shift. A fall is
/// the costly mistake (it makes partitions too large), so it must last a
/// whole day, and a fall to nothing is a closure or an outage, not a level.
pub fn adjust_level_shift(values: &[f64], lag: usize) -> (Vec<f64>, bool) {
    const RUN: usize = 8;
    const DOWN_RUN: usize = 24;
    const FACTOR: f64 = 3.0;
    let n = values.len();
    if lag == 0 || n < lag + RUN + 1 {
        return (values.to_vec(), false);
    }
    let ratio = |i: usize| (values[i] + 1.0) / (values[i - lag] + 1.0);
    let moved = |i: usize, up: bool| {
        let moved_by = |r: f64| if up { r >= FACTOR } else { r <= 1.0 / FACTOR };
        moved_by(ratio(i))
            && (n < 2 * lag + RUN + 1
                || i < 2 * lag
                || moved_by((values[i] + 1.0) / (values[i - 2 * lag] + 1.0)))
    };
    // The newest points all moved the same way by at least FACTOR …
    let up = (n - RUN..n).all(|i| moved(i, true));
    let down = n > lag + DOWN_RUN && (n - DOWN_RUN..n).all(|i| moved(i, false));
    if !up && !down {
        return (values.to_vec(), false);
    }
    let run = if up { RUN } else { DOWN_RUN };
    let recent = n - run..n;
    if up {
        // What the series holds at the same time of day (a period of a
        // week has seven days; otherwise any time), before the run.
        let day = if lag.is_multiple_of(7) { lag / 7 } else { 1 };
        let usual = |i: usize| {
            let (sum, count) = (1..=i / day)
                .map(|k| i - k * day)
                .filter(|j| *j < n - run)
                .fold((0.0, 0usize), |(sum, count), j| {
                    (sum + values[j], count + 1)
                });
            sum / count.max(1) as f64
        };
        let then: f64 = recent.clone().map(|i| values[i - lag]).sum::<f64>() / run as f64;
        let usually: f64 = recent.clone().map(|i| usual(i - lag)).sum::<f64>() / run as f64;
        if (then + 1.0) * FACTOR < usually + 1.0 {
            return (values.to_vec(), false);
        }
    } else if recent.clone().filter(|i| values[*i] > 0.0).count() < run / 2 {
        return (values.to_vec(), false);
    }
    // … find where that run started (at most one lag back: after that the
    // comparison is between two shifted points) …
    let mut start = n - run;
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

/// What a forecast or a choice works on: the history with a level shift
/// undone, the seasonal periods found in it, and the candidates.
struct Plan {
    adjusted: Vec<f64>,
    periods: Vec<usize>,
    naive_period: usize,
    level_shift: bool,
    insufficient: bool,
    /// Candidates beyond seasonal naive (the baseline, always available).
    candidates: Vec<Candidate>,
}

impl Plan {
    fn new(history: &[f64], config: &Config) -> Plan {
        let periods = detect_periods(history, &config.periods);
        // Compare with the longest cycle the history covers (a week ago): a
        // shorter lag would take a weekly pattern (quiet weekends) for a
        // shift, and a day ago may already be after the shift.
        let lag = config
            .periods
            .iter()
            .copied()
            .filter(|p| history.len() > p + 8)
            .max()
            .unwrap_or(0);
        let (adjusted, level_shift) = adjust_level_shift(history, lag);
        // The baseline repeats the longest cycle: with a weekly pattern,
        // yesterday is a poor guess for a Saturday. Before any cycle can be
        // detected (that takes two), the longest one the history covers
        // once: a day of hours repeats yesterday's profile, not its last
        // hour.
        let naive_period = periods.iter().copied().max().unwrap_or_else(|| {
            config
                .periods
                .iter()
                .copied()
                .filter(|p| *p > 1 && history.len() >= *p)
                .max()
                .unwrap_or(1)
        });
        let insufficient = adjusted.len() < config.min_history;
        let mut candidates = Vec::new();
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
        Plan {
            adjusted,
            periods,
            naive_period,
            level_shift,
            insufficient,
            candidates,
        }
    }

    fn naive_candidate(&self) -> Candidate {
        Candidate {
            model: Model::SeasonalNaive,
            periods: vec![self.naive_period],
        }
    }

    /// Backtest tasks in order: each candidate, each fold.
    fn tasks(&self, config: &Config) -> usize {
        self.candidates.len() * config.backtest_folds
    }

    /// Rolling-origin backtest, one fold of one candidate: its mean
    /// absolute error and seasonal naive's on the same steps; `None` when
    /// the candidate cannot be fitted, which rules it out.
    fn fit(&self, task: usize, config: &Config) -> Option<(f64, f64)> {
        let candidate = &self.candidates[task / config.backtest_folds];
        let fold = task % config.backtest_folds + 1;
        let h = config.backtest_horizon;
        // A fold the history is too short for counts for no candidate.
        let skipped = Some((0.0, 0.0));
        let Some(cut) = self.adjusted.len().checked_sub(fold * h) else {
            return skipped;
        };
        let train = &self.adjusted[..cut];
        if train.len() < config.min_history {
            return skipped;
        }
        let test = &self.adjusted[cut..cut + h];
        let (point, _, _) = run_candidate(candidate, train, h, config.level)?;
        Some((
            metrics::mae(test, &point),
            metrics::mae(test, &seasonal_naive(train, h, self.naive_period)),
        ))
    }

    /// The candidate with the lowest error relative to seasonal naive over
    /// every fold, if below 1; seasonal naive otherwise.
    fn best(&self, fits: &[Option<(f64, f64)>], config: &Config) -> Model {
        let mut best = (Model::SeasonalNaive, 1.0);
        for (c, candidate) in self.candidates.iter().enumerate() {
            let folds = &fits[c * config.backtest_folds..(c + 1) * config.backtest_folds];
            let Some(errors) = folds.iter().copied().collect::<Option<Vec<_>>>() else {
                continue;
            };
            let model_error: f64 = errors.iter().map(|e| e.0).sum();
            let naive_error: f64 = errors.iter().map(|e| e.1).sum();
            let score = if naive_error > 0.0 {
                model_error / naive_error
            } else if model_error > 0.0 {
                f64::INFINITY
            } else {
                1.0
            };
            if score < best.1 {
                best = (candidate.model, score);
            }
        }
        best.0
    }
}

/// Moves a choice forward by at most `budget` fits (all of them when
/// `None`). Returns whether the choice is made.
fn advance(
    history: &[f64],
    selection: &mut Selection,
    config: &Config,
    budget: &mut Option<usize>,
) -> bool {
    // A choice once made stays: one late row must not cost a whole
    // backtest in the cycle that needs the choice.
    if selection.model.is_some() {
        return true;
    }
    let fingerprint = fingerprint(history);
    if selection.fingerprint != fingerprint {
        *selection = Selection {
            fingerprint,
            ..Selection::new(selection.origin)
        };
    }
    if *budget == Some(0) {
        return false;
    }
    let plan = Plan::new(history, config);
    let tasks = plan.tasks(config);
    while selection.fits.len() < tasks {
        match budget {
            Some(0) => return false,
            Some(left) => *left -= 1,
            None => {}
        }
        let fit = plan.fit(selection.fits.len(), config);
        selection.fits.push(fit);
    }
    selection.model = Some(plan.best(&selection.fits, config));
    true
}

/// Origins in steps: the choice in use for a forecast from `end` (the
/// step after the newest value) and the one being prepared.
pub fn selection_origins(end: i64, config: &Config) -> (i64, i64) {
    let every = config.selection_every.max(1) as i64;
    let upcoming = end.div_euclid(every) * every;
    (upcoming - every, upcoming)
}

/// Makes the model choice a forecast from `end` needs, and prepares the
/// next one, doing at most `budget` backtest fits (`None`: whatever the
/// forecast needs, now). `history` holds the steps just before `end`.
pub fn choose(
    history: &[f64],
    end: i64,
    learned: &mut Learned,
    config: &Config,
    mut budget: Option<usize>,
) {
    let (in_use, upcoming) = selection_origins(end, config);
    let before = |origin: i64| -> &[f64] {
        let back = (end - origin).max(0) as usize;
        let cut = history.len().saturating_sub(back);
        &history[cut.saturating_sub(config.selection_window)..cut]
    };
    if learned.model_origin != Some(in_use) {
        let mut selection = match learned.pending.take() {
            Some(s) if s.origin == in_use => s,
            _ => Selection::new(in_use),
        };
        if !advance(before(in_use), &mut selection, config, &mut budget) {
            learned.pending = Some(selection);
            return;
        }
        learned.model = selection.model;
        learned.model_origin = Some(in_use);
    }
    // Prepared ahead only within a budget (a forecast does not wait for
    // it), and once the steps before its origin have settled.
    if budget.is_none() || end - upcoming < config.settle_steps as i64 {
        return;
    }
    let mut selection = match learned.pending.take() {
        Some(s) if s.origin == upcoming => s,
        _ => Selection::new(upcoming),
    };
    advance(before(upcoming), &mut selection, config, &mut budget);
    learned.pending = Some(selection);
}

/// Forecasts `horizon` steps after `history` (which ends just before step
/// `end`), making the model choice it needs first.
pub fn forecast(
    history: &[f64],
    end: i64,
    horizon: usize,
    config: &Config,
    learned: &Learned,
) -> Result<(Prediction, Learned), ForecastError> {
    let mut learned = learned.clone();
    choose(history, end, &mut learned, config, None);
    Ok((predict(history, horizon, config, &learned)?, learned))
}

/// Forecasts `horizon` steps after `history` with the model `learned`
/// holds (seasonal naive if none is chosen yet).
pub fn predict(
    history: &[f64],
    horizon: usize,
    config: &Config,
    learned: &Learned,
) -> Result<Prediction, ForecastError> {
    if history.is_empty() {
        return Err(ForecastError::Empty);
    }
    let plan = Plan::new(history, config);
    let naive_candidate = plan.naive_candidate();
    let naive = seasonal_naive(&plan.adjusted, horizon, plan.naive_period);
    let chosen = learned.model.unwrap_or(Model::SeasonalNaive);
    // The chosen model may not apply to today's history (MSTL when no
    // season is found any more): the nearest candidate stands in.
    let candidate = plan
        .candidates
        .iter()
        .find(|c| c.model == chosen)
        .or_else(|| {
            (chosen != Model::SeasonalNaive)
                .then(|| plan.candidates.iter().find(|c| c.model == Model::Ets))
                .flatten()
        })
        .unwrap_or(&naive_candidate);
    let (model, (point, lower, upper)) =
        match run_candidate(candidate, &plan.adjusted, horizon, config.level) {
            Some(result) => (candidate.model, result),
            None => (
                Model::SeasonalNaive,
                run_candidate(&naive_candidate, &plan.adjusted, horizon, config.level)
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
    Ok(Prediction {
        model,
        point,
        lower,
        upper,
        naive,
        periods: plan.periods,
        insufficient_history: plan.insufficient,
        level_shift: plan.level_shift,
    })
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
/// coverage toward the target level. The model is judged by the next
/// choice's backtest, on a week of origins, not by the few steps one
/// cycle scores.
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

    /// Hours of a call centre: open 7:00-21:00 on weekdays, closed at
    /// weekends; `closed_days` (days from the start) are holidays.
    fn office_hours(days: usize, closed_days: &[usize]) -> Vec<f64> {
        (0..days * 24)
            .map(|h| {
                let (day, hour) = (h / 24, h % 24);
                let open = day % 7 < 5 && (7..21).contains(&hour) && !closed_days.contains(&day);
                if open {
                    200.0 + 10.0 * (hour as f64 - 14.0).abs()
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn a_holiday_a_week_ago_is_no_level_shift() {
        // The newest day is an ordinary Friday whose Friday a week before
        // was a holiday; the forecast must not scale the history up by
        // the calls of a day against the nothing of the holiday.
        for weeks_before in [1, 2, 3] {
            let friday = weeks_before * 7 + 4;
            let mut values = office_hours(friday + 1, &[friday - 7]);
            values.truncate(friday * 24 + 21);
            let (adjusted, shifted) = adjust_level_shift(&values, 168);
            assert!(
                !shifted,
                "{weeks_before} weeks of history: taken for a shift"
            );
            assert_eq!(adjusted, values);
        }
        // Nor is the holiday itself, an afternoon of nothing where a week
        // and two weeks ago there were calls.
        for weeks_before in [1, 2, 3] {
            let friday = weeks_before * 7 + 4;
            let mut values = office_hours(friday + 1, &[friday]);
            values.truncate(friday * 24 + 21);
            assert!(
                !adjust_level_shift(&values, 168).1,
                "{weeks_before} weeks: the holiday"
            );
        }
    }

    #[test]
    fn a_trickle_holiday_is_no_level_shift_either() {
        // Holidays at a tenth of the usual calls, one and two weeks before
        // (Christmas and New Year's Eve fall on the same weekday).
        for holidays in [vec![11], vec![4, 11]] {
            let mut values = office_hours(19, &[]);
            for day in &holidays {
                for v in &mut values[day * 24..(day + 1) * 24] {
                    *v *= 0.1;
                }
            }
            values.truncate(18 * 24 + 21);
            assert!(
                !adjust_level_shift(&values, 168).1,
                "holidays on days {holidays:?} taken for a shift"
            );
        }
    }

    #[test]
    fn a_step_from_a_sparse_level_is_found() {
        // A quarter of a row an hour for two weeks, then 30 an hour.
        let mut values: Vec<f64> = (0..17 * 24)
            .map(|h| if h % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let step = values.len() - 10;
        for v in &mut values[step..] {
            *v = 30.0;
        }
        assert!(adjust_level_shift(&values, 168).1);
    }

    #[test]
    fn a_fall_must_last_a_day() {
        // A 24/7 table at 100 an hour whose last ten hours ran at 3%: an
        // upstream outage, not yet a new level.
        let mut values = vec![100.0; 20 * 24];
        let n = values.len();
        for v in &mut values[n - 10..] {
            *v = 3.0;
        }
        assert!(!adjust_level_shift(&values, 168).1);
        // A day and more at a tenth is one.
        for v in &mut values[n - 30..] {
            *v = 10.0;
        }
        let (adjusted, shifted) = adjust_level_shift(&values, 168);
        assert!(shifted);
        assert!(adjusted[100] < 15.0, "{}", adjusted[100]);
    }

    #[test]
    fn a_lasting_step_is_found_with_weeks_of_history() {
        // Three weeks to a Friday afternoon; the step came that morning.
        let mut values = office_hours(19, &[]);
        values.truncate(18 * 24 + 21);
        let step = 18 * 24 + 9;
        for v in &mut values[step..] {
            *v *= 10.0;
        }
        let (adjusted, shifted) = adjust_level_shift(&values, 168);
        assert!(shifted);
        let at = 13 * 24 + 12;
        assert!((adjusted[at] + 1.0) / (values[at] + 1.0) > 5.0);
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

    fn seasonal_trend() -> Vec<f64> {
        crate::workload::scenarios()
            .into_iter()
            .find(|s| s.name == "seasonal_trend")
            .expect("scenario")
            .series()
    }

    #[test]
    fn a_day_of_history_is_forecast_with_its_daily_profile() {
        // 30 hours: quiet nights, a busy afternoon, ending at 05:00.
        let profile = |h: usize| {
            if (12..18).contains(&(h % 24)) {
                100.0
            } else {
                5.0
            }
        };
        let history: Vec<f64> = (0..30).map(profile).collect();
        let (prediction, _) =
            forecast(&history, 30, 24, &Config::default(), &Learned::default()).unwrap();
        assert!(prediction.insufficient_history);
        // The next afternoon (hours 36..42) is forecast busy, not as the
        // quiet last hour.
        let afternoon: f64 = prediction.point[6..12].iter().sum::<f64>() / 6.0;
        let night: f64 = prediction.point[0..6].iter().sum::<f64>() / 6.0;
        assert!(
            afternoon > 50.0 && night < 20.0,
            "afternoon {afternoon}, night {night}"
        );
    }

    #[test]
    fn a_forecast_uses_the_choice_made_one_period_before() {
        let config = Config::default();
        assert_eq!(selection_origins(48, &config), (24, 48));
        assert_eq!(selection_origins(71, &config), (24, 48));
        assert_eq!(selection_origins(5, &config), (-24, 0));
    }

    #[test]
    fn a_choice_is_the_same_however_its_fits_are_split() {
        let config = Config::default();
        let series = seasonal_trend();
        let end = 5 * 168 + 7;
        // All at once, when the forecast needs it (a replay, a cold start).
        let (at_once, learned_at_once) =
            forecast(&series[..end], end as i64, 24, &config, &Learned::default()).unwrap();
        // One fit per call over the cycles of the day before, forecasting
        // every hour as the worker does.
        let mut learned = Learned::default();
        let mut fits_done = 0;
        for hour in (end - 30)..=end {
            for _ in 0..3 {
                let before = learned.pending.as_ref().map_or(0, |p| p.fits.len());
                let origin = learned.pending.as_ref().map(|p| p.origin);
                choose(&series[..hour], hour as i64, &mut learned, &config, Some(1));
                let after = learned.pending.as_ref().map_or(0, |p| p.fits.len());
                if learned.pending.as_ref().map(|p| p.origin) == origin {
                    assert!(after <= before + 1, "one call made {} fits", after - before);
                }
                fits_done += after.saturating_sub(before);
            }
            if hour < end {
                let (_, next) =
                    forecast(&series[..hour], hour as i64, 24, &config, &learned).unwrap();
                learned = next;
            }
        }
        assert!(fits_done > 0, "nothing was prepared ahead");
        // What was prepared is what the history before its origin gives.
        let prepared = learned.pending.clone().expect("a choice prepared ahead");
        assert!(prepared.model.is_some(), "{} fits", prepared.fits.len());
        let cut = prepared.origin as usize;
        let mut reference = Selection::new(prepared.origin);
        advance(
            &series[cut - config.selection_window..cut],
            &mut reference,
            &config,
            &mut None,
        );
        assert_eq!(prepared, reference);
        let (spread, learned_spread) =
            forecast(&series[..end], end as i64, 24, &config, &learned).unwrap();
        assert_eq!(learned_spread.model, learned_at_once.model);
        assert_eq!(learned_spread.model_origin, learned_at_once.model_origin);
        assert_eq!(spread.point, at_once.point);
        assert_eq!(spread.upper, at_once.upper);
        assert_eq!(at_once.model, Model::Mstl, "a seasonal series with a trend");
    }

    #[test]
    fn a_choice_prepared_on_history_that_changed_since_starts_over() {
        let config = Config::default();
        let mut series = seasonal_trend();
        let end = 5 * 168 + 5;
        let mut learned = Learned::default();
        choose(&series[..end], end as i64, &mut learned, &config, None);
        for _ in 0..3 {
            choose(&series[..end], end as i64, &mut learned, &config, Some(1));
        }
        let prepared = learned.pending.clone().expect("a choice being prepared");
        assert_eq!(prepared.fits.len(), 3);
        // Late rows land in the hour before the origin.
        series[prepared.origin as usize - 1] += 50.0;
        choose(&series[..end], end as i64, &mut learned, &config, Some(1));
        let restarted = learned.pending.clone().unwrap();
        assert_eq!(restarted.origin, prepared.origin);
        assert_eq!(
            restarted.fits.len(),
            1,
            "the fits on the old history were dropped"
        );
        assert_ne!(restarted.fingerprint, prepared.fingerprint);
        // Once made, a choice stays.
        for _ in 0..20 {
            choose(&series[..end], end as i64, &mut learned, &config, Some(1));
        }
        let made = learned.pending.clone().unwrap();
        assert!(made.model.is_some());
        series[prepared.origin as usize - 2] += 50.0;
        choose(&series[..end], end as i64, &mut learned, &config, Some(1));
        assert_eq!(learned.pending, Some(made));
    }

    #[test]
    fn nothing_is_prepared_before_the_steps_before_the_origin_settle() {
        let config = Config::default();
        let series = seasonal_trend();
        let end = 5 * 168 + 1; // one step after a midnight origin (5 * 168 = 840 = 35 * 24)
        let mut learned = Learned::default();
        choose(&series[..end], end as i64, &mut learned, &config, None);
        choose(&series[..end], end as i64, &mut learned, &config, Some(1));
        assert!(learned.pending.is_none());
        choose(
            &series[..end + 1],
            end as i64 + 1,
            &mut learned,
            &config,
            Some(1),
        );
        assert_eq!(learned.pending.map(|p| p.fits.len()), Some(1));
    }

    #[test]
    fn a_forecast_never_waits_for_the_next_choice() {
        let config = Config::default();
        let series = seasonal_trend();
        let end = 5 * 168 + 1;
        let (_, learned) =
            forecast(&series[..end], end as i64, 24, &config, &Learned::default()).unwrap();
        // The choice in use is made; the next one is not started by a forecast.
        assert_eq!(
            learned.model_origin,
            Some(selection_origins(end as i64, &config).0)
        );
        assert!(learned.pending.is_none());
    }

    #[test]
    fn model_names_round_trip() {
        // The names stored in `series_state` load back.
        for (m, name) in Model::ALL
            .into_iter()
            .zip(["seasonal_naive", "ets", "mstl"])
        {
            assert_eq!(m.name(), name);
            assert_eq!(Model::from_name(name), Some(m));
        }
    }
}

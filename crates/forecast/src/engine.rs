//! Model choice, prediction intervals and adaptive learning.
//!
//! Candidates: seasonal naive (the fallback and the baseline), the
//! seasonal median of the last weeks, AutoETS, and, when seasonality is
//! detected, MSTL with an AutoETS trend and the mean of MSTL and seasonal
//! naive. The choice is made per series by rolling-origin backtest on the
//! history before an origin (every [`Config::selection_every`] steps), and
//! used from one period after it: the choice is prepared a fit at a time
//! while the previous one is in use, so no single call pays for a whole
//! backtest, and it depends only on that history, never on how the work
//! was split or when the engine was called. A level shift (a sudden,
//! lasting change of rate, such as a 10x step) is detected by comparing the
//! newest points with the same time one week earlier; history before it is
//! rescaled so the models see one consistent level. Intervals are the
//! models' own, times a margin learnt from the share of steps they miss.

use augurs::ets::AutoETS;
use augurs::seasons::{Detector as _, PeriodogramDetector};
use augurs::{Fit, Predict};

use crate::metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    SeasonalNaive,
    Ets,
    Mstl,
    /// The mean of MSTL's forecast and seasonal naive's: on series with
    /// irregular days (holidays, closures) it beats both, while MSTL alone
    /// wins on smooth ones; the backtest picks.
    MstlNaiveMean,
    /// Each step the median of the same step in the last few periods: a
    /// holiday, an outage or a spike in one of them is outvoted, and the
    /// noise of a single week is not copied forward.
    SeasonalMedian,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::SeasonalNaive => "seasonal_naive",
            Model::Ets => "ets",
            Model::Mstl => "mstl",
            Model::MstlNaiveMean => "mstl_naive_mean",
            Model::SeasonalMedian => "seasonal_median",
        }
    }

    pub const ALL: [Model; 5] = [
        Model::SeasonalNaive,
        Model::Ets,
        Model::Mstl,
        Model::MstlNaiveMean,
        Model::SeasonalMedian,
    ];

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
    /// Steps of history a forecast is made from (the newest): the
    /// extension and the accuracy benchmark both cut the history here.
    pub history_steps: usize,
    /// Steps in a week: the longest season seasonal naive and the seasonal
    /// median repeat.
    pub week: usize,
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
            // Four weeks of hours: four weekly cycles for MSTL and the
            // seasonal median.
            history_steps: 4 * 168,
            week: 168,
        }
    }
}

impl Config {
    /// Steps of a day (`date` keys): weekly and yearly seasons in days, two
    /// weeks of history before the first real model, backtests a week
    /// ahead, a model choice every week; forecasts from three years, so
    /// that a yearly season is seen twice once the table has them. Shared
    /// by the extension and the accuracy benchmark, so what is measured is
    /// what runs.
    pub fn daily() -> Config {
        const THREE_YEARS: usize = 3 * 365 + 1;
        Config {
            periods: vec![7, 365],
            min_history: 14,
            backtest_horizon: 7,
            selection_every: 7,
            selection_window: THREE_YEARS,
            history_steps: THREE_YEARS,
            week: 7,
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
/// that the autocorrelation shows plainly. A long period is also looked for
/// in the series averaged over the next shorter one: a year of days is not
/// a whole number of weeks, so a year ago falls on another weekday, and the
/// weekly cycle hides the yearly one from the plain autocorrelation.
pub fn detect_periods(values: &[f64], candidates: &[usize]) -> Vec<usize> {
    const MIN_AUTOCORRELATION: f64 = 0.4;
    let usable: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|p| values.len() >= 2 * p && *p > 1)
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
                || candidates
                    .iter()
                    .copied()
                    .filter(|q| *q > 1 && q < p)
                    .max()
                    .is_some_and(|q| {
                        autocorrelation(&moving_average(values, q), *p) >= MIN_AUTOCORRELATION
                    })
        })
        .collect()
}

/// Means of each `width` consecutive values.
fn moving_average(values: &[f64], width: usize) -> Vec<f64> {
    values
        .windows(width)
        .map(|w| w.iter().sum::<f64>() / width as f64)
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

/// Periods a seasonal median needs at least (the median of two is their
/// mean, which copies an outlier half-way) and looks back at most.
const MEDIAN_PERIODS: (usize, usize) = (3, 5);
/// Periods of the newest history whose errors set a median's interval.
const MEDIAN_ERROR_PERIODS: usize = 12;

/// Seasonal median: each step is the median of the values at the same
/// place in the last periods (up to [`MEDIAN_PERIODS`]). Its interval is the
/// `level` quantile of the same rule's errors over the newest history,
/// scaled like counts (by the square root of the level) and widening with
/// each period ahead. `None` when the history holds too few periods.
fn seasonal_median(
    history: &[f64],
    horizon: usize,
    period: usize,
    level: f64,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let n = history.len();
    let (min_periods, max_periods) = MEDIAN_PERIODS;
    if period == 0 || n < min_periods * period {
        return None;
    }
    let periods = (n / period).min(max_periods);
    let median_before = |at: usize, k: usize| -> f64 {
        let mut values: Vec<f64> = (1..=k).map(|j| history[at - j * period]).collect();
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        }
    };
    // Counts vary with their level, but a step at zero (a closed hour) is
    // not certain to stay zero: the scale never falls below that of a
    // quarter of the series' mean level.
    let floor = history.iter().sum::<f64>() / n as f64 / 4.0;
    let scale = |p: f64| (p.max(floor).max(0.0) + 1.0).sqrt();
    // Step `h` ahead sits where step `n + h % period` would, `h / period`
    // periods later: the newest period's place among the last ones.
    let point: Vec<f64> = (0..horizon)
        .map(|h| median_before(n + h % period, periods))
        .collect();
    // The rule's errors over the newest periods (a calm summer is not
    // judged by last winter's storms), where at least two periods precede
    // (with fewer than it forecasts with: the history's oldest are short).
    let mut errors: Vec<f64> = ((2 * period).max(n.saturating_sub(MEDIAN_ERROR_PERIODS * period))
        ..n)
        .map(|t| {
            let m = median_before(t, (t / period).min(min_periods));
            (history[t] - m).abs() / scale(m)
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    errors.sort_by(f64::total_cmp);
    let rank = ((errors.len() as f64) * level).ceil() as usize;
    let quantile = errors[rank.clamp(1, errors.len()) - 1];
    let half: Vec<f64> = point
        .iter()
        .enumerate()
        .map(|(h, p)| quantile * scale(*p) * ((h / period + 1) as f64).sqrt())
        .collect();
    let lower = point.iter().zip(&half).map(|(p, w)| p - w).collect();
    let upper = point.iter().zip(&half).map(|(p, w)| p + w).collect();
    Some((point, lower, upper))
}

/// Periods an hour (or a day) must have been empty in, each of the newest,
/// to be forecast empty.
const CLOSED_PERIODS: usize = 3;

/// Which of the `horizon` steps after `history` fall where the history
/// was zero at the same place in each of the last [`CLOSED_PERIODS`]
/// periods: closed hours, closed days. None until the history holds that
/// many periods.
fn closed_steps(history: &[f64], horizon: usize, period: usize) -> Vec<bool> {
    let n = history.len();
    if period < 2 || n < CLOSED_PERIODS * period {
        return vec![false; horizon];
    }
    (0..horizon)
        .map(|h| (1..=CLOSED_PERIODS).all(|k| history[n - k * period + h % period] == 0.0))
        .collect()
}

/// A point forecast as it is served: never below zero, and zero on
/// closed steps (see [`closed_steps`]). Backtests judge candidates so.
fn as_served(point: &[f64], closed: &[bool]) -> Vec<f64> {
    point
        .iter()
        .zip(closed)
        .map(|(p, c)| if *c { 0.0 } else { p.max(0.0) })
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
    let ratio_to =
        |i: usize, back: usize| (values[i].max(0.0) + 1.0) / (values[i - back].max(0.0) + 1.0);
    let ratio = |i: usize| ratio_to(i, lag);
    let moved = |i: usize, up: bool| {
        let moved_by = |r: f64| if up { r >= FACTOR } else { r <= 1.0 / FACTOR };
        moved_by(ratio(i))
            && (n < 2 * lag + RUN + 1 || i < 2 * lag || moved_by(ratio_to(i, 2 * lag)))
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
    /// Seasons MSTL decomposes.
    periods: Vec<usize>,
    /// The season seasonal naive and the seasonal median repeat (up to a
    /// week).
    naive_period: usize,
}

impl Candidate {
    /// The fewest steps the model is fitted on: two cycles for MSTL, the
    /// seasonal median's periods.
    fn min_history(&self) -> usize {
        match self.model {
            Model::Mstl | Model::MstlNaiveMean => {
                2 * self.periods.iter().copied().max().unwrap_or(0)
            }
            Model::SeasonalMedian => MEDIAN_PERIODS.0 * self.naive_period,
            Model::SeasonalNaive | Model::Ets => 0,
        }
    }
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
            let period = c.naive_period;
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
        Model::SeasonalMedian => seasonal_median(history, horizon, c.naive_period, level),
        Model::Ets => {
            let fitted = AutoETS::non_seasonal().fit(history).ok()?;
            to_triplet(fitted.predict(horizon, level).ok()?)
        }
        Model::Mstl | Model::MstlNaiveMean => {
            let (point, lower, upper) = mstl(history, &c.periods, horizon, level)?;
            if c.model == Model::Mstl {
                return Some((point, lower, upper));
            }
            // MSTL's interval around the mean: the learned margin then
            // calibrates it on what arrives.
            let naive = seasonal_naive(history, horizon, c.naive_period);
            let mean: Vec<f64> = point
                .iter()
                .zip(&naive)
                .map(|(m, n)| (m + n) / 2.0)
                .collect();
            let shift = |bound: Vec<f64>| -> Vec<f64> {
                bound
                    .iter()
                    .zip(&point)
                    .zip(&mean)
                    .map(|((b, p), m)| b - p + m)
                    .collect()
            };
            Some((mean.clone(), shift(lower), shift(upper)))
        }
    }
}

/// Steps of the deseasonalised history MSTL's trend is fitted on: the
/// newest week of hours (24 weeks of days). Fitting AutoETS is most of
/// MSTL's cost, growing with the points it sees, and a day-ahead trend is
/// set by the newest of them.
const MSTL_TREND_STEPS: usize = 168;

/// The most a logarithmic MSTL interval reaches above (and below) its
/// forecast, as a factor.
const MAX_SPREAD: f64 = 10.0;

/// MSTL: the history split into seasons (the periods given), trend and
/// remainder; AutoETS forecasts the deseasonalised series from its newest
/// [`MSTL_TREND_STEPS`], and each season's last cycle is added back.
///
/// A series that never reaches zero is decomposed in logarithms: arrivals
/// grow and shrink in proportion (a quiet weekend is a fraction of a
/// weekday, and a trend scales both), and its interval is then tighter
/// below than above, as counts are. With zeros (closed hours) the log
/// would make the closures dominate, so the decomposition stays additive.
///
/// Seasons estimated from a few cycles fit their own noise: the spread
/// left over understates the error of a forecast by about
/// sqrt((k + 1) / (k - 1)) for k cycles, and the interval is widened by
/// that much.
///
/// In logarithms an interval far ahead grows by factors; it is kept
/// within [`MAX_SPREAD`] times the forecast either way before the learned
/// margin scales it (the planner sums upper bounds over weeks ahead).
fn mstl(
    history: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let longest = periods.iter().copied().max()?;
    let in_logs = history.iter().all(|v| *v > 0.0);
    let values: Vec<f32> = history
        .iter()
        .map(|v| if in_logs { v.ln() } else { *v } as f32)
        .collect();
    let fit = augurs::mstl::stlrs::MstlParams::new()
        .fit(&values, periods)
        .ok()?;
    let deseasonalised: Vec<f64> = fit
        .trend()
        .iter()
        .zip(fit.remainder())
        .map(|(t, r)| f64::from(t + r))
        .collect();
    let recent = &deseasonalised[deseasonalised.len().saturating_sub(MSTL_TREND_STEPS)..];
    let trend = AutoETS::non_seasonal()
        .fit(recent)
        .ok()?
        .predict(horizon, level)
        .ok()?;
    let intervals = trend.intervals?;
    let cycles = (history.len() / longest).max(2) as f64;
    let widen = ((cycles + 1.0) / (cycles - 1.0)).sqrt();
    let mut forecast = (Vec::new(), Vec::new(), Vec::new());
    for h in 0..horizon {
        let season: f64 = periods
            .iter()
            .zip(fit.seasonal())
            .map(|(period, component)| {
                let last_cycle = &component[component.len().saturating_sub(*period)..];
                f64::from(last_cycle[h % last_cycle.len()])
            })
            .sum();
        // The trend is followed for one cycle of the longest season and
        // held after it: a growth read off a few weeks, compounded for
        // months (in logarithms, exponentially), would plan for rows that
        // never come.
        let point = trend.point[h.min(longest - 1)] + season;
        let mut below = (trend.point[h] - intervals.lower[h]) * widen;
        let mut above = (intervals.upper[h] - trend.point[h]) * widen;
        if in_logs {
            below = below.min(MAX_SPREAD.ln());
            above = above.min(MAX_SPREAD.ln());
        }
        let (lower, upper) = (point - below, point + above);
        let back = |v: f64| if in_logs { v.exp() } else { v };
        forecast.0.push(back(point));
        forecast.1.push(back(lower));
        forecast.2.push(back(upper));
    }
    let finite = |v: &Vec<f64>| v.iter().all(|x| x.is_finite());
    (finite(&forecast.0) && finite(&forecast.1) && finite(&forecast.2)).then_some(forecast)
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
        // Compare with the longest cycle the history covers up to a week (a
        // week ago): a shorter lag would take a weekly pattern (quiet
        // weekends) for a shift, a day ago may already be after the shift,
        // and a year ago is another level by the trend alone.
        let lag = config
            .periods
            .iter()
            .copied()
            .filter(|p| history.len() > p + 8 && *p <= config.week)
            .max()
            .unwrap_or(0);
        let (adjusted, level_shift) = adjust_level_shift(history, lag);
        // Seasons are looked for at one level: a step in the history
        // hides a weekly cycle from the autocorrelation.
        let periods = detect_periods(&adjusted, &config.periods);
        // The baseline repeats the longest cycle up to a week: with a
        // weekly pattern, yesterday is a poor guess for a Saturday, and a
        // year ago was another weekday. Before any cycle can be detected
        // (that takes two), the longest one the history covers once: a day
        // of hours repeats yesterday's profile, not its last hour.
        let repeatable = |p: &usize| *p <= config.week;
        let naive_period = periods
            .iter()
            .copied()
            .filter(repeatable)
            .max()
            .unwrap_or_else(|| {
                config
                    .periods
                    .iter()
                    .copied()
                    .filter(|p| *p > 1 && history.len() >= *p && repeatable(p))
                    .max()
                    .unwrap_or(1)
            });
        let insufficient = adjusted.len() < config.min_history;
        let mut candidates = Vec::new();
        if !insufficient {
            // A level without a season is for series that have none: on a
            // seasonal one it carries a weekend's zeros into Monday.
            if periods.is_empty() {
                candidates.push(Candidate {
                    model: Model::Ets,
                    periods: Vec::new(),
                    naive_period,
                });
            }
            if !periods.is_empty() {
                for model in [Model::Mstl, Model::MstlNaiveMean] {
                    candidates.push(Candidate {
                        model,
                        periods: periods.clone(),
                        naive_period,
                    });
                }
            }
            // Only once a weekly season could have been seen: a median
            // over days before that mixes weekdays with weekends.
            if naive_period > 1
                && adjusted.len() >= MEDIAN_PERIODS.0 * naive_period.max(config.week)
            {
                candidates.push(Candidate {
                    model: Model::SeasonalMedian,
                    periods: Vec::new(),
                    naive_period,
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
            periods: Vec::new(),
            naive_period: self.naive_period,
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
        // Nor one too short for the candidate's seasons (the newest folds
        // of a history that has just grown a season): it is judged on the
        // rest.
        if train.len() < config.min_history.max(candidate.min_history()) {
            return skipped;
        }
        let test = &self.adjusted[cut..cut + h];
        let (point, _, _) = run_candidate(candidate, train, h, config.level)?;
        // Judged as it would be served (an MSTL dipping under a closed
        // night's zeros is not wrong there).
        let point = as_served(&point, &closed_steps(train, h, self.naive_period));
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
    let recent = &history[history.len().saturating_sub(config.history_steps)..];
    Ok((predict(recent, horizon, config, &learned)?, learned))
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
    // Counts are never negative, nor expected where the same time was
    // empty in each recent week; the learned margin widens or narrows the
    // interval; and arrivals are at least as uncertain as a Poisson process
    // (a perfectly regular history does not make the future certain).
    let z = z_of(config.level);
    let poisson = |p: f64| z * p.max(1.0).sqrt();
    let closed = closed_steps(&plan.adjusted, horizon, plan.naive_period);
    let point = as_served(&point, &closed);
    let (lower, upper): (Vec<f64>, Vec<f64>) = lower
        .iter()
        .zip(&upper)
        .zip(&closed)
        .map(|((l, u), c)| if *c { (0.0, 0.0) } else { (*l, *u) })
        .unzip();
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

/// How far one scored batch moves the interval margin: a batch with no
/// miss narrows it by 5% at the 95% level, one missing a quarter of its
/// steps widens it by 22%.
const MARGIN_GAIN: f64 = 1.0;
/// The learned margin stays within these factors of the model's interval.
const MARGIN_RANGE: (f64, f64) = (0.5, 10.0);

/// Learns from scored forecasts: the interval margin follows the observed
/// coverage toward the target level. The model is judged by the next
/// choice's backtest, on a week of origins, not by the few steps one
/// cycle scores.
pub fn learn(learned: &Learned, scored: &[Scored], config: &Config) -> Learned {
    let mut next = learned.clone();
    // A step that cannot be judged (not a number) says nothing.
    let scored: Vec<&Scored> = scored
        .iter()
        .filter(|s| s.actual.is_finite() && s.lower.is_finite() && s.upper.is_finite())
        .collect();
    if scored.is_empty() || !(0.5..1.0).contains(&config.level) {
        return next;
    }
    let inside = scored
        .iter()
        .filter(|s| s.lower <= s.actual && s.actual <= s.upper)
        .count() as f64;
    // Every batch moves the margin, up by what it missed beyond the
    // nominal share and down by what it missed less: it settles where the
    // misses are the nominal share, rather than anywhere in a band (a rule
    // that only narrows after a perfect day ratchets to its floor).
    // A batch of a few steps says less than a backtest's horizon of them
    // (a day of hours, a week of days): it moves the margin less.
    let missed = 1.0 - inside / scored.len() as f64;
    let weight = (scored.len() as f64 / config.backtest_horizon.max(1) as f64).min(1.0);
    let margin = if next.margin.is_finite() {
        next.margin
    } else {
        1.0
    };
    next.margin = (margin * (MARGIN_GAIN * weight * (missed - (1.0 - config.level))).exp())
        .clamp(MARGIN_RANGE.0, MARGIN_RANGE.1);
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

    /// Office hours (see [`office_hours`]) with calls that vary from hour
    /// to hour by up to a fifth, deterministically.
    fn noisy_office_hours(days: usize, closed_days: &[usize]) -> Vec<f64> {
        let mut state: u64 = 7;
        office_hours(days, closed_days)
            .into_iter()
            .map(|v| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let noise = ((state >> 33) as f64 / (1u64 << 31) as f64) * 0.4 - 0.2;
                (v * (1.0 + noise)).round()
            })
            .collect()
    }

    #[test]
    fn an_outage_day_is_not_forecast_again_a_week_later() {
        // Four weeks of a call centre whose Wednesday of last week had no
        // calls (an outage, a holiday); the forecast from this Wednesday's
        // midnight is made as the worker makes it (the model chosen by
        // backtest, the history cut to four weeks).
        let config = Config::default();
        let wednesday = 4 * 7 + 2;
        let series = noisy_office_hours(wednesday + 1, &[wednesday - 7]);
        let end = wednesday * 24;
        let history = &series[end - config.history_steps..end];
        let (prediction, _) =
            forecast(history, end as i64, 24, &config, &Learned::default()).unwrap();
        let open: Vec<f64> = (7..21).map(|h| prediction.point[h]).collect();
        let usual: Vec<f64> = (7..21).map(|h| series[end + h]).collect();
        for (forecast, actual) in open.iter().zip(&usual) {
            assert!(
                *forecast > 0.6 * actual,
                "{:?}: {open:?} for {usual:?}",
                prediction.model
            );
        }
        // The closed hours stay closed.
        assert!(
            prediction.point[..6].iter().all(|p| *p < 5.0),
            "{:?}",
            prediction.point
        );
    }

    #[test]
    fn hours_empty_in_each_of_the_last_weeks_are_forecast_empty() {
        let series = office_hours(4 * 7, &[]);
        let closed = closed_steps(&series, 48, 168);
        // Monday: closed before 07:00 and from 21:00, open in between.
        for (h, closed) in closed.iter().take(24).enumerate() {
            assert_eq!(*closed, !(7..21).contains(&h), "hour {h}");
        }
        // A Saturday open in one of the last three weeks is not closed.
        let mut one_open_saturday = series.clone();
        one_open_saturday[(7 + 5) * 24 + 10] = 3.0;
        let from_saturday = &one_open_saturday[..(3 * 7 + 5) * 24];
        assert!(!closed_steps(from_saturday, 24, 168)[10]);
        assert!(closed_steps(from_saturday, 24, 168)[9]);
        // Too little history: nothing is taken for closed.
        assert!(closed_steps(&series[..2 * 168], 24, 168).iter().all(|c| !c));
    }

    #[test]
    fn a_monday_after_a_closed_weekend_is_not_forecast_closed() {
        // Two weeks of a call centre, ending on a Sunday night: the
        // weekend's zeros are not a level for Monday, whatever model the
        // backtest chose with so little history.
        for days in [14, 21] {
            let series = noisy_office_hours(days, &[]);
            let end = series.len();
            let (prediction, _) = forecast(
                &series,
                end as i64,
                24,
                &Config::default(),
                &Learned::default(),
            )
            .unwrap();
            let monday: f64 = prediction.point[7..21].iter().sum();
            let usual: f64 = series[end - 7 * 24 + 7..end - 7 * 24 + 21].iter().sum();
            assert!(
                monday > 0.6 * usual,
                "{days} days: {:?} forecast {monday} for {usual}",
                prediction.model
            );
        }
    }

    #[test]
    fn a_positive_series_is_forecast_in_proportion_and_bounded_far_ahead() {
        // Weekends at a tenth of weekdays, growing 5% a week: MSTL in
        // logarithms keeps the weekend a tenth of the weekdays.
        let series: Vec<f64> = (0..4 * 168)
            .map(|h| {
                let weekday = (h / 24) % 7 < 5;
                let growth = 1.05_f64.powf(h as f64 / 168.0);
                (if weekday { 1000.0 } else { 100.0 })
                    * growth
                    * (1.0 + 0.3 * ((h % 24) as f64 / 24.0))
            })
            .collect();
        let (point, lower, upper) = mstl(&series, &[24, 168], 90 * 24, 0.95).unwrap();
        let day = |d: usize| point[d * 24..(d + 1) * 24].iter().sum::<f64>();
        // The next Saturday and the Monday after it (the history ends on a
        // Sunday night).
        assert!(
            (day(5) / day(0) - 0.1).abs() < 0.03,
            "{} vs {}",
            day(5),
            day(0)
        );
        // Ninety days ahead the interval is wide but within ten times the
        // forecast either way, and never negative.
        for h in 0..point.len() {
            assert!(lower[h] > 0.0 && lower[h] <= point[h] && point[h] <= upper[h]);
            assert!(upper[h] <= point[h] * MAX_SPREAD * 1.000_001, "step {h}");
        }
    }

    #[test]
    fn the_seasonal_median_outvotes_one_odd_week() {
        // Five weeks of the same profile but for a holiday (a closed
        // Friday) two weeks ago and a spike (three times the calls) last
        // Tuesday: the median forecasts the usual week.
        let weeks = 5;
        let mut series = office_hours(weeks * 7, &[(weeks - 2) * 7 + 4]);
        for v in &mut series[((weeks - 1) * 7 + 1) * 24..((weeks - 1) * 7 + 2) * 24] {
            *v *= 3.0;
        }
        let usual = office_hours(7, &[]);
        let (point, lower, upper) = seasonal_median(&series, 168, 168, 0.95).unwrap();
        assert_eq!(point, usual);
        // The interval holds the usual week, and is wider than nothing.
        for h in 0..168 {
            assert!(lower[h] <= usual[h] && usual[h] <= upper[h], "hour {h}");
        }
        assert!(upper.iter().zip(&point).any(|(u, p)| u > p));
        // Three weeks are the least it forecasts from.
        assert!(seasonal_median(&series[..3 * 168 - 1], 24, 168, 0.95).is_none());
        assert!(seasonal_median(&series[..3 * 168], 24, 168, 0.95).is_some());
    }

    #[test]
    fn date_keys_have_weekly_and_yearly_seasons_in_days() {
        let config = Config::daily();
        assert_eq!(config.periods, vec![7, 365]);
        // Eight weeks of days, weekends a tenth of weekdays: the season is
        // seven days, and the baseline repeats the same day a week earlier.
        let weekdays = |days: usize| -> Vec<f64> {
            (0..days)
                .map(|d| {
                    if d % 7 < 5 {
                        1000.0 + (d % 7) as f64 * 10.0
                    } else {
                        100.0
                    }
                })
                .collect()
        };
        let history = weekdays(8 * 7);
        let (prediction, _) = forecast(
            &history,
            history.len() as i64,
            7,
            &config,
            &Learned::default(),
        )
        .unwrap();
        assert_eq!(prediction.periods, vec![7]);
        assert_eq!(prediction.naive, history[history.len() - 7..].to_vec());
        // The weekend ahead is forecast quiet, the weekdays busy.
        assert!(
            prediction.point[5] < 300.0 && prediction.point[6] < 300.0,
            "{:?}",
            prediction.point
        );
        assert!(
            prediction.point[..5].iter().all(|p| *p > 700.0),
            "{:?}",
            prediction.point
        );
        // Three years of days with a summer peak: the yearly season is
        // found once the history holds two of them, and the forecast sees
        // that much.
        let yearly: Vec<f64> = (0..config.history_steps)
            .map(|d| {
                let season = (2.0 * std::f64::consts::PI * d as f64 / 365.0).sin();
                weekdays(d + 1)[d] * (1.5 + season)
            })
            .collect();
        assert!(config.history_steps >= 2 * 365 + 7);
        assert_eq!(detect_periods(&yearly, &config.periods), vec![7, 365]);
        assert_eq!(
            detect_periods(&yearly[..2 * 365 - 1], &config.periods),
            vec![7]
        );
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

    /// Twenty steps, `missed` of them outside the interval.
    fn batch(missed: usize) -> Vec<Scored> {
        (0..20)
            .map(|i| Scored {
                actual: if i < missed { 20.0 } else { 10.0 },
                point: 10.0,
                lower: 9.0,
                upper: 11.0,
                naive: 10.0,
            })
            .collect()
    }

    #[test]
    fn the_margin_settles_where_the_nominal_share_is_missed() {
        let config = Config::default();
        let after = |missed: usize| learn(&Learned::default(), &batch(missed), &config).margin;
        // At 95%: one miss in twenty is right, two too many, none too few.
        assert!((after(1) - 1.0).abs() < 1e-12, "{}", after(1));
        assert!(after(2) > 1.0, "{}", after(2));
        assert!(after(0) < 1.0, "{}", after(0));
        // Days alternating between no miss and two misses (5% overall)
        // leave it where it was, instead of ratcheting it down.
        let mut learned = Learned::default();
        for day in 0..40 {
            learned = learn(&learned, &batch(if day % 2 == 0 { 0 } else { 2 }), &config);
        }
        assert!((learned.margin - 1.0).abs() < 1e-9, "{}", learned.margin);
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
            // Six hours to prepare it in: 28 fits (four candidates, seven
            // folds) need five calls an hour.
            for _ in 0..5 {
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
        for _ in 0..40 {
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
        // The names stored in `series_state` by any version load back.
        for (m, name) in Model::ALL.into_iter().zip([
            "seasonal_naive",
            "ets",
            "mstl",
            "mstl_naive_mean",
            "seasonal_median",
        ]) {
            assert_eq!(m.name(), name);
            assert_eq!(Model::from_name(name), Some(m));
        }
    }
}

//! Evaluating the engine as it runs in production: forecasts from rolling
//! origins, each scored against what arrived once it has, the learned state
//! carried from one forecast to the next.

use std::time::{Duration, Instant};

use crate::engine::{choose, learn, predict, Scored};
use crate::{metrics, Config, Learned, Model, Prediction};

/// How the engine is run on a series: its configuration (which also
/// sets how much history a forecast sees) and where the series sits in
/// time (by default, step numbers from its start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    pub config: Config,
    /// Step number of the series' first value, counted as the extension
    /// counts (from 2000-01-01 00:00 UTC): choices are made at multiples of
    /// `config.selection_every`, so which history each one sees depends on
    /// where the series sits in time.
    pub first_step: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub actual: Vec<f64>,
    pub point: Vec<f64>,
    /// The engine's own seasonal-naive baseline for the same steps.
    pub naive: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// MAPE of each forecast, by origin.
    pub mape_by_origin: Vec<(usize, f64)>,
    /// Models used, in order of first use.
    pub models: Vec<Model>,
    /// The model of each forecast, in order.
    pub model_by_forecast: Vec<Model>,
    pub forecasts: usize,
    /// Model choices made (a backtest of every candidate each).
    pub choices: usize,
    /// Time spent making model choices, and forecasting with the model
    /// chosen: the worker spreads the first over its cycles one fit at a
    /// time, while a forecast is paid for at once.
    pub choosing: Duration,
    pub predicting: Duration,
}

/// Forecasts `horizon` steps from every `every` steps between `from` and
/// `to`, learning from each forecast once its steps have arrived.
pub fn rolling(
    series: &[f64],
    from: usize,
    to: usize,
    every: usize,
    horizon: usize,
    setup: &Setup,
) -> Evaluation {
    let config = &setup.config;
    let mut learned = Learned::default();
    let mut e = Evaluation::default();
    let mut pending: Vec<(usize, Prediction)> = Vec::new();
    let mut origin = from;
    while origin + horizon <= to.min(series.len()) {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(o, _)| o + horizon <= origin);
        pending = waiting;
        for (o, p) in ready {
            let scored: Vec<Scored> = (0..horizon)
                .map(|h| Scored {
                    actual: series[o + h],
                    point: p.point[h],
                    lower: p.lower[h],
                    upper: p.upper[h],
                    naive: p.naive[h],
                })
                .collect();
            learned = learn(&learned, &scored, config);
        }
        // What `engine::forecast` does: the choice on the history before
        // the origin, the forecast from its newest `history_steps`.
        let end = setup.first_step + origin as i64;
        let model_origin = learned.model_origin;
        let started = Instant::now();
        choose(&series[..origin], end, &mut learned, config, None);
        e.choosing += started.elapsed();
        if learned.model_origin != model_origin {
            e.choices += 1;
        }
        let recent = &series[origin.saturating_sub(config.history_steps)..origin];
        let started = Instant::now();
        let Ok(prediction) = predict(recent, horizon, config, &learned) else {
            break;
        };
        e.predicting += started.elapsed();
        let actual = &series[origin..origin + horizon];
        e.mape_by_origin.push((
            origin,
            metrics::mape(actual, &prediction.point).unwrap_or(0.0),
        ));
        e.actual.extend_from_slice(actual);
        e.point.extend_from_slice(&prediction.point);
        e.naive.extend_from_slice(&prediction.naive);
        e.lower.extend_from_slice(&prediction.lower);
        e.upper.extend_from_slice(&prediction.upper);
        if !e.models.contains(&prediction.model) {
            e.models.push(prediction.model);
        }
        e.model_by_forecast.push(prediction.model);
        e.forecasts += 1;
        pending.push((origin, prediction));
        origin += every;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::forecast;
    use crate::workload::scenarios;

    #[test]
    fn each_forecast_is_the_engines_from_the_history_before_it() {
        let series = scenarios()
            .into_iter()
            .find(|s| s.name == "seasonal_trend")
            .expect("scenario")
            .series();
        let origin = 5 * 168;
        let e = rolling(&series, origin, origin + 24, 24, 24, &Setup::default());
        let (direct, _) = forecast(
            &series[..origin],
            origin as i64,
            24,
            &Config::default(),
            &Learned::default(),
        )
        .expect("a forecast");
        assert_eq!(e.forecasts, 1);
        assert_eq!(e.point, direct.point);
        assert_eq!((e.lower, e.upper), (direct.lower, direct.upper));
        assert_eq!(e.choices, 1);
    }
}

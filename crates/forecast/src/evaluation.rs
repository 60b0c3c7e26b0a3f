//! Evaluating the engine as it runs in production: forecasts from rolling
//! origins, each scored against what arrived once it has, the learned state
//! carried from one forecast to the next.

use crate::engine::{forecast, learn, Scored};
use crate::{metrics, Config, Learned, Model, Prediction};

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
    pub forecasts: usize,
}

/// Forecasts `horizon` steps from every `every` steps between `from` and
/// `to`, learning from each forecast once its steps have arrived.
pub fn rolling(series: &[f64], from: usize, to: usize, every: usize, horizon: usize) -> Evaluation {
    let config = Config::default();
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
            learned = learn(&learned, &scored, &config);
        }
        let Ok((prediction, next)) =
            forecast(&series[..origin], origin as i64, horizon, &config, &learned)
        else {
            break;
        };
        learned = next;
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
        e.forecasts += 1;
        pending.push((origin, prediction));
        origin += every;
    }
    e
}

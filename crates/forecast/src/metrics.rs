//! Error measures. MASE here is relative to a seasonal-naive forecast of the
//! same points (below 1: better than repeating last period).

pub fn mae(actual: &[f64], predicted: &[f64]) -> f64 {
    let n = actual.len().min(predicted.len());
    if n == 0 {
        return 0.0;
    }
    actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / n as f64
}

/// Mean absolute percentage error over the points whose actual is not 0.
pub fn mape(actual: &[f64], predicted: &[f64]) -> Option<f64> {
    let terms: Vec<f64> = actual
        .iter()
        .zip(predicted)
        .filter(|(a, _)| **a != 0.0)
        .map(|(a, p)| ((a - p) / a).abs())
        .collect();
    (!terms.is_empty()).then(|| terms.iter().sum::<f64>() / terms.len() as f64)
}

/// MAE of the forecast over MAE of the seasonal-naive forecast of the same points.
pub fn mase(actual: &[f64], predicted: &[f64], naive: &[f64]) -> Option<f64> {
    let baseline = mae(actual, naive);
    (baseline > 0.0).then(|| mae(actual, predicted) / baseline)
}

/// Share of actuals inside `[lower, upper]`.
pub fn coverage(actual: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    let n = actual.len().min(lower.len()).min(upper.len());
    if n == 0 {
        return 0.0;
    }
    (0..n)
        .filter(|&i| lower[i] <= actual[i] && actual[i] <= upper[i])
        .count() as f64
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures() {
        assert_eq!(mae(&[1.0, 3.0], &[2.0, 1.0]), 1.5);
        assert_eq!(mape(&[0.0, 10.0], &[5.0, 12.0]), Some(0.2));
        assert_eq!(mase(&[10.0, 10.0], &[11.0, 9.0], &[14.0, 6.0]), Some(0.25));
        assert_eq!(coverage(&[1.0, 5.0], &[0.0, 0.0], &[2.0, 2.0]), 0.5);
    }
}

//! Regular series from what the collector stores.

/// A series at a fixed step, with the points that were filled in rather
/// than observed marked as such.
#[derive(Clone, Debug, PartialEq)]
pub struct Regular {
    pub values: Vec<f64>,
    pub filled: Vec<bool>,
}

impl Regular {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether there is enough history to forecast at all.
    pub fn is_sufficient(&self, min_points: usize) -> bool {
        self.values
            .iter()
            .zip(&self.filled)
            .filter(|(_, f)| !**f)
            .count()
            >= min_points
    }
}

/// Rows per key-time bucket, from `(bucket index, rows)` pairs in any order.
/// A bucket with no row stored had no rows: for key time that is a true 0,
/// not a gap (the collector counts the rows present).
pub fn from_buckets(first: i64, last: i64, counts: &[(i64, f64)]) -> Regular {
    let len = (last - first + 1).max(0) as usize;
    let mut values = vec![0.0; len];
    for &(bucket, rows) in counts {
        if (first..=last).contains(&bucket) {
            values[(bucket - first) as usize] += rows;
        }
    }
    Regular {
        filled: vec![false; len],
        values,
    }
}

/// Per-step increase of a cumulative quantity (the key frontier) sampled at
/// irregular times. Steps between two samples share the increase evenly
/// (linear interpolation of the cumulative value) and are marked filled
/// when no sample fell inside them: a worker that was paused for a day
/// yields a flat, honest estimate, not a spike.
pub fn rate_from_cumulative(samples: &[(f64, f64)], step: f64) -> Regular {
    let mut points: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.dedup_by(|b, a| a.0 == b.0);
    if points.len() < 2 || step <= 0.0 {
        return Regular {
            values: Vec::new(),
            filled: Vec::new(),
        };
    }
    let start = (points[0].0 / step).ceil() * step;
    let end = points[points.len() - 1].0;
    let at = |t: f64| -> f64 {
        let i = points
            .partition_point(|p| p.0 <= t)
            .clamp(1, points.len() - 1);
        let (t0, v0) = points[i - 1];
        let (t1, v1) = points[i];
        if t1 == t0 {
            v1
        } else {
            v0 + (v1 - v0) * ((t - t0) / (t1 - t0)).clamp(0.0, 1.0)
        }
    };
    let mut values = Vec::new();
    let mut filled = Vec::new();
    let mut t = start;
    while t + step <= end + 1e-9 {
        values.push((at(t + step) - at(t)).max(0.0));
        let observed = points.iter().any(|p| p.0 > t && p.0 <= t + step);
        filled.push(!observed);
        t += step;
    }
    Regular { values, filled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_zeros() {
        let r = from_buckets(10, 14, &[(10, 5.0), (13, 2.0), (99, 1.0)]);
        assert_eq!(r.values, vec![5.0, 0.0, 0.0, 2.0, 0.0]);
        assert!(r.is_sufficient(5));
    }

    #[test]
    fn rates_spread_a_gap_evenly() {
        // Frontier at 0, 100 after one hour, then nothing until 4 hours later: 400 more.
        let r = rate_from_cumulative(&[(0.0, 0.0), (1.0, 100.0), (5.0, 500.0)], 1.0);
        assert_eq!(r.values, vec![100.0, 100.0, 100.0, 100.0, 100.0]);
        assert_eq!(r.filled, vec![false, true, true, true, false]);
        assert!(!r.is_sufficient(3));
    }

    #[test]
    fn rates_never_negative() {
        let r = rate_from_cumulative(&[(0.0, 50.0), (1.0, 40.0), (2.0, 60.0)], 1.0);
        assert!(r.values.iter().all(|v| *v >= 0.0));
    }
}

//! When an integer key reached (or is forecast to reach) a value: the
//! frontier's path through time, so integer partitions can be drawn on the
//! same time axis as their arrivals.

/// The frontier's path: `(unix seconds, highest key)` points, the key never
/// decreasing (a lower sample is a deleted row, not the key going back).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    points: Vec<(i64, f64)>,
}

impl Timeline {
    pub fn new(mut points: Vec<(i64, f64)>) -> Self {
        points.retain(|(_, key)| key.is_finite());
        points.sort_by_key(|&(t, _)| t);
        let mut highest = f64::NEG_INFINITY;
        for point in &mut points {
            highest = highest.max(point.1);
            point.1 = highest;
        }
        Self { points }
    }

    /// Extends the path past its last point at `keys_per_hour`, one rate per
    /// hour (a forecast of the frontier's speed).
    pub fn extended(mut self, keys_per_hour: &[f64]) -> Self {
        if let Some(&(mut t, mut key)) = self.points.last() {
            for rate in keys_per_hour {
                t += 3_600;
                key += if rate.is_finite() { rate.max(0.0) } else { 0.0 };
                self.points.push((t, key));
            }
        }
        self
    }

    /// The first time the path reaches `key`, interpolated within the hour;
    /// `None` when it never does, or `key` was passed before the path starts.
    pub fn time_of(&self, key: f64) -> Option<i64> {
        let &(first_time, first_key) = self.points.first()?;
        if key < first_key {
            return None;
        }
        if key == first_key {
            return Some(first_time);
        }
        self.points.windows(2).find_map(|pair| {
            let ((t0, k0), (t1, k1)) = (pair[0], pair[1]);
            (k0 < key && key <= k1).then(|| {
                let share = (key - k0) / (k1 - k0);
                t0 + ((t1 - t0) as f64 * share).round() as i64
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_placed_where_the_frontier_passed_them() {
        let timeline = Timeline::new(vec![(7_200, 300.0), (0, 100.0), (3_600, 200.0)]);
        assert_eq!(timeline.time_of(100.0), Some(0));
        assert_eq!(timeline.time_of(150.0), Some(1_800));
        assert_eq!(timeline.time_of(300.0), Some(7_200));
        assert_eq!(timeline.time_of(50.0), None, "before the path starts");
        assert_eq!(timeline.time_of(301.0), None, "not reached yet");
    }

    #[test]
    fn a_lower_sample_does_not_move_the_frontier_back() {
        let timeline = Timeline::new(vec![(0, 100.0), (3_600, 50.0), (7_200, 200.0)]);
        assert_eq!(timeline.time_of(150.0), Some(5_400));
    }

    #[test]
    fn the_forecast_carries_the_path_forward() {
        let timeline = Timeline::new(vec![(0, 100.0)]).extended(&[100.0, 0.0, 50.0]);
        assert_eq!(timeline.time_of(150.0), Some(1_800));
        assert_eq!(timeline.time_of(225.0), Some(2 * 3_600 + 1_800));
        assert_eq!(timeline.time_of(251.0), None);
    }
}

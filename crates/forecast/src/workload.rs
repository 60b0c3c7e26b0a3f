//! A deterministic generator of realistic arrival series and row streams:
//! daily and weekly seasonality, trend, a sudden 10x step, bursts, quiet
//! weekends, noise, and late/out-of-order arrivals. Same seed, same data.

/// SplitMix64: small, fast, good enough for synthetic workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// How rows arrive, hour by hour.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    pub hours: usize,
    /// Mean rows per hour at the start.
    pub base: f64,
    /// Relative amplitude of the daily cycle (0: flat), peaking mid-afternoon.
    pub daily_amplitude: f64,
    /// Weekend level relative to weekdays (1: no weekly pattern).
    pub weekend_factor: f64,
    /// Relative growth per week.
    pub trend_per_week: f64,
    /// From this hour on the rate is multiplied by the factor.
    pub step: Option<(usize, f64)>,
    /// Every `n` hours a burst of `len` hours at `factor` times the rate.
    pub bursts: Option<(usize, usize, f64)>,
    /// Relative noise (standard deviation over the mean), on top of Poisson noise.
    pub noise: f64,
    pub seed: u64,
}

impl Scenario {
    pub fn new(name: &'static str, hours: usize, base: f64) -> Scenario {
        Scenario {
            name,
            hours,
            base,
            daily_amplitude: 0.0,
            weekend_factor: 1.0,
            trend_per_week: 0.0,
            step: None,
            bursts: None,
            noise: 0.0,
            seed: 1,
        }
    }

    /// The expected rate at `hour`, before noise.
    pub fn rate(&self, hour: usize) -> f64 {
        let hour_of_day = (hour % 24) as f64;
        let day_of_week = (hour / 24) % 7; // hour 0 is a Monday 00:00
        let daily = 1.0
            + self.daily_amplitude
                * ((hour_of_day - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        let weekly = if day_of_week >= 5 {
            self.weekend_factor
        } else {
            1.0
        };
        let trend = 1.0 + self.trend_per_week * hour as f64 / 168.0;
        let step = match self.step {
            Some((at, factor)) if hour >= at => factor,
            _ => 1.0,
        };
        let burst = match self.bursts {
            Some((every, len, factor)) if every > 0 && hour % every < len && hour >= every => {
                factor
            }
            _ => 1.0,
        };
        (self.base * daily * weekly * trend * step * burst).max(0.0)
    }

    /// Rows arriving per hour.
    pub fn series(&self) -> Vec<f64> {
        let mut rng = Rng::new(self.seed);
        (0..self.hours)
            .map(|h| {
                let rate = self.rate(h);
                let noisy = rate + rng.normal() * (rate.sqrt() + self.noise * rate);
                noisy.max(0.0).round()
            })
            .collect()
    }
}

/// The scenarios of the accuracy benchmark (six weeks of hours each).
pub fn scenarios() -> Vec<Scenario> {
    let weeks = 6 * 168;
    vec![
        Scenario {
            daily_amplitude: 0.6,
            weekend_factor: 0.5,
            trend_per_week: 0.05,
            noise: 0.05,
            ..Scenario::new("seasonal_trend", weeks, 1000.0)
        },
        Scenario {
            noise: 0.2,
            seed: 2,
            ..Scenario::new("white_noise", weeks, 500.0)
        },
        Scenario {
            daily_amplitude: 0.6,
            weekend_factor: 0.5,
            noise: 0.05,
            step: Some((weeks - 168, 10.0)),
            seed: 3,
            ..Scenario::new("step_10x", weeks, 200.0)
        },
        Scenario {
            daily_amplitude: 0.5,
            noise: 0.05,
            bursts: Some((53, 3, 4.0)),
            seed: 4,
            ..Scenario::new("bursts", weeks, 800.0)
        },
        Scenario {
            daily_amplitude: 0.3,
            weekend_factor: 0.1,
            noise: 0.05,
            seed: 5,
            ..Scenario::new("quiet_weekends", weeks, 2000.0)
        },
    ]
}

/// Keys (microseconds from `start_micros`) of the rows of `series`, in the
/// order they arrive. Within an hour rows come out of order; a
/// `late_fraction` of them carries a key up to `max_lateness_hours` in the
/// past (delayed devices, retried batches).
pub fn row_stream(
    series: &[f64],
    start_micros: i64,
    late_fraction: f64,
    max_lateness_hours: usize,
    seed: u64,
) -> Vec<i64> {
    const HOUR: i64 = 3_600_000_000;
    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(series.iter().sum::<f64>() as usize);
    for (hour, count) in series.iter().enumerate() {
        for _ in 0..(*count as usize) {
            let late = rng.uniform() < late_fraction && hour > 0;
            let key_hour = if late {
                hour - 1 - (rng.next_u64() as usize % max_lateness_hours.clamp(1, hour))
            } else {
                hour
            };
            let within = (rng.uniform() * HOUR as f64) as i64;
            rows.push(start_micros + key_hour as i64 * HOUR + within);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let s = &scenarios()[0];
        assert_eq!(s.series(), s.series());
        let series = s.series();
        let weekday: f64 = series[0..120].iter().sum::<f64>() / 120.0;
        let weekend: f64 = series[120..168].iter().sum::<f64>() / 48.0;
        assert!(
            weekend < weekday * 0.7,
            "weekend {weekend} weekday {weekday}"
        );
    }

    #[test]
    fn step_multiplies_the_rate() {
        let s = scenarios()
            .into_iter()
            .find(|s| s.name == "step_10x")
            .unwrap();
        let (at, _) = s.step.unwrap();
        assert!((s.rate(at + 24) / s.rate(at - 144) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn late_rows_point_to_the_past() {
        let series = vec![10.0; 48];
        let keys = row_stream(&series, 0, 0.2, 6, 7);
        assert_eq!(keys.len(), 480);
        let out_of_order = keys.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(out_of_order > 50);
        assert!(keys.iter().all(|k| *k >= 0 && *k < 48 * 3_600_000_000));
    }
}

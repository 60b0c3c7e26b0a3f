//! Number formatting and the value axis.

/// Formats a coordinate with at most one decimal.
///
/// One decimal is finer than a screen pixel at the chart's size, keeps the
/// SVG compact and makes the output byte-for-byte reproducible; a
/// non-finite input (which the callers already try to exclude) prints as 0
/// rather than leaking `NaN` into the markup.
pub(crate) fn coord(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    let tenths = (value * 10.0).round();
    if tenths == 0.0 {
        return "0".to_owned();
    }
    if tenths % 10.0 == 0.0 {
        format!("{}", tenths / 10.0)
    } else {
        format!("{:.1}", tenths / 10.0)
    }
}

/// A value axis from 0 to a round number, with round tick steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueAxis {
    pub(crate) max: f64,
    pub(crate) step: f64,
    pub(crate) ticks: Vec<f64>,
}

/// Picks a 1-2-5 step so that the axis has 3 to 5 intervals (4 to 6 tick
/// labels) and its top is at or above `data_max`.
///
/// Choosing the smallest such step keeps the data using most of the plot
/// height; because neighbouring 1-2-5 steps differ by at most 2.5×, the
/// smallest step with at most 5 intervals never needs fewer than 3.
pub(crate) fn value_axis(data_max: f64) -> ValueAxis {
    // An empty or all-zero series still needs a readable axis; 0..10 is the
    // least surprising one for counts.
    let data_max = if data_max.is_finite() && data_max > 1e-9 {
        data_max.min(1e300)
    } else {
        10.0
    };
    let magnitude = 10f64.powf((data_max / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| intervals(data_max, *step) <= 5)
        .unwrap_or(100.0 * magnitude);
    let count = intervals(data_max, step).max(1);
    let ticks = (0..=count).map(|i| i as f64 * step).collect();
    ValueAxis {
        max: count as f64 * step,
        step,
        ticks,
    }
}

/// Intervals of `step` needed to reach `max`, forgiving float noise such as
/// 0.6000000000000001 / 0.2.
fn intervals(max: f64, step: f64) -> u32 {
    let exact = max / step;
    let rounded = exact.round();
    if (exact - rounded).abs() < 1e-9 {
        rounded as u32
    } else {
        exact.ceil() as u32
    }
}

/// Formats a tick value compactly (`500`, `1.5k`, `12k`, `2M`) so labels
/// stay narrow enough for the left margin whatever the table's volume.
///
/// `step` tells how many decimals small values need: ticks of 0.2 must not
/// all print as "0".
pub(crate) fn compact(value: f64, step: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    let value = if value.abs() < step.abs() * 1e-6 {
        0.0
    } else {
        value
    };
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    if value.abs() >= 1e15 {
        return format!("{value:.1e}");
    }
    for (unit, suffix) in UNITS {
        if value.abs() >= unit {
            return format!("{}{suffix}", trim_decimals(value / unit, 2));
        }
    }
    let decimals = if step > 0.0 && step < 1.0 {
        (-step.log10()).ceil().clamp(0.0, 12.0) as usize
    } else {
        0
    };
    trim_decimals(value, decimals)
}

fn trim_decimals(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    if text == "-0" {
        "0".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_have_at_most_one_decimal_and_no_negative_zero() {
        assert_eq!(coord(12.345), "12.3");
        assert_eq!(coord(12.0), "12");
        assert_eq!(coord(-0.01), "0");
        assert_eq!(coord(f64::NAN), "0");
        assert_eq!(coord(0.95), "1");
    }

    #[test]
    fn axis_top_covers_the_data_with_four_to_six_round_ticks() {
        for data_max in [
            0.3, 1.0, 3.0, 7.0, 41.0, 61.0, 100.0, 101.0, 121.0, 999.0, 12_034.0, 2.6e6,
        ] {
            let axis = value_axis(data_max);
            assert!(axis.max >= data_max, "{data_max}: {axis:?}");
            assert!((4..=6).contains(&axis.ticks.len()), "{data_max}: {axis:?}");
            let mantissa = axis.step / 10f64.powf(axis.step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-9),
                "{data_max}: step {}",
                axis.step
            );
        }
    }

    #[test]
    fn an_empty_series_still_gets_a_usable_axis() {
        let axis = value_axis(0.0);
        assert_eq!(axis.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(value_axis(f64::NAN), axis);
    }

    #[test]
    fn tick_labels_are_compact() {
        assert_eq!(compact(0.0, 500.0), "0");
        assert_eq!(compact(500.0, 500.0), "500");
        assert_eq!(compact(1500.0, 500.0), "1.5k");
        assert_eq!(compact(12_000.0, 2000.0), "12k");
        assert_eq!(compact(2_000_000.0, 500_000.0), "2M");
        assert_eq!(compact(0.6000000000000001, 0.2), "0.6");
        assert_eq!(compact(0.05, 0.05), "0.05");
    }
}

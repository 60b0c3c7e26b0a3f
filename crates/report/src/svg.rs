//! Drawing the chart.
//!
//! Everything is laid out on fixed pixel constants: the chart is always the
//! same size, which keeps label-fitting decisions simple and makes the
//! output reproducible for tests and for diffing two reports by eye.

use std::fmt::Write as _;

use crate::escape::escape;
use crate::numbers::{compact, coord, value_axis, ValueAxis};
use crate::time_axis::{format_instant, label_zone, time_ticks, LabelZone, TimeTick};
use crate::{BandState, Chart, ForecastStep, MarkerKind, Severity};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 460.0;
const PLOT_LEFT: f64 = 76.0;
const PLOT_RIGHT: f64 = 976.0;
const PLOT_TOP: f64 = 40.0;
const PLOT_BOTTOM: f64 = 330.0;
const STRIP_TOP: f64 = 336.0;
const STRIP_HEIGHT: f64 = 28.0;
const STRIP_BOTTOM: f64 = STRIP_TOP + STRIP_HEIGHT;
const X_LABEL_BASELINE: f64 = 381.0;
const X_CAPTION_BASELINE: f64 = 404.0;
/// Legend rows: a chart with every kind of thing in it needs two.
const LEGEND_MIDDLE: f64 = 428.0;
const LEGEND_ROW_HEIGHT: f64 = 17.0;
/// Average advance of a character at the 11 px label size in common
/// system sans fonts, rounded up: label fitting must err towards spacing.
const CHAR_WIDTH: f64 = 6.5;
const NO_DATA_TEXT: &str = "no data in this period yet";

/// Fallback bucket width when the caller passes a non-positive one: hourly
/// is the extension's finest grain, so it never joins buckets wrongly.
const FALLBACK_STEP_SECONDS: i64 = 3600;

const STYLE: &str = "\
text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;font-size:11px;fill:#3b4350}\
.heading{font-size:13px;font-weight:600;fill:#1d2630}\
.caption{font-size:12px;fill:#4a5260}\
.plot-area{fill:#fbfcfd;stroke:none}\
.grid{stroke:#e4e8ee;stroke-width:1}\
.axis{stroke:#5b6470;stroke-width:1}\
.tick-mark{stroke:#5b6470;stroke-width:1}\
.boundary{stroke:#8ea3bd;stroke-width:1;stroke-dasharray:2 3;opacity:.55}\
#forecast-band{fill:#2a9db0;fill-opacity:.2;stroke:none}\
#forecast{fill:none;stroke:#13798a;stroke-width:1.8;stroke-dasharray:6 4;stroke-linejoin:round}\
#actual{fill:none;stroke:#1b2a3a;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}\
.partition{stroke:none}\
.partition.attached{fill:#8aa6c8}\
.partition.shadow{fill:url(#shadow-hatch)}\
.partition.migrating{fill:#f0a23b}\
.partition.default{fill:#d64541}\
.partition-edge{stroke:#fff;stroke-width:1.5}\
.strip-frame{fill:none;stroke:#c5ced9;stroke-width:1}\
.partition-label{font-size:9px;fill:#fff}\
.partition-label.shadow{fill:#2f4d70}\
.now{stroke:#39414c;stroke-width:1.2;stroke-dasharray:3 3}\
.now-label{font-size:10px;fill:#39414c}\
.marker line{stroke-width:1.2;stroke-dasharray:1 2}\
.marker.migration line{stroke:#6b4fa0}\
.marker.migration path{fill:#6b4fa0}\
.marker.alert.critical line{stroke:#c62828}\
.marker.alert.critical circle{fill:#c62828}\
.marker.alert.warning line{stroke:#d99100}\
.marker.alert.warning circle{fill:#e7a400}\
.marker.alert.info line{stroke:#3b7dd8}\
.marker.alert.info circle{fill:#3b7dd8}\
.legend-line.actual{stroke:#1b2a3a;stroke-width:2}\
.legend-line.forecast{stroke:#13798a;stroke-width:2;stroke-dasharray:6 4}\
.legend-band{fill:#2a9db0;fill-opacity:.2;stroke:#2a9db0;stroke-opacity:.4}\
.no-data{font-size:15px;fill:#7a828e}";

/// The chart's time → x and value → y mappings.
struct Frame {
    since: i64,
    until: i64,
    values: ValueAxis,
}

impl Frame {
    /// Instants outside the axis pin to its edges, so nothing drawn can
    /// leave the plot even when the caller's data does.
    fn x(&self, at: i64) -> f64 {
        if self.until <= self.since {
            return PLOT_LEFT;
        }
        let at = at.clamp(self.since, self.until);
        let offset = (i128::from(at) - i128::from(self.since)) as f64;
        let span = (i128::from(self.until) - i128::from(self.since)) as f64;
        PLOT_LEFT + offset / span * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn y(&self, value: f64) -> f64 {
        let value = if value.is_finite() { value } else { 0.0 };
        let share = (value / self.values.max).clamp(0.0, 1.0);
        PLOT_BOTTOM - share * (PLOT_BOTTOM - PLOT_TOP)
    }
}

/// One observed bucket, cleaned: inside the axis, finite, not negative.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: i64,
    end: i64,
    value: f64,
}

/// One forecast step, cleaned: clipped to the axis, with lower ≤ point ≤ upper.
#[derive(Debug, Clone, Copy)]
struct Step {
    start: i64,
    end: i64,
    point: f64,
    lower: f64,
    upper: f64,
}

fn step_seconds(chart: &Chart) -> i64 {
    if chart.step_seconds > 0 {
        chart.step_seconds
    } else {
        FALLBACK_STEP_SECONDS
    }
}

/// Buckets to draw, sorted; of two buckets with the same start the first
/// given wins, so the result does not depend on sort stability elsewhere.
fn observed_buckets(chart: &Chart) -> Vec<Bucket> {
    if chart.until <= chart.since {
        return Vec::new();
    }
    let step = step_seconds(chart);
    let mut buckets: Vec<Bucket> = chart
        .actual
        .iter()
        .filter(|p| p.value.is_finite() && p.start >= chart.since && p.start < chart.until)
        .map(|p| Bucket {
            start: p.start,
            end: p.start.saturating_add(step).min(chart.until),
            value: p.value.max(0.0),
        })
        .collect();
    buckets.sort_by_key(|b| b.start);
    buckets.dedup_by_key(|b| b.start);
    buckets
}

fn forecast_steps(chart: &Chart) -> Vec<Step> {
    if chart.until <= chart.since {
        return Vec::new();
    }
    let mut steps: Vec<Step> = chart
        .forecast
        .iter()
        .filter(|f| f.point.is_finite() && f.end > f.start)
        .filter(|f| f.start < chart.until && f.end > chart.since)
        .map(|f: &ForecastStep| {
            let point = f.point.max(0.0);
            let bound = |b: f64| if b.is_finite() { b.max(0.0) } else { point };
            let (lower, upper) = (bound(f.lower), bound(f.upper));
            Step {
                start: f.start.max(chart.since),
                end: f.end.min(chart.until),
                point,
                lower: lower.min(upper).min(point),
                upper: upper.max(lower).max(point),
            }
        })
        .collect();
    steps.sort_by_key(|s| s.start);
    steps.dedup_by_key(|s| s.start);
    steps
}

/// Splits a sorted series where data is missing, so lines are never drawn
/// through time nobody measured.
///
/// A run continues while the next piece starts within half a bucket of the
/// previous one's end: that tolerates 23- and 25-hour local days in daily
/// series, while one wholly missing bucket already breaks the line.
fn contiguous_runs<T: Copy>(
    items: &[T],
    step: i64,
    span: impl Fn(&T) -> (i64, i64),
) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut previous_end: Option<i64> = None;
    for item in items {
        let (start, end) = span(item);
        let continues = previous_end.is_some_and(|prev| start <= prev.saturating_add(step / 2));
        match runs.last_mut() {
            Some(run) if continues => run.push(*item),
            _ => runs.push(vec![*item]),
        }
        previous_end = Some(end);
    }
    runs
}

/// A polyline through bucket midpoints, extended flat to the first bucket's
/// start and the last bucket's end so that a run covers exactly the time it
/// measured (and a lone bucket still shows as a short level line).
fn run_points(frame: &Frame, pieces: &[(i64, i64, f64)]) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(pieces.len() + 2);
    if let (Some(first), Some(last)) = (pieces.first(), pieces.last()) {
        points.push((frame.x(first.0), frame.y(first.2)));
        for (start, end, value) in pieces {
            let middle = (frame.x(*start) + frame.x(*end)) / 2.0;
            points.push((middle, frame.y(*value)));
        }
        points.push((frame.x(last.1), frame.y(last.2)));
    }
    points
}

fn push_polyline(path: &mut String, points: &[(f64, f64)]) {
    let mut last_written: Option<(String, String)> = None;
    for (index, (x, y)) in points.iter().enumerate() {
        let written = (coord(*x), coord(*y));
        if index > 0 && last_written.as_ref() == Some(&written) {
            continue;
        }
        let command = if index == 0 { 'M' } else { 'L' };
        let _ = write!(path, "{command}{} {}", written.0, written.1);
        last_written = Some(written);
    }
}

/// Everything the legend may name, in the order it is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegendEntry {
    Actual,
    Forecast,
    Interval,
    Partition(BandState),
    Now,
    Migration,
    Alert(Severity),
}

impl LegendEntry {
    /// Series first, then the partition strip, then the overlays: the order
    /// in which the eye meets them on the chart.
    fn position(self) -> u8 {
        match self {
            LegendEntry::Actual => 0,
            LegendEntry::Forecast => 1,
            LegendEntry::Interval => 2,
            LegendEntry::Partition(state) => 3 + state_layer(state),
            LegendEntry::Now => 7,
            LegendEntry::Migration => 8,
            LegendEntry::Alert(Severity::Critical) => 9,
            LegendEntry::Alert(Severity::Warning) => 10,
            LegendEntry::Alert(Severity::Info) => 11,
        }
    }

    fn text(self) -> &'static str {
        match self {
            LegendEntry::Actual => "actual",
            LegendEntry::Forecast => "forecast",
            LegendEntry::Interval => "95% interval",
            LegendEntry::Partition(BandState::Attached) => "attached partition",
            LegendEntry::Partition(BandState::Shadow) => "shadow partition",
            LegendEntry::Partition(BandState::Migrating) => "migrating",
            LegendEntry::Partition(BandState::Default) => "rows in DEFAULT",
            LegendEntry::Now => "now",
            LegendEntry::Migration => "migration",
            LegendEntry::Alert(Severity::Critical) => "critical alert",
            LegendEntry::Alert(Severity::Warning) => "warning",
            LegendEntry::Alert(Severity::Info) => "info",
        }
    }
}

pub(crate) fn state_class(state: BandState) -> &'static str {
    match state {
        BandState::Attached => "attached",
        BandState::Shadow => "shadow",
        BandState::Migrating => "migrating",
        BandState::Default => "default",
    }
}

fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Draw order of partition states: DEFAULT rows last, so the warning colour
/// is never hidden under an attached partition covering the same range.
fn state_layer(state: BandState) -> u8 {
    match state {
        BandState::Attached => 0,
        BandState::Shadow => 1,
        BandState::Migrating => 2,
        BandState::Default => 3,
    }
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

pub(crate) fn render(chart: &Chart) -> String {
    let zone = label_zone(&chart.zone);
    let step = step_seconds(chart);
    let has_period = chart.until > chart.since;
    let buckets = observed_buckets(chart);
    let steps = forecast_steps(chart);
    let data_max = buckets
        .iter()
        .map(|b| b.value)
        .chain(steps.iter().map(|s| s.upper))
        .fold(0.0_f64, f64::max);
    let frame = Frame {
        since: chart.since,
        until: chart.until,
        values: value_axis(data_max),
    };
    let mut legend: Vec<LegendEntry> = Vec::new();
    let mut out = String::with_capacity(16 * 1024);

    let period = period_text(chart, &zone);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title">"#,
        w = coord(WIDTH),
        h = coord(HEIGHT)
    );
    let _ = write!(
        out,
        r#"<title id="chart-title">{} · {} · {}</title>"#,
        escape(&chart.table),
        escape(&chart.y_caption),
        escape(&period)
    );
    let _ = write!(out, "<style>{STYLE}</style>");
    out.push_str(concat!(
        r#"<defs><pattern id="shadow-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">"#,
        r##"<rect width="6" height="6" fill="#edf2f8"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8aa6c8" stroke-width="2.5"/></pattern></defs>"##
    ));
    let _ = write!(
        out,
        r##"<rect width="{}" height="{}" fill="#fff"/>"##,
        coord(WIDTH),
        coord(HEIGHT)
    );
    let _ = write!(
        out,
        r#"<text class="heading" x="{}" y="22">{} · {}</text>"#,
        coord(PLOT_LEFT),
        escape(&chart.table),
        escape(&period)
    );
    let _ = write!(
        out,
        r#"<rect class="plot-area" x="{}" y="{}" width="{}" height="{}"/>"#,
        coord(PLOT_LEFT),
        coord(PLOT_TOP),
        coord(PLOT_RIGHT - PLOT_LEFT),
        coord(PLOT_BOTTOM - PLOT_TOP)
    );

    draw_value_grid(&mut out, &frame);
    let ticks = if has_period {
        time_ticks(chart.since, chart.until, &zone.tz)
    } else {
        Vec::new()
    };
    draw_time_grid(&mut out, &frame, &ticks);
    draw_partitions(&mut out, chart, &frame, &mut legend);
    draw_series(&mut out, &frame, &buckets, &steps, step, &mut legend);
    draw_now(&mut out, chart, &frame, &mut legend);
    draw_markers(&mut out, chart, &frame, &mut legend);
    draw_axes_and_captions(&mut out, chart, &zone);
    draw_time_labels(&mut out, &frame, &ticks);
    if buckets.is_empty() && steps.is_empty() {
        let _ = write!(
            out,
            r#"<text class="no-data" x="{}" y="{}" text-anchor="middle">{NO_DATA_TEXT}</text>"#,
            coord((PLOT_LEFT + PLOT_RIGHT) / 2.0),
            coord((PLOT_TOP + PLOT_BOTTOM) / 2.0)
        );
    }
    legend.sort_by_key(|entry| entry.position());
    draw_legend(&mut out, &legend);
    out.push_str("</svg>");
    out
}

/// "2026-11-23 00:00 – 2026-11-30 00:00 Europe/Berlin", the period as the
/// reader's zone sees it.
pub(crate) fn period_text(chart: &Chart, zone: &LabelZone) -> String {
    format!(
        "{} – {} {}",
        format_instant(chart.since, &zone.tz),
        format_instant(chart.until, &zone.tz),
        zone.name
    )
}

fn draw_value_grid(out: &mut String, frame: &Frame) {
    out.push_str(r#"<g class="y-ticks">"#);
    for value in &frame.values.ticks {
        let y = coord(frame.y(*value));
        let _ = write!(
            out,
            r#"<line class="grid" x1="{}" y1="{y}" x2="{}" y2="{y}"/><text class="y-tick" x="{}" y="{y}" dy="4" text-anchor="end">{}</text>"#,
            coord(PLOT_LEFT),
            coord(PLOT_RIGHT),
            coord(PLOT_LEFT - 8.0),
            escape(&compact(*value, frame.values.step))
        );
    }
    out.push_str("</g>");
}

fn draw_time_grid(out: &mut String, frame: &Frame, ticks: &[TimeTick]) {
    out.push_str(r#"<g class="x-grid">"#);
    for tick in ticks {
        let x = coord(frame.x(tick.at));
        let _ = write!(
            out,
            r#"<line class="grid" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            coord(PLOT_TOP),
            coord(PLOT_BOTTOM)
        );
    }
    out.push_str("</g>");
}

/// Tick labels, thinned so that no two overlap: ticks are at least ~90 px
/// apart by construction, but DST days and long date labels can still
/// collide, and a skipped label reads better than a smudge.
fn draw_time_labels(out: &mut String, frame: &Frame, ticks: &[TimeTick]) {
    out.push_str(r#"<g class="x-ticks">"#);
    let mut previous_right_edge = f64::NEG_INFINITY;
    for tick in ticks {
        let x = frame.x(tick.at);
        let half = text_width(&tick.label) / 2.0;
        let label_x = x.clamp(half + 2.0, WIDTH - half - 2.0);
        let _ = write!(
            out,
            r#"<line class="tick-mark" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            coord(STRIP_BOTTOM),
            coord(STRIP_BOTTOM + 4.0),
            x = coord(x)
        );
        if label_x - half < previous_right_edge + 8.0 {
            continue;
        }
        let _ = write!(
            out,
            r#"<text class="x-tick" x="{}" y="{}" text-anchor="middle" data-at="{}">{}</text>"#,
            coord(label_x),
            coord(X_LABEL_BASELINE),
            tick.at,
            escape(&tick.label)
        );
        previous_right_edge = label_x + half;
    }
    out.push_str("</g>");
}

fn draw_partitions(out: &mut String, chart: &Chart, frame: &Frame, legend: &mut Vec<LegendEntry>) {
    let _ = write!(
        out,
        r#"<text class="caption" x="{}" y="{}" dy="4" text-anchor="end">partitions</text>"#,
        coord(PLOT_LEFT - 8.0),
        coord(STRIP_TOP + STRIP_HEIGHT / 2.0)
    );
    let mut bands: Vec<&crate::Band> = if chart.until > chart.since {
        chart
            .partitions
            .iter()
            .filter(|b| b.end > b.start && b.start < chart.until && b.end > chart.since)
            .collect()
    } else {
        Vec::new()
    };
    bands.sort_by_key(|b| (state_layer(b.state), b.start, b.end));

    let mut boundaries: Vec<i64> = bands
        .iter()
        .flat_map(|b| [b.start, b.end])
        .filter(|at| *at > chart.since && *at < chart.until)
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    out.push_str(r#"<g class="partition-boundaries">"#);
    for at in &boundaries {
        let x = coord(frame.x(*at));
        let _ = write!(
            out,
            r#"<line class="boundary" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            coord(PLOT_TOP),
            coord(PLOT_BOTTOM)
        );
    }
    out.push_str("</g>");

    out.push_str(r#"<g class="partitions">"#);
    for band in &bands {
        let class = state_class(band.state);
        let left = frame.x(band.start);
        let right = frame.x(band.end);
        let width = (right - left).max(1.0);
        let _ = write!(
            out,
            r#"<rect class="partition {class}" x="{}" y="{}" width="{}" height="{}"><title>{} ({})</title></rect>"#,
            coord(left),
            coord(STRIP_TOP),
            coord(width),
            coord(STRIP_HEIGHT),
            escape(&band.label),
            LegendEntry::Partition(band.state).text()
        );
        if let Some(text) = fitting_band_label(&band.label, width) {
            let _ = write!(
                out,
                r#"<text class="partition-label {class}" x="{}" y="{}" dy="3" text-anchor="middle">{}</text>"#,
                coord(left + width / 2.0),
                coord(STRIP_TOP + STRIP_HEIGHT / 2.0),
                escape(text)
            );
        }
        if !legend.contains(&LegendEntry::Partition(band.state)) {
            legend.push(LegendEntry::Partition(band.state));
        }
    }
    for at in &boundaries {
        let x = coord(frame.x(*at));
        let _ = write!(
            out,
            r#"<line class="partition-edge" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            coord(STRIP_TOP),
            coord(STRIP_BOTTOM)
        );
    }
    let _ = write!(
        out,
        r#"<rect class="strip-frame" x="{}" y="{}" width="{}" height="{}"/>"#,
        coord(PLOT_LEFT),
        coord(STRIP_TOP),
        coord(PLOT_RIGHT - PLOT_LEFT),
        coord(STRIP_HEIGHT)
    );
    out.push_str("</g>");
}

/// The whole label if it fits inside the band, else its name
/// ("events_p20261130" of "events_p20261130 · 12 034 rows"), else the
/// name's last `_` part ("p20261130"), else nothing: the tooltip still
/// carries the full text.
fn fitting_band_label(label: &str, band_width: f64) -> Option<&str> {
    // 9 px text; 0.62 em per character covers digits in common sans fonts.
    let fits =
        |text: &str| !text.is_empty() && text.chars().count() as f64 * 5.6 + 6.0 <= band_width;
    let label = label.trim();
    let name = label.split(" · ").next().unwrap_or("").trim();
    let suffix = name.rsplit('_').next().unwrap_or("");
    [label, name, suffix].into_iter().find(|text| fits(text))
}

fn draw_series(
    out: &mut String,
    frame: &Frame,
    buckets: &[Bucket],
    steps: &[Step],
    step: i64,
    legend: &mut Vec<LegendEntry>,
) {
    if !steps.is_empty() {
        let runs = contiguous_runs(steps, step, |s| (s.start, s.end));
        let mut band = String::new();
        let mut line = String::new();
        for run in &runs {
            let upper: Vec<(i64, i64, f64)> =
                run.iter().map(|s| (s.start, s.end, s.upper)).collect();
            let mut outline = run_points(frame, &upper);
            let lower: Vec<(i64, i64, f64)> =
                run.iter().map(|s| (s.start, s.end, s.lower)).collect();
            outline.extend(run_points(frame, &lower).into_iter().rev());
            push_polyline(&mut band, &outline);
            band.push('Z');
            let point: Vec<(i64, i64, f64)> =
                run.iter().map(|s| (s.start, s.end, s.point)).collect();
            push_polyline(&mut line, &run_points(frame, &point));
        }
        let _ = write!(out, r#"<path id="forecast-band" d="{band}"/>"#);
        let _ = write!(out, r#"<path id="forecast" d="{line}"/>"#);
        legend.push(LegendEntry::Forecast);
        legend.push(LegendEntry::Interval);
    }
    if !buckets.is_empty() {
        let mut line = String::new();
        for run in contiguous_runs(buckets, step, |b| (b.start, b.end)) {
            let pieces: Vec<(i64, i64, f64)> =
                run.iter().map(|b| (b.start, b.end, b.value)).collect();
            push_polyline(&mut line, &run_points(frame, &pieces));
        }
        let _ = write!(out, r#"<path id="actual" d="{line}"/>"#);
        legend.push(LegendEntry::Actual);
    }
}

fn draw_now(out: &mut String, chart: &Chart, frame: &Frame, legend: &mut Vec<LegendEntry>) {
    let Some(now) = chart.now else { return };
    if chart.until <= chart.since || now < chart.since || now > chart.until {
        return;
    }
    let x = frame.x(now);
    let (label_x, anchor) = if x > PLOT_RIGHT - 30.0 {
        (x - 4.0, "end")
    } else {
        (x + 4.0, "start")
    };
    let _ = write!(
        out,
        r#"<g class="now-line"><title>now: {}</title><line class="now" x1="{x}" y1="{}" x2="{x}" y2="{}"/><text class="now-label" x="{}" y="{}" text-anchor="{anchor}">now</text></g>"#,
        escape(&format_instant(now, &label_zone(&chart.zone).tz)),
        coord(PLOT_TOP),
        coord(STRIP_BOTTOM),
        coord(label_x),
        coord(PLOT_TOP + 11.0),
        x = coord(x)
    );
    legend.push(LegendEntry::Now);
}

fn draw_markers(out: &mut String, chart: &Chart, frame: &Frame, legend: &mut Vec<LegendEntry>) {
    if chart.until <= chart.since {
        return;
    }
    for marker in &chart.markers {
        if marker.at < chart.since || marker.at > chart.until {
            continue;
        }
        let x = frame.x(marker.at);
        let (class, entry) = match marker.kind {
            MarkerKind::Migration => ("migration".to_owned(), LegendEntry::Migration),
            MarkerKind::Alert(severity) => (
                format!("alert {}", severity_class(severity)),
                LegendEntry::Alert(severity),
            ),
        };
        let symbol = match marker.kind {
            MarkerKind::Migration => format!(
                r#"<path d="M{} {}L{} {}L{} {}Z"/>"#,
                coord(x - 5.0),
                coord(PLOT_TOP - 11.0),
                coord(x + 5.0),
                coord(PLOT_TOP - 11.0),
                coord(x),
                coord(PLOT_TOP - 2.0)
            ),
            MarkerKind::Alert(_) => format!(
                r#"<circle cx="{}" cy="{}" r="4.5"/>"#,
                coord(x),
                coord(PLOT_TOP - 6.0)
            ),
        };
        let _ = write!(
            out,
            r#"<g class="marker {class}"><title>{}</title><line x1="{x}" y1="{}" x2="{x}" y2="{}"/>{symbol}</g>"#,
            escape(&marker.label),
            coord(PLOT_TOP),
            coord(PLOT_BOTTOM),
            x = coord(x)
        );
        if !legend.contains(&entry) {
            legend.push(entry);
        }
    }
}

fn draw_axes_and_captions(out: &mut String, chart: &Chart, zone: &LabelZone) {
    let _ = write!(
        out,
        r#"<line class="axis" x1="{l}" y1="{t}" x2="{l}" y2="{b}"/><line class="axis" x1="{l}" y1="{b}" x2="{r}" y2="{b}"/>"#,
        l = coord(PLOT_LEFT),
        r = coord(PLOT_RIGHT),
        t = coord(PLOT_TOP),
        b = coord(PLOT_BOTTOM)
    );
    let middle = coord((PLOT_TOP + PLOT_BOTTOM) / 2.0);
    let _ = write!(
        out,
        r#"<text class="caption y-caption" x="18" y="{middle}" text-anchor="middle" transform="rotate(-90 18 {middle})">{}</text>"#,
        escape(&chart.y_caption)
    );
    let _ = write!(
        out,
        r#"<text class="caption x-caption" x="{}" y="{}" text-anchor="middle">{}</text>"#,
        coord((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        coord(X_CAPTION_BASELINE),
        escape(&x_caption(chart, zone))
    );
}

/// The caller's caption, plus a note when the labels are not in the zone the
/// caption probably names: a wrong zone would silently shift every reading.
pub(crate) fn x_caption(chart: &Chart, zone: &LabelZone) -> String {
    let caption = chart.x_caption.trim();
    if !zone.fell_back {
        return caption.to_owned();
    }
    let requested = chart.zone.trim();
    let note = if requested.is_empty() {
        "times in UTC".to_owned()
    } else {
        format!("times in UTC: zone “{requested}” unknown")
    };
    if caption.is_empty() {
        note
    } else {
        format!("{caption} — {note}")
    }
}

fn draw_legend(out: &mut String, legend: &[LegendEntry]) {
    out.push_str(r#"<g class="legend">"#);
    let mut x = PLOT_LEFT;
    let mut y = LEGEND_MIDDLE;
    for entry in legend {
        let entry_width = 23.0 + text_width(entry.text());
        if x > PLOT_LEFT && x + entry_width > PLOT_RIGHT {
            x = PLOT_LEFT;
            y += LEGEND_ROW_HEIGHT;
        }
        let swatch = match entry {
            LegendEntry::Actual => format!(
                r#"<line class="legend-line actual" x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
                coord(x),
                coord(x + 18.0),
                y = coord(y)
            ),
            LegendEntry::Forecast => format!(
                r#"<line class="legend-line forecast" x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
                coord(x),
                coord(x + 18.0),
                y = coord(y)
            ),
            LegendEntry::Interval => format!(
                r#"<rect class="legend-band" x="{}" y="{}" width="18" height="10"/>"#,
                coord(x),
                coord(y - 5.0)
            ),
            LegendEntry::Partition(state) => format!(
                r#"<rect class="partition {}" x="{}" y="{}" width="18" height="10"/>"#,
                state_class(*state),
                coord(x),
                coord(y - 5.0)
            ),
            LegendEntry::Now => format!(
                r#"<line class="now" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
                coord(y - 7.0),
                coord(y + 7.0),
                x = coord(x + 9.0)
            ),
            LegendEntry::Migration => format!(
                r#"<g class="marker migration"><path d="M{} {}L{} {}L{} {}Z"/></g>"#,
                coord(x + 4.0),
                coord(y - 4.5),
                coord(x + 14.0),
                coord(y - 4.5),
                coord(x + 9.0),
                coord(y + 4.5)
            ),
            LegendEntry::Alert(severity) => format!(
                r#"<g class="marker alert {}"><circle cx="{}" cy="{}" r="4.5"/></g>"#,
                severity_class(*severity),
                coord(x + 9.0),
                coord(y)
            ),
        };
        out.push_str(&swatch);
        let _ = write!(
            out,
            r#"<text class="legend-text" x="{}" y="{}" dy="4">{}</text>"#,
            coord(x + 23.0),
            coord(y),
            entry.text()
        );
        x += entry_width + 16.0;
    }
    out.push_str("</g>");
}

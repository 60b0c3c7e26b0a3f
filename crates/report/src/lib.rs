//! The pg_partition_predict report, rendered as a self-contained SVG chart
//! and HTML page.
//!
//! A DBA deciding whether to trust the forecast needs to *see* it against
//! what actually arrived, on the same axis as the partitions that will hold
//! those rows. The extension gathers the numbers via SPI; this crate only
//! draws them, so it stays pure, deterministic and testable without a
//! database.
//!
//! Output is self-contained (no scripts, fonts or external URLs) because the
//! page is typically saved from `psql` and opened from disk or mailed, and it
//! is well-formed XML so that tests and tools can parse it.

#![forbid(unsafe_code)]

mod escape;
mod html;
mod numbers;
mod svg;
mod time_axis;

/// Everything one chart shows, on one time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Qualified table name as shown to the reader; any text is accepted
    /// and escaped.
    pub table: String,
    /// IANA zone for axis labels; an unknown zone falls back to UTC and the
    /// x caption says so.
    pub zone: String,
    pub x_caption: String,
    pub y_caption: String,
    /// Width of one bucket in seconds (3600 or 86400).
    pub step_seconds: i64,
    /// Left edge of the axis, unix seconds.
    pub since: i64,
    /// Right edge of the axis, unix seconds; not after `since` means an
    /// empty chart.
    pub until: i64,
    /// Observed buckets; any order, non-finite values and buckets outside
    /// the axis are ignored, negative values drawn as 0.
    pub actual: Vec<Point>,
    pub forecast: Vec<ForecastStep>,
    pub partitions: Vec<Band>,
    pub markers: Vec<Marker>,
    /// Where collection currently stands; drawn only when on the axis.
    pub now: Option<i64>,
}

/// One observed bucket: its start (unix seconds) and the count in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub start: i64,
    pub value: f64,
}

/// One forecast bucket with its 95% prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastStep {
    pub start: i64,
    pub end: i64,
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
}

/// A partition's range mapped onto the time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub start: i64,
    pub end: i64,
    pub state: BandState,
    /// Tooltip and, when it fits, the text inside the band,
    /// e.g. "events_p20261130 · 12 034 rows".
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BandState {
    Attached,
    Shadow,
    Migrating,
    /// Rows sitting in the DEFAULT partition for that range: drawn in a
    /// warning colour because they block attaching a proper partition.
    Default,
}

/// An event worth seeing against the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: i64,
    pub kind: MarkerKind,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Migration,
    Alert(Severity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// The key numbers and tables shown around the chart on the HTML page; the
/// values are preformatted by the caller, which knows their units.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub facts: Vec<(String, String)>,
    /// Name, range start, range end, state / predicted rows.
    pub next_partitions: Vec<[String; 4]>,
    /// Severity, kind, message.
    pub open_alerts: Vec<[String; 3]>,
    pub generated_at: String,
}

/// The chart as a standalone SVG document (about 1000×460 px).
///
/// Never fails: bad input (NaN, negative counts, data outside the period,
/// an unknown zone, an empty period) is drawn as well as it can be, because
/// a report that errors out shows the DBA nothing at all.
pub fn svg(chart: &Chart) -> String {
    svg::render(chart)
}

/// A complete HTML page: key numbers, the chart, next partitions and open
/// alerts.
pub fn html(chart: &Chart, summary: &Summary) -> String {
    html::render(chart, summary)
}

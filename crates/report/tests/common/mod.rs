//! Fixtures shaped like what the extension's `report()` gathers, and helpers
//! to read the rendered markup back.

#![allow(dead_code)]

use report::{Band, BandState, Chart, ForecastStep, Marker, MarkerKind, Point, Severity, Summary};

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

pub fn utc(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// A plausible daily-seasonal arrival rate: busy afternoons, quiet nights.
pub fn rate_at(at: i64) -> f64 {
    let hour_of_day = (at.rem_euclid(DAY) / HOUR) as f64;
    600.0 + 450.0 * ((hour_of_day - 9.0) / 24.0 * std::f64::consts::TAU).sin()
}

/// Seven observed days, a six-hour collector outage, two forecast days,
/// daily partitions in every state, and a few events.
pub fn week_chart() -> Chart {
    let since = utc("2026-11-23T00:00:00Z");
    let now = utc("2026-11-30T00:00:00Z");
    let until = utc("2026-12-02T00:00:00Z");
    let outage = utc("2026-11-25T10:00:00Z")..utc("2026-11-25T16:00:00Z");
    let actual = (since..now)
        .step_by(HOUR as usize)
        .filter(|at| !outage.contains(at))
        .map(|start| Point {
            start,
            value: rate_at(start) * (1.0 + 0.08 * ((start / HOUR) % 7) as f64 / 7.0),
        })
        .collect();
    let forecast = (now..until)
        .step_by(HOUR as usize)
        .enumerate()
        .map(|(ahead, start)| {
            let point = rate_at(start);
            let spread = point * (0.12 + 0.004 * ahead as f64);
            ForecastStep {
                start,
                end: start + HOUR,
                point,
                lower: point - spread,
                upper: point + spread,
            }
        })
        .collect();
    let mut partitions: Vec<Band> = (0..9)
        .map(|day| {
            let start = since + day * DAY;
            let name = jiff::Timestamp::from_second(start)
                .unwrap()
                .strftime("events_p%Y%m%d")
                .to_string();
            Band {
                start,
                end: start + DAY,
                state: match day {
                    7 => BandState::Migrating,
                    8 => BandState::Shadow,
                    _ => BandState::Attached,
                },
                label: format!("{name} · 14 210 rows"),
            }
        })
        .collect();
    partitions.push(Band {
        start: utc("2026-11-26T00:00:00Z"),
        end: utc("2026-11-27T00:00:00Z"),
        state: BandState::Default,
        label: "events_default · 312 rows".to_owned(),
    });
    // Entirely before the axis: must not be drawn.
    partitions.push(Band {
        start: since - 3 * DAY,
        end: since - 2 * DAY,
        state: BandState::Attached,
        label: "events_p20261120 · 9 100 rows".to_owned(),
    });
    Chart {
        table: "public.events".to_owned(),
        zone: "Europe/Berlin".to_owned(),
        x_caption: "key time (Europe/Berlin)".to_owned(),
        y_caption: "rows per hour".to_owned(),
        step_seconds: HOUR,
        since,
        until,
        actual,
        forecast,
        partitions,
        markers: vec![
            Marker {
                at: utc("2026-11-26T10:00:00Z"),
                kind: MarkerKind::Migration,
                label: "moved 312 rows out of DEFAULT".to_owned(),
            },
            Marker {
                at: utc("2026-11-28T03:00:00Z"),
                kind: MarkerKind::Alert(Severity::Warning),
                label: "runway below 2 days".to_owned(),
            },
            Marker {
                at: utc("2026-11-29T14:00:00Z"),
                kind: MarkerKind::Alert(Severity::Critical),
                label: "rows landed in DEFAULT".to_owned(),
            },
            Marker {
                at: since - DAY,
                kind: MarkerKind::Alert(Severity::Info),
                label: "before the period: not drawn".to_owned(),
            },
        ],
        now: Some(now),
    }
}

/// A quarter of daily counts in a zone with DST, for the coarse axis.
pub fn quarter_chart() -> Chart {
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let local_midnight = |month: i8, day: i8| {
        jiff::civil::date(2026, month, day)
            .to_zoned(berlin.clone())
            .unwrap()
            .timestamp()
            .as_second()
    };
    let since = local_midnight(1, 1);
    let now = local_midnight(3, 15);
    let until = local_midnight(4, 1);
    let days = |from: i64, to: i64| {
        std::iter::successors(Some(from), move |at| Some(at + DAY))
            .take_while(move |at| *at < to)
            // Rounded to local midnight: 23- and 25-hour days are real.
            .map(|at| {
                let date = jiff::Timestamp::from_second(at + 2 * HOUR)
                    .unwrap()
                    .to_zoned(berlin.clone())
                    .date();
                date.to_zoned(berlin.clone())
                    .unwrap()
                    .timestamp()
                    .as_second()
            })
            .collect::<Vec<_>>()
    };
    let daily = |at: i64| 14_000.0 + 40.0 * ((at - since) / DAY) as f64;
    Chart {
        table: "public.orders".to_owned(),
        zone: "Europe/Berlin".to_owned(),
        x_caption: "order date (Europe/Berlin)".to_owned(),
        y_caption: "rows per day".to_owned(),
        step_seconds: DAY,
        since,
        until,
        actual: days(since, now)
            .into_iter()
            .map(|start| Point {
                start,
                value: daily(start) * if (start / DAY) % 7 == 3 { 0.6 } else { 1.0 },
            })
            .collect(),
        forecast: days(now, until)
            .into_iter()
            .map(|start| ForecastStep {
                start,
                end: start + DAY,
                point: daily(start),
                lower: daily(start) * 0.85,
                upper: daily(start) * 1.15,
            })
            .collect(),
        partitions: (1..=3)
            .map(|month| Band {
                start: local_midnight(month, 1),
                end: local_midnight(month + 1, 1),
                state: BandState::Attached,
                label: format!(
                    "orders_p2026_{month:02} · {} rows",
                    400_000 + i32::from(month) * 30_000
                ),
            })
            .collect(),
        markers: Vec::new(),
        now: Some(now),
    }
}

pub fn empty_chart() -> Chart {
    Chart {
        actual: Vec::new(),
        forecast: Vec::new(),
        markers: Vec::new(),
        ..week_chart()
    }
}

pub fn week_summary() -> Summary {
    Summary {
        facts: vec![
            ("MASE vs seasonal naive".to_owned(), "0.78".to_owned()),
            ("95% interval coverage".to_owned(), "94 %".to_owned()),
            ("rows in DEFAULT".to_owned(), "312".to_owned()),
            ("runway".to_owned(), "3 days 04:00".to_owned()),
        ],
        next_partitions: vec![
            [
                "events_p20261201".to_owned(),
                "2026-12-01 00:00".to_owned(),
                "2026-12-02 00:00".to_owned(),
                "shadow · ~14 400 rows".to_owned(),
            ],
            [
                "events_p20261202".to_owned(),
                "2026-12-02 00:00".to_owned(),
                "2026-12-03 00:00".to_owned(),
                "planned · ~14 300 rows".to_owned(),
            ],
        ],
        open_alerts: vec![[
            "critical".to_owned(),
            "default_rows".to_owned(),
            "312 rows landed in events_default".to_owned(),
        ]],
        generated_at: "2026-11-30 00:05 UTC".to_owned(),
    }
}

pub fn parse(markup: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(markup).unwrap_or_else(|e| panic!("not well-formed: {e}\n{markup}"))
}

/// The page starts with `<!DOCTYPE html>`, which roxmltree only accepts
/// when DTDs are allowed; nothing else in the page is DTD-dependent.
pub fn parse_page(markup: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(markup, options)
        .unwrap_or_else(|e| panic!("not well-formed: {e}\n{markup}"))
}

pub fn by_id<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    id: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    doc.descendants().find(|n| n.attribute("id") == Some(id))
}

pub fn with_class<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    element: &str,
    class: &str,
) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == element)
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split_whitespace().any(|part| part == class))
        })
        .collect()
}

pub fn number(node: roxmltree::Node, attribute: &str) -> f64 {
    node.attribute(attribute)
        .unwrap_or_else(|| panic!("{attribute} missing on {node:?}"))
        .parse()
        .unwrap()
}

/// The plot area as (left, top, right, bottom).
pub fn plot_area(doc: &roxmltree::Document) -> (f64, f64, f64, f64) {
    let rect = with_class(doc, "rect", "plot-area")[0];
    let (x, y) = (number(rect, "x"), number(rect, "y"));
    (x, y, x + number(rect, "width"), y + number(rect, "height"))
}

/// Path data as subpaths of (x, y) points; the renderer only writes
/// absolute M, L and Z commands.
pub fn subpaths(d: &str) -> Vec<Vec<(f64, f64)>> {
    let mut result: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut numbers: Vec<f64> = Vec::new();
    let mut current = String::new();
    let flush_number = |current: &mut String, numbers: &mut Vec<f64>| {
        if !current.is_empty() {
            numbers.push(
                current
                    .parse()
                    .unwrap_or_else(|_| panic!("bad number {current:?} in {d}")),
            );
            current.clear();
        }
    };
    let mut command = ' ';
    let finish = |command: char, numbers: &mut Vec<f64>, result: &mut Vec<Vec<(f64, f64)>>| {
        assert!(
            numbers.len().is_multiple_of(2),
            "odd coordinate count in {d}"
        );
        let points: Vec<(f64, f64)> = numbers.chunks(2).map(|c| (c[0], c[1])).collect();
        match command {
            'M' => result.push(points),
            'L' => result.last_mut().expect("L before M").extend(points),
            'Z' | ' ' => assert!(points.is_empty()),
            other => panic!("unexpected command {other} in {d}"),
        }
        numbers.clear();
    };
    for ch in d.chars() {
        if ch.is_ascii_alphabetic() {
            flush_number(&mut current, &mut numbers);
            finish(command, &mut numbers, &mut result);
            command = ch;
        } else if ch == ' ' || ch == ',' {
            flush_number(&mut current, &mut numbers);
        } else {
            current.push(ch);
        }
    }
    flush_number(&mut current, &mut numbers);
    finish(command, &mut numbers, &mut result);
    result
}

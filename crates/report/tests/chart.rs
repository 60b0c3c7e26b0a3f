//! What a DBA sees in the SVG chart.

mod common;

use common::*;
use report::{svg, Band, BandState, Chart, ForecastStep, Marker, MarkerKind, Point, Severity};

#[test]
fn chart_is_an_svg_image_with_every_series_and_one_rect_per_visible_partition() {
    let chart = week_chart();
    let markup = svg(&chart);
    let doc = parse(&markup);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert_eq!(root.attribute("role"), Some("img"));
    assert_eq!(root.attribute("viewBox"), Some("0 0 1000 460"));
    let title = root.children().find(|n| n.has_tag_name("title")).unwrap();
    let title = title.text().unwrap();
    assert!(title.contains("public.events"), "{title}");
    assert!(
        title.contains("2026-11-23 01:00"),
        "period in Berlin time: {title}"
    );

    for id in ["actual", "forecast", "forecast-band"] {
        let path = by_id(&doc, id).unwrap_or_else(|| panic!("no #{id}"));
        assert_eq!(path.tag_name().name(), "path");
    }
    // Ten bands of which one lies wholly before the axis.
    let rects = with_class(&doc, "rect", "partition")
        .into_iter()
        .filter(|r| r.parent().and_then(|p| p.attribute("class")) == Some("partitions"))
        .collect::<Vec<_>>();
    assert_eq!(rects.len(), 10);
    let states = |state: &str| {
        rects
            .iter()
            .filter(|r| r.attribute("class") == Some(state))
            .count()
    };
    assert_eq!(states("partition attached"), 7);
    assert_eq!(states("partition migrating"), 1);
    assert_eq!(states("partition shadow"), 1);
    assert_eq!(states("partition default"), 1);
    let tooltip = rects[0]
        .children()
        .find(|n| n.has_tag_name("title"))
        .unwrap();
    assert_eq!(
        tooltip.text(),
        Some("events_p20261123 · 14 210 rows (attached partition)")
    );
}

#[test]
fn legend_names_each_thing_drawn_and_nothing_else() {
    let legend_of = |chart: &Chart| {
        let markup = svg(chart);
        let doc = parse(&markup);
        with_class(&doc, "text", "legend-text")
            .iter()
            .map(|t| t.text().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        legend_of(&week_chart()),
        [
            "actual",
            "forecast",
            "95% interval",
            "attached partition",
            "shadow partition",
            "migrating",
            "rows in DEFAULT",
            "now",
            "migration",
            "critical alert",
            "warning"
        ]
    );
    let bare = Chart {
        forecast: Vec::new(),
        partitions: Vec::new(),
        markers: Vec::new(),
        now: None,
        ..week_chart()
    };
    assert_eq!(legend_of(&bare), ["actual"]);
}

#[test]
fn hostile_text_is_escaped_everywhere_and_reads_back_unchanged() {
    let hostile = r#"pub<&"'>lic."ev]]>ents""#;
    let mut chart = week_chart();
    chart.table = hostile.to_owned();
    chart.y_caption = format!("rows of {hostile}");
    chart.x_caption = format!("time of {hostile}");
    chart.partitions[0].label = hostile.to_owned();
    chart.markers[0].label = hostile.to_owned();
    let markup = svg(&chart);
    assert!(!markup.contains(hostile));
    let doc = parse(&markup);
    let title = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("title"))
        .unwrap();
    assert!(title.text().unwrap().starts_with(hostile));
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&format!("rows of {hostile}").as_str()));
    assert!(texts.contains(&format!("time of {hostile}").as_str()));
    assert!(texts.contains(&format!("{hostile} (attached partition)").as_str()));
    assert!(texts.contains(&hostile));
}

#[test]
fn a_period_without_data_still_shows_axes_partitions_and_says_so() {
    let markup = svg(&empty_chart());
    let doc = parse(&markup);
    let no_data = with_class(&doc, "text", "no-data");
    assert_eq!(no_data.len(), 1);
    assert_eq!(no_data[0].text(), Some("no data in this period yet"));
    assert!(by_id(&doc, "actual").is_none());
    assert!(by_id(&doc, "forecast").is_none());
    assert!(with_class(&doc, "text", "y-tick").len() >= 4);
    assert!(with_class(&doc, "text", "x-tick").len() >= 4);
    assert_eq!(
        with_class(&doc, "text", "x-caption")[0].text(),
        Some("key time (Europe/Berlin)")
    );
    assert!(!with_class(&doc, "rect", "attached").is_empty());

    let data_present = svg(&week_chart());
    assert!(!data_present.contains("no data in this period yet"));
}

#[test]
fn an_inverted_period_renders_the_empty_state_instead_of_failing() {
    let mut chart = week_chart();
    std::mem::swap(&mut chart.since, &mut chart.until);
    let markup = svg(&chart);
    let doc = parse(&markup);
    assert_eq!(with_class(&doc, "text", "no-data").len(), 1);
    assert!(with_class(&doc, "rect", "attached").is_empty());
    assert!(!markup.contains("NaN"));
    assert!(geometry(&doc).iter().all(|(_, value)| value.is_finite()));
}

/// Every number the renderer writes into geometry, with its attribute name.
fn geometry(doc: &roxmltree::Document) -> Vec<(String, f64)> {
    let mut values = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        if node.tag_name().name() == "svg" || node.tag_name().name() == "pattern" {
            continue;
        }
        for attribute in node.attributes() {
            let name = attribute.name();
            if [
                "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height",
            ]
            .contains(&name)
            {
                values.push((name.to_owned(), attribute.value().parse::<f64>().unwrap()));
            }
            if name == "d" {
                for (x, y) in subpaths(attribute.value()).into_iter().flatten() {
                    values.push(("x".to_owned(), x));
                    values.push(("y".to_owned(), y));
                }
            }
        }
    }
    values
}

#[test]
fn garbage_values_and_stray_points_never_push_geometry_outside_the_image() {
    let mut chart = week_chart();
    // The fixture has no buckets during its outage, 10:00 to 16:00 on day 3.
    let outage = utc("2026-11-25T10:00:00Z");
    chart.actual.extend([
        Point {
            start: outage,
            value: f64::NAN,
        },
        Point {
            start: outage + HOUR,
            value: -500.0,
        },
        Point {
            start: outage + 2 * HOUR,
            value: f64::INFINITY,
        },
        Point {
            start: outage + 4 * HOUR,
            value: f64::NEG_INFINITY,
        },
        Point {
            start: chart.since - 10 * DAY,
            value: 1e9,
        },
        Point {
            start: chart.until + 10 * DAY,
            value: 1e9,
        },
        Point {
            start: chart.since + 30 * HOUR,
            value: 2.5e6,
        },
    ]);
    chart.forecast.extend([
        ForecastStep {
            start: chart.until - HOUR,
            end: chart.until + 5 * DAY,
            point: 800.0,
            lower: f64::NAN,
            upper: 1e7,
        },
        ForecastStep {
            start: chart.until + DAY,
            end: chart.until + 2 * DAY,
            point: 1e12,
            lower: 0.0,
            upper: 1e12,
        },
        ForecastStep {
            start: chart.since - DAY,
            end: chart.since + HOUR,
            point: -3.0,
            lower: 50.0,
            upper: -10.0,
        },
    ]);
    chart.partitions.push(Band {
        start: i64::MIN,
        end: i64::MAX,
        state: BandState::Default,
        label: String::new(),
    });
    chart.markers.push(Marker {
        at: chart.until,
        kind: MarkerKind::Alert(Severity::Info),
        label: "edge".to_owned(),
    });
    chart.now = Some(chart.until);

    let markup = svg(&chart);
    assert!(!markup.contains("NaN"), "non-finite number leaked");
    let doc = parse(&markup);
    for (name, value) in geometry(&doc) {
        assert!(value.is_finite(), "{name}={value}");
        let limit = if name.starts_with('y') || name == "cy" || name == "height" {
            460.0
        } else {
            1000.0
        };
        assert!(
            (0.0..=limit).contains(&value),
            "{name}={value} outside the image"
        );
        let tenths = value * 10.0;
        assert!(
            (tenths - tenths.round()).abs() < 1e-6,
            "{name}={value} has more than one decimal"
        );
    }
    let (left, top, right, bottom) = plot_area(&doc);
    for id in ["actual", "forecast", "forecast-band"] {
        let d = by_id(&doc, id).unwrap().attribute("d").unwrap();
        for (x, y) in subpaths(d).into_iter().flatten() {
            assert!(
                x >= left && x <= right && y >= top && y <= bottom,
                "#{id} leaves the plot at {x},{y}"
            );
        }
    }
}

#[test]
fn labels_follow_the_zone_across_the_dst_change() {
    let chart = Chart {
        zone: "Europe/Berlin".to_owned(),
        since: utc("2026-03-28T11:00:00Z"),
        until: utc("2026-03-29T22:00:00Z"),
        actual: (0..35)
            .map(|h| Point {
                start: utc("2026-03-28T11:00:00Z") + h * HOUR,
                value: 100.0,
            })
            .collect(),
        forecast: Vec::new(),
        partitions: Vec::new(),
        markers: Vec::new(),
        now: None,
        ..week_chart()
    };
    let markup = svg(&chart);
    let doc = parse(&markup);
    let (left, _, right, _) = plot_area(&doc);
    let x_of = |at: i64| {
        left + (at - chart.since) as f64 / (chart.until - chart.since) as f64 * (right - left)
    };
    let labels = with_class(&doc, "text", "x-tick");
    let tick = |label: &str| {
        labels
            .iter()
            .find(|t| t.text() == Some(label))
            .unwrap_or_else(|| panic!("no tick {label}: {labels:?}"))
            .to_owned()
    };
    let midnight = tick("Sun 29 Mar");
    assert_eq!(
        number(midnight, "data-at") as i64,
        utc("2026-03-28T23:00:00Z")
    );
    assert!((number(midnight, "x") - x_of(utc("2026-03-28T23:00:00Z"))).abs() <= 0.1);
    // Only five real hours after local midnight: the clocks jumped at 02:00.
    let six = labels
        .iter()
        .find(|t| {
            t.text() == Some("06:00") && number(**t, "data-at") as i64 > utc("2026-03-28T23:00:00Z")
        })
        .unwrap();
    assert_eq!(number(*six, "data-at") as i64, utc("2026-03-29T04:00:00Z"));
    assert!(tick("Mon 30 Mar").attribute("data-at").is_some());
}

#[test]
fn an_unknown_zone_is_drawn_in_utc_and_the_caption_admits_it() {
    let chart = Chart {
        zone: "Europe/Atlantis".to_owned(),
        x_caption: "key time".to_owned(),
        ..week_chart()
    };
    let markup = svg(&chart);
    let doc = parse(&markup);
    let caption = with_class(&doc, "text", "x-caption")[0]
        .text()
        .unwrap()
        .to_owned();
    assert!(caption.starts_with("key time"), "{caption}");
    assert!(
        caption.contains("UTC") && caption.contains("Europe/Atlantis"),
        "{caption}"
    );
    let labels = with_class(&doc, "text", "x-tick");
    let monday = labels
        .iter()
        .find(|t| t.text() == Some("Mon 23 Nov"))
        .unwrap();
    assert_eq!(
        number(*monday, "data-at") as i64,
        utc("2026-11-23T00:00:00Z")
    );
}

/// Reads "0", "500", "1.5k", "2M" back into numbers.
fn tick_value(text: &str) -> f64 {
    let (digits, scale) = match text.chars().last() {
        Some('k') => (&text[..text.len() - 1], 1e3),
        Some('M') => (&text[..text.len() - 1], 1e6),
        Some('G') => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    digits.parse::<f64>().unwrap() * scale
}

#[test]
fn value_ticks_are_round_evenly_spaced_and_reach_above_the_data() {
    let mut outlier = week_chart();
    outlier.actual[40].value = 1_234_567.0;
    let cases = [(week_chart(), "week"), (outlier, "outlier")];
    for (chart, name) in cases {
        let data_max = chart
            .actual
            .iter()
            .map(|p| p.value)
            .chain(chart.forecast.iter().map(|f| f.upper))
            .fold(0.0, f64::max);
        let markup = svg(&chart);
        let doc = parse(&markup);
        let ticks: Vec<f64> = with_class(&doc, "text", "y-tick")
            .iter()
            .map(|t| tick_value(t.text().unwrap()))
            .collect();
        assert!((4..=6).contains(&ticks.len()), "{name}: {ticks:?}");
        assert_eq!(ticks[0], 0.0);
        let step = ticks[1];
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-9),
            "{name}: step {step}"
        );
        for pair in ticks.windows(2) {
            assert!(
                (pair[1] - pair[0] - step).abs() < step * 1e-9,
                "{name}: {ticks:?}"
            );
        }
        assert!(
            *ticks.last().unwrap() >= data_max,
            "{name}: {ticks:?} below {data_max}"
        );
        // The top tick is not absurdly far above the data either.
        assert!(
            *ticks.last().unwrap() < data_max * 2.5,
            "{name}: {ticks:?} for {data_max}"
        );
    }
}

fn moves(d: &str) -> usize {
    d.matches('M').count()
}

#[test]
fn missing_buckets_break_the_actual_line_instead_of_bridging_them() {
    let week = svg(&week_chart());
    let doc = parse(&week);
    let d = by_id(&doc, "actual").unwrap().attribute("d").unwrap();
    assert_eq!(moves(d), 2, "the six-hour outage splits the line: {d}");

    let mut one_missing = week_chart();
    one_missing.actual = (0..48)
        .filter(|h| *h != 20)
        .map(|h| Point {
            start: one_missing.since + h * HOUR,
            value: 10.0,
        })
        .rev()
        .collect();
    let markup = svg(&one_missing);
    let doc = parse(&markup);
    assert_eq!(
        moves(by_id(&doc, "actual").unwrap().attribute("d").unwrap()),
        2
    );

    let mut complete = one_missing.clone();
    complete.actual = (0..48)
        .map(|h| Point {
            start: complete.since + h * HOUR,
            value: 10.0,
        })
        .collect();
    let markup = svg(&complete);
    let doc = parse(&markup);
    assert_eq!(
        moves(by_id(&doc, "actual").unwrap().attribute("d").unwrap()),
        1
    );
}

#[test]
fn daily_buckets_of_local_days_stay_joined_across_a_23_hour_day() {
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let starts: Vec<i64> = (20..=31)
        .map(|day| {
            jiff::civil::date(2026, 3, day)
                .to_zoned(berlin.clone())
                .unwrap()
                .timestamp()
                .as_second()
        })
        .collect();
    let chart = Chart {
        step_seconds: DAY,
        y_caption: "rows per day".to_owned(),
        since: starts[0],
        until: *starts.last().unwrap(),
        actual: starts
            .iter()
            .map(|start| Point {
                start: *start,
                value: 14_000.0,
            })
            .collect(),
        forecast: Vec::new(),
        partitions: Vec::new(),
        markers: Vec::new(),
        now: None,
        ..week_chart()
    };
    let markup = svg(&chart);
    let doc = parse(&markup);
    assert_eq!(
        moves(by_id(&doc, "actual").unwrap().attribute("d").unwrap()),
        1
    );
}

#[test]
fn markers_carry_their_kind_and_label_and_stay_off_when_outside_the_period() {
    let markup = svg(&week_chart());
    let doc = parse(&markup);
    let markers: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("g")
                && n.attribute("class")
                    .is_some_and(|c| c.starts_with("marker "))
        })
        .filter(|n| n.parent().and_then(|p| p.attribute("class")) != Some("legend"))
        .collect();
    let classes: Vec<&str> = markers
        .iter()
        .map(|m| m.attribute("class").unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "marker migration",
            "marker alert warning",
            "marker alert critical"
        ]
    );
    let tooltip = markers[2]
        .children()
        .find(|n| n.has_tag_name("title"))
        .unwrap();
    assert_eq!(tooltip.text(), Some("rows landed in DEFAULT"));

    let mut later = week_chart();
    later.now = Some(later.until + DAY);
    let markup = svg(&later);
    assert!(with_class(&parse(&markup), "line", "now").is_empty());
    assert_eq!(
        with_class(&parse(&svg(&week_chart())), "line", "now").len(),
        2,
        "line and legend swatch"
    );
}

#[test]
fn partitions_reaching_past_the_axis_are_clipped_to_it() {
    let mut chart = week_chart();
    chart.partitions = vec![Band {
        start: chart.since - 5 * DAY,
        end: chart.until + 5 * DAY,
        state: BandState::Attached,
        label: "events_all · 1 000 000 rows".to_owned(),
    }];
    let markup = svg(&chart);
    let doc = parse(&markup);
    let (left, _, right, _) = plot_area(&doc);
    let rect = with_class(&doc, "rect", "attached")[0];
    assert_eq!(number(rect, "x"), left);
    assert_eq!(number(rect, "x") + number(rect, "width"), right);
    assert!(
        with_class(&doc, "line", "boundary").is_empty(),
        "no boundary inside the axis"
    );
}

#[test]
fn time_labels_never_overlap_and_stay_readable_for_any_span() {
    let since = utc("2026-11-30T05:30:00Z");
    for span in [
        HOUR,
        5 * HOUR,
        DAY,
        3 * DAY,
        9 * DAY,
        30 * DAY,
        100 * DAY,
        3 * 365 * DAY,
        40 * 365 * DAY,
    ] {
        for zone in ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/Santiago"] {
            let chart = Chart {
                zone: zone.to_owned(),
                since,
                until: since + span,
                ..empty_chart()
            };
            let markup = svg(&chart);
            let doc = parse(&markup);
            let labels = with_class(&doc, "text", "x-tick");
            assert!(
                (1..=11).contains(&labels.len()),
                "{zone} {span}: {} labels",
                labels.len()
            );
            let mut previous_right = f64::NEG_INFINITY;
            for label in labels {
                let half = label.text().unwrap().chars().count() as f64 * 6.5 / 2.0;
                let x = number(label, "x");
                assert!(
                    x - half >= previous_right,
                    "{zone} {span}: overlapping labels"
                );
                assert!(
                    x - half >= 0.0 && x + half <= 1000.0,
                    "{zone} {span}: label cut off"
                );
                previous_right = x + half;
            }
        }
    }
}

#[test]
fn the_same_input_renders_the_same_bytes() {
    let chart = week_chart();
    assert_eq!(svg(&chart), svg(&chart.clone()));
    assert_eq!(svg(&empty_chart()), svg(&empty_chart()));
}

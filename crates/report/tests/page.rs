//! The HTML page around the chart.

mod common;

use common::*;
use report::{html, Summary};

#[test]
fn page_parses_and_holds_title_facts_chart_and_tables() {
    let markup = html(&week_chart(), &week_summary());
    assert!(markup.starts_with("<!DOCTYPE html>"));
    let doc = parse_page(&markup);
    let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(title.text(), Some("pg_partition_predict — public.events"));
    let charset = doc.descendants().find(|n| n.has_tag_name("meta")).unwrap();
    assert_eq!(charset.attribute("charset"), Some("utf-8"));

    let svg = doc
        .descendants()
        .find(|n| n.tag_name().name() == "svg")
        .expect("inline svg");
    assert_eq!(
        svg.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(by_id(&doc, "actual").is_some() && by_id(&doc, "forecast-band").is_some());

    let facts: Vec<(String, String)> = with_class(&doc, "div", "fact")
        .iter()
        .map(|fact| {
            let text = |tag: &str| {
                fact.children()
                    .find(|n| n.has_tag_name(tag))
                    .unwrap()
                    .text()
                    .unwrap()
                    .to_owned()
            };
            (text("dt"), text("dd"))
        })
        .collect();
    assert_eq!(facts, week_summary().facts);

    let rows = |id: &str| {
        by_id(&doc, id)
            .unwrap_or_else(|| panic!("no #{id}"))
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .count()
    };
    assert_eq!(rows("next-partitions"), 3, "header and two partitions");
    assert_eq!(rows("open-alerts"), 2, "header and one alert");
    let severity = with_class(&doc, "td", "severity")[0];
    assert_eq!(severity.attribute("class"), Some("severity critical"));
    let footer = doc
        .descendants()
        .find(|n| n.has_tag_name("footer"))
        .unwrap();
    assert!(footer.text().unwrap().contains("2026-11-30 00:05 UTC"));
}

#[test]
fn page_is_self_contained() {
    let markup = html(&week_chart(), &week_summary());
    for reference in [
        "http://",
        "https://",
        "<script",
        "<link",
        "@import",
        "@font-face",
        "src=",
    ] {
        let without_namespaces = markup
            .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
            .replace("xmlns=\"http://www.w3.org/1999/xhtml\"", "");
        assert!(!without_namespaces.contains(reference), "found {reference}");
    }
}

#[test]
fn empty_tables_say_none_and_an_empty_summary_still_renders() {
    let markup = html(&empty_chart(), &Summary::default());
    let doc = parse_page(&markup);
    let nones = with_class(&doc, "p", "none");
    assert_eq!(nones.len(), 2);
    assert!(nones.iter().all(|p| p.text() == Some("none")));
    assert!(doc.descendants().all(|n| !n.has_tag_name("table")));
    assert!(with_class(&doc, "div", "fact").is_empty());
    assert_eq!(with_class(&doc, "text", "no-data").len(), 1);
}

#[test]
fn every_summary_string_is_escaped() {
    let hostile = r#"<b onclick="x">&amp;'</b>"#;
    let mut chart = week_chart();
    chart.table = hostile.to_owned();
    let summary = Summary {
        facts: vec![(hostile.to_owned(), hostile.to_owned())],
        next_partitions: vec![std::array::from_fn(|_| hostile.to_owned())],
        open_alerts: vec![std::array::from_fn(|_| hostile.to_owned())],
        generated_at: hostile.to_owned(),
    };
    let markup = html(&chart, &summary);
    assert!(!markup.contains(hostile));
    let doc = parse_page(&markup);
    assert!(
        doc.descendants().all(|n| !n.has_tag_name("b")),
        "markup injected"
    );
    let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(
        title.text(),
        Some(format!("pg_partition_predict — {hostile}").as_str())
    );
    let cells = doc
        .descendants()
        .filter(|n| n.has_tag_name("td") && n.text() == Some(hostile))
        .count();
    assert_eq!(cells, 7);
}

#[test]
fn the_same_input_renders_the_same_page() {
    assert_eq!(
        html(&week_chart(), &week_summary()),
        html(&week_chart(), &week_summary())
    );
}

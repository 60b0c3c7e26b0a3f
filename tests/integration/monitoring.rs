//! What a DBA watches: alerts as conditions (raised once, resolved when
//! they end, NOTIFY on raise and resolve only), the runway, the metrics
//! postgres_exporter scrapes, and the report as a browser shows it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::Value;

use crate::cluster::{default_rows_next, flush_stats, scalar_i64, wait_for, Cluster};
use crate::lifecycle::managed_table_with_shadows;

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

/// Every notification on the alert channel that arrived so far.
fn notifications(listener: &mut Client) -> Vec<Value> {
    // A round trip delivers what is pending.
    listener.batch_execute("SELECT 1").unwrap();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(Duration::from_millis(300));
    let mut payloads = Vec::new();
    while let Ok(Some(n)) = iter.next() {
        payloads.push(serde_json::from_str(n.payload()).expect("JSON payload"));
    }
    payloads
}

/// `managed_tables.runway` of `ev`, in seconds.
fn runway_seconds(client: &mut Client) -> f64 {
    client
        .query_one(
            "SELECT extract(epoch FROM runway)::float8 FROM partition_predict.managed_tables
              WHERE parent = 'ev'::regclass",
            &[],
        )
        .unwrap()
        .get(0)
}

fn open_alerts(client: &mut Client, kind: &str) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT subject, occurrences FROM partition_predict.alerts
              WHERE parent = 'ev'::regclass AND kind = $1 ORDER BY subject",
            &[&kind],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `ev` (a week of minute data up to 2026-11-07, shadows for the next
/// days) filled up to the end of its attached partition, and rows in
/// DEFAULT in the range of its first shadow: that shadow cannot be
/// attached, and the attached partitions are about to run out.
fn ev_blocked_by_rows_in_default(client: &mut Client) -> String {
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    managed_table_with_shadows(client, "ev");
    let first_shadow: String = client
        .query_one(
            "SELECT range_start FROM partition_predict.partitions
              WHERE parent = 'ev'::regclass AND state = 'shadow' ORDER BY range_start LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(first_shadow, "2026-11-08 00:00:00+00");
    client
        .batch_execute(
            "INSERT INTO ev (ts) SELECT '2026-11-07'::timestamptz + g * interval '1 minute'
               FROM generate_series(1, 1439) g;
             INSERT INTO ev (ts) SELECT '2026-11-08'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 9) g;",
        )
        .unwrap();
    flush_stats(client);
    first_shadow
}

#[test]
fn one_condition_is_one_alert_from_raise_to_resolve() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    let mut listener = cluster.connect("postgres");
    listener
        .batch_execute("LISTEN partition_predict_alerts")
        .unwrap();
    ev_blocked_by_rows_in_default(&mut client);

    for _ in 0..3 {
        client
            .batch_execute("SELECT partition_predict.run_cycle('ev')")
            .unwrap();
    }
    // No worker serves this database: the fourth cycle says the rows stay.
    let next = default_rows_next(&mut client, "ev");
    assert!(next.starts_with("left in DEFAULT"), "{next}");
    let blocked = "[2026-11-08 00:00:00+00, 2026-11-10 00:00:00+00)";
    let rows_in_default = open_alerts(&mut client, "rows_in_default");
    assert_eq!(rows_in_default.len(), 1, "{rows_in_default:?}");
    assert!(
        rows_in_default[0]
            .0
            .starts_with("[2026-11-08 00:00:00+00, "),
        "{rows_in_default:?} (expected a subject like {blocked})"
    );
    assert_eq!(rows_in_default[0].1, 4, "seen by four cycles, one row");
    // The attached partitions end a minute after the frontier.
    let runway = runway_seconds(&mut client);
    assert!((0.0..=60.0).contains(&runway), "runway {runway} s");
    assert_eq!(open_alerts(&mut client, "runway").len(), 1);
    let severity: String = client
        .query_one(
            "SELECT severity::text FROM partition_predict.alerts WHERE parent = 'ev'::regclass AND kind = 'runway'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(severity, "critical");

    let raised = notifications(&mut listener);
    let states: Vec<(String, String)> = raised
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The runway was short from the first cycle: a warning in the table's
    // first three cycles, critical (and said again) from the fourth.
    assert_eq!(
        states,
        vec![
            ("rows_in_default".to_string(), "raised".to_string()),
            ("runway".to_string(), "raised".to_string()),
            ("runway".to_string(), "escalated".to_string())
        ],
        "four cycles, two conditions: {raised:?}"
    );
    assert_eq!(raised[1]["severity"], "warning");
    assert_eq!(raised[2]["severity"], "critical");
    assert_eq!(raised[2]["id"], raised[1]["id"], "one alert");
    assert_eq!(raised[0]["parent"], "public.ev");
    assert_eq!(raised[0]["severity"], "warning");
    // The payload names the alert; the rest is read by id, with the
    // reader's rights.
    assert_eq!(raised[0].get("details"), None);
    let rows: i64 = client
        .query_one(
            "SELECT (details->>'rows')::int8 FROM partition_predict.alert_history WHERE id = $1",
            &[&raised[0]["id"].as_i64().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 10);

    // The rows move out of DEFAULT: one migration, one event; the next
    // cycle ends both conditions.
    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("SELECT partition_predict.run_cycle('ev')")
        .unwrap();
    assert_eq!(open_alerts(&mut client, "rows_in_default"), vec![]);
    assert_eq!(open_alerts(&mut client, "runway"), vec![]);
    let runway = runway_seconds(&mut client);
    assert!(
        runway >= 43_200.0,
        "runway {runway} s after the shadow was attached"
    );
    let after: Vec<(String, String, String)> = notifications(&mut listener)
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
                n["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        after,
        vec![
            ("migration".into(), "event".into(), "info".into()),
            (
                "rows_in_default".into(),
                "resolved".into(),
                "warning".into()
            ),
            ("runway".into(), "resolved".into(), "critical".into()),
        ]
    );
    let history = client
        .query(
            "SELECT kind, state, occurrences, resolved_at IS NOT NULL FROM partition_predict.alert_history
              WHERE parent = 'ev'::regclass ORDER BY id",
            &[],
        )
        .unwrap();
    let history: Vec<(String, String, i64, bool)> = history
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        history,
        vec![
            ("rows_in_default".into(), "resolved".into(), 4, true),
            ("runway".into(), "resolved".into(), 4, true),
            ("migration".into(), "event".into(), 1, true),
        ]
    );

    // The same condition later is a new alert.
    client
        .batch_execute("SELECT partition_predict.run_cycle('ev')")
        .unwrap();
    assert_eq!(notifications(&mut listener), Vec::<Value>::new());
}

#[test]
fn a_failing_cycle_is_one_open_alert_until_a_cycle_succeeds() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE ROLE team;
             GRANT CREATE ON SCHEMA public TO team;
             CREATE TABLE ev (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (1000);
             ALTER TABLE ev OWNER TO team;
             ALTER TABLE ev_1 OWNER TO team;
             SELECT partition_predict.manage('ev');
             INSERT INTO ev VALUES (1);
             -- The owner can no longer read its partition: its cycles fail.
             REVOKE ALL ON ev_1 FROM team;
             INSERT INTO ev VALUES (2);",
        )
        .unwrap();
    flush_stats(&mut client);
    for _ in 0..3 {
        client
            .batch_execute("SELECT partition_predict.run_cycle()")
            .unwrap();
    }
    let failures = scalar_i64(
        &mut client,
        "SELECT count(*) FROM partition_predict.alert_history WHERE parent = 'ev'::regclass AND kind = 'failure'",
    );
    assert_eq!(failures, 1, "three failed cycles, one alert");
    assert_eq!(
        open_alerts(&mut client, "failure"),
        vec![("cycle".to_string(), 3)]
    );

    client.batch_execute("GRANT ALL ON ev_1 TO team").unwrap();
    client
        .batch_execute("SELECT partition_predict.run_cycle()")
        .unwrap();
    assert_eq!(open_alerts(&mut client, "failure"), vec![]);
    let resolution: String = client
        .query_one(
            "SELECT details->>'resolution' FROM partition_predict.alert_history
              WHERE parent = 'ev'::regclass AND kind = 'failure'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(resolution, "a later cycle succeeded");
}

/// The metrics section and columns of `scripts/postgres_exporter_queries.yaml`:
/// `(section, query, [(column, usage)])`.
fn exporter_queries() -> Vec<(String, String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres_exporter_queries.yaml"),
    )
    .unwrap();
    let mut sections: Vec<(String, String, Vec<(String, String)>)> = Vec::new();
    let mut in_query = false;
    let mut column: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            sections.push((
                trimmed.trim_end_matches(':').to_string(),
                String::new(),
                Vec::new(),
            ));
            in_query = false;
        } else if trimmed == "query: |" {
            in_query = true;
        } else if in_query && indent >= 4 {
            let section = sections.last_mut().unwrap();
            section.1.push_str(trimmed);
            section.1.push('\n');
        } else {
            in_query = false;
            if let Some(name) = trimmed.strip_prefix("- ") {
                column = Some(name.trim_end_matches(':').to_string());
            } else if let Some(usage) = trimmed.strip_prefix("usage: ") {
                let section = sections.last_mut().unwrap();
                section
                    .2
                    .push((column.take().unwrap(), usage.trim_matches('"').to_string()));
            }
        }
    }
    sections
}

#[test]
fn the_exporter_queries_return_the_metrics_they_declare() {
    // A worker that cycles when it starts, then only on request. It must
    // not move the rows out of DEFAULT: a worker cycle that came after the
    // test's would see them collected and start a migration.
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
            "pg_partition_predict.routing = off",
        ],
    );
    let mut client = cluster.connect("postgres");
    ev_blocked_by_rows_in_default(&mut client);
    // The worker started before the extension existed: a reload wakes it.
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("the worker", Duration::from_secs(20), || {
        (scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.worker_status WHERE state <> 'stopped'",
        ) > 0)
            .then_some(())
    });
    // Past the table's first cycles, in which a short runway is a warning.
    client
        .batch_execute(
            "SELECT partition_predict.run_cycle('ev') FROM generate_series(1, 4);
             CREATE ROLE monitor LOGIN IN ROLE pg_monitor;",
        )
        .unwrap();
    // postgres_exporter runs as a pg_monitor member, not as the table's owner.
    let mut monitor = cluster.connect_as("postgres", "monitor");
    let sections = exporter_queries();
    assert_eq!(
        sections.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec!["pg_partition_predict_table", "pg_partition_predict_worker"]
    );
    for (section, query, metrics) in &sections {
        let rows = monitor
            .query(query.as_str(), &[])
            .unwrap_or_else(|e| panic!("{section}: {e}"));
        assert!(!rows.is_empty(), "{section} returned no row");
        let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
        let declared: Vec<&str> = metrics.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, declared, "{section}");
        for (i, (name, usage)) in metrics.iter().enumerate() {
            let type_name = rows[0].columns()[i].type_().name().to_string();
            match usage.as_str() {
                "LABEL" => assert_eq!(type_name, "text", "{section}.{name}"),
                "GAUGE" | "COUNTER" => assert!(
                    ["int4", "int8", "float8", "numeric"].contains(&type_name.as_str()),
                    "{section}.{name} is {type_name}"
                ),
                other => panic!("{section}.{name}: usage {other}"),
            }
        }
    }
    let metrics = |monitor: &mut Client| {
        let row = monitor
            .query_one(
                "SELECT rows_in_default, runway_seconds, alerts_critical, alerts_warning
                   FROM partition_predict.metrics WHERE parent = 'ev'",
                &[],
            )
            .unwrap();
        let metrics: (i64, Option<f64>, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        metrics
    };
    // pg_monitor alone sees what the statistics views show; the runway
    // (it gives away the highest key) needs the right to read the rows.
    let (in_default, runway, critical, warning) = metrics(&mut monitor);
    assert_eq!(in_default, 10);
    assert_eq!(runway, None);
    assert_eq!((critical, warning), (1, 1));
    client
        .batch_execute("GRANT SELECT ON ev TO monitor")
        .unwrap();
    let (_, runway, _, _) = metrics(&mut monitor);
    assert!(runway.is_some_and(|r| r <= 60.0), "runway {runway:?}");
    let up = scalar_i64(
        &mut monitor,
        "SELECT count(*) FROM partition_predict.worker_status WHERE state <> 'stopped'",
    );
    assert_eq!(up, 1);
}

/// Pixels of a PNG as RGBA (8-bit RGB or RGBA, not interlaced: what
/// chromium writes).
fn png_pixels(png: &[u8]) -> (usize, usize, Vec<[u8; 4]>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut data = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let body = &png[at + 8..at + 8 + length];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
                assert_eq!(body[12], 0, "interlaced");
            }
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        at += 12 + length;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&data).expect("zlib");
    let stride = width * channels;
    let mut previous = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let mut current = line[1..].to_vec();
        for i in 0..stride {
            let a = if i >= channels {
                current[i - channels]
            } else {
                0
            } as i16;
            let b = previous[i] as i16;
            let c = if i >= channels {
                previous[i - channels]
            } else {
                0
            } as i16;
            let add = match line[0] {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("filter {other}"),
            };
            current[i] = current[i].wrapping_add(add as u8);
        }
        for px in current.chunks(channels) {
            pixels.push([px[0], px[1], px[2], if channels == 4 { px[3] } else { 255 }]);
        }
        previous = current;
    }
    (width, height, pixels)
}

fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| panic!("no chromium: scripts/test installs Debian's chromium package"))
        .to_string()
}

#[test]
fn the_report_shows_arrivals_forecast_and_partitions_in_a_browser() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    ev_blocked_by_rows_in_default(&mut client);
    for _ in 0..2 {
        client
            .batch_execute("SELECT partition_predict.run_cycle('ev')")
            .unwrap();
    }
    let svg: String = client
        .query_one("SELECT partition_predict.report('ev')", &[])
        .unwrap()
        .get(0);
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    for id in ["actual", "forecast", "forecast-band"] {
        let node = doc
            .descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no #{id} in the SVG"));
        let path = node.attribute("d").unwrap_or_default();
        assert!(path.len() > 20, "#{id} is nearly empty: {path}");
    }
    // The partition strip, not the legend's samples of it.
    let strip = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("partitions"))
        .expect("a partition strip");
    let partitions = |state: &str| {
        strip
            .descendants()
            .filter(|n| {
                n.tag_name().name() == "rect"
                    && n.attribute("class").is_some_and(|c| {
                        c.split(' ').any(|w| w == "partition") && c.contains(state)
                    })
            })
            .count()
    };
    assert!(partitions("attached") >= 1, "no attached partition drawn");
    assert!(partitions("shadow") >= 1, "no shadow drawn");
    assert!(
        svg.contains("rows per hour"),
        "the y axis says what it counts"
    );
    assert!(
        svg.contains("rows_in_default"),
        "the open alert is a marker"
    );

    let html: String = client
        .query_one("SELECT partition_predict.report_html('ev')", &[])
        .unwrap()
        .get(0);
    assert!(html.contains("rows in DEFAULT"));
    assert!(html.contains("<svg"));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("ev.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.path().join("ev.png");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,900",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", page.display()),
        ])
        .env("HOME", dir.path())
        .output()
        .expect("chromium runs");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (width, height, pixels) = png_pixels(&std::fs::read(&shot).unwrap());
    assert_eq!((width, height), (1200, 900));
    let inked = pixels
        .iter()
        .filter(|p| p[0] < 230 || p[1] < 230 || p[2] < 230)
        .count();
    let share = inked as f64 / pixels.len() as f64;
    assert!(
        (0.02..0.8).contains(&share),
        "{:.1}% of the page is drawn on",
        share * 100.0
    );
    // Colour, not just text: the chart's series and partition shading.
    let colourful = pixels
        .iter()
        .filter(|p| {
            let (max, min) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
            max - min > 40
        })
        .count();
    assert!(
        colourful > 2_000,
        "only {colourful} coloured pixels: the chart did not render"
    );
}

#[test]
fn scripts_report_writes_a_page_per_managed_table() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    ev_blocked_by_rows_in_default(&mut client);
    client
        .batch_execute("SELECT partition_predict.run_cycle('ev')")
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/report"))
        .args([
            "--out",
            out.path().to_str().unwrap(),
            "--dbname",
            "postgres",
        ])
        .env("PGHOST", cluster.socket_dir())
        .env(
            "PGPORT",
            cluster.config("postgres").get_ports()[0].to_string(),
        )
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let page = std::fs::read_to_string(out.path().join("public.ev.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("public.ev"));
    let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    assert!(index.contains("public.ev.html"), "{index}");
}

#[test]
fn the_report_refuses_what_it_cannot_draw() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    ev_blocked_by_rows_in_default(&mut client);
    client
        .batch_execute("CREATE TABLE plain (k int) PARTITION BY RANGE (k)")
        .unwrap();
    for (sql, expected) in [
        (
            "SELECT partition_predict.report('ev', '2026-11-05', '2026-11-05')",
            "22023",
        ),
        (
            "SELECT partition_predict.report('ev', '2026-11-05', '2026-11-01')",
            "22023",
        ),
        (
            "SELECT partition_predict.report('ev', '2000-01-01', '2026-11-01')",
            "22023",
        ),
        (
            "SELECT partition_predict.report('ev', '-infinity', '2026-11-01')",
            "22023",
        ),
        ("SELECT partition_predict.report_html(NULL)", "22004"),
        ("SELECT partition_predict.report('plain')", "42704"),
    ] {
        let code = match client.query_one(sql, &[]) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_default(),
        };
        assert_eq!(code, expected, "{sql}");
    }
    // Tables managed a moment ago, with no rows, forecast or frontier yet:
    // an empty picture, not an error.
    client
        .batch_execute(
            "CREATE TABLE fresh (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             SELECT partition_predict.manage('fresh');
             CREATE TABLE ids (id bigint NOT NULL) PARTITION BY RANGE (id);
             SELECT partition_predict.manage('ids');",
        )
        .unwrap();
    for table in ["fresh", "ids"] {
        let html: String = client
            .query_one(
                &format!("SELECT partition_predict.report_html('{table}')"),
                &[],
            )
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .get(0);
        assert!(html.contains("no data in this period yet"), "{table}");
    }
    // A period of its own choosing: a day of the history, nothing after.
    let svg: String = client
        .query_one(
            "SELECT partition_predict.report('ev', '2026-11-03', '2026-11-04')",
            &[],
        )
        .unwrap()
        .get(0);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let title = doc
        .descendants()
        .find(|n| n.tag_name().name() == "title")
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string();
    assert!(
        title.contains("2026-11-03") && title.contains("2026-11-04"),
        "{title}"
    );
}

#[test]
fn a_worker_s_first_cycles_raise_no_critical_alert_it_then_clears() {
    // Onboarded with rows in DEFAULT in the next range, its partitions
    // about to run out: the worker's first cycle moves the rows and
    // attaches that range, which no one should be paged for.
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 2",
            "pg_partition_predict.enabled = off",
        ],
    );
    let mut client = cluster.connect("postgres");
    let mut listener = cluster.connect("postgres");
    listener
        .batch_execute("LISTEN partition_predict_alerts")
        .unwrap();
    ev_blocked_by_rows_in_default(&mut client);
    client
        .batch_execute("ALTER SYSTEM SET pg_partition_predict.enabled = on")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("three worker cycles", Duration::from_secs(60), || {
        (scalar_i64(
            &mut client,
            "SELECT COALESCE(sum(cycles), 0)::bigint FROM partition_predict.worker_status",
        ) >= 3)
            .then_some(())
    });
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ONLY ev_default"),
        0
    );
    let critical: Vec<(String, String)> = client
        .query(
            "SELECT kind, message FROM partition_predict.alert_history WHERE severity = 'critical'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(critical, vec![], "critical alerts");
    let paged: Vec<Value> = notifications(&mut listener)
        .into_iter()
        .filter(|n| n["severity"] == "critical")
        .collect();
    assert_eq!(paged, Vec::<Value>::new());
}

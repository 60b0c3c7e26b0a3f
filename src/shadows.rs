//! Cycle steps 3-4 and activation: shadow partitions planned from the
//! forecast, prepared as standalone tables, attached ahead of the data.
//!
//! PostgreSQL 15 locks (SPEC §4): `CREATE TABLE … PARTITION OF` takes ACCESS
//! EXCLUSIVE on the parent, so a shadow is created standalone and attached.
//! ATTACH takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on
//! the shadow and on DEFAULT (which it scans); it skips scanning the shadow
//! because a validated CHECK equal to the bound (and NOT NULL on the key)
//! proves every row fits. Every lock request goes through
//! `ddl::run_with_lock_retry`, so a long-running query never makes other
//! sessions queue behind the extension for longer than `lock_timeout`.

use partition_core::planner::{self, Demand, PlanInput, PlannedRange};
use partition_core::{Bound, KeyType, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::json;

use crate::alerts::{self, AlertKind};
use crate::catalog::{self, PartitionedTable, QualifiedName};
use crate::ddl;
use crate::error::{PredictError, Result};

/// Name of the CHECK constraint that lets ATTACH skip its scan.
const BOUND_CONSTRAINT: &str = "partition_predict_bound";
/// At most this many shadows are created in one cycle, to bound its cost.
const MAX_CREATED_PER_CYCLE: usize = 48;

#[derive(Clone, Debug, Default)]
pub struct ShadowSummary {
    pub created: i64,
    pub dropped: i64,
    pub activated: i64,
}

struct Shadow {
    /// The table's name as SQL needs it now, if it still exists as a
    /// standalone table (someone may have dropped or attached it by hand).
    current_name: Option<String>,
    name: String,
    oid: pg_sys::Oid,
    from: i64,
    to: i64,
    /// Rows are being moved into it out of DEFAULT: only the migration
    /// may attach or drop it.
    migrating: bool,
}

pub struct Settings {
    pub target_rows: f64,
    lookahead_seconds: Option<f64>,
    lookahead_keys: Option<i64>,
    pub min_span: Option<i64>,
    pub max_span: Option<i64>,
}

/// Raw key units per second of a span (time keys) or 1 (integer keys).
fn units_per_second(key_type: KeyType) -> f64 {
    match key_type {
        KeyType::Date => 1.0 / 86_400.0,
        KeyType::Timestamp | KeyType::TimestampTz => 1e6,
        _ => 1.0,
    }
}

pub fn load_settings(table: &PartitionedTable) -> Result<Settings> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT target_rows::float8,
                    CASE WHEN lookahead ~ '^[0-9]+$' THEN NULL
                         ELSE pg_catalog.date_part('epoch', lookahead::pg_catalog.interval) END,
                    CASE WHEN lookahead ~ '^[0-9]+$' THEN lookahead::bigint END,
                    CASE WHEN min_span ~ '^[0-9]+$' THEN min_span::float8
                         ELSE pg_catalog.date_part('epoch', min_span::pg_catalog.interval) END,
                    CASE WHEN max_span ~ '^[0-9]+$' THEN max_span::float8
                         ELSE pg_catalog.date_part('epoch', max_span::pg_catalog.interval) END
               FROM partition_predict.config WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
            None,
            &[table.oid.into()],
        )?;
        let row = rows.first();
        if row.is_empty() {
            return Err(PredictError::NotManaged(table.name.to_string()));
        }
        // Spans of time keys are intervals in seconds; of integer keys, key counts.
        let span = |v: Option<f64>| {
            v.map(|v| {
                if table.key_type.is_temporal() {
                    (v * units_per_second(table.key_type)) as i64
                } else {
                    v as i64
                }
            })
        };
        Ok(Settings {
            target_rows: row.get::<f64>(1)?.unwrap_or(1e6),
            lookahead_seconds: row.get::<f64>(2)?,
            lookahead_keys: row.get::<i64>(3)?,
            min_span: span(row.get::<f64>(4)?),
            max_span: span(row.get::<f64>(5)?),
        })
    })
}

/// Highest key in the table outside DEFAULT (rows in DEFAULT are the
/// migration's business, not a reason to plan from there), or DEFAULT's
/// when nothing else holds rows.
fn frontier(table: &PartitionedTable) -> Result<Option<i64>> {
    Ok(Spi::get_two_with_args::<i64, i64>(
        "SELECT (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> $2),
                (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2)",
        &[
            table.oid.into(),
            table.default_partition.unwrap_or(pg_sys::InvalidOid).into(),
        ],
    )
    .map(|(outside, in_default)| outside.or(in_default))?)
}

/// Expected rows ahead from the newest forecast (the point forecast sizes
/// partitions), and the ratio of its upper bound to it (the upper bound sets
/// how far ahead shadows must reach: running short would put rows in DEFAULT).
fn demand(table: &PartitionedTable) -> Result<(Vec<Demand>, f64)> {
    let rows: Vec<(f64, f64, String, String, f64, f64)> = Spi::connect(|client| {
        let result = client.select(
            "SELECT pg_catalog.date_part('epoch', step_start), pg_catalog.date_part('epoch', step_end),
                    range_start, range_end, upper, predicted_rows
               FROM partition_predict.forecasts WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
              ORDER BY horizon",
            None,
            &[table.oid.into()],
        )?;
        result
            .map(|r| {
                Ok((
                    r.get::<f64>(1)?.unwrap_or(0.0),
                    r.get::<f64>(2)?.unwrap_or(0.0),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<String>(4)?.unwrap_or_default(),
                    r.get::<f64>(5)?.unwrap_or(0.0),
                    r.get::<f64>(6)?.unwrap_or(0.0),
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut demand = Vec::new();
    let (mut upper_total, mut point_total) = (0.0, 0.0);
    for (step_start, step_end, range_start, range_end, upper, point) in rows {
        let (start, end) = if table.key_type.is_temporal() {
            let to_raw = |epoch: f64| {
                ((epoch - partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS as f64)
                    * units_per_second(table.key_type))
                .round() as i64
            };
            (to_raw(step_start), to_raw(step_end))
        } else {
            match (
                table.key_type.parse_value(&range_start),
                table.key_type.parse_value(&range_end),
            ) {
                (Ok(a), Ok(b)) => (a.raw, b.raw),
                _ => continue,
            }
        };
        if end > start {
            demand.push(Demand {
                start,
                end,
                rows: point,
            });
        }
        upper_total += upper;
        point_total += point;
    }
    let upper_over_point = if point_total > 0.0 {
        upper_total / point_total
    } else {
        1.0
    };
    Ok((demand, upper_over_point))
}

/// Shadows of a table not attached yet, in key order.
fn existing_shadows(parent: pg_sys::Oid) -> Result<Vec<Shadow>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT (SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c
                      WHERE c.oid = s.shadow AND NOT c.relispartition),
                    s.shadow_name, s.range_from, s.range_to,
                    EXISTS (SELECT 1 FROM partition_predict.migrations m
                             WHERE m.parent = s.parent AND m.shadow = s.shadow
                               AND m.state IN ('starting', 'moving', 'attaching', 'yielding')),
                    s.shadow
               FROM partition_predict.shadows s
              WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND s.activated_at IS NULL
              ORDER BY s.range_from",
            None,
            &[parent.into()],
        )?;
        rows.map(|r| {
            Ok(Shadow {
                oid: r.get::<pg_sys::Oid>(6)?.unwrap_or(pg_sys::InvalidOid),
                current_name: r.get::<String>(1)?,
                name: r.get::<String>(2)?.unwrap_or_default(),
                from: r.get::<i64>(3)?.unwrap_or(0),
                to: r.get::<i64>(4)?.unwrap_or(0),
                migrating: r.get::<bool>(5)?.unwrap_or(false),
            })
        })
        .collect()
    })
}

/// The key ranges of the table's attached partitions, DEFAULT aside.
pub fn attached_ranges(table: &PartitionedTable) -> Vec<(i64, i64)> {
    table
        .partitions
        .iter()
        .filter_map(|p| raw_bounds(p.bound))
        .collect()
}

fn raw_bounds(bound: PartitionBound) -> Option<(i64, i64)> {
    match bound {
        PartitionBound::Default => None,
        PartitionBound::Range { from, to } => {
            let raw = |b: Bound| match b {
                Bound::MinValue => i64::MIN,
                Bound::MaxValue => i64::MAX,
                Bound::Value(v) => v.raw,
            };
            Some((raw(from), raw(to)))
        }
    }
}

/// Steps 3 and 4 for one table: plan future ranges and make the shadows
/// match the plan. Active partitions are never touched.
pub fn prepare(table: &PartitionedTable) -> Result<ShadowSummary> {
    let mut summary = ShadowSummary::default();
    let (demand, upper_over_point) = demand(table)?;
    let frontier = frontier(table)?;
    let Some(frontier_key) = frontier else {
        return Ok(summary);
    };
    let settings = load_settings(table)?;
    let rows_per_key = if table.key_type.is_temporal() {
        None
    } else {
        Some(rows_per_key(table.oid)?)
    };
    if demand.is_empty() && table.key_type.is_temporal() {
        // Nothing to size partitions by yet: the first forecast comes after two days of history.
        return Ok(summary);
    }
    let mut demand = demand;
    if let (Some(density), true) = (rows_per_key, demand.is_empty()) {
        // Integer keys before the first forecast: the observed rows per key.
        demand.push(Demand {
            start: frontier_key,
            end: frontier_key.saturating_add(1),
            rows: density,
        });
    }
    let horizon_end = horizon_end(table, &settings, frontier_key, &demand, upper_over_point);

    let active = attached_ranges(table);
    // Keep shadows unless the newest forecast expects one to overflow (more
    // than 1.5x the target) and a smaller span is possible: then it is
    // dropped and planned again. A shadow expected to be small is kept:
    // replanning it would often give the same range back (a 6-hour range
    // starting at 18:00 cannot grow into a day), and an extra small
    // partition costs little, while dropping and recreating every cycle
    // would be DDL for nothing.
    let smallest_span = match table.key_type {
        KeyType::Date => 1,
        KeyType::Timestamp | KeyType::TimestampTz => partition_core::calendar::MICROS_PER_HOUR,
        _ => 1,
    }
    .max(settings.min_span.unwrap_or(0));
    let mut kept: Vec<(i64, i64)> = Vec::new();
    for shadow in existing_shadows(table.oid)? {
        let expected = planner_rows(&demand, shadow.from, shadow.to);
        let overlaps_active = active
            .iter()
            .any(|(a, b)| shadow.from < *b && *a < shadow.to);
        let overflowing =
            expected > settings.target_rows * 1.5 && shadow.to - shadow.from > smallest_span;
        let sized_ok = !overflowing;
        if shadow.migrating || (!overlaps_active && sized_ok && shadow.current_name.is_some()) {
            kept.push((shadow.from, shadow.to));
        } else {
            drop_shadow(table, &shadow)?;
            summary.dropped += 1;
        }
    }
    let taken: Vec<(i64, i64)> = active.iter().chain(kept.iter()).copied().collect();
    let plan = planner::plan(&PlanInput {
        key_type: table.key_type,
        taken: &taken,
        frontier: Some(frontier_key),
        demand: &demand,
        target_rows: settings.target_rows,
        min_span: settings.min_span,
        max_span: settings.max_span,
        horizon_end,
    });
    for range in plan.into_iter().take(MAX_CREATED_PER_CYCLE) {
        create_shadow(table, &range, Origin::Forecast)?;
        summary.created += 1;
    }
    Ok(summary)
}

fn planner_rows(demand: &[Demand], from: i64, to: i64) -> f64 {
    demand
        .iter()
        .map(|d| {
            let lo = d.start.max(from);
            let hi = d.end.min(to);
            if lo < hi && d.end > d.start {
                d.rows * (hi - lo) as f64 / (d.end - d.start) as f64
            } else {
                0.0
            }
        })
        .sum()
}

/// How far ahead shadows must reach: the lookahead at the forecast's upper
/// bound, and for integer keys at least two partitions' worth of keys.
fn horizon_end(
    table: &PartitionedTable,
    s: &Settings,
    frontier: i64,
    demand: &[Demand],
    upper_over_point: f64,
) -> i64 {
    if table.key_type.is_temporal() {
        let seconds = s.lookahead_seconds.unwrap_or(7.0 * 86_400.0);
        return frontier.saturating_add((seconds * units_per_second(table.key_type)) as i64);
    }
    let forecast_reach = demand.iter().map(|d| d.end).max().unwrap_or(frontier);
    let advance = ((forecast_reach - frontier) as f64 * upper_over_point.max(1.0)) as i64;
    let density = demand
        .last()
        .map(|d| d.rows / (d.end - d.start).max(1) as f64)
        .unwrap_or(1.0)
        .max(1e-9);
    let two_partitions = (2.0 * s.target_rows / density) as i64;
    let keys = s
        .lookahead_keys
        .unwrap_or(0)
        .max(advance)
        .max(two_partitions);
    let (_, max) = table.key_type.finite_range();
    frontier.saturating_add(keys).min(max)
}

/// Rows per key of an integer key, from recent activity: rows inserted
/// over the same samples' advance of the frontier (1 when unknown).
pub fn rows_per_key(table_oid: pg_sys::Oid) -> Result<f64> {
    Ok(Spi::get_one_with_args::<f64>(
        "SELECT (SELECT (pg_catalog.sum(w.inserted) - (pg_catalog.array_agg(w.inserted ORDER BY w.sampled_at))[1])::float8
                        / NULLIF(pg_catalog.max(w.frontier) - pg_catalog.min(w.frontier), 0)
                   FROM (SELECT sampled_at, pg_catalog.sum(rows_inserted) AS inserted, pg_catalog.max(frontier_raw) AS frontier
                           FROM partition_predict.samples
                          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND NOT is_default
                          GROUP BY sampled_at ORDER BY sampled_at DESC LIMIT 100) w)",
        &[table_oid.into()],
    )?
    .filter(|r| r.is_finite() && *r > 0.0)
    .unwrap_or(1.0))
}

fn drop_shadow(table: &PartitionedTable, shadow: &Shadow) -> Result<()> {
    if let Some(name) = &shadow.current_name {
        Spi::run(&format!("DROP TABLE {name}"))?;
    }
    Spi::run_with_args(
        "DELETE FROM partition_predict.shadows WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND range_from = $2",
        &[table.oid.into(), shadow.from.into()],
    )?;
    Ok(())
}

/// The suffix of a shadow's name: its first key, readable.
fn name_suffix(key_type: KeyType, from: i64) -> String {
    let text = key_type.value(from).to_text();
    if key_type.is_temporal() {
        // 2024-03-04 06:00:00+00 -> p20240304_06 (hour kept only when not midnight).
        let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
        let (day, hour) = (
            digits.get(..8).unwrap_or(&digits),
            digits.get(8..10).unwrap_or("00"),
        );
        if hour == "00" || key_type == KeyType::Date {
            format!("p{day}")
        } else {
            format!("p{day}_{hour}")
        }
    } else {
        format!("p{}", text.replace('-', "m"))
    }
}

/// Why a shadow was made, recorded in `partition_predict.shadows.origin`:
/// only a forecast's shadows say what was expected to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Forecast,
    Migration,
    Ingest,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Forecast => "forecast",
            Origin::Migration => "migration",
            Origin::Ingest => "ingest",
        }
    }
}

/// Creates the shadow of a planned range; returns its name.
pub fn create_shadow(
    table: &PartitionedTable,
    range: &PlannedRange,
    origin: Origin,
) -> Result<QualifiedName> {
    let name = QualifiedName {
        schema: table.name.schema.clone(),
        name: ddl::free_relation_name(
            &table.name.schema,
            &table.name.name,
            &name_suffix(table.key_type, range.from),
        )?,
    };
    let placement = choose_tablespace(table, range.expected_rows)?;
    ddl::create_table_like_parent(
        table,
        &name,
        placement.as_ref().map(|p| p.tablespace.as_str()),
    )?;
    let column = quote_identifier(&table.key_column);
    let from = table.key_type.value(range.from).to_sql_literal();
    let to = table.key_type.value(range.to).to_sql_literal();
    // NOT NULL and a validated CHECK equal to the bound: ATTACH then needs no scan.
    Spi::run(&format!(
        "ALTER TABLE {} ALTER COLUMN {column} SET NOT NULL",
        name.quoted()
    ))?;
    Spi::run(&format!(
        "ALTER TABLE {} ADD CONSTRAINT {BOUND_CONSTRAINT} CHECK ({column} >= {from} AND {column} < {to})",
        name.quoted()
    ))?;
    copy_access_rules(table, &name)?;
    Spi::run_with_args(
        "INSERT INTO partition_predict.shadows (parent, shadow, shadow_name, range_from, range_to, range_start, range_end,
                                                predicted_rows, predicted_bytes, tablespace, origin)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, pg_catalog.to_regclass($2)::pg_catalog.oid, $2, $3, $4, $5, $6,
                 $7, $8, $9, $10)",
        &[
            table.oid.into(),
            name.quoted().into(),
            range.from.into(),
            range.to.into(),
            table.key_type.value(range.from).to_text().into(),
            table.key_type.value(range.to).to_text().into(),
            range.expected_rows.into(),
            placement.as_ref().map(|p| p.predicted_bytes).unwrap_or(0).into(),
            placement.map(|p| p.tablespace).into(),
            origin.as_str().into(),
        ],
    )?;
    Ok(name)
}

struct Placement {
    tablespace: String,
    predicted_bytes: i64,
}

/// With `manage(… tablespaces => …)`: the listed tablespace with the most
/// headroom for this shadow, headroom being the free space of its
/// filesystem less what the shadows already waiting there are expected to
/// take. Without the setting, `None` (the parent's tablespace).
fn choose_tablespace(table: &PartitionedTable, expected_rows: f64) -> Result<Option<Placement>> {
    let candidates: Vec<(String, String, i64)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.spcname::text, pg_catalog.pg_tablespace_location(t.oid),
                    COALESCE((SELECT pg_catalog.sum(s.predicted_bytes) FROM partition_predict.shadows s
                               WHERE s.tablespace = t.spcname AND s.activated_at IS NULL), 0)::bigint
               FROM partition_predict.config c, pg_catalog.unnest(c.tablespaces) WITH ORDINALITY AS n(name, i)
               JOIN pg_catalog.pg_tablespace t ON t.spcname = n.name
              WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass
              ORDER BY n.i",
            None,
            &[table.oid.into()],
        )?;
        rows.map(|r| {
            Ok((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<i64>(3)?.unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    if candidates.is_empty() {
        return Ok(None);
    }
    let predicted_bytes = (expected_rows * bytes_per_row(table)?) as i64;
    let best = candidates
        .into_iter()
        .map(|(name, location, reserved)| {
            let free = free_bytes(&location).unwrap_or(0);
            (free - reserved - predicted_bytes, name)
        })
        .fold(None::<(i64, String)>, |best, (headroom, name)| match best {
            Some((b, _)) if b >= headroom => best,
            _ => Some((headroom, name)),
        });
    Ok(best.map(|(_, tablespace)| Placement {
        tablespace,
        predicted_bytes,
    }))
}

/// Bytes per row of the table's partitions (indexes included), 100 when unknown.
fn bytes_per_row(table: &PartitionedTable) -> Result<f64> {
    Ok(Spi::get_one_with_args::<f64>(
        "SELECT (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(i.inhrelid))::float8
                        / NULLIF(pg_catalog.sum(GREATEST(c.reltuples, 0)), 0)
                   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1)",
        &[table.oid.into()],
    )?
    .filter(|b| b.is_finite() && *b > 0.0)
    .unwrap_or(100.0))
}

/// Free bytes on the filesystem of a tablespace directory ('' is the data
/// directory, where pg_default lives).
fn free_bytes(location: &str) -> Option<i64> {
    let path = if location.is_empty() {
        unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) }.to_owned()
    } else {
        std::ffi::CString::new(location).ok()?
    };
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    i64::try_from(stats.f_bavail as u128 * stats.f_frsize as u128).ok()
}

/// Grants and row-level security flags of the parent, so that reading the
/// partition directly is allowed to exactly whom reading the parent is.
fn copy_access_rules(table: &PartitionedTable, name: &QualifiedName) -> Result<()> {
    let statements: Vec<String> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT pg_catalog.format('GRANT %s ON %s TO %s%s', a.privilege_type, $2,
                        CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                        CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = $1 AND a.grantee <> c.relowner
             UNION ALL
             SELECT pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', $2)
               FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relrowsecurity
             UNION ALL
             SELECT pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', $2)
               FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relforcerowsecurity",
            None,
            &[table.oid.into(), name.quoted().into()],
        )?;
        rows.map(|r| Ok(r.get::<String>(1)?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()
    })?;
    for statement in statements {
        Spi::run(&statement)?;
    }
    Ok(())
}

/// Attaches the shadows that the data has reached: those starting at or
/// below `up_to` (for `activate(parent, up_to)`), or, by default, those the
/// frontier is within one partition-length lead of. A shadow whose range
/// already has rows in DEFAULT is not attached blindly: an alert is raised
/// and the range waits for migration.
pub fn activate(table: &PartitionedTable, up_to: Option<i64>) -> Result<i64> {
    let frontier = frontier(table)?;
    let mut activated = 0;
    for shadow in existing_shadows(table.oid)? {
        let due = match up_to {
            Some(limit) => shadow.from <= limit,
            None => frontier.is_some_and(|f| {
                f.saturating_add(activation_lead(table.key_type, &shadow)) >= shadow.from
            }),
        };
        if !due {
            break;
        }
        let Some(shadow_name) = shadow.current_name.as_deref() else {
            continue;
        };
        if shadow.migrating {
            // The migration attaches it when the last rows are in.
            break;
        }
        if let Some(rows) = rows_in_default(table, shadow.from, shadow.to)? {
            alerts::raise(
                Some(table.oid),
                AlertKind::RowsInDefault,
                &format!(
                    "{rows} row(s) in DEFAULT fall in [{}, {}): shadow {} not attached; the rows are moved out of DEFAULT by migrate_default() or the worker",
                    table.key_type.value(shadow.from),
                    table.key_type.value(shadow.to),
                    shadow.name
                ),
                json!({"range_start": table.key_type.value(shadow.from).to_text(),
                       "range_end": table.key_type.value(shadow.to).to_text(), "rows": rows, "shadow": shadow.name}),
            )?;
            break;
        }
        match attach(table, shadow.from, shadow.to, shadow_name) {
            Ok(()) => activated += 1,
            // A long-running transaction holds a conflicting lock: the next cycle tries again.
            Err(PredictError::LockUnavailable { .. }) if up_to.is_none() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(activated)
}

/// How far ahead of the frontier a shadow is attached. Time keys: an hour
/// (a day for dates) or a tenth of the shadow's span if longer, late enough
/// that a changed forecast can still reshape it. Integer keys arrive in
/// jumps (a batch of ids at once): a whole shadow's length.
fn activation_lead(key_type: KeyType, shadow: &Shadow) -> i64 {
    let span = shadow.to - shadow.from;
    match key_type {
        KeyType::Date => (span / 10).max(1),
        KeyType::Timestamp | KeyType::TimestampTz => {
            (span / 10).max(partition_core::calendar::MICROS_PER_HOUR)
        }
        _ => span,
    }
}

/// Rows DEFAULT holds in `[from, to)` (counted up to 1,000), if any.
pub fn rows_in_default(table: &PartitionedTable, from: i64, to: i64) -> Result<Option<i64>> {
    let Some(default) = table.default_partition else {
        return Ok(None);
    };
    let column = quote_identifier(&table.key_column);
    let count = Spi::get_one_with_args::<i64>(
        &format!(
            "SELECT pg_catalog.count(*) FROM (SELECT 1 FROM {} WHERE {column} >= {} AND {column} < {} LIMIT 1000) d",
            catalog::relation_name(default)?,
            table.key_type.value(from).to_sql_literal(),
            table.key_type.value(to).to_sql_literal()
        ),
        &[],
    )?
    .unwrap_or(0);
    Ok((count > 0).then_some(count))
}

/// Attaches the shadow of `[from, to)` and records it as activated.
pub fn attach(table: &PartitionedTable, from: i64, to: i64, shadow_name: &str) -> Result<()> {
    let bound = PartitionBound::range(
        Bound::Value(table.key_type.value(from)),
        Bound::Value(table.key_type.value(to)),
    );
    let shadow_oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        &[shadow_name.into()],
    )?;
    let watched: Vec<pg_sys::Oid> = shadow_oid
        .into_iter()
        .chain(table.default_partition)
        .collect();
    ddl::run_with_lock_retry_watching(
        &table.name,
        "attaching a shadow partition",
        &format!(
            "ALTER TABLE {} ATTACH PARTITION {shadow_name} {}",
            table.name.quoted(),
            bound.to_sql()
        ),
        &watched,
    )?;
    Spi::run_with_args(
        "UPDATE partition_predict.shadows SET activated_at = pg_catalog.now()
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND range_from = $2",
        &[table.oid.into(), from.into()],
    )?;
    // The partition constraint now does the CHECK's job; dropping it needs a
    // short ACCESS EXCLUSIVE on the new partition, so it waits its turn too.
    let dropped = ddl::run_with_lock_retry(
        &table.name,
        "dropping the attached shadow's bound constraint",
        &format!("ALTER TABLE {shadow_name} DROP CONSTRAINT IF EXISTS {BOUND_CONSTRAINT}"),
    );
    if let Err(e) = dropped {
        pgrx::log!("pg_partition_predict: kept the redundant constraint on {shadow_name}: {e}");
    }
    force_replan(table.oid)
}

/// Invalidates cached plans that involve the table, in every backend: a
/// relcache invalidation of the parent and each partition is sent through
/// the shared invalidation queue at commit.
pub fn force_replan(parent: pg_sys::Oid) -> Result<()> {
    let partitions: Vec<pg_sys::Oid> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1",
            None,
            &[parent.into()],
        )?;
        rows.map(|r| Ok(r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)))
            .collect::<Result<Vec<_>>>()
    })?;
    for oid in std::iter::once(parent).chain(partitions) {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
    }
    Ok(())
}

/// Standalone shadows of a table: `(from, to, oid, name as SQL needs it)`.
pub fn standalone_shadows(parent: pg_sys::Oid) -> Result<Vec<(i64, i64, pg_sys::Oid, String)>> {
    Ok(existing_shadows(parent)?
        .into_iter()
        .filter_map(|s| s.current_name.map(|name| (s.from, s.to, s.oid, name)))
        .collect())
}

/// Drops the shadows of a table that were never attached (for `unmanage`).
pub fn drop_unused(table_oid: pg_sys::Oid) -> Result<i64> {
    let mut dropped = 0;
    for name in existing_shadows(table_oid)?
        .into_iter()
        .filter_map(|s| s.current_name)
    {
        Spi::run(&format!("DROP TABLE {name}"))?;
        dropped += 1;
    }
    Ok(dropped)
}

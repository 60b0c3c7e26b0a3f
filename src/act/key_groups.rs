//! Rows that need a partition (found in DEFAULT, or a batch to ingest):
//! their keys read in one scan, where they go, and the columns a move of
//! rows copies.

use partition_core::planner::{MigrationInput, MigrationRange, PlannedRange, Stranded};
use partition_core::KeyType;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use super::create;
use crate::catalog::PartitionedTable;
use crate::error::Result;
use crate::state::shadows::{self, Origin};
use crate::state::{forecasts, settings};

/// A range planned for rows, and the standalone table they go into.
pub struct Destination {
    pub range: MigrationRange,
    pub table: pg_sys::Oid,
    /// As SQL needs it.
    pub name: String,
    /// Made for these rows (not a shadow that was waiting already).
    pub created: bool,
}

/// Plans where `rows` go with `plan` (`planner::plan_migration` or
/// `planner::plan_ingest`), among the table's partitions and waiting
/// shadows, and returns the first `limit` destinations, creating a
/// right-sized shadow (made for `origin`) where no waiting one covers a range.
pub fn destinations(
    table: &PartitionedTable,
    rows: &[Stranded],
    plan: fn(&MigrationInput) -> Vec<MigrationRange>,
    limit: usize,
    origin: Origin,
) -> Result<Vec<Destination>> {
    let settings = settings::load(table)?;
    let taken = table.attached_ranges();
    let standalone = shadows::standalone(table.oid)?;
    let shadow_ranges: Vec<(i64, i64)> = standalone.iter().map(|s| (s.0, s.1)).collect();
    // What the newest forecast expects past the rows: a range reaching into
    // the time still to come is sized for it too.
    let (demand, _) = forecasts::newest_demand(table)?;
    let ranges = plan(&MigrationInput {
        key_type: table.key_type,
        taken: &taken,
        shadows: &shadow_ranges,
        stranded: rows,
        target_rows: settings.target_rows,
        min_span: settings.min_span,
        max_span: settings.max_span,
        zone: &settings.zone,
        demand: &demand,
    });
    let mut destinations = Vec::new();
    for range in ranges.into_iter().take(limit) {
        let waiting = standalone
            .iter()
            .find(|s| range.into_shadow && s.0 == range.from);
        let destination = match waiting {
            Some((_, _, oid, name)) => Destination {
                range,
                table: *oid,
                name: name.clone(),
                created: false,
            },
            None => {
                let made = create::shadow(
                    table,
                    &settings,
                    &PlannedRange {
                        from: range.from,
                        to: range.to,
                        expected_rows: range.expected_rows,
                    },
                    origin,
                )?;
                Destination {
                    range,
                    table: made.oid,
                    name: made.name.quoted(),
                    created: true,
                }
            }
        };
        destinations.push(destination);
    }
    Ok(destinations)
}

/// The keys of a relation, grouped: per hour (time keys), day (dates) or a
/// thousandth of the key span (integers), in key order.
pub struct KeyGroups {
    pub groups: Vec<Stranded>,
    pub null_keys: i64,
    pub rows: i64,
}

/// Groups the keys of `relation` (SQL: a quoted name, maybe `ONLY …`),
/// whose key column is named and typed as the table's, in one scan.
pub fn key_groups(table: &PartitionedTable, relation: &str) -> Result<KeyGroups> {
    let column = quote_identifier(&table.key_column);
    // date_bin and integer division: grouping by text or numeric costs
    // two to three times as much on a large batch.
    let bucket = match table.key_type {
        KeyType::Timestamp => format!(
            "pg_catalog.date_bin('1 hour', {column}, '2000-01-01 00:00:00'::pg_catalog.timestamp)"
        ),
        KeyType::TimestampTz => format!(
            "pg_catalog.date_bin('1 hour', {column}, '2000-01-01 00:00:00+00'::pg_catalog.timestamptz)"
        ),
        KeyType::Date => column.clone(),
        _ => {
            let (min, max) = Spi::get_two::<i64, i64>(&format!(
                "SELECT pg_catalog.min({column})::bigint, pg_catalog.max({column})::bigint FROM {relation}"
            ))?;
            match (min, max) {
                (Some(min), Some(max)) => {
                    let width = partition_core::calendar::round_step_up(
                        (((max as i128 - min as i128) / 1000) as i64).max(1),
                    );
                    format!("{column}::bigint / {width}")
                }
                // No key at all: one group, of the NULL keys if any.
                _ => "NULL::bigint".to_string(),
            }
        }
    };
    let rows: Vec<(Option<String>, Option<String>, i64)> = Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT pg_catalog.min({column})::text, pg_catalog.max({column})::text, pg_catalog.count(*)
                   FROM {relation} GROUP BY {bucket} ORDER BY 1"
            ),
            None,
            &[],
        )?;
        rows.map(|r| {
            Ok((
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?.unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    let mut groups = KeyGroups {
        groups: Vec::new(),
        null_keys: 0,
        rows: 0,
    };
    for (min, max, count) in rows {
        groups.rows += count;
        let (Some(min), Some(max)) = (min, max) else {
            groups.null_keys += count;
            continue;
        };
        if let (Ok(min), Ok(max)) = (
            table.key_type.parse_value(&min),
            table.key_type.parse_value(&max),
        ) {
            groups.groups.push(Stranded {
                start: min.raw,
                end: max.raw.saturating_add(1),
                rows: count as f64,
            });
        }
    }
    groups.groups.sort_by_key(|s| s.start);
    Ok(groups)
}

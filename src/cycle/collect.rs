//! Cycle step 1: snapshot the statistics PostgreSQL already keeps.
//!
//! The number of statements is bounded whatever the number of partitions:
//! three reads for the whole table, two bulk writes, two retention deletes,
//! and per *changed* partition a frontier read and (time keys) a recount of
//! the newest key-time buckets.

use std::collections::HashMap;

use partition_core::calendar::{self, Grain, MICROS_PER_DAY};
use partition_core::counters::{self, Counters, FirstSample, PreviousSample};
use partition_core::{KeyType, KeyValue, PartitionBound};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::catalog::state;
use crate::catalog::{PartitionedTable, QualifiedName};
use crate::error::{PredictError, Result};

/// A DEFAULT partition up to this many pages is counted exactly; larger, the
/// statistics' estimate is used.
const EXACT_COUNT_MAX_PAGES: i64 = 1_024;
/// Without an index on the key, `max(key)` is computed only up to this size;
/// larger partitions take the frontier from `pg_stats`.
const FRONTIER_SCAN_MAX_PAGES: i64 = 12_800;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectSummary {
    pub partitions_sampled: i64,
    pub rows_inserted: i64,
    pub rows_in_default: i64,
    pub queries: i64,
}

/// One partition as the statistics see it now.
struct Observed {
    oid: pg_sys::Oid,
    name: QualifiedName,
    is_default: bool,
    counters: Counters,
    live_rows: i64,
    size_bytes: i64,
    pages: i64,
    /// Main fork size: 0 means no row was ever written here.
    heap_bytes: i64,
    has_key_index: bool,
}

struct Previous {
    sample: PreviousSample,
    frontier_raw: Option<i64>,
}

/// Counts the statements issued, for the summary and the cost test.
struct Session<'a> {
    table: &'a PartitionedTable,
    queries: i64,
}

const OBSERVE: &str = "
    SELECT c.oid, n.nspname::text, c.relname::text, c.oid = pt.partdefid,
           COALESCE(s.n_tup_ins, 0), COALESCE(s.n_tup_upd, 0), COALESCE(s.n_tup_del, 0),
           COALESCE(s.seq_scan, 0), COALESCE(s.idx_scan, 0),
           COALESCE(s.n_live_tup, GREATEST(c.reltuples, 0)::bigint),
           pg_catalog.pg_total_relation_size(c.oid), c.relpages::bigint,
           pg_catalog.pg_relation_size(c.oid),
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = c.oid AND i.indisvalid AND a.attname = $2),
           pg_catalog.pg_postmaster_start_time()::text || '/' ||
               COALESCE((SELECT d.stats_reset::text FROM pg_catalog.pg_stat_database d
                          WHERE d.datname = pg_catalog.current_database()), '')
      FROM pg_catalog.pg_inherits h
      JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = h.inhparent
      LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
     WHERE h.inhparent = $1";

const PREVIOUS: &str = "
    SELECT partition, epoch, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, idx_scan, frontier_raw,
           own_seq_scans, own_idx_scans
      FROM partition_predict.partition_counters
     WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass";

fn get<T: FromDatum + IntoDatum>(row: &pgrx::spi::SpiHeapTupleData, i: usize) -> Result<T> {
    row.get::<T>(i)?
        .ok_or_else(|| PredictError::Internal(format!("NULL in statistics column {i}")))
}

/// Runs step 1 for one table. Call it as the table's owner, with pinned settings.
pub fn collect(table: &PartitionedTable) -> Result<CollectSummary> {
    let mut session = Session { table, queries: 0 };
    let (observed, epoch) = session.observe()?;
    let previous = session.previous()?;
    let first = if previous.is_empty() {
        FirstSample::Baseline
    } else {
        FirstSample::NewPartition
    };
    let bounds: HashMap<pg_sys::Oid, PartitionBound> =
        table.partitions.iter().map(|p| (p.oid, p.bound)).collect();

    let mut summary = CollectSummary::default();
    let mut samples = SampleBatch::default();
    for part in &observed {
        let before = previous.get(&part.oid);
        let sampled = counters::sample(before.map(|p| &p.sample), part.counters, &epoch, first);
        let delta = sampled.delta;
        let changed = before.is_none() || delta != Counters::default();
        // An empty heap has no frontier and nothing to count: skipping it keeps
        // the first cycle of a table with many (mostly future) partitions cheap.
        let readable = changed && part.heap_bytes > 0;
        let frontier_raw = if readable {
            session
                .frontier(part)?
                .or(before.and_then(|p| p.frontier_raw))
        } else if changed {
            None
        } else {
            before.and_then(|p| p.frontier_raw)
        };
        let live_rows = if part.is_default && part.pages <= EXACT_COUNT_MAX_PAGES {
            session.exact_count(&part.name)?
        } else {
            part.live_rows
        };
        if part.is_default {
            summary.rows_in_default = live_rows;
        }
        if table.key_type.is_temporal() && readable {
            let bound = bounds
                .get(&part.oid)
                .copied()
                .unwrap_or(PartitionBound::Default);
            let since = before
                .filter(|_| delta.updated == 0 && delta.deleted == 0)
                .and_then(|p| p.frontier_raw)
                .map(|raw| bucket_floor(table.key_type, raw));
            session.recount_key_time(part, bound, since, delta.inserted)?;
        } else if table.key_type.is_temporal()
            && changed
            && before.is_some_and(|p| p.frontier_raw.is_some())
        {
            // Emptied (TRUNCATE): its buckets are gone too.
            session.replace_buckets(part, None, Vec::new())?;
        }
        samples
            .counters
            .push(part, &epoch, frontier_raw, sampled.own_scans_left);
        if changed {
            summary.partitions_sampled += 1;
            summary.rows_inserted += delta.inserted;
            samples.push(
                part,
                delta,
                live_rows,
                frontier_raw.map(|raw| table.key_type.value(raw)),
            );
        }
    }
    session.discount_own_scans(&mut samples.counters)?;
    session.write(&samples)?;
    session.forget_detached(&observed)?;
    session.apply_retention()?;
    summary.queries = session.queries;
    Ok(summary)
}

/// Start of the key-time bucket holding a key, in microseconds (hours for
/// timestamps, days for dates).
fn bucket_floor(key_type: KeyType, raw: i64) -> i64 {
    match key_type {
        KeyType::Date => raw.saturating_mul(MICROS_PER_DAY),
        _ => calendar::floor_micros(raw, Grain::Hour),
    }
}

/// The SQL expression for a key's bucket, as timestamptz (UTC).
fn bucket_expression(key_type: KeyType, column: &str) -> String {
    match key_type {
        KeyType::TimestampTz => format!("pg_catalog.date_trunc('hour', {column})"),
        KeyType::Timestamp => {
            format!("pg_catalog.timezone('UTC', pg_catalog.date_trunc('hour', {column}))")
        }
        _ => format!("pg_catalog.timezone('UTC', {column}::pg_catalog.timestamp)"),
    }
}

impl Session<'_> {
    fn observe(&mut self) -> Result<(Vec<Observed>, String)> {
        self.queries += 1;
        Spi::connect(|client| {
            let mut epoch = String::new();
            let mut observed = Vec::new();
            let rows = client.select(
                OBSERVE,
                None,
                &[self.table.oid.into(), self.table.key_column.as_str().into()],
            )?;
            for row in rows {
                epoch = get::<String>(&row, 15)?;
                observed.push(Observed {
                    oid: get(&row, 1)?,
                    name: QualifiedName {
                        schema: get(&row, 2)?,
                        name: get(&row, 3)?,
                    },
                    is_default: get(&row, 4)?,
                    counters: Counters {
                        inserted: get(&row, 5)?,
                        updated: get(&row, 6)?,
                        deleted: get(&row, 7)?,
                        seq_scans: get(&row, 8)?,
                        idx_scans: get(&row, 9)?,
                    },
                    live_rows: get(&row, 10)?,
                    size_bytes: get(&row, 11)?,
                    pages: get(&row, 12)?,
                    heap_bytes: get(&row, 13)?,
                    has_key_index: get(&row, 14)?,
                });
            }
            Ok((observed, epoch))
        })
    }

    fn previous(&mut self) -> Result<HashMap<pg_sys::Oid, Previous>> {
        self.queries += 1;
        Spi::connect(|client| {
            let mut previous = HashMap::new();
            for row in client.select(PREVIOUS, None, &[self.table.oid.into()])? {
                previous.insert(
                    get::<pg_sys::Oid>(&row, 1)?,
                    Previous {
                        sample: PreviousSample {
                            epoch: get(&row, 2)?,
                            counters: Counters {
                                inserted: get(&row, 3)?,
                                updated: get(&row, 4)?,
                                deleted: get(&row, 5)?,
                                seq_scans: get(&row, 6)?,
                                idx_scans: get(&row, 7)?,
                            },
                            own_scans: (get(&row, 9)?, get(&row, 10)?),
                        },
                        frontier_raw: row.get::<i64>(8)?,
                    },
                );
            }
            Ok(previous)
        })
    }

    /// Highest key present: exact through an index or in a small partition,
    /// otherwise the upper end of the column's histogram.
    fn frontier(&mut self, part: &Observed) -> Result<Option<i64>> {
        let column = quote_identifier(&self.table.key_column);
        self.queries += 1;
        let text = if part.has_key_index || part.pages <= FRONTIER_SCAN_MAX_PAGES {
            Spi::get_one::<String>(&format!(
                "SELECT pg_catalog.max({column})::text FROM {}",
                part.name.quoted()
            ))?
        } else {
            Spi::get_one_with_args::<String>(
                "SELECT (SELECT (h.b)[pg_catalog.array_upper(h.b, 1)]
                           FROM (SELECT s.histogram_bounds::text::text[] AS b FROM pg_catalog.pg_stats s
                                  WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3) h)",
                &[
                    part.name.schema.as_str().into(),
                    part.name.name.as_str().into(),
                    self.table.key_column.as_str().into(),
                ],
            )?
        };
        Ok(text
            .and_then(|t| self.table.key_type.parse_value(&t).ok())
            .map(|v| v.raw))
    }

    fn exact_count(&mut self, name: &QualifiedName) -> Result<i64> {
        self.queries += 1;
        Ok(Spi::get_one::<i64>(&format!(
            "SELECT pg_catalog.count(*) FROM {}",
            name.quoted()
        ))?
        .unwrap_or(0))
    }

    /// Recounts rows per key-time bucket of one partition. With `since`
    /// (the bucket of the previous frontier) only the newest buckets are
    /// read; if the rows found there do not account for every insert, some
    /// arrived late into older ranges and the whole partition is recounted.
    fn recount_key_time(
        &mut self,
        part: &Observed,
        bound: PartitionBound,
        since: Option<i64>,
        inserted: i64,
    ) -> Result<()> {
        if let Some(since) = since {
            let (fresh, stored) = self.count_buckets(part, Some(since))?;
            let fresh_total: i64 = fresh.iter().map(|(_, n)| n).sum();
            if fresh_total - stored == inserted {
                return self.replace_buckets(part, Some(since), fresh);
            }
        }
        let lower = match bound {
            PartitionBound::Range {
                from: partition_core::Bound::Value(v),
                ..
            } => Some(bucket_floor(v.key_type, v.raw)),
            _ => None,
        };
        let (fresh, _) = self.count_buckets(part, lower)?;
        self.replace_buckets(part, None, fresh)
    }

    /// Buckets of `part` from `since` on (as UTC text) with their row counts,
    /// and what was stored for them before.
    fn count_buckets(
        &mut self,
        part: &Observed,
        since: Option<i64>,
    ) -> Result<(Vec<(String, i64)>, i64)> {
        let column = quote_identifier(&self.table.key_column);
        let bucket = bucket_expression(self.table.key_type, &column);
        let filter = match since {
            Some(micros) => format!("WHERE {column} >= {}", self.key_literal_for_bucket(micros)),
            None => String::new(),
        };
        let since_text = since.map(|m| calendar::format_iso_timestamp(m, true));
        self.queries += 1;
        Spi::connect(|client| {
            let sql = format!(
                "SELECT f.b::text, f.n,
                        (SELECT COALESCE(pg_catalog.sum(k.rows), 0)::bigint FROM partition_predict.key_time_counts k
                          WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass AND k.partition = $2
                            AND ($3::timestamptz IS NULL OR k.bucket_start >= $3::timestamptz))
                   FROM (SELECT {bucket} AS b, pg_catalog.count(*) AS n FROM {} {filter} GROUP BY 1) f
                  WHERE f.b IS NOT NULL
                  UNION ALL
                 SELECT NULL, 0, (SELECT COALESCE(pg_catalog.sum(k.rows), 0)::bigint FROM partition_predict.key_time_counts k
                                   WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass AND k.partition = $2
                                     AND ($3::timestamptz IS NULL OR k.bucket_start >= $3::timestamptz))",
                part.name.quoted()
            );
            let mut fresh = Vec::new();
            let mut stored = 0;
            for row in client.select(
                &sql,
                None,
                &[
                    self.table.oid.into(),
                    part.oid.into(),
                    since_text.clone().into(),
                ],
            )? {
                stored = get::<i64>(&row, 3)?;
                if let Some(bucket) = row.get::<String>(1)? {
                    fresh.push((bucket, get::<i64>(&row, 2)?));
                }
            }
            Ok((fresh, stored))
        })
    }

    /// A literal of the key type for the start of a bucket given in micros.
    fn key_literal_for_bucket(&self, micros: i64) -> String {
        let raw = match self.table.key_type {
            KeyType::Date => micros.div_euclid(MICROS_PER_DAY),
            _ => micros,
        };
        KeyValue {
            key_type: self.table.key_type,
            raw,
        }
        .to_sql_literal()
    }

    fn replace_buckets(
        &mut self,
        part: &Observed,
        since: Option<i64>,
        fresh: Vec<(String, i64)>,
    ) -> Result<()> {
        let since_text = since.map(|m| calendar::format_iso_timestamp(m, true));
        let (buckets, counts): (Vec<String>, Vec<i64>) = fresh.into_iter().unzip();
        self.queries += 2;
        state::write(
            "DELETE FROM partition_predict.key_time_counts
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2
                AND ($3::timestamptz IS NULL OR bucket_start >= $3::timestamptz)",
            &[self.table.oid.into(), part.oid.into(), since_text.into()],
        )?;
        state::write(
            "INSERT INTO partition_predict.key_time_counts (parent, partition, bucket_start, rows, counted_at)
             SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, u.b::timestamptz, u.n, pg_catalog.now()
               FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bigint[])) AS u(b, n)",
            &[self.table.oid.into(), part.oid.into(), buckets.into(), counts.into()],
        )?;
        Ok(())
    }

    /// Our own reads (frontier, exact counts, recounts) are scans too; the
    /// next samples must not report them as the table's traffic. This
    /// transaction's scans are known exactly and are added to what remains
    /// to be discounted.
    fn discount_own_scans(&mut self, counters: &mut CounterBatch) -> Result<()> {
        self.queries += 1;
        let own: HashMap<pg_sys::Oid, (i64, i64)> = Spi::connect(|client| {
            let rows = client.select(
                "SELECT x.relid, x.seq_scan, COALESCE(x.idx_scan, 0) FROM pg_catalog.pg_stat_xact_all_tables x
                  WHERE x.relid = ANY ($1::oid[]) AND (x.seq_scan > 0 OR x.idx_scan > 0)",
                None,
                &[counters.partition.clone().into()],
            )?;
            rows.map(|row| {
                Ok((
                    get::<pg_sys::Oid>(&row, 1)?,
                    (get::<i64>(&row, 2)?, get::<i64>(&row, 3)?),
                ))
            })
            .collect::<Result<HashMap<_, _>>>()
        })?;
        for (i, oid) in counters.partition.iter().enumerate() {
            if let Some((seq, idx)) = own.get(oid) {
                counters.own_seq_scans[i] += seq;
                counters.own_idx_scans[i] += idx;
            }
        }
        Ok(())
    }

    fn write(&mut self, batch: &SampleBatch) -> Result<()> {
        let parent = self.table.oid;
        if !batch.partition.is_empty() {
            self.queries += 1;
            state::write(
                "INSERT INTO partition_predict.samples
                        (parent, partition, partition_name, sampled_at, is_default, rows_inserted, rows_updated,
                         rows_deleted, seq_scans, idx_scans, live_rows, size_bytes, frontier, frontier_raw)
                 SELECT $1::pg_catalog.oid::pg_catalog.regclass, u.partition, u.name, pg_catalog.now(),
                        u.is_default, u.ins, u.upd, u.del, u.seq, u.idx, u.live, u.size, u.frontier, u.raw
                   FROM ROWS FROM (pg_catalog.unnest($2::oid[]), pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bool[]), pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[]), pg_catalog.unnest($7::bigint[]), pg_catalog.unnest($8::bigint[]), pg_catalog.unnest($9::bigint[]), pg_catalog.unnest($10::bigint[]), pg_catalog.unnest($11::bigint[]), pg_catalog.unnest($12::text[]), pg_catalog.unnest($13::bigint[]))
                        AS u(partition, name, is_default, ins, upd, del, seq, idx, live, size, frontier, raw)",
                &[
                    parent.into(),
                    batch.partition.clone().into(),
                    batch.partition_name.clone().into(),
                    batch.is_default.clone().into(),
                    batch.inserted.clone().into(),
                    batch.updated.clone().into(),
                    batch.deleted.clone().into(),
                    batch.seq_scans.clone().into(),
                    batch.idx_scans.clone().into(),
                    batch.live_rows.clone().into(),
                    batch.size_bytes.clone().into(),
                    batch.frontier.clone().into(),
                    batch.frontier_raw.clone().into(),
                ],
            )?;
        }
        let c = &batch.counters;
        self.queries += 1;
        state::write(
            "INSERT INTO partition_predict.partition_counters AS pc
                    (parent, partition, epoch, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, idx_scan, frontier_raw,
                     own_seq_scans, own_idx_scans)
             SELECT $1::pg_catalog.oid::pg_catalog.regclass, u.*
               FROM ROWS FROM (pg_catalog.unnest($2::oid[]), pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[]), pg_catalog.unnest($7::bigint[]), pg_catalog.unnest($8::bigint[]), pg_catalog.unnest($9::bigint[]), pg_catalog.unnest($10::bigint[]), pg_catalog.unnest($11::bigint[])) AS u
             ON CONFLICT (parent, partition) DO UPDATE
                SET epoch = EXCLUDED.epoch, n_tup_ins = EXCLUDED.n_tup_ins, n_tup_upd = EXCLUDED.n_tup_upd,
                    n_tup_del = EXCLUDED.n_tup_del, seq_scan = EXCLUDED.seq_scan, idx_scan = EXCLUDED.idx_scan,
                    frontier_raw = EXCLUDED.frontier_raw, own_seq_scans = EXCLUDED.own_seq_scans,
                    own_idx_scans = EXCLUDED.own_idx_scans",
            &[
                parent.into(),
                c.partition.clone().into(),
                c.epoch.clone().into(),
                c.inserted.clone().into(),
                c.updated.clone().into(),
                c.deleted.clone().into(),
                c.seq_scans.clone().into(),
                c.idx_scans.clone().into(),
                c.frontier_raw.clone().into(),
                c.own_seq_scans.clone().into(),
                c.own_idx_scans.clone().into(),
            ],
        )?;
        Ok(())
    }

    /// Drops bookkeeping of partitions that were detached or dropped.
    fn forget_detached(&mut self, observed: &[Observed]) -> Result<()> {
        let current: Vec<pg_sys::Oid> = observed.iter().map(|p| p.oid).collect();
        self.queries += 2;
        for table in ["partition_counters", "key_time_counts"] {
            state::write(
                &format!(
                    "DELETE FROM partition_predict.{table}
                      WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> ALL ($2::oid[])"
                ),
                &[self.table.oid.into(), current.clone().into()],
            )?;
        }
        Ok(())
    }

    /// Keeps history bounded by the table's `retention`: samples by sample
    /// time, key-time buckets relative to the newest bucket (so a replay of
    /// old data is kept as long as real-time data would be).
    fn apply_retention(&mut self) -> Result<()> {
        self.queries += 2;
        state::write(
            "DELETE FROM partition_predict.samples s
              USING partition_predict.config c
              WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND c.parent = s.parent
                AND s.sampled_at < pg_catalog.now() - c.retention",
            &[self.table.oid.into()],
        )?;
        state::write(
            "DELETE FROM partition_predict.key_time_counts k
              USING partition_predict.config c
              WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass AND c.parent = k.parent
                AND k.bucket_start < (SELECT pg_catalog.max(m.bucket_start) FROM partition_predict.key_time_counts m
                                       WHERE m.parent = k.parent) - c.retention",
            &[self.table.oid.into()],
        )?;
        Ok(())
    }
}

/// Rows to write, as columns (they go to PostgreSQL as arrays through unnest).
#[derive(Default)]
struct SampleBatch {
    partition: Vec<pg_sys::Oid>,
    partition_name: Vec<String>,
    is_default: Vec<bool>,
    inserted: Vec<i64>,
    updated: Vec<i64>,
    deleted: Vec<i64>,
    seq_scans: Vec<i64>,
    idx_scans: Vec<i64>,
    live_rows: Vec<i64>,
    size_bytes: Vec<i64>,
    frontier: Vec<Option<String>>,
    frontier_raw: Vec<Option<i64>>,
    counters: CounterBatch,
}

#[derive(Default)]
struct CounterBatch {
    partition: Vec<pg_sys::Oid>,
    epoch: Vec<String>,
    inserted: Vec<i64>,
    updated: Vec<i64>,
    deleted: Vec<i64>,
    seq_scans: Vec<i64>,
    idx_scans: Vec<i64>,
    frontier_raw: Vec<Option<i64>>,
    own_seq_scans: Vec<i64>,
    own_idx_scans: Vec<i64>,
}

impl CounterBatch {
    fn push(
        &mut self,
        part: &Observed,
        epoch: &str,
        frontier_raw: Option<i64>,
        own_scans: (i64, i64),
    ) {
        self.partition.push(part.oid);
        self.epoch.push(epoch.to_string());
        self.inserted.push(part.counters.inserted);
        self.updated.push(part.counters.updated);
        self.deleted.push(part.counters.deleted);
        self.seq_scans.push(part.counters.seq_scans);
        self.idx_scans.push(part.counters.idx_scans);
        self.frontier_raw.push(frontier_raw);
        self.own_seq_scans.push(own_scans.0);
        self.own_idx_scans.push(own_scans.1);
    }
}

impl SampleBatch {
    fn push(
        &mut self,
        part: &Observed,
        delta: Counters,
        live_rows: i64,
        frontier: Option<KeyValue>,
    ) {
        self.partition.push(part.oid);
        self.partition_name.push(part.name.quoted());
        self.is_default.push(part.is_default);
        self.inserted.push(delta.inserted);
        self.updated.push(delta.updated);
        self.deleted.push(delta.deleted);
        self.seq_scans.push(delta.seq_scans);
        self.idx_scans.push(delta.idx_scans);
        self.live_rows.push(live_rows);
        self.size_bytes.push(part.size_bytes);
        self.frontier.push(frontier.map(|v| v.to_text()));
        self.frontier_raw.push(frontier.map(|v| v.raw));
    }
}

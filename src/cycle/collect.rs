//! Cycle step 1: snapshot the statistics PostgreSQL already keeps.
//!
//! The number of statements is bounded whatever the number of partitions:
//! three reads for the whole table, two bulk writes, the retention deletes,
//! and per partition where rows were written a few: the read of what
//! arrived (and its sample), at most one whole recount (and its sample),
//! the index's highest key, and one or two writes of its bucket counts.
//! A partition that was only queried is not read.
//!
//! What arrived is found by position, not by key: a heap grows at its end.
//! Per partition, the pages before `window_start` are settled (their rows
//! are in `key_time_counts`); the last `WINDOW_PAGES` pages are the window,
//! where concurrent inserters still fill their pages and transactions still
//! open may commit rows. Each cycle re-reads the pages from `window_start`
//! on (TID range scans: with or without an index on the key, late rows
//! included), adds what changed since the window was last read, and settles
//! all but the last `WINDOW_PAGES` pages. When more than `EXACT_TAIL_PAGES`
//! pages settle at once (a bulk load) they are estimated from
//! `SAMPLE_PAGES` of them (`partition_core::sampling`), so a cycle reads a
//! bounded number of pages whatever the size of the partition or the batch.
//!
//! A partition is counted whole the first time, after its heap was rewritten
//! (TRUNCATE, VACUUM FULL, CLUSTER), and when the counts may have drifted:
//! rows updated or deleted (their space may then be reused below the
//! window), or fewer rows found than the insert counter reports (rows
//! committed behind the window, aborted inserts). Up to `EXACT_COUNT_MAX_PAGES` (and DEFAULT up to
//! `EXACT_FULL_PAGES`) that is done at once, larger partitions at most
//! hourly; exactly up to `EXACT_FULL_PAGES`, from a sample beyond.

use std::collections::{BTreeMap, HashMap};

use partition_core::calendar::{self, MICROS_PER_DAY, MICROS_PER_HOUR};
use partition_core::counters::{self, Counters, FirstSample};
use partition_core::sampling::{self, PageSample};
use partition_core::{KeyType, KeyValue};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::catalog::{PartitionedTable, QualifiedName};
use crate::error::{PredictError, Result};
use crate::pg::backend;
use crate::state::counters::{self as stored_counters, CounterBatch, Previous, SampleBatch};
use crate::state::history;

/// A DEFAULT partition up to this many pages is counted exactly; larger, the
/// statistics' estimate is used. Also the size up to which a partition whose
/// rows were updated or deleted is recounted at once.
const EXACT_COUNT_MAX_PAGES: i64 = 1_024;
/// Settling pages read in full each cycle; more are sampled.
const EXACT_TAIL_PAGES: i64 = 64;
/// The newest pages, re-read every cycle until they settle.
const WINDOW_PAGES: i64 = 64;
/// Rows the insert counter reports that the counts may miss (aborted
/// inserts, rows committed behind the window) before a recount: this many,
/// or 1% of the rows counted since the last whole count.
const DRIFT_ROWS: i64 = 1_000;
/// A whole partition is counted exactly up to this size, sampled beyond.
const EXACT_FULL_PAGES: i64 = 12_800;
/// Pages read for a sample, spread evenly, the first and last among them.
const SAMPLE_PAGES: i64 = 32;
/// A large partition whose counts drifted is recounted at most this often;
/// meanwhile its new rows are counted as usual.
const RECOUNT_INTERVAL_SECONDS: f64 = 3_600.0;
/// PostgreSQL's page size (the servers this is built for use the default).
const PAGE_BYTES: i64 = pg_sys::BLCKSZ as i64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectSummary {
    pub partitions_sampled: i64,
    pub rows_inserted: i64,
    pub rows_in_default: i64,
    pub queries: i64,
    /// Rows of the table read by this step (new rows, samples, recounts).
    pub rows_read: i64,
}

/// One partition as the statistics see it now.
struct Observed {
    oid: pg_sys::Oid,
    name: QualifiedName,
    is_default: bool,
    counters: Counters,
    live_rows: i64,
    size_bytes: i64,
    /// Main fork size: 0 means no row was ever written here.
    heap_bytes: i64,
    has_key_index: bool,
    /// Changes when the heap is rewritten (TRUNCATE, VACUUM FULL, CLUSTER).
    filenode: pg_sys::Oid,
}

impl Observed {
    fn heap_pages(&self) -> i64 {
        self.heap_bytes / PAGE_BYTES
    }
}

/// The first tuple id of a heap page, as SQL: TID range scans start there.
fn page_start(page: i64) -> String {
    format!("'({page},0)'::pg_catalog.tid")
}

/// What one read of a partition found.
#[derive(Default)]
struct Scan {
    /// Rows per key-time bucket in the pages that settle this cycle.
    settled: BTreeMap<String, i64>,
    /// Rows per key-time bucket in the window (read again next cycle).
    window: BTreeMap<String, i64>,
    /// Highest key seen.
    max_key: Option<String>,
    rows_read: i64,
    /// Part of it estimated from a sample.
    sampled: bool,
}

impl Scan {
    fn all_buckets(&self) -> BTreeMap<String, i64> {
        let mut all = self.settled.clone();
        for (bucket, n) in &self.window {
            *all.entry(bucket.clone()).or_insert(0) += n;
        }
        all
    }

    fn rows(&self) -> i64 {
        self.settled.values().chain(self.window.values()).sum()
    }

    fn see_key(&mut self, key_type: KeyType, text: String) {
        let Ok(value) = key_type.parse_value(&text) else {
            return;
        };
        let higher = self
            .max_key
            .as_deref()
            .and_then(|t| key_type.parse_value(t).ok())
            .is_none_or(|current| value.raw > current.raw);
        if higher {
            self.max_key = Some(text);
        }
    }
}

/// Counts the statements issued, for the summary and the cost test.
struct Session<'a> {
    table: &'a PartitionedTable,
    queries: i64,
}

// The statistics functions behind pg_stat_all_tables, called per partition:
// joining the view would compute it for every relation of the database, a
// cost that grows with the catalog for each managed table.
const OBSERVE: &str = "
    SELECT c.oid, n.nspname::text, c.relname::text, c.oid = pt.partdefid,
           pg_catalog.pg_stat_get_tuples_inserted(c.oid), pg_catalog.pg_stat_get_tuples_updated(c.oid),
           pg_catalog.pg_stat_get_tuples_deleted(c.oid), pg_catalog.pg_stat_get_numscans(c.oid),
           (SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_stat_get_numscans(i.indexrelid)), 0)::bigint
              FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid),
           pg_catalog.pg_stat_get_live_tuples(c.oid),
           pg_catalog.pg_total_relation_size(c.oid), c.relpages::bigint,
           pg_catalog.pg_relation_size(c.oid),
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = c.oid AND i.indisvalid AND a.attname = $2),
           pg_catalog.pg_postmaster_start_time()::text || '/' ||
               COALESCE((SELECT d.stats_reset::text FROM pg_catalog.pg_stat_database d
                          WHERE d.datname = pg_catalog.current_database()), ''),
           c.relfilenode
      FROM pg_catalog.pg_inherits h
      JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = h.inhparent
     WHERE h.inhparent = $1";

fn get<T: FromDatum + IntoDatum>(row: &pgrx::spi::SpiHeapTupleData, i: usize) -> Result<T> {
    row.get::<T>(i)?
        .ok_or_else(|| PredictError::Internal(format!("NULL in statistics column {i}")))
}

/// Runs step 1 for one table. Call it as the table's owner, with pinned settings.
pub fn collect(table: &PartitionedTable) -> Result<CollectSummary> {
    let frontiers_before = history::frontiers(table)?;
    let mut default_inserted = 0;
    let mut session = Session { table, queries: 0 };
    let (observed, epoch) = session.observe()?;
    let previous = session.previous()?;
    let first = if previous.is_empty() {
        FirstSample::Baseline
    } else {
        FirstSample::NewPartition
    };

    let mut summary = CollectSummary::default();
    let mut samples = SampleBatch::default();
    for part in &observed {
        let before = previous.get(&part.oid);
        let sampled = counters::sample(before.map(|p| &p.sample), part.counters, &epoch, first);
        let delta = sampled.delta;
        // A rewritten heap (TRUNCATE) changes no counter but is a change.
        let rewritten = before.is_some_and(|p| p.filenode.is_some_and(|f| f != part.filenode));
        let changed = before.is_none() || delta != Counters::default() || rewritten;
        // Only rows written are read: a partition that was merely queried
        // costs nothing. An empty heap has no frontier and nothing to count:
        // skipping it keeps the first cycle of a table with many (mostly
        // future) partitions cheap.
        let written = delta.inserted != 0 || delta.updated != 0 || delta.deleted != 0;
        let readable = (before.is_none() || rewritten || written) && part.heap_bytes > 0;
        let mut tracking = Tracking::carried(before);
        let frontier_raw = if readable && !table.key_type.is_temporal() && part.has_key_index {
            // Integer keys need only the frontier: a few index pages.
            session
                .indexed_max(part)?
                .or(before.and_then(|p| p.frontier_raw))
        } else if readable {
            let read = plan_read(part, before, delta, rewritten, table.key_type.is_temporal());
            let scan = match read {
                Read::Whole => session.read_whole(part)?,
                Read::Window(start) => {
                    let window_before = before.map_or(0, |p| p.window.values().sum());
                    session.read_window(part, start, delta.inserted, window_before)?
                }
            };
            summary.rows_read += scan.rows_read;
            if table.key_type.is_temporal() {
                tracking = match read {
                    Read::Whole => {
                        session.replace_buckets(part, scan.all_buckets())?;
                        Tracking::recounted(part, &scan)
                    }
                    Read::Window(_) => {
                        let previous_window = before.map(|p| p.window.clone()).unwrap_or_default();
                        let mut change = scan.settled.clone();
                        for (bucket, n) in &scan.window {
                            *change.entry(bucket.clone()).or_insert(0) += n;
                        }
                        for (bucket, n) in &previous_window {
                            *change.entry(bucket.clone()).or_insert(0) -= n;
                        }
                        change.retain(|_, n| *n != 0);
                        let counted: i64 = change.values().sum();
                        session.add_buckets(part, change)?;
                        let advanced = tracking.advanced(part, &scan, counted, delta);
                        if advanced.stale && recount_now(part) {
                            // Drifted (rows committed behind the window,
                            // space reused): cheap enough to settle now.
                            let whole = session.read_whole(part)?;
                            summary.rows_read += whole.rows_read;
                            session.replace_buckets(part, whole.all_buckets())?;
                            Tracking::recounted(part, &whole)
                        } else {
                            advanced
                        }
                    }
                };
            } else {
                tracking.window_start = Some(window_start_for(part.heap_pages()));
            }
            let seen = scan
                .max_key
                .as_deref()
                .and_then(|t| table.key_type.parse_value(t).ok())
                .map(|v| v.raw);
            let previous = before.and_then(|p| p.frontier_raw);
            match read {
                // A sample may miss the highest key; the index does not.
                Read::Whole if part.has_key_index && scan.sampled => {
                    session.indexed_max(part)?.or(seen)
                }
                Read::Whole => seen,
                // Rows only arrived (or the next recount will settle it).
                Read::Window(_) => seen.max(previous),
            }
            .or(previous)
        } else if changed && part.heap_bytes == 0 {
            // Emptied (TRUNCATE): its buckets are gone too.
            if table.key_type.is_temporal() && before.is_some() {
                session.replace_buckets(part, BTreeMap::new())?;
            }
            tracking = Tracking::emptied();
            None
        } else {
            before.and_then(|p| p.frontier_raw)
        };
        // DEFAULT is counted exactly while it is small (at most
        // EXACT_COUNT_MAX_PAGES): "is it empty" must not wait for statistics.
        let live_rows = if part.is_default && part.heap_pages() <= EXACT_COUNT_MAX_PAGES {
            let rows = session.exact_count(&part.name)?;
            summary.rows_read += rows;
            rows
        } else {
            part.live_rows
        };
        if part.is_default {
            summary.rows_in_default = live_rows;
            default_inserted += delta.inserted;
        }
        samples.counters.push(
            part,
            &epoch,
            frontier_raw,
            sampled.own_scans_left,
            &tracking,
        );
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
    history::learn_arrivals(
        table,
        frontiers_before,
        history::frontiers(table)?,
        default_inserted,
        summary.rows_inserted,
    )?;
    summary.queries = session.queries;
    Ok(summary)
}

/// How a changed partition is read this cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Counted whole: first time, heap rewritten, or a recount is due.
    Whole,
    /// The pages from this one on: the window and what arrived after it.
    Window(i64),
}

/// Where the counting of a partition stands after this cycle (written to
/// `partition_counters`).
#[derive(Clone, Debug, Default)]
struct Tracking {
    window_start: Option<i64>,
    window: BTreeMap<String, i64>,
    counted_rows: i64,
    inserted_rows: i64,
    recounted: bool,
    stale: bool,
}

/// The first page of the window once the heap has `pages` pages.
fn window_start_for(pages: i64) -> i64 {
    (pages - WINDOW_PAGES).max(0)
}

impl Tracking {
    /// Nothing read this cycle: as it was.
    fn carried(before: Option<&Previous>) -> Tracking {
        match before {
            Some(p) => Tracking {
                window_start: p.window_start,
                window: p.window.clone(),
                counted_rows: p.counted_rows,
                inserted_rows: p.inserted_rows,
                recounted: false,
                stale: p.stale,
            },
            None => Tracking::default(),
        }
    }

    fn emptied() -> Tracking {
        Tracking::default()
    }

    fn recounted(part: &Observed, scan: &Scan) -> Tracking {
        Tracking {
            window_start: Some(window_start_for(part.heap_pages())),
            window: scan.window.clone(),
            recounted: true,
            ..Tracking::default()
        }
    }

    /// After a window read that changed the counts by `counted` rows.
    fn advanced(mut self, part: &Observed, scan: &Scan, counted: i64, delta: Counters) -> Tracking {
        self.window_start =
            Some(window_start_for(part.heap_pages()).max(self.window_start.unwrap_or(0)));
        self.window = scan.window.clone();
        self.counted_rows += counted;
        self.inserted_rows += delta.inserted;
        let missing = self.inserted_rows - self.counted_rows;
        self.stale = self.stale
            || delta.updated > 0
            || delta.deleted > 0
            || missing > DRIFT_ROWS.max(self.counted_rows / 100);
        self
    }
}

/// Whether a partition whose counts drifted is recounted at once: small
/// ones, and DEFAULT (it loses rows to every migration batch, which must
/// not stay counted twice) while that stays cheap.
fn recount_now(part: &Observed) -> bool {
    part.heap_pages() <= EXACT_COUNT_MAX_PAGES
        || (part.is_default && part.heap_pages() <= EXACT_FULL_PAGES)
}

fn plan_read(
    part: &Observed,
    before: Option<&Previous>,
    delta: Counters,
    rewritten: bool,
    temporal: bool,
) -> Read {
    let Some(before) = before else {
        return Read::Whole;
    };
    let Some(window_start) = before.window_start else {
        return Read::Whole;
    };
    if rewritten || before.filenode != Some(part.filenode) {
        return Read::Whole;
    }
    let stale = before.stale || delta.updated > 0 || delta.deleted > 0;
    // Integer keys keep no counts, only the frontier: read whole when rows
    // went (the highest key may have been deleted), else the newest pages.
    if !temporal && !(delta.updated > 0 || delta.deleted > 0) {
        return Read::Window(window_start);
    }
    let recount_due = recount_now(part)
        || before
            .since_recount
            .is_none_or(|seconds| seconds >= RECOUNT_INTERVAL_SECONDS);
    if stale && recount_due {
        return Read::Whole;
    }
    Read::Window(window_start)
}

/// The SQL expression for a key's bucket, as timestamptz (UTC).
fn bucket_expression(key_type: KeyType, column: &str) -> String {
    match key_type {
        KeyType::TimestampTz => format!("pg_catalog.date_trunc('hour', {column})"),
        KeyType::Timestamp => {
            format!("pg_catalog.timezone('UTC', pg_catalog.date_trunc('hour', {column}))")
        }
        // A date past the last a timestamp holds (294276 AD) belongs to no hour.
        _ => format!(
            "CASE WHEN {column} < '294277-01-01'::pg_catalog.date
                  THEN pg_catalog.timezone('UTC', {column}::pg_catalog.timestamp) END"
        ),
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
                    heap_bytes: get(&row, 13)?,
                    has_key_index: get(&row, 14)?,
                    filenode: get(&row, 16)?,
                });
            }
            Ok((observed, epoch))
        })
    }

    fn previous(&mut self) -> Result<HashMap<pg_sys::Oid, Previous>> {
        self.queries += 1;
        stored_counters::previous(self.table.oid)
    }

    /// Highest key through the index on the key (a few pages).
    fn indexed_max(&mut self, part: &Observed) -> Result<Option<i64>> {
        let column = quote_identifier(&self.table.key_column);
        self.queries += 1;
        let text = Spi::get_one::<String>(&format!(
            "SELECT pg_catalog.max({column})::text FROM {}",
            part.name.quoted()
        ))?;
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

    /// The whole partition: exact up to `EXACT_FULL_PAGES`, estimated from
    /// a sample beyond (the window always exactly).
    fn read_whole(&mut self, part: &Observed) -> Result<Scan> {
        let pages = part.heap_pages();
        let window = window_start_for(pages);
        if pages <= EXACT_FULL_PAGES {
            return self.scan(part, 0, window);
        }
        let mut scan = self.scan(part, window, window)?;
        let settled_rows = part.live_rows - scan.rows();
        self.estimate_settled(part, 0, window, settled_rows, &mut scan)?;
        Ok(scan)
    }

    /// The pages from `start` on: the old window and what arrived after it,
    /// exactly while up to `EXACT_TAIL_PAGES` pages settle, those estimated
    /// from a sample beyond.
    fn read_window(
        &mut self,
        part: &Observed,
        start: i64,
        inserted: i64,
        window_before: i64,
    ) -> Result<Scan> {
        let window = window_start_for(part.heap_pages()).max(start);
        if window - start <= EXACT_TAIL_PAGES {
            return self.scan(part, start, window);
        }
        let mut scan = self.scan(part, window, window)?;
        // What the insert counter says arrived, less what the window gained.
        let settling = inserted - (scan.rows() - window_before);
        self.estimate_settled(part, start, window, settling, &mut scan)?;
        Ok(scan)
    }

    /// Counts the tuples from page `from` on per key-time bucket, apart for
    /// the pages before `window` (settled) and from it on (the window), with
    /// the highest key.
    fn scan(&mut self, part: &Observed, from: i64, window: i64) -> Result<Scan> {
        let column = quote_identifier(&self.table.key_column);
        let bucket = if self.table.key_type.is_temporal() {
            // ±infinity belongs to no hour.
            format!(
                "CASE WHEN pg_catalog.isfinite({column}) THEN ({})::text END",
                bucket_expression(self.table.key_type, &column)
            )
        } else {
            "NULL::text".to_string()
        };
        let sql = format!(
            "SELECT {bucket}, ctid >= {}, pg_catalog.count(*), pg_catalog.max({column})::text
               FROM {} WHERE ctid >= {} GROUP BY 1, 2",
            page_start(window),
            part.name.quoted(),
            page_start(from),
        );
        self.queries += 1;
        let mut scan = Scan::default();
        Spi::connect(|client| {
            for row in client.select(&sql, None, &[])? {
                let rows = get::<i64>(&row, 3)?;
                scan.rows_read += rows;
                if let Some(bucket) = row.get::<String>(1)? {
                    let in_window = row.get::<bool>(2)?.unwrap_or(true);
                    let target = if in_window {
                        &mut scan.window
                    } else {
                        &mut scan.settled
                    };
                    *target.entry(bucket).or_insert(0) += rows;
                }
                if let Some(text) = row.get::<String>(4)? {
                    scan.see_key(self.table.key_type, text);
                }
            }
            Ok::<_, PredictError>(())
        })?;
        Ok(scan)
    }

    /// Estimates the rows per bucket of pages `from..window` from
    /// `SAMPLE_PAGES` of them, at most `rows` in all, into `scan.settled`.
    fn estimate_settled(
        &mut self,
        part: &Observed,
        from: i64,
        window: i64,
        rows: i64,
        scan: &mut Scan,
    ) -> Result<()> {
        scan.sampled = true;
        if !self.table.key_type.is_temporal() || window <= from {
            return Ok(());
        }
        let pages = sampling::pages_to_sample(from, window - 1, SAMPLE_PAGES);
        let column = quote_identifier(&self.table.key_column);
        // Page and raw key computed by the server: no text to parse.
        let raw = match self.table.key_type {
            KeyType::Date => format!("({column} - DATE '2000-01-01')::bigint"),
            _ => format!(
                "((pg_catalog.date_part('epoch', {column}) - {}) * 1000000)::bigint",
                calendar::UNIX_TO_PG_EPOCH_SECONDS
            ),
        };
        let arms: Vec<String> = pages
            .iter()
            .map(|&page| {
                format!(
                    "SELECT {page}::bigint, CASE WHEN pg_catalog.isfinite({column}) THEN {raw} END
                       FROM {} WHERE ctid >= {} AND ctid < {}",
                    part.name.quoted(),
                    page_start(page),
                    page_start(page + 1)
                )
            })
            .collect();
        self.queries += 1;
        let mut by_page: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        Spi::connect(|client| {
            for row in client.select(&arms.join(" UNION ALL "), None, &[])? {
                scan.rows_read += 1;
                if let (Some(page), Some(key)) = (row.get::<i64>(1)?, row.get::<i64>(2)?) {
                    by_page.entry(page).or_default().push(key);
                }
            }
            Ok::<_, PredictError>(())
        })?;
        let mut per_page: Vec<usize> = by_page.values().map(Vec::len).collect();
        per_page.sort_unstable();
        let Some(&typical) = per_page.get(per_page.len() / 2) else {
            return Ok(());
        };
        // The pages hold about this many rows; the insert counter, which also
        // counts aborted inserts, only caps it.
        let estimated = typical as i64 * (window - from);
        let total = if rows > 0 {
            estimated.min(rows)
        } else {
            estimated
        };
        let samples: Vec<PageSample> = by_page
            .into_iter()
            .map(|(page, keys)| PageSample { page, keys })
            .collect();
        let date = self.table.key_type == KeyType::Date;
        let width = if date { 1 } else { MICROS_PER_HOUR };
        for (bucket, n) in sampling::estimate_buckets(&samples, width, total) {
            let micros = if date {
                bucket * MICROS_PER_DAY
            } else {
                bucket
            };
            *scan
                .settled
                .entry(calendar::format_iso_timestamp(micros, true))
                .or_insert(0) += n;
        }
        Ok(())
    }

    /// Replaces every bucket count of `part`.
    fn replace_buckets(&mut self, part: &Observed, fresh: BTreeMap<String, i64>) -> Result<()> {
        self.queries += 1;
        stored_counters::forget_buckets(self.table.oid, part.oid)?;
        self.add_buckets(part, fresh)
    }

    /// Adds rows (or takes them away) to bucket counts of `part`.
    fn add_buckets(&mut self, part: &Observed, fresh: BTreeMap<String, i64>) -> Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        self.queries += 1;
        stored_counters::add_buckets(self.table.oid, part.oid, fresh)
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
        if !batch.partition.is_empty() {
            self.queries += 1;
            // Integer keys also keep the hour's frontier: the forecast reads
            // one row per hour, whatever the naptime.
            stored_counters::record_samples(
                self.table.oid,
                batch,
                !self.table.key_type.is_temporal(),
            )?;
        }
        self.queries += 1;
        stored_counters::record_counters(self.table.oid, &batch.counters)
    }

    /// Drops bookkeeping of partitions that were detached or dropped.
    fn forget_detached(&mut self, observed: &[Observed]) -> Result<()> {
        let current: Vec<pg_sys::Oid> = observed.iter().map(|p| p.oid).collect();
        self.queries += 2;
        stored_counters::forget_partitions_except(self.table.oid, current)
    }

    /// The frontier outside DEFAULT as a time (time keys): key-time
    /// buckets are kept relative to it, so an outlier key in DEFAULT far in
    /// the future cannot make the real history look old.
    fn frontier_time(&self) -> Result<Option<pgrx::datum::TimestampWithTimeZone>> {
        let micros = match (self.table.key_type, history::frontiers(self.table)?.0) {
            (KeyType::Date, Some(days)) => days.checked_mul(MICROS_PER_DAY),
            (KeyType::Timestamp | KeyType::TimestampTz, Some(micros)) => Some(micros),
            _ => None,
        };
        Ok(micros
            .filter(|m| backend::TIMESTAMP_RANGE.contains(m))
            .and_then(backend::timestamptz))
    }

    /// Keeps history bounded by the table's `retention`: samples and
    /// frontier hours by sample time, key-time buckets relative to the
    /// newest bucket (so a replay of old data is kept as long as real-time
    /// data would be).
    fn apply_retention(&mut self) -> Result<()> {
        self.queries += 2;
        stored_counters::apply_retention(self.table.oid, self.frontier_time()?)
    }
}

impl CounterBatch {
    fn push(
        &mut self,
        part: &Observed,
        epoch: &str,
        frontier_raw: Option<i64>,
        own_scans: (i64, i64),
        tracking: &Tracking,
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
        self.window_start.push(tracking.window_start);
        self.window
            .push(serde_json::to_string(&tracking.window).unwrap_or_else(|_| "{}".into()));
        self.counted_rows.push(tracking.counted_rows);
        self.inserted_rows.push(tracking.inserted_rows);
        self.filenode.push(part.filenode);
        self.recounted.push(tracking.recounted);
        self.stale.push(tracking.stale);
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

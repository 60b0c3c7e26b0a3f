//! The history the collector keeps of each partition (cycle step 1):
//! `partition_counters` (where its counting stands), `samples` (what the
//! statistics showed at each sample), `key_time_counts` (rows per hour or
//! day of key time) and `frontier_hours` (an integer key's frontier, hour
//! by hour); and the forecast's reads of them.

use std::collections::{BTreeMap, HashMap};

use partition_core::calendar::UNIX_TO_PG_EPOCH_SECONDS;
use partition_core::counters::{Counters, PreviousSample};
use pgrx::prelude::*;

use super::{count_read, write, Family, StateRow};
use crate::error::{PredictError, Result};

/// Where the counting of a partition stood after the last cycle.
pub struct Previous {
    pub sample: PreviousSample,
    pub frontier_raw: Option<i64>,
    /// Where the re-read window starts, and the heap it is in.
    pub window_start: Option<i64>,
    pub filenode: Option<pg_sys::Oid>,
    /// Rows per bucket found in the window when it was last read.
    pub window: BTreeMap<String, i64>,
    /// Since the last whole count: rows counted, and rows the insert
    /// counter reported.
    pub counted_rows: i64,
    pub inserted_rows: i64,
    /// Seconds since the last whole count.
    pub since_recount: Option<f64>,
    /// The counts may have drifted; a whole count is due.
    pub stale: bool,
}

const PREVIOUS: &str = "
    SELECT partition, epoch, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, idx_scan, frontier_raw,
           own_seq_scans, own_idx_scans, window_start, filenode,
           pg_catalog.date_part('epoch', pg_catalog.now() - recounted_at), stale,
           window_rows::text, counted_rows, inserted_rows
      FROM partition_predict.partition_counters
     WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass";

/// What the last cycle left of each partition's counting.
pub fn previous(parent: pg_sys::Oid) -> Result<HashMap<pg_sys::Oid, Previous>> {
    count_read(Family::History);
    Spi::connect(|client| {
        let mut previous = HashMap::new();
        for row in client.select(PREVIOUS, None, &[parent.into()])? {
            let r = StateRow::of("partition_counters", &row);
            previous.insert(
                r.required(1, "partition")?,
                Previous {
                    sample: PreviousSample {
                        epoch: r.required(2, "epoch")?,
                        counters: Counters {
                            inserted: r.required(3, "n_tup_ins")?,
                            updated: r.required(4, "n_tup_upd")?,
                            deleted: r.required(5, "n_tup_del")?,
                            seq_scans: r.required(6, "seq_scan")?,
                            idx_scans: r.required(7, "idx_scan")?,
                        },
                        own_scans: (
                            r.required(9, "own_seq_scans")?,
                            r.required(10, "own_idx_scans")?,
                        ),
                    },
                    frontier_raw: r.optional(8)?,
                    window_start: r.optional(11)?,
                    filenode: r.optional(12)?,
                    since_recount: r.optional(13)?,
                    stale: r.required(14, "stale")?,
                    window: r
                        .optional::<String>(15)?
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_default(),
                    counted_rows: r.required(16, "counted_rows")?,
                    inserted_rows: r.required(17, "inserted_rows")?,
                },
            );
        }
        Ok(previous)
    })
}

/// Forgets every bucket count of `partition` (before it is counted whole).
pub fn forget_buckets(parent: pg_sys::Oid, partition: pg_sys::Oid) -> Result<()> {
    write(
        "DELETE FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2",
        &[parent.into(), partition.into()],
    )
}

/// Adds rows (or takes them away) to bucket counts of `partition`, by
/// bucket start (`timestamptz` text).
pub fn add_buckets(
    parent: pg_sys::Oid,
    partition: pg_sys::Oid,
    change: BTreeMap<String, i64>,
) -> Result<()> {
    let (buckets, counts): (Vec<String>, Vec<i64>) = change.into_iter().unzip();
    write(
        "INSERT INTO partition_predict.key_time_counts AS k (parent, partition, bucket_start, rows, counted_at)
         SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, u.b::timestamptz, u.n, pg_catalog.now()
           FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bigint[])) AS u(b, n)
          WHERE u.n > 0
             OR EXISTS (SELECT 1 FROM partition_predict.key_time_counts e
                         WHERE e.parent = $1::pg_catalog.oid::pg_catalog.regclass AND e.partition = $2
                           AND e.bucket_start = u.b::timestamptz)
         ON CONFLICT (parent, partition, bucket_start)
            DO UPDATE SET rows = GREATEST(k.rows + EXCLUDED.rows, 0), counted_at = EXCLUDED.counted_at",
        &[parent.into(), partition.into(), buckets.into(), counts.into()],
    )
}

/// Rows to write, as columns (they go to PostgreSQL as arrays through unnest).
#[derive(Default)]
pub struct SampleBatch {
    pub partition: Vec<pg_sys::Oid>,
    pub partition_name: Vec<String>,
    pub is_default: Vec<bool>,
    pub inserted: Vec<i64>,
    pub updated: Vec<i64>,
    pub deleted: Vec<i64>,
    pub seq_scans: Vec<i64>,
    pub idx_scans: Vec<i64>,
    pub live_rows: Vec<i64>,
    pub size_bytes: Vec<i64>,
    pub frontier: Vec<Option<String>>,
    pub frontier_raw: Vec<Option<i64>>,
    pub counters: CounterBatch,
}

#[derive(Default)]
pub struct CounterBatch {
    pub partition: Vec<pg_sys::Oid>,
    pub epoch: Vec<String>,
    pub inserted: Vec<i64>,
    pub updated: Vec<i64>,
    pub deleted: Vec<i64>,
    pub seq_scans: Vec<i64>,
    pub idx_scans: Vec<i64>,
    pub frontier_raw: Vec<Option<i64>>,
    pub own_seq_scans: Vec<i64>,
    pub own_idx_scans: Vec<i64>,
    pub window_start: Vec<Option<i64>>,
    pub window: Vec<String>,
    pub counted_rows: Vec<i64>,
    pub inserted_rows: Vec<i64>,
    pub filenode: Vec<pg_sys::Oid>,
    pub recounted: Vec<bool>,
    pub stale: Vec<bool>,
}

/// Records a sample of every partition that changed; with
/// `with_frontier_hour`, also the hour's frontier (integer keys: the
/// forecast reads one row per hour, whatever the naptime).
pub fn record_samples(
    parent: pg_sys::Oid,
    batch: &SampleBatch,
    with_frontier_hour: bool,
) -> Result<()> {
    write(
    "WITH sampled AS (
         INSERT INTO partition_predict.samples
                (parent, partition, partition_name, sampled_at, is_default, rows_inserted, rows_updated,
                 rows_deleted, seq_scans, idx_scans, live_rows, size_bytes, frontier, frontier_raw)
         SELECT $1::pg_catalog.oid::pg_catalog.regclass, u.partition, u.name, pg_catalog.now(),
                u.is_default, u.ins, u.upd, u.del, u.seq, u.idx, u.live, u.size, u.frontier, u.raw
           FROM ROWS FROM (pg_catalog.unnest($2::oid[]), pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bool[]), pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[]), pg_catalog.unnest($7::bigint[]), pg_catalog.unnest($8::bigint[]), pg_catalog.unnest($9::bigint[]), pg_catalog.unnest($10::bigint[]), pg_catalog.unnest($11::bigint[]), pg_catalog.unnest($12::text[]), pg_catalog.unnest($13::bigint[]))
                AS u(partition, name, is_default, ins, upd, del, seq, idx, live, size, frontier, raw)
         RETURNING frontier_raw)
     INSERT INTO partition_predict.frontier_hours AS f (parent, hour, sampled_at, frontier_raw)
     SELECT $1::pg_catalog.oid::pg_catalog.regclass, pg_catalog.date_trunc('hour', pg_catalog.now()),
            pg_catalog.now(), pg_catalog.max(s.frontier_raw)
       FROM sampled s
      WHERE $14
     HAVING pg_catalog.max(s.frontier_raw) IS NOT NULL
     ON CONFLICT (parent, hour) DO UPDATE
        SET sampled_at = EXCLUDED.sampled_at,
            frontier_raw = GREATEST(f.frontier_raw, EXCLUDED.frontier_raw)",
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
        with_frontier_hour.into(),
    ],
    )
}

/// Records where the counting of every partition stands.
pub fn record_counters(parent: pg_sys::Oid, c: &CounterBatch) -> Result<()> {
    write(
    "INSERT INTO partition_predict.partition_counters AS pc
            (parent, partition, epoch, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, idx_scan, frontier_raw,
             own_seq_scans, own_idx_scans, window_start, window_rows, counted_rows, inserted_rows,
             filenode, recounted_at, stale)
     SELECT $1::pg_catalog.oid::pg_catalog.regclass, u.partition, u.epoch, u.ins, u.upd, u.del, u.seq,
            u.idx, u.frontier_raw, u.own_seq, u.own_idx, u.window_start, u.window_rows::jsonb,
            u.counted_rows, u.inserted_rows, u.filenode,
            CASE WHEN u.recounted THEN pg_catalog.now() END, u.stale
       FROM ROWS FROM (pg_catalog.unnest($2::oid[]), pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[]), pg_catalog.unnest($7::bigint[]), pg_catalog.unnest($8::bigint[]), pg_catalog.unnest($9::bigint[]), pg_catalog.unnest($10::bigint[]), pg_catalog.unnest($11::bigint[]), pg_catalog.unnest($12::bigint[]), pg_catalog.unnest($13::text[]), pg_catalog.unnest($14::bigint[]), pg_catalog.unnest($15::bigint[]), pg_catalog.unnest($16::oid[]), pg_catalog.unnest($17::bool[]), pg_catalog.unnest($18::bool[]))
            AS u(partition, epoch, ins, upd, del, seq, idx, frontier_raw, own_seq, own_idx, window_start,
                 window_rows, counted_rows, inserted_rows, filenode, recounted, stale)
     ON CONFLICT (parent, partition) DO UPDATE
        SET epoch = EXCLUDED.epoch, n_tup_ins = EXCLUDED.n_tup_ins, n_tup_upd = EXCLUDED.n_tup_upd,
            n_tup_del = EXCLUDED.n_tup_del, seq_scan = EXCLUDED.seq_scan, idx_scan = EXCLUDED.idx_scan,
            frontier_raw = EXCLUDED.frontier_raw, own_seq_scans = EXCLUDED.own_seq_scans,
            own_idx_scans = EXCLUDED.own_idx_scans, window_start = EXCLUDED.window_start,
            window_rows = EXCLUDED.window_rows, counted_rows = EXCLUDED.counted_rows,
            inserted_rows = EXCLUDED.inserted_rows,
            filenode = EXCLUDED.filenode,
            recounted_at = COALESCE(EXCLUDED.recounted_at, pc.recounted_at), stale = EXCLUDED.stale",
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
        c.window_start.clone().into(),
        c.window.clone().into(),
        c.counted_rows.clone().into(),
        c.inserted_rows.clone().into(),
        c.filenode.clone().into(),
        c.recounted.clone().into(),
        c.stale.clone().into(),
    ],
    )
}

/// Drops the bookkeeping of partitions other than `current` (detached or
/// dropped ones).
pub fn forget_partitions_except(parent: pg_sys::Oid, current: Vec<pg_sys::Oid>) -> Result<()> {
    write(
        "DELETE FROM partition_predict.partition_counters
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> ALL ($2::oid[])",
        &[parent.into(), current.clone().into()],
    )?;
    write(
        "DELETE FROM partition_predict.key_time_counts
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> ALL ($2::oid[])",
        &[parent.into(), current.into()],
    )
}

/// Keeps history bounded by the table's `history_retention`: samples and
/// frontier hours by sample time, key-time buckets relative to the newest
/// bucket (so a replay of old data is kept as long as real-time data would
/// be) or to `frontier_time`, the frontier outside DEFAULT (an outlier key
/// in DEFAULT far in the future cannot make the real history look old).
pub fn apply_retention(
    parent: pg_sys::Oid,
    frontier_time: Option<pgrx::datum::TimestampWithTimeZone>,
) -> Result<()> {
    write(
        "WITH hours AS (
         DELETE FROM partition_predict.frontier_hours f
          USING partition_predict.config c
          WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass AND c.parent = f.parent
            AND f.hour < pg_catalog.now() - c.history_retention)
     DELETE FROM partition_predict.samples s
      USING partition_predict.config c
      WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND c.parent = s.parent
        AND s.sampled_at < pg_catalog.now() - c.history_retention",
        &[parent.into()],
    )?;
    write(
    // Alerts stay as long as the history they describe, counted
    // from when they ended; open ones stay until resolved.
    "WITH alerts AS (
         DELETE FROM partition_predict.alert_log a
          WHERE a.parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND a.resolved_at < pg_catalog.now() - (SELECT c.history_retention FROM partition_predict.config c
                                                   WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass))
     DELETE FROM partition_predict.key_time_counts k
      WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
        AND k.bucket_start < LEAST((SELECT pg_catalog.max(m.bucket_start) FROM partition_predict.key_time_counts m
                                     WHERE m.parent = $1::pg_catalog.oid::pg_catalog.regclass),
                                   COALESCE($2::timestamptz, pg_catalog.now() + interval '30 days'))
                           - (SELECT c.history_retention FROM partition_predict.config c
                               WHERE c.parent = $1::pg_catalog.oid::pg_catalog.regclass)",
    &[parent.into(), frontier_time.into()],
    )
}

/// The key-time series the forecast reads: rows per step of
/// `step_seconds` (numbered from the PostgreSQL epoch) over the `window`
/// steps up to the newest bucket before `outliers_from` (outlier keys are
/// counted in their buckets too, but the series ends where plausible keys
/// end); and whether older buckets exist.
pub fn key_time_steps(
    parent: pg_sys::Oid,
    step_seconds: i64,
    window: i64,
    outliers_from: Option<pgrx::datum::TimestampWithTimeZone>,
) -> Result<(Vec<(i64, f64)>, bool)> {
    count_read(Family::History);
    Spi::connect(|client| {
        let result = client.select(
            "WITH newest AS (SELECT pg_catalog.max(bucket_start) AS b FROM partition_predict.key_time_counts
                              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                                AND ($5::timestamptz IS NULL OR bucket_start < $5)),
                  older AS (SELECT EXISTS (SELECT 1 FROM partition_predict.key_time_counts k, newest n
                                           WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
                                             AND k.bucket_start <= n.b - pg_catalog.make_interval(secs => ($3 * $4)::float8)) AS e)
             SELECT (pg_catalog.date_part('epoch', k.bucket_start)::bigint - $2) / $3,
                    pg_catalog.sum(k.rows)::float8, pg_catalog.bool_or(o.e)
               FROM partition_predict.key_time_counts k, newest n, older o
              WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND k.bucket_start > n.b - pg_catalog.make_interval(secs => ($3 * $4)::float8)
                AND k.bucket_start <= n.b
              GROUP BY k.bucket_start",
            None,
            &[
                parent.into(),
                UNIX_TO_PG_EPOCH_SECONDS.into(),
                step_seconds.into(),
                window.into(),
                outliers_from.into(),
            ],
        )?;
        let mut older = false;
        let rows = result
            .map(|row| {
                let r = StateRow::of("key_time_counts", &row);
                older |= r.optional::<bool>(3)?.unwrap_or(false);
                Ok((r.required(1, "bucket_start")?, r.required(2, "rows")?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok::<_, PredictError>((rows, older))
    })
}

/// An integer key's frontier hour by hour over the last `hours`: `(hours
/// since the PostgreSQL epoch at the sample, frontier)`, in order.
pub fn frontier_hours(parent: pg_sys::Oid, hours: i32) -> Result<Vec<(f64, f64)>> {
    count_read(Family::History);
    Spi::connect(|client| {
        let result = client.select(
            "SELECT (pg_catalog.date_part('epoch', sampled_at) - $2) / 3600.0, frontier_raw::float8
               FROM partition_predict.frontier_hours
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND hour > pg_catalog.now() - pg_catalog.make_interval(hours => $3)
              ORDER BY hour",
            None,
            &[
                parent.into(),
                (UNIX_TO_PG_EPOCH_SECONDS as f64).into(),
                hours.into(),
            ],
        )?;
        result
            .map(|row| {
                let r = StateRow::of("frontier_hours", &row);
                Ok((r.required(1, "sampled_at")?, r.required(2, "frontier_raw")?))
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// Rows per key of an integer key, from recent activity: rows inserted
/// over the same samples' advance of the frontier (1 when unknown).
pub fn rows_per_key(parent: pg_sys::Oid) -> Result<f64> {
    count_read(Family::History);
    Ok(crate::pg::spi::select_one::<f64>(
        "SELECT (SELECT (pg_catalog.sum(w.inserted) - (pg_catalog.array_agg(w.inserted ORDER BY w.sampled_at))[1])::float8
                        / NULLIF(pg_catalog.max(w.frontier) - pg_catalog.min(w.frontier), 0)
                   FROM (SELECT sampled_at, pg_catalog.sum(rows_inserted) AS inserted, pg_catalog.max(frontier_raw) AS frontier
                           FROM partition_predict.samples
                          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND NOT is_default
                          GROUP BY sampled_at ORDER BY sampled_at DESC LIMIT 100) w)",
        &[parent.into()],
    )?
    // An aggregate: NULL without samples, or while the frontier stood still.
    .filter(|r| r.is_finite() && *r > 0.0)
    .unwrap_or(1.0))
}

/// Caps the samples of a table at `samples_kept` rows and its frontier
/// hours at `hours_kept` (retention by age is `apply_retention`'s).
pub fn prune_samples(parent: pg_sys::Oid, samples_kept: i64, hours_kept: i64) -> Result<()> {
    write(
        "WITH hours AS (
             DELETE FROM partition_predict.frontier_hours f
              WHERE f.parent = $1::pg_catalog.oid::pg_catalog.regclass
                AND f.hour < (SELECT l.hour FROM partition_predict.frontier_hours l
                               WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass
                               ORDER BY l.hour DESC OFFSET $3 LIMIT 1))
         DELETE FROM partition_predict.samples s
          WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass
            AND s.sampled_at < (SELECT l.sampled_at FROM partition_predict.samples l
                                 WHERE l.parent = $1::pg_catalog.oid::pg_catalog.regclass
                                 ORDER BY l.sampled_at DESC OFFSET $2 LIMIT 1)",
        &[parent.into(), samples_kept.into(), hours_kept.into()],
    )
}

/// What the statistics said of `partition`'s writes when last sampled
/// (inserted/updated/deleted/heap), to tell whether it changed since.
pub fn write_signature(parent: pg_sys::Oid, partition: pg_sys::Oid) -> Result<Option<String>> {
    count_read(Family::History);
    Ok(crate::pg::spi::select_one::<String>(
        "SELECT (SELECT n_tup_ins || '/' || n_tup_upd || '/' || n_tup_del || '/' || COALESCE(filenode::text, '')
                   FROM partition_predict.partition_counters
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2)",
        &[parent.into(), partition.into()],
    )?)
}

/// Scans of `partition` by the extension itself (`seq`, `idx`), for the
/// next sample to discount from the table's traffic.
pub fn add_own_scans(
    parent: pg_sys::Oid,
    partition: pg_sys::Oid,
    seq: i64,
    idx: i64,
) -> Result<()> {
    write(
        "UPDATE partition_predict.partition_counters
            SET own_seq_scans = own_seq_scans + $3, own_idx_scans = own_idx_scans + $4
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2",
        &[parent.into(), partition.into(), seq.into(), idx.into()],
    )
}

-- What planning and activation read of one table's history, in one
-- statement (state::history::History::read). $1 the table, $2 its DEFAULT
-- partition, $3 key units per day (NULL for integer keys), $4 and $5 the
-- keys whose midnight or instant a timestamp holds.
WITH frontiers AS MATERIALIZED (
    SELECT (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
             WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition <> $2) AS outside,
           (SELECT pg_catalog.max(frontier_raw) FROM partition_predict.partition_counters
             WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND partition = $2) AS in_default),
frontier AS MATERIALIZED (
    SELECT f.outside, f.in_default,
           -- Whole days and the microseconds left, added to a timestamp
           -- without time zone and read as UTC: exact, whatever the
           -- session's TimeZone.
           CASE WHEN $3::bigint IS NOT NULL AND COALESCE(f.outside, f.in_default) BETWEEN $4 AND $5
                THEN (pg_catalog.timestamp '2000-01-01 00:00:00'
                      + (COALESCE(f.outside, f.in_default) / $3::bigint) * interval '1 day'
                      + (COALESCE(f.outside, f.in_default) % $3::bigint) * interval '1 microsecond')
                     AT TIME ZONE 'UTC'
           END AS at
      FROM frontiers f)
SELECT f.outside, f.in_default,
       s.parent IS NOT NULL, s.arrival_reaches, s.reach_margin, s.released_low, s.released_high, s.arrival_rows,
       (SELECT pg_catalog.date_part('epoch', pg_catalog.max(b.bucket_start - b.previous))
          FROM (SELECT k.bucket_start, pg_catalog.lag(k.bucket_start) OVER (ORDER BY k.bucket_start) AS previous
                  FROM (SELECT DISTINCT bucket_start FROM partition_predict.key_time_counts
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass
                           AND bucket_start > f.at - interval '14 days'
                           AND bucket_start <= f.at) k) b),
       (SELECT pg_catalog.sum(k.rows)::float8 FROM partition_predict.key_time_counts k
         WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
           AND k.bucket_start > f.at - interval '28 days' AND k.bucket_start <= f.at),
       (SELECT pg_catalog.date_part('epoch', pg_catalog.min(k.bucket_start)) FROM partition_predict.key_time_counts k
         WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass
           AND k.bucket_start > f.at - interval '28 days' AND k.bucket_start <= f.at),
       (SELECT pg_catalog.date_part('epoch', pg_catalog.min(k.bucket_start)) FROM partition_predict.key_time_counts k
         WHERE k.parent = $1::pg_catalog.oid::pg_catalog.regclass AND f.at IS NOT NULL),
       CASE WHEN $3::bigint IS NULL THEN
         (SELECT (pg_catalog.sum(w.inserted) - (pg_catalog.array_agg(w.inserted ORDER BY w.sampled_at))[1])::float8
                 / NULLIF(pg_catalog.max(w.frontier) - pg_catalog.min(w.frontier), 0)
            FROM (SELECT sampled_at, pg_catalog.sum(rows_inserted) AS inserted, pg_catalog.max(frontier_raw) AS frontier
                    FROM partition_predict.samples
                   WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND NOT is_default
                   GROUP BY sampled_at ORDER BY sampled_at DESC LIMIT 100) w)
       END
  FROM frontier f
  LEFT JOIN partition_predict.table_state s ON s.parent = $1::pg_catalog.oid::pg_catalog.regclass

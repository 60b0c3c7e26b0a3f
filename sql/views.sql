-- The DBA-facing views. Runs last (finalize), after the Rust functions exist.
-- Each view shows only tables the querying role can read.

CREATE VIEW partition_predict.managed_tables AS
SELECT c.parent,
       a.attname                                     AS key_column,
       pg_catalog.format_type(a.atttypid, NULL)      AS key_type,
       c.target_rows,
       c.lookahead,
       c.min_span,
       c.max_span,
       NULLIF(pt.partdefid, 0)::pg_catalog.regclass  AS default_partition,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_inherits i
         WHERE i.inhparent = c.parent)               AS partitions,
       c.retention,
       pg_catalog.pg_get_userbyid(r.relowner)        AS owner,
       CASE WHEN s.last_error_at IS NOT NULL AND s.last_error_at >= s.last_cycle_end THEN 'failing'
            WHEN s.last_cycle_end IS NULL THEN 'waiting for first cycle'
            ELSE 'ok' END                            AS state,
       s.last_cycle_start,
       s.last_cycle_end,
       s.cycles,
       s.failures,
       s.last_error,
       s.last_error_at,
       c.managed_since
  FROM partition_predict.config c
  JOIN pg_catalog.pg_class r               ON r.oid = c.parent
  LEFT JOIN partition_predict.table_state s ON s.parent = c.parent
  JOIN pg_catalog.pg_partitioned_table pt  ON pt.partrelid = c.parent
  JOIN pg_catalog.pg_attribute a           ON a.attrelid = c.parent AND a.attnum = pt.partattrs[0]
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT');

COMMENT ON VIEW partition_predict.managed_tables IS 'One row per table managed by pg_partition_predict.';

CREATE VIEW partition_predict.partitions AS
SELECT c.parent,
       b.partition,
       b.range_start,
       b.range_end,
       CASE WHEN b.is_default THEN 'default' ELSE 'active' END               AS state,
       COALESCE(s.n_live_tup, GREATEST(r.reltuples, 0)::bigint)             AS rows,
       pg_catalog.pg_total_relation_size(b.partition)                       AS size_bytes,
       pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(b.partition)) AS size,
       COALESCE(t.spcname, dt.spcname)                                      AS tablespace
  FROM partition_predict.config c
 CROSS JOIN LATERAL partition_predict.partition_bounds(c.parent) b
  JOIN pg_catalog.pg_class r                 ON r.oid = b.partition
  LEFT JOIN pg_catalog.pg_stat_all_tables s  ON s.relid = b.partition
  LEFT JOIN pg_catalog.pg_tablespace t       ON t.oid = r.reltablespace
  LEFT JOIN pg_catalog.pg_database d         ON d.datname = pg_catalog.current_database()
  LEFT JOIN pg_catalog.pg_tablespace dt      ON dt.oid = d.dattablespace
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT');

COMMENT ON VIEW partition_predict.partitions IS
    'One row per partition of a managed table. Bounds are text; timestamptz bounds are in UTC.';

CREATE VIEW partition_predict.stats_history AS
SELECT s.parent,
       s.partition::pg_catalog.regclass AS partition,
       s.partition_name,
       s.is_default,
       s.sampled_at,
       s.rows_inserted,
       s.rows_updated,
       s.rows_deleted,
       s.live_rows,
       s.size_bytes,
       s.seq_scans,
       s.idx_scans,
       s.frontier
  FROM partition_predict.samples s
 WHERE pg_catalog.has_table_privilege(s.parent, 'SELECT');

COMMENT ON VIEW partition_predict.stats_history IS
    'Per partition and sample: rows inserted/updated/deleted and scans since the previous sample, live rows, size, highest key. Partitions where nothing changed get no row.';

CREATE VIEW partition_predict.key_time_series AS
SELECT k.parent, k.bucket_start, pg_catalog.sum(k.rows)::bigint AS rows
  FROM partition_predict.key_time_counts k
 WHERE pg_catalog.has_table_privilege(k.parent, 'SELECT')
 GROUP BY k.parent, k.bucket_start;

COMMENT ON VIEW partition_predict.key_time_series IS
    'Time keys: rows per hour (per day for date keys) of the key''s own time.';

CREATE VIEW partition_predict.alerts AS
SELECT a.id, a.parent, a.kind, a.message, a.details, a.raised_at
  FROM partition_predict.alert_log a
 WHERE a.parent IS NULL OR pg_catalog.has_table_privilege(a.parent, 'SELECT');

CREATE VIEW partition_predict.worker_status AS
SELECT w.database,
       w.pid,
       CASE WHEN a.pid IS NULL THEN 'stopped' ELSE w.state END AS state,
       w.started_at,
       w.last_cycle_start,
       w.last_cycle_end,
       w.cycles,
       w.errors,
       w.last_error
  FROM partition_predict.worker_state w
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid;

GRANT SELECT ON partition_predict.managed_tables, partition_predict.partitions,
                partition_predict.stats_history, partition_predict.key_time_series,
                partition_predict.alerts, partition_predict.worker_status TO PUBLIC;

DO $$
BEGIN
    IF NOT partition_predict.is_preloaded() THEN
        RAISE WARNING 'pg_partition_predict is not in shared_preload_libraries: background workers and query routing are off'
            USING HINT = 'Add pg_partition_predict to shared_preload_libraries and restart PostgreSQL. The SQL functions work when called by hand.';
    END IF;
END
$$;

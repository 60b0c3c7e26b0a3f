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
       pg_catalog.pg_get_userbyid(r.relowner)        AS owner,
       c.managed_since
  FROM partition_predict.config c
  JOIN pg_catalog.pg_class r               ON r.oid = c.parent
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

GRANT SELECT ON partition_predict.managed_tables, partition_predict.partitions TO PUBLIC;

DO $$
BEGIN
    IF NOT partition_predict.is_preloaded() THEN
        RAISE WARNING 'pg_partition_predict is not in shared_preload_libraries: background workers and query routing are off'
            USING HINT = 'Add pg_partition_predict to shared_preload_libraries and restart PostgreSQL. The SQL functions work when called by hand.';
    END IF;
END
$$;

-- pg_partition_predict 0.2.0 -> 0.3.0
--
-- Run by ALTER EXTENSION pg_partition_predict UPDATE, after the 0.3.0
-- library is installed and PostgreSQL restarted with it; one transaction.
--
-- 0.2.0's views, row-security policies and procedures were made with the
-- installing role's search_path: an operator a role had planted in public
-- (an exact match where pg_catalog's needs a cast, such as oid = regclass)
-- was bound into them and then ran with the rights of whoever read the
-- view or called the procedure. Each is made again here, every name
-- resolved in pg_catalog or qualified; the procedures pin search_path in
-- each of their transactions.

\echo Use "ALTER EXTENSION pg_partition_predict UPDATE TO '0.3.0'" to load this file. \quit

SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- What this script makes belongs to the extension's owner, as the install
-- did, whichever superuser updates (see the 0.1.0 -> 0.2.0 script).
DO $$
DECLARE
    owner pg_catalog.pg_roles;
BEGIN
    SELECT r.* INTO owner FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
     WHERE e.extname = 'pg_partition_predict';
    IF owner.rolsuper THEN
        PERFORM pg_catalog.set_config('pg_partition_predict_update.role', pg_catalog.current_setting('role'), true);
        PERFORM pg_catalog.set_config('role', owner.rolname, false);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- The row-security policies of the state tables, parsed again
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['config', 'table_state', 'step_costs', 'samples', 'partition_counters', 'key_time_counts',
                             'alert_log', 'forecast_log', 'series_state', 'shadows', 'migrations', 'ingests',
                             'frontier_hours', 'archive_moves'] LOOP
        EXECUTE pg_catalog.format(
            'ALTER POLICY owner_rights ON partition_predict.%I USING (pg_catalog.pg_has_role(
                 (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), ''USAGE''))', t);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

-- The table the worker's last error concerns: worker_status shows the error
-- only to roles that may read it.
ALTER TABLE partition_predict.worker_state ADD COLUMN last_error_table oid;

-- 0.2.0 gave each partition it made the grants its parent had then: they
-- outlived a later REVOKE on the parent, and let a role write into a
-- partition waiting to be attached, past the parent's triggers and keys.
-- Partitions are read and written through the parent, whose grants decide:
-- the copies go, from every partition the extension made and still knows.
DO $$
DECLARE
    made record;
    grantee text;
BEGIN
    FOR made IN
        SELECT sh.shadow::pg_catalog.regclass AS rel
          FROM partition_predict.shadows sh
          JOIN pg_catalog.pg_class c ON c.oid = sh.shadow
          JOIN pg_catalog.pg_class p ON p.oid = sh.parent
         WHERE c.relowner = p.relowner
           AND (partition_predict.is_shadow_of(sh.shadow, sh.parent)
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                            WHERE i.inhrelid = sh.shadow AND i.inhparent = sh.parent))
    LOOP
        FOR grantee IN
            SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END
              FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
             WHERE c.oid = made.rel AND a.grantee <> c.relowner
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s CASCADE', made.rel, grantee);
        END LOOP;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- The SQL-language functions and the procedures (as in sql/procedures.sql)
-- ---------------------------------------------------------------------------

-- activate() with a value of the key's own type: formatted to ISO text in
-- UTC here, so the session's DateStyle and TimeZone cannot change its meaning.
CREATE OR REPLACE FUNCTION partition_predict.activate(parent regclass, up_to timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, to_char(up_to AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00')
$$;
CREATE OR REPLACE FUNCTION partition_predict.activate(parent regclass, up_to timestamp) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, to_char(up_to, 'YYYY-MM-DD HH24:MI:SS.US'))
$$;
-- As text in ISO: a date past what a timestamp holds (294276 AD) has no to_char().
CREATE OR REPLACE FUNCTION partition_predict.activate(parent regclass, up_to date) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, YMD' AS $$
    SELECT partition_predict.activate(parent, up_to::text)
$$;
CREATE OR REPLACE FUNCTION partition_predict.activate(parent regclass, up_to bigint) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, up_to::text)
$$;

-- Moves rows of DEFAULT into the partitions they belong in, one range at a
-- time, each range in one transaction with the ATTACH of its partition (so:
-- CALL it outside a transaction block). Every observer (queries, standbys,
-- dumps) sees each row in DEFAULT or in its partition, never elsewhere.
CREATE OR REPLACE PROCEDURE partition_predict.migrate_default(parent regclass, batch_rows integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    next   pg_catalog.text;
    reason pg_catalog.text;
BEGIN
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        next := partition_predict.migration_step(parent, batch_rows);
        COMMIT;
        EXIT WHEN next OPERATOR(pg_catalog.=) 'done';
        IF next OPERATOR(pg_catalog.=) 'yielded' THEN
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            SELECT m.message INTO reason FROM partition_predict.migrations m
             WHERE m.parent OPERATOR(pg_catalog.=) migrate_default.parent
             ORDER BY m.id DESC LIMIT 1;
            RAISE EXCEPTION 'moving rows of % out of DEFAULT was put off: %', parent,
                            COALESCE(reason, 'it could not take its locks')
                USING ERRCODE = 'lock_not_available',
                      HINT = 'Nothing moved: the rows are still in DEFAULT, where every query sees them. Call migrate_default() again when the blocking transaction has ended.';
        END IF;
    END LOOP;
END
$$;

-- The bulk-ingestion handler: the batch's partitions are made ready first
-- (created standalone, attached one per transaction), then the batch is
-- loaded in one statement, so readers see none of it or all of it and no
-- row passes through DEFAULT. Commits between stages: CALL it outside a
-- transaction block.
CREATE OR REPLACE PROCEDURE partition_predict.ingest(
    parent regclass,
    source regclass,
    INOUT rows_loaded bigint DEFAULT NULL,
    INOUT partitions_created integer DEFAULT NULL,
    INOUT partitions_activated integer DEFAULT NULL,
    INOUT rows_per_partition jsonb DEFAULT NULL,
    INOUT duration_ms double precision DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    started  pg_catalog.timestamptz;
    made     pg_catalog.int4;
    targets  pg_catalog.text[];
    overlap  pg_catalog.bool;
    target   pg_catalog.text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    started := pg_catalog.clock_timestamp();
    SELECT p.created, p.targets, p.default_overlap INTO made, targets, overlap
      FROM partition_predict.ingest_prepare(parent, source) p;
    partitions_created := made;
    IF overlap THEN
        -- Rows already in DEFAULT in the batch's ranges would make the ATTACH fail: move them first.
        COMMIT;
        CALL partition_predict.migrate_default(parent);
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        SELECT p.created, p.targets, p.default_overlap INTO made, targets, overlap
          FROM partition_predict.ingest_prepare(parent, source) p;
        partitions_created := partitions_created OPERATOR(pg_catalog.+) made;
        IF overlap THEN
            RAISE EXCEPTION 'DEFAULT of % still holds rows in the ranges of the batch', parent
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Rows keep arriving there: CALL partition_predict.migrate_default() and retry.';
        END IF;
    END IF;
    COMMIT;
    partitions_activated := 0;
    FOREACH target IN ARRAY targets LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        IF partition_predict.ingest_activate(parent, target) THEN
            partitions_activated := partitions_activated OPERATOR(pg_catalog.+) 1;
        END IF;
        COMMIT;
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT l.rows_loaded, l.rows_per_partition INTO rows_loaded, rows_per_partition
      FROM partition_predict.ingest_load(parent, source, partitions_created, partitions_activated,
                                         -- ISO and UTC, whatever the caller's DateStyle and TimeZone
                                         pg_catalog.textcat(pg_catalog.to_char(pg_catalog.timezone('UTC', started), 'YYYY-MM-DD HH24:MI:SS.US'), '+00')) l;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    duration_ms := 1000::pg_catalog.float8 OPERATOR(pg_catalog.*)
                   pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started);
END
$$;

-- ---------------------------------------------------------------------------
-- The views (as in sql/views.sql)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE VIEW partition_predict.managed_tables WITH (security_barrier) AS
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
       c.history_retention,
       c.keep,
       c.expired,
       c.archive_schema,
       c.archive_tablespace,
       c.tablespaces,
       c.time_zone,
       pg_catalog.pg_get_userbyid(r.relowner)        AS owner,
       CASE WHEN s.last_error_at IS NOT NULL AND s.last_error_at >= s.last_cycle_end THEN 'failing'
            WHEN s.last_cycle_end IS NULL THEN 'waiting for first cycle'
            ELSE 'ok' END                            AS state,
       s.last_cycle_start,
       s.last_cycle_end,
       s.cycles,
       s.failures,
       -- An error's text can quote rows: not where row-level security hides some.
       CASE WHEN NOT pg_catalog.row_security_active(c.parent) THEN s.last_error END AS last_error,
       s.last_error_at,
       -- It gives away the highest key: not where row-level security hides rows.
       CASE WHEN NOT pg_catalog.row_security_active(c.parent) THEN s.runway END AS runway,
       c.managed_since
  FROM partition_predict.config c
  JOIN pg_catalog.pg_class r               ON r.oid = c.parent
  LEFT JOIN partition_predict.table_state s ON s.parent = c.parent
  JOIN pg_catalog.pg_partitioned_table pt  ON pt.partrelid = c.parent
  JOIN pg_catalog.pg_attribute a           ON a.attrelid = c.parent AND a.attnum = pt.partattrs[0]
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT');

COMMENT ON VIEW partition_predict.managed_tables IS 'One row per table managed by pg_partition_predict.';

CREATE OR REPLACE VIEW partition_predict.partitions WITH (security_barrier) AS
SELECT c.parent,
       b.partition,
       b.range_start,
       b.range_end,
       CASE WHEN b.is_default THEN 'default' ELSE 'active' END               AS state,
       pg_catalog.pg_stat_get_live_tuples(b.partition)                      AS rows,
       CASE WHEN NOT pg_catalog.row_security_active(c.parent) THEN sh.predicted_rows END AS predicted_rows,
       pg_catalog.pg_total_relation_size(b.partition)                       AS size_bytes,
       pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(b.partition)) AS size,
       COALESCE(t.spcname, dt.spcname)                                      AS tablespace,
       sh.created_at,
       sh.activated_at
  FROM partition_predict.config c
 CROSS JOIN LATERAL partition_predict.partition_bounds(c.parent) b
  JOIN pg_catalog.pg_class r                 ON r.oid = b.partition
  LEFT JOIN partition_predict.shadows sh     ON sh.parent = c.parent AND sh.shadow = b.partition::pg_catalog.oid
  LEFT JOIN pg_catalog.pg_tablespace t       ON t.oid = r.reltablespace
  LEFT JOIN pg_catalog.pg_database d         ON d.datname = pg_catalog.current_database()
  LEFT JOIN pg_catalog.pg_tablespace dt      ON dt.oid = d.dattablespace
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT')
UNION ALL
SELECT sh.parent,
       sh.shadow::pg_catalog.regclass,
       sh.range_start,
       sh.range_end,
       CASE WHEN m.id IS NOT NULL THEN 'migrating' ELSE 'shadow' END,
       CASE WHEN NOT pg_catalog.row_security_active(sh.parent) THEN COALESCE(m.rows_moved, 0) END,
       CASE WHEN NOT pg_catalog.row_security_active(sh.parent) THEN sh.predicted_rows END,
       pg_catalog.pg_total_relation_size(sh.shadow),
       pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(sh.shadow)),
       COALESCE(t.spcname, dt.spcname),
       sh.created_at,
       sh.activated_at
  FROM partition_predict.shadows sh
  JOIN pg_catalog.pg_class r                 ON r.oid = sh.shadow AND NOT r.relispartition
  LEFT JOIN partition_predict.migrations m   ON m.parent = sh.parent AND m.shadow = sh.shadow AND m.active
  LEFT JOIN pg_catalog.pg_tablespace t       ON t.oid = r.reltablespace
  LEFT JOIN pg_catalog.pg_database d         ON d.datname = pg_catalog.current_database()
  LEFT JOIN pg_catalog.pg_tablespace dt      ON dt.oid = d.dattablespace
 WHERE sh.activated_at IS NULL AND pg_catalog.has_table_privilege(sh.parent, 'SELECT');

COMMENT ON VIEW partition_predict.partitions IS
    'One row per partition of a managed table, and per shadow prepared for it. Bounds are text; timestamptz bounds are in UTC.';

CREATE OR REPLACE VIEW partition_predict.ingest_history WITH (security_barrier) AS
SELECT parent, source, rows_loaded, partitions_created, partitions_activated, rows_per_partition,
       forecast_rows, rows_in_forecast, started_at, finished_at,
       1000 * pg_catalog.date_part('epoch', finished_at - started_at) AS duration_ms
  FROM partition_predict.ingests
 WHERE pg_catalog.has_table_privilege(parent, 'SELECT') AND NOT pg_catalog.row_security_active(parent);

COMMENT ON VIEW partition_predict.ingest_history IS
    'Batches loaded by ingest(): rows per partition, partitions created and attached for them, and the forecast of the partitions that were prepared for them.';

-- Active routing overrides: while rows of a range move out of DEFAULT,
-- queries on the parent also read the target table.
CREATE OR REPLACE VIEW partition_predict.routing_overrides WITH (security_barrier) AS
SELECT m.parent,
       m.range_start,
       m.range_end,
       o.shadow_oid::pg_catalog.regclass AS target,
       'migration out of DEFAULT'::text   AS reason,
       m.state::text                      AS state,
       m.rows_moved,
       o.since
  FROM partition_predict.routing_overrides_in_memory() o
  JOIN partition_predict.migrations m ON m.id = o.migration_id
 WHERE m.active
   AND pg_catalog.has_table_privilege(m.parent, 'SELECT') AND NOT pg_catalog.row_security_active(m.parent);

COMMENT ON VIEW partition_predict.routing_overrides IS
    'Key ranges whose rows are being moved out of DEFAULT, and the table queries on the parent also read meanwhile.';

CREATE OR REPLACE VIEW partition_predict.migrations_history WITH (security_barrier) AS
SELECT parent, range_start, range_end, shadow_name AS target, state::text AS state, rows_moved, batches,
       started_at, finished_at, message
  FROM partition_predict.migrations
 WHERE pg_catalog.has_table_privilege(parent, 'SELECT') AND NOT pg_catalog.row_security_active(parent);

CREATE OR REPLACE VIEW partition_predict.stats_history WITH (security_barrier) AS
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
 WHERE pg_catalog.has_table_privilege(s.parent, 'SELECT') AND NOT pg_catalog.row_security_active(s.parent);

COMMENT ON VIEW partition_predict.stats_history IS
    'Per partition and sample: rows inserted/updated/deleted and scans since the previous sample, live rows, size, highest key. Partitions where nothing changed get no row.';

CREATE OR REPLACE VIEW partition_predict.key_time_series WITH (security_barrier) AS
SELECT k.parent, k.bucket_start, pg_catalog.sum(k.rows)::bigint AS rows
  FROM partition_predict.key_time_counts k
 WHERE pg_catalog.has_table_privilege(k.parent, 'SELECT') AND NOT pg_catalog.row_security_active(k.parent)
 GROUP BY k.parent, k.bucket_start;

COMMENT ON VIEW partition_predict.key_time_series IS
    'Time keys: rows per hour (per day for date keys) of the key''s own time.';

CREATE OR REPLACE VIEW partition_predict.forecasts WITH (security_barrier) AS
SELECT f.parent, f.series, f.range_start, f.range_end, f.step_start, f.step_end, f.horizon,
       f.predicted_rows, f.lower_rows AS lower, f.upper_rows AS upper, f.model, f.made_at
  FROM partition_predict.config c
 CROSS JOIN (VALUES ('key_time'), ('frontier')) s(series)
 CROSS JOIN LATERAL (SELECT l.made_at FROM partition_predict.forecast_log l
                      WHERE l.parent = c.parent AND l.series = s.series AND l.horizon = 1
                      ORDER BY l.made_at DESC LIMIT 1) newest
  JOIN partition_predict.forecast_log f
    ON f.parent = c.parent AND f.series = s.series AND f.made_at = newest.made_at
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT') AND NOT pg_catalog.row_security_active(c.parent);

COMMENT ON VIEW partition_predict.forecasts IS
    'The newest forecast of each managed table: predicted rows per future key range, with the prediction interval.';

CREATE OR REPLACE VIEW partition_predict.forecast_accuracy WITH (security_barrier) AS
SELECT f.parent,
       f.series,
       CASE WHEN f.horizon <= 1 THEN '1 hour'
            WHEN f.horizon <= 6 THEN '2-6 hours'
            WHEN f.horizon <= 24 THEN '7-24 hours'
            ELSE 'over a day' END                                         AS horizon,
       f.model,
       pg_catalog.count(*)                                                AS n,
       pg_catalog.avg(pg_catalog.abs(f.actual_rows - f.predicted_rows) / f.actual_rows)
           FILTER (WHERE f.actual_rows > 0)                               AS mape,
       pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.predicted_rows))
           / NULLIF(pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.naive_rows)), 0) AS mase,
       pg_catalog.avg(CASE WHEN f.actual_rows BETWEEN f.lower_rows AND f.upper_rows THEN 1.0 ELSE 0.0 END)
                                                                          AS coverage,
       pg_catalog.max(f.scored_at)                                        AS last_scored_at
  FROM partition_predict.forecast_log f
 WHERE f.scored_at IS NOT NULL AND pg_catalog.has_table_privilege(f.parent, 'SELECT')
   AND NOT pg_catalog.row_security_active(f.parent)
 GROUP BY 1, 2, 3, 4;

COMMENT ON VIEW partition_predict.forecast_accuracy IS
    'Error of past forecasts against what arrived, by table and horizon: MAPE, MASE (against seasonal naive; below 1 is better), interval coverage.';

CREATE OR REPLACE VIEW partition_predict.cycle_costs WITH (security_barrier) AS
SELECT c.parent, c.step, c.measured_at AS last_cycle_at, c.duration_ms AS last_ms, c.rows_read AS last_rows_read,
       c.buffers_hit AS last_buffers_hit, c.buffers_read AS last_buffers_read,
       c.cycles, c.total_ms / NULLIF(c.cycles, 0) AS avg_ms, c.max_ms
  FROM partition_predict.step_costs c
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT') AND NOT pg_catalog.row_security_active(c.parent);

COMMENT ON VIEW partition_predict.cycle_costs IS
    'What each step of each table''s cycle costs: the last cycle (time, rows of the table read, shared buffers hit and read) and the average and maximum time over all cycles.';

CREATE OR REPLACE VIEW partition_predict.alerts WITH (security_barrier) AS
SELECT a.id, a.parent, a.kind, a.subject, a.severity, a.message, a.details, a.raised_at, a.updated_at, a.occurrences
  FROM partition_predict.alert_log a
 WHERE a.resolved_at IS NULL
   AND (a.parent IS NULL
        OR (pg_catalog.has_table_privilege(a.parent, 'SELECT') AND NOT pg_catalog.row_security_active(a.parent)));

COMMENT ON VIEW partition_predict.alerts IS
    'Open alerts: conditions raised and not yet resolved, one row each however many cycles saw them.';

CREATE OR REPLACE VIEW partition_predict.alert_history WITH (security_barrier) AS
SELECT a.id, a.parent, a.kind, a.subject, a.severity,
       CASE WHEN a.is_event THEN 'event' WHEN a.resolved_at IS NULL THEN 'open' ELSE 'resolved' END AS state,
       a.message, a.details, a.raised_at, a.updated_at, a.resolved_at, a.occurrences
  FROM partition_predict.alert_log a
 WHERE a.parent IS NULL
    OR (pg_catalog.has_table_privilege(a.parent, 'SELECT') AND NOT pg_catalog.row_security_active(a.parent));

COMMENT ON VIEW partition_predict.alert_history IS
    'Every alert within the history kept: conditions (open or resolved) and events (one row each).';

-- One row per managed table for monitoring (postgres_exporter's
-- queries.yaml in scripts/). Members of pg_monitor see every table, with
-- what the statistics views would show them anyway (rows in DEFAULT,
-- cycle times, alert counts); what is derived from the rows (forecast
-- error, runway: it gives away the highest key) only where the role may
-- read the rows, as in the other views. Each figure is read through an
-- index and over a bounded window.
CREATE OR REPLACE VIEW partition_predict.metrics WITH (security_barrier) AS
SELECT c.parent::text                                                     AS parent,
       COALESCE(pg_catalog.pg_stat_get_live_tuples(NULLIF(pt.partdefid, 0)), 0) AS rows_in_default,
       acc.mase,
       acc.coverage,
       acc.scored                                                         AS forecast_steps_scored,
       (SELECT pg_catalog.sum(k.duration_ms) FROM partition_predict.step_costs k
         WHERE k.parent = c.parent)                                       AS last_cycle_ms,
       CASE WHEN r.readable THEN pg_catalog.date_part('epoch', s.runway) END AS runway_seconds,
       pg_catalog.date_part('epoch', pg_catalog.now() - s.last_cycle_end) AS seconds_since_cycle,
       COALESCE(s.failures, 0)                                            AS cycle_failures,
       (SELECT pg_catalog.count(*) FROM partition_predict.alert_log a
         WHERE a.parent = c.parent AND a.resolved_at IS NULL AND a.severity = 'critical') AS alerts_critical,
       (SELECT pg_catalog.count(*) FROM partition_predict.alert_log a
         WHERE a.parent = c.parent AND a.resolved_at IS NULL AND a.severity = 'warning')  AS alerts_warning,
       (SELECT pg_catalog.count(*) FROM partition_predict.alert_log a
         WHERE a.parent = c.parent AND a.resolved_at IS NULL AND a.severity = 'info')     AS alerts_info
  FROM partition_predict.config c
  JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = c.parent
  CROSS JOIN LATERAL (SELECT pg_catalog.has_table_privilege(c.parent, 'SELECT')
                             AND NOT pg_catalog.row_security_active(c.parent) AS readable) r
  LEFT JOIN partition_predict.table_state s ON s.parent = c.parent
  -- Forecasts of the last two days, up to a day ahead, that have been scored.
  LEFT JOIN LATERAL (
      SELECT pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.predicted_rows))
                 / NULLIF(pg_catalog.sum(pg_catalog.abs(f.actual_rows - f.naive_rows)), 0) AS mase,
             pg_catalog.avg(CASE WHEN f.actual_rows BETWEEN f.lower_rows AND f.upper_rows THEN 1.0 ELSE 0.0 END)::float8
                                                                          AS coverage,
             pg_catalog.count(*)                                          AS scored
        FROM partition_predict.forecast_log f
       WHERE r.readable AND f.parent = c.parent AND f.series IN ('key_time', 'frontier')
         AND f.made_at > pg_catalog.now() - interval '2 days' AND f.horizon <= 24
         AND f.scored_at IS NOT NULL) acc ON true
 WHERE r.readable OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');

COMMENT ON VIEW partition_predict.metrics IS
    'Per managed table, for monitoring: rows in DEFAULT, forecast MASE and 95% interval coverage over the last two days, last cycle time, runway, open alerts by severity. pg_monitor members see every table; forecast figures and runway only where they may read the rows.';

CREATE OR REPLACE VIEW partition_predict.worker_status WITH (security_barrier) AS
SELECT w.database,
       w.pid,
       CASE WHEN a.pid IS NULL THEN 'stopped' ELSE w.state END AS state,
       w.started_at,
       w.last_cycle_start,
       w.last_cycle_end,
       w.cycles,
       w.errors,
       -- What concerns a table only where the role may read its rows: an
       -- error's text can quote them.
       CASE WHEN pg_catalog.has_table_privilege(e.oid, 'SELECT') AND NOT pg_catalog.row_security_active(e.oid)
            THEN w.last_error END                                AS last_error,
       CASE WHEN pg_catalog.has_table_privilege(e.oid, 'SELECT') AND NOT pg_catalog.row_security_active(e.oid)
            THEN e.oid::pg_catalog.regclass END                  AS last_error_table
  FROM partition_predict.worker_state w
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
  LEFT JOIN pg_catalog.pg_class e          ON e.oid = w.last_error_table;

GRANT SELECT ON partition_predict.managed_tables, partition_predict.partitions,
                partition_predict.stats_history, partition_predict.key_time_series,
                partition_predict.alerts, partition_predict.alert_history, partition_predict.metrics,
                partition_predict.worker_status,
                partition_predict.forecasts, partition_predict.forecast_accuracy, partition_predict.cycle_costs,
                partition_predict.routing_overrides, partition_predict.migrations_history,
                partition_predict.ingest_history TO PUBLIC;

-- ===========================================================================
-- Last: back to the role the update was started as.
-- ===========================================================================

DO $$
DECLARE
    started_as text := pg_catalog.current_setting('pg_partition_predict_update.role', true);
BEGIN
    IF started_as <> '' THEN
        PERFORM pg_catalog.set_config('role', started_as, false);
        PERFORM pg_catalog.set_config('pg_partition_predict_update.role', '', true);
    END IF;
END
$$;

-- Tables behind the views. Runs first (bootstrap), before any function.

-- Every operator, function and type this script and the ones after it name
-- (the whole install script is one run) resolves in pg_catalog or is
-- qualified: an object that a role planted in public, or in any schema on
-- the installing role's search_path, is never bound into a view, policy,
-- default or check. CREATE EXTENSION gives the caller's search_path back
-- when the script ends.
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Created here rather than named in the control file, so that it belongs to
-- the extension and DROP EXTENSION removes it.
CREATE SCHEMA partition_predict;

-- One row per managed table; carried along by pg_dump/pg_restore.
CREATE TABLE partition_predict.config (
    parent        pg_catalog.regclass PRIMARY KEY,
    target_rows   bigint NOT NULL CHECK (target_rows > 0),
    lookahead     text NOT NULL,
    min_span      text,
    max_span      text,
    -- How long the extension's own history of the table is kept.
    history_retention interval NOT NULL DEFAULT '35 days' CHECK (history_retention > '0'),
    tablespaces   name[],
    time_zone     text NOT NULL DEFAULT 'UTC',
    managed_since timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Data retention: partitions whose keys all lie further back than
    -- `keep` (an interval, or a number of key values for integer keys) from
    -- the newest row, or from now if that is earlier, expire; NULL keeps all.
    keep          text,
    expired       text NOT NULL DEFAULT 'detach' CHECK (expired IN ('drop', 'detach', 'archive')),
    archive_schema name,
    archive_tablespace name,
    CHECK (expired <> 'archive' OR archive_schema IS NOT NULL OR archive_tablespace IS NOT NULL)
);
COMMENT ON TABLE partition_predict.config IS
    'Managed tables and their settings. Change it through manage()/unmanage().';
SELECT pg_catalog.pg_extension_config_dump('partition_predict.config', '');

-- Only the extension's own code writes its state (src/state/mod.rs runs
-- each write as the extension's owner): no role is granted INSERT, UPDATE or
-- DELETE here or on any table below. Every role may read, but only the rows
-- of tables it owns.
ALTER TABLE partition_predict.config ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rights ON partition_predict.config
    USING (pg_catalog.pg_has_role(
        (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), 'USAGE'));
GRANT USAGE ON SCHEMA partition_predict TO PUBLIC;
GRANT SELECT ON partition_predict.config TO PUBLIC;

-- What collect_stats()/run_cycle() return: one row per table.
CREATE TYPE partition_predict.cycle_summary AS (
    parent             pg_catalog.regclass,
    partitions_sampled bigint,
    rows_inserted      bigint,
    rows_in_default    bigint,
    queries            bigint,
    forecast_steps     bigint,
    forecasts_scored   bigint,
    shadows_created    bigint,
    shadows_dropped    bigint,
    activated          bigint,
    duration_ms        double precision,
    error              text,
    -- What becomes of rows in DEFAULT: run_cycle() runs in the caller's
    -- transaction, and moving rows needs transactions of its own.
    default_rows_next  text
);

-- Runtime state below is not dumped: it describes this cluster's history.

-- One row per managed table: how its cycles went.
CREATE TABLE partition_predict.table_state (
    parent           pg_catalog.regclass PRIMARY KEY
                     REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    last_cycle_start timestamptz,
    last_cycle_end   timestamptz,
    cycles           bigint NOT NULL DEFAULT 0,
    failures         bigint NOT NULL DEFAULT 0,
    last_error       text,
    last_error_at    timestamptz,
    -- How long the attached partitions last at the forecast rate, from the
    -- frontier, as of the last cycle (NULL: no frontier or no forecast yet).
    runway           interval,
    runway_at        timestamptz,
    -- How rows arrive: the frontier's last advances per cycle (key units)
    -- and the rows those cycles brought, the margin over the largest that
    -- activation and planning use, and the
    -- keys a DBA released from quarantine (release_outliers).
    arrival_reaches  bigint[] NOT NULL DEFAULT '{}',
    arrival_rows     bigint[] NOT NULL DEFAULT '{}',
    reach_margin     double precision NOT NULL DEFAULT 1.5,
    released_low     bigint,
    released_high    bigint
);

-- Archived partitions detached by retention that still have to move to the
-- archive tablespace: the move copies the table, so it runs after the
-- detach committed, in a transaction of its own, and is retried until done.
CREATE TABLE partition_predict.archive_moves (
    parent      pg_catalog.regclass NOT NULL
                REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    relid       oid NOT NULL,
    tablespace  name NOT NULL,
    detached_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (parent, relid)
);

-- Step 1 samples: per partition, deltas since the previous sample. Only
-- partitions where something changed get a row.
CREATE TABLE partition_predict.samples (
    parent         pg_catalog.regclass NOT NULL
                   REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    partition      oid NOT NULL,
    partition_name text NOT NULL,
    sampled_at     timestamptz NOT NULL,
    is_default     boolean NOT NULL,
    rows_inserted  bigint NOT NULL,
    rows_updated   bigint NOT NULL,
    rows_deleted   bigint NOT NULL,
    seq_scans      bigint NOT NULL,
    idx_scans      bigint NOT NULL,
    live_rows      bigint NOT NULL,
    size_bytes     bigint NOT NULL,
    frontier       text,
    frontier_raw   bigint,
    PRIMARY KEY (parent, sampled_at, partition)
);

-- The cumulative counters each delta was computed from.
CREATE TABLE partition_predict.partition_counters (
    parent      pg_catalog.regclass NOT NULL
                REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    partition   oid NOT NULL,
    epoch       text NOT NULL,
    n_tup_ins   bigint NOT NULL,
    n_tup_upd   bigint NOT NULL,
    n_tup_del   bigint NOT NULL,
    seq_scan    bigint NOT NULL,
    idx_scan    bigint NOT NULL,
    -- the collector's own scans, not yet discounted from the table's traffic
    own_seq_scans bigint NOT NULL DEFAULT 0,
    own_idx_scans bigint NOT NULL DEFAULT 0,
    frontier_raw bigint,
    -- Time keys: pages before window_start are counted in key_time_counts;
    -- the window's counts when last read; since the last whole count
    -- (recounted_at), rows counted and rows the insert counter reported.
    window_start  bigint,
    window_rows   jsonb,
    counted_rows  bigint NOT NULL DEFAULT 0,
    inserted_rows bigint NOT NULL DEFAULT 0,
    filenode      oid,
    recounted_at  timestamptz,
    -- the counts may have drifted: a whole count is due
    stale         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent, partition)
);

-- Time keys: rows present per key-time bucket (hour; day for date keys)
-- and partition. Indexed by the key's own time, so a replay or a backfill
-- reads the same as real-time arrival.
CREATE TABLE partition_predict.key_time_counts (
    parent       pg_catalog.regclass NOT NULL
                 REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    partition    oid NOT NULL,
    bucket_start timestamptz NOT NULL,
    rows         bigint NOT NULL,
    counted_at   timestamptz NOT NULL,
    PRIMARY KEY (parent, partition, bucket_start)
);
-- The series over all partitions, newest first (forecasting, retention).
CREATE INDEX ON partition_predict.key_time_counts (parent, bucket_start);

CREATE TYPE partition_predict.alert_severity AS ENUM ('info', 'warning', 'critical');

-- What a DBA should hear about (also NOTIFY partition_predict_alerts and the
-- server log). A condition (`subject` names what it is about, e.g. a key
-- range) is one row from raise to resolve: while it lasts, later cycles
-- update it instead of adding rows, and NOTIFY speaks only on raise and
-- resolve. An event (a migration that ended, a batch that missed its
-- forecast) is one row, resolved when raised.
CREATE TABLE partition_predict.alert_log (
    id          bigserial PRIMARY KEY,
    parent      pg_catalog.regclass REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('forecast_miss', 'rows_in_default', 'migration', 'failure', 'runway', 'outlier_keys', 'retention')),
    subject     text NOT NULL DEFAULT '',
    severity    partition_predict.alert_severity NOT NULL,
    is_event    boolean NOT NULL DEFAULT false,
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    raised_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resolved_at timestamptz,
    occurrences bigint NOT NULL DEFAULT 1,
    CHECK (NOT is_event OR resolved_at IS NOT NULL)
);
-- At most one open alert per condition; found by the cycle without a scan.
CREATE UNIQUE INDEX alert_log_open ON partition_predict.alert_log (parent, kind, subject) NULLS NOT DISTINCT
    WHERE resolved_at IS NULL;
CREATE INDEX ON partition_predict.alert_log (parent, raised_at);

-- One row per database a worker maintains, written by that worker only.
CREATE TABLE partition_predict.worker_state (
    database         name PRIMARY KEY,
    pid              integer NOT NULL,
    state            text NOT NULL,
    started_at       timestamptz NOT NULL,
    last_cycle_start timestamptz,
    last_cycle_end   timestamptz,
    cycles           bigint NOT NULL DEFAULT 0,
    errors           bigint NOT NULL DEFAULT 0,
    last_error       text,
    -- The table the last error concerns: worker_status shows the error
    -- only to roles that may read it (the text can quote its rows).
    last_error_table oid
);

-- What each step of a table's cycle cost: the last cycle, and running totals.
CREATE TABLE partition_predict.step_costs (
    parent       pg_catalog.regclass NOT NULL
                 REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    step         text NOT NULL CHECK (step IN ('collect', 'forecast', 'prepartition', 'activate', 'runway')),
    measured_at  timestamptz NOT NULL,
    duration_ms  double precision NOT NULL,
    rows_read    bigint NOT NULL,
    buffers_hit  bigint NOT NULL,
    buffers_read bigint NOT NULL,
    cycles       bigint NOT NULL,
    total_ms     double precision NOT NULL,
    max_ms       double precision NOT NULL,
    PRIMARY KEY (parent, step)
);

-- Step 2: every forecast step made, scored once what it predicted has arrived.
CREATE TABLE partition_predict.forecast_log (
    parent         pg_catalog.regclass NOT NULL
                   REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    series         text NOT NULL CHECK (series IN ('key_time', 'frontier')),
    made_at        timestamptz NOT NULL,
    step_start     timestamptz NOT NULL,
    step_end       timestamptz NOT NULL,
    horizon        integer NOT NULL,
    range_start    text NOT NULL,
    range_end      text NOT NULL,
    predicted_rows double precision NOT NULL,
    lower_rows     double precision NOT NULL,
    upper_rows     double precision NOT NULL,
    naive_rows     double precision NOT NULL,
    model          text NOT NULL,
    actual_rows    double precision,
    scored_at      timestamptz,
    PRIMARY KEY (parent, series, made_at, horizon)
);
CREATE INDEX ON partition_predict.forecast_log (parent, series, step_start) WHERE scored_at IS NULL;
-- What was forecast for a period of key time (report()), however long ago
-- in wall-clock time it was made (a replayed backfill forecasts 2024 today).
CREATE INDEX forecast_log_steps ON partition_predict.forecast_log (parent, series, step_start, horizon);
-- One entry per forecast: the newest forecast, and the forecasts to prune,
-- are found without reading every step of every forecast.
CREATE INDEX forecast_log_forecasts ON partition_predict.forecast_log (parent, series, made_at) WHERE horizon = 1;

-- Integer keys: the highest key each wall-clock hour (as of its newest
-- sample). The frontier's speed is forecast from this, one row per table
-- and hour whatever the naptime.
CREATE TABLE partition_predict.frontier_hours (
    parent        pg_catalog.regclass NOT NULL
                  REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    hour          timestamptz NOT NULL,
    sampled_at    timestamptz NOT NULL,
    frontier_raw  bigint NOT NULL,
    PRIMARY KEY (parent, hour)
);

-- What the engine learned per series (model choice, interval margin): it
-- survives restarts because it lives here. The next model choice is
-- prepared one backtest fit per cycle: the fits done so far are kept as
-- each fit's error and seasonal naive's (NULL: the fit failed).
CREATE TABLE partition_predict.series_state (
    parent       pg_catalog.regclass NOT NULL
                 REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    series       text NOT NULL,
    model        text,
    model_origin bigint,
    margin       double precision NOT NULL DEFAULT 1,
    pending_origin       bigint,
    pending_model_errors double precision[],
    pending_naive_errors double precision[],
    pending_model        text,
    pending_fingerprint  bigint,
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (parent, series)
);

-- Steps 3-4: partitions prepared ahead of the data. A shadow is a
-- standalone table until it is attached; the row stays, with activated_at.
CREATE TABLE partition_predict.shadows (
    parent         pg_catalog.regclass NOT NULL
                   REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    shadow         oid NOT NULL,
    shadow_name    text NOT NULL,
    range_from     bigint NOT NULL,
    range_to       bigint NOT NULL,
    range_start    text NOT NULL,
    range_end      text NOT NULL,
    predicted_rows double precision NOT NULL,
    predicted_bytes bigint NOT NULL DEFAULT 0,
    tablespace     name,
    -- What the range was made for: only a forecast's shadows carry a prediction.
    origin         text NOT NULL DEFAULT 'forecast' CHECK (origin IN ('forecast', 'migration', 'ingest')),
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    activated_at   timestamptz,
    PRIMARY KEY (parent, range_from)
);

-- The states of a move of rows out of DEFAULT (src/act/migrate.rs walks
-- them; src/state/migrations.rs mirrors them as a Rust enum).
CREATE TYPE partition_predict.migration_state AS ENUM
    ('starting', 'moving', 'attaching', 'yielding', 'yielded', 'done');

-- Whether `shadow` is a table pg_partition_predict made for `parent` and
-- can stand for its rows: the automatic dependency src/act/create.rs
-- records when it creates one (pg_depend is written by no role, only by
-- PostgreSQL and the extension's C code); still a plain table (an owner can
-- turn an empty table into a view); the parent's owner; and exactly the
-- parent's columns, types, typmods and collations (the planner hook reads
-- it in the parent's place; `can_stand_for`). An OID read from the state
-- tables is used as a shadow only if this holds. The relation read or
-- written on the strength of these is always a plain table of the parent's
-- owner, read as that owner.
CREATE FUNCTION partition_predict.can_stand_for(shadow oid, parent oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_class s, pg_class p
                    WHERE s.oid = shadow AND p.oid = parent AND s.relkind = 'r' AND NOT s.relispartition
                      AND s.relowner = p.relowner)
       AND NOT EXISTS (
           (SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation FROM pg_attribute a
             WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped
            EXCEPT
            SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation FROM pg_attribute a
             WHERE a.attrelid = shadow AND a.attnum > 0 AND NOT a.attisdropped)
           UNION ALL
           (SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation FROM pg_attribute a
             WHERE a.attrelid = shadow AND a.attnum > 0 AND NOT a.attisdropped
            EXCEPT
            SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation FROM pg_attribute a
             WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped))
$$;
CREATE FUNCTION partition_predict.is_shadow_of(shadow oid, parent oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = shadow AND d.objsubid = 0
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid = parent AND d.deptype = 'a')
       AND partition_predict.can_stand_for(shadow, parent)
$$;

-- Moves of rows out of DEFAULT, one range each (migrate_default() and the
-- workers). While one is active, a routing override makes every query on
-- the parent read the shadow too.
CREATE TABLE partition_predict.migrations (
    id                bigserial PRIMARY KEY,
    parent            pg_catalog.regclass NOT NULL
                      REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    shadow            oid NOT NULL,
    shadow_name       text NOT NULL,
    default_partition oid NOT NULL,
    range_from        bigint NOT NULL,
    range_to          bigint NOT NULL,
    range_start       text NOT NULL,
    range_end         text NOT NULL,
    state             partition_predict.migration_state NOT NULL,
    -- Every query that asks "under way?" reads this, so the answer is written once.
    active            boolean NOT NULL GENERATED ALWAYS AS (state NOT IN ('yielded', 'done')) STORED,
    rows_moved        bigint NOT NULL DEFAULT 0,
    batches           integer NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at       timestamptz,
    message           text
);
CREATE UNIQUE INDEX migrations_one_active_per_table ON partition_predict.migrations (parent)
    WHERE active;
CREATE INDEX ON partition_predict.migrations (parent, id);

-- Batches loaded by ingest(): one row per batch, written by the load's own
-- transaction (a batch is recorded if and only if it was loaded).
CREATE TABLE partition_predict.ingests (
    id                   bigserial PRIMARY KEY,
    parent               pg_catalog.regclass NOT NULL
                         REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    source               text NOT NULL,
    rows_loaded          bigint NOT NULL,
    partitions_created   integer NOT NULL,
    partitions_activated integer NOT NULL,
    rows_per_partition   jsonb NOT NULL,
    forecast_rows        double precision,
    rows_in_forecast     bigint,
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['table_state', 'step_costs', 'samples', 'partition_counters', 'key_time_counts', 'alert_log',
                             'forecast_log', 'series_state', 'shadows', 'migrations', 'ingests',
                             'frontier_hours', 'archive_moves'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE partition_predict.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY owner_rights ON partition_predict.%I USING (pg_catalog.pg_has_role(
                 (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), ''USAGE''))', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON partition_predict.%I TO PUBLIC', t);
    END LOOP;
END
$$;

-- DROP EXTENSION drops the shadows that hold no rows first, and is refused
-- while rows are being moved out of a DEFAULT (src/hooks/drop_extension.rs).
CREATE FUNCTION partition_predict.before_drop_extension() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_partition_predict_before_drop_extension';
REVOKE ALL ON FUNCTION partition_predict.before_drop_extension() FROM PUBLIC;
CREATE EVENT TRIGGER partition_predict_before_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION partition_predict.before_drop_extension();

-- A dropped table is no longer managed. SECURITY DEFINER because once the
-- table is gone the owner policy above can no longer match its row.
CREATE FUNCTION partition_predict.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM partition_predict.config c
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objsubid = 0
       AND d.objid = c.parent::pg_catalog.oid;
END
$$;
REVOKE ALL ON FUNCTION partition_predict.forget_dropped_tables() FROM PUBLIC;
CREATE EVENT TRIGGER partition_predict_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION partition_predict.forget_dropped_tables();

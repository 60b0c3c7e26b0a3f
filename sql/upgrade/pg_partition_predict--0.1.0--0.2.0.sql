-- pg_partition_predict 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION pg_partition_predict UPDATE, after the 0.2.0
-- library is installed and PostgreSQL restarted with it. The result is
-- what CREATE EXTENSION of 0.2.0 makes, with the state of 0.1.0 kept
-- (tests/upgrade/run compares the two, object by object). It runs in one
-- transaction: any failure leaves 0.1.0 as it was.
--
-- Objects of a user that depend on the extension's views or on the tables
-- rebuilt here (config, alert_log, series_state, migrations) make the
-- update fail rather than be dropped: drop them, update, create them again.

\echo Use "ALTER EXTENSION pg_partition_predict UPDATE TO '0.2.0'" to load this file. \quit

-- Every name below resolves in pg_catalog or is qualified, whatever a role
-- planted in public or on the updating role's search_path (as in the
-- install script; ALTER EXTENSION gives the search_path back at the end).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- What this script makes belongs to the role it runs as, and its initial
-- privileges (pg_init_privs, which pg_dump compares with) name that role:
-- it runs as the extension's owner, as the install did, whichever
-- superuser updates. The role it was started as is set again at the end.
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
-- Views and functions in the way
-- ---------------------------------------------------------------------------

-- Every view reads tables rebuilt below; all are created again at the end.
DROP VIEW partition_predict.managed_tables, partition_predict.partitions, partition_predict.ingest_history,
          partition_predict.routing_overrides, partition_predict.migrations_history,
          partition_predict.stats_history, partition_predict.key_time_series, partition_predict.forecasts,
          partition_predict.forecast_accuracy, partition_predict.alerts, partition_predict.worker_status;

-- manage() gained time_zone, and returns the row type of the config table rebuilt below.
DROP FUNCTION partition_predict.manage(regclass, bigint, text, text, text, text, text[]);

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------

-- 0.2.0's state is written only by the extension's own code, as its owner:
-- no role keeps the INSERT, UPDATE and DELETE 0.1.0 gave every role.
REVOKE INSERT, UPDATE, DELETE ON partition_predict.table_state, partition_predict.samples,
       partition_predict.partition_counters, partition_predict.key_time_counts, partition_predict.forecast_log,
       partition_predict.shadows, partition_predict.ingests FROM PUBLIC;
-- ingests_id_seq: a REVOKE would leave the owner's privileges spelt out where
-- a fresh install has none recorded; a new sequence goes on from the old one.
ALTER SEQUENCE partition_predict.ingests_id_seq RENAME TO ingests_0_1_0_id_seq;
CREATE SEQUENCE partition_predict.ingests_id_seq OWNED BY partition_predict.ingests.id;
SELECT pg_catalog.setval('partition_predict.ingests_id_seq', last_value, is_called)
  FROM partition_predict.ingests_0_1_0_id_seq;
ALTER TABLE partition_predict.ingests
    ALTER COLUMN id SET DEFAULT pg_catalog.nextval('partition_predict.ingests_id_seq'::pg_catalog.regclass);
DROP SEQUENCE partition_predict.ingests_0_1_0_id_seq;

-- ---------------------------------------------------------------------------
-- Types
-- ---------------------------------------------------------------------------

-- run_cycle() says what becomes of the rows it found in DEFAULT.
ALTER TYPE partition_predict.cycle_summary ADD ATTRIBUTE default_rows_next text;

-- Alerts as conditions with a severity; migration states as one SQL type.
CREATE TYPE partition_predict.alert_severity AS ENUM ('info', 'warning', 'critical');
CREATE TYPE partition_predict.migration_state AS ENUM
    ('starting', 'moving', 'attaching', 'yielding', 'yielded', 'done');

-- ---------------------------------------------------------------------------
-- Tables rebuilt: columns were inserted or retyped, and a table's columns
-- keep the order of CREATE TABLE only if it is made again. The 0.1.0 table
-- is renamed and stripped of its constraints, indexes and sequence names
-- (constraint names are chosen per schema), its rows copied, then dropped.
-- ---------------------------------------------------------------------------

-- Each drop below fires forget_dropped_tables(), which reads config: off
-- while config is being rebuilt.
ALTER EVENT TRIGGER partition_predict_forget_dropped_tables DISABLE;

-- Every foreign key to config goes first (those of the rebuilt tables with
-- their constraints): config is rebuilt too.
ALTER TABLE partition_predict.table_state        DROP CONSTRAINT table_state_parent_fkey;
ALTER TABLE partition_predict.samples            DROP CONSTRAINT samples_parent_fkey;
ALTER TABLE partition_predict.partition_counters DROP CONSTRAINT partition_counters_parent_fkey;
ALTER TABLE partition_predict.key_time_counts    DROP CONSTRAINT key_time_counts_parent_fkey;
ALTER TABLE partition_predict.forecast_log       DROP CONSTRAINT forecast_log_parent_fkey;
ALTER TABLE partition_predict.shadows            DROP CONSTRAINT shadows_parent_fkey;
ALTER TABLE partition_predict.ingests            DROP CONSTRAINT ingests_parent_fkey;

ALTER TABLE partition_predict.alert_log RENAME TO alert_log_0_1_0;
ALTER TABLE partition_predict.alert_log_0_1_0
    DROP CONSTRAINT alert_log_pkey, DROP CONSTRAINT alert_log_kind_check, DROP CONSTRAINT alert_log_parent_fkey;
DROP INDEX partition_predict.alert_log_parent_raised_at_idx;
ALTER SEQUENCE partition_predict.alert_log_id_seq RENAME TO alert_log_0_1_0_id_seq;

ALTER TABLE partition_predict.series_state RENAME TO series_state_0_1_0;
ALTER TABLE partition_predict.series_state_0_1_0
    DROP CONSTRAINT series_state_pkey, DROP CONSTRAINT series_state_parent_fkey;

ALTER TABLE partition_predict.migrations RENAME TO migrations_0_1_0;
ALTER TABLE partition_predict.migrations_0_1_0
    DROP CONSTRAINT migrations_pkey, DROP CONSTRAINT migrations_state_check, DROP CONSTRAINT migrations_parent_fkey;
DROP INDEX partition_predict.migrations_one_active_per_table;
ALTER SEQUENCE partition_predict.migrations_id_seq RENAME TO migrations_0_1_0_id_seq;

ALTER TABLE partition_predict.config RENAME TO config_0_1_0;
ALTER TABLE partition_predict.config_0_1_0
    DROP CONSTRAINT config_pkey, DROP CONSTRAINT config_target_rows_check, DROP CONSTRAINT config_retention_check;
-- Off the dump list before it goes (the new table is registered below).
ALTER EXTENSION pg_partition_predict DROP TABLE partition_predict.config_0_1_0;

-- config: time_zone comes before managed_since; 0.1.0's retention (of the
-- extension's history) is history_retention; data retention is new and
-- off. Tables managed by 0.1.0 had boundaries on UTC's clock, which the
-- column's default says.
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
INSERT INTO partition_predict.config (parent, target_rows, lookahead, min_span, max_span, history_retention, tablespaces,
                                      managed_since)
SELECT parent, target_rows, lookahead, min_span, max_span, retention, tablespaces, managed_since
  FROM partition_predict.config_0_1_0;

-- alert_log: 0.1.0 logged one row per event. Each becomes an event (raised
-- and resolved at once), but for a table whose last cycle failed: its
-- newest failure becomes the open condition 0.2.0 raises for it (subject
-- 'cycle'), which the next cycle that succeeds resolves.
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
CREATE UNIQUE INDEX alert_log_open ON partition_predict.alert_log (parent, kind, subject) NULLS NOT DISTINCT
    WHERE resolved_at IS NULL;
CREATE INDEX ON partition_predict.alert_log (parent, raised_at);
WITH failing AS (
    SELECT DISTINCT ON (a.parent) a.id
      FROM partition_predict.alert_log_0_1_0 a
      JOIN partition_predict.table_state s ON s.parent = a.parent
     WHERE a.kind = 'failure' AND s.last_error_at >= s.last_cycle_end
     ORDER BY a.parent, a.raised_at DESC, a.id DESC)
INSERT INTO partition_predict.alert_log (id, parent, kind, subject, severity, is_event, message, details,
                                         raised_at, updated_at, resolved_at, occurrences)
SELECT a.id, a.parent, a.kind,
       CASE WHEN f.id IS NULL THEN '' ELSE 'cycle' END,
       CASE WHEN a.kind = 'failure' THEN 'critical'
            WHEN a.kind = 'migration' AND a.details ->> 'event' IN ('started', 'finished') THEN 'info'
            ELSE 'warning' END::partition_predict.alert_severity,
       f.id IS NULL, a.message, a.details, a.raised_at, a.raised_at,
       CASE WHEN f.id IS NULL THEN a.raised_at END,
       1
  FROM partition_predict.alert_log_0_1_0 a
  LEFT JOIN failing f ON f.id = a.id;
SELECT pg_catalog.setval('partition_predict.alert_log_id_seq', last_value, is_called)
  FROM partition_predict.alert_log_0_1_0_id_seq;

-- series_state: predictions_since_selection gave way to a prepared model
-- choice. The model and margin learned are kept; with no model_origin the
-- choice is made again, spread over the next cycles.
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
INSERT INTO partition_predict.series_state (parent, series, model, margin, updated_at)
SELECT parent, series, model, margin, updated_at FROM partition_predict.series_state_0_1_0;

-- migrations: state is the migration_state type, and whether a migration
-- is active a stored column. Ids are kept: the routing state file in the
-- data directory names an in-flight migration by its id.
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
INSERT INTO partition_predict.migrations (id, parent, shadow, shadow_name, default_partition, range_from, range_to,
                                          range_start, range_end, state, rows_moved, batches, started_at,
                                          finished_at, message)
SELECT id, parent, shadow, shadow_name, default_partition, range_from, range_to, range_start, range_end,
       state::partition_predict.migration_state, rows_moved, batches, started_at, finished_at, message
  FROM partition_predict.migrations_0_1_0;
SELECT pg_catalog.setval('partition_predict.migrations_id_seq', last_value, is_called)
  FROM partition_predict.migrations_0_1_0_id_seq;

-- The other tables point at the new config again, under the same names.
ALTER TABLE partition_predict.table_state ADD CONSTRAINT table_state_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.samples ADD CONSTRAINT samples_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.partition_counters ADD CONSTRAINT partition_counters_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.key_time_counts ADD CONSTRAINT key_time_counts_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.forecast_log ADD CONSTRAINT forecast_log_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.shadows ADD CONSTRAINT shadows_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;
ALTER TABLE partition_predict.ingests ADD CONSTRAINT ingests_parent_fkey
    FOREIGN KEY (parent) REFERENCES partition_predict.config (parent) ON DELETE CASCADE;

-- Their rows are in the new tables (a user object still reading one stops the update here).
DROP TABLE partition_predict.alert_log_0_1_0, partition_predict.series_state_0_1_0,
           partition_predict.migrations_0_1_0;
DROP TABLE partition_predict.config_0_1_0;
ALTER EVENT TRIGGER partition_predict_forget_dropped_tables ENABLE;

-- ---------------------------------------------------------------------------
-- Tables extended: new columns at the end, as 0.2.0 has them
-- ---------------------------------------------------------------------------

-- Runway, how rows arrive, and the keys released from quarantine: learned
-- from the next cycles on (the defaults are what a new table starts from).
ALTER TABLE partition_predict.table_state
    ADD COLUMN runway           interval,
    ADD COLUMN runway_at        timestamptz,
    ADD COLUMN arrival_reaches  bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN arrival_rows     bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN reach_margin     double precision NOT NULL DEFAULT 1.5,
    ADD COLUMN released_low     bigint,
    ADD COLUMN released_high    bigint;

-- Incremental counting by page window. A row without window_start is
-- counted whole by the next cycle, which rebuilds its key-time counts.
ALTER TABLE partition_predict.partition_counters
    ADD COLUMN window_start  bigint,
    ADD COLUMN window_rows   jsonb,
    ADD COLUMN counted_rows  bigint NOT NULL DEFAULT 0,
    ADD COLUMN inserted_rows bigint NOT NULL DEFAULT 0,
    ADD COLUMN filenode      oid,
    ADD COLUMN recounted_at  timestamptz,
    ADD COLUMN stale         boolean NOT NULL DEFAULT false;

-- Reads of the newest key-time buckets and forecasts without a scan.
CREATE INDEX ON partition_predict.key_time_counts (parent, bucket_start);
CREATE INDEX forecast_log_steps ON partition_predict.forecast_log (parent, series, step_start, horizon);
CREATE INDEX forecast_log_forecasts ON partition_predict.forecast_log (parent, series, made_at) WHERE horizon = 1;

-- ---------------------------------------------------------------------------
-- New tables
-- ---------------------------------------------------------------------------

-- What each step of a table's cycle cost: measured from the next cycle on.
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

-- Integer keys' frontier per wall-clock hour. 0.1.0 forecast it from the
-- samples: their highest key per hour (UTC, as the cycle truncates it) is
-- that history, so integer tables keep their forecast across the update.
CREATE TABLE partition_predict.frontier_hours (
    parent        pg_catalog.regclass NOT NULL
                  REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    hour          timestamptz NOT NULL,
    sampled_at    timestamptz NOT NULL,
    frontier_raw  bigint NOT NULL,
    PRIMARY KEY (parent, hour)
);
INSERT INTO partition_predict.frontier_hours (parent, hour, sampled_at, frontier_raw)
SELECT s.parent, pg_catalog.date_trunc('hour', s.sampled_at, 'UTC'), pg_catalog.max(s.sampled_at),
       pg_catalog.max(s.frontier_raw)
  FROM partition_predict.samples s
  JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = s.parent
  JOIN pg_catalog.pg_attribute a ON a.attrelid = s.parent AND a.attnum = pt.partattrs[0]
 WHERE s.frontier_raw IS NOT NULL
   AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                      'pg_catalog.int8'::pg_catalog.regtype)
 GROUP BY 1, 2;

-- Row-level security, read access and nothing else, as on every state table.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['config', 'alert_log', 'series_state', 'migrations', 'step_costs', 'frontier_hours'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE partition_predict.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY owner_rights ON partition_predict.%I USING (pg_catalog.pg_has_role(
                 (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), ''USAGE''))', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON partition_predict.%I TO PUBLIC', t);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Shadows: 0.2.0 acts on a table named in its state only if it is a shadow
-- the extension made for that parent (is_shadow_of)
-- ---------------------------------------------------------------------------

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

-- 0.1.0 made its shadows without the automatic dependency on the parent
-- that 0.2.0 records (src/pg/relation.rs, drop_along_with) and checks: without it the
-- shadows waiting to be attached would be ignored and an in-flight
-- migration could not go on. It is recorded here for the tables 0.1.0's
-- state names as waiting shadows or as an active migration's target, if
-- each still is what 0.1.0 made (a plain table of the parent's owner with
-- the parent's columns and the extension's bound constraint).
INSERT INTO pg_catalog.pg_depend (classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype)
SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, w.shadow, 0,
       'pg_catalog.pg_class'::pg_catalog.regclass, w.parent::pg_catalog.oid, 0, 'a'
  FROM (SELECT parent, shadow FROM partition_predict.shadows WHERE activated_at IS NULL
        UNION
        SELECT parent, shadow FROM partition_predict.migrations WHERE active) w
 WHERE partition_predict.can_stand_for(w.shadow, w.parent)
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                WHERE k.conrelid = w.shadow AND k.conname = 'partition_predict_bound' AND k.contype = 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = w.shadow
                      AND d.objsubid = 0 AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.refobjid = w.parent::pg_catalog.oid AND d.deptype = 'a');

-- DROP EXTENSION drops the shadows that hold no rows first, and is refused
-- while rows are being moved out of a DEFAULT (src/hooks/drop_extension.rs).
CREATE FUNCTION partition_predict.before_drop_extension() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_partition_predict_before_drop_extension';
REVOKE ALL ON FUNCTION partition_predict.before_drop_extension() FROM PUBLIC;
CREATE EVENT TRIGGER partition_predict_before_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION partition_predict.before_drop_extension();

-- ---------------------------------------------------------------------------
-- Functions of the library, as the 0.2.0 install script declares them
-- (generated by pgrx from src/api/; copy them from there when they change)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION partition_predict."partition_bounds"(
	"parent" regclass /* Regclass */
) RETURNS TABLE (
	"partition" regclass,  /* Regclass */
	"range_start" TEXT,  /* Option < String > */
	"range_end" TEXT,  /* Option < String > */
	"is_default" bool  /* bool */
)
STRICT STABLE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'partition_bounds_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."migration_step"(
	"parent" regclass, /* Option < Regclass > */
	"batch_rows" bigint DEFAULT 10000 /* Option < i64 > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'migration_step_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."run_cycle"(
	"parent" regclass DEFAULT NULL /* Option < Regclass > */
) RETURNS SETOF partition_predict.cycle_summary
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_cycle_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."is_preloaded"() RETURNS bool /* bool */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'is_preloaded_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."prepartition"(
	"parent" regclass DEFAULT NULL /* Option < Regclass > */
) RETURNS SETOF partition_predict.cycle_summary
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prepartition_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."unmanage"(
	"parent" regclass /* Regclass */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unmanage_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."collect_stats"(
	"parent" regclass DEFAULT NULL /* Option < Regclass > */
) RETURNS SETOF partition_predict.cycle_summary
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'collect_stats_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."ingest_activate"(
	"parent" regclass, /* Regclass */
	"target" TEXT /* String */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_activate_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."routing_overrides_in_memory"() RETURNS TABLE (
	"parent_oid" oid,  /* pg_sys :: Oid */
	"shadow_oid" oid,  /* pg_sys :: Oid */
	"migration_id" bigint,  /* i64 */
	"since" timestamp with time zone  /* pgrx :: datum :: TimestampWithTimeZone */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'routing_overrides_in_memory_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."force_replan"(
	"parent" regclass DEFAULT NULL /* Option < Regclass > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'force_replan_wrapper';

CREATE  FUNCTION partition_predict."manage"(
	"parent" regclass, /* Option < Regclass > */
	"target_rows" bigint DEFAULT 1000000, /* Option < i64 > */
	"lookahead" TEXT DEFAULT NULL, /* Option < String > */
	"min_span" TEXT DEFAULT NULL, /* Option < String > */
	"max_span" TEXT DEFAULT NULL, /* Option < String > */
	"retention" TEXT DEFAULT NULL, /* Option < String > */
	"tablespaces" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"time_zone" TEXT DEFAULT NULL, /* Option < String > */
	"keep" TEXT DEFAULT NULL, /* Option < String > */
	"expired" TEXT DEFAULT NULL, /* Option < String > */
	"archive_schema" TEXT DEFAULT NULL, /* Option < String > */
	"archive_tablespace" TEXT DEFAULT NULL, /* Option < String > */
	"history_retention" TEXT DEFAULT NULL /* Option < String > */
) RETURNS partition_predict.config /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'manage_table_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."forecast"(
	"parent" regclass DEFAULT NULL /* Option < Regclass > */
) RETURNS SETOF partition_predict.cycle_summary
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forecast_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."activate"(
	"parent" regclass, /* Option < Regclass > */
	"up_to" TEXT DEFAULT NULL /* Option < String > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'activate_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."ingest_load"(
	"parent" regclass, /* Regclass */
	"source" regclass, /* Regclass */
	"partitions_created" INT, /* i32 */
	"partitions_activated" INT, /* i32 */
	"started_at" TEXT /* String */
) RETURNS TABLE (
	"rows_loaded" bigint,  /* i64 */
	"rows_per_partition" jsonb  /* pgrx :: JsonB */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_load_wrapper';

CREATE FUNCTION partition_predict."report"(
	"parent" regclass, /* Option < Regclass > */
	"since" timestamp with time zone DEFAULT NULL, /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"until" timestamp with time zone DEFAULT NULL /* Option < pgrx :: datum :: TimestampWithTimeZone > */
) RETURNS TEXT /* String */
STABLE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_wrapper';

CREATE FUNCTION partition_predict."release_outliers"(
	"parent" regclass /* Option < Regclass > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'release_outliers_wrapper';

CREATE FUNCTION partition_predict."set_time_zone"(
	"parent" regclass, /* Option < Regclass > */
	"time_zone" TEXT /* Option < String > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_time_zone_wrapper';

CREATE FUNCTION partition_predict."report_html"(
	"parent" regclass, /* Option < Regclass > */
	"since" timestamp with time zone DEFAULT NULL, /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"until" timestamp with time zone DEFAULT NULL /* Option < pgrx :: datum :: TimestampWithTimeZone > */
) RETURNS TEXT /* String */
STABLE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_html_wrapper';

CREATE OR REPLACE FUNCTION partition_predict."ingest_prepare"(
	"parent" regclass, /* Option < Regclass > */
	"source" regclass /* Option < Regclass > */
) RETURNS TABLE (
	"created" INT,  /* i32 */
	"targets" TEXT[],  /* Vec < String > */
	"default_overlap" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_prepare_wrapper';

-- ---------------------------------------------------------------------------
-- Procedures (sql/procedures.sql): migration_step() now returns 'yielded'
-- with the reason in migrations.message, and ingest() passes its start
-- time as ISO UTC text
-- ---------------------------------------------------------------------------

CREATE OR REPLACE PROCEDURE partition_predict.migrate_default(parent regclass, batch_rows integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    next   text;
    reason text;
BEGIN
    LOOP
        next := partition_predict.migration_step(parent, batch_rows);
        COMMIT;
        EXIT WHEN next = 'done';
        IF next = 'yielded' THEN
            SELECT m.message INTO reason FROM partition_predict.migrations m
             WHERE m.parent = migrate_default.parent AND m.state = 'yielded'
             ORDER BY m.id DESC LIMIT 1;
            RAISE EXCEPTION 'migration of % out of DEFAULT gave way: %', parent,
                            COALESCE(reason, 'it could not take its locks')
                USING ERRCODE = 'lock_not_available',
                      HINT = 'The rows are back in DEFAULT and nothing was lost; call migrate_default() again when the blocking transaction has ended.';
        END IF;
    END LOOP;
END
$$;

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
    started  timestamptz := pg_catalog.clock_timestamp();
    made     integer;
    targets  text[];
    overlap  boolean;
    target   text;
BEGIN
    SELECT p.created, p.targets, p.default_overlap INTO made, targets, overlap
      FROM partition_predict.ingest_prepare(parent, source) p;
    partitions_created := made;
    IF overlap THEN
        -- Rows already in DEFAULT in the batch's ranges would make the ATTACH fail: move them first.
        COMMIT;
        CALL partition_predict.migrate_default(parent);
        SELECT p.created, p.targets, p.default_overlap INTO made, targets, overlap
          FROM partition_predict.ingest_prepare(parent, source) p;
        partitions_created := partitions_created + made;
        IF overlap THEN
            RAISE EXCEPTION 'DEFAULT of % still holds rows in the ranges of the batch', parent
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Rows keep arriving there: CALL partition_predict.migrate_default() and retry.';
        END IF;
    END IF;
    COMMIT;
    partitions_activated := 0;
    FOREACH target IN ARRAY targets LOOP
        IF partition_predict.ingest_activate(parent, target) THEN
            partitions_activated := partitions_activated + 1;
        END IF;
        COMMIT;
    END LOOP;
    SELECT l.rows_loaded, l.rows_per_partition INTO rows_loaded, rows_per_partition
      FROM partition_predict.ingest_load(parent, source, partitions_created, partitions_activated,
                                         -- ISO and UTC, whatever the caller's DateStyle and TimeZone
                                         pg_catalog.to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00') l;
    COMMIT;
    duration_ms := 1000 * pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - started);
END
$$;

-- ---------------------------------------------------------------------------
-- Views (sql/views.sql of 0.2.0, whole: every view was dropped above)
-- ---------------------------------------------------------------------------

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
       s.last_error,
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

CREATE VIEW partition_predict.partitions AS
SELECT c.parent,
       b.partition,
       b.range_start,
       b.range_end,
       CASE WHEN b.is_default THEN 'default' ELSE 'active' END               AS state,
       pg_catalog.pg_stat_get_live_tuples(b.partition)                      AS rows,
       sh.predicted_rows,
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
       COALESCE(m.rows_moved, 0),
       sh.predicted_rows,
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

CREATE VIEW partition_predict.ingest_history AS
SELECT parent, source, rows_loaded, partitions_created, partitions_activated, rows_per_partition,
       forecast_rows, rows_in_forecast, started_at, finished_at,
       1000 * pg_catalog.date_part('epoch', finished_at - started_at) AS duration_ms
  FROM partition_predict.ingests
 WHERE pg_catalog.has_table_privilege(parent, 'SELECT') AND NOT pg_catalog.row_security_active(parent);

COMMENT ON VIEW partition_predict.ingest_history IS
    'Batches loaded by ingest(): rows per partition, partitions created and attached for them, and the forecast of the partitions that were prepared for them.';

-- Active routing overrides: while rows of a range move out of DEFAULT,
-- queries on the parent also read the target table.
CREATE VIEW partition_predict.routing_overrides AS
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

CREATE VIEW partition_predict.migrations_history AS
SELECT parent, range_start, range_end, shadow_name AS target, state::text AS state, rows_moved, batches,
       started_at, finished_at, message
  FROM partition_predict.migrations
 WHERE pg_catalog.has_table_privilege(parent, 'SELECT') AND NOT pg_catalog.row_security_active(parent);

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
 WHERE pg_catalog.has_table_privilege(s.parent, 'SELECT') AND NOT pg_catalog.row_security_active(s.parent);

COMMENT ON VIEW partition_predict.stats_history IS
    'Per partition and sample: rows inserted/updated/deleted and scans since the previous sample, live rows, size, highest key. Partitions where nothing changed get no row.';

CREATE VIEW partition_predict.key_time_series AS
SELECT k.parent, k.bucket_start, pg_catalog.sum(k.rows)::bigint AS rows
  FROM partition_predict.key_time_counts k
 WHERE pg_catalog.has_table_privilege(k.parent, 'SELECT') AND NOT pg_catalog.row_security_active(k.parent)
 GROUP BY k.parent, k.bucket_start;

COMMENT ON VIEW partition_predict.key_time_series IS
    'Time keys: rows per hour (per day for date keys) of the key''s own time.';

CREATE VIEW partition_predict.forecasts AS
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

CREATE VIEW partition_predict.forecast_accuracy AS
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

CREATE VIEW partition_predict.cycle_costs AS
SELECT c.parent, c.step, c.measured_at AS last_cycle_at, c.duration_ms AS last_ms, c.rows_read AS last_rows_read,
       c.buffers_hit AS last_buffers_hit, c.buffers_read AS last_buffers_read,
       c.cycles, c.total_ms / NULLIF(c.cycles, 0) AS avg_ms, c.max_ms
  FROM partition_predict.step_costs c
 WHERE pg_catalog.has_table_privilege(c.parent, 'SELECT') AND NOT pg_catalog.row_security_active(c.parent);

COMMENT ON VIEW partition_predict.cycle_costs IS
    'What each step of each table''s cycle costs: the last cycle (time, rows of the table read, shared buffers hit and read) and the average and maximum time over all cycles.';

CREATE VIEW partition_predict.alerts AS
SELECT a.id, a.parent, a.kind, a.subject, a.severity, a.message, a.details, a.raised_at, a.updated_at, a.occurrences
  FROM partition_predict.alert_log a
 WHERE a.resolved_at IS NULL
   AND (a.parent IS NULL
        OR (pg_catalog.has_table_privilege(a.parent, 'SELECT') AND NOT pg_catalog.row_security_active(a.parent)));

COMMENT ON VIEW partition_predict.alerts IS
    'Open alerts: conditions raised and not yet resolved, one row each however many cycles saw them.';

CREATE VIEW partition_predict.alert_history AS
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
CREATE VIEW partition_predict.metrics AS
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
                partition_predict.alerts, partition_predict.alert_history, partition_predict.metrics,
                partition_predict.worker_status,
                partition_predict.forecasts, partition_predict.forecast_accuracy, partition_predict.cycle_costs,
                partition_predict.routing_overrides, partition_predict.migrations_history,
                partition_predict.ingest_history TO PUBLIC;

DO $$
BEGIN
    IF NOT partition_predict.is_preloaded() THEN
        RAISE WARNING 'pg_partition_predict is not in shared_preload_libraries: background workers and query routing are off'
            USING HINT = 'Add pg_partition_predict to shared_preload_libraries and restart PostgreSQL. The SQL functions work when called by hand.';
    END IF;
END
$$;

-- ===========================================================================
-- >>> 0.2.0 ADDITIONS GO HERE: objects added to sql/*.sql or src/api/ after
-- >>> the schema this script was written against (commit 06105b3).
-- ===========================================================================

-- Data retention: archived tables waiting to move to their tablespace.
CREATE TABLE partition_predict.archive_moves (
    parent      pg_catalog.regclass NOT NULL
                REFERENCES partition_predict.config (parent) ON DELETE CASCADE,
    relid       oid NOT NULL,
    tablespace  name NOT NULL,
    detached_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (parent, relid)
);
ALTER TABLE partition_predict.archive_moves ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rights ON partition_predict.archive_moves USING (pg_catalog.pg_has_role(
    (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), 'USAGE'));
GRANT SELECT ON partition_predict.archive_moves TO PUBLIC;

-- Data retention and taking tables over from pg_partman.
CREATE  FUNCTION partition_predict."set_retention"(
	"parent" regclass, /* Option < Regclass > */
	"keep" TEXT, /* Option < String > */
	"expired" TEXT DEFAULT NULL, /* Option < String > */
	"archive_schema" TEXT DEFAULT NULL, /* Option < String > */
	"archive_tablespace" TEXT DEFAULT NULL /* Option < String > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_retention_wrapper';

CREATE  FUNCTION partition_predict."retention_preview"(
	"parent" regclass /* Option < Regclass > */
) RETURNS TABLE (
	"partition" TEXT,  /* String */
	"range_start" TEXT,  /* String */
	"range_end" TEXT,  /* String */
	"action" TEXT,  /* String */
	"reason" TEXT  /* String */
)
STABLE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'retention_preview_wrapper';

CREATE  FUNCTION partition_predict."apply_retention"(
	"parent" regclass /* Option < Regclass > */
) RETURNS TABLE (
	"partition" TEXT,  /* String */
	"range_start" TEXT,  /* String */
	"range_end" TEXT,  /* String */
	"action" TEXT,  /* String */
	"reason" TEXT  /* String */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'apply_retention_wrapper';

CREATE  FUNCTION partition_predict."adopt_partman"(
	"parent" regclass, /* Option < Regclass > */
	"target_rows" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS partition_predict.config /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'adopt_partman_wrapper';

-- ===========================================================================
-- Last, after any addition: back to the role the update was started as.
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

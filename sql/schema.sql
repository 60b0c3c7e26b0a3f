-- Tables behind the views. Runs first (bootstrap), before any function.

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
    managed_since timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE partition_predict.config IS
    'Managed tables and their settings. Change it through manage()/unmanage().';
SELECT pg_catalog.pg_extension_config_dump('partition_predict.config', '');

-- Table owners manage their own tables without superuser rights: every role
-- may write here, but only rows of tables it owns (as pg_cron does for jobs).
ALTER TABLE partition_predict.config ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rights ON partition_predict.config
    USING (pg_catalog.pg_has_role(
        (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = parent), 'USAGE'));
GRANT USAGE ON SCHEMA partition_predict TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON partition_predict.config TO PUBLIC;

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

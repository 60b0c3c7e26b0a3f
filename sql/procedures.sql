-- Procedures and SQL-language functions over the Rust functions: the typed
-- activate() overloads and the procedures migrate_default and ingest, which
-- commit between their steps. Placed after the functions they call.
--
-- A procedure that commits cannot carry SET search_path, and it runs with
-- its caller's: every operator in its body is written OPERATOR(pg_catalog.…),
-- every function and type is qualified, and each transaction it starts
-- pins search_path first, so that nothing a role planted on the caller's
-- search_path is ever called with the caller's rights (a superuser's, say).

-- activate() with a value of the key's own type: formatted to ISO text in
-- UTC here, so the session's DateStyle and TimeZone cannot change its meaning.
CREATE FUNCTION partition_predict.activate(parent regclass, up_to timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, to_char(up_to AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00')
$$;
CREATE FUNCTION partition_predict.activate(parent regclass, up_to timestamp) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, to_char(up_to, 'YYYY-MM-DD HH24:MI:SS.US'))
$$;
-- As text in ISO: a date past what a timestamp holds (294276 AD) has no to_char().
CREATE FUNCTION partition_predict.activate(parent regclass, up_to date) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, YMD' AS $$
    SELECT partition_predict.activate(parent, up_to::text)
$$;
CREATE FUNCTION partition_predict.activate(parent regclass, up_to bigint) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT partition_predict.activate(parent, up_to::text)
$$;

-- Moves rows of DEFAULT into the partitions they belong in, one range at a
-- time, each range in one transaction with the ATTACH of its partition (so:
-- CALL it outside a transaction block). Every observer (queries, standbys,
-- dumps) sees each row in DEFAULT or in its partition, never elsewhere.
CREATE PROCEDURE partition_predict.migrate_default(parent regclass, batch_rows integer DEFAULT 10000)
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
CREATE PROCEDURE partition_predict.ingest(
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

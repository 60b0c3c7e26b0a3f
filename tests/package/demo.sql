-- The sample table of scripts/demo (keep the two alike): an events table
-- partitioned by time, with four days of history arriving before the first
-- cycle. tests/package/run reads it with psql after CREATE EXTENSION and
-- then lets more hours arrive with demo.arrive(h) and run_cycle().
CREATE SCHEMA demo;
CREATE TABLE demo.events (
    id      bigint GENERATED ALWAYS AS IDENTITY,
    at      timestamptz NOT NULL,
    kind    text NOT NULL
) PARTITION BY RANGE (at);
CREATE INDEX ON demo.events (at);
CREATE TABLE demo.events_history PARTITION OF demo.events FOR VALUES FROM ('2024-03-04') TO ('2024-03-08');
-- Rows for hour h after 2024-03-04 00:00 UTC: a daily cycle, three times as many from day 6 on.
CREATE FUNCTION demo.arrive(h int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO demo.events (at, kind)
    SELECT '2024-03-04 00:00+00'::timestamptz + h * interval '1 hour' + g * interval '1 hour' / n, 'click'
      FROM (SELECT round(120 * (1 + 0.5 * sin((h % 24 - 9) / 24.0 * 2 * pi()))
                         * CASE WHEN h >= 5 * 24 THEN 3 ELSE 1 END)::int AS n) r,
           generate_series(0, r.n - 1) g
$$;
-- How many rows demo.arrive(h) inserts for hours first..last.
CREATE FUNCTION demo.expected_rows(first int, last int) RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(round(120 * (1 + 0.5 * sin((h % 24 - 9) / 24.0 * 2 * pi()))
                     * CASE WHEN h >= 5 * 24 THEN 3 ELSE 1 END)::int)
      FROM generate_series(first, last) h
$$;
SELECT partition_predict.manage('demo.events', target_rows => 3000, lookahead => '1 day') \gset
DO $$ BEGIN PERFORM demo.arrive(h) FROM generate_series(0, 4 * 24 - 1) h; END $$;
SELECT pg_stat_force_next_flush() \gset

//! SQL-level tests, run inside PostgreSQL by `cargo pgrx test`. Each test
//! runs in its own transaction, rolled back afterwards.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Runs `sql` and returns `(SQLSTATE, message)` of the error it raises.
    /// PL/pgSQL catches the error, so the assertion does not depend on our own
    /// error plumbing.
    fn error_of(sql: &str) -> (String, String) {
        // Created once per session: a test may have switched to a role that
        // could not replace it.
        Spi::run(
            "DO $outer$ BEGIN IF pg_catalog.to_regprocedure('pg_temp.error_of(text)') IS NULL THEN
             CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT message text)
             LANGUAGE plpgsql AS $$
             BEGIN
                 EXECUTE q;
                 state := 'none';
             EXCEPTION WHEN OTHERS THEN
                 state := SQLSTATE;
                 message := SQLERRM;
             END $$;
             END IF; END $outer$",
        )
        .expect("helper function");
        let (state, message) = Spi::get_two_with_args::<String, String>(
            "SELECT * FROM pg_temp.error_of($1)",
            &[sql.into()],
        )
        .expect("helper call");
        (state.unwrap_or_default(), message.unwrap_or_default())
    }

    fn assert_refused(sql: &str, sqlstate: &str, message_part: &str) {
        let (state, message) = error_of(sql);
        assert_eq!(state, sqlstate, "SQLSTATE of {sql}: {message}");
        assert!(
            message.contains(message_part),
            "message of {sql} was {message:?}, expected it to contain {message_part:?}"
        );
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn is_managed(table: &str) -> bool {
        one::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM partition_predict.managed_tables WHERE parent = '{table}'::regclass)"
        ))
        .unwrap_or(false)
    }

    #[pg_test]
    fn refuses_list_partitioning() {
        run("CREATE TABLE l (a int) PARTITION BY LIST (a)");
        assert_refused(
            "SELECT partition_predict.manage('l')",
            "0A000",
            "public.l is partitioned by LIST",
        );
    }

    #[pg_test]
    fn refuses_hash_partitioning() {
        run("CREATE TABLE h (a int) PARTITION BY HASH (a)");
        assert_refused(
            "SELECT partition_predict.manage('h')",
            "0A000",
            "public.h is partitioned by HASH",
        );
    }

    #[pg_test]
    fn refuses_multi_column_key() {
        run("CREATE TABLE m (a int, b int) PARTITION BY RANGE (a, b)");
        assert_refused(
            "SELECT partition_predict.manage('m')",
            "0A000",
            "more than one column",
        );
    }

    #[pg_test]
    fn refuses_expression_key() {
        run("CREATE TABLE e (at timestamp) PARTITION BY RANGE ((at::date))");
        assert_refused(
            "SELECT partition_predict.manage('e')",
            "0A000",
            "partitioned by an expression",
        );
    }

    #[pg_test]
    fn refuses_unsupported_key_types() {
        for (column_type, name) in [("text", "text"), ("numeric", "numeric"), ("uuid", "uuid")] {
            run(&format!(
                "CREATE TABLE k_{name} (k {column_type}) PARTITION BY RANGE (k)"
            ));
            assert_refused(
                &format!("SELECT partition_predict.manage('k_{name}')"),
                "0A000",
                &format!("partition key k of public.k_{name} has type {name}"),
            );
        }
    }

    #[pg_test]
    fn refuses_non_partitioned_table() {
        run("CREATE TABLE plain (a int)");
        assert_refused(
            "SELECT partition_predict.manage('plain')",
            "42809",
            "public.plain is not a partitioned table",
        );
        run("CREATE VIEW v AS SELECT 1 AS a");
        assert_refused(
            "SELECT partition_predict.manage('v')",
            "42809",
            "is not a partitioned table",
        );
    }

    #[pg_test]
    fn refuses_temporary_table() {
        run("CREATE TEMP TABLE tmp (a int) PARTITION BY RANGE (a)");
        assert_refused(
            "SELECT partition_predict.manage('tmp')",
            "0A000",
            "is a temporary table",
        );
    }

    #[pg_test]
    fn refuses_table_the_caller_does_not_own() {
        run("CREATE TABLE owned_by_super (at date) PARTITION BY RANGE (at)");
        run("CREATE ROLE intruder");
        run("GRANT USAGE ON SCHEMA public TO intruder");
        run("SET LOCAL ROLE intruder");
        assert_refused(
            "SELECT partition_predict.manage('owned_by_super')",
            "42501",
            "must be owner of table public.owned_by_super",
        );
        run("RESET ROLE");
        assert!(!is_managed("owned_by_super"));
    }

    #[pg_test]
    fn refuses_table_already_managed() {
        run("CREATE TABLE twice (id bigint) PARTITION BY RANGE (id)");
        run("SELECT partition_predict.manage('twice')");
        assert_refused(
            "SELECT partition_predict.manage('twice')",
            "42710",
            "public.twice is already managed",
        );
    }

    #[pg_test]
    fn refuses_sub_partitioned_table() {
        run("CREATE TABLE sub (at date, region int) PARTITION BY RANGE (at)");
        run("CREATE TABLE sub_2024 PARTITION OF sub FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (region)");
        assert_refused(
            "SELECT partition_predict.manage('sub')",
            "0A000",
            "partition public.sub_2024 of public.sub is itself partitioned",
        );
    }

    #[pg_test]
    fn refuses_bad_settings() {
        run("CREATE TABLE s_time (at timestamptz) PARTITION BY RANGE (at)");
        run("CREATE TABLE s_date (d date) PARTITION BY RANGE (d)");
        run("CREATE TABLE s_int (id int) PARTITION BY RANGE (id)");
        for (call, part) in [
            (
                "manage('s_time', target_rows => 0)",
                "invalid target_rows: must be positive",
            ),
            (
                "manage('s_time', lookahead => 'soon')",
                "invalid lookahead: \"soon\" is not an interval",
            ),
            (
                "manage('s_time', lookahead => '-1 day')",
                "must be a positive interval",
            ),
            (
                "manage('s_time', min_span => '1 day', max_span => '1 hour')",
                "min_span 1 day is larger than max_span 01:00:00",
            ),
            (
                "manage('s_date', min_span => '6 hours')",
                "a date key needs whole days",
            ),
            (
                "manage('s_int', min_span => '1 day')",
                "is not a whole number of key values",
            ),
            (
                "manage('s_int', max_span => '0')",
                "invalid max_span: must be positive",
            ),
            (
                "manage('s_int', lookahead => 'later')",
                "neither a whole number of key values",
            ),
        ] {
            assert_refused(&format!("SELECT partition_predict.{call}"), "22023", part);
        }
        // A refused call leaves nothing behind: no configuration, no DEFAULT partition.
        for t in ["s_time", "s_date", "s_int"] {
            assert!(!is_managed(t));
            assert_eq!(
                one::<i64>(&format!(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = '{t}'::regclass"
                )),
                Some(0)
            );
        }
    }

    #[pg_test]
    fn date_keys_keep_the_history_of_a_yearly_season() {
        run("CREATE TABLE h_date (d date) PARTITION BY RANGE (d)");
        run("CREATE TABLE h_time (at timestamptz) PARTITION BY RANGE (at)");
        run("CREATE TABLE h_date_short (d date) PARTITION BY RANGE (d)");
        run("SELECT partition_predict.manage('h_date')");
        run("SELECT partition_predict.manage('h_time')");
        run("SELECT partition_predict.manage('h_date_short', history_retention => '10 days')");
        let kept = |t: &str| {
            one::<String>(&format!(
                "SELECT history_retention::text FROM partition_predict.config WHERE parent = '{t}'::regclass"
            ))
        };
        assert_eq!(kept("h_date").as_deref(), Some("3 years"));
        assert_eq!(kept("h_time").as_deref(), Some("35 days"));
        assert_eq!(kept("h_date_short").as_deref(), Some("10 days"));
    }

    #[pg_test]
    fn unmanage_refuses_table_not_managed() {
        run("CREATE TABLE never (id int) PARTITION BY RANGE (id)");
        assert_refused(
            "SELECT partition_predict.unmanage('never')",
            "42704",
            "public.never is not managed",
        );
    }

    #[pg_test]
    fn names_that_need_quoting() {
        run(r#"CREATE SCHEMA "My Schema""#);
        run(
            r#"CREATE TABLE "My Schema"."Ev""ents 2024" (id bigserial, "Created At" timestamptz NOT NULL) PARTITION BY RANGE ("Created At")"#,
        );
        run(
            r#"CREATE TABLE "My Schema"."Ev""ents 2024 jan" PARTITION OF "My Schema"."Ev""ents 2024" FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"#,
        );
        run(r#"SELECT partition_predict.manage('"My Schema"."Ev""ents 2024"')"#);
        let default =
            one::<String>("SELECT default_partition::text FROM partition_predict.managed_tables");
        assert_eq!(
            default.as_deref(),
            Some(r#""My Schema"."Ev""ents 2024_default""#)
        );
        assert_eq!(
            one::<String>("SELECT key_column::text FROM partition_predict.managed_tables")
                .as_deref(),
            Some("Created At")
        );
        run(
            r#"INSERT INTO "My Schema"."Ev""ents 2024" ("Created At") VALUES ('2024-01-10'), ('2031-01-01')"#,
        );
        assert_eq!(
            one::<String>(
                r#"SELECT string_agg(tableoid::regclass::text, ' | ' ORDER BY "Created At") FROM "My Schema"."Ev""ents 2024""#
            )
            .as_deref(),
            Some(r#""My Schema"."Ev""ents 2024 jan" | "My Schema"."Ev""ents 2024_default""#)
        );
        assert_refused(
            r#"SELECT partition_predict.manage('"My Schema"."Ev""ents 2024"')"#,
            "42710",
            r#""My Schema"."Ev""ents 2024" is already managed"#,
        );
        run(r#"SELECT partition_predict.unmanage('"My Schema"."Ev""ents 2024"')"#);
    }

    /// Every supported key type: bounds are read back exactly, a row outside
    /// every range lands in the DEFAULT partition that `manage` added.
    #[pg_test]
    fn every_supported_key_type() {
        let cases = [
            (
                "timestamptz",
                "'2024-03-01 00:00:00+00'",
                "'2024-03-02 00:00:00+00'",
                "2024-03-01 00:00:00+00",
                "2024-03-02 00:00:00+00",
                "'2031-05-05 10:00:00+00'",
            ),
            (
                "timestamp",
                "'2024-03-01 06:30:00'",
                "'2024-03-01 07:00:00'",
                "2024-03-01 06:30:00",
                "2024-03-01 07:00:00",
                "'1999-01-01 00:00:00'",
            ),
            (
                "date",
                "'2024-03-01'",
                "'2024-04-01'",
                "2024-03-01",
                "2024-04-01",
                "'2024-04-01'",
            ),
            ("smallint", "-100", "100", "-100", "100", "100"),
            ("integer", "0", "1000000", "0", "1000000", "-1"),
            (
                "bigint",
                "MINVALUE",
                "9000000000",
                "MINVALUE",
                "9000000000",
                "9000000000",
            ),
        ];
        for (column_type, from, to, expected_from, expected_to, outside) in cases {
            let table = format!("keys_{column_type}");
            run(&format!("CREATE TABLE {table} (k {column_type} NOT NULL, payload text) PARTITION BY RANGE (k)"));
            run(&format!(
                "CREATE TABLE {table}_p PARTITION OF {table} FOR VALUES FROM ({from}) TO ({to})"
            ));
            run(&format!("SELECT partition_predict.manage('{table}')"));
            let key_type = one::<String>(&format!(
                "SELECT key_type FROM partition_predict.managed_tables WHERE parent = '{table}'::regclass"
            ));
            assert_eq!(
                key_type.as_deref(),
                Some(match column_type {
                    "timestamptz" => "timestamp with time zone",
                    "timestamp" => "timestamp without time zone",
                    other => other,
                })
            );
            let (range_start, range_end) = Spi::get_two::<String, String>(&format!(
                "SELECT range_start, range_end FROM partition_predict.partitions
                  WHERE parent = '{table}'::regclass AND state = 'active'"
            ))
            .unwrap();
            assert_eq!(
                (range_start.as_deref(), range_end.as_deref()),
                (Some(expected_from), Some(expected_to)),
                "{column_type}"
            );
            run(&format!(
                "INSERT INTO {table} VALUES ({outside}, 'outside')"
            ));
            let landed = one::<String>(&format!(
                "SELECT tableoid::regclass::text FROM {table} WHERE payload = 'outside'"
            ));
            assert_eq!(landed, Some(format!("{table}_default")), "{column_type}");
            assert_eq!(
                one::<i64>(&format!(
                    "SELECT count(*) FROM partition_predict.partitions WHERE parent = '{table}'::regclass AND state = 'default'"
                )),
                Some(1)
            );
        }
    }

    #[pg_test]
    fn keeps_an_existing_default_partition() {
        run("CREATE TABLE has_default (id bigint) PARTITION BY RANGE (id)");
        run("CREATE TABLE has_default_catchall PARTITION OF has_default DEFAULT");
        run("SELECT partition_predict.manage('has_default')");
        assert_eq!(
            one::<String>("SELECT default_partition::text FROM partition_predict.managed_tables")
                .as_deref(),
            Some("has_default_catchall")
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'has_default'::regclass"
            ),
            Some(1)
        );
        assert_eq!(
            one::<bool>("SELECT to_regclass('has_default_default') IS NULL"),
            Some(true)
        );
    }

    #[pg_test]
    fn default_partition_name_does_not_collide() {
        run("CREATE TABLE busy (id bigint) PARTITION BY RANGE (id)");
        run("CREATE TABLE busy_default (unrelated text)");
        run("SELECT partition_predict.manage('busy')");
        assert_eq!(
            one::<String>("SELECT default_partition::text FROM partition_predict.managed_tables")
                .as_deref(),
            Some("busy_default_2")
        );
    }

    #[pg_test]
    fn table_owner_manages_without_superuser_rights() {
        run("CREATE ROLE app_owner");
        run("GRANT CREATE, USAGE ON SCHEMA public TO app_owner");
        run("CREATE TABLE app_events (at timestamptz NOT NULL) PARTITION BY RANGE (at)");
        run("ALTER TABLE app_events OWNER TO app_owner");
        run("SET LOCAL ROLE app_owner");
        run("SELECT partition_predict.manage('app_events', target_rows => 5000)");
        assert!(is_managed("app_events"));
        assert_eq!(
            one::<String>("SELECT r.rolname::text FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = 'app_events_default'::regclass").as_deref(),
            Some("app_owner")
        );
        // Another role cannot touch that configuration row, not even directly.
        run("RESET ROLE");
        run("CREATE ROLE other_role");
        run("SET LOCAL ROLE other_role");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM partition_predict.config"),
            Some(0)
        );
        // Not even directly: no role may write the extension's state.
        assert_refused(
            "UPDATE partition_predict.config SET target_rows = 1",
            "42501",
            "permission denied",
        );
        run("RESET ROLE");
        assert_eq!(
            one::<i64>("SELECT target_rows FROM partition_predict.config"),
            Some(5000)
        );
    }

    #[pg_test]
    fn superuser_managing_another_roles_table_gives_default_to_that_owner() {
        run("CREATE ROLE data_owner");
        run("CREATE TABLE owned (id int) PARTITION BY RANGE (id)");
        run("ALTER TABLE owned OWNER TO data_owner");
        run("SELECT partition_predict.manage('owned')");
        assert_eq!(
            one::<String>("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'owned_default'::regclass").as_deref(),
            Some("data_owner")
        );
    }

    #[pg_test]
    fn manage_returns_the_configuration_row() {
        run("CREATE TABLE cfg (at timestamptz) PARTITION BY RANGE (at)");
        let (target_rows, lookahead) = Spi::get_two::<i64, String>(
            "SELECT target_rows, lookahead FROM partition_predict.manage('cfg', 250000, '3 days 12 hours')",
        )
        .unwrap();
        assert_eq!(target_rows, Some(250_000));
        assert_eq!(lookahead.as_deref(), Some("3 days 12:00:00"));
        let defaults = Spi::get_two::<i64, String>(
            "SELECT target_rows, lookahead FROM partition_predict.managed_tables",
        )
        .unwrap();
        assert_eq!(
            defaults,
            (Some(250_000), Some("3 days 12:00:00".to_string()))
        );
    }

    #[pg_test]
    fn unmanage_keeps_partitions_and_data() {
        run("CREATE TABLE keep (id bigint) PARTITION BY RANGE (id)");
        run("CREATE TABLE keep_1 PARTITION OF keep FOR VALUES FROM (0) TO (10)");
        run("SELECT partition_predict.manage('keep')");
        run("INSERT INTO keep SELECT g FROM generate_series(0, 19) g");
        run("SELECT partition_predict.unmanage('keep')");
        assert!(!is_managed("keep"));
        assert_eq!(one::<i64>("SELECT count(*) FROM keep"), Some(20));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_inherits WHERE inhparent = 'keep'::regclass"),
            Some(2)
        );
    }

    #[pg_test]
    fn dropping_a_managed_table_forgets_it() {
        run("CREATE TABLE doomed (id bigint) PARTITION BY RANGE (id)");
        run("SELECT partition_predict.manage('doomed')");
        run("DROP TABLE doomed");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM partition_predict.config"),
            Some(0)
        );
    }

    #[pg_test]
    fn settings_are_pinned_only_during_the_call() {
        run("SET LOCAL TimeZone = 'America/New_York'");
        run("SET LOCAL DateStyle = 'SQL, DMY'");
        run("CREATE TABLE tz (at timestamptz) PARTITION BY RANGE (at)");
        run("CREATE TABLE tz_p PARTITION OF tz FOR VALUES FROM ('2024-06-01 00:00:00+00') TO ('2024-06-02 00:00:00+00')");
        run("SELECT partition_predict.manage('tz')");
        // Bounds are reported in UTC whatever the session's zone and style ...
        assert_eq!(
            one::<String>(
                "SELECT range_start FROM partition_predict.partitions WHERE state = 'active'"
            )
            .as_deref(),
            Some("2024-06-01 00:00:00+00")
        );
        // ... and the caller's settings are back afterwards.
        assert_eq!(
            one::<String>("SELECT current_setting('TimeZone')").as_deref(),
            Some("America/New_York")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('DateStyle')").as_deref(),
            Some("SQL, DMY")
        );
    }

    #[pg_test]
    fn library_reports_it_was_preloaded() {
        assert_eq!(
            one::<bool>("SELECT partition_predict.is_preloaded()"),
            Some(true)
        );
    }

    #[pg_test]
    fn settings_have_documented_defaults_and_reserved_prefix() {
        for (name, value) in [
            ("enabled", "on"),
            ("naptime", "1min"),
            ("database", "postgres"),
            ("lock_timeout", "100ms"),
            ("lock_retries", "20"),
            ("forecast_alert_threshold", "0.5"),
            ("routing", "on"),
        ] {
            assert_eq!(
                one::<String>(&format!("SHOW pg_partition_predict.{name}")).as_deref(),
                Some(value),
                "{name}"
            );
        }
        // A typo under the reserved prefix is an error, not a silent placeholder.
        assert_refused(
            "SET pg_partition_predict.naptim = 5",
            "42602",
            "invalid configuration parameter name",
        );
    }

    #[pg_test]
    fn collect_stats_refuses_tables_not_managed_or_not_owned() {
        run("CREATE TABLE free (id int) PARTITION BY RANGE (id)");
        assert_refused(
            "SELECT * FROM partition_predict.collect_stats('free')",
            "42704",
            "public.free is not managed",
        );
        run("SELECT partition_predict.manage('free')");
        run("CREATE ROLE snoop");
        run("SET LOCAL ROLE snoop");
        assert_refused(
            "SELECT * FROM partition_predict.run_cycle('free')",
            "42501",
            "must be owner of table public.free",
        );
        // Without an argument a role only cycles the tables it owns: none here.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM partition_predict.run_cycle()"),
            Some(0)
        );
    }

    #[pg_test]
    fn run_cycle_returns_a_summary_and_records_the_cycle() {
        run("CREATE TABLE sums (id bigint NOT NULL) PARTITION BY RANGE (id)");
        run("CREATE TABLE sums_1 PARTITION OF sums FOR VALUES FROM (0) TO (100)");
        run("SELECT partition_predict.manage('sums', history_retention => '2 days')");
        run("INSERT INTO sums SELECT g FROM generate_series(0, 149) g");
        let (parent, error) = Spi::get_two::<String, String>(
            "SELECT parent::text, error FROM partition_predict.run_cycle('sums')",
        )
        .unwrap();
        assert_eq!(parent.as_deref(), Some("sums"));
        assert_eq!(error, None);
        // This transaction's own inserts are not in the shared statistics yet,
        // but the DEFAULT partition is small and counted exactly.
        assert_eq!(
            one::<i64>("SELECT rows_in_default FROM partition_predict.run_cycle('sums')"),
            Some(50)
        );
        assert_eq!(
            one::<String>("SELECT state || '/' || cycles FROM partition_predict.managed_tables")
                .as_deref(),
            Some("ok/2")
        );
        assert_eq!(
            one::<String>("SELECT history_retention::text FROM partition_predict.managed_tables")
                .as_deref(),
            Some("2 days")
        );
    }

    #[pg_test]
    fn history_retention_must_be_at_least_a_day() {
        run("CREATE TABLE ret (id int) PARTITION BY RANGE (id)");
        assert_refused(
            "SELECT partition_predict.manage('ret', history_retention => '1 hour')",
            "22023",
            "invalid history_retention",
        );
        assert_refused(
            "SELECT partition_predict.manage('ret', history_retention => 'forever')",
            "22023",
            "invalid history_retention",
        );
        // Further back than a timestamp reaches: refused as a setting, not
        // left to fail every cycle with 22008.
        assert_refused(
            "SELECT partition_predict.manage('ret', history_retention => '1000000 years')",
            "22023",
            "more than 1,000 years",
        );
        assert_refused(
            "SELECT partition_predict.manage('ret', history_retention => '300000 years -109500000 days')",
            "22023",
            "must be positive",
        );
        assert_refused(
            "SELECT partition_predict.manage('ret', retention => '3 days', history_retention => '3 days')",
            "22023",
            "history_retention only",
        );
    }

    #[pg_test]
    fn a_level_of_a_partition_hierarchy_is_not_managed_on_its_own() {
        run("CREATE TABLE top (at date, k int) PARTITION BY RANGE (at)");
        run("CREATE TABLE top_2026 PARTITION OF top FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (k)");
        assert_refused(
            "SELECT partition_predict.manage('top_2026')",
            "0A000",
            "is a partition of public.top",
        );
    }

    #[pg_test]
    fn the_old_name_retention_still_sets_the_history_kept() {
        run("CREATE TABLE old_name (id int) PARTITION BY RANGE (id)");
        run("SELECT partition_predict.manage('old_name', retention => '3 days')");
        assert_eq!(
            one::<String>("SELECT history_retention::text || '/' || (keep IS NULL) FROM partition_predict.config")
                .as_deref(),
            Some("3 days/true")
        );
    }

    #[pg_test]
    fn data_retention_settings_are_checked() {
        run("CREATE TABLE kept_t (at timestamptz) PARTITION BY RANGE (at)");
        run("CREATE TABLE kept_i (id bigint) PARTITION BY RANGE (id)");
        run("CREATE TABLE kept_d (day date) PARTITION BY RANGE (day)");
        for (sql, message) in [
            ("SELECT partition_predict.manage('kept_t', keep => 'a while')", "invalid keep"),
            ("SELECT partition_predict.manage('kept_i', keep => '90 days')", "invalid keep"),
            ("SELECT partition_predict.manage('kept_d', keep => '36 hours')", "whole days"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'shred')", "not one of drop, detach, archive"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'archive')", "archive needs archive_schema"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'drop', archive_schema => 'public')", "apply only to expired => 'archive'"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'archive', archive_schema => 'nowhere')", "does not exist"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'archive', archive_schema => 'partition_predict')", "system schema"),
            ("SELECT partition_predict.manage('kept_t', keep => '90 days', expired => 'archive', archive_tablespace => 'pg_global')", "shared catalogs"),
            ("SELECT partition_predict.manage('kept_t', expired => 'drop')", "need keep"),
            ("SELECT partition_predict.manage('kept_t', keep => '1 mon -29 days')", "must be positive"),
            ("SELECT partition_predict.manage('kept_t', keep => '2000 years')", "more than 1,000 years"),
        ] {
            assert_refused(sql, "22023", message);
        }
        run("CREATE SCHEMA attic");
        run("SELECT partition_predict.manage('kept_t', keep => '3 months', expired => 'archive', archive_schema => 'attic')");
        run("SELECT partition_predict.manage('kept_i', keep => '500000')");
        assert_eq!(
            one::<String>("SELECT string_agg(parent::text || ':' || keep || ':' || expired || ':' || coalesce(archive_schema::text, '-'), ' ' ORDER BY parent::text) FROM partition_predict.config")
                .as_deref(),
            Some("kept_i:500000:detach:- kept_t:3 mons:archive:attic")
        );
        run("SELECT partition_predict.set_retention('kept_t', '10 days', 'drop')");
        run("SELECT partition_predict.set_retention('kept_i', NULL)");
        assert_eq!(
            one::<String>("SELECT string_agg(parent::text || ':' || coalesce(keep, 'all') || ':' || expired, ' ' ORDER BY parent::text) FROM partition_predict.managed_tables")
                .as_deref(),
            Some("kept_i:all:detach kept_t:10 days:drop")
        );
        assert_refused(
            "SELECT partition_predict.set_retention('kept_d', '10 days')",
            "42704",
            "not managed",
        );
    }

    #[pg_test]
    fn refuses_unknown_tablespaces() {
        run("CREATE TABLE spaced (at timestamptz) PARTITION BY RANGE (at)");
        assert_refused(
            "SELECT partition_predict.manage('spaced', tablespaces => '{nowhere}')",
            "22023",
            "tablespace \"nowhere\" does not exist",
        );
        run("SELECT partition_predict.manage('spaced', tablespaces => '{pg_default}')");
        assert_eq!(
            one::<String>("SELECT tablespaces::text FROM partition_predict.managed_tables")
                .as_deref(),
            Some("{pg_default}")
        );
    }

    #[pg_test]
    fn activate_and_prepartition_refuse_what_manage_refuses() {
        run("CREATE TABLE loose (id bigint) PARTITION BY RANGE (id)");
        assert_refused(
            "SELECT partition_predict.activate('loose')",
            "42704",
            "public.loose is not managed",
        );
        assert_refused(
            "SELECT * FROM partition_predict.prepartition('loose')",
            "42704",
            "public.loose is not managed",
        );
        run("SELECT partition_predict.manage('loose')");
        assert_refused(
            "SELECT partition_predict.activate('loose', 'soon')",
            "22023",
            "invalid up_to",
        );
        // Nothing planned yet (no data): nothing to attach, and no error.
        assert_eq!(
            one::<i64>("SELECT partition_predict.activate('loose', 100)"),
            Some(0)
        );
        assert_eq!(
            one::<i64>("SELECT partition_predict.force_replan('loose')"),
            Some(1)
        );
    }

    #[pg_test]
    fn null_arguments_are_clear_errors() {
        assert_refused(
            "SELECT partition_predict.manage(NULL)",
            "22004",
            "parent must not be NULL",
        );
        assert_refused(
            "SELECT partition_predict.activate(NULL)",
            "22004",
            "parent must not be NULL",
        );
        // unmanage() is STRICT: NULL in, NULL out, nothing done.
        assert_eq!(
            one::<bool>("SELECT partition_predict.unmanage(NULL) IS NULL"),
            Some(true)
        );
    }

    #[pg_test]
    fn migration_step_refuses_bad_input_clearly() {
        run("CREATE TABLE m (k bigint NOT NULL) PARTITION BY RANGE (k)");
        assert_refused(
            "SELECT partition_predict.migration_step(NULL)",
            "22004",
            "parent must not be NULL",
        );
        assert_refused(
            "SELECT partition_predict.migration_step('m')",
            "42704",
            "public.m is not managed",
        );
        run("SELECT partition_predict.manage('m')");
        assert_refused(
            "SELECT partition_predict.migration_step('m', 0)",
            "22023",
            "batch_rows",
        );
        // A step commits on its own (`migrate_default()` commits after
        // each), even one with nothing to do; no override is left behind.
        assert_refused(
            "SELECT partition_predict.migration_step('m')",
            "25001",
            "transaction block",
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM partition_predict.routing_overrides"),
            Some(0)
        );
    }

    /// Every SQL function with NULL in each argument, and with the OID of a
    /// table that does not exist: a proper SQLSTATE, never an internal error.
    #[pg_test]
    fn every_function_answers_null_and_dropped_oids_with_a_proper_sqlstate() {
        run("CREATE TABLE swept (k bigint NOT NULL) PARTITION BY RANGE (k)");
        run("SELECT partition_predict.manage('swept')");
        run("CREATE TABLE batch (k bigint NOT NULL)");
        let gone = "'4000000000'::oid::regclass";
        let calls: Vec<(String, &str)> = vec![
            ("partition_predict.manage(NULL)".into(), "22004"),
            (
                "partition_predict.manage('swept', target_rows => NULL)".into(),
                "22004",
            ),
            (
                "partition_predict.manage('swept', lookahead => NULL)".into(),
                "42710",
            ),
            (
                "partition_predict.manage('swept', tablespaces => ARRAY[NULL]::text[])".into(),
                "22004",
            ),
            (format!("partition_predict.manage({gone})"), "42P01"),
            ("partition_predict.unmanage(NULL)".into(), "none"),
            (format!("partition_predict.unmanage({gone})"), "42P01"),
            ("partition_predict.partition_bounds(NULL)".into(), "none"),
            (
                format!("partition_predict.partition_bounds({gone})"),
                "none",
            ),
            ("partition_predict.collect_stats(NULL)".into(), "none"),
            (format!("partition_predict.collect_stats({gone})"), "42P01"),
            ("partition_predict.forecast(NULL)".into(), "none"),
            (format!("partition_predict.forecast({gone})"), "42P01"),
            ("partition_predict.prepartition(NULL)".into(), "none"),
            (format!("partition_predict.prepartition({gone})"), "42P01"),
            ("partition_predict.run_cycle(NULL)".into(), "none"),
            (format!("partition_predict.run_cycle({gone})"), "42P01"),
            ("partition_predict.activate(NULL)".into(), "22004"),
            (
                "partition_predict.activate('swept', NULL::text)".into(),
                "none",
            ),
            (format!("partition_predict.activate({gone})"), "42P01"),
            ("partition_predict.force_replan(NULL)".into(), "none"),
            (format!("partition_predict.force_replan({gone})"), "42P01"),
            ("partition_predict.migration_step(NULL)".into(), "22004"),
            (
                "partition_predict.migration_step('swept', NULL)".into(),
                "22004",
            ),
            (format!("partition_predict.migration_step({gone})"), "42P01"),
            (
                "partition_predict.ingest_prepare(NULL, 'batch')".into(),
                "22004",
            ),
            (
                "partition_predict.ingest_prepare('swept', NULL)".into(),
                "22004",
            ),
            // Inside a test's transaction ingest stops at its first check
            // (it commits between stages); tests/integration checks the rest.
            (
                format!("partition_predict.ingest_prepare({gone}, 'batch')"),
                "25001",
            ),
            (
                format!("partition_predict.ingest_prepare('swept', {gone})"),
                "25001",
            ),
            (
                "partition_predict.ingest_activate(NULL, 'x')".into(),
                "none",
            ),
            (
                "partition_predict.ingest_activate('swept', NULL)".into(),
                "none",
            ),
            (
                format!("partition_predict.ingest_activate({gone}, 'x')"),
                "42P01",
            ),
            (
                "partition_predict.ingest_load(NULL, 'batch', 0, 0, 'now')".into(),
                "none",
            ),
            (
                format!("partition_predict.ingest_load('swept', {gone}, 0, 0, 'now')"),
                "42P01",
            ),
        ];
        for (call, expected) in calls {
            let sql = format!("SELECT * FROM {call}");
            let (state, message) = error_of(&sql);
            assert!(
                !state.starts_with("XX"),
                "{sql}: internal error {state} {message}"
            );
            assert_eq!(state, expected, "{sql}: {message}");
        }
    }

    /// Planning and activation read the settings, the history and the
    /// newest forecast once each, however many decisions they make from
    /// them (issue: "the cycle reads it once").
    #[pg_test]
    fn planning_and_activation_read_the_history_once() {
        for (table, key, partition, rows) in [
            (
                "once_int",
                "id bigint NOT NULL",
                "FOR VALUES FROM (0) TO (1000)",
                "SELECT g FROM generate_series(0, 899) g",
            ),
            (
                "once_ts",
                "at timestamptz NOT NULL",
                // Ending where the rows end: the forecast's next days need shadows.
                "FOR VALUES FROM ('2026-01-01') TO ('2026-01-04')",
                "SELECT timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(0, 4319) g",
            ),
        ] {
            run(&format!("CREATE TABLE {table} ({key}) PARTITION BY RANGE ({})", key.split(' ').next().unwrap()));
            run(&format!("CREATE TABLE {table}_1 PARTITION OF {table} {partition}"));
            // Rows before manage(): its baseline collection reads them.
            run(&format!("INSERT INTO {table} {rows}"));
            run(&format!("SELECT partition_predict.manage('{table}', target_rows => 100)"));
            let created = one::<i64>(&format!(
                "SELECT shadows_created FROM partition_predict.run_cycle('{table}')"
            ))
            .unwrap_or(0) as u64;
            let reads = crate::cycle::plan_and_activate_reads();
            assert_eq!(
                (reads.settings, reads.history, reads.forecasts),
                (1, 1, 1),
                "{table}: {reads:?}"
            );
            // The shadows waiting, read once (activation uses what planning
            // left), and the attached ones planning may reshape; then, for
            // each shadow made, the check for a stand-in a restore left.
            assert_eq!(reads.shadows, 2 + created, "{table}: {reads:?}");
            // Whether rows are being moved (planning reshapes nothing
            // then), and the open rows-in-DEFAULT conditions.
            assert_eq!((reads.migrations, reads.alerts), (1, 1), "{table}: {reads:?}");
        }
        // Both were planned from that one read: shadows exist past the
        // partition made by hand (for the time key, from its first forecast).
        for table in ["once_int", "once_ts"] {
            assert!(
                one::<i64>(&format!(
                    "SELECT count(*) FROM partition_predict.partitions
                      WHERE parent = '{table}'::regclass AND state IN ('shadow', 'active')
                        AND partition <> '{table}_1'::regclass"
                ))
                .unwrap_or(0)
                    > 0,
                "{table} has no shadow"
            );
        }
    }

    /// A NULL where the state's schema says NOT NULL is damage to report,
    /// never a default to plan with.
    #[pg_test]
    fn a_null_in_a_not_null_state_column_is_an_error_not_a_default() {
        run("CREATE TABLE damaged (id bigint NOT NULL) PARTITION BY RANGE (id)");
        run("CREATE TABLE damaged_1 PARTITION OF damaged FOR VALUES FROM (0) TO (1000)");
        run("INSERT INTO damaged SELECT g FROM generate_series(0, 899) g");
        run("SELECT partition_predict.manage('damaged', target_rows => 100)");
        run("SELECT * FROM partition_predict.run_cycle('damaged')");
        for (table, column, good) in [
            ("config", "target_rows", "100"),
            ("table_state", "reach_margin", "1.5"),
        ] {
            run(&format!(
                "ALTER TABLE partition_predict.{table} ALTER COLUMN {column} DROP NOT NULL"
            ));
            run(&format!(
                "UPDATE partition_predict.{table} SET {column} = NULL"
            ));
            assert_refused(
                "SELECT * FROM partition_predict.prepartition('damaged')",
                "XX001",
                &format!("column {column} of partition_predict.{table} is NULL"),
            );
            run(&format!(
                "UPDATE partition_predict.{table} SET {column} = {good}"
            ));
            run(&format!(
                "ALTER TABLE partition_predict.{table} ALTER COLUMN {column} SET NOT NULL"
            ));
        }
        // Repaired, the same call plans again.
        assert_eq!(
            one::<String>("SELECT error FROM partition_predict.prepartition('damaged')"),
            None
        );
    }
}

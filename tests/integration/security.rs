//! A hostile, non-superuser table owner (`mallory`) against the extension,
//! beside a superuser's data. Each attack must be refused with a clear
//! error or have no effect; the superuser's data is never read, changed,
//! blocked or dropped.
//!
//! The attacks: forging the extension's state (every state table, and in
//! particular a migration or shadow naming another role's table, a
//! DEFAULT partition naming one, a name to splice into SQL); calling each
//! function on another role's table; `ingest` from a table she cannot read;
//! a `COPY` into a table she may not write, hoping the worker prepares it;
//! `DROP EXTENSION`; taking every routing slot; asking for endless shadows;
//! reading another role's migrations through `routing_overrides`; making
//! the worker fail quietly.

use std::time::Duration;

use postgres::Client;

use crate::cluster::{flush_stats, scalar_i64, sqlstate, wait_for, Cluster};
use crate::lifecycle::{
    managed_table_with_shadows, migration_under_way, table_with_rows_in_default, waiting_shadows,
};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];
/// A worker that runs a cycle when it starts or the configuration is
/// reloaded, and otherwise only serves requests.
const IDLE_WORKER: &[&str] = &[
    "pg_partition_predict.database = 'postgres'",
    "pg_partition_predict.naptime = 3600",
];

const STATE_TABLES: [&str; 13] = [
    "config",
    "table_state",
    "step_costs",
    "samples",
    "partition_counters",
    "key_time_counts",
    "alert_log",
    "forecast_log",
    "series_state",
    "shadows",
    "migrations",
    "ingests",
    "frontier_hours",
];

/// The superuser's `secret` (no privileges for anyone, row-level security
/// that hides every row), and mallory, who may create tables.
fn superuser_with_a_secret(cluster: &Cluster) -> Client {
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_partition_predict;
             CREATE ROLE mallory LOGIN;
             GRANT CREATE ON SCHEMA public TO mallory;
             CREATE TABLE secret (id int, payload text);
             INSERT INTO secret SELECT g, 'classified ' || g FROM generate_series(1, 100) g;
             REVOKE ALL ON secret FROM PUBLIC;
             ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
             ALTER TABLE secret FORCE ROW LEVEL SECURITY;
             CREATE POLICY nobody ON secret USING (false);",
        )
        .unwrap();
    admin
}

#[test]
fn only_the_extension_writes_its_state() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    table_with_rows_in_default(&mut mallory, "m", 3000);

    for table in STATE_TABLES {
        for sql in [
            format!("INSERT INTO partition_predict.{table} DEFAULT VALUES"),
            format!("UPDATE partition_predict.{table} SET parent = parent"),
            format!("DELETE FROM partition_predict.{table}"),
        ] {
            assert_eq!(sqlstate(mallory.batch_execute(&sql)), "42501", "{sql}");
        }
    }
    // The forgeries of the report, one by one: a migration whose shadow and
    // DEFAULT are the superuser's table, a shadow naming it, a name to splice.
    for forged in [
        "INSERT INTO partition_predict.migrations (parent, shadow, shadow_name, default_partition,
                 range_from, range_to, range_start, range_end, state)
         VALUES ('m', 'secret'::regclass, 'secret', 'secret'::regclass, 1000000, 2000000, '1000000', '2000000', 'moving')",
        "INSERT INTO partition_predict.shadows (parent, shadow, shadow_name, range_from, range_to,
                 range_start, range_end, predicted_rows)
         VALUES ('m', 'secret'::regclass, 'public.secret; DROP TABLE secret', 1000000, 2000000, '1000000', '2000000', 0)",
        "UPDATE partition_predict.config SET target_rows = 1 WHERE parent = 'm'::regclass",
    ] {
        assert_eq!(sqlstate(mallory.batch_execute(forged)), "42501", "{forged}");
    }

    // Her own migration works, and reads only her rows.
    migration_under_way(&mut mallory, "m");
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM m"), 3000);
    assert_eq!(
        sqlstate(mallory.query("SELECT * FROM secret", &[])),
        "42501"
    );
    // The superuser's writes are not held up by it.
    admin
        .batch_execute(
            "SET statement_timeout = '5s';
             UPDATE secret SET payload = payload WHERE id = 1;
             DELETE FROM secret WHERE id = 100;
             RESET statement_timeout;",
        )
        .unwrap();
    mallory
        .batch_execute("CALL partition_predict.migrate_default('m')")
        .unwrap();
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM m"), 3000);
    admin
        .batch_execute("SELECT partition_predict.unmanage('m')")
        .unwrap();
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM secret"), 99);
}

#[test]
fn another_roles_tables_are_out_of_reach() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "victim");
    let shadow: String = admin
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'victim'::regclass AND state = 'shadow' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    table_with_rows_in_default(&mut mallory, "m", 10);

    for sql in [
        "SELECT partition_predict.manage('victim')".to_string(),
        "SELECT partition_predict.unmanage('victim')".to_string(),
        "SELECT * FROM partition_predict.run_cycle('victim')".to_string(),
        "SELECT * FROM partition_predict.collect_stats('victim')".to_string(),
        "SELECT * FROM partition_predict.prepartition('victim')".to_string(),
        "SELECT partition_predict.activate('victim')".to_string(),
        "SELECT partition_predict.migration_step('victim')".to_string(),
        "SELECT partition_predict.force_replan('victim')".to_string(),
        "SELECT partition_predict.set_time_zone('victim', 'Pacific/Kiritimati')".to_string(),
        format!("SELECT partition_predict.ingest_activate('victim', '{shadow}')"),
        "CALL partition_predict.ingest('m', 'secret')".to_string(),
        "DROP EXTENSION pg_partition_predict".to_string(),
    ] {
        assert_eq!(sqlstate(mallory.batch_execute(&sql)), "42501", "{sql}");
    }
    // A source that no longer exists is a clear error too.
    assert_eq!(
        sqlstate(
            mallory.batch_execute("CALL partition_predict.ingest('m', 4000000000::oid::regclass)")
        ),
        "42P01"
    );
    // Everything-at-once calls and the views cover her tables only.
    let cycled: Vec<String> = mallory
        .query(
            "SELECT parent::text FROM partition_predict.run_cycle()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cycled, vec!["m".to_string()]);
    assert_eq!(
        scalar_i64(
            &mut mallory,
            "SELECT count(*) FROM partition_predict.partitions WHERE parent::text <> 'm'"
        ),
        0
    );
    // The state of the superuser's table is there, and none of it shows to her.
    assert!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.shadows WHERE parent = 'victim'::regclass"
        ) > 0
    );
    for table in STATE_TABLES {
        assert_eq!(
            scalar_i64(
                &mut mallory,
                &format!(
                    "SELECT count(*) FROM partition_predict.{table} WHERE parent::text <> 'm'"
                )
            ),
            0,
            "{table} shows another owner's rows"
        );
    }
    // Nothing of the superuser's changed.
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM secret"), 100);
    assert_eq!(
        scalar_i64(
            &mut admin,
            &format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = '{shadow}'::regclass")
        ),
        0,
        "the superuser's shadow was attached"
    );
}

#[test]
fn a_load_the_role_may_not_run_prepares_nothing() {
    let cluster = Cluster::start_with(true, IDLE_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "victim");
    let waiting = waiting_shadows(&mut admin);
    assert!(!waiting.is_empty());
    let mut mallory = cluster.connect_as("postgres", "mallory");
    let copied = mallory.copy_in::<str>("COPY victim (ts) FROM STDIN");
    assert_eq!(sqlstate(copied), "42501");
    // Had the hook asked the worker to prepare the load, it would have
    // attached every waiting shadow within a second.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(waiting_shadows(&mut admin), waiting);
}

/// Starts a move out of DEFAULT of each of `tables`.
fn start_moves(client: &mut Client, tables: &[&str]) {
    for table in tables {
        let next: String = client
            .query_one(
                &format!("SELECT partition_predict.migration_step('{table}')"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(next, "again", "{table}");
    }
}

#[test]
fn resources_are_bounded_per_database_and_per_table() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = ''",
            "pg_partition_predict.max_migrations_per_database = 2",
            "pg_partition_predict.max_shadows_per_table = 20",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    for table in ["m1", "m2", "m3"] {
        table_with_rows_in_default(&mut mallory, table, 10);
    }
    start_moves(&mut mallory, &["m1", "m2"]);
    let refused = mallory
        .query_one("SELECT partition_predict.migration_step('m3')", &[])
        .unwrap_err();
    let db = refused.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("max_migrations_per_database"));

    // Another database keeps its own slots.
    admin.batch_execute("CREATE DATABASE other").unwrap();
    let mut elsewhere = cluster.connect("other");
    elsewhere
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    table_with_rows_in_default(&mut elsewhere, "ev", 10);
    let next: String = elsewhere
        .query_one("SELECT partition_predict.migration_step('ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, "again");

    // No lookahead asks for partitions forever, and shadows stop at the bound.
    mallory
        .batch_execute(
            "CREATE TABLE greedy (k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE greedy_low PARTITION OF greedy FOR VALUES FROM (0) TO (100);",
        )
        .unwrap();
    let refused = mallory
        .batch_execute(
            "SELECT partition_predict.manage('greedy', target_rows => 1, lookahead => '9223372036854775807')",
        )
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("22023"), "{refused}");
    mallory
        .batch_execute(
            "SELECT partition_predict.manage('greedy', target_rows => 1, lookahead => '1000000000');
             INSERT INTO greedy SELECT g FROM generate_series(0, 99) g;",
        )
        .unwrap();
    flush_stats(&mut mallory);
    for _ in 0..3 {
        mallory
            .batch_execute("SELECT * FROM partition_predict.run_cycle('greedy')")
            .unwrap();
    }
    let shadows = scalar_i64(
        &mut mallory,
        "SELECT count(*) FROM partition_predict.partitions WHERE parent = 'greedy'::regclass AND state = 'shadow'",
    );
    assert!(shadows > 0 && shadows <= 20, "{shadows} shadows");
}

#[test]
fn routing_overrides_show_only_tables_the_role_may_read() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    table_with_rows_in_default(&mut admin, "vault", 3000);
    migration_under_way(&mut admin, "vault");
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        1
    );
    let mut mallory = cluster.connect_as("postgres", "mallory");
    assert_eq!(
        scalar_i64(
            &mut mallory,
            "SELECT count(*) FROM partition_predict.routing_overrides_in_memory()"
        ),
        0
    );
    assert_eq!(
        scalar_i64(
            &mut mallory,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
}

/// A table dropped while its rows were being moved leaves its override in
/// memory until a worker withdraws it; meanwhile `routing_overrides` works
/// for every role (it failed with 42P01 for everyone until then).
#[test]
fn routing_overrides_survive_a_table_dropped_mid_move() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    table_with_rows_in_default(&mut admin, "vault", 3000);
    migration_under_way(&mut admin, "vault");
    admin.batch_execute("DROP TABLE vault").unwrap();
    let mut mallory = cluster.connect_as("postgres", "mallory");
    for client in [&mut admin, &mut mallory] {
        assert_eq!(
            sqlstate(client.query("SELECT * FROM partition_predict.routing_overrides", &[])),
            "ok"
        );
        assert_eq!(
            scalar_i64(
                client,
                "SELECT count(*) FROM partition_predict.routing_overrides"
            ),
            0
        );
    }
}

#[test]
fn the_worker_counts_a_failed_migration_step_as_an_error() {
    let cluster = Cluster::start_with(true, IDLE_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "r17");
    let shadow: String = admin
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'r17'::regclass AND state = 'shadow' ORDER BY range_start LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    // A row in DEFAULT in the shadow's range, and one written into the
    // shadow by hand: the worker's migration cannot use that shadow.
    admin
        .batch_execute(&format!(
            "INSERT INTO r17 (ts) VALUES ('2026-11-08 00:30+00');
             INSERT INTO {shadow} (ts) VALUES ('2026-11-08 00:45+00');"
        ))
        .unwrap();
    flush_stats(&mut admin);
    let errors_before = scalar_i64(
        &mut admin,
        "SELECT coalesce(max(errors), 0) FROM partition_predict.worker_status",
    );
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(
        "the worker to count the failed step",
        Duration::from_secs(60),
        || {
            let errors = scalar_i64(
                &mut admin,
                "SELECT coalesce(max(errors), 0) FROM partition_predict.worker_status",
            );
            (errors > errors_before).then_some(())
        },
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM r17"),
        6 * 1440 + 2
    );
    // The error's text is about the superuser's table: mallory, who may not
    // read it, sees the worker's counts but not the error.
    let (error, table): (Option<String>, Option<String>) = {
        let row = admin
            .query_one(
                "SELECT last_error, last_error_table::text FROM partition_predict.worker_status",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(error.is_some(), "the superuser sees the error");
    assert_eq!(table.as_deref(), Some("r17"));
    let mut mallory = cluster.connect_as("postgres", "mallory");
    let row = mallory
        .query_one(
            "SELECT errors, last_error, last_error_table::text FROM partition_predict.worker_status",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, i64>(0) > errors_before);
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "another role's error text"
    );
    assert_eq!(row.get::<_, Option<String>>(2), None);
}

/// The superuser's session (with mallory and the secret, see
/// `superuser_with_a_secret`), and one of `owner_role`, who may create
/// tables; `reader` may log in and create objects (functions, operators).
fn owner_and_reader(cluster: &Cluster) -> (Client, Client) {
    let mut admin = superuser_with_a_secret(cluster);
    admin
        .batch_execute(
            "CREATE ROLE reader LOGIN;
             CREATE ROLE owner_role LOGIN;
             GRANT CREATE ON SCHEMA public TO owner_role, reader;",
        )
        .unwrap();
    let owner = cluster.connect_as("postgres", "owner_role");
    (admin, owner)
}

#[test]
fn row_level_security_of_the_parent_covers_rows_being_moved() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (_admin, mut owner) = owner_and_reader(&cluster);
    table_with_rows_in_default(&mut owner, "ledger", 3000);
    owner
        .batch_execute(
            "GRANT SELECT ON ledger TO reader;
             ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
             CREATE POLICY even_only ON ledger FOR SELECT TO reader USING (id % 2 = 0);",
        )
        .unwrap();
    let mut reader = cluster.connect_as("postgres", "reader");
    let before = scalar_i64(&mut reader, "SELECT count(*) FROM ledger");
    assert_eq!(before, 1500);
    migration_under_way(&mut owner, "ledger");
    assert!(
        scalar_i64(
            &mut owner,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ) == 1
    );
    // During the move the rows are split between DEFAULT and the shadow;
    // the reader still sees exactly the rows the policy lets through.
    assert_eq!(scalar_i64(&mut reader, "SELECT count(*) FROM ledger"), 1500);
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ledger WHERE id % 2 = 1"),
        0
    );
    // And a role without SELECT on the parent reads nothing through it.
    let mut mallory = cluster.connect_as("postgres", "mallory");
    assert_eq!(
        sqlstate(mallory.query("SELECT * FROM ledger", &[])),
        "42501"
    );
    // A grant of some columns covers those columns and no more: the rewrite
    // reads every column of DEFAULT and the shadow, but the check stays the
    // one of the query as written.
    owner
        .batch_execute("REVOKE SELECT ON ledger FROM reader; GRANT SELECT (id) ON ledger TO reader")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(id) FROM ledger"),
        1500
    );
    assert_eq!(sqlstate(reader.query("SELECT * FROM ledger", &[])), "42501");
    assert_eq!(sqlstate(reader.query("SELECT k FROM ledger", &[])), "42501");
    owner
        .batch_execute("CALL partition_predict.migrate_default('ledger')")
        .unwrap();
    assert_eq!(scalar_i64(&mut reader, "SELECT count(*) FROM ledger"), 1500);
}

/// Policies that read the whole row or another table, on a parent whose
/// columns are not numbered like the shadow's (a dropped column): the rows
/// being moved are filtered exactly as the rest, before, during and after.
#[test]
fn policies_with_whole_rows_and_subqueries_cover_rows_being_moved() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (_admin, mut owner) = owner_and_reader(&cluster);
    owner
        .batch_execute(
            "CREATE TABLE ledger (junk int, id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             ALTER TABLE ledger DROP COLUMN junk;
             CREATE TABLE ledger_low PARTITION OF ledger FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('ledger', target_rows => 100000);
             INSERT INTO ledger SELECT g, 1000000 + g FROM generate_series(0, 2999) g;
             CREATE TABLE blocked (id bigint);
             INSERT INTO blocked SELECT generate_series(0, 9);
             GRANT SELECT ON ledger, blocked TO reader;
             CREATE FUNCTION visible(l ledger) RETURNS boolean LANGUAGE plpgsql STABLE
                 AS $$ BEGIN RETURN l.id % 2 = 0; END $$;
             ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
             CREATE POLICY whole_row ON ledger FOR SELECT TO reader
                 USING (visible(ledger) AND NOT EXISTS (SELECT 1 FROM blocked b WHERE b.id = ledger.id));",
        )
        .unwrap();
    let mut reader = cluster.connect_as("postgres", "reader");
    let expected = 1500 - 5;
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ledger"),
        expected
    );
    migration_under_way(&mut owner, "ledger");
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ledger"),
        expected
    );
    assert_eq!(
        scalar_i64(
            &mut reader,
            "SELECT count(*) FROM ledger WHERE id % 2 = 1 OR id < 10"
        ),
        0
    );
    owner
        .batch_execute("CALL partition_predict.migrate_default('ledger')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM ledger"),
        expected
    );
}

/// Planning a read of a table whose rows are being moved estimates with the
/// statistics of the parent and of the shadow. A role under row-level
/// security (or without the privilege) must not get a value it cannot read
/// out of those statistics through a leaky operator, as PostgreSQL itself
/// ensures for a plain read.
#[test]
fn planning_a_read_during_a_move_shows_leaky_operators_no_hidden_value() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (_admin, mut owner) = owner_and_reader(&cluster);
    table_with_rows_in_default(&mut owner, "ledger", 3000);
    owner
        .batch_execute(
            "GRANT SELECT ON ledger TO reader;
             ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
             CREATE POLICY even_only ON ledger FOR SELECT TO reader USING (id % 2 = 0);",
        )
        .unwrap();
    migration_under_way(&mut owner, "ledger");
    let shadow: String = owner
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'ledger'::regclass AND state = 'migrating'",
            &[],
        )
        .unwrap()
        .get(0);
    owner
        .batch_execute(&format!("ANALYZE ledger; ANALYZE {shadow};"))
        .unwrap();

    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&notices);
    let mut config = cluster.config("postgres");
    config
        .user("reader")
        .notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    let mut reader = config.connect(postgres::NoTls).unwrap();
    reader
        .batch_execute(
            "CREATE FUNCTION public.peek(bigint, bigint) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
             AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN $1 < $2; END $$;
             CREATE OPERATOR public.<<< (PROCEDURE = public.peek, LEFTARG = bigint, RIGHTARG = bigint,
                                         RESTRICT = scalarltsel);",
        )
        .unwrap();
    let seen = |notices: &std::sync::Mutex<Vec<String>>| -> Vec<i64> {
        std::mem::take(&mut *notices.lock().unwrap())
            .iter()
            .filter_map(|n| n.strip_prefix("saw ")?.parse().ok())
            .collect()
    };
    let counted = scalar_i64(&mut reader, "SELECT count(*) FROM ledger WHERE id <<< 3000");
    assert_eq!(counted, 1500);
    let values = seen(&notices);
    // The operator ran (on the rows the role may read) ...
    assert!(values.len() >= 1500, "{} values", values.len());
    // ... and never on a hidden one, in planning or execution.
    let hidden: Vec<i64> = values.iter().copied().filter(|v| v % 2 == 1).collect();
    assert!(
        hidden.is_empty(),
        "hidden ids reached a leaky operator: {hidden:?}"
    );

    // Without the privilege: refused before planning looks at anything.
    let mut config = cluster.config("postgres");
    let sink = std::sync::Arc::clone(&notices);
    config
        .user("mallory")
        .notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    let mut mallory = config.connect(postgres::NoTls).unwrap();
    mallory
        .batch_execute(
            "CREATE FUNCTION public.peek2(bigint, bigint) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
             AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN $1 < $2; END $$;
             CREATE OPERATOR public.<<<< (PROCEDURE = public.peek2, LEFTARG = bigint, RIGHTARG = bigint,
                                          RESTRICT = scalarltsel);",
        )
        .unwrap();
    assert_eq!(
        sqlstate(mallory.query("SELECT count(*) FROM ledger WHERE id <<<< 3000", &[])),
        "42501"
    );
    assert!(
        seen(&notices).is_empty(),
        "planning showed her the statistics"
    );
}

#[test]
fn the_callers_session_settings_change_nothing() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "r17");
    admin
        .batch_execute(
            "CREATE TABLE batch (ts timestamptz NOT NULL);
             INSERT INTO batch SELECT '2026-11-08'::timestamptz + g * interval '10 minutes'
               FROM generate_series(0, 999) g;",
        )
        .unwrap();
    admin
        .batch_execute(
            "SET DateStyle = 'German, DMY'; SET TimeZone = 'Pacific/Chatham'; SET IntervalStyle = 'sql_standard';
             SET search_path = pg_temp;",
        )
        .unwrap();
    admin
        .batch_execute("CALL partition_predict.ingest('public.r17', 'public.batch')")
        .unwrap();
    admin.batch_execute("RESET ALL").unwrap();
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM r17 WHERE ts >= '2026-11-08'"
        ),
        1000
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY r17_default"),
        0
    );
}

/// A function of mallory's that makes her a superuser if it ever runs with
/// a superuser's rights (and quietly does nothing otherwise), and an
/// operator `public.=(regclass, regclass)` that calls it: what a statement
/// run with her search_path would pick over pg_catalog's.
fn plant_escalation(mallory: &mut Client) {
    mallory
        .batch_execute(
            "CREATE FUNCTION public.escalate() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                 RETURN true;
             END $$;
             CREATE FUNCTION public.sneaky_eq(regclass, regclass) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.escalate(); RETURN $1::oid = $2::oid; END $$;
             CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = public.sneaky_eq);",
        )
        .unwrap();
}

fn is_superuser(admin: &mut Client, role: &str) -> bool {
    admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0)
}

#[test]
fn a_role_s_code_never_runs_with_more_rights_than_the_role() {
    let cluster = Cluster::start_with(true, IDLE_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    plant_escalation(&mut mallory);

    // 1. Her search_path in a load of the superuser's table she may write.
    managed_table_with_shadows(&mut admin, "events");
    admin
        .batch_execute(
            "GRANT INSERT ON events TO mallory; GRANT USAGE ON SEQUENCE events_id_seq TO mallory",
        )
        .unwrap();
    mallory
        .batch_execute("SET search_path = public, pg_catalog")
        .unwrap();
    let mut copy = mallory.copy_in("COPY events (ts) FROM STDIN").unwrap();
    std::io::Write::write_all(&mut copy, b"2026-11-07 12:00:00+00\n").unwrap();
    copy.finish().unwrap();
    mallory.batch_execute("RESET search_path").unwrap();
    assert!(
        !is_superuser(&mut admin, "mallory"),
        "COPY's hook ran her operator as the owner"
    );

    // 2. A policy of hers that changes the session's search_path, met by a
    // superuser's run_cycle() of every table.
    managed_table_with_shadows(&mut mallory, "mine");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.reroute() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', false); RETURN true; END $$;
             ALTER TABLE mine_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE mine_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY reroute ON mine_h USING (public.reroute());
             INSERT INTO mine (ts) VALUES ('2026-11-07 06:00+00');",
        )
        .unwrap();
    flush_stats(&mut mallory);
    let search_path_before: String = admin.query_one("SHOW search_path", &[]).unwrap().get(0);
    admin
        .batch_execute("SELECT * FROM partition_predict.run_cycle()")
        .unwrap();
    let search_path_after: String = admin.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(
        search_path_after, search_path_before,
        "her setting reached the superuser's session"
    );
    assert!(
        !is_superuser(&mut admin, "mallory"),
        "a state write used her operator"
    );

    // 3. Her waiting shadow turned into a view, read by a superuser's DROP EXTENSION.
    let shadow: String = mallory
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'mine'::regclass AND state = 'shadow' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let into_view = mallory.batch_execute(&format!(
        "CREATE FUNCTION public.payload() RETURNS TABLE (id bigint, ts timestamptz) LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.escalate(); RETURN; END $$;
         ALTER TABLE {shadow} DISABLE ROW LEVEL SECURITY;
         ALTER TABLE {shadow} DROP CONSTRAINT partition_predict_bound;
         CREATE RULE \"_RETURN\" AS ON SELECT TO {shadow} DO INSTEAD SELECT * FROM public.payload();"
    ));
    // PostgreSQL 16 and later no longer turn a table into a view.
    if scalar_i64(
        &mut admin,
        "SELECT current_setting('server_version_num')::bigint",
    ) >= 160000
    {
        assert_eq!(sqlstate(into_view), "42809");
    } else {
        into_view.unwrap();
    }

    // 4. A trigger of hers met by a superuser's ingest into her table.
    mallory
        .batch_execute(
            "CREATE FUNCTION public.on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.escalate(); RETURN NEW; END $$;
             CREATE TRIGGER on_insert BEFORE INSERT ON mine FOR EACH ROW EXECUTE FUNCTION public.on_insert();
             CREATE TABLE batch (ts timestamptz NOT NULL);
             INSERT INTO batch VALUES ('2026-11-07 08:00+00');",
        )
        .unwrap();
    admin
        .batch_execute("CALL partition_predict.ingest('mine', 'batch')")
        .unwrap();
    assert!(
        !is_superuser(&mut admin, "mallory"),
        "ingest ran her trigger as the caller"
    );

    admin
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap();
    assert!(
        !is_superuser(&mut admin, "mallory"),
        "DROP EXTENSION read her view as superuser"
    );
}

#[test]
fn a_shadow_that_changed_shape_is_never_read_in_the_parent_s_place() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let _admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    // During a move the shadow and DEFAULT cannot be altered.
    table_with_rows_in_default(&mut mallory, "moving", 3000);
    migration_under_way(&mut mallory, "moving");
    let shadow: String = mallory
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'moving'::regclass AND state = 'migrating'",
            &[],
        )
        .unwrap()
        .get(0);
    for sql in [
        format!("ALTER TABLE {shadow} ALTER COLUMN id TYPE numeric"),
        "ALTER TABLE moving_default ALTER COLUMN id TYPE numeric".to_string(),
        format!("ALTER TABLE {shadow} RENAME COLUMN id TO id2"),
        "ALTER TABLE moving_default RENAME COLUMN id TO id2".to_string(),
        "ALTER TABLE moving RENAME COLUMN id TO id2".to_string(),
    ] {
        assert_eq!(sqlstate(mallory.batch_execute(&sql)), "55006", "{sql}");
    }
    // A waiting shadow changed before rows go into it is not used for them.
    managed_table_with_shadows(&mut mallory, "mine");
    let first: String = mallory
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'mine'::regclass AND state = 'shadow' ORDER BY range_start LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    mallory
        .batch_execute(&format!(
            "ALTER TABLE {first} ALTER COLUMN id TYPE numeric;
             INSERT INTO mine (ts) VALUES ('2026-11-08 00:30+00');"
        ))
        .unwrap();
    mallory
        .batch_execute("CALL partition_predict.migrate_default('mine')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut mallory, "SELECT count(*) FROM mine"),
        6 * 1440 + 2
    );
    assert_eq!(
        scalar_i64(
            &mut mallory,
            "SELECT sum(id)::bigint FROM mine WHERE ts >= '2026-11-08'"
        ),
        6 * 1440 + 2
    );
    assert_eq!(
        scalar_i64(&mut mallory, "SELECT count(*) FROM ONLY mine_default"),
        0
    );
}

#[test]
fn a_migration_step_cannot_be_rolled_back_into_a_leaked_slot() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    table_with_rows_in_default(&mut mallory, "m1", 10);
    mallory.batch_execute("BEGIN").unwrap();
    let refused = mallory.batch_execute("SELECT partition_predict.migration_step('m1')");
    assert_eq!(sqlstate(refused), "25001");
    mallory.batch_execute("ROLLBACK").unwrap();
    mallory
        .batch_execute("SELECT partition_predict.unmanage('m1')")
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.routing_overrides_in_memory()"
        ),
        0
    );
}

/// The superuser's managed `ledger`, which `reader` may read, but by a
/// row-level security policy only the morning rows of; their sessions.
fn ledger_read_in_the_mornings(cluster: &Cluster) -> (Client, Client) {
    let mut admin = superuser_with_a_secret(cluster);
    managed_table_with_shadows(&mut admin, "ledger");
    admin
        .batch_execute(
            "CREATE ROLE reader LOGIN;
             GRANT SELECT ON ledger TO reader;
             ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mornings ON ledger FOR SELECT TO reader USING (extract(hour FROM ts) < 12);",
        )
        .unwrap();
    let reader = cluster.connect_as("postgres", "reader");
    (admin, reader)
}

#[test]
fn views_hide_what_row_level_security_hides() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (mut admin, mut reader) = ledger_read_in_the_mornings(&cluster);
    for view in [
        "key_time_series",
        "stats_history",
        "forecasts",
        "alerts",
        "alert_history",
    ] {
        let sql = format!(
            "SELECT count(*) FROM partition_predict.{view} WHERE parent = 'ledger'::regclass"
        );
        assert_eq!(scalar_i64(&mut reader, &sql), 0, "{view}");
    }
    assert!(
        scalar_i64(&mut admin, "SELECT count(*) FROM partition_predict.key_time_series WHERE parent = 'ledger'::regclass") > 0
    );
    // The report draws what the rows add up to: refused like the views.
    for function in ["report", "report_html"] {
        assert_eq!(
            sqlstate(reader.query_one(
                &format!("SELECT partition_predict.{function}('ledger')"),
                &[]
            )),
            "42501",
            "{function}"
        );
    }
    let mut mallory = cluster.connect_as("postgres", "mallory");
    assert_eq!(
        sqlstate(mallory.query_one("SELECT partition_predict.report('ledger')", &[])),
        "42501",
        "a role without SELECT on the table"
    );
    assert!(admin
        .query_one("SELECT partition_predict.report('ledger')", &[])
        .is_ok());
    // Reading the rows is what counts, not owning the table.
    admin
        .batch_execute("CREATE ROLE auditor LOGIN BYPASSRLS; GRANT SELECT ON ledger TO auditor;")
        .unwrap();
    let mut auditor = cluster.connect_as("postgres", "auditor");
    let svg: String = auditor
        .query_one("SELECT partition_predict.report('ledger')", &[])
        .unwrap()
        .get(0);
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
}

/// A managed table of the superuser's, with rows, and its OID.
fn victim(admin: &mut Client) -> i64 {
    admin
        .batch_execute(
            "CREATE TABLE victim (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE victim_1 PARTITION OF victim FOR VALUES FROM (0) TO (1000);
             INSERT INTO victim SELECT g FROM generate_series(0, 899) g;
             SELECT partition_predict.manage('victim', target_rows => 100);",
        )
        .unwrap();
    scalar_i64(admin, "SELECT 'victim'::regclass::oid::bigint")
}

/// Any role may take any advisory lock key. The lock that keeps two
/// sessions out of one table's steps is one no SQL function can take, so
/// taking the key it used to be (in both the two-integer and the bigint
/// form) holds nothing up: before, that role froze the table's cycles
/// (skipped, silently) and made `run_cycle`, `set_time_zone`,
/// `migrate_default` and `DROP EXTENSION` wait for ever.
#[test]
fn no_role_holds_a_table_s_steps_up_with_an_advisory_lock() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let oid = victim(&mut admin);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    let space: i64 = 0x7070_7000;
    mallory
        .batch_execute(&format!(
            "SELECT pg_catalog.pg_advisory_lock({space}::int4, {oid}::int4);
             SELECT pg_catalog.pg_advisory_lock(({space}::int8 << 32) | {oid});"
        ))
        .unwrap();
    admin
        .batch_execute("SET statement_timeout = '20s'")
        .unwrap();
    match admin.query_one(
        "SELECT error FROM partition_predict.run_cycle('victim')",
        &[],
    ) {
        Ok(row) => assert_eq!(row.get::<_, Option<String>>(0), None),
        Err(e) => panic!("run_cycle('victim') did not run: {e}"),
    }
    // Every table at once: none is skipped.
    let all: Vec<Option<String>> = admin
        .query("SELECT error FROM partition_predict.run_cycle()", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(all, vec![None]);
    assert_eq!(
        sqlstate(admin.batch_execute("DROP EXTENSION pg_partition_predict")),
        "ok"
    );
}

/// A session that keeps a table's steps (its own table's `run_cycle()` in
/// a transaction left open) makes a superuser's `DROP EXTENSION` fail at
/// once, naming the table, instead of waiting for ever while holding every
/// other table's steps (their cycles skipped meanwhile). Shadows a role can
/// still write into are locked before the drop looks at them.
#[test]
fn a_table_s_steps_held_open_cannot_hang_drop_extension() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    victim(&mut admin);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute(
            "CREATE TABLE mine (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE mine_1 PARTITION OF mine FOR VALUES FROM (0) TO (1000);
             INSERT INTO mine SELECT g FROM generate_series(0, 899) g;
             SELECT partition_predict.manage('mine', target_rows => 100);",
        )
        .unwrap();
    mallory
        .batch_execute("BEGIN; SELECT * FROM partition_predict.run_cycle('mine');")
        .unwrap();
    admin
        .batch_execute("SET statement_timeout = '20s'")
        .unwrap();
    let started = std::time::Instant::now();
    let e = admin
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap_err();
    assert_eq!(
        e.code().map(|c| c.code().to_string()),
        Some("55P03".to_string()),
        "{e:?}"
    );
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("public.mine")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Meanwhile nothing of the other tables was held.
    assert_eq!(
        admin
            .query_one(
                "SELECT error FROM partition_predict.run_cycle('victim')",
                &[]
            )
            .unwrap()
            .get::<_, Option<String>>(0),
        None
    );
    mallory.batch_execute("COMMIT").unwrap();
    assert_eq!(
        sqlstate(admin.batch_execute("DROP EXTENSION pg_partition_predict")),
        "ok"
    );
}

/// A table whose steps another session keeps holding (here a superuser's
/// `run_cycle()` in a transaction left open) is not skipped silently: once
/// three naptimes pass without a cycle, a `failure` condition says so, and
/// the first cycle that runs again resolves it.
#[test]
fn cycles_that_keep_being_skipped_raise_an_alert() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    victim(&mut admin);
    let skipped = |client: &mut Client| {
        scalar_i64(
            client,
            "SELECT count(*) FROM partition_predict.alerts
              WHERE parent = 'victim'::regclass AND kind = 'failure' AND subject = 'skipped'",
        )
    };
    let mut holder = cluster.connect("postgres");
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM partition_predict.run_cycle('victim');")
        .unwrap();
    wait_for("the skipped-cycles alert", Duration::from_secs(60), || {
        (skipped(&mut admin) == 1).then_some(())
    });
    let message: String = admin
        .query_one(
            "SELECT message FROM partition_predict.alerts WHERE subject = 'skipped'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        message.contains("another session holds its steps"),
        "{message}"
    );
    holder.batch_execute("COMMIT").unwrap();
    wait_for(
        "the alert resolved by the next cycle",
        Duration::from_secs(60),
        || (skipped(&mut admin) == 0).then_some(()),
    );
}

/// A superuser who registers a tenant's table runs none of the tenant's
/// code with a superuser's rights: attaching the DEFAULT that `manage()`
/// adds folds an IMMUTABLE function of the table's CHECK, and ran it as
/// the caller.
#[test]
fn a_superuser_s_manage_runs_the_owner_s_code_as_the_owner() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    plant_escalation(&mut mallory);
    mallory
        .batch_execute(
            "CREATE FUNCTION public.folded() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
             BEGIN RETURN public.escalate(); END $$;
             CREATE TABLE tenant (id bigint, at timestamptz NOT NULL, CHECK (public.folded()))
                 PARTITION BY RANGE (at);
             CREATE TABLE tenant_p0 PARTITION OF tenant FOR VALUES FROM ('2026-12-01') TO ('2026-12-07');",
        )
        .unwrap();
    admin
        .batch_execute("SELECT partition_predict.manage('tenant')")
        .unwrap();
    assert!(
        !is_superuser(&mut admin, "mallory"),
        "manage() ran her CHECK's function as the superuser"
    );
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(c.relowner)::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid
              WHERE p.partrelid = 'tenant'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, "mallory", "the DEFAULT is the table owner's");
}

/// Rows written straight into a partition waiting to be attached (by its
/// owner, or a role the parent's grants let write) are never dropped with
/// it: `unmanage()`, which drops the waiting partitions, first inserts them
/// through the parent, where its keys see them; a row the parent refuses
/// stops it, and the partition and its rows stay.
#[test]
fn rows_written_into_a_waiting_partition_are_never_dropped_with_it() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "events");
    let shadow: String = admin
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'events'::regclass AND state = 'shadow' ORDER BY range_start LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let range_start: String = admin
        .query_one(
            &format!("SELECT range_start FROM partition_predict.partitions WHERE partition = '{shadow}'::regclass"),
            &[],
        )
        .unwrap()
        .get(0);
    // A unique key on the parent, and two rows in the shadow that break it.
    admin
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX events_id_ts ON events (id, ts);
             INSERT INTO {shadow} (id, ts) VALUES (-1, '{range_start}'), (-1, '{range_start}');"
        ))
        .unwrap();
    assert_eq!(
        sqlstate(admin.batch_execute("SELECT partition_predict.unmanage('events')")),
        "23505",
        "the parent's key refuses the duplicate"
    );
    assert_eq!(
        scalar_i64(&mut admin, &format!("SELECT count(*) FROM {shadow}")),
        2,
        "the refused rows stay where they were"
    );
    admin
        .batch_execute(&format!(
            "DELETE FROM {shadow} WHERE ctid = (SELECT min(ctid) FROM {shadow})"
        ))
        .unwrap();
    admin
        .batch_execute("SELECT partition_predict.unmanage('events')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM events WHERE id = -1"),
        1,
        "the row written into the waiting partition is in the table"
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            &format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass('{shadow}')")
        ),
        0,
        "the waiting partition is gone"
    );
}

/// The views are security barriers: a cheap function of the caller's in
/// the WHERE clause sees only rows the view lets the caller see.
#[test]
fn a_leaky_function_sees_no_row_the_views_hide() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    managed_table_with_shadows(&mut admin, "ledger");
    admin
        .batch_execute("SELECT * FROM partition_predict.forecast('ledger')")
        .unwrap();
    let (mut mallory, notices) = cluster.connect_as_recording_notices("postgres", "mallory");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.leak(a text, b text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
             BEGIN RAISE NOTICE 'leak % %', a, b; RETURN true; END $$;",
        )
        .unwrap();
    let views: Vec<String> = admin
        .query(
            "SELECT viewname::text FROM pg_views WHERE schemaname = 'partition_predict'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for view in &views {
        mallory
            .batch_execute(&format!(
                "SELECT count(*) FROM partition_predict.{view} v WHERE public.leak(v::text, '{view}')"
            ))
            .unwrap();
    }
    let leaked: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.contains("ledger"))
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
    // She sees none of the table's forecast in the partitions view either.
    assert_eq!(
        scalar_i64(
            &mut mallory,
            "SELECT count(*) FROM partition_predict.partitions WHERE parent = 'ledger'::regclass"
        ),
        0
    );
}

/// A reader limited by row-level security learns no forecast of the
/// table's partitions and no migration of it from any function or view.
#[test]
fn a_reader_under_row_level_security_sees_no_forecast_or_migration() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (mut admin, mut reader) = ledger_read_in_the_mornings(&cluster);
    table_with_rows_in_default(&mut admin, "moving", 3000);
    admin
        .batch_execute(
            "GRANT SELECT ON moving TO reader;
             ALTER TABLE moving ENABLE ROW LEVEL SECURITY;
             CREATE POLICY low_ids ON moving FOR SELECT TO reader USING (id < 10);",
        )
        .unwrap();
    migration_under_way(&mut admin, "moving");
    assert_eq!(
        scalar_i64(
            &mut reader,
            "SELECT count(*) FROM partition_predict.partitions
              WHERE parent = 'ledger'::regclass AND predicted_rows IS NOT NULL"
        ),
        0,
        "forecast rows of a table row-level security limits her on"
    );
    assert_eq!(
        scalar_i64(
            &mut reader,
            "SELECT count(*) FROM partition_predict.routing_overrides_in_memory()"
        ),
        0,
        "a migration of a table row-level security limits her on"
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.routing_overrides_in_memory()"
        ),
        1
    );
}

/// A date key past the last day a timestamp holds (294276 AD; a date goes
/// on to 5874897 AD) is a value like another: no 22008 from `activate()`
/// with it, and a row with one does not make every cycle of the table fail.
#[test]
fn date_keys_past_what_a_timestamp_holds_break_nothing() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE TABLE far (at date NOT NULL, v int) PARTITION BY RANGE (at);
             CREATE TABLE far_1 PARTITION OF far FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
             INSERT INTO far SELECT '2026-01-01'::date + g % 31, g FROM generate_series(1, 1000) g;
             SELECT partition_predict.manage('far', target_rows => 100);",
        )
        .unwrap();
    admin
        .batch_execute("SELECT partition_predict.activate('far', '300000-01-01'::date)")
        .unwrap();
    admin
        .batch_execute("INSERT INTO far VALUES ('300000-01-01', 1), ('2026-03-01', 2)")
        .unwrap();
    flush_stats(&mut admin);
    let row = admin
        .query_one(
            "SELECT rows_in_default, error FROM partition_predict.run_cycle('far')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(1), None, "the cycle failed");
    assert_eq!(row.get::<_, i64>(0), 2);
    admin
        .batch_execute("CALL partition_predict.migrate_default('far')")
        .unwrap();
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM far"), 1002);
}

/// One role's tables cannot take every migration slot of a database: past
/// `max_migrations_per_role` her next move is refused (53400) while another
/// role's table still starts its own.
#[test]
fn migration_slots_are_shared_fairly_between_roles() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = ''",
            "pg_partition_predict.max_migrations_per_database = 4",
            "pg_partition_predict.max_migrations_per_role = 2",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    for table in ["m1", "m2", "m3"] {
        table_with_rows_in_default(&mut mallory, table, 10);
    }
    start_moves(&mut mallory, &["m1", "m2"]);
    let refused = mallory
        .query_one("SELECT partition_predict.migration_step('m3')", &[])
        .unwrap_err();
    let db = refused.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(
        db.message().contains("max_migrations_per_role"),
        "{}",
        db.message()
    );
    table_with_rows_in_default(&mut admin, "mine", 10);
    let next: String = admin
        .query_one("SELECT partition_predict.migration_step('mine')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, "again", "another role's move starts");
}

/// A table whose owner's code is slow (here a policy that sleeps on every
/// row the cycle reads) no longer holds the worker: past
/// `table_time_limit` its statement is cancelled, the worker goes on with
/// the next table, and the slow table is left alone for longer each time.
#[test]
fn one_slow_table_does_not_stall_the_others() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.table_time_limit = 2",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    managed_table_with_shadows(&mut mallory, "slow");
    managed_table_with_shadows(&mut admin, "fast");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.nap() RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(5) IS NOT NULL';
             ALTER TABLE slow_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE slow_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY nap ON slow_h USING (public.nap());
             INSERT INTO slow (ts) SELECT '2026-11-07 12:00+00'::timestamptz + g * interval '1 second'
               FROM generate_series(1, 20) g;",
        )
        .unwrap();
    flush_stats(&mut mallory);
    let fast_cycles =
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'fast'::regclass";
    // The slow table's first cycle under its policy starts within a naptime.
    std::thread::sleep(Duration::from_secs(3));
    let before = scalar_i64(&mut admin, fast_cycles);
    std::thread::sleep(Duration::from_secs(15));
    let after = scalar_i64(&mut admin, fast_cycles);
    assert!(
        after - before >= 4,
        "the other table's cycles: {before} then {after} 15 s later"
    );
    let error: Option<String> = mallory
        .query_one(
            "SELECT last_error FROM partition_predict.managed_tables WHERE parent = 'slow'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("statement timeout")),
        "{error:?}"
    );
}

/// A role with no privilege on a table can still hold a lock on it
/// (PostgreSQL locks before it checks, and `PREPARE` keeps the lock to the
/// end of the transaction): the move it puts off names the process and the
/// role, for the DBA to find.
#[test]
fn a_move_put_off_by_a_lock_names_who_holds_it() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    crate::lifecycle::table_with_rows_in_default(&mut admin, "held", 3000);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute("BEGIN; PREPARE peek AS SELECT 1 FROM public.held_default;")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let e = admin
        .batch_execute("CALL partition_predict.migrate_default('held')")
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code().code(), "55P03", "{db:?}");
    assert!(db.message().contains("of role mallory"), "{}", db.message());
    mallory.batch_execute("ROLLBACK").unwrap();
    admin
        .batch_execute("CALL partition_predict.migrate_default('held')")
        .unwrap();

    // The same for an owner who is no superuser (pg_stat_activity hides
    // when another role's transaction began from her), at once, not after
    // every retry.
    crate::lifecycle::table_with_rows_in_default(&mut mallory, "hers", 3000);
    admin.batch_execute("CREATE ROLE bystander LOGIN").unwrap();
    let mut bystander = cluster.connect_as("postgres", "bystander");
    bystander
        .batch_execute("BEGIN; PREPARE peek AS SELECT 1 FROM public.hers_default;")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let e = mallory
        .batch_execute("CALL partition_predict.migrate_default('hers')")
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code().code(), "55P03", "{db:?}");
    assert!(
        db.message().contains("of role bystander"),
        "{}",
        db.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    bystander.batch_execute("ROLLBACK").unwrap();
}

/// The owner's code can catch the cancel that ends its time
/// (`EXCEPTION WHEN query_canceled`) and go on: the cancel comes again,
/// and shortly past the deadline the worker ends itself (a FATAL nothing
/// catches); the workers that replace it leave that role's tables alone
/// (another such table of hers does not end the next one), and the other
/// tables are cycled.
#[test]
fn owner_code_that_catches_its_cancel_cannot_keep_the_worker() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.table_time_limit = 2",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    managed_table_with_shadows(&mut mallory, "stubborn");
    managed_table_with_shadows(&mut mallory, "stubborn2");
    managed_table_with_shadows(&mut admin, "fast");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.stubborn() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 FOR i IN 1..600 LOOP
                     BEGIN
                         PERFORM pg_catalog.pg_sleep(0.1);
                     EXCEPTION WHEN query_canceled THEN NULL;
                     END;
                 END LOOP;
                 RETURN true;
             END $$;
             ALTER TABLE stubborn_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE stubborn_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY stay ON stubborn_h USING (public.stubborn());
             ALTER TABLE stubborn2_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE stubborn2_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY stay ON stubborn2_h USING (public.stubborn());
             INSERT INTO stubborn (ts) SELECT '2026-11-07 12:00+00'::timestamptz + g * interval '1 second'
               FROM generate_series(1, 20) g;
             INSERT INTO stubborn2 (ts) SELECT '2026-11-07 12:00+00'::timestamptz + g * interval '1 second'
               FROM generate_series(1, 20) g;",
        )
        .unwrap();
    flush_stats(&mut mallory);
    let fast_cycles =
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'fast'::regclass";
    // The deadline (2 s), the grace (10 s) and a restart (a few seconds):
    // one of her tables ends a worker, then all of them are left alone (a
    // role can make new tables, new OIDs, at will).
    std::thread::sleep(Duration::from_secs(24));
    let before = scalar_i64(&mut admin, fast_cycles);
    std::thread::sleep(Duration::from_secs(10));
    let after = scalar_i64(&mut admin, fast_cycles);
    assert!(
        after - before >= 4,
        "the other table's cycles: {before} then {after} 10 s later"
    );
    let log = cluster.log();
    assert!(
        log.matches("ended a worker past its").count() == 1,
        "{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

/// A role who may create in a shared schema takes every name the extension
/// would predictably give another role's DEFAULT: `manage()` still works
/// (before: XX000, "no free name").
#[test]
fn names_taken_in_advance_do_not_stop_another_role_s_table() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute(
            "CREATE VIEW public.v2_events_default AS SELECT 1;
             DO $$ BEGIN FOR i IN 2..999 LOOP
                 EXECUTE format('CREATE VIEW public.v2_events_default_%s AS SELECT 1', i);
             END LOOP; END $$;",
        )
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE v2_events (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE v2_events_1 PARTITION OF v2_events FOR VALUES FROM ('2026-12-01') TO ('2026-12-07');
             SELECT partition_predict.manage('v2_events');",
        )
        .unwrap();
    let default: String = admin
        .query_one(
            "SELECT partdefid::regclass::text FROM pg_partitioned_table WHERE partrelid = 'v2_events'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(default.starts_with("v2_events_default_"), "{default}");

    // Types take names from tables too (a table's row type has its name).
    mallory
        .batch_execute(
            "CREATE TYPE public.v3_events_default AS ENUM ('x');
             DO $$ BEGIN FOR d IN 1..14 LOOP
                 EXECUTE format('CREATE TYPE public.%I AS ENUM (''x'')', 'v3_events_p202612' || lpad(d::text, 2, '0'));
                 FOR h IN 0..23 LOOP
                     EXECUTE format('CREATE TYPE public.%I AS ENUM (''x'')',
                                    'v3_events_p202612' || lpad(d::text, 2, '0') || '_' || lpad(h::text, 2, '0'));
                 END LOOP;
             END LOOP; END $$;",
        )
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE v3_events (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE v3_events_1 PARTITION OF v3_events FOR VALUES FROM ('2026-12-01') TO ('2026-12-07');
             INSERT INTO v3_events SELECT g, '2026-12-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 6 * 1440 - 1) g;
             SELECT partition_predict.manage('v3_events', target_rows => 2000, lookahead => '2 days');",
        )
        .unwrap();
    let error: Option<String> = admin
        .query_one(
            "SELECT error FROM partition_predict.run_cycle('v3_events')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(error, None);
    let prepared = scalar_i64(
        &mut admin,
        "SELECT count(*) FROM partition_predict.partitions
          WHERE parent = 'v3_events'::regclass AND range_start::timestamptz >= '2026-12-07'",
    );
    assert!(prepared > 0, "no partition prepared past the data");
}

/// A superuser's move of rows out of DEFAULT keeps the rows' triggers and
/// foreign-key actions out with replica mode; code of the table owner's
/// that the move runs (here a CHECK's function) must not run in that mode,
/// where its writes would pass every trigger and foreign key of other
/// tables. The move then runs as the owner's own would.
#[test]
fn a_move_never_runs_the_owner_s_code_in_replica_mode() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    admin
        .batch_execute(
            "CREATE TABLE guarded (id int, note text);
             CREATE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'guarded'; END $$;
             CREATE TRIGGER guard BEFORE INSERT ON guarded FOR EACH ROW EXECUTE FUNCTION guard();
             CREATE TABLE accounts (id int PRIMARY KEY);
             CREATE TABLE orders (id int, account int REFERENCES accounts);
             GRANT INSERT ON guarded, orders TO mallory;",
        )
        .unwrap();
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.evil(k bigint) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 IF pg_catalog.current_setting('session_replication_role') = 'replica' THEN
                     INSERT INTO public.guarded VALUES (666, 'past the trigger');
                     INSERT INTO public.orders VALUES (666, 424242);
                 END IF;
                 RETURN true;
             END $$;
             CREATE TABLE x (id bigint NOT NULL, k bigint NOT NULL CHECK (public.evil(k))) PARTITION BY RANGE (k);
             CREATE TABLE x_low PARTITION OF x FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('x', target_rows => 100000);
             INSERT INTO x SELECT g, 1000000 + g FROM generate_series(0, 99) g;",
        )
        .unwrap();
    // The same function behind a domain's CHECK, on a column of that domain.
    mallory
        .batch_execute(
            "CREATE DOMAIN public.watched AS bigint CHECK (public.evil(VALUE));
             CREATE TABLE y (id public.watched NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE y_low PARTITION OF y FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('y', target_rows => 100000);
             INSERT INTO y SELECT g, 1000000 + g FROM generate_series(0, 99) g;",
        )
        .unwrap();
    // Through a built-in that runs SQL text, and a rule on the receiving
    // table: the code behind them must not run in replica mode either.
    mallory
        .batch_execute(
            "CREATE FUNCTION public.evil_text() RETURNS boolean LANGUAGE sql AS 'SELECT public.evil(0)';
             CREATE TABLE q (id bigint NOT NULL,
                             k bigint NOT NULL CHECK (query_to_xml('SELECT public.evil_text()', false, false, '') IS NOT NULL))
                 PARTITION BY RANGE (k);
             CREATE TABLE q_low PARTITION OF q FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('q', target_rows => 100000);
             INSERT INTO q SELECT g, 1000000 + g FROM generate_series(0, 99) g;",
        )
        .unwrap();
    for table in ["x", "y", "q"] {
        admin
            .batch_execute(&format!(
                "CALL partition_predict.migrate_default('{table}')"
            ))
            .unwrap();
    }
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM y_default"), 0);
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM q_default"), 0);

    // A trigger that fires in replica mode, added once a move has begun.
    mallory
        .batch_execute(
            "CREATE TABLE z (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE z_low PARTITION OF z FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('z', target_rows => 100000);
             INSERT INTO z SELECT g, 1000000 + g FROM generate_series(0, 2999) g;",
        )
        .unwrap();
    let next: String = admin
        .query_one("SELECT partition_predict.migration_step('z', 1000)", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, "again");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.evil(0); RETURN OLD; END $$;
             CREATE TRIGGER d BEFORE DELETE ON z FOR EACH ROW EXECUTE FUNCTION public.evil_trigger();",
        )
        .unwrap();
    // Enabling it for replica mode is an ALTER TABLE, refused while a move
    // is under way; enabled for normal mode, the move refuses to fire it.
    assert_eq!(
        sqlstate(mallory.batch_execute("ALTER TABLE z ENABLE ALWAYS TRIGGER d")),
        "55006"
    );
    for _ in 0..4 {
        let _ = admin.query_one("SELECT partition_predict.migration_step('z', 1000)", &[]);
    }
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM z"),
        3000,
        "every row of z"
    );

    // Code the planner runs for the DELETE: a partial index's predicate on
    // DEFAULT, folded again when a trigger of the shadow's has reset the
    // index's cached data (the fifth review).
    mallory
        .batch_execute(
            "CREATE FUNCTION public.evil_imm(bigint) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS
                 $$ BEGIN RETURN public.evil($1); END $$;
             CREATE TABLE w (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE w_low PARTITION OF w FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('w', target_rows => 100000);
             CREATE INDEX w_default_evil ON w_default (id) WHERE public.evil_imm(0);
             CREATE FUNCTION public.reset_index() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN EXECUTE 'ALTER INDEX public.w_default_evil SET (fillfactor = ' || (50 + (random() * 40)::int) || ')';
                   RETURN NULL; END $$;
             INSERT INTO w SELECT g, 1000000 + g FROM generate_series(0, 199) g;",
        )
        .unwrap();
    let next: String = admin
        .query_one("SELECT partition_predict.migration_step('w')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, "again");
    let shadow: String = admin
        .query_one(
            "SELECT target::text FROM partition_predict.routing_overrides WHERE parent = 'w'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    mallory
        .batch_execute(&format!(
            "CREATE TRIGGER reset BEFORE INSERT ON {shadow} FOR EACH STATEMENT EXECUTE FUNCTION public.reset_index();"
        ))
        .unwrap();
    admin
        .batch_execute("CALL partition_predict.migrate_default('w')")
        .unwrap();
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM w"), 200);
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM guarded"),
        0,
        "after w"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM orders"),
        0,
        "after w"
    );

    // A DEFAULT of her own under a table of a group role she is in, with
    // row-level security (not forced) whose policy is hers: it applies to
    // the table's owner, so it must not run in replica mode either.
    admin
        .batch_execute(
            "CREATE ROLE team; GRANT team TO mallory; GRANT CREATE ON SCHEMA public TO team;",
        )
        .unwrap();
    mallory
        .batch_execute(
            "CREATE FUNCTION public.evil_policy() RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN PERFORM public.evil(0); RETURN true; END $$;
             SET ROLE team;
             CREATE TABLE ro (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE ro_low PARTITION OF ro FOR VALUES FROM (0) TO (1000000);
             RESET ROLE;
             CREATE TABLE ro_def (id bigint NOT NULL, k bigint NOT NULL);
             ALTER TABLE ro_def ENABLE ROW LEVEL SECURITY;
             CREATE POLICY hers ON ro_def USING (public.evil_policy());
             GRANT ALL ON ro_def TO team;
             ALTER TABLE ro ATTACH PARTITION ro_def DEFAULT;
             SET ROLE team;
             SELECT partition_predict.manage('ro', target_rows => 100000);
             INSERT INTO ro SELECT g, 1000000 + g FROM generate_series(0, 99) g;
             RESET ROLE;",
        )
        .unwrap();
    let _ = admin.batch_execute("CALL partition_predict.migrate_default('ro')");
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ro"),
        100,
        "every row of ro"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM guarded"),
        0,
        "after ro"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM orders"),
        0,
        "after ro"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM guarded"),
        0,
        "after z"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM orders"),
        0,
        "after z"
    );
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM guarded"), 0);
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM orders"), 0);
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM x"), 100);
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM x_default"),
        0,
        "the rows moved out of DEFAULT all the same"
    );
}

/// Partitions the extension makes carry no grants of their own, as those
/// PostgreSQL makes: a role the parent's grants let in reaches them through
/// the parent only, so a later REVOKE on the parent covers them, and no one
/// writes into a partition waiting to be attached past the parent's
/// triggers and keys (before, the parent's grants were copied at creation).
#[test]
fn partitions_the_extension_makes_carry_no_grants_of_their_own() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    // Granted before the extension makes any partition of it.
    admin
        .batch_execute(
            "CREATE TABLE shared (id bigserial, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE shared_h PARTITION OF shared FOR VALUES FROM ('2026-11-01') TO ('2026-11-08');
             INSERT INTO shared (ts) SELECT '2026-11-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 6 * 1440) g;
             GRANT SELECT, INSERT ON shared TO mallory;
             GRANT USAGE ON SEQUENCE shared_id_seq TO mallory;",
        )
        .unwrap();
    flush_stats(&mut admin);
    admin
        .batch_execute(
            "SELECT partition_predict.manage('shared', target_rows => 5000, lookahead => '2 days');
             SELECT * FROM partition_predict.run_cycle('shared');",
        )
        .unwrap();
    let shadows: Vec<String> = admin
        .query(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'shared'::regclass AND state = 'shadow' ORDER BY range_start",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!shadows.is_empty(), "{shadows:?}");
    let mut mallory = cluster.connect_as("postgres", "mallory");
    let range_start: String = admin
        .query_one(
            &format!("SELECT range_start FROM partition_predict.partitions WHERE partition = '{}'::regclass", shadows[0]),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        sqlstate(mallory.batch_execute(&format!(
            "INSERT INTO {} (id, ts) VALUES (-1, '{range_start}')",
            shadows[0]
        ))),
        "42501",
        "a write straight into a waiting partition"
    );
    admin
        .batch_execute(&format!(
            "SELECT partition_predict.activate('shared', '{range_start}'::timestamptz + interval '1 second')"
        ))
        .unwrap();
    mallory
        .batch_execute(&format!("INSERT INTO shared (ts) VALUES ('{range_start}')"))
        .unwrap();
    admin
        .batch_execute("REVOKE ALL ON shared FROM mallory")
        .unwrap();
    for partition in &shadows[..1] {
        assert_eq!(
            sqlstate(mallory.query(&format!("SELECT * FROM {partition}"), &[])),
            "42501",
            "{partition} after REVOKE on the parent"
        );
    }
}

/// The extension is recorded in the schema first on the installing role's
/// search_path (`public`, which belongs to the database's owner): a
/// non-superuser database owner's `DROP SCHEMA public CASCADE` dropped the
/// superuser's extension and the state of every managed table with it.
#[test]
fn a_database_owner_cannot_drop_the_extension_with_its_schema() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    admin.batch_execute("CREATE ROLE dbo LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE owned OWNER dbo")
        .unwrap();
    let mut admin_there = cluster.connect("owned");
    admin_there
        .batch_execute(
            "CREATE EXTENSION pg_partition_predict;
             CREATE SCHEMA app;
             CREATE TABLE app.ev (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE app.ev_1 PARTITION OF app.ev FOR VALUES FROM (0) TO (1000);
             SELECT partition_predict.manage('app.ev');",
        )
        .unwrap();
    let mut dbo = cluster.connect_as("owned", "dbo");
    assert_eq!(
        sqlstate(dbo.batch_execute("DROP SCHEMA public CASCADE")),
        "2BP01"
    );
    assert_eq!(
        scalar_i64(
            &mut admin_there,
            "SELECT count(*) FROM partition_predict.config WHERE parent = 'app.ev'::regclass"
        ),
        1
    );
    // Without CASCADE PostgreSQL itself refuses; a schema of its own is hers to drop.
    dbo.batch_execute("CREATE SCHEMA mine; DROP SCHEMA mine CASCADE")
        .unwrap();
}

/// Code of a table's owner that the worker runs (here a policy) takes a
/// session-level advisory lock: it does not stay held by the worker, where
/// it would block every application using that key until a restart.
#[test]
fn the_worker_keeps_no_advisory_lock_an_owner_s_code_took() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    managed_table_with_shadows(&mut mallory, "locker");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.grab() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_try_advisory_lock(4343); RETURN true; END $$;
             ALTER TABLE locker_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE locker_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY grab ON locker_h USING (public.grab());
             INSERT INTO locker (ts) VALUES ('2026-11-07 12:00+00');",
        )
        .unwrap();
    flush_stats(&mut mallory);
    let cycles =
        "SELECT cycles FROM partition_predict.managed_tables WHERE parent = 'locker'::regclass";
    let before = scalar_i64(&mut admin, cycles);
    wait_for(
        "two worker cycles of the table",
        Duration::from_secs(30),
        || (scalar_i64(&mut admin, cycles) >= before + 2).then_some(()),
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.objid = 4343 AND a.backend_type = 'pg_partition_predict worker'"
        ),
        0,
        "an advisory lock held by the worker"
    );
    // Free for anyone.
    let free: bool = admin
        .query_one("SELECT pg_try_advisory_lock(4343)", &[])
        .unwrap()
        .get(0);
    assert!(free);
}

/// One role with hundreds of managed tables cannot keep another role's
/// table waiting behind all of them: roles take turns, and past its
/// `role_time_share` of a cycle a role's remaining tables wait for the next.
#[test]
fn many_tables_of_one_role_do_not_crowd_out_another_role_s() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
            "pg_partition_predict.role_time_share = 1",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    // Each of her tables costs the worker about 0.2 s a cycle: a row arrives
    // in each, and reading it runs her policy, which takes 20 ms a row.
    mallory
        .batch_execute(
            "CREATE FUNCTION public.slowly() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(0.02); RETURN true; END $$;
             DO $$ BEGIN FOR i IN 1..300 LOOP
                 EXECUTE format('CREATE TABLE flood_%s (id bigint NOT NULL) PARTITION BY RANGE (id)', i);
                 EXECUTE format('CREATE TABLE flood_%s_1 PARTITION OF flood_%s FOR VALUES FROM (0) TO (1000)', i, i);
                 EXECUTE format('INSERT INTO flood_%s SELECT g FROM generate_series(0, 9) g', i);
                 PERFORM partition_predict.manage(format('flood_%s', i)::regclass, target_rows => 10);
                 EXECUTE format('ALTER TABLE flood_%s_1 ENABLE ROW LEVEL SECURITY', i);
                 EXECUTE format('ALTER TABLE flood_%s_1 FORCE ROW LEVEL SECURITY', i);
                 EXECUTE format('CREATE POLICY slowly ON flood_%s_1 FOR SELECT USING (public.slowly())', i);
                 EXECUTE format('INSERT INTO flood_%s VALUES (10)', i);
             END LOOP; END $$;",
        )
        .unwrap();
    flush_stats(&mut mallory);
    admin
        .batch_execute(
            "CREATE TABLE fast (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE fast_1 PARTITION OF fast FOR VALUES FROM (0) TO (1000);
             SELECT partition_predict.manage('fast');",
        )
        .unwrap();
    let cycles = "SELECT COALESCE(sum(cycles), 0)::bigint FROM partition_predict.worker_status";
    let before = scalar_i64(&mut admin, cycles);
    let reloaded_at: String = admin.query_one("SELECT now()::text", &[]).unwrap().get(0);
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("a worker cycle", Duration::from_secs(120), || {
        (scalar_i64(&mut admin, cycles) > before).then_some(())
    });
    let served_before_fast = scalar_i64(
        &mut admin,
        &format!(
            "SELECT count(*) FROM partition_predict.managed_tables m, partition_predict.managed_tables f
              WHERE f.parent = 'fast'::regclass AND f.last_cycle_end > '{reloaded_at}'
                AND m.parent <> f.parent AND m.last_cycle_end > '{reloaded_at}'
                AND m.last_cycle_end < f.last_cycle_end"
        ),
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            &format!("SELECT count(*) FROM partition_predict.managed_tables WHERE parent = 'fast'::regclass AND last_cycle_end > '{reloaded_at}'")
        ),
        1,
        "her table was served in that cycle"
    );
    assert!(
        served_before_fast <= 2,
        "{served_before_fast} of the other role's tables were served before hers"
    );
    let cycled = scalar_i64(
        &mut admin,
        &format!(
            "SELECT count(*) FROM partition_predict.managed_tables
              WHERE parent::text LIKE 'flood%' AND last_cycle_end > '{reloaded_at}'"
        ),
    );
    assert!(cycled > 0, "none of the other role's tables was served");
    let waiting = cluster.log().contains("wait for the next cycle");
    assert!(
        cycled < 300 && waiting,
        "{cycled} of 300 tables cycled in one cycle (log says they wait: {waiting})"
    );
}

/// A table's code that sleeps in the worker (a policy here, with no time
/// limit) does not hold a fast shutdown up: the worker ends at its next
/// interrupt check, as a backend does.
#[test]
fn a_table_s_code_does_not_hold_a_shutdown_up() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 1",
            "pg_partition_predict.table_time_limit = 0",
        ],
    );
    let _admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    managed_table_with_shadows(&mut mallory, "sleepy");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.nap() RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(300) IS NOT NULL';
             ALTER TABLE sleepy_h ENABLE ROW LEVEL SECURITY;
             ALTER TABLE sleepy_h FORCE ROW LEVEL SECURITY;
             CREATE POLICY nap ON sleepy_h USING (public.nap());
             INSERT INTO sleepy (ts) VALUES ('2026-11-07 12:00+00');",
        )
        .unwrap();
    flush_stats(&mut mallory);
    drop(mallory);
    let mut watcher = cluster.connect("postgres");
    wait_for(
        "the worker asleep in her policy",
        Duration::from_secs(30),
        || {
            (scalar_i64(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_partition_predict worker'
                AND wait_event = 'PgSleep'",
        ) > 0)
            .then_some(())
        },
    );
    drop(watcher);
    let took = cluster.stop_fast();
    assert!(
        took < Duration::from_secs(10),
        "pg_ctl stop -m fast took {took:?}"
    );
}

/// Fourth review, vectors 2–4 and 6: writers that kept a move from taking
/// its locks made it give way, putting its rows back into DEFAULT through
/// DEFAULT's triggers (one that failed wedged the move and the table's
/// updates, one that counted fired on every give-way), and a row with the
/// key of one waiting in the shadow could be inserted meanwhile. A move is
/// now one transaction: put off, it has moved nothing, fired nothing and
/// leaves no writer waiting; while one is under way, a duplicate key waits
/// and then meets the unique index.
#[test]
fn a_move_put_off_moves_nothing_fires_nothing_and_holds_no_writer() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let (mut admin, mut owner) = owner_and_reader(&cluster);
    owner
        .batch_execute(
            "CREATE TABLE audit (id bigint);
             CREATE TABLE t (id bigint NOT NULL, k bigint NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
             CREATE TABLE t_low PARTITION OF t FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('t', target_rows => 100000);
             INSERT INTO t SELECT g, 1000000 + g FROM generate_series(0, 2999) g;
             CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER counted AFTER INSERT ON t_default FOR EACH ROW EXECUTE FUNCTION count_insert();
             GRANT SELECT, INSERT ON t TO reader;
             GRANT INSERT ON audit TO reader;",
        )
        .unwrap();
    // A writer of the table keeps a transaction open that wrote into DEFAULT.
    let mut writer = cluster.connect_as("postgres", "reader");
    writer
        .batch_execute("BEGIN; INSERT INTO t VALUES (7, 5000000);")
        .unwrap();
    let audited = scalar_i64(&mut admin, "SELECT count(*) FROM audit");
    let put_off = admin.batch_execute("CALL partition_predict.migrate_default('t')");
    assert_eq!(sqlstate(put_off), "55P03");
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM audit"),
        audited,
        "a trigger of DEFAULT's fired for rows of a move that did not happen"
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY t_default"),
        3000
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
    // Nobody waits for a move that is not happening.
    owner
        .batch_execute("SET statement_timeout = '5s'; UPDATE t SET id = id WHERE k = 1000005; RESET statement_timeout;")
        .unwrap();
    writer.batch_execute("COMMIT").unwrap();
    let audited = scalar_i64(&mut admin, "SELECT count(*) FROM audit");

    // While a move is under way, a duplicate of a row it moves waits for
    // it, then meets the partition's unique index.
    let next: String = admin
        .query_one("SELECT partition_predict.migration_step('t')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, "again");
    let duplicate = std::thread::spawn(move || {
        let result = owner.batch_execute("INSERT INTO t VALUES (5, 1000005)");
        sqlstate(result)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !duplicate.is_finished(),
        "an INSERT did not wait for the move"
    );
    admin
        .batch_execute("CALL partition_predict.migrate_default('t')")
        .unwrap();
    assert_eq!(duplicate.join().unwrap(), "23505");
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM t"), 3001);
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM t WHERE id = 5 AND k = 1000005"
        ),
        1
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY t_default"),
        0
    );
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM audit"),
        audited,
        "a trigger of DEFAULT's fired for moved rows"
    );
}

/// Fourth review, vector 5: the cycles bulk loads ask for were not
/// charged to their role's `role_time_share`, so a role loading again and
/// again took the worker from everyone else. They count now: past its
/// share, a load's cycle waits for the next cycle.
#[test]
fn bulk_loads_cycles_count_against_their_role_s_share() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
            "pg_partition_predict.role_time_share = 1",
        ],
    );
    let mut admin = superuser_with_a_secret(&cluster);
    admin
        .batch_execute(
            "CREATE TABLE fast (id bigint NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE fast_1 PARTITION OF fast FOR VALUES FROM (0) TO (1000);
             SELECT partition_predict.manage('fast');",
        )
        .unwrap();
    let mut mallory = cluster.connect_as("postgres", "mallory");
    // Her CHECK takes 0.3 s for each row beyond her partition: moving a
    // load's rows out of DEFAULT costs the worker 1.5 s.
    mallory
        .batch_execute(
            "CREATE FUNCTION public.slowly(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN IF id >= 1000 THEN PERFORM pg_sleep(0.3); END IF; RETURN true; END $$;
             CREATE TABLE flood (id bigint NOT NULL CHECK (public.slowly(id))) PARTITION BY RANGE (id);
             CREATE TABLE flood_1 PARTITION OF flood FOR VALUES FROM (0) TO (1000);
             INSERT INTO flood SELECT generate_series(0, 899);
             SELECT partition_predict.manage('flood', target_rows => 10);",
        )
        .unwrap();
    let cycles = "SELECT COALESCE(sum(cycles), 0)::bigint FROM partition_predict.worker_status";
    let before = scalar_i64(&mut admin, cycles);
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("a worker cycle", Duration::from_secs(120), || {
        (scalar_i64(&mut admin, cycles) > before).then_some(())
    });
    // A load with rows for DEFAULT: its cycle moves them out, which takes
    // her share; the next load's cycle waits.
    let load = |client: &mut Client, n: i64| {
        let mut copy = client.copy_in::<str>("COPY flood (id) FROM STDIN").unwrap();
        let rows: String = (0..30)
            .map(|i| format!("{}\n", 900 + n * 30 + i))
            .chain((0..5).map(|i| format!("{}\n", 1000 + n * 100 + i)))
            .collect();
        std::io::Write::write_all(&mut copy, rows.as_bytes()).unwrap();
        copy.finish().unwrap();
    };
    load(&mut mallory, 0);
    wait_for("the first load's cycle", Duration::from_secs(60), || {
        (scalar_i64(&mut admin, "SELECT count(*) FROM ONLY flood_default") == 0).then_some(())
    });
    load(&mut mallory, 1);
    wait_for(
        "the second load's cycle to wait for the next cycle",
        Duration::from_secs(60),
        || {
            cluster
                .log()
                .contains("the cycle a bulk load of table")
                .then_some(())
        },
    );
    // What her second load put into DEFAULT stays there until the next cycle.
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY flood_default"),
        5
    );
}

/// Fifth review, vectors 5b and 6: a move cancelled while it waited
/// (`statement_timeout` here; the worker's `table_time_limit` cancels the
/// same way) left its override up, and writers waited for a move that was
/// not coming. The override now goes with the cancel.
#[test]
fn a_cancelled_move_leaves_no_writer_waiting() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    table_with_rows_in_default(&mut admin, "ev", 100);
    let mut writer = cluster.connect("postgres");
    writer
        .batch_execute("BEGIN; INSERT INTO ev VALUES (-1, 5);")
        .unwrap();
    admin
        .batch_execute("SET statement_timeout = '500ms'")
        .unwrap();
    let cancelled = admin.batch_execute("CALL partition_predict.migrate_default('ev')");
    assert_eq!(sqlstate(cancelled), "57014");
    admin.batch_execute("RESET statement_timeout").unwrap();
    writer.batch_execute("COMMIT").unwrap();
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
    let mut other = cluster.connect("postgres");
    other
        .batch_execute("SET statement_timeout = '5s'; INSERT INTO ev VALUES (-2, 6);")
        .unwrap();
    admin
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY ev_default"),
        0
    );
    assert_eq!(scalar_i64(&mut admin, "SELECT count(*) FROM ev"), 102);
}

/// Fifth review, vector 11: tables dropped mid-migration kept their slots
/// until a worker cycle, so without a worker every later move was refused
/// (53400). A move now frees them before taking one.
#[test]
fn tables_dropped_mid_migration_keep_no_slot_without_a_worker() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    for i in 0..6 {
        let table = format!("gone{i}");
        table_with_rows_in_default(&mut admin, &table, 10);
        migration_under_way(&mut admin, &table);
        admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }
    table_with_rows_in_default(&mut admin, "kept", 10);
    admin
        .batch_execute("CALL partition_predict.migrate_default('kept')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM ONLY kept_default"),
        0
    );
}

/// Fifth review, vector 4: a DEFAULT in a schema of its own, dropped with
/// that schema mid-move, left the migration without its tables and its
/// writers waiting. Such a DROP SCHEMA … CASCADE is refused while a range
/// moves, as a DROP TABLE of DEFAULT is; with the table's own schema it
/// goes, the table with it.
#[test]
fn a_schema_drop_cannot_take_default_from_under_a_move() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = superuser_with_a_secret(&cluster);
    let mut mallory = cluster.connect_as("postgres", "mallory");
    admin
        .batch_execute("GRANT CREATE ON DATABASE postgres TO mallory")
        .unwrap();
    mallory
        .batch_execute(
            "CREATE SCHEMA aside;
             CREATE TABLE ev (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (1000000);
             CREATE TABLE aside.ev_rest PARTITION OF ev DEFAULT;
             SELECT partition_predict.manage('ev', target_rows => 100000);
             INSERT INTO ev SELECT g, 1000000 + g FROM generate_series(0, 99) g;",
        )
        .unwrap();
    migration_under_way(&mut mallory, "ev");
    assert_eq!(
        sqlstate(mallory.batch_execute("DROP SCHEMA aside CASCADE")),
        "55006"
    );
    assert_eq!(
        sqlstate(mallory.batch_execute("ALTER TABLE aside.ev_rest SET SCHEMA public")),
        "55006"
    );
    mallory
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    assert_eq!(scalar_i64(&mut mallory, "SELECT count(*) FROM ev"), 100);
    mallory.batch_execute("DROP SCHEMA aside CASCADE").unwrap();
}

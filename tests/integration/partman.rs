//! Switching from pg_partman (Debian's postgresql-15-partman, 4.7): a table
//! partman maintains is refused by manage(), adopt_partman() takes it over
//! with every partition and partman's settings, and partman leaves it alone
//! afterwards.

use postgres::Client;

use crate::cluster::{flush_stats, partition_names, scalar_i64, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];

fn error_of<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> (String, String, String) {
    let error = result.expect_err("expected an error");
    let db = error.as_db_error().expect("a database error");
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.hint().unwrap_or_default().to_string(),
    )
}

/// Whether to run: pg_partman must be there on PostgreSQL 15 (Debian's
/// postgresql-15-partman, installed by scripts/test); the builds of 16–18
/// used here have no pg_partman, and then there is nothing to take over.
fn partman_available(client: &mut Client) -> bool {
    let available = scalar_i64(
        client,
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'",
    ) > 0;
    let major = scalar_i64(
        client,
        "SELECT current_setting('server_version_num')::bigint / 10000",
    );
    assert!(
        available || major != 15,
        "pg_partman is not installed: scripts/test installs postgresql-15-partman"
    );
    if !available {
        eprintln!("skipped: no pg_partman for PostgreSQL {major} on this machine");
    }
    available
}

/// `public.ev` as pg_partman 4.7 sets it up: daily partitions from ten days
/// back, premake 4, a DEFAULT, retention 3 days dropping tables; a row an
/// hour over those ten days.
fn partman_table(client: &mut Client, owner: Option<&str>) {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_partition_predict;
             CREATE SCHEMA IF NOT EXISTS partman;
             CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
             CREATE TABLE public.ev (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
             SELECT partman.create_parent('public.ev', 'at', 'native', 'daily', p_premake := 4,
                    p_start_partition := (now() - interval '10 days')::text);
             UPDATE partman.part_config SET retention = '3 days', retention_keep_table = false
              WHERE parent_table = 'public.ev';
             INSERT INTO ev SELECT now() - g * interval '1 hour', g FROM generate_series(1, 10 * 24 - 2) g;",
        )
        .unwrap();
    if let Some(owner) = owner {
        client
            .batch_execute(&format!(
                "ALTER TABLE ev OWNER TO {owner};
                 DO $$ DECLARE p regclass; BEGIN
                   FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'ev'::regclass LOOP
                     EXECUTE format('ALTER TABLE %s OWNER TO {owner}', p);
                   END LOOP; END $$;"
            ))
            .unwrap();
    }
}

#[test]
fn a_partman_table_is_taken_over_with_every_partition_and_partman_stops() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut client = cluster.connect("postgres");
    if !partman_available(&mut client) {
        return;
    }
    partman_table(&mut client, None);
    let before = partition_names(&mut client, "ev");
    assert!(before.len() >= 15, "partman made {before:?}");
    let rows = scalar_i64(&mut client, "SELECT count(*) FROM ev");

    let (state, message, hint) =
        error_of(client.batch_execute("SELECT partition_predict.manage('ev')"));
    assert_eq!(state, "55000", "{message}");
    assert!(message.contains("maintained by pg_partman"), "{message}");
    assert!(hint.contains("adopt_partman"), "{hint}");

    let settings = client
        .query_one(
            "SELECT lookahead, keep, expired, target_rows FROM partition_predict.adopt_partman('ev')",
            &[],
        )
        .unwrap();
    assert_eq!(settings.get::<_, String>(0), "4 days");
    assert_eq!(
        settings.get::<_, Option<String>>(1).as_deref(),
        Some("3 days")
    );
    assert_eq!(settings.get::<_, String>(2), "drop");
    assert!(settings.get::<_, i64>(3) >= 1_000);
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partman.part_config WHERE parent_table = 'public.ev' AND automatic_maintenance = 'off'"
        ),
        1
    );
    // Every partition and row is where it was.
    assert_eq!(partition_names(&mut client, "ev"), before);
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), rows);

    // partman's maintenance passes the table over; ours runs.
    client
        .batch_execute("SELECT partman.run_maintenance()")
        .unwrap();
    assert_eq!(partition_names(&mut client, "ev"), before);
    flush_stats(&mut client);
    let error: Option<String> = client
        .query_one("SELECT error FROM partition_predict.run_cycle('ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(error, None);
    // partman's retention (3 days, drop) is ours now.
    let within = "SELECT count(*) FROM ev WHERE at >= now() - interval '3 days 1 hour'";
    let kept_before = scalar_i64(&mut client, within);
    let expired = client
        .query(
            "SELECT partition FROM partition_predict.apply_retention('ev') WHERE action = 'drop'",
            &[],
        )
        .unwrap()
        .len();
    assert!(expired >= 5, "only {expired} partitions expired");
    // Every row within retention stays; a partition reaching into it stays whole.
    assert_eq!(scalar_i64(&mut client, within), kept_before);
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM ev WHERE at < now() - interval '5 days'"
        ),
        0
    );

    // Taking it over twice, or one partman never knew, is refused.
    let (state, _, _) =
        error_of(client.batch_execute("SELECT partition_predict.adopt_partman('ev')"));
    assert_eq!(state, "42710");
    client
        .batch_execute("CREATE TABLE plain (at timestamptz) PARTITION BY RANGE (at)")
        .unwrap();
    let (state, message, _) =
        error_of(client.batch_execute("SELECT partition_predict.adopt_partman('plain')"));
    assert_eq!(state, "42704", "{message}");
}

/// A table's owner who may not change partman's configuration cannot take
/// the table over (nor leave both managing it); nothing changes.
#[test]
fn taking_over_needs_the_right_to_switch_partman_off() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    if !partman_available(&mut admin) {
        return;
    }
    admin
        .batch_execute("CREATE ROLE table_owner LOGIN")
        .unwrap();
    partman_table(&mut admin, Some("table_owner"));
    let mut owner = cluster.connect_as("postgres", "table_owner");
    let (state, message, hint) =
        error_of(owner.batch_execute("SELECT partition_predict.adopt_partman('ev')"));
    assert_eq!(state, "42501", "{message}");
    assert!(hint.contains("part_config"), "{hint}");
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM partition_predict.config"),
        0
    );
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partman.part_config WHERE automatic_maintenance = 'on'"
        ),
        1
    );
    // With the right granted, the owner takes it over.
    admin
        .batch_execute("GRANT USAGE ON SCHEMA partman TO table_owner; GRANT SELECT, UPDATE ON partman.part_config TO table_owner")
        .unwrap();
    owner
        .batch_execute("SELECT partition_predict.adopt_partman('ev')")
        .unwrap();
    assert_eq!(
        scalar_i64(&mut admin, "SELECT count(*) FROM partition_predict.config"),
        1
    );
}

/// pg_partman's default: the partitions `create_parent()` makes belong to
/// the role that ran it (a superuser, usually), not to the table's owner,
/// as whom the worker acts. A superuser's `adopt_partman()` hands them to
/// the owner; the owner's own call is refused with 42501 and a hint, and
/// changes nothing (before, both failed with "permission denied for table").
#[test]
fn partitions_pg_partman_made_as_a_superuser_go_to_the_table_s_owner() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    if !partman_available(&mut admin) {
        return;
    }
    admin
        .batch_execute(
            "CREATE ROLE tenant LOGIN;
             CREATE EXTENSION pg_partition_predict;
             CREATE SCHEMA partman;
             CREATE EXTENSION pg_partman SCHEMA partman;
             CREATE TABLE public.ev (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
             ALTER TABLE ev OWNER TO tenant;
             SELECT partman.create_parent('public.ev', 'at', 'native', 'daily', p_premake := 4,
                    p_start_partition := (now() - interval '10 days')::text);
             INSERT INTO ev SELECT now() - g * interval '1 hour', g FROM generate_series(1, 200) g;
             GRANT USAGE ON SCHEMA partman TO tenant;
             GRANT SELECT, UPDATE ON partman.part_config TO tenant;",
        )
        .unwrap();
    let not_the_owner_s = "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                            WHERE i.inhparent = 'ev'::regclass AND c.relowner <> 'tenant'::regrole";
    assert!(scalar_i64(&mut admin, not_the_owner_s) > 10);

    let mut tenant = cluster.connect_as("postgres", "tenant");
    let (state, message, hint) =
        error_of(tenant.batch_execute("SELECT partition_predict.adopt_partman('ev')"));
    assert_eq!(state, "42501", "{message}");
    assert!(
        message.contains("belong to another role than its owner tenant"),
        "{message}"
    );
    assert!(hint.contains("OWNER TO"), "{hint}");
    assert_eq!(
        scalar_i64(
            &mut admin,
            "SELECT count(*) FROM partman.part_config WHERE parent_table = 'public.ev' AND automatic_maintenance = 'on'"
        ),
        1,
        "pg_partman still maintains it"
    );

    admin
        .batch_execute("SELECT partition_predict.adopt_partman('ev')")
        .unwrap();
    assert_eq!(scalar_i64(&mut admin, not_the_owner_s), 0);
    let error: Option<String> = admin
        .query_one("SELECT error FROM partition_predict.run_cycle('ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(error, None, "the owner's cycle");
}

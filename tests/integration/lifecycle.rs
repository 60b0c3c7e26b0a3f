//! The extension's tables live and die with what they belong to: a plain
//! DROP TABLE of a managed table, DROP EXTENSION with and without rows in
//! flight, and a renamed table.

use postgres::Client;

use std::time::Duration;

use crate::cluster::{flush_stats, scalar_i64, wait_for, Cluster};

const NO_WORKER: &[&str] = &["pg_partition_predict.database = ''"];
/// A worker that cycles when it starts or the configuration is reloaded.
const IDLE_WORKER: &[&str] = &[
    "pg_partition_predict.database = 'postgres'",
    "pg_partition_predict.naptime = 3600",
];

/// A cluster with the library preloaded and the extension created in `postgres`.
fn with_extension(settings: &[&str]) -> (Cluster, Client) {
    let cluster = Cluster::start_with(true, settings);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    (cluster, client)
}

fn assert_nothing_named_like(client: &mut Client, pattern: &str) {
    assert_eq!(
        relations_named_like(client, pattern),
        Vec::<String>::new(),
        "relations named like {pattern} were left behind"
    );
}

/// A managed table of the connected role's, keys from 0, one partition
/// `[0, 1,000,000)`, and `rows` rows with keys from 1,000,000 up: all in DEFAULT.
pub(crate) fn table_with_rows_in_default(client: &mut Client, table: &str, rows: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE {table}_low PARTITION OF {table} FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('{table}', target_rows => 100000);
             INSERT INTO {table} SELECT g, 1000000 + g FROM generate_series(0, {rows} - 1) g;"
        ))
        .unwrap();
}

/// Starts the migration out of `table`'s DEFAULT by hand: its override is
/// active and its move is the next step.
pub(crate) fn migration_under_way(client: &mut Client, table: &str) {
    let next: String = client
        .query_one(
            &format!("SELECT partition_predict.migration_step('{table}', 1000)"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, "again");
}

/// `ev` with 3,000 rows in DEFAULT and a migration out of it under way.
fn ev_mid_migration(client: &mut Client) {
    table_with_rows_in_default(client, "ev", 3000);
    migration_under_way(client, "ev");
    assert_eq!(
        scalar_i64(
            client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        1
    );
}

/// Overrides listed in the routing state file (its first line is a header).
fn overrides_in_state_file(cluster: &Cluster) -> usize {
    cluster
        .data_file("pg_partition_predict.routing")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The table of the report that asked for this: a serial id (its default
/// uses a sequence the table owns), a week of minute data in one
/// partition, managed, one cycle run so shadows wait for the next days.
pub(crate) fn managed_table_with_shadows(client: &mut Client, table: &str) {
    week_of_minutes(client, table);
    client
        .batch_execute(&format!(
            "SELECT partition_predict.manage('{table}', target_rows => 5000, lookahead => '2 days');
             SELECT partition_predict.run_cycle('{table}');"
        ))
        .unwrap();
}

/// The table before the extension: a serial id, a week of minute data in
/// one partition.
fn week_of_minutes(client: &mut Client, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigserial, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE {table}_h PARTITION OF {table} FOR VALUES FROM ('2026-11-01') TO ('2026-11-08');
             INSERT INTO {table} (ts) SELECT '2026-11-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 6*1440) g;"
        ))
        .unwrap();
    flush_stats(client);
}

/// OIDs of the shadows waiting (standalone, never attached).
pub(crate) fn waiting_shadows(client: &mut Client) -> Vec<u32> {
    client
        .query(
            "SELECT s.shadow FROM partition_predict.shadows s
               JOIN pg_class c ON c.oid = s.shadow AND NOT c.relispartition
              WHERE s.activated_at IS NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, u32>(0))
        .collect()
}

fn existing(client: &mut Client, oids: &[u32]) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE oid = ANY ($1)",
            &[&oids.to_vec()],
        )
        .unwrap()
        .get(0)
}

fn relations_named_like(client: &mut Client, pattern: &str) -> Vec<String> {
    client
        .query(
            "SELECT relname::text FROM pg_class WHERE relname LIKE $1 ORDER BY 1",
            &[&pattern],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_plain_drop_table_takes_the_shadows_along() {
    let (_cluster, mut client) = with_extension(NO_WORKER);
    managed_table_with_shadows(&mut client, "r17");
    let shadows = waiting_shadows(&mut client);
    assert!(!shadows.is_empty(), "the cycle prepared no shadow");

    client.batch_execute("DROP TABLE r17").unwrap();
    assert_eq!(
        existing(&mut client, &shadows),
        0,
        "shadows outlived their table"
    );
    assert_eq!(
        relations_named_like(&mut client, "r17%"),
        Vec::<String>::new(),
        "something of r17 is left behind"
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM partition_predict.config"),
        0
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.shadows"
        ),
        0
    );

    // An attached shadow is a partition like any other: detached, it is
    // the DBA's table and outlives the parent.
    managed_table_with_shadows(&mut client, "r18");
    let attached = client
        .query_one(
            "SELECT partition_predict.activate('r18', '2026-11-08'::timestamptz)",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert!(attached >= 1, "no shadow attached");
    let partition: String = client
        .query_one(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'r18'::regclass AND state = 'active' AND activated_at IS NOT NULL
              ORDER BY range_start LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "INSERT INTO r18 (ts) VALUES ('2026-11-08 00:30+00');
             ALTER TABLE r18 DETACH PARTITION {partition};
             ALTER TABLE {partition} ALTER COLUMN id DROP DEFAULT;
             DROP TABLE r18;"
        ))
        .unwrap();
    assert_eq!(
        scalar_i64(&mut client, &format!("SELECT count(*) FROM {partition}")),
        1,
        "a detached partition went with its former parent"
    );

    // Attached shadows go with their parent, as any partition does.
    managed_table_with_shadows(&mut client, "r19");
    client
        .batch_execute(
            "SELECT partition_predict.activate('r19', '2026-11-08'::timestamptz);
             INSERT INTO r19 (ts) VALUES ('2026-11-08 00:30+00');",
        )
        .unwrap();
    assert!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.partitions
              WHERE parent = 'r19'::regclass AND state = 'active' AND activated_at IS NOT NULL"
        ) >= 1
    );
    client.batch_execute("DROP TABLE r19").unwrap();
    assert_nothing_named_like(&mut client, "r19%");
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM pg_inherits i WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = i.inhparent)"
        ),
        0,
        "a partition outlived its parent"
    );
}

#[test]
fn drop_extension_removes_empty_shadows_and_refuses_mid_migration() {
    let (_cluster, mut client) = with_extension(NO_WORKER);
    managed_table_with_shadows(&mut client, "r17");
    // A second table whose DEFAULT's rows are about to move.
    client
        .batch_execute(
            "CREATE TABLE ev (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (1000000);
             SELECT partition_predict.manage('ev', target_rows => 100000);
             INSERT INTO ev SELECT g, 1000000 + g FROM generate_series(0, 2999) g;",
        )
        .unwrap();
    migration_under_way(&mut client, "ev");
    let shadows = waiting_shadows(&mut client);

    let refused = client
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap_err();
    let db = refused.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "2BP01", "{db:?}");
    assert!(db.message().contains("ev"), "{}", db.message());
    assert!(db.hint().is_some_and(|h| h.contains("migrate_default")));
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), 3000);
    assert_eq!(
        existing(&mut client, &shadows),
        shadows.len() as i64,
        "a refused DROP EXTENSION dropped something"
    );

    client
        .batch_execute("CALL partition_predict.migrate_default('ev')")
        .unwrap();
    let shadows = waiting_shadows(&mut client);
    assert!(!shadows.is_empty());
    client
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap();
    assert_eq!(
        existing(&mut client, &shadows),
        0,
        "empty shadows were left behind"
    );
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM ev"), 3000);
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ONLY ev_default"),
        0
    );
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM r17"),
        6 * 1440 + 1
    );
    // With the extension gone, the tables are plain tables again.
    client
        .batch_execute("DROP TABLE r17; DROP TABLE ev")
        .unwrap();
    assert_nothing_named_like(&mut client, "r17%");
}

#[test]
fn drop_extension_without_preloading_also_removes_the_shadows() {
    let cluster = Cluster::start(false);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    managed_table_with_shadows(&mut client, "r17");
    let shadows = waiting_shadows(&mut client);
    assert!(!shadows.is_empty(), "the cycle prepared no shadow");
    // A new session: the library is not loaded in it before the DROP.
    let mut fresh = cluster.connect("postgres");
    fresh
        .batch_execute("DROP EXTENSION pg_partition_predict")
        .unwrap();
    assert_eq!(existing(&mut fresh, &shadows), 0);
    fresh.batch_execute("DROP TABLE r17").unwrap();
}

#[test]
fn a_renamed_table_stays_managed_and_its_new_shadows_take_the_new_name() {
    let (_cluster, mut client) = with_extension(NO_WORKER);
    week_of_minutes(&mut client, "r17");
    client
        .batch_execute(
            "SELECT partition_predict.manage('r17', target_rows => 5000, lookahead => '2 days');
             ALTER TABLE r17 RENAME TO orders;
             SELECT partition_predict.run_cycle('orders');",
        )
        .unwrap();
    let managed: Vec<String> = client
        .query(
            "SELECT parent::text FROM partition_predict.managed_tables",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(managed, vec!["orders".to_string()]);
    let shadow_names: Vec<String> = client
        .query(
            "SELECT partition::text FROM partition_predict.partitions
              WHERE parent = 'orders'::regclass AND state = 'shadow'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!shadow_names.is_empty(), "no shadow after the rename");
    assert!(
        shadow_names.iter().all(|n| n.starts_with("orders_p")),
        "{shadow_names:?}"
    );
    client.batch_execute("DROP TABLE orders").unwrap();
    assert_nothing_named_like(&mut client, "orders%");
}

#[test]
fn drop_table_mid_migration_leaves_nothing_behind_across_a_restart() {
    let (cluster, mut client) = with_extension(IDLE_WORKER);
    ev_mid_migration(&mut client);
    let shadows: Vec<u32> = client
        .query("SELECT shadow FROM partition_predict.migrations", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // A move of 0.3 is one transaction: its override is never kept across
    // a restart (nor copied into a base backup).
    assert_eq!(overrides_in_state_file(&cluster), 0);
    client.batch_execute("DROP TABLE ev").unwrap();
    assert_eq!(
        existing(&mut client, &shadows),
        0,
        "the moved rows outlived their table"
    );
    drop(client);
    cluster.stop_fast();
    cluster.start_again();
    // The worker's first cycle after the start withdraws the orphan override.
    wait_for(
        "the override to be withdrawn",
        Duration::from_secs(30),
        || (overrides_in_state_file(&cluster) == 0).then_some(()),
    );
    let mut client = cluster.connect("postgres");
    assert_nothing_named_like(&mut client, "ev%");
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.migrations"
        ),
        0
    );
}

#[test]
fn detach_waits_for_a_migration_and_rename_does_not_disturb_it() {
    let (_cluster, mut client) = with_extension(NO_WORKER);
    ev_mid_migration(&mut client);
    for sql in [
        "ALTER TABLE ev DETACH PARTITION ev_low",
        "ALTER TABLE ev DETACH PARTITION ev_default",
        "CREATE TABLE ev_new (id bigint NOT NULL, k bigint NOT NULL);
         ALTER TABLE ev ATTACH PARTITION ev_new FOR VALUES FROM (5000000) TO (6000000)",
        "TRUNCATE ev",
        "TRUNCATE ev_default",
        "DROP TABLE ev_default",
    ] {
        let refused = client.batch_execute(sql).unwrap_err();
        assert_eq!(
            refused.code().map(|c| c.code()),
            Some("55006"),
            "{sql}: {refused}"
        );
    }
    client
        .batch_execute(
            "ALTER TABLE ev RENAME TO events;
             ALTER TABLE ev_default RENAME TO events_default;",
        )
        .unwrap();
    client
        .batch_execute("CALL partition_predict.migrate_default('events')")
        .unwrap();
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM events"), 3000);
    assert_eq!(
        scalar_i64(&mut client, "SELECT count(*) FROM ONLY events_default"),
        0
    );
    assert_eq!(
        scalar_i64(
            &mut client,
            "SELECT count(*) FROM partition_predict.routing_overrides"
        ),
        0
    );
    // Once the move is over, partitions are the DBA's to change again.
    client
        .batch_execute("ALTER TABLE events DETACH PARTITION ev_low")
        .unwrap();
}

#[test]
fn drop_database_mid_migration_frees_its_routing_slot() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
            "pg_partition_predict.max_migrations_per_database = 64",
            "pg_partition_predict.max_migrations_per_role = 64",
        ],
    );
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    admin.batch_execute("CREATE DATABASE doomed").unwrap();
    let mut doomed = cluster.connect("doomed");
    doomed
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    ev_mid_migration(&mut doomed);
    drop(doomed);
    // The cluster has 64 slots: the doomed database holds one, moves here
    // take the other 63, and the 64th finds none.
    for i in 0..64 {
        table_with_rows_in_default(&mut admin, &format!("t{i}"), 10);
    }
    for i in 0..63 {
        migration_under_way(&mut admin, &format!("t{i}"));
    }
    let last = "SELECT partition_predict.migration_step('t63')";
    let refused = admin.query_one(last, &[]).unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("53400"), "{refused}");
    admin
        .batch_execute("DROP DATABASE doomed WITH (FORCE)")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("the slot to be freed", Duration::from_secs(30), || {
        cluster
            .log()
            .contains("withdrew 1 routing override(s) of dropped databases")
            .then_some(())
    });
    let next: String = admin.query_one(last, &[]).unwrap().get(0);
    assert_eq!(next, "again");
}

#[test]
fn dump_and_restore_brings_waiting_shadows_back_without_copies() {
    let cluster = Cluster::start_with(true, NO_WORKER);
    let mut admin = cluster.connect("postgres");
    admin.batch_execute("CREATE DATABASE source").unwrap();
    admin.batch_execute("CREATE DATABASE target").unwrap();
    let mut source = cluster.connect("source");
    source
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    managed_table_with_shadows(&mut source, "r17");
    let names = |client: &mut Client| relations_named_like(client, "r17\\_p%");
    let before = names(&mut source);
    assert!(!before.is_empty());

    let dump = cluster.socket_dir().join("source.dump");
    cluster.client_program("pg_dump", &["-Fc", "-f", dump.to_str().unwrap(), "source"]);
    cluster.client_program(
        "pg_restore",
        &["--exit-on-error", "-d", "target", dump.to_str().unwrap()],
    );
    let mut target = cluster.connect("target");
    assert_eq!(
        names(&mut target),
        before,
        "the dump should carry the shadow tables"
    );
    flush_stats(&mut target);
    target
        .batch_execute("SELECT partition_predict.run_cycle('r17')")
        .unwrap();
    // The cycle planned the same ranges and took the restored tables back,
    // rather than making `_2` copies beside them.
    assert_eq!(names(&mut target), before);
    assert_eq!(waiting_shadows(&mut target).len(), before.len());
    target.batch_execute("DROP TABLE r17").unwrap();
    assert_nothing_named_like(&mut target, "r17%");
}

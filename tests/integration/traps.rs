//! Planted operators and functions never run with another role's rights.
//!
//! A role who may create objects in `public` (PostgreSQL < 15 lets every
//! role) plants, before `CREATE EXTENSION`, a trap for every operator and
//! function name that the extension's SQL text uses: the files in sql/ and
//! every string literal in src/ (the SPI statements), found by scanning, so
//! that a new statement is covered without touching this file. Each trap
//! exists for every pair (or argument list) of the types the extension
//! handles, in `public` and in a schema of the attacker's that sessions put
//! first on their search_path, ahead of an explicit `pg_catalog`. A trap
//! that runs counts itself on a sequence (which no rollback undoes), warns,
//! and tries to make the attacker a superuser.
//!
//! Then a superuser and a non-superuser table owner each call every
//! function and procedure of the extension (the test fails if one exists
//! that it does not call) and read every view, the worker cycles every
//! table, tables are dropped and finally the extension: no trap may fire,
//! and no call may fail.
//!
//! `tests/upgrade/run` plants the same traps (this module's
//! `write_trap_sql`) before `ALTER EXTENSION … UPDATE`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::Client;

use crate::cluster::{scalar_i64, wait_for, Cluster};

/// The types of the values the extension compares and computes with: its
/// keys, catalog identifiers, its settings, counts and texts.
const TYPES: [&str; 20] = [
    "text",
    "name",
    "\"char\"",
    "bigint",
    "integer",
    "smallint",
    "double precision",
    "numeric",
    "oid",
    "regclass",
    "regtype",
    "boolean",
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
    "interval",
    "jsonb",
    "text[]",
    "bigint[]",
    "name[]",
];

/// The search_path of every session in the test (and of the worker): the
/// attacker's schema first, pg_catalog named last, so that a statement the
/// extension runs without pinning its own resolves to a trap even where
/// pg_catalog has the exact signature.
const HOSTILE_SEARCH_PATH: &str = "trapper, public, pg_catalog";

/// Operator and function names in the extension's SQL text.
pub struct SqlNames {
    pub operators: BTreeSet<String>,
    pub functions: BTreeSet<String>,
}

/// Scans sql/ and src/ of this crate.
pub fn scan_sql_names() -> SqlNames {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for dir in ["sql", "src"] {
        for file in files_under(&root.join(dir)) {
            let content = std::fs::read_to_string(&file).unwrap();
            match file.extension().and_then(|e| e.to_str()) {
                Some("sql") => texts.push(content),
                Some("rs") => texts.extend(string_literals(&content)),
                _ => {}
            }
        }
    }
    assert!(
        texts.len() > 100,
        "the scan found almost no SQL: {}",
        texts.len()
    );
    let mut names = SqlNames {
        operators: BTreeSet::new(),
        functions: BTreeSet::new(),
    };
    // IN (…), NULLIF, CASE x WHEN, BETWEEN, IS DISTINCT FROM, = ANY and
    // ORDER BY in a window resolve these by name without spelling them.
    for implied in ["=", "<>", "<", ">", "<=", ">="] {
        names.operators.insert(implied.into());
    }
    for text in &texts {
        let text = without_line_comments(text);
        let upper = text.to_uppercase();
        if upper.contains("LIKE") {
            names
                .operators
                .extend(["~~".to_string(), "!~~".to_string()]);
        }
        if upper.contains("ILIKE") {
            names
                .operators
                .extend(["~~*".to_string(), "!~~*".to_string()]);
        }
        operators_in(&text, &mut names.operators);
        unqualified_calls_in(&text, &mut names.functions);
    }
    names
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The string literals of a Rust source file (plain and raw), comments skipped.
fn string_literals(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            'r' if matches!(chars.get(i + 1), Some('"') | Some('#'))
                && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                j += 1;
                let start = j;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                        break;
                    }
                    j += 1;
                }
                literals.push(chars[start..j.min(chars.len())].iter().collect());
                i = j + 1 + hashes;
            }
            '"' => {
                let mut j = i + 1;
                let mut literal = String::new();
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' {
                        j += 1;
                        match chars.get(j) {
                            Some('n') => literal.push('\n'),
                            // A line continuation: the next line's indentation is not part of it.
                            Some('\n') => {
                                while chars.get(j + 1).is_some_and(|c| c.is_whitespace()) {
                                    j += 1;
                                }
                                literal.push(' ');
                            }
                            Some(c) => literal.push(*c),
                            None => {}
                        }
                    } else {
                        literal.push(chars[j]);
                    }
                    j += 1;
                }
                literals.push(literal);
                i = j + 1;
            }
            // A character literal ('"' in particular), or a lifetime.
            '\'' => {
                if chars.get(i + 1) == Some(&'\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    literals
}

fn without_line_comments(sql: &str) -> String {
    sql.lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const OPERATOR_CHARS: &str = "+-*/<>=~!@#%^&|`?";

/// Operator tokens as PostgreSQL's lexer cuts them.
fn operators_in(text: &str, operators: &mut BTreeSet<String>) {
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if OPERATOR_CHARS.contains(c) {
            run.push(c);
            continue;
        }
        for token in run.split("/*") {
            let mut token = token.to_string();
            // A name of more than one character ends in + or - only if it has one of these.
            if !token.chars().any(|c| "~!@#%^&|`?".contains(c)) {
                while token.len() > 1 && (token.ends_with('+') || token.ends_with('-')) {
                    token.pop();
                }
            }
            let token = if token == "!=" {
                "<>".to_string()
            } else {
                token
            };
            if !token.is_empty() && token != "=>" && !token.contains("--") && token.len() < 64 {
                operators.insert(token);
            }
        }
        run.clear();
    }
}

/// Names called as `name(`, not qualified by a schema.
fn unqualified_calls_in(text: &str, functions: &mut BTreeSet<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let qualified = start > 0 && chars[start - 1] == '.';
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if !qualified && chars.get(j) == Some(&'(') && i - start < 64 {
                functions.insert(chars[start..i].iter().collect::<String>().to_lowercase());
            }
        } else {
            i += 1;
        }
    }
}

/// The SQL that plants the traps in `schemas`, as `attacker`, for the
/// operator names and for the function names that `client`'s database
/// resolves (in pg_catalog or the extension's schema), with `types`: in
/// chunks, each for a transaction of its own (one transaction would need
/// more locks than a server has).
pub fn trap_sql(
    client: &mut Client,
    attacker: &str,
    schemas: &[&str],
    types: &[&str],
) -> Vec<String> {
    let names = scan_sql_names();
    let functions: Vec<String> = names.functions.into_iter().collect();
    // Each name with the argument lists it has there: a trap of another
    // arity could never be picked.
    let rows = client
        .query(
            "SELECT p.proname::text, p.pronargs::int, pg_catalog.array_to_string(
                    ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(p.proargtypes::oid[]) t), ', ')
               FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog', 'partition_predict']::name[])
                AND p.proname::text OPERATOR(pg_catalog.=) ANY ($1)
                AND p.prokind OPERATOR(pg_catalog.=) ANY (ARRAY['f', 'p']::\"char\"[])
                AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proargtypes::oid[]) t
                                  JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) t
                                 WHERE ty.typtype OPERATOR(pg_catalog.=) 'p')",
            &[&functions],
        )
        .unwrap();
    let mut argument_lists: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &rows {
        let (name, arity, exact): (String, i32, String) = (row.get(0), row.get(1), row.get(2));
        argument_lists.insert((name.clone(), exact));
        match arity {
            0 => {}
            1 => {
                for t in types {
                    argument_lists.insert((name.clone(), t.to_string()));
                }
            }
            2 => {
                for a in types {
                    for b in types {
                        argument_lists.insert((name.clone(), format!("{a}, {b}")));
                    }
                }
            }
            _ => {}
        }
    }

    let mut chunks = Vec::new();
    let mut sql = String::new();
    let mut flush = |sql: &mut String, force: bool| {
        if force || sql.len() > 400_000 {
            chunks.push(std::mem::take(sql));
        }
    };
    for schema in schemas {
        // The attacker's payload: counted where no rollback undoes it.
        writeln!(
            sql,
            "CREATE SEQUENCE {schema}.traps_fired;
             GRANT USAGE, UPDATE ON SEQUENCE {schema}.traps_fired TO PUBLIC;
             CREATE FUNCTION {schema}.trap_fired(what text) RETURNS boolean LANGUAGE plpgsql
             SET search_path = pg_catalog AS $t$
             BEGIN
                 PERFORM pg_catalog.nextval('{schema}.traps_fired');
                 RAISE WARNING 'TRAP FIRED: % run as % in %: %', what, current_user, pg_catalog.current_setting('application_name'), pg_catalog.current_query();
                 BEGIN EXECUTE 'ALTER ROLE {attacker} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                 RETURN NULL;
             END $t$;"
        )
        .unwrap();
        for (i, operator) in names.operators.iter().enumerate() {
            for left in types.iter().copied() {
                writeln!(
                    sql,
                    "CREATE FUNCTION {schema}.trap_prefix_{i}({left}) RETURNS boolean LANGUAGE sql
                     AS $t$ SELECT {schema}.trap_fired('{schema}.{operator} {left}') $t$;
                     CREATE OPERATOR {schema}.{operator} (RIGHTARG = {left}, FUNCTION = {schema}.trap_prefix_{i});"
                )
                .unwrap();
                for right in types.iter().copied() {
                    writeln!(
                        sql,
                        "CREATE FUNCTION {schema}.trap_infix_{i}({left}, {right}) RETURNS boolean LANGUAGE sql
                         AS $t$ SELECT {schema}.trap_fired('{left} {schema}.{operator} {right}') $t$;
                         CREATE OPERATOR {schema}.{operator} (LEFTARG = {left}, RIGHTARG = {right},
                                                              FUNCTION = {schema}.trap_infix_{i});"
                    )
                    .unwrap();
                }
                flush(&mut sql, false);
            }
        }
        for (name, arguments) in &argument_lists {
            writeln!(
                sql,
                "CREATE FUNCTION {schema}.\"{name}\"({arguments}) RETURNS boolean LANGUAGE sql
                 AS $t$ SELECT {schema}.trap_fired('{schema}.{name}({arguments})') $t$;"
            )
            .unwrap();
            flush(&mut sql, false);
        }
    }
    flush(&mut sql, true);
    chunks
}

/// For tests/upgrade/run: writes the traps for the database at
/// `$PPP_TRAP_HOST`/`$PPP_TRAP_PORT`/`$PPP_TRAP_DB` (the extension's names
/// included, as its older version has them) to `$PPP_TRAP_SQL`, for
/// planting by the role `$PPP_TRAP_ROLE` in the schemas `$PPP_TRAP_SCHEMAS`
/// (comma-separated), each chunk a transaction.
#[test]
#[ignore = "run by tests/upgrade/run"]
fn write_trap_sql() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let mut config = postgres::Config::new();
    config
        .host_path(var("PPP_TRAP_HOST"))
        .port(var("PPP_TRAP_PORT").parse().expect("a port number"))
        .user("postgres")
        .dbname(&var("PPP_TRAP_DB"));
    let mut client = config.connect(postgres::NoTls).expect("connect");
    let schemas = var("PPP_TRAP_SCHEMAS");
    let schemas: Vec<&str> = schemas.split(',').collect();
    let chunks = trap_sql(&mut client, &var("PPP_TRAP_ROLE"), &schemas, &TYPES);
    let script: String = chunks
        .iter()
        .map(|chunk| format!("BEGIN;\n{chunk}COMMIT;\n"))
        .collect();
    std::fs::write(var("PPP_TRAP_SQL"), script).unwrap();
}

/// Every function and procedure of the extension, as the scenario below
/// calls it (the event trigger functions run on DROP).
const CALLED: [&str; 30] = [
    "manage",
    "collect_stats",
    "forecast",
    "prepartition",
    "run_cycle",
    "force_replan",
    "activate",
    "report",
    "report_html",
    "partition_bounds",
    "routing_overrides_in_memory",
    "is_preloaded",
    "release_outliers",
    "set_time_zone",
    "set_retention",
    "retention_preview",
    "apply_retention",
    "migrate_default",
    "migration_step",
    "ingest",
    "ingest_prepare",
    "ingest_activate",
    "ingest_load",
    "can_stand_for",
    "is_shadow_of",
    "adopt_partman",
    "unmanage",
    "before_drop_extension",
    "forget_dropped_tables",
    "__views__",
];

/// Tables of `owner` (prefix `p`), made before any trap exists: minutes in
/// a timestamptz table with a batch to ingest, integer keys with 3,000 rows
/// in DEFAULT, days in a date table, minutes in a timestamp table.
fn tables_of(client: &mut Client, p: &str) {
    client
        .batch_execute(&format!(
            "SET search_path = public;
             CREATE TABLE public.{p}_events (id bigserial, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             CREATE TABLE public.{p}_events_h PARTITION OF public.{p}_events FOR VALUES FROM ('2026-11-01') TO ('2026-11-08');
             INSERT INTO public.{p}_events (ts) SELECT '2026-11-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 6 * 1440) g;
             CREATE TABLE public.{p}_batch (ts timestamptz NOT NULL);
             INSERT INTO public.{p}_batch SELECT '2026-11-08'::timestamptz + g * interval '1 minute'
               FROM generate_series(0, 999) g;
             CREATE TABLE public.{p}_ints (id bigint NOT NULL, k bigint NOT NULL) PARTITION BY RANGE (k);
             CREATE TABLE public.{p}_ints_low PARTITION OF public.{p}_ints FOR VALUES FROM (0) TO (1000000);
             CREATE TABLE public.{p}_ints_default PARTITION OF public.{p}_ints DEFAULT;
             INSERT INTO public.{p}_ints SELECT g, 1000000 + g FROM generate_series(0, 2999) g;
             CREATE TABLE public.{p}_days (d date NOT NULL, v int) PARTITION BY RANGE (d);
             CREATE TABLE public.{p}_days_october PARTITION OF public.{p}_days FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
             INSERT INTO public.{p}_days SELECT '2026-10-01'::date + g % 31, g FROM generate_series(1, 3000) g;
             CREATE TABLE public.{p}_stamps (t timestamp NOT NULL, v int) PARTITION BY RANGE (t);
             CREATE TABLE public.{p}_stamps_first PARTITION OF public.{p}_stamps FOR VALUES FROM ('2026-11-01') TO ('2026-11-02');
             INSERT INTO public.{p}_stamps SELECT '2026-11-01'::timestamp + g * interval '1 minute'
               FROM generate_series(0, 1439) g;
             SELECT pg_stat_force_next_flush();
             RESET search_path;"
        ))
        .unwrap();
}

/// Every function and procedure on `p`'s tables, then every view; returns
/// the calls that failed.
fn exercise(client: &mut Client, p: &str, views: &[String]) -> Vec<String> {
    let t = |name: &str| format!("'public.{p}_{name}'");
    let (events, ints, days, stamps) = (t("events"), t("ints"), t("days"), t("stamps"));
    let mut statements = vec![
        format!("SELECT partition_predict.manage({events}, target_rows => 5000, lookahead => '2 days')"),
        format!("SELECT partition_predict.manage({ints}, target_rows => 100000)"),
        format!("SELECT partition_predict.manage({days}, target_rows => 1000, lookahead => '3 days')"),
        format!("SELECT partition_predict.manage({stamps}, target_rows => 1000, lookahead => '2 hours')"),
        format!("SELECT * FROM partition_predict.collect_stats({events})"),
        format!("SELECT * FROM partition_predict.forecast({events})"),
        format!("SELECT * FROM partition_predict.prepartition({events})"),
        "SELECT * FROM partition_predict.run_cycle()".to_string(),
        format!("SELECT * FROM partition_predict.run_cycle({days})"),
        format!("SELECT partition_predict.force_replan({events})"),
        format!("SELECT partition_predict.activate({events}, '2026-11-08 06:00+00'::timestamptz)"),
        format!("SELECT partition_predict.activate({stamps}, '2026-11-02 01:00'::timestamp)"),
        format!("SELECT partition_predict.activate({days}, '2026-11-02'::date)"),
        format!("SELECT partition_predict.activate({ints}, 1000500::bigint)"),
        format!("SELECT partition_predict.activate({events})"),
        format!("SELECT partition_predict.report({events})"),
        format!("SELECT partition_predict.report_html({events})"),
        format!("SELECT * FROM partition_predict.partition_bounds({events})"),
        "SELECT * FROM partition_predict.routing_overrides_in_memory()".to_string(),
        "SELECT partition_predict.is_preloaded()".to_string(),
        format!("SELECT partition_predict.release_outliers({events})"),
        format!("SELECT partition_predict.set_time_zone({events}, 'Europe/Paris')"),
        format!("SELECT partition_predict.set_retention({days}, '20 days')"),
        format!("SELECT * FROM partition_predict.retention_preview({days})"),
        format!("SELECT * FROM partition_predict.apply_retention({days})"),
        format!("CALL partition_predict.migrate_default({ints}, 1000)"),
        format!("CALL partition_predict.ingest({events}, 'public.{p}_batch')"),
        format!("SELECT partition_predict.can_stand_for({events}::regclass, {events}::regclass),
                        partition_predict.is_shadow_of({events}::regclass, {events}::regclass)"),
    ];
    statements.extend(views.iter().map(|view| format!("SELECT * FROM {view}")));
    statements.extend([
        format!("SELECT partition_predict.unmanage({stamps})"),
        format!("DROP TABLE public.{p}_days"),
    ]);
    // A trap that returns NULL where the extension expects an answer could
    // make a procedure loop: it fails instead.
    client
        .batch_execute("SET statement_timeout = '60s'")
        .unwrap();
    let mut failures = Vec::new();
    for statement in &statements {
        if let Err(e) = client.batch_execute(statement) {
            failures.push(format!("{statement}: {e}"));
        }
    }
    // Not a pg_partman table: refused, with a proper SQLSTATE.
    let adopt = format!("SELECT partition_predict.adopt_partman({events})");
    match client.batch_execute(&adopt) {
        Ok(()) => failures.push(format!("{adopt}: took over a table pg_partman never had")),
        Err(e) if e.code().is_none_or(|c| c.code().starts_with("XX")) => {
            failures.push(format!("{adopt}: {e}"))
        }
        Err(_) => {}
    }
    failures
}

fn traps_fired(client: &mut Client) -> i64 {
    scalar_i64(
        client,
        "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.traps_fired)
              OPERATOR(pg_catalog.+)
              (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trapper.traps_fired)",
    )
}

#[test]
fn operators_and_functions_planted_on_the_search_path_never_run() {
    let cluster = Cluster::start_with(
        true,
        &[
            "pg_partition_predict.database = 'postgres'",
            "pg_partition_predict.naptime = 3600",
            "search_path = 'trapper, public, pg_catalog'",
        ],
    );
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "SET search_path = public;
             CREATE ROLE mallory LOGIN;
             CREATE ROLE olivia LOGIN;
             GRANT CREATE ON SCHEMA public TO mallory, olivia;
             GRANT CREATE ON DATABASE postgres TO mallory;
             RESET search_path;",
        )
        .unwrap();
    tables_of(&mut admin, "su");
    let mut olivia_setup = cluster.connect_as("postgres", "olivia");
    tables_of(&mut olivia_setup, "ol");

    let started = std::time::Instant::now();
    let mut mallory = cluster.connect_as("postgres", "mallory");
    mallory
        .batch_execute("CREATE SCHEMA trapper; GRANT USAGE ON SCHEMA trapper TO PUBLIC;")
        .unwrap();
    let traps = trap_sql(&mut mallory, "mallory", &["public", "trapper"], &TYPES);
    for chunk in &traps {
        mallory.batch_execute(chunk).unwrap();
    }
    let planted = scalar_i64(
        &mut admin,
        "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
                  WHERE n.nspname OPERATOR(pg_catalog.=) 'trapper')
                OPERATOR(pg_catalog.+)
                (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                  WHERE n.nspname OPERATOR(pg_catalog.=) 'trapper')",
    );
    eprintln!(
        "planted {planted} operators and functions in trapper (as many in public) in {:?}",
        started.elapsed()
    );
    assert!(planted > 10_000, "{planted}");
    // A trap fires where it should: the test's own unqualified statement.
    let (mut probe, probe_notices) = cluster.connect_recording_notices("postgres");
    probe.batch_execute("SELECT 1 = 1").unwrap();
    assert_eq!(traps_fired(&mut admin), 1, "the traps do not work");
    assert!(
        probe_notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("TRAP FIRED")),
        "{:?}",
        probe_notices.lock().unwrap()
    );
    admin
        .batch_execute("ALTER ROLE mallory NOSUPERUSER")
        .unwrap();
    let baseline = traps_fired(&mut admin);

    let (mut superuser, superuser_notices) = cluster.connect_recording_notices("postgres");
    superuser
        .batch_execute("CREATE EXTENSION pg_partition_predict")
        .unwrap();
    let search_path: String = superuser.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(
        search_path, HOSTILE_SEARCH_PATH,
        "CREATE EXTENSION changed the session's search_path"
    );

    let views: Vec<String> = admin
        .query(
            "SELECT pg_catalog.format('%I.%I', schemaname, viewname) FROM pg_catalog.pg_views
              WHERE schemaname OPERATOR(pg_catalog.=) 'partition_predict'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(views.len() >= 10, "{views:?}");
    let functions: BTreeSet<String> = admin
        .query(
            "SELECT p.proname::text FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'partition_predict'::pg_catalog.regnamespace",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let uncalled: Vec<&String> = functions
        .iter()
        .filter(|f| !CALLED.contains(&f.as_str()))
        .collect();
    assert!(
        uncalled.is_empty(),
        "the scenario does not call {uncalled:?}: add them to it"
    );

    // Transactions whose one snapshot is older than the moves below: their
    // reads of the moved table are rewritten, on their search_path.
    let (mut older_owner, older_owner_notices) =
        cluster.connect_as_recording_notices("postgres", "olivia");
    let (mut older_superuser, older_superuser_notices) =
        cluster.connect_recording_notices("postgres");
    for c in [&mut older_owner, &mut older_superuser] {
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
            .unwrap();
    }

    let (mut owner, owner_notices) = cluster.connect_as_recording_notices("postgres", "olivia");
    let mut failures = exercise(&mut owner, "ol", &views);
    failures.extend(exercise(&mut superuser, "su", &views));
    for (c, p) in [(&mut older_owner, "ol"), (&mut older_superuser, "su")] {
        let sql = format!(
            "SELECT pg_catalog.count(*) FROM public.{p}_ints WHERE k OPERATOR(pg_catalog.>=) 1000000::pg_catalog.int8"
        );
        match c.query_one(&sql, &[]) {
            Ok(row) if row.get::<_, i64>(0) == 3000 => {}
            Ok(row) => failures.push(format!("{sql}: {} rows", row.get::<_, i64>(0))),
            Err(e) => failures.push(format!("{sql}: {e}")),
        }
        c.batch_execute("COMMIT").unwrap();
    }

    // The worker cycles every table (its session has the same search_path).
    let cycles_before = scalar_i64(
        &mut superuser,
        "SELECT COALESCE(pg_catalog.sum(cycles), 0)::bigint FROM partition_predict.worker_status",
    );
    superuser
        .batch_execute("SELECT pg_catalog.pg_reload_conf()")
        .unwrap();
    wait_for("a worker cycle", Duration::from_secs(60), || {
        let cycles = scalar_i64(
            &mut superuser,
            "SELECT COALESCE(pg_catalog.sum(cycles), 0)::bigint FROM partition_predict.worker_status",
        );
        (cycles > cycles_before).then_some(())
    });
    if let Err(e) = superuser.batch_execute("DROP EXTENSION pg_partition_predict") {
        failures.push(format!("DROP EXTENSION: {e}"));
    }

    let fired = traps_fired(&mut admin) - baseline;
    let rolsuper: bool = admin
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'mallory'",
            &[],
        )
        .unwrap()
        .get(0);
    let mut warnings: Vec<String> = superuser_notices.lock().unwrap().clone();
    warnings.extend(owner_notices.lock().unwrap().iter().cloned());
    warnings.extend(older_owner_notices.lock().unwrap().iter().cloned());
    warnings.extend(older_superuser_notices.lock().unwrap().iter().cloned());
    warnings.retain(|w| w.contains("TRAP FIRED"));
    warnings.sort();
    warnings.dedup();
    warnings.truncate(20);
    let log = cluster.log();
    let mut log_traps: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TRAP FIRED") && !l.contains("SELECT 1 = 1"))
        .map(|l| l.split_once("WARNING:").map_or(l, |(_, w)| w))
        .collect();
    log_traps.sort();
    log_traps.dedup();
    log_traps.truncate(20);
    assert!(
        fired == 0 && !rolsuper && failures.is_empty(),
        "{fired} traps fired (mallory superuser: {rolsuper});\nwarnings: {warnings:#?}\nserver log: {log_traps:#?}\nfailed calls: {failures:#?}"
    );
}

//! The SQL functions, in schema `partition_predict`: each checks its
//! arguments, pins the session settings and calls the layer below.
//! Procedures, views and SQL-language overloads are in `sql/`.

mod cycle_summary;
mod manage;
mod report;

use pgrx::prelude::*;

use self::cycle_summary::run;
use crate::act::{activate, ingest, migrate, quarantine, retention};
use crate::catalog;
use crate::cycle::{self, Steps};
use crate::error::{or_report, PredictError};
use crate::pg::backend;
use crate::pg::regclass::Regclass;
use crate::pg::relation::{self, Privilege};
use crate::pg::session::{as_role, with_pinned_settings};
use crate::shmem::{requests, routing};
use crate::state::managed::load_managed_table;
use crate::state::settings;

/// Runs an SQL function's body with the catalog settings pinned, once the
/// extension's SQL objects are known to be of this library's version.
fn checked<T>(f: impl FnOnce() -> crate::error::Result<T>) -> crate::error::Result<T> {
    if backend::in_recovery() {
        return Err(PredictError::OnStandby);
    }
    checked_read(f)
}

/// `checked` for functions that only read, which serve standbys too.
fn checked_read<T>(f: impl FnOnce() -> crate::error::Result<T>) -> crate::error::Result<T> {
    with_pinned_settings(|| {
        backend::require_sql_version()?;
        f()
    })
}

/// The SQL-facing functions, created in schema `partition_predict`.
#[pg_schema]
mod partition_predict {
    use pgrx::prelude::*;

    use super::*;

    /// Registers a range-partitioned table: validates it, adds a DEFAULT
    /// partition if it has none, stores its settings and returns them as a row of
    /// the configuration.
    // One argument per setting: the SQL signature, with named defaults.
    // Named manage_table in Rust: its C symbol must not be 0.1's
    // manage_wrapper, which 0.1's SQL objects call with seven arguments.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(name = "manage", volatile, parallel_unsafe)]
    fn manage_table(
        parent: Option<Regclass>,
        target_rows: default!(Option<i64>, 1000000),
        lookahead: default!(Option<String>, "NULL"),
        min_span: default!(Option<String>, "NULL"),
        max_span: default!(Option<String>, "NULL"),
        retention: default!(Option<String>, "NULL"),
        tablespaces: default!(Option<Vec<Option<String>>>, "NULL"),
        time_zone: default!(Option<String>, "NULL"),
        keep: default!(Option<String>, "NULL"),
        expired: default!(Option<String>, "NULL"),
        archive_schema: default!(Option<String>, "NULL"),
        archive_tablespace: default!(Option<String>, "NULL"),
        history_retention: default!(Option<String>, "NULL"),
    ) -> pgrx::composite_type!('static, "partition_predict.config") {
        // The session's zone is the default: read it before the settings are pinned to UTC.
        let session_time_zone = backend::session_time_zone();
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let target_rows = target_rows.ok_or(PredictError::NullArgument("target_rows"))?;
            let tablespaces = tablespaces
                .map(|names| {
                    names
                        .into_iter()
                        .map(|n| n.ok_or(PredictError::NullArgument("an element of tablespaces")))
                        .collect::<Result<Vec<String>, _>>()
                })
                .transpose()?;
            // `retention` was the name of `history_retention` in 0.1.
            let history_retention = match (history_retention, retention) {
                (Some(_), Some(_)) => {
                    return Err(PredictError::InvalidSetting {
                        setting: "retention",
                        reason: "give history_retention only (retention is its old name)".into(),
                    })
                }
                (None, Some(old)) => {
                    pgrx::notice!(
                        "manage(retention => …) is deprecated: it is the history kept of the table, now named history_retention; data retention is keep"
                    );
                    Some(old)
                }
                (history, None) => history,
            };
            let arguments = settings::Arguments {
                target_rows,
                lookahead: lookahead.as_deref(),
                min_span: min_span.as_deref(),
                max_span: max_span.as_deref(),
                history_retention: history_retention.as_deref(),
                tablespaces: tablespaces.as_deref(),
                time_zone: time_zone.as_deref(),
                session_time_zone: &session_time_zone,
                retention: settings::RetentionArguments {
                    keep: keep.as_deref(),
                    expired: expired.as_deref(),
                    archive_schema: archive_schema.as_deref(),
                    archive_tablespace: archive_tablespace.as_deref(),
                },
            };
            manage::manage(parent.0, arguments)
        }))
    }

    /// 0.1's `manage()` (seven arguments): reached only through SQL
    /// objects of 0.1 left beside this library before `ALTER EXTENSION
    /// pg_partition_predict UPDATE`, which it asks for.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(sql = false)]
    fn manage(
        _parent: Option<Regclass>,
        _target_rows: Option<i64>,
        _lookahead: Option<String>,
        _min_span: Option<String>,
        _max_span: Option<String>,
        _retention: Option<String>,
        _tablespaces: Option<Vec<Option<String>>>,
    ) -> pgrx::composite_type!('static, "partition_predict.config") {
        or_report(checked(|| {
            Err(PredictError::Internal(
                "manage() of 0.1 called with the SQL objects of this version".into(),
            ))
        }))
    }

    /// Takes a table over from pg_partman (see the README): keeps every
    /// partition, reads partman's interval, premake and retention, switches
    /// partman's automatic maintenance of the table off and manages it.
    #[pg_extern(volatile, parallel_unsafe)]
    fn adopt_partman(
        parent: Option<Regclass>,
        target_rows: default!(Option<i64>, "NULL"),
    ) -> pgrx::composite_type!('static, "partition_predict.config") {
        let session_time_zone = backend::session_time_zone();
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            manage::adopt_partman(parent.0, target_rows, &session_time_zone)
        }))
    }

    /// Changes the time zone natural boundaries of a `timestamptz` key
    /// follow (an IANA name). Partitions that exist keep their bounds;
    /// shadows not attached yet are planned again in the new zone.
    #[pg_extern(volatile, parallel_unsafe)]
    fn set_time_zone(parent: Option<Regclass>, time_zone: Option<String>) {
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let time_zone = time_zone.ok_or(PredictError::NullArgument("time_zone"))?;
            manage::set_time_zone(parent.0, &time_zone)
        }))
    }

    /// Sets what data `parent` keeps: partitions whose keys are all older
    /// than `keep` (from the newest row, or now if earlier) are dropped,
    /// detached, or archived to a schema and/or tablespace by the worker.
    /// `keep` NULL keeps everything.
    #[pg_extern(volatile, parallel_unsafe)]
    fn set_retention(
        parent: Option<Regclass>,
        keep: Option<String>,
        expired: default!(Option<String>, "NULL"),
        archive_schema: default!(Option<String>, "NULL"),
        archive_tablespace: default!(Option<String>, "NULL"),
    ) {
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            manage::set_retention(
                parent.0,
                settings::RetentionArguments {
                    keep: keep.as_deref(),
                    expired: expired.as_deref(),
                    archive_schema: archive_schema.as_deref(),
                    archive_tablespace: archive_tablespace.as_deref(),
                },
            )
        }))
    }

    /// What data retention would do with `parent`'s partitions now (a dry
    /// run): the partitions before or across the boundary, each with the
    /// action and why.
    #[pg_extern(stable, parallel_unsafe)]
    fn retention_preview(
        parent: Option<Regclass>,
    ) -> TableIterator<
        'static,
        (
            name!(partition, String),
            name!(range_start, String),
            name!(range_end, String),
            name!(action, String),
            name!(reason, String),
        ),
    > {
        let verdicts = or_report(checked_read(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            manage::retention_preview(parent.0)
        }));
        verdict_rows(verdicts)
    }

    /// Expires what retention would expire now, in this transaction (the
    /// worker does it after each cycle, each partition in a transaction of
    /// its own): the partitions dropped, detached or archived.
    #[pg_extern(volatile, parallel_unsafe)]
    fn apply_retention(
        parent: Option<Regclass>,
    ) -> TableIterator<
        'static,
        (
            name!(partition, String),
            name!(range_start, String),
            name!(range_end, String),
            name!(action, String),
            name!(reason, String),
        ),
    > {
        let verdicts = or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            manage::apply_retention(parent.0)
        }));
        verdict_rows(verdicts)
    }

    /// Stops managing a table. Never drops data or partitions.
    #[pg_extern(volatile, parallel_unsafe)]
    fn unmanage(parent: Regclass) {
        or_report(checked(|| manage::unmanage(parent.0)))
    }

    /// Accepts the outlier keys DEFAULT holds now (see the `outlier_keys`
    /// alert): the next migration moves them into partitions like any
    /// others, even if they become the table's frontier. Returns the rows
    /// released (0 when none were held back).
    #[pg_extern(volatile, parallel_unsafe)]
    fn release_outliers(parent: Option<Regclass>) -> i64 {
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let table = load_managed_table(parent.0)?;
            let released = quarantine::release(&table)?;
            if released > 0 {
                // The worker moves them right after this commits.
                requests::cycle_after_commit(table.oid);
            }
            Ok(released)
        }))
    }

    /// A self-contained SVG picture of `parent` over `[since, until)`:
    /// rows that arrived per hour (day for date keys; keys per hour for
    /// integer keys), the forecast and its 95% band, partitions shaded by
    /// state, migrations and alerts. By default the week up to the frontier
    /// and the newest forecast after it.
    #[pg_extern(stable, parallel_unsafe)]
    fn report(
        parent: Option<Regclass>,
        since: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
        until: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
    ) -> String {
        let (chart, _) = report_of(parent, since, until);
        ::report::svg(&chart)
    }

    /// `report()` in an HTML page with the key numbers: forecast error and
    /// interval coverage, rows in DEFAULT, runway, next partitions, open alerts.
    #[pg_extern(stable, parallel_unsafe)]
    fn report_html(
        parent: Option<Regclass>,
        since: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
        until: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
    ) -> String {
        let (chart, summary) = report_of(parent, since, until);
        ::report::html(&chart, &summary)
    }

    /// Bounds of every partition of `parent` as text (timestamps in UTC), for
    /// the `partitions` view. Never fails on a bound it cannot read: that
    /// partition's bounds are NULL instead, so one odd table does not break the
    /// view for all. Parallel unsafe: it pins settings and runs SPI.
    #[pg_extern(stable, parallel_unsafe)]
    fn partition_bounds(
        parent: Regclass,
    ) -> TableIterator<
        'static,
        (
            name!(partition, Regclass),
            name!(range_start, Option<String>),
            name!(range_end, Option<String>),
            name!(is_default, bool),
        ),
    > {
        let rows = or_report(checked_read(|| catalog::table::lenient_bounds(parent.0)));
        TableIterator::new(rows.into_iter().map(|b| {
            (
                Regclass(b.partition),
                b.range_start,
                b.range_end,
                b.is_default,
            )
        }))
    }

    /// Cycle step 1 for one managed table (errors are raised) or for every
    /// managed table the caller owns (each table's error is caught, recorded
    /// and returned in `error`).
    #[pg_extern(volatile, parallel_unsafe)]
    fn collect_stats(
        parent: default!(Option<Regclass>, "NULL"),
    ) -> SetOfIterator<'static, pgrx::composite_type!('static, "partition_predict.cycle_summary")>
    {
        SetOfIterator::new(run(parent, Steps::Collect))
    }

    /// Cycle step 2 for one managed table or every managed table the caller
    /// owns: scores past forecasts against what arrived, learns, and writes
    /// a new forecast when a new hour has completed since the last one.
    #[pg_extern(volatile, parallel_unsafe)]
    fn forecast(
        parent: default!(Option<Regclass>, "NULL"),
    ) -> SetOfIterator<'static, pgrx::composite_type!('static, "partition_predict.cycle_summary")>
    {
        SetOfIterator::new(run(parent, Steps::Forecast))
    }

    /// Cycle steps 3 and 4 for one managed table or every managed table the
    /// caller owns: plans future partitions from the newest forecast and
    /// creates, reshapes or drops shadow partitions to match.
    #[pg_extern(volatile, parallel_unsafe)]
    fn prepartition(
        parent: default!(Option<Regclass>, "NULL"),
    ) -> SetOfIterator<'static, pgrx::composite_type!('static, "partition_predict.cycle_summary")>
    {
        SetOfIterator::new(run(parent, Steps::Prepartition))
    }

    /// Attaches the shadows the data has reached, or all that start at or
    /// before `up_to` (a value of the key's type, as text). Returns how many
    /// were attached.
    #[pg_extern(volatile, parallel_unsafe)]
    fn activate(parent: Option<Regclass>, up_to: default!(Option<String>, "NULL")) -> i64 {
        or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let table = load_managed_table(parent.0)?;
            let limit = up_to
                .map(|text| catalog::table::key_of_text(&table, &text, "up_to"))
                .transpose()?;
            as_role(table.owner_oid, || activate::activate(&table, limit))
        }))
    }

    /// Invalidates cached plans involving the table (or every managed table
    /// the caller owns), in every backend.
    #[pg_extern(volatile, parallel_unsafe)]
    fn force_replan(parent: default!(Option<Regclass>, "NULL")) -> i64 {
        or_report(checked(|| {
            let tables = match parent {
                Some(Regclass(oid)) => {
                    catalog::load_partitioned_table(oid, true)?;
                    vec![oid]
                }
                None => cycle::tables(None)?,
            };
            for oid in &tables {
                activate::force_replan(*oid)?;
            }
            Ok(tables.len() as i64)
        }))
    }

    /// Exactly what one worker cycle does, for one table or all the caller
    /// owns; returns a summary row per table.
    #[pg_extern(volatile, parallel_unsafe)]
    fn run_cycle(
        parent: default!(Option<Regclass>, "NULL"),
    ) -> SetOfIterator<'static, pgrx::composite_type!('static, "partition_predict.cycle_summary")>
    {
        SetOfIterator::new(run(parent, Steps::Cycle))
    }

    /// One step of moving rows out of DEFAULT (the body of the procedure
    /// `migrate_default`, which commits after each): 'again', 'done',
    /// 'busy' or 'yielded' (the reason is the migration's `message`).
    #[pg_extern(volatile, parallel_unsafe)]
    fn migration_step(
        parent: Option<Regclass>,
        batch_rows: default!(Option<i64>, 10000),
    ) -> String {
        let (parent, batch_rows) = or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            load_managed_table(parent.0)?;
            let batch_rows = batch_rows.ok_or(PredictError::NullArgument("batch_rows"))?;
            Ok((parent.0, batch_rows))
        }));
        or_report(migrate::step(parent, batch_rows, migrate::Caller::User))
            .as_text()
            .to_string()
    }

    /// Stage 1 of the procedure `ingest`: checks the source, plans and
    /// creates the partitions the batch needs; returns how many were
    /// created, the shadows to attach, and whether DEFAULT must be emptied
    /// of rows in their ranges first.
    #[pg_extern(volatile, parallel_unsafe)]
    fn ingest_prepare(
        parent: Option<Regclass>,
        source: Option<Regclass>,
    ) -> TableIterator<
        'static,
        (
            name!(created, i32),
            name!(targets, Vec<String>),
            name!(default_overlap, bool),
        ),
    > {
        let prepared = or_report(checked(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let source = source.ok_or(PredictError::NullArgument("source"))?;
            ingest::prepare(parent.0, source.0)
        }));
        TableIterator::once((prepared.created, prepared.targets, prepared.default_overlap))
    }

    /// Stage 2 of `ingest`, for one shadow: attaches it (non-blocking);
    /// false when it was attached already.
    #[pg_extern(volatile, parallel_unsafe)]
    fn ingest_activate(parent: Regclass, target: String) -> bool {
        or_report(checked(|| ingest::activate(parent.0, &target)))
    }

    /// Stage 3 of `ingest`: loads the batch in one statement and records it.
    #[pg_extern(volatile, parallel_unsafe)]
    fn ingest_load(
        parent: Regclass,
        source: Regclass,
        partitions_created: i32,
        partitions_activated: i32,
        started_at: String,
    ) -> TableIterator<
        'static,
        (
            name!(rows_loaded, i64),
            name!(rows_per_partition, pgrx::JsonB),
        ),
    > {
        let loaded = or_report(checked(|| {
            ingest::load(
                parent.0,
                source.0,
                partitions_created,
                partitions_activated,
                &started_at,
            )
        }));
        TableIterator::once((loaded.rows, pgrx::JsonB(loaded.per_partition)))
    }

    /// The routing overrides in shared memory for this database, for the
    /// `routing_overrides` view.
    #[pg_extern(volatile, parallel_unsafe)]
    fn routing_overrides_in_memory() -> TableIterator<
        'static,
        (
            name!(parent_oid, pg_sys::Oid),
            name!(shadow_oid, pg_sys::Oid),
            name!(migration_id, i64),
            name!(since, pgrx::datum::TimestampWithTimeZone),
        ),
    > {
        let rows: Vec<_> = if backend::library_preloaded() {
            routing::overrides_here()
                .into_iter()
                .filter(|o| {
                    // As the views: tables the role may read, and not where
                    // row-level security limits it to some rows.
                    let parent = pg_sys::Oid::from(o.parent);
                    relation::current_user_may(parent, Privilege::Select)
                        && !relation::row_security_limits_current_user(parent)
                })
                .filter_map(|o| {
                    let since = backend::timestamptz(o.since)?;
                    Some((
                        pg_sys::Oid::from(o.parent),
                        pg_sys::Oid::from(o.shadow),
                        o.migration_id,
                        since,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        TableIterator::new(rows)
    }

    /// Whether the library was loaded through shared_preload_libraries, which
    /// the background workers and the planner hook need.
    #[pg_extern(stable, parallel_safe)]
    fn is_preloaded() -> bool {
        backend::library_preloaded()
    }
}

/// What `report()` and `report_html()` draw (errors raised).
fn report_of(
    parent: Option<Regclass>,
    since: Option<pgrx::datum::TimestampWithTimeZone>,
    until: Option<pgrx::datum::TimestampWithTimeZone>,
) -> (::report::Chart, ::report::Summary) {
    or_report(checked_read(|| {
        let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
        report::gather(parent.0, period(since, until)?)
    }))
}

fn period(
    since: Option<pgrx::datum::TimestampWithTimeZone>,
    until: Option<pgrx::datum::TimestampWithTimeZone>,
) -> crate::error::Result<report::Period> {
    Ok(report::Period {
        since: since.map(backend::unix_seconds),
        until: until.map(backend::unix_seconds),
    })
}

type VerdictRow = (String, String, String, String, String);

fn verdict_rows(verdicts: Vec<retention::Verdict>) -> TableIterator<'static, VerdictRow> {
    TableIterator::new(verdicts.into_iter().map(|v| {
        (
            v.partition,
            v.range_start,
            v.range_end,
            v.action.to_string(),
            v.reason,
        )
    }))
}

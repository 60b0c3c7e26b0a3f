//! The SQL functions of SPEC §2 that exist so far.

use pgrx::prelude::*;

use crate::catalog;
use crate::cycle::{self, Steps};
use crate::ddl;
use crate::error::{or_report, PredictError, Result};
use crate::regclass::Regclass;
use crate::session::with_pinned_settings;
use crate::settings::{self, TableSettings};

/// The SQL-facing functions, created in schema `partition_predict`.
#[pg_schema]
mod partition_predict {
    use pgrx::prelude::*;

    use super::*;

    /// Registers a range-partitioned table: validates it, adds a DEFAULT
    /// partition if it has none, stores its settings and returns them as a row of
    /// `partition_predict.config`.
    #[pg_extern(volatile, parallel_unsafe)]
    fn manage(
        parent: Option<Regclass>,
        target_rows: default!(i64, 1000000),
        lookahead: default!(Option<String>, "NULL"),
        min_span: default!(Option<String>, "NULL"),
        max_span: default!(Option<String>, "NULL"),
        retention: default!(Option<String>, "NULL"),
        tablespaces: default!(Option<Vec<String>>, "NULL"),
    ) -> pgrx::composite_type!('static, "partition_predict.config") {
        or_report(with_pinned_settings(|| {
            let arguments = settings::Arguments {
                target_rows,
                lookahead: lookahead.as_deref(),
                min_span: min_span.as_deref(),
                max_span: max_span.as_deref(),
                retention: retention.as_deref(),
                tablespaces: tablespaces.as_deref(),
            };
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            manage_table(parent.0, arguments)
        }))
    }

    /// Stops managing a table. Never drops data or partitions.
    #[pg_extern(volatile, parallel_unsafe)]
    fn unmanage(parent: Regclass) {
        or_report(with_pinned_settings(|| unmanage_table(parent.0)))
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
        let rows = or_report(with_pinned_settings(|| catalog::lenient_bounds(parent.0)));
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
        or_report(with_pinned_settings(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let table = catalog::load_managed_table(parent.0)?;
            let limit = up_to.map(|text| key_of_text(&table, &text)).transpose()?;
            crate::session::as_role(table.owner_oid, || crate::shadows::activate(&table, limit))
        }))
    }

    /// Invalidates cached plans involving the table (or every managed table
    /// the caller owns), in every backend.
    #[pg_extern(volatile, parallel_unsafe)]
    fn force_replan(parent: default!(Option<Regclass>, "NULL")) -> i64 {
        or_report(with_pinned_settings(|| {
            let tables = match parent {
                Some(Regclass(oid)) => {
                    catalog::load_partitioned_table(oid, true)?;
                    vec![oid]
                }
                None => cycle::managed_tables(None)?,
            };
            for oid in &tables {
                crate::shadows::force_replan(*oid)?;
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
    /// 'busy' or 'yielded: <reason>'.
    #[pg_extern(volatile, parallel_unsafe)]
    fn migration_step(parent: Option<Regclass>, batch_rows: default!(i64, 10000)) -> String {
        or_report(with_pinned_settings(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            catalog::load_managed_table(parent.0).map(|_| ())
        }));
        let parent = parent.map(|p| p.0).unwrap_or(pg_sys::InvalidOid);
        or_report(crate::migration::step(
            parent,
            batch_rows,
            crate::migration::Caller::User,
        ))
        .as_text()
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
        let prepared = or_report(with_pinned_settings(|| {
            let parent = parent.ok_or(PredictError::NullArgument("parent"))?;
            let source = source.ok_or(PredictError::NullArgument("source"))?;
            crate::ingest::prepare(parent.0, source.0)
        }));
        TableIterator::once((prepared.created, prepared.targets, prepared.default_overlap))
    }

    /// Stage 2 of `ingest`, for one shadow: attaches it (non-blocking);
    /// false when it was attached already.
    #[pg_extern(volatile, parallel_unsafe)]
    fn ingest_activate(parent: Regclass, target: String) -> bool {
        or_report(with_pinned_settings(|| {
            crate::ingest::activate(parent.0, &target)
        }))
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
        let loaded = or_report(crate::ingest::load(
            parent.0,
            source.0,
            partitions_created,
            partitions_activated,
            &started_at,
        ));
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
        let rows: Vec<_> = if crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed) {
            crate::routing::overrides_here()
                .into_iter()
                .filter_map(|o| {
                    let since = unsafe {
                        pgrx::datum::TimestampWithTimeZone::from_datum(
                            pg_sys::Datum::from(o.since),
                            false,
                        )
                    }?;
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
        crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn manage_table(
    parent: pg_sys::Oid,
    arguments: settings::Arguments,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let table = catalog::load_partitioned_table(parent, true)?;
    if catalog::is_managed(parent)? {
        return Err(PredictError::AlreadyManaged(table.name.to_string()));
    }
    let settings = settings::validate(table.key_type, &arguments)?;
    if table.default_partition.is_none() {
        ddl::add_default_partition(&table)?;
    }
    let row = insert_config(parent, &settings)?;
    // The baseline of the statistics: every row that arrives from now on counts.
    let table = catalog::load_partitioned_table(parent, true)?;
    crate::session::as_role(table.owner_oid, || crate::collect::collect(&table))?;
    Ok(row)
}

fn unmanage_table(parent: pg_sys::Oid) -> Result<()> {
    let (name, owner_rights) = Spi::get_two_with_args::<String, bool>(
        "SELECT (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = $1),
                (SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $1)",
        &[parent.into()],
    )?;
    let name = name.ok_or(PredictError::UndefinedTable(parent.to_u32()))?;
    if !catalog::is_managed(parent)? {
        return Err(PredictError::NotManaged(name));
    }
    if owner_rights != Some(true) {
        return Err(PredictError::NotOwner(name));
    }
    if crate::migration::in_progress(parent)? {
        return Err(PredictError::MigrationInProgress(name));
    }
    crate::shadows::drop_unused(parent)?;
    Spi::run_with_args(
        "DELETE FROM partition_predict.config WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[parent.into()],
    )?;
    Ok(())
}

fn insert_config(
    parent: pg_sys::Oid,
    settings: &TableSettings,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    Spi::get_one_with_args::<PgHeapTuple<'static, AllocatedByRust>>(
        "INSERT INTO partition_predict.config AS c (parent, target_rows, lookahead, min_span, max_span, retention, tablespaces)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6::pg_catalog.interval, $7::pg_catalog.name[])
         RETURNING c",
        &[
            parent.into(),
            settings.target_rows.into(),
            settings.lookahead.clone().into(),
            settings.min_span.clone().into(),
            settings.max_span.clone().into(),
            settings.retention.clone().into(),
            settings.tablespaces.clone().into(),
        ],
    )?
    .ok_or_else(|| PredictError::Internal("INSERT … RETURNING gave no row".into()))
}

fn run(parent: Option<Regclass>, steps: Steps) -> Vec<PgHeapTuple<'static, AllocatedByRust>> {
    let outcomes = match parent {
        Some(Regclass(oid)) => {
            or_report(with_pinned_settings(|| catalog::load_managed_table(oid)));
            vec![cycle::run_raising(oid, steps)]
        }
        None => or_report(cycle::managed_tables(None))
            .into_iter()
            .map(|oid| cycle::run_isolated(oid, steps))
            .collect(),
    };
    outcomes
        .into_iter()
        .map(|o| or_report(summary_row(o)))
        .collect()
}

fn summary_row(outcome: cycle::Outcome) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    let mut row = PgHeapTuple::new_composite_type("partition_predict.cycle_summary")
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    row.set_by_name("parent", Regclass(outcome.parent))
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    for (name, value) in [
        ("partitions_sampled", outcome.collected.partitions_sampled),
        ("rows_inserted", outcome.collected.rows_inserted),
        ("rows_in_default", outcome.collected.rows_in_default),
        ("queries", outcome.collected.queries),
        ("forecast_steps", outcome.forecast.steps),
        ("forecasts_scored", outcome.forecast.scored),
        ("shadows_created", outcome.shadows.created),
        ("shadows_dropped", outcome.shadows.dropped),
        ("activated", outcome.shadows.activated),
    ] {
        row.set_by_name(name, value)
            .map_err(|e| PredictError::Internal(e.to_string()))?;
    }
    row.set_by_name("duration_ms", outcome.duration_ms)
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    row.set_by_name("error", outcome.error)
        .map_err(|e| PredictError::Internal(e.to_string()))?;
    Ok(row)
}

/// A key value written any way the key type's input accepts ('2024-03-01',
/// 'now', '2024-03-01 10:00+02', '1e6'::bigint…), read in pinned settings.
fn key_of_text(table: &catalog::PartitionedTable, text: &str) -> Result<i64> {
    let invalid = |reason: String| PredictError::InvalidSetting {
        setting: "up_to",
        reason,
    };
    let canonical = crate::subxact::try_in_subtransaction(|| {
        Spi::get_one_with_args::<String>(
            &format!("SELECT $1::{}::text", table.key_type.sql_name()),
            &[text.into()],
        )
    })
    .map_err(|e| invalid(e.message))?
    .map_err(PredictError::from)?
    .ok_or_else(|| invalid("NULL".into()))?;
    table
        .key_type
        .parse_value(&canonical)
        .map(|v| v.raw)
        .map_err(|e| invalid(e.to_string()))
}

//! `partition_predict.migrations`: one row per range of DEFAULT being (or
//! having been) moved out, the state machine of `act::migrate`.

use pgrx::prelude::*;

use super::{count_read, write, write_returning, Family, StateRow};
use crate::error::{PredictError, Result};

/// The message of a migration that ended without its move having run (a
/// crash, a cancel): not a reason to wait before the next.
pub const INTERRUPTED: &str = "interrupted before it moved a row";

/// The states of a migration, as the SQL type `partition_predict.migration_state`
/// has them. Every state but the last two is *active*: a routing override
/// makes queries on the parent read the shadow too (the table's generated
/// column `active`, which every query uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationState {
    Starting,
    Moving,
    Attaching,
    Yielding,
    Yielded,
    Done,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Starting => "starting",
            MigrationState::Moving => "moving",
            MigrationState::Attaching => "attaching",
            MigrationState::Yielding => "yielding",
            MigrationState::Yielded => "yielded",
            MigrationState::Done => "done",
        }
    }

    fn parse(text: &str) -> Result<MigrationState> {
        Ok(match text {
            "starting" => MigrationState::Starting,
            "moving" => MigrationState::Moving,
            "attaching" => MigrationState::Attaching,
            "yielding" => MigrationState::Yielding,
            "yielded" => MigrationState::Yielded,
            "done" => MigrationState::Done,
            other => {
                return Err(PredictError::Internal(format!(
                    "unknown migration state {other}"
                )))
            }
        })
    }
}

/// An active migration.
pub struct Migration {
    pub id: i64,
    pub shadow: pg_sys::Oid,
    pub default_partition: pg_sys::Oid,
    pub from: i64,
    pub to: i64,
    pub state: MigrationState,
    pub rows_moved: i64,
}

/// The table's active migration, if any (there is at most one).
pub fn active(parent: pg_sys::Oid) -> Result<Option<Migration>> {
    count_read(Family::Migrations);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT m.id, m.shadow, m.default_partition, m.range_from, m.range_to, m.state::text, m.rows_moved,
                    partition_predict.is_shadow_of(m.shadow, m.parent)
                    AND m.default_partition = (SELECT pt.partdefid FROM pg_catalog.pg_partitioned_table pt
                                                WHERE pt.partrelid = m.parent)
               FROM partition_predict.migrations m
              WHERE m.parent = $1::pg_catalog.oid::pg_catalog.regclass AND m.active",
            None,
            &[parent.into()],
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let r = StateRow::of("migrations", &row);
        let id: i64 = r.required(1, "id")?;
        // The OIDs are acted on with the owner's rights (rows moved between
        // them, the planner hook told to read one): only if they are what
        // the migration made them.
        if r.optional::<bool>(8)? != Some(true) {
            return Err(PredictError::UntrustedState(format!(
                "migration {id} names tables that are not the shadow and the DEFAULT partition of {}",
                parent.to_u32()
            )));
        }
        Ok(Some(Migration {
            id,
            shadow: r.required(2, "shadow")?,
            default_partition: r.required(3, "default_partition")?,
            from: r.required(4, "range_from")?,
            to: r.required(5, "range_to")?,
            state: MigrationState::parse(&r.required::<String>(6, "state")?)?,
            rows_moved: r.required(7, "rows_moved")?,
        }))
    })
}

/// Whether a migration of the table is under way.
pub fn in_progress(parent: pg_sys::Oid) -> Result<bool> {
    Ok(active(parent)?.is_some())
}

/// Records a new migration of `[from, to)` (text forms for display) out of
/// `default_partition` into `shadow`, in state `starting`; its id.
#[allow(clippy::too_many_arguments)]
pub fn start(
    parent: pg_sys::Oid,
    shadow: pg_sys::Oid,
    shadow_name: &str,
    default_partition: pg_sys::Oid,
    from: i64,
    to: i64,
    range_start: String,
    range_end: String,
) -> Result<i64> {
    write_returning::<i64>(
        "INSERT INTO partition_predict.migrations
                (parent, shadow, shadow_name, default_partition, range_from, range_to, range_start, range_end, state)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, 'starting')
         RETURNING id",
        &[
            parent.into(),
            shadow.into(),
            shadow_name.into(),
            default_partition.into(),
            from.into(),
            to.into(),
            range_start.into(),
            range_end.into(),
        ],
    )
}

pub fn set_state(id: i64, state: MigrationState, message: Option<&str>) -> Result<()> {
    write(
        "UPDATE partition_predict.migrations
            SET state = $2::partition_predict.migration_state, message = COALESCE($3, message),
                finished_at = CASE WHEN NOT $4 THEN pg_catalog.now() END
          WHERE id = $1",
        &[
            id.into(),
            state.as_str().into(),
            message.into(),
            (!matches!(state, MigrationState::Yielded | MigrationState::Done)).into(),
        ],
    )?;
    Ok(())
}

/// Records the move that concluded the migration: `total` rows moved in all.
pub fn record_move(id: i64, total: i64) -> Result<()> {
    write(
        "UPDATE partition_predict.migrations SET rows_moved = $2, batches = batches + 1 WHERE id = $1",
        &[id.into(), total.into()],
    )?;
    Ok(())
}

/// The state of migration `id` and its message, if it exists.
pub fn outcome(id: i64) -> Result<Option<(MigrationState, Option<String>)>> {
    count_read(Family::Migrations);
    let (state, message) = crate::pg::spi::select_two::<String, String>(
        "SELECT (SELECT state::text FROM partition_predict.migrations WHERE id = $1),
                (SELECT message FROM partition_predict.migrations WHERE id = $1)",
        &[id.into()],
    )?;
    state
        .map(|s| Ok((MigrationState::parse(&s)?, message)))
        .transpose()
}

/// Whether a migration of the table gave way in the last `minutes`.
pub fn yielded_within(parent: pg_sys::Oid, minutes: i32) -> Result<bool> {
    count_read(Family::Migrations);
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.migrations
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND state = 'yielded'
                           AND finished_at > pg_catalog.now() - pg_catalog.make_interval(mins => $2)
                           AND message IS DISTINCT FROM $3)",
        &[parent.into(), minutes.into(), INTERRUPTED.into()],
    )?
    .unwrap_or(false))
}

/// The tables whose rows are being moved out of DEFAULT, as names, of
/// every managed table the caller can see.
pub fn tables_moving() -> Result<Vec<String>> {
    count_read(Family::Migrations);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT DISTINCT m.parent::text FROM partition_predict.migrations m WHERE m.active ORDER BY 1",
            None,
            &[],
        )?;
        rows.map(|row| StateRow::of("migrations", &row).required(1, "parent"))
            .collect::<Result<Vec<_>>>()
    })
}

//! `partition_predict.shadows`: the partitions prepared ahead of the data,
//! standalone tables until they are attached (the row then stays, with
//! `activated_at`).

use pgrx::prelude::*;

use super::{count_read, write, Family, StateRow};
use crate::error::Result;
use crate::pg::session::as_role;

pub struct Shadow {
    /// The table's name as SQL needs it now, if it still exists as a
    /// standalone table (someone may have dropped or attached it by hand)
    /// and is one `create::shadow` made for this parent (`is_shadow_of` in
    /// `sql/schema.sql`: a row of `shadows` naming another table is never
    /// enough to have it attached or dropped).
    pub current_name: Option<String>,
    /// The name it was created with, for messages.
    pub name: String,
    pub oid: pg_sys::Oid,
    pub from: i64,
    pub to: i64,
    /// Rows are being moved into it out of DEFAULT: only the migration
    /// may attach or drop it.
    pub migrating: bool,
    /// Its owner (the parent's, when `current_name` is set).
    pub owner: pg_sys::Oid,
}

/// Why a shadow was made, recorded in `partition_predict.shadows.origin`:
/// only a forecast's shadows say what was expected to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Forecast,
    Migration,
    Ingest,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Forecast => "forecast",
            Origin::Migration => "migration",
            Origin::Ingest => "ingest",
        }
    }
}

/// Shadows of a table not attached yet, in key order.
pub fn waiting(parent: pg_sys::Oid) -> Result<Vec<Shadow>> {
    waiting_of(Some(parent))
}

/// Shadows not attached yet, of every managed table the caller can see.
pub fn waiting_everywhere() -> Result<Vec<Shadow>> {
    waiting_of(None)
}

fn waiting_of(parent: Option<pg_sys::Oid>) -> Result<Vec<Shadow>> {
    count_read(Family::Shadows);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT (SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c
                      WHERE c.oid = s.shadow AND NOT c.relispartition
                        AND partition_predict.is_shadow_of(s.shadow, s.parent)),
                    s.shadow_name, s.range_from, s.range_to,
                    EXISTS (SELECT 1 FROM partition_predict.migrations m
                             WHERE m.parent = s.parent AND m.shadow = s.shadow AND m.active),
                    s.shadow,
                    (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = s.shadow)
               FROM partition_predict.shadows s
              WHERE ($1::pg_catalog.oid IS NULL OR s.parent = $1::pg_catalog.oid::pg_catalog.regclass)
                AND s.activated_at IS NULL
              ORDER BY s.parent, s.range_from",
            None,
            &[parent.into()],
        )?;
        rows.map(|row| {
            let r = StateRow::of("shadows", &row);
            Ok(Shadow {
                oid: r.required(6, "shadow")?,
                current_name: r.optional(1)?,
                name: r.required(2, "shadow_name")?,
                from: r.required(3, "range_from")?,
                to: r.required(4, "range_to")?,
                // EXISTS is never NULL.
                migrating: r.required(5, "migrating")?,
                // NULL once the table is gone: it is then no one's.
                owner: r.optional(7)?.unwrap_or(pg_sys::InvalidOid),
            })
        })
        .collect()
    })
}

/// Standalone shadows of a table: `(from, to, oid, name as SQL needs it)`.
pub fn standalone(parent: pg_sys::Oid) -> Result<Vec<(i64, i64, pg_sys::Oid, String)>> {
    Ok(waiting(parent)?
        .into_iter()
        .filter_map(|s| s.current_name.map(|name| (s.from, s.to, s.oid, name)))
        .collect())
}

/// What `create::shadow` records of a new shadow.
pub struct NewShadow<'a> {
    pub parent: pg_sys::Oid,
    pub shadow: pg_sys::Oid,
    pub name: &'a str,
    pub from: i64,
    pub to: i64,
    pub range_start: String,
    pub range_end: String,
    pub predicted_rows: f64,
    pub predicted_bytes: i64,
    pub tablespace: Option<String>,
    pub origin: Origin,
}

pub fn record(new: NewShadow) -> Result<()> {
    // A record of the same range whose table can no longer be a shadow
    // (dropped, changed, restored without its dependency) gives way.
    write(
        "DELETE FROM partition_predict.shadows s
          WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND s.range_from = $2
            AND NOT partition_predict.is_shadow_of(s.shadow, s.parent)",
        &[new.parent.into(), new.from.into()],
    )?;
    write(
        "INSERT INTO partition_predict.shadows (parent, shadow, shadow_name, range_from, range_to, range_start, range_end,
                                                predicted_rows, predicted_bytes, tablespace, origin)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            new.parent.into(),
            new.shadow.into(),
            new.name.into(),
            new.from.into(),
            new.to.into(),
            new.range_start.into(),
            new.range_end.into(),
            new.predicted_rows.into(),
            new.predicted_bytes.into(),
            new.tablespace.into(),
            new.origin.as_str().into(),
        ],
    )?;
    Ok(())
}

pub fn mark_activated(parent: pg_sys::Oid, from: i64) -> Result<()> {
    write(
        "UPDATE partition_predict.shadows SET activated_at = pg_catalog.now()
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND range_from = $2",
        &[parent.into(), from.into()],
    )?;
    Ok(())
}

pub fn forget(parent: pg_sys::Oid, from: i64) -> Result<()> {
    write(
        "DELETE FROM partition_predict.shadows WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND range_from = $2",
        &[parent.into(), from.into()],
    )?;
    Ok(())
}

/// Rows forecast for those of `partitions` that a forecast prepared.
pub fn forecast_rows(
    parent: pg_sys::Oid,
    partitions: Vec<pg_sys::Oid>,
) -> Result<Vec<(pg_sys::Oid, f64)>> {
    count_read(Family::Shadows);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT shadow, predicted_rows FROM partition_predict.shadows
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND origin = 'forecast'
                AND shadow = ANY ($2)",
            None,
            &[parent.into(), partitions.into()],
        )?;
        rows.map(|row| {
            let r = StateRow::of("shadows", &row);
            Ok((r.required(1, "shadow")?, r.required(2, "predicted_rows")?))
        })
        .collect::<Result<Vec<_>>>()
    })
}

/// For a bulk load into `parent`: `None` if it is not managed, else whether
/// shadows wait to be attached and its DEFAULT. Read as the table's owner
/// (the configuration shows owners their own tables).
pub fn bulk_load_target(parent: pg_sys::Oid) -> Result<Option<(bool, Option<pg_sys::Oid>)>> {
    let Some((owner, default)) = crate::catalog::table::owner_and_default(parent)? else {
        return Ok(None);
    };
    as_role(owner, || {
        let (managed, waiting) = crate::pg::spi::select_two::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM partition_predict.config
                             WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass),
                    EXISTS (SELECT 1 FROM partition_predict.shadows s
                              JOIN pg_catalog.pg_class c ON c.oid = s.shadow AND NOT c.relispartition
                             WHERE s.parent = $1::pg_catalog.oid::pg_catalog.regclass AND s.activated_at IS NULL
                               AND partition_predict.is_shadow_of(s.shadow, s.parent))",
            &[parent.into()],
        )?;
        Ok((managed == Some(true)).then_some((waiting == Some(true), default)))
    })
}

/// Partitions the extension made and attached that lie wholly past `key`
/// (attached ahead of the data): `(from, to, oid)`, in key order.
pub fn attached_past(parent: pg_sys::Oid, key: i64) -> Result<Vec<(i64, i64, pg_sys::Oid)>> {
    count_read(Family::Shadows);
    Spi::connect(|client| {
        client
            .select(
                "SELECT range_from, range_to, shadow FROM partition_predict.shadows
                  WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND range_from > $2
                    AND activated_at IS NOT NULL
                  ORDER BY range_from",
                None,
                &[parent.into(), key.into()],
            )?
            .map(|row| {
                let r = StateRow::of("shadows", &row);
                Ok((
                    r.required(1, "range_from")?,
                    r.required(2, "range_to")?,
                    r.required(3, "shadow")?,
                ))
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// A table named as `act::create::shadow` would name a shadow of `parent`,
/// that could stand for it (`can_stand_for`), with the extension's bound
/// constraint `constraint`, and that no row of `shadows` records: a shadow
/// that lost its record (a restore, `pg_upgrade`).
pub fn unrecorded_standin(
    schema: &str,
    name: &str,
    parent: pg_sys::Oid,
    constraint: &str,
) -> Result<Option<pg_sys::Oid>> {
    count_read(Family::Shadows);
    Ok(crate::pg::spi::select_one::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2
                    AND partition_predict.can_stand_for(c.oid, $3)
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                                 WHERE k.conrelid = c.oid AND k.conname = $4 AND k.contype = 'c')
                    AND NOT EXISTS (SELECT 1 FROM partition_predict.shadows s WHERE s.shadow = c.oid))",
        &[schema.into(), name.into(), parent.into(), constraint.into()],
    )?)
}

/// The tablespaces `tablespaces` names, in that order: `(name, location,
/// bytes the shadows waiting there are expected to take)`; one that no
/// longer exists is left out.
pub fn tablespaces_with_reserved_bytes(
    tablespaces: &[String],
) -> Result<Vec<(String, String, i64)>> {
    count_read(Family::Shadows);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.spcname::text, pg_catalog.pg_tablespace_location(t.oid),
                    COALESCE((SELECT pg_catalog.sum(s.predicted_bytes) FROM partition_predict.shadows s
                               WHERE s.tablespace = t.spcname AND s.activated_at IS NULL), 0)::bigint
               FROM pg_catalog.unnest($1::pg_catalog.name[]) WITH ORDINALITY AS n(name, i)
               JOIN pg_catalog.pg_tablespace t ON t.spcname = n.name
              ORDER BY n.i",
            None,
            &[tablespaces.to_vec().into()],
        )?;
        rows.map(|row| {
            let r = StateRow::of("shadows", &row);
            Ok((
                r.required(1, "tablespace")?,
                // The default tablespaces have no location of their own.
                r.optional(2)?.unwrap_or_default(),
                r.required(3, "predicted_bytes")?,
            ))
        })
        .collect::<Result<Vec<_>>>()
    })
}

/// After pg_upgrade (see `worker::database`): records again that each
/// standalone shadow the state names is its parent's, where the OID still
/// is a table of the recorded name, of the parent's owner and columns, with
/// no such mark yet. Each pair is locked against DDL and checked again
/// before it is marked. Returns how many were marked and how many were
/// locked by someone else (tried again at the next worker start).
pub fn relink_after_pg_upgrade() -> Result<(usize, usize)> {
    let found: Vec<(pg_sys::Oid, pg_sys::Oid)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT DISTINCT t.shadow, t.parent
               FROM (SELECT s.shadow, s.parent::pg_catalog.oid AS parent, s.shadow_name
                       FROM partition_predict.shadows s WHERE s.activated_at IS NULL
                     UNION ALL
                     SELECT m.shadow, m.parent::pg_catalog.oid, m.shadow_name
                       FROM partition_predict.migrations m WHERE m.active) t
               JOIN pg_catalog.pg_class c ON c.oid = t.shadow
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) = t.shadow_name
                AND partition_predict.can_stand_for(t.shadow, t.parent)
                AND NOT partition_predict.is_shadow_of(t.shadow, t.parent)",
            None,
            &[],
        )?;
        let mut found = Vec::new();
        for row in rows {
            let shadow: Option<pg_sys::Oid> = row.get(1)?;
            let parent: Option<pg_sys::Oid> = row.get(2)?;
            if let (Some(shadow), Some(parent)) = (shadow, parent) {
                found.push((shadow, parent));
            }
        }
        Ok::<_, crate::error::PredictError>(found)
    })?;
    let (mut marked, mut busy) = (0, 0);
    for (shadow, parent) in found {
        if !(crate::pg::locks::try_lock_against_ddl(parent)
            && crate::pg::locks::try_lock_against_ddl(shadow))
        {
            busy += 1;
            continue;
        }
        let still = crate::pg::spi::select_one::<bool>(
            "SELECT partition_predict.can_stand_for($1, $2) AND NOT partition_predict.is_shadow_of($1, $2)",
            &[shadow.into(), parent.into()],
        )?;
        if still == Some(true) {
            crate::pg::relation::drop_along_with(shadow, parent);
            marked += 1;
        }
    }
    Ok((marked, busy))
}

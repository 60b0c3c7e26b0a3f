//! `archive_moves`: archived partitions waiting to move to their
//! tablespace (data retention with `expired => 'archive'`), kept until the
//! move succeeds.

use pgrx::prelude::*;

use super::{write, StateRow};
use crate::error::Result;

/// Records that the archived table `relid` of `parent` is to move to
/// `tablespace`.
pub fn record_move(parent: pg_sys::Oid, relid: pg_sys::Oid, tablespace: &str) -> Result<()> {
    write(
        "INSERT INTO partition_predict.archive_moves (parent, relid, tablespace)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3::pg_catalog.name)
         ON CONFLICT (parent, relid) DO UPDATE SET tablespace = EXCLUDED.tablespace",
        &[parent.into(), relid.into(), tablespace.into()],
    )
}

/// The oldest move of `parent` waiting, other than the tables in `tried`
/// (OIDs as numbers): `(relid, tablespace, whether it is still a table of
/// its own owned by `owner`)`.
pub fn oldest_waiting(
    parent: pg_sys::Oid,
    owner: pg_sys::Oid,
    tried: &[i64],
) -> Result<Option<(pg_sys::Oid, String, bool)>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT m.relid, m.tablespace::text,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                 WHERE c.oid = m.relid AND c.relkind = 'r' AND NOT c.relispartition
                                   AND c.relowner = $2)
                   FROM partition_predict.archive_moves m
                  WHERE m.parent = $1::pg_catalog.oid::pg_catalog.regclass
                    AND m.relid::bigint <> ALL ($3::bigint[])
                  ORDER BY m.detached_at LIMIT 1",
                None,
                &[parent.into(), owner.into(), tried.to_vec().into()],
            )?
            .map(|row| {
                let r = StateRow::of("archive_moves", &row);
                Ok((
                    r.required(1, "relid")?,
                    r.required(2, "tablespace")?,
                    r.required(3, "relid")?,
                ))
            })
            .next()
            .transpose()
    })
}

pub fn forget_move(parent: pg_sys::Oid, relid: pg_sys::Oid) -> Result<()> {
    write(
        "DELETE FROM partition_predict.archive_moves
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND relid = $2",
        &[parent.into(), relid.into()],
    )
}

/// Whether an archived table of `parent` waits for its move: one probe of
/// the primary key.
pub fn any_waiting(parent: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.archive_moves
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass)",
        &[parent.into()],
    )?
    .unwrap_or(false))
}

/// Whether `parent` keeps only some of its data, or an archived table of
/// it waits for its move: two primary-key lookups.
pub fn retention_wanted(parent: pg_sys::Oid) -> Result<bool> {
    Ok(crate::pg::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM partition_predict.config
                         WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND keep IS NOT NULL)
                OR EXISTS (SELECT 1 FROM partition_predict.archive_moves
                            WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass)",
        &[parent.into()],
    )?
    .unwrap_or(false))
}

//! Tablespaces, schemas and intervals as PostgreSQL knows them: what the
//! names and texts a table's settings give are checked against.

use pgrx::prelude::*;

use crate::error::Result;
use crate::pg::subxact::try_in_subtransaction;

/// PostgreSQL's own interval parser, so every form it accepts is accepted:
/// the interval as PostgreSQL prints it, and its length in seconds (a
/// month counts 30 days). `None` if it is no interval.
pub fn interval(text: &str) -> Option<(String, f64)> {
    let text = text.to_string();
    try_in_subtransaction(move || {
        crate::pg::spi::select_two::<String, f64>(
            "SELECT $1::pg_catalog.interval::text,
                    pg_catalog.date_part('epoch', $1::pg_catalog.interval)",
            &[text.into()],
        )
    })
    .ok()?
    .ok()
    .and_then(|(normalised, seconds)| Some((normalised?, seconds?)))
}

/// Whether tablespace `name` exists, and whether `role` (the current user
/// when `None`) may create tables in it.
pub fn tablespace_access(name: &str, role: Option<pg_sys::Oid>) -> Result<(bool, bool)> {
    let (exists, may_create) = match role {
        Some(role) => crate::pg::spi::select_two::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tablespace WHERE spcname = $1),
                    (SELECT pg_catalog.has_tablespace_privilege($2, oid, 'CREATE')
                       FROM pg_catalog.pg_tablespace WHERE spcname = $1)",
            &[name.into(), role.into()],
        )?,
        None => crate::pg::spi::select_two::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tablespace WHERE spcname = $1),
                    (SELECT pg_catalog.has_tablespace_privilege(oid, 'CREATE')
                       FROM pg_catalog.pg_tablespace WHERE spcname = $1)",
            &[name.into()],
        )?,
    };
    Ok((exists == Some(true), may_create == Some(true)))
}

/// Whether schema `name` exists, and whether `role` may use it and create
/// tables in it.
pub fn schema_access(name: &str, role: pg_sys::Oid) -> Result<(bool, bool)> {
    let (exists, may_create) = crate::pg::spi::select_two::<bool, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1),
                (SELECT pg_catalog.has_schema_privilege($2, oid, 'CREATE')
                        AND pg_catalog.has_schema_privilege($2, oid, 'USAGE')
                   FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[name.into(), role.into()],
    )?;
    Ok((exists == Some(true), may_create == Some(true)))
}

/// The schema `CREATE EXTENSION` recorded for the extension (the first on
/// the installing role's search_path, `public` usually; its objects are in
/// `partition_predict` all the same) and the extension's owner.
pub fn extension_schema_and_owner() -> Result<Option<(pg_sys::Oid, pg_sys::Oid)>> {
    let (schema, owner) = crate::pg::spi::select_two::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                  WHERE e.extname OPERATOR(pg_catalog.=) 'pg_partition_predict'),
                (SELECT e.extowner FROM pg_catalog.pg_extension e
                  WHERE e.extname OPERATOR(pg_catalog.=) 'pg_partition_predict')",
        &[],
    )?;
    Ok(schema.zip(owner))
}

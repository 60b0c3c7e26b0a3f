//! pg_partman's configuration of a table (its row of `part_config`), for
//! taking a table over from it. Read as the extension's owner (a table's
//! owner may not be allowed to read partman's tables), only ever for a
//! table whose owner is calling; partman's maintenance is switched off
//! with the caller's own rights.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode;

use super::table::PartitionedTable;
use crate::error::{PredictError, Result};
use crate::pg::session::as_extension_owner;
use crate::pg::subxact::try_in_subtransaction;

/// What pg_partman says of one table.
#[derive(Clone, Debug)]
pub struct PartmanConfig {
    /// The schema pg_partman is installed in.
    schema: String,
    /// `parent_table` as partman spells it (the key of its row).
    parent_table: String,
    pub control: String,
    pub interval: String,
    pub premake: i32,
    pub retention: Option<String>,
    pub retention_schema: Option<String>,
    pub retention_keep_table: bool,
    pub maintained: bool,
    pub epoch: String,
    pub sub_partitioned: bool,
}

/// The schema pg_partman is installed in, if it is.
fn partman_schema() -> Result<Option<String>> {
    Ok(crate::pg::spi::select_one::<String>(
        "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e
                  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                 WHERE e.extname = 'pg_partman')",
        &[],
    )?)
}

/// pg_partman's row for `table`; `None` when pg_partman is not installed
/// here or does not know the table.
pub fn config_of(table: &PartitionedTable) -> Result<Option<PartmanConfig>> {
    let Some(schema) = partman_schema()? else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT p.parent_table, p.control, p.partition_interval, p.premake, p.retention,
                p.retention_schema, p.retention_keep_table, p.automatic_maintenance,
                COALESCE(p.epoch, 'none'),
                EXISTS (SELECT 1 FROM {schema}.part_config_sub s WHERE s.sub_parent = p.parent_table)
           FROM {schema}.part_config p
          WHERE p.parent_table = $1",
        schema = quote_identifier(&schema)
    );
    // pg_partman keys its rows by `schema.table`, unquoted, exactly as the
    // catalog spells both: matching any other way could pick another
    // table's row ("Events" beside events).
    let plain_name = format!("{}.{}", table.name.schema, table.name.name);
    // A pg_partman whose tables are not shaped as 4.x and 5.x shape them is
    // an error here, not a failure of the caller's whole statement.
    let read = try_in_subtransaction(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let rows = client.select(&sql, Some(1), &[plain_name.as_str().into()])?;
                let row = rows.first();
                if row.is_empty() {
                    return Ok(None);
                }
                // Columns pg_partman 4.x and 5.x declare NOT NULL: a NULL
                // there is a configuration this code does not understand.
                let not_null = |column: &str| PredictError::PartmanUnsupported {
                    table: table.name.to_string(),
                    reason: format!("its part_config.{column} is NULL"),
                };
                Ok(Some(PartmanConfig {
                    schema: schema.clone(),
                    parent_table: row
                        .get::<String>(1)?
                        .ok_or_else(|| not_null("parent_table"))?,
                    control: row.get::<String>(2)?.ok_or_else(|| not_null("control"))?,
                    interval: row
                        .get::<String>(3)?
                        .ok_or_else(|| not_null("partition_interval"))?,
                    premake: row.get::<i32>(4)?.ok_or_else(|| not_null("premake"))?,
                    retention: row.get::<String>(5)?,
                    retention_schema: row.get::<String>(6)?,
                    retention_keep_table: row
                        .get::<bool>(7)?
                        .ok_or_else(|| not_null("retention_keep_table"))?,
                    maintained: row.get::<String>(8)?.as_deref() != Some("off"),
                    epoch: row.get::<String>(9)?.ok_or_else(|| not_null("epoch"))?,
                    // EXISTS is never NULL.
                    sub_partitioned: row.get::<bool>(10)?.unwrap_or(false),
                }))
            })
        })
    });
    match read {
        Ok(config) => config,
        Err(caught) => Err(PredictError::Postgres {
            sqlstate: caught.sqlstate,
            message: format!(
                "could not read pg_partman's configuration: {}",
                caught.message
            ),
        }),
    }
}

/// Turns pg_partman's automatic maintenance of the table off (its
/// `run_maintenance()` then passes it over), with the caller's rights.
pub fn stop_maintaining(table: &PartitionedTable, config: &PartmanConfig) -> Result<()> {
    let sql = format!(
        "UPDATE {}.part_config SET automatic_maintenance = 'off' WHERE parent_table = $1",
        quote_identifier(&config.schema)
    );
    let parent_table = config.parent_table.clone();
    match try_in_subtransaction(move || Spi::run_with_args(&sql, &[parent_table.as_str().into()])) {
        Ok(done) => Ok(done?),
        Err(caught) if caught.sqlstate == PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE => {
            Err(PredictError::PartmanNotWritable(table.name.to_string()))
        }
        Err(caught) => Err(caught.into()),
    }
}

/// pg_partman's `interval` times `premake`, as interval text; `None` if
/// PostgreSQL reads no interval there.
pub fn interval_times(interval: &str, premake: i32) -> Result<Option<String>> {
    Ok(crate::pg::spi::select_one::<String>(
        "SELECT ($1::pg_catalog.interval * $2)::text",
        &[interval.into(), premake.into()],
    )?)
}

//! Reads through SPI that leave the transaction read-only.
//!
//! pgrx's `Spi::get_one*` helpers run every statement as a write, which
//! assigns the transaction an ID: on a hot standby that fails ("cannot
//! assign TransactionIds during recovery"), and on a primary it spends an
//! XID (and a commit record) on every view read. Catalog and state reads go
//! through these instead.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum};

pub fn select_one<A: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<A>, pgrx::spi::Error> {
    Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_one())
}

pub fn select_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<(Option<A>, Option<B>), pgrx::spi::Error> {
    Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_two())
}

//! Read-only queries through SPI.
//!
//! `Spi::get_one` and friends run their statement in read/write mode and so
//! assign a transaction id first: that fails on a hot standby and, in the
//! scheduler's once-a-minute checks, would burn an XID and write a commit
//! record every time for nothing. Reads go through here instead.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// The first column of the first row, or None (no row, NULL, or an error
/// reported by SPI as a status rather than raised).
pub fn select_one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    Spi::connect(|client| one(&client, sql, args))
}

/// `select_one` on a connection the caller already holds.
pub fn one<T: FromDatum + IntoDatum>(client: &SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    client.select(sql, Some(1), args).ok()?.first().get_one::<T>().ok().flatten()
}

//! SPI helpers: read-only queries, and statements whose failure is a bug.
//!
//! `Spi::get_one` and friends run their statement in read/write mode and so
//! assign a transaction id first: that fails on a hot standby and, in the
//! scheduler's once-a-minute checks, would burn an XID and write a commit
//! record every time for nothing. Reads go through `select_one` / `one`.

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

/// Executes a statement of the extension's own (read/write); an SPI error
/// status becomes an internal error (PostgreSQL errors are raised anyway).
pub fn execute(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) {
    client.update(sql, None, args).unwrap_or_else(|e| crate::errors::internal(e.to_string()));
}

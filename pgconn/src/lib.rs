//! The database connection of pg_followup's programs (the notifier and the
//! console): `conninfo` reads a connection string the way libpq does, `tls`
//! builds the rustls configuration its `sslmode` asks for.

pub mod conninfo;
pub mod tls;

//! pg_followup: daily follow-up reminders for a peer-mentoring app, inside PostgreSQL.
//!
//! One module per concern; ARCHITECTURE.md is the map. The SQL surface is
//! hand-written in `sql/` and loaded below in dependency order.

use pgrx::prelude::*;

mod active_when;
mod admin;
mod bgw;
mod errors;
mod explain;
mod gucs;
mod local_time;
mod outbox;
mod partitions;
mod plan_cache;
mod planner;
mod query;
mod registration;
mod registry;
mod repair;
mod rule;
mod run;
mod scheduler;
mod security;
mod tracking;
mod triggers;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/registration.sql", name = "registration", requires = ["schema"]);
extension_sql_file!("../sql/run.sql", name = "run", requires = ["schema"]);
extension_sql_file!("../sql/outbox.sql", name = "outbox", requires = ["windows"]);
extension_sql_file!("../sql/windows.sql", name = "windows", requires = ["schema"]);
extension_sql_file!("../sql/scheduler.sql", name = "scheduler", requires = ["windows"]);
extension_sql_file!("../sql/admin.sql", name = "admin", requires = ["schema"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    security::init();
    // _PG_init also runs in every backend that loads the library; only the
    // postmaster, while preloading, may register the static worker.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        scheduler::register();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_followup'"]
    }
}

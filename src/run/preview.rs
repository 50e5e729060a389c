//! `followup.preview(as_of)`: the messages a run for `as_of` would enqueue
//! now, as outbox rows, written nowhere.
//!
//! The query (due.rs, `preview_sql`) reads the app's table, so it runs as
//! its owner (security.rs) like the run; assignments it cannot evaluate are
//! left out as the run leaves them out (unreadable.rs). The rows are fetched
//! through a cursor in batches and handed back as a materialized set, so a
//! preview of a million messages spills to disk instead of memory.

use super::unreadable::skipping_unreadable;
use super::{any_policy_escalates, due};
use crate::local_time::as_of_or_today;
use crate::registry;
use crate::security;
use pgrx::datum::Date;
use pgrx::prelude::*;
use std::ffi::CString;

/// Rows fetched from the cursor at a time.
const BATCH: std::ffi::c_long = 10_000;

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo__preview_wrapper() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// `followup._preview(as_of date) RETURNS SETOF followup.outbox`, in
/// materialize mode.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _preview_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let as_of = as_of_or_today(pgrx::fcinfo::pg_getarg::<Date>(fcinfo, 0));
    let result = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
    if result.is_null()
        || (*result).type_ != pg_sys::NodeTag::T_ReturnSetInfo
        || (*result).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 == 0
        || (*result).expectedDesc.is_null()
    {
        crate::errors::internal("followup._preview must be called in a context that accepts a set");
    }
    let per_query = (*(*result).econtext).ecxt_per_query_memory;
    let caller_context = pg_sys::MemoryContextSwitchTo(per_query);
    let descriptor = pg_sys::CreateTupleDescCopy((*result).expectedDesc);
    let store = pg_sys::tuplestore_begin_heap(true, false, pg_sys::work_mem);
    pg_sys::MemoryContextSwitchTo(caller_context);

    Spi::connect_mut(|client| {
        let assignments = registry::require_assignment_table(client);
        let escalations = any_policy_escalates(client);
        let fill = |_: &mut pgrx::spi::SpiClient<'_>, only: &str, unreadable: &[String]| {
            pg_sys::tuplestore_clear(store);
            let sql = due::preview_sql(&assignments, escalations, only);
            security::as_owner_statement(assignments.owner, &sql, || {
                fetch_into(store, descriptor, &sql, as_of, unreadable)
            });
        };
        let probe = |only: &str| {
            format!("SELECT pg_catalog.count(p.*) FROM ({}) AS p", due::preview_sql(&assignments, escalations, only))
        };
        if let Err(failure) = skipping_unreadable(client, &assignments, "$2", fill, probe, as_of) {
            crate::errors::raise(failure.code, failure.message);
        }
    });

    (*result).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
    (*result).setResult = store;
    (*result).setDesc = descriptor;
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0)
}

/// Runs `sql` (`$1` the as-of date, `$2` the ids left out) through a cursor
/// and puts every row into `store`, shaped as `descriptor`.
unsafe fn fetch_into(
    store: *mut pg_sys::Tuplestorestate,
    descriptor: pg_sys::TupleDesc,
    sql: &str,
    as_of: Date,
    unreadable: &[String],
) {
    let source = CString::new(sql).expect("generated SQL contains no NUL");
    let mut types = [pg_sys::DATEOID, pg_sys::TEXTARRAYOID];
    let mut values = [
        as_of.into_datum().expect("a date is never NULL"),
        unreadable.to_vec().into_datum().expect("an array is never NULL"),
    ];
    let nulls = [b' ' as std::ffi::c_char, b' ' as std::ffi::c_char];
    let portal = pg_sys::SPI_cursor_open_with_args(
        std::ptr::null(),
        source.as_ptr(),
        2,
        types.as_mut_ptr(),
        values.as_mut_ptr(),
        nulls.as_ptr(),
        true,
        0,
    );
    if portal.is_null() {
        crate::errors::internal("could not open the preview's cursor");
    }
    let mut conversion: Option<*mut pg_sys::TupleConversionMap> = None;
    loop {
        pg_sys::SPI_cursor_fetch(portal, true, BATCH);
        let rows = pg_sys::SPI_tuptable;
        let count = pg_sys::SPI_processed as usize;
        if rows.is_null() || count == 0 {
            break;
        }
        // the outbox row type may have dropped columns: convert by position
        let map = *conversion.get_or_insert_with(|| {
            pg_sys::convert_tuples_by_position((*rows).tupdesc, descriptor, c"preview row".as_ptr())
        });
        for i in 0..count {
            let tuple = *(*rows).vals.add(i);
            let tuple = if map.is_null() { tuple } else { pg_sys::execute_attr_map_tuple(tuple, map) };
            pg_sys::tuplestore_puttuple(store, tuple);
        }
        pg_sys::SPI_freetuptable(rows);
    }
    pg_sys::SPI_cursor_close(portal);
}

/// Symbols that the install scripts of released versions name (before
/// 0.4.0 preview ran its query through PL/pgSQL): CREATE EXTENSION … VERSION
/// of an older release needs them to exist. Until ALTER EXTENSION … UPDATE,
/// such a preview refuses to run: its query would read the app's table as
/// the extension's owner.
#[pg_extern(sql = false)]
fn _as_of(as_of: Option<Date>) -> Date {
    as_of_or_today(as_of)
}

#[pg_extern(sql = false)]
fn _preview_sql() -> String {
    crate::errors::raise_with_hint(
        pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_followup's schema is older than its library",
        "Run ALTER EXTENSION pg_followup UPDATE.",
    )
}

//! Validation of `active_when`, the boolean filter over the assignments table.
//!
//! The expression is pasted into the run's SQL, the claim's still-due check
//! and explain. So before it is stored it must be shown to be exactly one
//! expression (no way to close the parenthesis and append a statement), to
//! refer only to the assignments table, to be deterministic (no volatile,
//! aggregate or window function), and to use only what PostgreSQL itself
//! defines: no user-defined function, operator, cast, type or domain, and
//! none of the built-in functions that read a relation or run a query named
//! at run time (`table_to_xml` and its kin). The statements that evaluate it
//! run as the assignments table's owner anyway (security.rs); this keeps
//! every evaluation the same and every expression readable as what it does.
//!
//! The expression is resolved with `search_path = pg_catalog, pg_temp`, here and
//! in every run.

use crate::errors::{raise, raise_with_hint};
use crate::registry::AssignmentTable;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use std::ffi::CString;

const CHECK_VIEW: &str = "pg_temp.followup_active_when_check";

pub fn validate(client: &mut SpiClient<'_>, assignments: &AssignmentTable, expression: &str) {
    let table = &assignments.table;
    require_single_expression(expression);
    require_deterministic_boolean(client, table, expression);
    require_builtin_objects_only(client, assignments.relid, table, expression);
    require_evaluable_by_owner(client, assignments, expression);
}

/// Evaluates the expression now, as the runs will: as the table's owner in
/// a restricted context, on every row of the table and on a row of NULLs.
/// What the owner may not do (`current_setting('data_directory')`, say) is
/// refused. A row whose values the expression cannot handle (a bad cast) is
/// not: runs skip such rows and count them (README, "Running").
fn require_evaluable_by_owner(client: &mut SpiClient<'_>, assignments: &AssignmentTable, expression: &str) {
    let sql = format!(
        "SELECT pg_catalog.count(({expression}))
           FROM {} FULL JOIN (VALUES (1)) AS followup_null_row (x) ON false",
        assignments.table
    );
    let outcome = crate::errors::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        crate::security::as_owner_statement(assignments.owner, &sql, || {
            client.select(sql.as_str(), None, &[]).map(|_| ()).map_err(|e| e.to_string())
        })
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => crate::errors::internal(message),
        Err(failure) if failure.is_data_exception() => warning!(
            "pg_followup: active_when cannot be evaluated on some row of {} ({}: {}); runs skip such rows and count them",
            assignments.table,
            failure.sqlstate(),
            failure.message
        ),
        Err(failure) => raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "active_when must be something the owner of {} may evaluate itself: {}",
                assignments.table, failure.message
            ),
        ),
    }
}

/// Parse analysis of `SELECT (<expression>) FROM <table>`: it must resolve
/// against the table, be boolean, and use no aggregate, window or
/// set-returning function, no subquery and no volatile function.
fn require_deterministic_boolean(client: &mut SpiClient<'_>, table: &str, expression: &str) {
    let sql = CString::new(format!("SELECT ({expression}) AS active FROM {table}")).expect("checked for NUL above");
    let plan = PgTryBuilder::new(|| unsafe { pg_sys::SPI_prepare(sql.as_ptr(), 0, std::ptr::null_mut()) })
        .catch_others(|caught| match caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                raise(report.sql_error_code(), format!("invalid active_when expression: {}", report.message()))
            }
            other => other.rethrow(),
        })
        .execute();
    if plan.is_null() {
        crate::errors::internal("could not analyze active_when");
    }
    let not_allowed =
        |what: &str| -> ! { raise(ERRCODE_INVALID_PARAMETER_VALUE, format!("active_when cannot contain {what}")) };
    let result_type = unsafe {
        let sources = pg_sys::SPI_plan_get_plan_sources(plan);
        let source = (*(*sources).elements).ptr_value as *mut pg_sys::CachedPlanSource;
        let query = (*(*(*source).query_list).elements).ptr_value as *mut pg_sys::Query;
        if (*query).hasAggs {
            not_allowed("aggregate functions");
        }
        if (*query).hasWindowFuncs {
            not_allowed("window functions");
        }
        if (*query).hasTargetSRFs {
            not_allowed("set-returning functions");
        }
        if (*query).hasSubLinks {
            not_allowed("subqueries; it may only refer to columns of the assignments table");
        }
        let target = (*(*(*query).targetList).elements).ptr_value as *mut pg_sys::TargetEntry;
        let expr = (*target).expr as *mut pg_sys::Node;
        if pg_sys::contain_volatile_functions(expr) {
            not_allowed("volatile functions such as random(): a run must decide the same way each time");
        }
        let result_type = pg_sys::exprType(expr);
        pg_sys::SPI_freeplan(plan);
        result_type
    };
    if result_type != pg_sys::BOOLOID {
        raise(
            ERRCODE_DATATYPE_MISMATCH,
            format!(
                "active_when must be a boolean expression, but it is of type {}",
                crate::registry::type_name(client, result_type)
            ),
        );
    }
}

/// Only what PostgreSQL defines. Built-in objects are pinned and leave no
/// pg_depend rows, so any object a view over the expression depends on,
/// other than the table itself, is user-defined: a function, an operator, a
/// type or domain (`status::app.status`, `'x'::app.d`), a collation. Among
/// the built-in functions, those that read a relation or run a query named
/// at run time are refused by name: the view's stored parse tree lists
/// every function it calls.
fn require_builtin_objects_only(client: &mut SpiClient<'_>, relid: pg_sys::Oid, table: &str, expression: &str) {
    let create = format!("CREATE TEMP VIEW followup_active_when_check AS SELECT ({expression}) AS active FROM {table}");
    client.update(create.as_str(), None, &[]).unwrap_or_else(|e| crate::errors::internal(e.to_string()));
    let user_defined: Option<String> = client
        .select(
            "SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0), ', ')
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                           AND d.objid = r.oid
              WHERE r.ev_class = $1::pg_catalog.regclass
                AND NOT (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND d.refobjid IN ($1::pg_catalog.regclass, $2))",
            None,
            &[CHECK_VIEW.into(), relid.into()],
        )
        .ok()
        .and_then(|t| t.first().get_one::<String>().ok().flatten());
    let catalogue_access: Option<String> = client
        .select(
            "SELECT pg_catalog.string_agg(DISTINCT p.proname::pg_catalog.text, ', ')
               FROM pg_catalog.pg_rewrite r
              CROSS JOIN LATERAL pg_catalog.regexp_matches(r.ev_action::pg_catalog.text,
                                                           ':(?:funcid|opfuncid) (\\d+)', 'g') AS m
               JOIN pg_catalog.pg_proc p ON p.oid = m[1]::pg_catalog.oid
              WHERE r.ev_class = $1::pg_catalog.regclass
                AND (p.proname ~ '(_to_xml|_to_xmlschema|_to_xml_and_xmlschema)$' OR p.proname = 'ts_stat')",
            None,
            &[CHECK_VIEW.into()],
        )
        .ok()
        .and_then(|t| t.first().get_one::<String>().ok().flatten());
    client.update("DROP VIEW pg_temp.followup_active_when_check", None, &[]).ok();
    if let Some(objects) = user_defined {
        raise_with_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("active_when may use only what PostgreSQL defines, not {objects}"),
            "Compare a column of a user-defined type as text, e.g. status::text = 'active'.",
        );
    }
    if let Some(functions) = catalogue_access {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("active_when cannot use {functions}: it reads a relation or runs a query named at run time"),
        );
    }
}

/// `SELECT (<expression>)` must parse as one plain SELECT with one target and
/// nothing else, which proves the text is a single, balanced expression.
fn require_single_expression(expression: &str) {
    let invalid =
        |why: &str| -> ! { raise(ERRCODE_SYNTAX_ERROR, format!("active_when must be a single SQL expression: {why}")) };
    let Ok(sql) = CString::new(format!("SELECT ({expression})")) else { invalid("it contains a NUL byte") };
    let statements =
        PgTryBuilder::new(|| unsafe { pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) })
            .catch_others(|caught| match caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => invalid(report.message()),
                other => other.rethrow(),
            })
            .execute();
    unsafe {
        if statements.is_null() || (*statements).length != 1 {
            invalid("it contains more than one statement");
        }
        let raw = (*(*statements).elements).ptr_value as *mut pg_sys::RawStmt;
        let node = (*raw).stmt;
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_SelectStmt {
            invalid("it is not an expression");
        }
        let select = &*(node as *mut pg_sys::SelectStmt);
        let list_len = |l: *mut pg_sys::List| if l.is_null() { 0 } else { (*l).length };
        let plain = list_len(select.targetList) == 1
            && select.distinctClause.is_null()
            && select.intoClause.is_null()
            && select.fromClause.is_null()
            && select.whereClause.is_null()
            && select.groupClause.is_null()
            && select.havingClause.is_null()
            && select.windowClause.is_null()
            && select.valuesLists.is_null()
            && select.sortClause.is_null()
            && select.limitOffset.is_null()
            && select.limitCount.is_null()
            && select.lockingClause.is_null()
            && select.withClause.is_null()
            && select.op == pg_sys::SetOperation::SETOP_NONE;
        if !plain {
            invalid("it continues past the expression");
        }
        let target = (*(*select.targetList).elements).ptr_value as *mut pg_sys::ResTarget;
        if !(*target).name.is_null() {
            invalid("it continues past the expression");
        }
    }
}

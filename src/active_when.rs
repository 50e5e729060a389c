//! Validation of `active_when`, the boolean filter over the assignments table.
//!
//! The expression is pasted into the run's SQL, which runs as the extension
//! owner. So before it is stored it must be shown to be exactly one expression
//! (no way to close the parenthesis and append a statement), to refer only to
//! the assignments table, to be deterministic (no volatile, aggregate or window
//! function), and, unless a superuser registers it, to call only built-in
//! functions: a user-defined function would run with the owner's rights.
//!
//! The expression is resolved with `search_path = pg_catalog, pg_temp`, here and
//! in every run; functions of other schemas must be schema-qualified.

use crate::errors::raise;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use std::ffi::CString;

const CHECK_VIEW: &str = "pg_temp.followup_active_when_check";

pub fn validate(client: &mut SpiClient<'_>, relid: pg_sys::Oid, table: &str, expression: &str) {
    require_single_expression(expression);
    require_deterministic_boolean(client, table, expression);
    let caller_is_superuser = unsafe { pg_sys::superuser_arg(pg_sys::GetOuterUserId()) };
    if !caller_is_superuser {
        require_builtin_functions_only(client, relid, table, expression);
        require_evaluable_by_caller(client, table, expression);
    }
}

/// The run evaluates active_when with the extension owner's rights. Even a
/// built-in function can need more than the registering role has
/// (`current_setting('data_directory')`, for one): so evaluate it now as
/// that role, on every row of the table and on a row of NULLs, and refuse
/// what it may not do.
fn require_evaluable_by_caller(client: &mut SpiClient<'_>, table: &str, expression: &str) {
    let sql = format!(
        "SELECT pg_catalog.count(({expression}))
           FROM {table} FULL JOIN (VALUES (1)) AS followup_null_row (x) ON false"
    );
    let (owner, context) = unsafe {
        let mut owner = pg_sys::InvalidOid;
        let mut context = 0;
        pg_sys::GetUserIdAndSecContext(&mut owner, &mut context);
        (owner, context)
    };
    let caller = unsafe { pg_sys::GetOuterUserId() };
    unsafe { pg_sys::SetUserIdAndSecContext(caller, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32) };
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        client.select(sql.as_str(), None, &[]).map(|_| ()).map_err(|e| e.to_string())
    }))
    .catch_others(|caught| match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => Err(report.message().to_string()),
        other => other.rethrow(),
    })
    .execute();
    unsafe { pg_sys::SetUserIdAndSecContext(owner, context) };
    if let Err(message) = outcome {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("active_when must be something the registering role may evaluate itself: {message}"),
        );
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
        raise(ERRCODE_INTERNAL_ERROR, "could not analyze active_when");
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

/// A user-defined function in active_when would run with the extension
/// owner's rights during every run: only a superuser may register one.
/// Built-in objects are pinned and leave no pg_depend rows, so any function or
/// operator a view over the expression depends on is a user-defined one.
fn require_builtin_functions_only(client: &mut SpiClient<'_>, relid: pg_sys::Oid, table: &str, expression: &str) {
    let create = format!("CREATE TEMP VIEW followup_active_when_check AS SELECT ({expression}) AS active FROM {table}");
    client.update(create.as_str(), None, &[]).unwrap_or_else(|e| raise(ERRCODE_INTERNAL_ERROR, e.to_string()));
    let user_defined: Option<String> = client
        .select(
            "SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0), ', ')
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                           AND d.objid = r.oid
              WHERE r.ev_class = $1::pg_catalog.regclass
                AND (d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                                      'pg_catalog.pg_operator'::pg_catalog.regclass)
                     OR (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND d.refobjid NOT IN ($1::pg_catalog.regclass, $2)))",
            None,
            &[CHECK_VIEW.into(), relid.into()],
        )
        .ok()
        .and_then(|t| t.first().get_one::<String>().ok().flatten());
    client.update("DROP VIEW pg_temp.followup_active_when_check", None, &[]).ok();
    if let Some(objects) = user_defined {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("only a superuser may use {objects} in active_when; built-in functions and operators are allowed"),
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

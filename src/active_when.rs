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
use pgrx::PgSqlErrorCode::*;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::ffi::CString;

const CHECK_VIEW: &str = "pg_temp.followup_active_when_check";

pub fn validate(client: &mut SpiClient<'_>, relid: pg_sys::Oid, table: &str, expression: &str) {
    require_single_expression(expression);

    let create = format!("CREATE TEMP VIEW followup_active_when_check AS SELECT ({expression}) AS active FROM {table}");
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        client.update(create.as_str(), None, &[]).ok();
    }))
    .catch_others(|caught| match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => raise(
            report.sql_error_code(),
            format!("invalid active_when expression: {}", report.message()),
        ),
        other => other.rethrow(),
    })
    .execute();

    let result_type = client
        .select(
            "SELECT pg_catalog.format_type(atttypid, NULL) FROM pg_catalog.pg_attribute
              WHERE attrelid = $1::pg_catalog.regclass AND attname = 'active'",
            None,
            &[CHECK_VIEW.into()],
        )
        .ok()
        .and_then(|t| t.first().get_one::<String>().ok().flatten())
        .unwrap_or_default();
    if result_type != "boolean" {
        raise(ERRCODE_DATATYPE_MISMATCH, format!("active_when must be a boolean expression, but it is of type {result_type}"));
    }

    let caller_is_superuser = unsafe { pg_sys::superuser_arg(pg_sys::GetOuterUserId()) };
    let problems: Vec<(String, String, String, String, String)> = client
        .select(
            "WITH deps AS (
                 SELECT d.refclassid, d.refobjid
                   FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                               AND d.objid = r.oid
                  WHERE r.ev_class = $1::pg_catalog.regclass),
             functions AS (
                 SELECT refobjid AS fn FROM deps WHERE refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                 UNION
                 SELECT o.oprcode::pg_catalog.oid FROM deps
                   JOIN pg_catalog.pg_operator o ON o.oid = deps.refobjid
                  WHERE deps.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass)
             SELECT 'function', p.oid::pg_catalog.regprocedure::text, p.provolatile::text, p.prokind::text,
                    n.nspname::text
               FROM functions f
               JOIN pg_catalog.pg_proc p ON p.oid = f.fn
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             UNION ALL
             SELECT DISTINCT 'relation', d.refobjid::pg_catalog.regclass::text, '', '', ''
               FROM deps d
              WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.refobjid NOT IN ($1::pg_catalog.regclass, $2)",
            None,
            &[CHECK_VIEW.into(), relid.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                Some((r.get(1).ok()??, r.get(2).ok()??, r.get(3).ok()??, r.get(4).ok()??, r.get(5).ok()??))
            })
            .collect()
        })
        .unwrap_or_default();
    for (kind, object, volatility, prokind, schema) in problems {
        if kind == "relation" {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("active_when may only refer to columns of {table}, but it reads {object}"),
            );
        }
        if prokind == "a" || prokind == "w" {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("active_when cannot use aggregate or window function {object}"),
            );
        }
        if volatility == "v" {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("active_when cannot call volatile function {object}: a run must decide the same way each time"),
            );
        }
        if schema != "pg_catalog" && !caller_is_superuser {
            raise(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("only a superuser may use function {object} in active_when; built-in functions are allowed"),
            );
        }
    }
    client.update("DROP VIEW pg_temp.followup_active_when_check", None, &[]).ok();
}

/// `SELECT (<expression>)` must parse as one plain SELECT with one target and
/// nothing else, which proves the text is a single, balanced expression.
fn require_single_expression(expression: &str) {
    let invalid = |why: &str| -> ! {
        raise(ERRCODE_SYNTAX_ERROR, format!("active_when must be a single SQL expression: {why}"))
    };
    let Ok(sql) = CString::new(format!("SELECT ({expression})")) else { invalid("it contains a NUL byte") };
    let statements = PgTryBuilder::new(|| unsafe {
        pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)
    })
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

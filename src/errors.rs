//! Raising errors with a SQLSTATE, a message and optionally a hint, and
//! catching them in a subtransaction.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR; the surrounding statement (and so every change it made) is rolled back.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "pg_followup").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub fn raise_with_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "pg_followup").set_hint(hint.into()).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// An error that means a bug or a broken installation, not bad input.
pub fn internal(message: impl Into<String>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message)
}

/// Unwraps a required argument, raising `null_value_not_allowed` naming it.
pub fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"))
    })
}

/// An error caught by `in_subtransaction`: its SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: PgSqlErrorCode,
    pub message: String,
}

impl Failure {
    /// SQLSTATE class 22, data exception: a value that cannot be converted,
    /// compared or computed (division by zero, a bad cast, an infinite
    /// date in arithmetic).
    pub fn is_data_exception(&self) -> bool {
        self.sqlstate().starts_with("22")
    }

    /// The five-character SQLSTATE.
    pub fn sqlstate(&self) -> String {
        let code = self.code as i32;
        (0..5).map(|i| ((((code >> (6 * i)) & 0x3F) + b'0' as i32) as u8) as char).collect()
    }
}

/// Runs `body` in an internal subtransaction, the way PL/pgSQL runs a block
/// with an EXCEPTION clause: on error the subtransaction is rolled back and
/// the error returned; the outer transaction stays usable.
pub fn in_subtransaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, Failure> {
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let result = PgTryBuilder::new(|| Ok(body()))
            .catch_others(|caught| match caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                    Err(Failure { code: report.sql_error_code(), message: report.message().to_string() })
                }
                CaughtError::RustPanic { ereport, .. } => {
                    Err(Failure { code: ereport.sql_error_code(), message: ereport.message().to_string() })
                }
            })
            .execute();
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(memory_context);
        pg_sys::CurrentResourceOwner = resource_owner;
        result
    }
}

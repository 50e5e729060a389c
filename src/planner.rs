//! Planner settings that the extension's own statements run under, whatever
//! the server's configuration.
//!
//! `with_settings` works like a function's `SET` clause: the values hold while
//! `f` runs (so for the planning and the execution of the statements inside)
//! and the previous ones are restored afterwards; on error the enclosing
//! (sub)transaction's abort restores them.
//!
//! Why JIT is off for the run, for bulk tracking statements and for claims:
//! all are short, simple scans and joins whose estimated cost clears `jit_above_cost`
//! (and, for the run, `jit_inline_above_cost` and `jit_optimize_above_cost`)
//! long before JIT compilation pays for itself. On a server with the default
//! `jit = on`, a same-day rerun over 10,000 assignments spent about 0.5 s
//! compiling a statement that executes in 20 ms, and a digest of 50
//! recipients 1.5 s of its 1.6 s. The README's Performance
//! section has the measurements.

use pgrx::pg_sys;
use std::ffi::CStr;

/// `jit = off`: every statement of the extension that can plan above
/// `jit_above_cost`.
pub const NO_JIT: (&CStr, &CStr) = (c"jit", c"off");

/// Runs `f` with JIT off (see above).
pub fn without_jit<T>(f: impl FnOnce() -> T) -> T {
    with_settings(&[NO_JIT], f)
}

/// Runs `f` with each (name, value) of `settings` set for its duration.
pub fn with_settings<T>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> T) -> T {
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{with_settings, NO_JIT};
    use pgrx::prelude::*;

    fn jit() -> String {
        Spi::get_one::<String>("SELECT current_setting('jit')").unwrap().unwrap()
    }

    #[pg_test]
    fn settings_hold_inside_and_are_restored_after() {
        Spi::run("SET jit = on").unwrap();
        let inside = with_settings(&[NO_JIT, (c"enable_mergejoin", c"off")], || {
            (jit(), Spi::get_one::<String>("SELECT current_setting('enable_mergejoin')").unwrap().unwrap())
        });
        assert_eq!(inside, ("off".to_string(), "off".to_string()));
        assert_eq!(jit(), "on");
        assert_eq!(Spi::get_one::<String>("SELECT current_setting('enable_mergejoin')").unwrap().unwrap(), "on");
    }
}

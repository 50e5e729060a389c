//! Prepared plans kept per backend for the extension's hottest statements
//! (the tracking triggers, claims), and when to drop them.
//!
//! The SQL of these statements is generated from the registrations, so a
//! plan must go when a registration changes or a table it was built from
//! changes. A relcache invalidation of any watched relation (or of all
//! relations) bumps the backend's `generation`; a cache that was filled at an
//! older generation retires its plans and builds them again. Retired plans
//! are freed once no plan of ours is executing (a trigger can fire inside a
//! statement of ours).

use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::CString;

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Relations whose invalidation makes the cached plans stale.
    static WATCHED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
    /// Retired plans, freed once no plan of ours is executing.
    static RETIRED: RefCell<Vec<pg_sys::SPIPlanPtr>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static EXECUTING: Cell<u32> = const { Cell::new(0) };
}

/// Relcache invalidation callback: must not error, allocate much or touch catalogs.
#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let affected = relid == pg_sys::InvalidOid || WATCHED.with(|w| w.borrow().contains(&relid));
    if affected {
        bump();
    }
}

fn bump() {
    GENERATION.set(GENERATION.get() + 1);
    WATCHED.with(|w| w.borrow_mut().clear());
}

/// The current generation; plans built at an older one are stale. Also frees
/// retired plans when that is safe.
pub fn generation() -> u64 {
    if !CALLBACK_REGISTERED.get() {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    if EXECUTING.get() == 0 {
        let retired: Vec<_> = RETIRED.with(|r| std::mem::take(&mut *r.borrow_mut()));
        for plan in retired {
            unsafe { pg_sys::SPI_freeplan(plan) };
        }
    }
    GENERATION.get()
}

/// Plans built now depend on these relations.
pub fn watch(relids: impl IntoIterator<Item = pg_sys::Oid>) {
    WATCHED.with(|w| w.borrow_mut().extend(relids));
}

/// The registration tables: every plan built from the registrations watches them.
pub fn registration_tables() -> Vec<pg_sys::Oid> {
    ["followup.activity_tables", "followup.assignment_tables"]
        .into_iter()
        .filter_map(|name| {
            crate::query::select_one::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", &[name.into()])
        })
        .collect()
}

/// A plan no longer to be used, freed later.
pub fn retire(plan: pg_sys::SPIPlanPtr) {
    RETIRED.with(|r| r.borrow_mut().push(plan));
}

/// Called by every registration change: this backend's plans are stale at
/// once, and other backends drop theirs when they process the invalidation
/// of the registration table.
pub fn invalidate_registrations() {
    bump();
    if let Some(relid) = registration_tables().first() {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(*relid) };
    }
}

/// Prepares `sql` with parameters of `types` and keeps the plan.
pub fn prepare_kept(sql: &str, types: &mut [pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let sql = CString::new(sql).expect("generated SQL contains no NUL");
    let plan = unsafe { pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr()) };
    if plan.is_null() {
        error!("pg_followup: could not prepare a statement (SPI error {})", unsafe { pg_sys::SPI_result });
    }
    unsafe { pg_sys::SPI_keepplan(plan) };
    plan
}

/// Held while a kept plan executes, so that it is not freed under itself.
pub struct Executing;

impl Executing {
    pub fn enter() -> Executing {
        EXECUTING.set(EXECUTING.get() + 1);
        Executing
    }
}

impl Drop for Executing {
    fn drop(&mut self) {
        EXECUTING.set(EXECUTING.get() - 1);
    }
}

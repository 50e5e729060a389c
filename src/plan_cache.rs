//! Prepared plans kept per backend for the extension's hottest statements
//! (the tracking triggers in triggers.rs; claims, digests and explain's
//! statements through `with_kept`), and when to drop them: the one place
//! that decides.
//!
//! The SQL of these statements is generated from the registrations, so a
//! plan must go when a registration changes or a table it was built from
//! changes. A relcache invalidation of any watched relation (or of all
//! relations) bumps the backend's `generation`; a cache that was filled at an
//! older generation retires its plans (`retire`, `retire_statement`) and
//! builds them again. Retired plans are freed once no plan of ours is
//! executing (a trigger can fire inside a statement of ours).

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Relations whose invalidation makes the cached plans stale.
    static WATCHED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
    /// Retired plans, freed once no plan of ours is executing.
    static RETIRED: RefCell<Vec<Retired>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static EXECUTING: Cell<u32> = const { Cell::new(0) };
    /// Statements kept by `with_kept`, by their key.
    static KEPT: RefCell<HashMap<String, Kept>> = RefCell::new(HashMap::new());
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
            match plan {
                Retired::Plan(plan) => unsafe {
                    pg_sys::SPI_freeplan(plan);
                },
                // freed by its Drop
                Retired::Statement(statement) => drop(statement),
            }
        }
    }
    GENERATION.get()
}

/// A plan no longer to be used, waiting to be freed.
enum Retired {
    /// One kept with `prepare_kept` (triggers.rs).
    Plan(pg_sys::SPIPlanPtr),
    /// One kept through pgrx's client API (`with_kept`).
    Statement(OwnedPreparedStatement),
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
    RETIRED.with(|r| r.borrow_mut().push(Retired::Plan(plan)));
}

/// A kept statement no longer to be used, freed later.
fn retire_statement(statement: OwnedPreparedStatement) {
    RETIRED.with(|r| r.borrow_mut().push(Retired::Statement(statement)));
}

/// What a statement kept by `with_kept` is built from.
pub struct Statement {
    pub sql: String,
    pub types: Vec<PgOid>,
    /// The app table's owner it runs as (security.rs); None when it reads
    /// only the extension's tables.
    pub owner: Option<pg_sys::Oid>,
    /// The app tables it reads, besides the registrations.
    pub reads: Vec<pg_sys::Oid>,
}

/// A statement kept per backend: the generation it was built at, the plan,
/// its text and the owner it runs as.
struct Kept {
    generation: u64,
    statement: OwnedPreparedStatement,
    sql: String,
    owner: Option<pg_sys::Oid>,
}

/// Runs `f` with the statement kept under `key`, building it with `build`
/// and preparing it first when there is none or the registrations (or the
/// tables it reads) changed since. It is prepared and executed as its
/// owner (security.rs), so that a re-planning inside PostgreSQL's plan
/// cache analyses it the same way. Saves the planning of a statement that
/// is generated once per registration but run many times (claims, explain).
pub fn with_kept<R>(
    client: &mut SpiClient<'_>,
    key: &str,
    build: impl FnOnce(&mut SpiClient<'_>) -> Statement,
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    let generation = generation();
    let stale: Vec<Kept> = KEPT.with(|k| {
        let mut kept = k.borrow_mut();
        let keys: Vec<String> =
            kept.iter().filter(|(_, s)| s.generation != generation).map(|(k, _)| k.clone()).collect();
        keys.into_iter().filter_map(|key| kept.remove(&key)).collect()
    });
    for kept in stale {
        retire_statement(kept.statement);
    }
    if !KEPT.with(|k| k.borrow().contains_key(key)) {
        let Statement { sql, types, owner, reads } = build(client);
        let prepare = |client: &mut SpiClient<'_>| {
            client.prepare_mut(sql.as_str(), &types).unwrap_or_else(|e| crate::errors::internal(e.to_string())).keep()
        };
        let statement = match owner {
            Some(owner) => crate::security::as_owner_statement(owner, &sql, || prepare(client)),
            None => prepare(client),
        };
        let mut watched = registration_tables();
        watched.extend(reads);
        watch(watched);
        KEPT.with(|k| k.borrow_mut().insert(key.to_owned(), Kept { generation, statement, sql, owner }));
    }
    KEPT.with(|k| {
        let kept = k.borrow();
        let kept = kept.get(key).expect("prepared above");
        let _executing = Executing::enter();
        match kept.owner {
            Some(owner) => crate::security::as_owner_statement(owner, &kept.sql, || f(client, &kept.statement)),
            None => f(client, &kept.statement),
        }
    })
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
        crate::errors::internal(format!("could not prepare a statement (SPI error {})", unsafe { pg_sys::SPI_result }));
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

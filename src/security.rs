//! Who our statements on the app's tables run as (README, "Roles and
//! privileges"; ARCHITECTURE.md, "Security model").
//!
//! Every statement of ours that reads or writes an app table (tracking, the
//! run, claims, preview, explain, corrections, verify and repair, back-fills)
//! goes through `as_table_owner`: it runs as the owner of the registered
//! assignments table, in a security-restricted operation, the way
//! PostgreSQL's own REFRESH MATERIALIZED VIEW and VACUUM run code that comes
//! with a table (since CVE-2022-1552). Whatever that owner attached to its
//! tables (triggers, rules, CHECK constraints, generated columns, index
//! expressions, casts, operators, domains, row-level security) therefore
//! runs with the owner's rights and never with ours, and cannot change
//! session state (SET ROLE, temporary objects) while it does.
//!
//! Our own tables in such a statement (the outbox, policies, snoozes,
//! corrections) are reached the way a view reaches its base tables: their
//! permissions are checked as the extension's owner (`checkAsUser` of
//! their range-table entries), so the app's owner is granted nothing on
//! `followup.*`. Only the relations named in the text of the one statement
//! we are about to execute get that: `statement` arms it by its text, the
//! post-parse-analysis hook below marks the relations of our schema in its
//! parse tree (before rules are applied, so a rule of the owner's that
//! names our tables is checked as the owner, like every rule), and the
//! executor-start hook disarms it at the first executor start with that
//! text, which comes after all of the statement's analysis and planning.
//! Statements that code of the owner's runs while ours executes are parsed
//! and checked on their own, as the owner.
//!
//! Besides: row-level security is off inside (a statement that a policy
//! would filter fails instead of running the policy's code as the owner),
//! and the search path is pinned to `pg_catalog, pg_temp`.
//!
//! The locks that decide who runs and who gets a recipient's digest are
//! taken here too: locks on the extension object itself, which no SQL
//! function can take, so an ordinary role cannot hold them to stop runs.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};

/// The statement whose own relations are checked as the extension owner at
/// its executor start, with what that needs.
struct Armed {
    sql: CString,
    followup_schema: pg_sys::Oid,
    extension_owner: pg_sys::Oid,
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
    /// The extension's schema and owner, looked up once per backend.
    static EXTENSION: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

static mut PREVIOUS_POST_PARSE_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;
static mut PREVIOUS_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

/// Installs the hooks (`_PG_init`, in every backend that loads the library).
pub fn init() {
    unsafe {
        PREVIOUS_POST_PARSE_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(post_parse_analyze);
        PREVIOUS_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

/// Is `text` the armed statement's?
unsafe fn is_armed(text: *const std::ffi::c_char) -> bool {
    !text.is_null() && ARMED.with(|a| a.borrow().as_ref().is_some_and(|s| s.sql.as_c_str() == CStr::from_ptr(text)))
}

#[pg_guard]
unsafe extern "C-unwind" fn post_parse_analyze(
    parse_state: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jumble: *mut pg_sys::JumbleState,
) {
    if let Some(previous) = PREVIOUS_POST_PARSE_ANALYZE {
        previous(parse_state, query, jumble);
    }
    if !parse_state.is_null() && is_armed((*parse_state).p_sourcetext) {
        let marks =
            ARMED.with(|a| a.borrow().as_ref().map(|s| Marks { schema: s.followup_schema, owner: s.extension_owner }));
        if let Some(mut marks) = marks {
            mark_query(query, &mut marks);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    // Everything of the armed statement was analyzed and planned before its
    // first executor start: from here on, nothing more is ours.
    if is_armed((*query_desc).sourceText) {
        ARMED.with(|a| a.borrow_mut().take());
    }
    match PREVIOUS_EXECUTOR_START {
        Some(previous) => previous(query_desc, eflags),
        None => pg_sys::standard_ExecutorStart(query_desc, eflags),
    }
}

/// What `mark_query` sets: relations of `schema` are checked as `owner`.
struct Marks {
    schema: pg_sys::Oid,
    owner: pg_sys::Oid,
}

/// Marks the relations of our schema in `query` and in every query nested
/// in it (subqueries, CTEs, sublinks).
unsafe fn mark_query(query: *mut pg_sys::Query, marks: &mut Marks) {
    mark_relations(query, marks);
    pg_sys::query_tree_walker(query, Some(mark_walker), marks as *mut Marks as *mut std::ffi::c_void, 0);
}

#[pg_guard]
unsafe extern "C-unwind" fn mark_walker(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    let marks = &mut *(context as *mut Marks);
    if (*node).type_ == pg_sys::NodeTag::T_Query {
        mark_query(node as *mut pg_sys::Query, marks);
        return false;
    }
    pg_sys::expression_tree_walker(node, Some(mark_walker), context)
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
unsafe fn mark_relations(query: *mut pg_sys::Query, marks: &Marks) {
    let rtable = (*query).rtable;
    if rtable.is_null() {
        return;
    }
    for i in 0..(*rtable).length as usize {
        let rte = (*(*rtable).elements.add(i)).ptr_value as *mut pg_sys::RangeTblEntry;
        if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && pg_sys::get_rel_namespace((*rte).relid) == marks.schema {
            (*rte).checkAsUser = marks.owner;
        }
    }
}

#[cfg(any(feature = "pg16", feature = "pg17"))]
unsafe fn mark_relations(query: *mut pg_sys::Query, marks: &Marks) {
    let infos = (*query).rteperminfos;
    if infos.is_null() {
        return;
    }
    for i in 0..(*infos).length as usize {
        let info = (*(*infos).elements.add(i)).ptr_value as *mut pg_sys::RTEPermissionInfo;
        if pg_sys::get_rel_namespace((*info).relid) == marks.schema {
            (*info).checkAsUser = marks.owner;
        }
    }
}

/// The extension's schema and owner.
fn extension() -> (pg_sys::Oid, pg_sys::Oid) {
    if let Some(found) = EXTENSION.get() {
        return found;
    }
    let found = crate::query::select_one::<pgrx::datum::JsonB>(
        "SELECT pg_catalog.jsonb_build_array(e.extnamespace::pg_catalog.int8, e.extowner::pg_catalog.int8)
           FROM pg_catalog.pg_extension AS e WHERE e.extname = 'pg_followup'",
        &[],
    )
    .and_then(|j| {
        let pair = j.0.as_array()?.iter().map(|v| v.as_u64()).collect::<Option<Vec<u64>>>()?;
        Some((pg_sys::Oid::from(pair[0] as u32), pg_sys::Oid::from(pair[1] as u32)))
    })
    .unwrap_or_else(|| crate::errors::internal("pg_followup is not installed in this database"));
    EXTENSION.set(Some(found));
    found
}

/// The role a statement of ours acts for: the role that called us, even
/// from inside a SECURITY DEFINER function (`SET ROLE` changes it,
/// SECURITY DEFINER does not). Audit columns record it.
pub fn acting_role() -> pg_sys::Oid {
    unsafe { pg_sys::GetOuterUserId() }
}

/// `followup._acting_role()`: the name of `acting_role`, for the audit
/// columns of SQL functions.
#[pg_extern(sql = false)]
fn _acting_role() -> String {
    role_name(acting_role())
}

pub fn role_name(role: pg_sys::Oid) -> String {
    crate::query::select_one::<String>(
        "SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid = $1",
        &[role.into()],
    )
    .unwrap_or_else(|| format!("role {}", role.to_u32()))
}

/// Restores the user and security context however the closure ends (an
/// error unwinds through Drop); a (sub)transaction abort would restore
/// them too, but not an error caught without one.
struct Restore {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
        ARMED.with(|a| a.borrow_mut().take());
    }
}

/// Runs `f` as `owner` in a security-restricted operation, with row-level
/// security off and the search path pinned. Inside, run each statement on
/// the app's tables through `statement`.
pub fn as_table_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    extension(); // looked up as ourselves, before the switch
    let (user, context) = unsafe {
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        (user, context)
    };
    let _restore = Restore { user, context };
    unsafe {
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
    }
    crate::planner::with_settings(&[(c"row_security", c"off"), (c"search_path", c"pg_catalog, pg_temp")], f)
}

/// Runs `f`, which executes the statement `sql` (exactly this text, as a
/// one-off or a prepared plan): the relations of our schema in it are
/// checked as the extension owner. Call inside `as_table_owner`.
pub fn statement<R>(sql: &str, f: impl FnOnce() -> R) -> R {
    let (followup_schema, extension_owner) = extension();
    let sql = CString::new(sql).expect("generated SQL contains no NUL");
    ARMED.with(|a| *a.borrow_mut() = Some(Armed { sql, followup_schema, extension_owner }));
    let result = f();
    ARMED.with(|a| a.borrow_mut().take());
    result
}

/// Both: one statement `sql` run by `f` as `owner`.
pub fn as_owner_statement<R>(owner: pg_sys::Oid, sql: &str, f: impl FnOnce() -> R) -> R {
    as_table_owner(owner, || statement(sql, f))
}

/// The locks of the extension: object locks on the pg_followup extension
/// object with a sub-id of ours. PostgreSQL takes object locks on an
/// extension only with sub-id 0 (ALTER / DROP EXTENSION), and no SQL
/// function takes object locks at all, so no role can take or hold these:
/// unlike advisory locks, which any role can take with the same key
/// (pg_locks shows them as locktype `object`, classid `pg_extension`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Held by the one run in progress (a session lock across the run's
    /// transactions).
    Run,
    /// Held by the one scheduler of the database (a session lock).
    Scheduler,
    /// A recipient of a digest, for the claiming transaction: the hash of
    /// the recipient, per role.
    Recipient { role_index: u16, hash: u32 },
}

impl Lock {
    pub const RUN_SUBID: u16 = 1;
    pub const SCHEDULER_SUBID: u16 = 2;

    fn tag(self) -> pg_sys::LOCKTAG {
        let extension = extension_oid();
        let (classid, objid, subid) = match self {
            Lock::Run => (pg_sys::ExtensionRelationId, extension, Lock::RUN_SUBID),
            Lock::Scheduler => (pg_sys::ExtensionRelationId, extension, Lock::SCHEDULER_SUBID),
            // a class of its own (the outbox's OID is no catalog), so these
            // never meet a real object lock
            Lock::Recipient { role_index, hash } => (outbox_oid(), pg_sys::Oid::from(hash), role_index),
        };
        pg_sys::LOCKTAG {
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: classid.to_u32(),
            locktag_field3: objid.to_u32(),
            locktag_field4: subid,
            locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        }
    }

    /// Takes the lock without waiting; false when another process holds it.
    /// A session lock lasts until `release` or the end of the process; a
    /// transaction lock until the transaction ends.
    pub fn try_acquire(self, session: bool) -> bool {
        let tag = self.tag();
        let result = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, session, true) };
        result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }

    /// Releases a session lock taken by `try_acquire(true)`.
    pub fn release(self) {
        let tag = self.tag();
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true) };
    }
}

fn extension_oid() -> pg_sys::Oid {
    unsafe { pg_sys::get_extension_oid(c"pg_followup".as_ptr(), false) }
}

fn outbox_oid() -> pg_sys::Oid {
    let schema = extension().0;
    unsafe { pg_sys::get_relname_relid(c"outbox".as_ptr(), schema) }
}

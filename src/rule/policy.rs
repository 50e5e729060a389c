//! The effective policy of an organization: its own row of
//! `followup.policies`, else the default row `'*'` (README, "Policies and
//! the reminder rule"); and the arguments of its send window for the
//! window arithmetic in sql/windows.sql.
//!
//! One definition, in the shape of a join so that a run over a million
//! assignments reads each policy once: `Policy::join_sql` joins the two
//! candidate rows, `Policy::value` reads a setting of the effective one. The
//! run and explain join by the assignment's organization, a claim by the
//! message's organization at enqueue (for its window) and by the
//! assignment's (for `enabled`); `followup._opens_at` (fail) by a message's.

use pgrx::prelude::*;

/// Aliases under which `join_sql` joins the organization's own row and the
/// default row; two joins in one statement need two pairs.
#[derive(Clone, Copy)]
pub struct Policy {
    pub own: &'static str,
    pub default: &'static str,
}

impl Policy {
    /// The usual aliases, `own` and `dflt`.
    pub const EFFECTIVE: Policy = Policy { own: "own", default: "dflt" };

    /// SQL joining the candidate policy rows of an organization (the
    /// expression `organization`). Each row also carries `opens_at`: when
    /// its send window next opens from the instant `at` (`at` itself while
    /// it is open or when there is none). The OFFSET 0 fences keep that
    /// computed once per policy, not once per joined row.
    pub fn join_sql(&self, organization: &str, at: &str) -> String {
        let with_opening = format!(
            "SELECT p.*, followup._next_opening({at}, {window}) AS opens_at
                              FROM followup.policies AS p",
            window = window_of("p")
        );
        format!(
            "CROSS JOIN ({with_opening} WHERE p.organization = '*' OFFSET 0) AS {default}
             LEFT JOIN ({with_opening} WHERE p.organization <> '*' OFFSET 0) AS {own}
                    ON {own}.organization = {organization}",
            own = self.own,
            default = self.default,
        )
    }

    /// SQL: a column of the effective policy joined by `join_sql`: the
    /// organization's row when it has one, else the default row.
    pub fn value(&self, column: &str) -> String {
        format!(
            "CASE WHEN {own}.organization IS NULL THEN {default}.{column} ELSE {own}.{column} END",
            own = self.own,
            default = self.default
        )
    }

    /// SQL: the organization of the effective policy row (`'*'` for the
    /// default), to look the row up by.
    pub fn organization(&self) -> String {
        format!("coalesce({own}.organization, '*')", own = self.own)
    }
}

/// SQL: the window arguments of the policy row `policy` for sql/windows.sql's
/// `_in_window(at, …)` and `_next_opening(at, …)`: its zone (its own, else
/// followup.timezone) and its bounds.
pub fn window_of(policy: &str) -> String {
    format!("followup._policy_zone({policy}.timezone), {policy}.send_from, {policy}.send_until")
}

/// `followup._opens_at(organization, at)`: when a message of
/// `organization` may be handed out at the earliest from `at`, by its
/// effective policy's window (`fail` defers a retry with it).
#[pg_extern(sql = false)]
fn _opens_at(organization: Option<&str>, at: pgrx::datum::TimestampWithTimeZone) -> pgrx::datum::TimestampWithTimeZone {
    let policy = Policy::EFFECTIVE;
    let sql = format!(
        "SELECT {opens_at} FROM (SELECT $1::pg_catalog.text AS organization) AS m {join}",
        opens_at = policy.value("opens_at"),
        join = policy.join_sql("m.organization", "$2::pg_catalog.timestamptz"),
    );
    crate::query::select_one(&sql, &[organization.into(), at.into()])
        .unwrap_or_else(|| crate::errors::internal("the default policy '*' is missing"))
}

//! The effective policy of an organization: its own row of
//! `followup.policies`, else the default row `'*'` (README, "Policies and
//! the reminder rule"); and the arguments of its send window.
//!
//! One definition, in the shape of a join so that a run over a million
//! assignments reads each policy once: `Policy::join_sql` joins the two
//! candidate rows, `Policy::value` reads a setting of the effective one. The
//! run and explain join by the assignment's organization, a claim by the
//! assignment's (for `enabled`), calendar.rs by a message's organization
//! (for its window, weekdays and zone).

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
    /// expression `organization`). The OFFSET 0 fences keep each read
    /// once per statement, not once per joined row.
    pub fn join_sql(&self, organization: &str) -> String {
        format!(
            "CROSS JOIN (SELECT p.* FROM followup.policies AS p WHERE p.organization = '*' OFFSET 0) AS {default}
             LEFT JOIN (SELECT p.* FROM followup.policies AS p WHERE p.organization <> '*' OFFSET 0) AS {own}
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

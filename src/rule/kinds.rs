//! The kinds of message a run enqueues, as data.
//!
//! A kind says who receives the message, how it is numbered within a cycle
//! and when it is due, as SQL over one row `s` of the assignments scan
//! (run/due.rs: the assignment's columns, its `age` in days since the cycle
//! start on the day in question, and its effective policy). The run turns
//! every kind that applies into one branch of its scan; explain asks the
//! same kinds what is due, when the next one is, and why not (`reached`,
//! `within_limit`, `recipient`). A new kind is a new value here and in
//! `ALL`, plus its label in the `followup.message_kind` type.

use crate::registry::AssignmentTable;

pub struct MessageKind {
    /// Label of `followup.message_kind`.
    pub kind: &'static str,
    /// Label of `followup.recipient_role`.
    pub recipient_role: &'static str,
    /// The scan column holding the recipient (NULL: nobody to send it to).
    pub recipient: &'static str,
    /// The message's sequence number within its cycle.
    pub sequence: &'static str,
    /// The cycle has gone on long enough for a message of this kind.
    pub reached: &'static str,
    /// A limit on the sequence, if the kind has one; may use `{sequence}`.
    pub within_limit: Option<&'static str>,
    /// Needs a coordinator column and a policy that escalates.
    pub escalation: bool,
}

/// To the mentor, `remind_after_days` after the cycle start, then every
/// `repeat_every_days` (sequence 2, 3, …), at most `max_reminders`.
pub const REMINDER: MessageKind = MessageKind {
    kind: "reminder",
    recipient_role: "mentor",
    recipient: "s.mentor",
    sequence: "CASE WHEN s.repeat_every IS NULL THEN 1 ELSE 1 + (s.age - s.remind_after) / s.repeat_every END",
    reached: "s.age >= s.remind_after",
    within_limit: Some("s.max_reminders IS NULL OR {sequence} <= s.max_reminders"),
    escalation: false,
};

/// To the coordinator, once per cycle, `escalate_after_days` after its start.
pub const ESCALATION: MessageKind = MessageKind {
    kind: "escalation",
    recipient_role: "coordinator",
    recipient: "s.coordinator",
    sequence: "1",
    reached: "s.age >= s.escalate_after",
    within_limit: None,
    escalation: true,
};

pub const ALL: [&MessageKind; 2] = [&REMINDER, &ESCALATION];

impl MessageKind {
    /// Does a run scan for this kind? An escalation needs a registered
    /// coordinator column and an enabled policy that escalates.
    pub fn applies(&self, assignments: &AssignmentTable, any_policy_escalates: bool) -> bool {
        !self.escalation || (any_policy_escalates && assignments.coordinator_column.is_some())
    }

    /// SQL: within the kind's limit (true when it has none), the sequence
    /// filled in.
    pub fn within_limit_sql(&self) -> String {
        self.within_limit.map(|limit| limit.replace("{sequence}", self.sequence)).unwrap_or_else(|| "true".into())
    }

    /// SQL: when it is due, besides an enabled policy, a recipient and no
    /// open snooze: reached and within its limit.
    pub fn due_sql(&self) -> String {
        format!("{} AND ({})", self.reached, self.within_limit_sql())
    }
}

//! What is due and when: the one home of the definitions the run, the claim
//! and its digest, and explain share (README, "Policies and the reminder
//! rule"). Everything here builds SQL text and executes nothing; run/,
//! outbox.rs and explain.rs put it into their statements. A newcomer who
//! wants to change when a reminder is due starts here.
//!
//! * cycle.rs    an assignment's cycle start, and which assignments count
//!               (`active_when`)
//! * policy.rs   the effective policy of an organization (its own row, else
//!               `'*'`)
//! * snoozes.rs  which snoozes hold an assignment on a day
//! * kinds.rs    the message kinds: who receives one, its sequence, when it
//!               is due
//! * calendar.rs when a message may be handed out: its organization's
//!               calendar (window, weekdays, quiet days), its recipient's
//!               absences, a newer reminder superseding it
//!
//! Two more definitions live in SQL, because SQL callers need them too:
//! the calendar arithmetic (`sql/windows.sql`: `followup._opening`) and
//! which messages a consumer may take (`followup.claimable`,
//! `sql/outbox.sql`).

pub mod calendar;
pub mod cycle;
pub mod kinds;
pub mod policy;
pub mod snoozes;

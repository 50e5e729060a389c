#!/usr/bin/env python3
"""The checker's own tests (tests/integration/soak_checker.sh): a small,
clean history and final database, then the same with one violation of each
kind, each reported as that kind and nothing else; and the near misses the
checker must not report (a fault that explains a duplicate, a contact that
committed after the claim's snapshot, one that was undone). Standard library
only: python3 tests/soak/test_checker.py."""
import copy
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402

LEASE = 20


def request(n, t, ids, consumer="n1.1", answer=200, completed=True, claimed=None, cycle="2026-06-01", check="ok"):
    """A request to the webhook: message ids, each of assignment id == message id,
    claimed `claimed` seconds since the epoch (default 0.5 s before t)."""
    claimed = t - 0.5 if claimed is None else claimed
    return {"type": "request", "n": n, "t_recv": t, "t_done": t + 0.002, "key": f"{ids[0]}/{cycle}/reminder/1",
            "ids": ids, "digest": len(ids) > 1, "consumer": consumer, "answer": answer, "completed": completed,
            "check": check,
            "messages": [{"id": i, "assignment_id": str(i), "cycle_start": cycle, "kind": "reminder", "sequence": 1,
                          "visible_at": claimed + LEASE, "lease_id": f"lease-{n}", "claimed_by": consumer}
                         for i in ids]}


def fault(kind, t, **fields):
    return {"type": "fault", "kind": kind, "t": t, **fields}


def notifier_terminated(t, consumer):
    return fault("terminate", t, target="notifier", pid=7, application_name=consumer)


def op(kind, assignment, start, end=None, outcome="ok", **fields):
    return {"type": "op", "op": kind, "actor": "t", "assignments": [assignment], "start": start,
            "end": start + 0.05 if end is None else end, "outcome": outcome, **fields}


def message(i, status, **fields):
    m = {"message_id": i, "run_id": 1, "assignment_id": str(i), "cycle_start": "2026-06-01", "kind": "reminder",
         "sequence": 1, "recipient_role": "mentor", "recipient_id": "1001", "status": status, "attempts": 1,
         "lease_id": None, "claimed_by": None, "last_error": None, "cancel_reason": None, "enqueued_at": 10.5,
         "visible_at": 10.5, "delivered_at": None, "cancelled_at": None}
    m.update(fields)
    return m


def run(run_id, status, started, finished, pid, trigger="manual", enqueued=None, error=None):
    return {"run_id": run_id, "trigger": trigger, "status": status, "as_of": "2026-06-15",
            "reminders_enqueued": enqueued, "duplicates_suppressed": 0, "error": error, "backend_pid": pid,
            "started_at": started, "finished_at": finished}


def clean():
    """Run 1 enqueues messages 1-3; messages 1 and 2 are delivered once each;
    3 is withdrawn after its mentor logged contact."""
    history = [
        {"type": "notifier_start", "t": 0, "consumer": "n1.1", "slot": "n1", "pid": 1, "digest": False,
         "lease": LEASE, "timeout": 2.0},
        op("run_now", 0, 9.9, 11.1, run_id=1, status="succeeded", enqueued=3, as_of="2026-06-15"),
        request(1, 20.0, [1]),
        request(2, 21.0, [2]),
        op("contact", 3, 25.0, date="2026-06-10", path="direct"),
        {"type": "final_run", "t": 40, "run_id": 1, "status": "succeeded", "as_of": "2026-06-15", "preview_after": 0},
    ]
    final = {
        "outbox": [message(1, "delivered", delivered_at=20.01), message(2, "delivered", delivered_at=21.01),
                   message(3, "cancelled", cancel_reason="contact_logged", cancelled_at=30.0)],
        "runs": [run(1, "succeeded", 10.0, 11.0, 100, enqueued=3)],
        "verify": [],
        "health": {"outbox_pending": 0, "outbox_dead": 0, "last_run_status": "succeeded"},
        "alerts": [],
        "max_attempts": 10,
    }
    return history, final


def kinds(history, final):
    c = checker.Checker(history, final)
    c.check()
    return sorted({kind for kind, _ in c.violations})


class CleanHistory(unittest.TestCase):
    def test_clean_history_has_no_violation(self):
        self.assertEqual(kinds(*clean()), [])

    def test_last_line_and_exit_status(self):
        history, final = clean()
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "history.jsonl"), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in history)
            with open(os.path.join(d, "final.json"), "w") as f:
                json.dump(final, f)
            c = checker.Checker(*checker.load(d))
            c.check()
            out = io.StringIO()
            checker.summary(c, out)
        self.assertEqual(out.getvalue().splitlines()[-1], "soak: 2 deliveries, 0 faults, 0 violations")


class Duplicates(unittest.TestCase):
    @staticmethod
    def again(message, what):
        """The violations when message 1 or 2 (delivered at 20 or 21 by n1.1)
        is delivered again by n1.1 at 50, with that fault in the history."""
        history, final = clean()
        history.append(request(3, 50.0, [message], consumer="n1.1"))
        history.append(what)
        return kinds(history, final)

    def test_a_second_delivery_without_a_fault_is_a_duplicate(self):
        history, final = clean()
        history.append(request(3, 50.0, [1], consumer="n1.1"))
        self.assertEqual(kinds(history, final), ["duplicate_delivery"])

    def test_a_digest_repeating_a_delivered_message_is_a_duplicate(self):
        history, final = clean()
        history.append(request(3, 50.0, [2, 4], consumer="n1.1"))
        final["outbox"].append(message(4, "delivered", delivered_at=50.01))
        final["runs"][0]["reminders_enqueued"] = history[1]["enqueued"] = 4
        self.assertEqual(kinds(history, final), ["duplicate_delivery"])

    def test_the_notifier_killed_before_its_next_request_explains_it(self):
        self.assertEqual(self.again(1, fault("sigkill_notifier", 20.5, consumer="n1.1")), [])

    def test_a_kill_after_the_next_request_within_the_lease_explains_it(self):
        # requests go out several at once: the ack of message 1 may still be
        # pending while request 2 is under way
        self.assertEqual(self.again(1, fault("sigkill_notifier", 21.5, consumer="n1.1")), [])

    def test_a_kill_after_the_lease_ended_does_not(self):
        # the ack of message 1 was decided (committed or refused) by the end of its lease
        self.assertEqual(self.again(1, fault("sigkill_notifier", 20.0 + LEASE + 0.5, consumer="n1.1")),
                         ["duplicate_delivery"])

    def test_its_session_terminated_while_idle_before_the_post_explains_it(self):
        # the notifier learns it at the ack that follows the POST
        self.assertEqual(self.again(2, notifier_terminated(20.5, "n1.1")), [])

    def test_its_session_terminated_before_the_claim_does_not(self):
        # message 2 was posted at 21, so claimed no earlier than a lease before
        self.assertEqual(self.again(2, notifier_terminated(21.0 - LEASE - 0.5, "n1.1")), ["duplicate_delivery"])

    def test_its_claim_session_terminated_while_requests_were_under_way_explains_it(self):
        # several requests at once: the session may die after the claim and before this request
        self.assertEqual(self.again(2, notifier_terminated(19.5, "n1.1")), [])

    def test_another_notifiers_session_terminated_does_not(self):
        self.assertEqual(self.again(1, notifier_terminated(20.5, "n2.1")), ["duplicate_delivery"])

    def test_a_server_going_down_as_it_was_posted_explains_it(self):
        # the stop began before the POST and ended after it: the ack met a dying server
        self.assertEqual(self.again(1, fault("promote", 19.8, t_down=20.1)), [])

    def test_a_server_down_and_up_before_the_post_does_not(self):
        self.assertEqual(self.again(1, fault("shutdown", 19.5, t_down=19.9)), ["duplicate_delivery"])

    def test_a_server_shutdown_in_between_explains_it(self):
        self.assertEqual(self.again(1, fault("shutdown", 20.5)), [])

    def test_a_failed_request_is_no_delivery(self):
        history, final = clean()
        history.append(request(3, 19.0, [1], answer=500))
        history.append(request(4, 19.5, [1], answer=200, completed=False))
        self.assertEqual(kinds(history, final), [])


class NotDue(unittest.TestCase):
    def test_a_contact_committed_before_the_claim(self):
        # message 2 was claimed at 20.5; a contact dated after its cycle start committed by 15
        history, final = clean()
        history.append(op("contact", 2, 14.0, 15.0, date="2026-06-05", path="bulk"))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])

    def test_a_correction_committed_before_the_claim(self):
        history, final = clean()
        history.append(op("set_last_contact", 2, 14.0, 15.0, date="2026-06-05"))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])

    def test_a_failed_request_counts_too(self):
        # the claim handed it out: whatever the webhook answered
        history, final = clean()
        history.append(op("contact", 1, 5.0, 6.0, date="2026-06-05", path="direct"))
        history.append(request(3, 19.0, [1], answer=500, claimed=18.0))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])

    def test_a_contact_within_the_claims_slack_is_not(self):
        history, final = clean()
        history.append(op("contact", 2, 19.8, 20.0, date="2026-06-05", path="direct"))
        self.assertEqual(kinds(history, final), [])

    def test_its_commit_time_decides_not_its_answer(self):
        # the answer came back within the slack, the commit record was written long before
        history, final = clean()
        history.append(op("contact", 2, 14.0, 19.8, date="2026-06-05", path="direct", committed_at=15.0))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])

    def test_a_contact_whose_outcome_is_unknown_is_not(self):
        history, final = clean()
        history.append(op("contact", 2, 14.0, 15.0, outcome="unknown", date="2026-06-05", path="direct"))
        self.assertEqual(kinds(history, final), [])

    def test_an_older_contact_is_not(self):
        history, final = clean()
        history.append(op("contact", 2, 14.0, 15.0, date="2026-05-30", path="direct"))
        self.assertEqual(kinds(history, final), [])

    def test_a_contact_deleted_before_the_claim_is_not(self):
        history, final = clean()
        history.append(op("contact", 2, 14.0, 15.0, date="2026-06-05", path="direct"))
        history.append(op("activity_delete", 2, 18.0, 18.1, changed=1))
        self.assertEqual(kinds(history, final), [])

    def test_a_correction_back_below_the_contact_is_not(self):
        history, final = clean()
        history.append(op("contact", 2, 14.0, 15.0, date="2026-06-05", path="direct"))
        history.append(op("set_last_contact", 2, 16.0, 16.1, date="2026-06-01"))
        self.assertEqual(kinds(history, final), [])

    def test_closed_before_the_claim(self):
        history, final = clean()
        history.append(op("close", 1, 5.0, 6.0, changed=1))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])

    def test_closed_and_reopened_before_the_claim_is_not(self):
        history, final = clean()
        history.append(op("close", 1, 5.0, 6.0, changed=1))
        history.append(op("reopen", 1, 7.0, 7.1, changed=1))
        self.assertEqual(kinds(history, final), [])

    def test_snoozed_before_the_claim(self):
        history, final = clean()
        history.append(op("snooze", 1, 5.0, 6.0))
        self.assertEqual(kinds(history, final), ["delivered_not_due"])


class NothingLost(unittest.TestCase):
    def test_a_withdrawal_nothing_explains(self):
        history, final = clean()
        history = [r for r in history if r.get("op") != "contact"]
        self.assertEqual(kinds(history, final), ["withdrawn_without_cause"])

    def test_a_withdrawal_by_a_contact_before_the_run_is_not_explained(self):
        # the run saw that contact: it cannot be why the message stopped being due
        history, final = clean()
        for r in history:
            if r.get("op") == "contact":
                r.update(start=5.0, end=5.1)
        self.assertEqual(kinds(history, final), ["withdrawn_without_cause"])

    def test_a_withdrawal_for_a_reason_that_does_not_match(self):
        history, final = clean()
        final["outbox"][2]["cancel_reason"] = "snoozed"
        self.assertEqual(kinds(history, final), ["withdrawn_without_cause"])

    def test_a_dead_message(self):
        history, final = clean()
        final["outbox"].append(message(4, "dead", attempts=10, last_error="HTTP 500"))
        final["runs"][0]["reminders_enqueued"] = history[1]["enqueued"] = 4
        final["health"]["outbox_dead"] = 1
        self.assertEqual(kinds(history, final), ["lost_dead"])

    def test_delivered_but_never_accepted_by_the_webhook(self):
        history, final = clean()
        final["outbox"].append(message(4, "delivered", delivered_at=30.0))
        final["runs"][0]["reminders_enqueued"] = history[1]["enqueued"] = 4
        self.assertEqual(kinds(history, final), ["delivered_without_request"])

    def test_accepted_but_not_delivered_without_a_fault(self):
        history, final = clean()
        final["outbox"][1].update(status="pending", delivered_at=None)
        final["health"]["outbox_pending"] = 1
        self.assertEqual(kinds(history, final), ["ack_lost"])

    def test_due_but_not_enqueued_by_the_final_run(self):
        history, final = clean()
        history[-1]["preview_after"] = 2
        self.assertEqual(kinds(history, final), ["due_not_enqueued"])

    def test_a_malformed_request(self):
        history, final = clean()
        history[2]["check"] = "key 1/x != 1/2026-06-01/reminder/1"
        self.assertEqual(kinds(history, final), ["malformed_request"])


class Superseded(unittest.TestCase):
    """Message 2 (sequence 1 of assignment 2's reminder) and message 4,
    sequence 2 of the same reminder, enqueued by run 2 (committed at 15.0)."""

    def superseding(self):
        history, final = clean()
        final["runs"].append(dict(run(2, "succeeded", 14.0, 14.9, 101, enqueued=1), committed_at=15.0))
        final["outbox"].append(message(4, "pending", run_id=2, assignment_id="2", sequence=2, enqueued_at=14.5))
        final["health"]["outbox_pending"] = 1
        return history, final

    def test_a_newer_sequence_committed_after_the_claim_is_not(self):
        # message 2 was claimed at 20.5, after: the newer one is still pending
        history, final = self.superseding()
        final["runs"][1]["committed_at"] = 20.0
        self.assertEqual(kinds(history, final), [])

    def test_handed_out_after_a_newer_sequence_committed(self):
        history, final = self.superseding()
        self.assertEqual(kinds(history, final), ["delivered_superseded"])

    def test_without_a_commit_time_the_runs_end_decides(self):
        history, final = self.superseding()
        final["runs"][1]["committed_at"] = None
        self.assertEqual(kinds(history, final), ["delivered_superseded"])
        final["runs"][1]["finished_at"] = 18.5
        self.assertEqual(kinds(history, final), [])

    def test_an_older_sequence_does_not_supersede(self):
        history, final = self.superseding()
        final["outbox"][3]["sequence"] = 0
        self.assertEqual(kinds(history, final), [])

    def test_another_kind_does_not_supersede(self):
        history, final = self.superseding()
        final["outbox"][3]["kind"] = "escalation"
        self.assertEqual(kinds(history, final), [])

    def test_a_withdrawal_as_superseded_is_explained_by_the_newer_one(self):
        # message 2 was not handed out: withdrawn, not lost
        history, final = self.superseding()
        history = [r for r in history if r.get("n") != 2]
        final["outbox"][1].update(status="cancelled", cancel_reason="superseded", cancelled_at=16.0, delivered_at=None)
        self.assertEqual(kinds(history, final), [])

    def test_a_withdrawal_as_superseded_before_the_newer_one_was_enqueued(self):
        history, final = self.superseding()
        history = [r for r in history if r.get("n") != 2]
        final["outbox"][1].update(status="cancelled", cancel_reason="superseded", cancelled_at=14.0, delivered_at=None)
        self.assertEqual(kinds(history, final), ["withdrawn_without_cause"])

    def test_a_withdrawal_as_superseded_with_no_newer_one(self):
        history, final = clean()
        history = [r for r in history if r.get("n") != 2]
        final["outbox"][1].update(status="cancelled", cancel_reason="superseded", cancelled_at=16.0, delivered_at=None)
        self.assertEqual(kinds(history, final), ["withdrawn_without_cause"])


class Away(unittest.TestCase):
    """Message 2's recipient, mentor 1001, away on the day of its claim
    (20.5 s after the epoch: 1970-01-01 in UTC, the zone of a history
    without its soak record)."""

    def away(self, committed_at=15.0, from_day="1970-01-01", until_day="1970-01-02", outcome="ok",
             recipient="mentor:1001"):
        history, final = clean()
        history.append(dict(op("set_away", None, 14.0, 19.9, outcome=outcome, committed_at=committed_at,
                               from_day=from_day, until_day=until_day), recipient=recipient, assignments=[]))
        return history, final

    def test_handed_out_while_its_recipient_was_away(self):
        history, final = self.away()
        self.assertEqual(sorted(kinds(history, final)), ["delivered_to_away"])

    def test_an_absence_set_after_the_claims_snapshot_is_not(self):
        # the claim handed it out first; set_away leaves it with its consumer
        self.assertEqual(kinds(*self.away(committed_at=20.0)), [])

    def test_an_absence_ended_before_the_claim_is_not(self):
        history, final = self.away()
        history.append(dict(op("end_away", None, 17.0, 17.1, ended=1), recipient="mentor:1001", assignments=[]))
        self.assertEqual(kinds(history, final), [])

    def test_an_absence_ended_after_the_claim_is(self):
        history, final = self.away()
        history.append(dict(op("end_away", None, 25.0, 25.1, ended=1), recipient="mentor:1001", assignments=[]))
        self.assertEqual(kinds(history, final), ["delivered_to_away"])

    def test_an_absence_from_a_later_day_is_not(self):
        self.assertEqual(kinds(*self.away(from_day="1970-01-02")), [])

    def test_another_recipients_absence_is_not(self):
        self.assertEqual(kinds(*self.away(recipient="mentor:1002")), [])

    def test_a_set_away_that_failed_is_not(self):
        self.assertEqual(kinds(*self.away(outcome="error")), [])

    def held(self, status="pending", visible_at=40.0 + 86400, absences=()):
        """Message 4 to mentor 1001 still undelivered at the end (40.0),
        not visible until visible_at; the absences left in the database."""
        history, final = clean()
        history.append({"type": "quiet", "t": 40.0, "left": 0})
        final["outbox"].append(message(4, status, visible_at=visible_at,
                                       claimed_by="n1.1" if status == "claimed" else None))
        final["runs"][0]["reminders_enqueued"] = history[1]["enqueued"] = 4
        final["health"]["outbox_pending"] = 1
        final["away"] = [{"recipient_role": "mentor", "recipient_id": "1001", "from_day": "1970-01-01",
                          "until_day": "1970-01-03", "ended_at": ended} for ended in absences]
        return kinds(history, final)

    def test_held_for_a_recipient_still_away(self):
        self.assertEqual(self.held(absences=[None]), [])

    def test_held_after_the_absence_ended(self):
        self.assertEqual(self.held(absences=[30.0]), ["held_without_absence"])

    def test_claimed_and_held_after_the_absence_ended(self):
        # a dead consumer's lease ran out during the absence; end_away left it held
        self.assertEqual(self.held(status="claimed", absences=[30.0]), ["held_without_absence"])

    def test_held_with_no_absence_at_all(self):
        self.assertEqual(self.held(), ["held_without_absence"])

    def test_a_retry_in_backoff_is_not(self):
        self.assertEqual(self.held(visible_at=40.0 + 3000), [])

    def test_the_day_is_the_soaks_time_zone(self):
        # 20.5 s after the epoch is still 1969-12-31 in Etc/GMT+10
        history, final = self.away()
        history.append({"type": "soak", "t": 0, "timezone": "Etc/GMT+10"})
        self.assertEqual(kinds(history, final), [])


class Runs(unittest.TestCase):
    def test_a_run_left_running(self):
        history, final = clean()
        final["runs"].append(run(2, "running", 12.0, None, 101))
        self.assertEqual(kinds(history, final), ["run_not_ended"])

    def test_two_runs_holding_the_lock_at_once(self):
        history, final = clean()
        final["runs"].append(run(2, "succeeded", 10.5, 10.8, 101, enqueued=0))
        self.assertEqual(kinds(history, final), ["runs_overlap"])

    def test_a_run_starting_before_an_abandoned_one_was_killed(self):
        history, final = clean()
        final["runs"].append(run(2, "abandoned", 12.0, 16.0, 101))
        final["runs"].append(run(3, "succeeded", 13.0, 15.0, 102, enqueued=0))
        history.append({"type": "fault", "kind": "terminate", "t": 14.0, "target": "run", "pid": 101})
        self.assertEqual(kinds(history, final), ["runs_overlap"])

    def test_a_run_starting_after_an_abandoned_one_was_killed(self):
        history, final = clean()
        final["runs"].append(run(2, "abandoned", 12.0, 16.0, 101))
        final["runs"].append(run(3, "succeeded", 15.0, 15.5, 102, enqueued=0))
        history.append({"type": "fault", "kind": "terminate", "t": 14.0, "target": "run", "pid": 101})
        self.assertEqual(kinds(history, final), [])

    def test_abandoned_without_a_fault(self):
        history, final = clean()
        final["runs"].append(run(2, "abandoned", 12.0, 16.0, 101))
        history.append({"type": "fault", "kind": "terminate", "t": 14.0, "target": "run", "pid": 999})
        self.assertEqual(kinds(history, final), ["abandoned_without_fault"])

    def test_failed_without_a_fault(self):
        history, final = clean()
        final["runs"].append(run(2, "failed", 12.0, 13.0, 101, error="deadlock detected"))
        self.assertEqual(kinds(history, final), ["run_failed_without_fault"])

    def test_a_skip_while_another_run_held_the_lock(self):
        history, final = clean()
        final["runs"].append(run(2, "skipped", 10.5, 10.5, 101, error="another run holds the lock (pid 100)"))
        self.assertEqual(kinds(history, final), [])

    def test_a_skip_naming_a_process_that_is_no_run(self):
        history, final = clean()
        history.append({"type": "scheduler_pid", "t": 1.0, "pids": [55]})
        final["runs"].append(run(2, "skipped", 30.0, 30.0, 101, trigger="catch_up",
                                 error="another run holds the lock (pid 55)"))
        self.assertEqual(kinds(history, final), ["unexplained_skip"])

    def test_a_skip_after_the_holder_had_finished(self):
        history, final = clean()
        final["runs"].append(run(2, "skipped", 30.0, 30.0, 101, error="another run holds the lock (pid 100)"))
        self.assertEqual(kinds(history, final), ["unexplained_skip"])

    def test_run_now_returning_what_the_log_does_not_say(self):
        history, final = clean()
        history[1]["enqueued"] = 5
        self.assertEqual(kinds(history, final), ["run_log_mismatch"])


class Scheduler(unittest.TestCase):
    def test_back_after_a_restart(self):
        history, final = clean()
        history += [{"type": "scheduler_pid", "t": 1.0, "pids": [55]}, {"type": "scheduler_pid", "t": 5.0, "pids": []},
                    {"type": "scheduler_pid", "t": 16.0, "pids": [56]}]
        self.assertEqual(kinds(history, final), [])

    def test_not_back(self):
        history, final = clean()
        history += [{"type": "scheduler_pid", "t": 1.0, "pids": [55]}, {"type": "scheduler_pid", "t": 5.0, "pids": []},
                    {"type": "scheduler_pid", "t": 36.0, "pids": [56]}]
        self.assertEqual(kinds(history, final), ["scheduler_not_restarted"])

    def test_not_back_by_the_end(self):
        history, final = clean()
        history += [{"type": "scheduler_pid", "t": 1.0, "pids": [55]}, {"type": "scheduler_pid", "t": 5.0, "pids": []},
                    {"type": "quiet", "t": 40.0, "left": 0}]
        self.assertEqual(kinds(history, final), ["scheduler_not_restarted"])


class FinalState(unittest.TestCase):
    def test_drift(self):
        history, final = clean()
        final["verify"].append({"assignment_id": "7", "stored": "2026-06-01", "expected": "2026-06-03"})
        self.assertEqual(kinds(history, final), ["drift"])

    def test_a_run_whose_count_does_not_match_the_outbox(self):
        history, final = clean()
        final["runs"][0]["reminders_enqueued"] = 4
        history[1]["enqueued"] = 4
        self.assertEqual(kinds(history, final), ["count_mismatch"])

    def test_a_message_of_a_run_that_did_not_succeed(self):
        history, final = clean()
        final["runs"].append(run(2, "failed", 12.0, 13.0, 101, error="canceled"))
        history.append({"type": "fault", "kind": "terminate", "t": 12.5, "target": "run", "pid": 101})
        final["outbox"][0]["run_id"] = 2
        self.assertEqual(kinds(history, final), ["count_mismatch"])

    def test_health_disagreeing_with_the_outbox(self):
        history, final = clean()
        final["health"]["outbox_pending"] = 1
        self.assertEqual(kinds(history, final), ["count_mismatch"])

    def test_a_harness_error_is_never_a_quiet_soak(self):
        history, final = clean()
        history.append({"type": "harness_error", "t": 5, "where": "contact_writer", "error": "KeyError('x')"})
        self.assertEqual(kinds(history, final), ["harness_error"])


class Figures(unittest.TestCase):
    def test_deliveries_count_each_message_of_a_digest_and_faults_each_injected_answer(self):
        history, final = clean()
        history.append(request(3, 30.0, [4, 5], answer=500))
        history.append(request(4, 31.0, [4, 5]))
        history.append(fault("shutdown", 35.0))
        final["outbox"] += [message(4, "delivered", delivered_at=31.01), message(5, "delivered", delivered_at=31.01)]
        final["runs"][0]["reminders_enqueued"] = 5
        history[1]["enqueued"] = 5
        c = checker.Checker(history, final)
        self.assertEqual(c.check(), [])
        self.assertEqual(c.figures(), (4, 2))


if __name__ == "__main__":
    unittest.main()

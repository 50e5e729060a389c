#!/usr/bin/env python3
"""The soak's checker: reads a soak's history (history.jsonl, requests.jsonl)
and the final database (final.json) written by soak.py, and reports every
violation of what pg_followup promises. Python's standard library only.

    checker.py DIR      prints the violations, then the last line
                        `soak: <deliveries> deliveries, <faults> faults, <violations> violations`;
                        exit status 1 on any violation

The times it compares, all seconds since the epoch on one machine's clock
(the harness, the receiver and the database servers run on the same host):

* an operation's `start` (before its statement was sent) and `end` (after its
  answer came back). An operation that succeeded in autocommit committed
  between the two: `end` is an upper bound of its commit. One that may have
  committed (`ok` or `unknown`) did so after `start`. A contact's or a
  correction's `committed_at` is its commit record's time in the server
  (pg_xact_commit_timestamp); it became visible to other snapshots a moment
  later (the moment its standby confirmed it, with one), a moment that the
  claim's slack below covers. Without it (the lookup failed), `end`.
* a claim's instant: each message a request carries is its outbox row as
  the claim that handed it out left it, whose `visible_at` is that claim's
  clock_timestamp() plus the consumer's lease (src/outbox.rs). So
  visible_at - lease is when the claim stamped the message: after its
  snapshot, which was taken when its statement started. The statement runs
  for at most `slack` seconds (the longest claim the server logged, at least
  CLAIM_SLACK), so the snapshot is no earlier than visible_at - lease - slack.
* a request's `t_recv` (the receiver has read it) and `t_done` (it has
  written the answer); a fault's `t` (when the harness issued it); the
  database's own started_at, finished_at, cancelled_at, delivered_at
  (clock_timestamp() in the server).
"""
import json
import os
import re
import sys
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

# The least time allowed between a claim's snapshot and the instant it stamps
# on the messages it hands out (see above).
CLAIM_SLACK = 1.0
# A run that took the lock logs its start after taking it and its end before
# releasing it; a skip is logged just after the lock was found taken. A skip
# is explained by a holder whose logged interval is this close to it.
SKIP_TOLERANCE = 1.0
# The scheduler is restarted 10 s after it dies (src/scheduler.rs,
# RESTART_AFTER), and after a server restart it starts at once; give it this long.
SCHEDULER_BACK_WITHIN = 30.0
# Faults that take the whole server down: the soak's own immediate shutdowns
# and promotions, and a crash it did not cause (soak.py, Clusters.revive).
SERVER_DOWN = ("shutdown", "promote", "crash")
# A run logs finished_at in the transaction that enqueues its messages, just
# before that transaction commits; the commit follows within this long (used
# only when the run's commit timestamp is unknown).
COMMIT_TOLERANCE = 1.0
# The longest a message waits without anyone holding it back: fail's backoff
# (at most an hour) or a lease (the soak's are 20 s); the soak's policies
# have no send window, weekdays or quiet days. A message undelivered at the
# end and not visible for longer is held by an absence, or by nothing.
LONGEST_WAIT = 3600 + 120
# The statuses of a run that held the run lock.
HOLDERS = ("succeeded", "failed", "abandoned")
INF = float("inf")


def load(directory):
    records = []
    for name in ("history.jsonl", "requests.jsonl"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as f:
                records.extend(json.loads(line) for line in f if line.strip())
    with open(os.path.join(directory, "final.json")) as f:
        final = json.load(f)
    return records, final


class Checker:
    def __init__(self, records, final):
        self.final = final
        self.violations = []
        # what the checks looked at, for the summary: a check that saw
        # nothing proves nothing
        self.seen = defaultdict(int)
        by_type = defaultdict(list)
        for r in records:
            by_type[r["type"]].append(r)
        self.by_type = by_type
        self.requests = sorted(by_type["request"], key=lambda r: r["t_recv"])
        self.notifiers = {r["consumer"]: r for r in by_type["notifier_start"]}
        self.faults = sorted(by_type["fault"], key=lambda r: r["t"])
        self.ops_by_assignment = defaultdict(list)
        for op in by_type["op"]:
            for a in op.get("assignments", []):
                self.ops_by_assignment[str(a)].append(op)
        self.requests_by_consumer = defaultdict(list)
        for r in self.requests:
            self.requests_by_consumer[r["consumer"]].append(r)
        self.outbox = {m["message_id"]: m for m in final["outbox"]}
        self.runs = {r["run_id"]: r for r in final["runs"]}
        longest = max([r["longest"] for r in by_type["slow_claims"]] + [0.0])
        self.slack = max(CLAIM_SLACK, longest + 0.1)
        self.scheduler_pids = {p for r in by_type["scheduler_pid"] for p in r["pids"]}
        # followup.timezone: every organization's zone in the soak (no policy has its own)
        soak = by_type["soak"][0] if by_type["soak"] else {}
        self.zone = ZoneInfo(soak.get("timezone", "UTC"))
        self.by_recipient = defaultdict(list)
        for op in by_type["op"]:
            if "recipient" in op:
                self.by_recipient[op["recipient"]].append(op)
        self.by_reminder = defaultdict(list)
        for m in final["outbox"]:
            self.by_reminder[(m["assignment_id"], m["cycle_start"], m["kind"])].append(m)

    def violation(self, kind, detail):
        self.violations.append((kind, detail))

    # -- helpers --------------------------------------------------------------

    def deliveries(self):
        """Requests the receiver answered 2xx, the answer written: delivered."""
        return [r for r in self.requests if r["answer"] == 200 and r["completed"]]

    def lease(self, consumer):
        return self.notifiers[consumer]["lease"] if consumer in self.notifiers else None

    def ack_loss(self, delivery):
        """Why the ack of a delivery may never have committed, or None.

        The notifier has up to --concurrency requests in flight and acks each
        2xx as it completes, grouping the acks that complete while one
        commits (notifier/README.md), so other requests of the same consumer
        may start before this ack is decided. It is decided before the lease
        ends (an ack after it is refused, and the message claimed again). Lost
        it can be only by a fault between the request and the lease's end:
        the notifier killed, the server shut down or failed over, or one of
        its sessions terminated, which it learns at its next statement: a
        session terminated while idle since the claim that handed the message
        out (at most a lease before the request: no request starts that could
        outlast its lease) takes this ack down with it. Or the answer came so
        late that the notifier had given up waiting (then it failed the
        message instead)."""
        consumer = delivery["consumer"]
        timeout = self.notifiers.get(consumer, {}).get("timeout", INF)
        if delivery["t_done"] - delivery["t_recv"] > timeout / 2:
            return "answered late"
        lease = self.lease(consumer)
        until = delivery["t_recv"] + (lease if lease is not None else INF)
        since = delivery["t_recv"] - (lease if lease is not None else INF)
        for f in self.faults:
            if f["kind"] == "terminate" and since <= f["t"] <= until and f.get("application_name") == consumer:
                return f"session of {consumer} terminated at {f['t']:.3f}"
            # a server going down: from the stop's start to its end (t_down)
            if f["kind"] in SERVER_DOWN and f["t"] <= until and f.get("t_down", f["t"]) >= delivery["t_recv"]:
                return f"{f['kind']} at {f['t']:.3f}"
            if delivery["t_recv"] <= f["t"] <= until:
                if f["kind"] == "sigkill_notifier" and f["consumer"] == consumer:
                    return f"notifier {consumer} killed at {f['t']:.3f}"
        return None

    def count(self, what, found):
        self.seen[what] += found is not None
        return found

    def ops(self, assignment, *kinds, may_have_committed=True):
        return [op for op in self.ops_by_assignment[str(assignment)]
                if op["op"] in kinds and (op["outcome"] != "error" if may_have_committed else op["outcome"] == "ok")]

    # -- the checks ---------------------------------------------------------------

    def check_duplicates(self):
        """No message delivered twice (a digest's messages included): a
        second delivery needs the first one's ack to have been lost."""
        by_message = defaultdict(list)
        for d in self.deliveries():
            for m in d["ids"]:
                by_message[m].append(d)
        for message, ds in sorted(by_message.items()):
            for first, second in zip(ds, ds[1:]):
                why = self.ack_loss(first)
                self.seen["repeated deliveries after a lost ack"] += bool(why)
                if not why:
                    self.violation("duplicate_delivery",
                                   f"message {message} delivered at {first['t_recv']:.3f} by {first['consumer']} "
                                   f"(key {first['key']}) and again at {second['t_recv']:.3f} by {second['consumer']} "
                                   f"(key {second['key']}), with no fault that could have lost the first ack")

    def evidence_not_due(self, m, claimed_at):
        """What made message m no longer due, committed before the snapshot of
        the claim that stamped it at claimed_at; None if nothing did."""
        snapshot_no_earlier = claimed_at - self.slack
        a, cycle = m["assignment_id"], m["cycle_start"]

        def lasted(e, *undoing, lower=None):
            # nothing that could undo e began before the claim and ended after e began
            for u in self.ops(a, *undoing):
                if u["start"] < claimed_at and u["end"] > e["start"] and (lower is None or lower(u)):
                    return False
            return True

        for e in self.ops(a, "contact", "set_last_contact", may_have_committed=False):
            # a contact dated after the message's cycle start moves the cycle
            # start past it, until deleted, re-dated or corrected below it
            committed = e.get("committed_at") or e["end"]
            if e["date"] > cycle and committed < snapshot_no_earlier and \
                    lasted(e, "activity_update", "activity_delete") and \
                    lasted(e, "set_last_contact", lower=lambda u: u["date"] < e["date"]):
                return f"{e['op']} dated {e['date']} ({e['actor']}) committed at {committed:.3f}"
        for e in self.ops(a, "close", may_have_committed=False):
            if e.get("changed") and e["end"] < snapshot_no_earlier and lasted(e, "reopen"):
                return f"closed, committed by {e['end']:.3f}"
        for e in self.ops(a, "snooze", may_have_committed=False):
            if e["end"] < snapshot_no_earlier and lasted(e, "unsnooze"):
                return f"snoozed, committed by {e['end']:.3f}"
        return None

    def evidence_superseded(self, m, claimed_at):
        """A newer sequence of message m's reminder whose run committed before
        the snapshot of the claim that stamped m at claimed_at: that claim saw
        it and must have withdrawn m (`superseded`); None if none did."""
        snapshot_no_earlier = claimed_at - self.slack
        self.seen["claims with a newer sequence in the outbox"] += bool(self.newer(m))
        for n in self.newer(m):
            if self.committed(n) < snapshot_no_earlier:
                return f"message {n['message_id']} (sequence {n['sequence']}) superseded it, committed by run " \
                       f"{n['run_id']} at {self.committed(n):.3f}"
        return None

    def evidence_away(self, m, claimed_at):
        """An absence of message m's recipient covering the claim's day (in
        followup.timezone), set (committed) before the snapshot of the claim
        that stamped m at claimed_at and not ended before it: that claim must
        have held m back; None if none was. A message claimed before the
        absence was set stays with its consumer: only the claim's snapshot
        counts."""
        row = self.outbox.get(m["id"])
        if row is None:
            return None
        recipient = f"{row['recipient_role']}:{row['recipient_id']}"
        day = datetime.fromtimestamp(claimed_at, self.zone).date().isoformat()
        snapshot_no_earlier = claimed_at - self.slack
        ops = self.by_recipient[recipient]
        self.seen["claims of recipients who were ever away"] += any(e["op"] == "set_away" for e in ops)
        for e in ops:
            if e["op"] != "set_away" or e["outcome"] != "ok" or not e["from_day"] <= day <= e["until_day"]:
                continue
            committed = e.get("committed_at") or e["end"]
            # an end_away that began before the claim stamped m may have committed before its snapshot
            ended = any(u["op"] == "end_away" and u["outcome"] != "error" and u["start"] < claimed_at
                        and u["end"] > e["start"] for u in ops)
            if committed < snapshot_no_earlier and not ended:
                return f"{recipient} was away {e['from_day']}..{e['until_day']}, set at {committed:.3f}"
        return None

    def check_not_due(self):
        """No message handed out (POSTed) after what made it no longer due,
        or a newer sequence of its reminder, had committed before the claim
        that handed it out."""
        seen = set()
        for r in self.requests:
            for m in r["messages"]:
                lease = self.lease(m.get("claimed_by"))
                if lease is None or m.get("visible_at") is None or m.get("lease_id") is None:
                    continue
                claim = (m["id"], m["lease_id"])
                if claim in seen:
                    continue
                seen.add(claim)
                claimed_at = m["visible_at"] - lease
                self.seen["claims checked against the history"] += 1
                for kind, why in (("delivered_not_due", self.evidence_not_due(m, claimed_at)),
                                  ("delivered_superseded", self.evidence_superseded(m, claimed_at)),
                                  ("delivered_to_away", self.evidence_away(m, claimed_at))):
                    if why:
                        self.violation(kind,
                                       f"message {m['id']} (assignment {m['assignment_id']}, cycle {m['cycle_start']}, "
                                       f"sequence {m.get('sequence')}) claimed at {claimed_at:.3f} by "
                                       f"{m.get('claimed_by')} and POSTed at {r['t_recv']:.3f}, but {why} "
                                       f"(slack {self.slack:.2f} s)")

    def newer(self, m):
        """The outbox's messages that supersede m: a higher sequence of the
        same assignment, cycle and kind (README, "Only still-due reminders
        are delivered"), whatever became of them."""
        return [n for n in self.by_reminder[(m["assignment_id"], m["cycle_start"], m["kind"])]
                if n["sequence"] > m["sequence"]]

    def committed(self, m):
        """When the run that enqueued message m committed: the commit time of
        its log row's last update, made in the transaction that inserted its
        messages (src/run/mod.rs, scan_and_finish); without it (no commit
        timestamp), its finished_at, logged just before the commit, plus
        COMMIT_TOLERANCE."""
        run = self.runs.get(m["run_id"]) or {}
        if run.get("committed_at") is not None:
            return run["committed_at"]
        return (run.get("finished_at") or m["enqueued_at"]) + COMMIT_TOLERANCE

    def withdrawal_cause(self, m):
        """What may have ended message m's being due after the run that
        enqueued it looked (the run logged its start before its scan): an
        operation, or for `superseded` a newer sequence enqueued before it
        was withdrawn. A superseded message is withdrawn, not lost: its
        recipient gets the newer one."""
        if m["cancel_reason"] == "superseded":
            return self.count("superseded withdrawals explained by the newer sequence",
                              next((n for n in self.newer(m) if n["enqueued_at"] <= m["cancelled_at"]), None))
        run = self.runs.get(m["run_id"])
        looked = run["started_at"] if run else m["enqueued_at"]
        kinds = {"contact_logged": ("contact", "activity_update", "activity_delete", "set_last_contact"),
                 "assignment_inactive": ("close",), "snoozed": ("snooze",)}.get(m["cancel_reason"])
        if not kinds:
            return None
        for op in self.ops(m["assignment_id"], *kinds):
            if op["start"] <= m["cancelled_at"] and op["end"] >= looked:
                return op
        return None

    def check_nothing_lost(self):
        """Every message that stayed due was delivered or is still pending."""
        delivered_to_webhook = defaultdict(list)
        for d in self.deliveries():
            for i in d["ids"]:
                delivered_to_webhook[i].append(d)
        for i, m in sorted(self.outbox.items()):
            if m["status"] == "delivered" and not delivered_to_webhook[i]:
                self.violation("delivered_without_request", f"message {i} is delivered but the webhook never accepted it")
            elif m["status"] == "dead":
                # the soak's faults cannot use up followup.max_attempts: the
                # backoff alone spans hours before the tenth attempt
                self.violation("lost_dead", f"message {i} is dead after {m['attempts']} attempts: {m['last_error']}")
            elif m["status"] == "cancelled" and not self.count("withdrawals explained", self.withdrawal_cause(m)):
                self.violation("withdrawn_without_cause",
                               f"message {i} (assignment {m['assignment_id']}, run {m['run_id']}) withdrawn "
                               f"({m['cancel_reason']}) at {m['cancelled_at']:.3f} with nothing in the history that "
                               f"could have made it so")
            if m["status"] != "delivered" and delivered_to_webhook[i] and \
                    not self.ack_loss(delivered_to_webhook[i][-1]):
                d = delivered_to_webhook[i][-1]
                self.violation("ack_lost",
                               f"message {i} was accepted by the webhook at {d['t_recv']:.3f} ({d['consumer']}) "
                               f"but is {m['status']}, with no fault that could have lost its ack")
        self.check_held()
        for r in self.requests:
            if r["check"] != "ok":
                self.violation("malformed_request", f"request {r['n']} ({r['key']}): {r['check']}")
            for i in r["ids"]:
                if i not in self.outbox:
                    self.violation("unknown_message", f"request {r['n']} carries message {i}, not in the outbox")
        for f in self.by_type["final_run"]:
            if f["status"] != "succeeded":
                self.violation("final_run_not_succeeded", f"the final run as of {f['as_of']}: {f['status']}")
            elif f["preview_after"]:
                self.violation("due_not_enqueued",
                               f"after the final run as of {f['as_of']}, preview still shows {f['preview_after']} messages")

    def check_held(self):
        """Nothing undelivered at the end is held back longer than a backoff
        or a lease unless its recipient is still away (the absences in the
        final database; end_away makes what they held visible again at
        once). Skipped for a final.json without its absences."""
        if "away" not in self.final or not self.by_type["quiet"]:
            return
        end = max(r["t"] for r in self.by_type["quiet"])
        away = {(a["recipient_role"], a["recipient_id"]) for a in self.final["away"] if a["ended_at"] is None}
        for i, m in sorted(self.outbox.items()):
            if m["status"] in ("pending", "claimed") and m["visible_at"] > end + LONGEST_WAIT:
                recipient = (m["recipient_role"], m["recipient_id"])
                self.seen["messages held by an absence at the end"] += recipient in away
                if recipient not in away:
                    self.violation("held_without_absence",
                                   f"message {i} ({m['status']}{' by ' + m['claimed_by'] if m['claimed_by'] else ''}, "
                                   f"attempts {m['attempts']}) is not visible until {m['visible_at']:.0f}, "
                                   f"{(m['visible_at'] - end) / 3600:.1f} h after the end, though "
                                   f"{m['recipient_role']} {m['recipient_id']} has no open absence")

    def death(self, run):
        """The earliest fault that can have ended an abandoned run's process, or None."""
        for f in self.faults:
            if f["kind"] in SERVER_DOWN and f["t"] <= run["finished_at"] and \
                    f.get("t_down", f["t"]) >= run["started_at"] - 1:
                return f
            if f["kind"] == "terminate" and f["pid"] == run["backend_pid"] and \
                    run["started_at"] - 1 <= f["t"] <= run["finished_at"]:
                return f
        return None

    def check_runs(self):
        """Every run ended; a skip names a run that held the lock; no two runs
        held the lock at once."""
        held = []
        for r in self.runs.values():
            if r["status"] == "running":
                self.violation("run_not_ended", f"run {r['run_id']} ({r['trigger']}) is still running")
            elif r["status"] == "abandoned":
                f = self.count("abandoned runs explained by a fault", self.death(r))
                if f is None:
                    self.violation("abandoned_without_fault",
                                   f"run {r['run_id']} ({r['trigger']}, pid {r['backend_pid']}) was abandoned "
                                   f"with no fault that could have ended its process")
                held.append((r["started_at"], max(r["started_at"], f["t"]) if f else r["started_at"], r))
            elif r["status"] in ("succeeded", "failed"):
                if r["status"] == "failed" and not self.death(r):
                    self.violation("run_failed_without_fault", f"run {r['run_id']} ({r['trigger']}) failed: {r['error']}")
                held.append((r["started_at"], r["finished_at"], r))
        for r in self.runs.values():
            if r["status"] == "skipped":
                self.check_skip(r)
        held.sort(key=lambda h: h[0])
        latest = None
        for start, end, r in held:
            if latest is not None and start < latest[1]:
                self.violation("runs_overlap",
                               f"run {r['run_id']} ({r['trigger']}) started at {start:.3f} while run "
                               f"{latest[2]['run_id']} ({latest[2]['trigger']}) held the lock until {latest[1]:.3f}")
            if latest is None or end > latest[1]:
                latest = (start, end, r)
        for op in self.by_type["op"]:
            if op["op"] == "run_now" and op["outcome"] == "ok" and op["status"] in ("succeeded", "failed", "skipped"):
                logged = self.runs.get(op["run_id"])
                if logged is None or (logged["status"], logged["reminders_enqueued"]) != (op["status"], op["enqueued"]):
                    self.violation("run_log_mismatch",
                                   f"run_now returned run {op['run_id']} {op['status']} ({op['enqueued']} enqueued); "
                                   f"followup.runs says {logged and (logged['status'], logged['reminders_enqueued'])}")

    def check_skip(self, skip):
        at = skip["started_at"]
        m = re.search(r"pid (\d+)", skip.get("error") or "")
        if not skip.get("error") or not skip["error"].startswith("another run holds the lock"):
            self.violation("unexplained_skip", f"run {skip['run_id']} skipped without its reason: {skip.get('error')}")
            return
        pid = int(m.group(1)) if m else None
        for r in self.runs.values():
            if r["status"] in HOLDERS + ("running",) and (pid is None or r["backend_pid"] == pid):
                end = r["finished_at"] if r["finished_at"] is not None else INF
                if r["started_at"] - SKIP_TOLERANCE <= at <= end + SKIP_TOLERANCE:
                    self.seen["skips explained by the holder"] += 1
                    return
        who = " (the scheduler's process)" if pid in self.scheduler_pids else ""
        self.violation("unexplained_skip",
                       f"run {skip['run_id']} ({skip['trigger']}, as of {skip['as_of']}) skipped at {at:.3f}: "
                       f"{skip['error']}, but no run held the lock then{' as pid ' + str(pid) + who if pid else ''}")

    def check_scheduler(self):
        """The scheduler is back after it was terminated or the server
        restarted: the postmaster restarts it RESTART_AFTER (10 s) later."""
        seen = sorted(self.by_type["scheduler_pid"], key=lambda r: r["t"])
        watched_until = max([r["t"] for r in self.by_type["quiet"]] + [r["t"] for r in seen] + [-INF])
        for gone, back in zip(seen, seen[1:] + [None]):
            if gone["pids"]:
                continue
            until = back["t"] if back else watched_until
            if until - gone["t"] > SCHEDULER_BACK_WITHIN:
                self.violation("scheduler_not_restarted",
                               f"no scheduler from {gone['t']:.3f} " +
                               (f"until {back['t']:.3f}" if back else f"to the end ({watched_until:.3f})"))

    def check_final_state(self):
        """verify() finds no drift; the outbox's counts add up."""
        for row in self.final["verify"]:
            self.violation("drift", f"assignment {row['assignment_id']}: stored {row['stored']}, expected {row['expected']}")
        per_run = defaultdict(int)
        for m in self.outbox.values():
            per_run[m["run_id"]] += 1
            if self.runs.get(m["run_id"], {}).get("status") != "succeeded":
                self.violation("count_mismatch", f"message {m['message_id']} was enqueued by run {m['run_id']}, "
                                                 f"which did not succeed")
        for r in self.runs.values():
            if r["status"] == "succeeded" and r["reminders_enqueued"] != per_run[r["run_id"]]:
                self.violation("count_mismatch", f"run {r['run_id']} logged {r['reminders_enqueued']} enqueued, "
                                                 f"the outbox holds {per_run[r['run_id']]} of it")
        status = defaultdict(int)
        for m in self.outbox.values():
            status[m["status"]] += 1
        health = self.final["health"]
        if (health["outbox_pending"], health["outbox_dead"]) != (status["pending"] + status["claimed"], status["dead"]):
            self.violation("count_mismatch", f"health says {health['outbox_pending']} pending and "
                                             f"{health['outbox_dead']} dead; the outbox has {dict(status)}")
        for r in self.by_type["harness_error"]:
            self.violation("harness_error", f"{r['where']}: {r['error']}")

    def check(self):
        self.check_duplicates()
        self.check_not_due()
        self.check_nothing_lost()
        self.check_runs()
        self.check_scheduler()
        self.check_final_state()
        return self.violations

    def figures(self):
        deliveries = sum(len(d["ids"]) for d in self.deliveries())
        webhook_faults = sum(1 for r in self.requests if r["answer"] in (500, "hang", "close"))
        return deliveries, len(self.faults) + webhook_faults


def summary(checker, out=sys.stdout):
    kinds = defaultdict(list)
    for kind, detail in checker.violations:
        kinds[kind].append(detail)
    for kind, details in sorted(kinds.items()):
        print(f"VIOLATION {kind}: {len(details)}", file=out)
        for d in details[:10]:
            print(f"  {d}", file=out)
    fault_kinds = defaultdict(int)
    for f in checker.faults:
        fault_kinds[f["kind"] + (":" + f["target"] if f["kind"] == "terminate" else "")] += 1
    for r in checker.requests:
        if r["answer"] in (500, "hang", "close"):
            fault_kinds[f"webhook:{r['answer']}"] += 1
    print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(fault_kinds.items())), file=out)
    status = defaultdict(int)
    for m in checker.outbox.values():
        status[m["status"] + (f" ({m['cancel_reason']})" if m["cancel_reason"] else "")] += 1
    away = {(a["recipient_role"], a["recipient_id"]) for a in checker.final.get("away", []) if a["ended_at"] is None}
    held = sum(1 for m in checker.outbox.values()
               if m["status"] == "pending" and (m["recipient_role"], m["recipient_id"]) in away)
    print("outbox: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())) +
          f" (pending to a recipient still away: {held})", file=out)
    runs = defaultdict(int)
    for r in checker.runs.values():
        runs[f"{r['trigger']} {r['status']}"] += 1
    print("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(runs.items())), file=out)
    print("checked: " + ", ".join(f"{k} {v}" for k, v in sorted(checker.seen.items())), file=out)
    deliveries, faults = checker.figures()
    print(f"soak: {deliveries} deliveries, {faults} faults, {len(checker.violations)} violations", file=out)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: checker.py DIR")
    checker = Checker(*load(sys.argv[1]))
    checker.check()
    summary(checker)
    sys.exit(1 if checker.violations else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The soak harness (README, "Soak"; run it through tests/soak/run.sh).

Runs pg_followup whole for a bounded time on private clusters, with load and
faults drawn from a seed, records what happened as JSON lines, then leaves
the database quiet and snapshots it for the checker (checker.py):

  history.jsonl   every operation (start, end, outcome and what it touched),
                  every fault, every notifier started and stopped, the
                  scheduler's pid, the soak's settings
  requests.jsonl  every request the webhook receiver got (receiver.py)
  final.json      the final database: outbox, runs, verify(), health

Times are seconds since the epoch on this machine's clock, which is also the
clock of the database servers (they run here): `start` is taken just before
an operation's statement is sent, `end` just after its answer (or error)
came back. For an operation in autocommit that succeeded, `end` is therefore
after its commit (an upper bound of the commit time) and `start` before it.
An outcome is `ok` (committed), `error` (the server refused it, the session
lived on: rolled back) or `unknown` (the connection was lost or terminated
mid-statement: it may or may not have committed). Contacts and corrections
also carry `committed_at`: pg_xact_commit_timestamp() of their transaction
(track_commit_timestamp), the server's clock when it wrote the commit
record, just before the transaction became visible to other sessions.
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
NODE = os.path.join(HERE, "node.sh")

# The day the soak's simulated calendar starts on, as in the integration
# tests (tests/lib/integration.sh): what is due never depends on the real
# date. The simulated day advances during the soak; run_now runs as of it
# and contacts are dated on it.
AS_OF = date(2026, 6, 15)
ASSIGNMENTS = 2000
LEASE_SECONDS = 20          # the notifiers' --lease: SIGKILLed batches come back within the soak
REQUEST_TIMEOUT = 2.0       # --request-timeout; a hung request is held past it
HANG_SECONDS = REQUEST_TIMEOUT + 1.5
CONTACT_PATHS = ("direct", "proxy", "bulk", "coordinator_proxy")
# Today in followup.timezone, the scheduler's day
TODAY = "(now() AT TIME ZONE current_setting('followup.timezone'))::date"
# A writing statement's transaction id, whose commit time the history records
XID = "pg_current_xact_id()::text"


class History:
    """history.jsonl: one JSON object a line, written as it happens."""

    def __init__(self, path):
        self.f = open(path, "a")
        self.lock = threading.Lock()

    def write(self, record):
        line = json.dumps(record, default=str)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


def noon_zone():
    """A zone where it is about noon now (Etc/GMT±N), as tests/lib/integration.sh's
    noon_tz: the scheduler's real-clock runs then never cross local midnight."""
    offset = time.gmtime().tm_hour - 12
    return f"Etc/GMT{'-' if offset < 0 else '+'}{abs(offset)}"


def node(*args, check=True):
    return subprocess.run(["bash", NODE, *args], check=check, capture_output=True, text=True)


class Clusters:
    """The database nodes: one primary, and in the long mode a synchronous
    streaming standby that a fault promotes (the old primary then comes back
    as the new standby). Settings the soak changes with ALTER SYSTEM live in
    each node's own postgresql.auto.conf (not replicated), so they are kept
    here and applied again to a newly promoted primary."""

    def __init__(self, soak, names, zone):
        self.soak, self.names, self.zone = soak, names, zone
        self.primary, self.standby = names[0], (names[1] if len(names) > 1 else None)
        self.system = {}            # ALTER SYSTEM settings of the primary
        self.up = threading.Event()  # set while the primary accepts connections
        self.topology = threading.Lock()

    def port(self, name):
        with open(os.path.join(os.environ["CLUSTER_ROOT"], name, "port")) as f:
            return int(f.read().strip())

    def conninfo(self, user="postgres", app="soak"):
        """Every client (the soak's sessions and the notifiers) names every node
        and wants the writable one, as a real deployment's would."""
        hosts = ",".join("127.0.0.1" for _ in self.names)
        ports = ",".join(str(self.port(n)) for n in self.names)
        extra = " target_session_attrs=read-write" if len(self.names) > 1 else ""
        return f"host={hosts} port={ports} dbname=soak user={user} application_name={app} connect_timeout=5{extra}"

    def start(self):
        conf = ["followup.database = 'soak'", f"followup.timezone = '{self.zone}'",
                # claims slower than this are logged: the checker's bound on a claim's own duration
                "log_min_duration_statement = 300", "max_connections = 200", "wal_keep_size = '512MB'",
                # contacts' commit times (pg_xact_commit_timestamp) for the history
                "track_commit_timestamp = on"]
        node("init", self.primary, *conf)
        node("start", self.primary)
        if self.standby:
            # its port from the start: every connection string names both nodes
            directory = os.path.join(os.environ["CLUSTER_ROOT"], self.standby)
            os.makedirs(directory, exist_ok=True)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                with open(os.path.join(directory, "port"), "w") as f:
                    f.write(f"{sock.getsockname()[1]}\n")
        self.up.set()

    def attach_standby(self):
        """The standby (again), then synchronous: a commit a client saw is on both nodes."""
        node("standby", self.standby, self.primary)
        with psycopg.connect(self.conninfo(), autocommit=True) as c:
            for _ in range(200):
                if c.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]:
                    break
                time.sleep(0.1)
        self.alter_system("synchronous_standby_names", "*")

    def alter_system(self, name, value):
        self.system[name] = value
        with psycopg.connect(self.conninfo(), autocommit=True) as c:
            c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            c.execute("SELECT pg_reload_conf()")

    def restart_immediate(self, down_for):
        with self.topology:
            self.up.clear()
            t0 = time.time()
            node("stop", self.primary, "immediate")
            t1 = time.time()
            time.sleep(down_for)
            node("start", self.primary)
            self.up.set()
            return {"t": t0, "t_down": t1, "t_up": time.time(), "node": self.primary}

    def promote(self):
        """Kill the primary (immediate), promote the synchronous standby, bring
        the old primary back as the new standby."""
        with self.topology:
            with psycopg.connect(self.conninfo(), autocommit=True) as c:
                sync = c.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()[0]
            if not sync:
                return None
            self.up.clear()
            old, new = self.primary, self.standby
            t0 = time.time()
            node("stop", old, "immediate")
            t1 = time.time()
            node("promote", new)
            self.primary, self.standby = new, old
            # the new primary has no standby yet: commits must not wait for one
            with psycopg.connect(self.conninfo(), autocommit=True) as c:
                c.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
                for name, value in self.system.items():
                    if name != "synchronous_standby_names":
                        c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                c.execute("SELECT pg_reload_conf()")
            self.up.set()
            t2 = time.time()
            self.attach_standby()
            return {"t": t0, "t_down": t1, "t_up": t2, "t_standby": time.time(), "old": old, "new": new}

    def running(self, name):
        return os.path.exists(os.path.join(os.environ["CLUSTER_ROOT"], name, "data", "postmaster.pid"))

    def revive(self, since):
        """A node that is down although no fault of the soak's stopped it (on
        a shared machine, say, a reinstall of pg_followup.so in place makes
        every process that mapped it die of SIGBUS) is started again, and the
        crash recorded as a fault: it ends sessions, runs and acks as an
        immediate shutdown does. None when every node runs."""
        with self.topology:
            down = [n for n in (self.primary, self.standby) if n and not self.running(n)]
            if not down:
                return None
            self.up.clear()
            t = time.time()
            for n in down:
                node("start", n, check=False)
            self.up.set()
            # t: the last time all were seen running; t_down: found down
            return {"kind": "crash", "t": since, "t_down": t, "t_up": time.time(), "nodes": down}

    def stop_all(self):
        for n in self.names:
            node("stop", n, "fast", check=False)

    def server_logs(self):
        root = os.environ["CLUSTER_ROOT"]
        return [os.path.join(root, n, "server.log") for n in self.names] + \
            [os.path.join(root, f"{n}.earlier-server.log") for n in self.names]


class Actor:
    """One client of the database (a thread): its own session, its own random
    stream from the seed, every statement recorded as an operation."""

    def __init__(self, soak, name, user="postgres"):
        self.soak, self.name, self.user = soak, name, user
        self.rng = random.Random(f"{soak.seed}-{name}")
        self.conn = None

    def session(self):
        while self.conn is None or self.conn.closed or self.conn.broken:
            if self.soak.stopping.is_set() and not self.soak.draining:
                raise Stop()
            self.soak.clusters.up.wait(5)
            try:
                self.conn = psycopg.connect(self.soak.clusters.conninfo(self.user, f"soak-{self.name}"),
                                            autocommit=True)
            except psycopg.Error:
                time.sleep(0.3)
        return self.conn

    def op(self, kind, statement, **fields):
        """Runs statement(session) -> dict of what it did; records it. A
        statement that returns its transaction's id ("xid") gets its commit
        time looked up once it has committed."""
        conn = self.session()
        record = {"type": "op", "op": kind, "actor": self.name, **fields}
        record["start"] = time.time()
        try:
            record.update(statement(conn) or {})
            record["outcome"] = "ok"
        except psycopg.OperationalError as e:
            # a lost or terminated session (AdminShutdown is one), a deadlock
            # or a cancel: whether it committed is not known from here
            record["outcome"], record["error"] = "unknown", str(e).splitlines()[0] if str(e) else type(e).__name__
        except psycopg.Error as e:
            record["outcome"], record["error"] = "error", str(e).splitlines()[0]
        record["end"] = time.time()
        if record["outcome"] == "ok" and "xid" in record:
            try:
                # by the server's clock, when it wrote the commit record (track_commit_timestamp)
                record["committed_at"] = conn.execute(
                    "SELECT extract(epoch FROM pg_xact_commit_timestamp(%s::xid))::float8", (record["xid"],)).fetchone()[0]
            except psycopg.Error:
                pass  # the session died after the commit: `end` still bounds it
        if conn.broken or conn.closed:
            self.conn = None
        self.soak.history.write(record)
        return record

    def pause(self, mean):
        self.soak.stopping.wait(self.rng.expovariate(1 / mean))


class Stop(Exception):
    pass


class Soak:
    def __init__(self, args):
        self.args = args
        self.seed, self.duration = args.seed, args.duration
        self.long = args.standby
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.history = History(os.path.join(self.out, "history.jsonl"))
        self.zone = noon_zone()
        self.tz = ZoneInfo(self.zone)
        self.clusters = Clusters(self, ["soak_a", "soak_b"] if self.long else ["soak_a"], self.zone)
        self.stopping = threading.Event()
        self.draining = False
        self.day_lock = threading.Lock()
        self.sim_day = AS_OF
        # one simulated day every this many seconds: at most about 120 days
        # in all, so that the simulated calendar stays in the past
        # (set_last_contact refuses dates after today)
        self.day_seconds = max(3.0, self.duration / 120)
        # contacts per simulated day as in the short mode (3 s a day), whatever
        # the day's length: at the short mode's rate a longer day would give
        # every assignment a contact every day or two, and nothing would
        # ever be due
        self.contact_pace = self.day_seconds / 3.0
        self.mentors = ASSIGNMENTS // 4
        self.notifiers = {}
        self.receiver = None
        self.threads = []

    # -- the pieces ---------------------------------------------------------

    def pair(self, a):
        """(mentor_id, contact_id) of assignment a, as app.seed makes them."""
        return 1000 + 1 + (a % self.mentors), 10000000 + a

    def occurred_at(self, rng, day):
        """An instant on `day` in followup.timezone (so its local date is `day`)."""
        local = datetime.combine(day, dtime(12, 0), self.tz) + timedelta(minutes=rng.randint(-240, 240))
        return local.isoformat()

    def today_sim(self):
        with self.day_lock:
            return self.sim_day

    def setup_database(self):
        info = self.clusters.conninfo()
        with psycopg.connect(info.replace("dbname=soak", "dbname=postgres"), autocommit=True) as c:
            c.execute("CREATE DATABASE soak")
        with psycopg.connect(info, autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_followup")
            with open(os.path.join(REPO, "demo", "app.sql")) as f:
                c.execute(f.read())
            c.execute("ALTER TABLE app.activities ADD COLUMN external_id text UNIQUE")
            c.execute("SELECT app.seed(%s, %s)", (ASSIGNMENTS, AS_OF))
            c.execute("""SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
                             created_column => 'created_at', coordinator_column => 'coordinator_id',
                             organization_column => 'organization', active_when => $$status = 'active'$$,
                             payload_columns => '{organization,contact_id}')""")
            c.execute("SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}')")
            # escalations and a reminder limit for some organizations, the default for the rest
            c.execute("""INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days,
                                                        escalate_after_days, max_reminders)
                         SELECT 'org-' || lpad(g::text, 2, '0'), 10, 5, 21, NULL FROM generate_series(1, 5) g
                         UNION ALL
                         SELECT 'org-' || lpad(g::text, 2, '0'), 14, 7, NULL, 3 FROM generate_series(6, 8) g""")
            # the app's roles, one per registration path (as in tests/integration/kind_*.sh)
            for role, extra in (("soak_mentor", ""), ("soak_proxy", ""), ("soak_importer", ""),
                                ("soak_coordinator", "GRANT UPDATE ON app.activities TO soak_coordinator;")):
                c.execute(f"CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA app TO {role};"
                          f"GRANT SELECT, INSERT ON app.activities TO {role}; {extra}")
            # the notifier's role, with the README's grants only
            c.execute("""CREATE ROLE soak_notifier LOGIN;
                         GRANT USAGE ON SCHEMA followup TO soak_notifier;
                         GRANT EXECUTE ON FUNCTION followup.claim(text, int, interval),
                               followup.claim_digest(text, int, interval), followup.ack(uuid, bigint[]),
                               followup.fail(uuid, bigint, text, interval), followup.release(uuid, bigint[])
                            TO soak_notifier""")
            pairs = c.execute("SELECT count(*) FROM app.assignments WHERE (mentor_id, contact_id) <> "
                              "(1001 + id %% %s, 10000000 + id)", (self.mentors,)).fetchone()[0]
            assert pairs == 0, "app.seed no longer makes the pairs the soak computes"

    def start_receiver(self):
        self.control = os.path.join(self.out, "webhook-control.json")
        self.set_webhook({})
        port_file = os.path.join(self.out, "webhook.port")
        self.receiver = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "receiver.py"), "--port-file", port_file,
             "--log", os.path.join(self.out, "requests.jsonl"), "--control", self.control,
             "--seed", str(self.seed), "--hang", str(HANG_SECONDS)],
            stderr=open(os.path.join(self.out, "receiver.err"), "a"))
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.1)
        with open(port_file) as f:
            self.webhook_url = f"http://127.0.0.1:{f.read().strip()}/reminders"

    def set_webhook(self, chances):
        """The receiver's fault chances (receiver.py --control)."""
        base = {} if self.draining else {"p500": 0.01, "phang": 0.003, "pclose": 0.005}
        base.update(chances)
        with open(self.control + ".tmp", "w") as f:
            json.dump(base, f)
        os.replace(self.control + ".tmp", self.control)

    # -- notifiers ------------------------------------------------------------

    def start_notifier(self, slot):
        state = self.notifiers[slot]
        state["incarnation"] += 1
        consumer = f"{slot}.{state['incarnation']}"
        digest = slot.startswith("d")
        cmd = [self.args.notifier, "--database", self.clusters.conninfo("soak_notifier", consumer),
               "--webhook-url", self.webhook_url, "--consumer", consumer,
               "--batch-size", "5" if digest else "25", "--lease", f"{LEASE_SECONDS} seconds",
               "--request-timeout", f"{REQUEST_TIMEOUT}s", "--poll-interval", "1s"] + (["--digest"] if digest else [])
        log = open(os.path.join(self.out, f"notifier-{slot}.log"), "a")
        state["proc"] = subprocess.Popen(cmd, stdout=log, stderr=log)
        state["consumer"] = consumer
        self.history.write({"type": "notifier_start", "t": time.time(), "slot": slot, "consumer": consumer,
                            "pid": state["proc"].pid, "digest": digest, "lease": LEASE_SECONDS,
                            "timeout": REQUEST_TIMEOUT})

    def supervise_notifiers(self):
        """Restarts a notifier that exited by itself (e.g. it could not
        connect at start-up while the server was down)."""
        while not self.stopping.is_set() or self.draining:
            for slot, state in self.notifiers.items():
                with state["lock"]:
                    proc = state["proc"]
                    if proc is not None and proc.poll() is not None and not state["stopped"]:
                        self.history.write({"type": "notifier_exit", "t": time.time(), "consumer": state["consumer"],
                                            "code": proc.returncode})
                        time.sleep(1)
                        self.start_notifier(slot)
            if self.notifiers_stopped:
                return
            time.sleep(0.2)

    def kill_notifier(self, rng):
        slot = rng.choice(sorted(self.notifiers))
        state = self.notifiers[slot]
        with state["lock"]:
            proc = state["proc"]
            proc.kill()
            proc.wait()
            t = time.time()
            consumer = state["consumer"]
            time.sleep(rng.uniform(0.2, 1.5))
            self.start_notifier(slot)
        return {"kind": "sigkill_notifier", "t": t, "consumer": consumer}

    # -- load -------------------------------------------------------------------

    def contact_writer(self, path):
        """An app role logging contacts on one registration path."""
        role = {"direct": "soak_mentor", "proxy": "soak_proxy", "bulk": "soak_importer",
                "coordinator_proxy": "soak_coordinator"}[path]
        actor = Actor(self, path, role)
        rng = actor.rng
        while not self.stopping.is_set():
            day = self.today_sim()
            # now and then a contact logged late, dated a few days back
            dated = day - timedelta(days=rng.choice([0, 0, 0, 0, 1, 3, 9]))
            if path in ("direct", "proxy"):
                a = rng.randint(1, ASSIGNMENTS)
                m, c = self.pair(a)
                at = self.occurred_at(rng, dated)
                actor.op("contact", lambda s: {"xid": s.execute(
                    "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration) VALUES (%s, %s, %s, %s) "
                    f"RETURNING {XID}", (m, c, at, path)).fetchone()[0]}, path=path, assignments=[a], date=dated.isoformat())
                actor.pause(0.12 * self.contact_pace)
            elif path == "bulk":
                group = sorted(rng.sample(range(1, ASSIGNMENTS + 1), rng.randint(5, 40)))
                rows = [(*self.pair(a), self.occurred_at(rng, dated), "bulk") for a in group]
                if rng.random() < 0.5:
                    def insert_select(s):
                        return {"xid": s.execute(
                            "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration) "
                            "SELECT m, c, at::timestamptz, r FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
                            f"AS v(m, c, at, r) RETURNING {XID}",
                            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
                        ).fetchone()[0]}
                    actor.op("contact", insert_select, path=path, how="insert_select", assignments=group,
                             date=dated.isoformat())
                else:
                    def copy(s):
                        with s.transaction():  # COPY returns no rows: its transaction id in the same transaction
                            with s.cursor().copy("COPY app.activities (mentor_id, contact_id, occurred_at, registration) "
                                                 "FROM STDIN") as cp:
                                for r in rows:
                                    cp.write_row(r)
                            return {"xid": s.execute(f"SELECT {XID}").fetchone()[0]}
                    actor.op("contact", copy, path=path, how="copy", assignments=group, date=dated.isoformat())
                actor.pause(0.8 * self.contact_pace)
            else:
                # the coordinator's CRM upserts by its own id: a new row, or
                # the update part moving an existing one to the new date
                a = rng.randint(1, ASSIGNMENTS)
                m, c = self.pair(a)
                at = self.occurred_at(rng, day)
                ext = f"crm-{a}-{rng.randint(0, 2)}"
                actor.op("contact", lambda s: {"xid": s.execute(
                    "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, external_id) "
                    "VALUES (%s, %s, %s, 'coordinator_proxy', %s) "
                    "ON CONFLICT (external_id) DO UPDATE SET occurred_at = greatest(app.activities.occurred_at, EXCLUDED.occurred_at) "
                    f"RETURNING {XID}", (m, c, at, ext)).fetchone()[0]}, path=path, assignments=[a], date=day.isoformat())
                actor.pause(0.25 * self.contact_pace)

    def app_writer(self):
        """The app itself: corrects and deletes activities (the recompute
        paths), closes and reopens assignments."""
        actor = Actor(self, "app")
        rng = actor.rng
        latest = "(SELECT x.id FROM app.activities x WHERE (x.mentor_id, x.contact_id) = (%s, %s) " \
                 "ORDER BY x.occurred_at DESC LIMIT 1)"
        while not self.stopping.is_set():
            a = rng.randint(1, ASSIGNMENTS)
            m, c = self.pair(a)
            kind = rng.choices(["activity_update", "activity_delete", "close", "reopen"], [3, 2, 2, 2])[0]
            if kind == "activity_update":
                days = rng.randint(1, 20)
                actor.op(kind, lambda s: {"changed": s.execute(
                    f"UPDATE app.activities SET occurred_at = occurred_at - make_interval(days => %s) WHERE id = {latest}",
                    (days, m, c)).rowcount}, assignments=[a])
            elif kind == "activity_delete":
                actor.op(kind, lambda s: {"changed": s.execute(
                    f"DELETE FROM app.activities WHERE id = {latest}", (m, c)).rowcount}, assignments=[a])
            else:
                old, new = ("active", "closed") if kind == "close" else ("closed", "active")
                actor.op(kind, lambda s: {"changed": s.execute(
                    "UPDATE app.assignments SET status = %s WHERE id = %s AND status = %s", (new, a, old)).rowcount},
                    assignments=[a])
            actor.pause(0.3)

    def ops_writer(self):
        """Ops: corrections, snoozes and unsnoozes; mentors going away and
        coming back (set_away / end_away), a few at a time."""
        actor = Actor(self, "ops")
        rng = actor.rng
        away = []
        while not self.stopping.is_set():
            a = rng.randint(1, ASSIGNMENTS)
            kind = rng.choices(["set_last_contact", "snooze", "unsnooze", "away"], [3, 2, 2, 1])[0]
            if kind == "away":
                if len(away) < 15 and (not away or rng.random() < 0.5):
                    mentor = str(self.pair(a)[0])
                    # from today (followup.timezone, every organization's zone here) for
                    # 0 to 3 more days: away now, and still away when the soak ends unless ended
                    days = rng.randint(0, 3)
                    record = actor.op("set_away", lambda s: dict(zip(("xid", "from_day", "until_day"), s.execute(
                        f"SELECT {XID}, from_day::text, until_day::text FROM followup.set_away('mentor', %s, "
                        f"{TODAY}, {TODAY} + %s, 'soak: on a hike')", (mentor, days)).fetchone())),
                        recipient=f"mentor:{mentor}")
                    if record["outcome"] == "ok":
                        away.append(mentor)
                else:
                    mentor = away.pop(rng.randrange(len(away)))
                    actor.op("end_away", lambda s: {"ended": s.execute(
                        "SELECT followup.end_away('mentor', %s)", (mentor,)).fetchone()[0]},
                        recipient=f"mentor:{mentor}")
                actor.pause(0.35)
                continue
            if kind == "set_last_contact":
                day = self.today_sim() - timedelta(days=rng.randint(0, 5))
                actor.op(kind, lambda s: {"xid": s.execute(
                    f"SELECT {XID} FROM followup.set_last_contact(%s, %s, 'soak: phone call logged on paper')",
                    (str(a), day)).fetchone()[0]}, assignments=[a], date=day.isoformat())
            elif kind == "snooze":
                # open through the soak: until is a month after today (in followup.timezone)
                actor.op(kind, lambda s: s.execute(
                    f"SELECT followup.snooze(%s, {TODAY} + 30, 'soak: mentor on leave')", (str(a),)) and None,
                    assignments=[a])
            else:
                actor.op(kind, lambda s: {"changed": s.execute("SELECT followup.unsnooze(%s)", (str(a),)).fetchone()[0]},
                         assignments=[a])
            actor.pause(0.35)

    RUN_SQL = """SELECT run_id, status::text, as_of::text, reminders_enqueued, error, backend_pid,
                        extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8
                   FROM followup.run_now(%s::date)"""

    def run_now(self, actor, day):
        def run(s):
            r = s.execute(self.RUN_SQL, (day,)).fetchone()
            return {"run_id": r[0], "status": r[1], "as_of": r[2], "enqueued": r[3], "run_error": r[4],
                    "backend_pid": r[5], "started_at": r[6], "finished_at": r[7]}
        return actor.op("run_now", run, as_of=day.isoformat())

    def day_runner(self):
        """The simulated calendar: a new day, and a run as of it."""
        actor = Actor(self, "days")
        next_at = time.time()
        while not self.stopping.is_set():
            with self.day_lock:
                day = self.sim_day
            self.run_now(actor, day)
            next_at += self.day_seconds
            self.stopping.wait(max(0.0, next_at - time.time()))
            with self.day_lock:
                self.sim_day += timedelta(days=1)
            self.history.write({"type": "sim_day", "t": time.time(), "day": self.sim_day.isoformat()})

    def extra_runner(self, name):
        """More runs at once, as of today or a few days back."""
        actor = Actor(self, name)
        while not self.stopping.is_set():
            actor.pause(1.2)
            if not self.stopping.is_set():
                self.run_now(actor, self.today_sim() - timedelta(days=actor.rng.randint(0, 2)))

    def scheduler_driver(self):
        """Moves followup.run_at (ALTER SYSTEM + reload) to a minute coming
        soon, while the scheduler's day has not succeeded, so that
        scheduled runs happen during the soak; now and then terminates the
        scheduled run's worker, so that the day stays undone (more
        scheduled runs, catch-ups at restarts)."""
        actor = Actor(self, "scheduler")
        rng = actor.rng
        period = 45 if self.duration < 600 else 240
        while not self.stopping.is_set():
            try:
                conn = actor.session()
                now = time.time()
                # at least 15 s ahead: the next minute boundary that far off
                at = datetime.fromtimestamp(now + 15 + (60 - (now + 15) % 60), self.tz)
                # the README's definition ("The scheduler"): a run of the scheduler's
                # for the day, or for a later day, succeeded
                done = conn.execute("SELECT EXISTS (SELECT 1 FROM followup.runs WHERE status = 'succeeded' "
                                    f"AND trigger IN ('schedule', 'catch_up', 'retry') AND as_of >= {TODAY})").fetchone()[0]
                if not done:
                    with self.clusters.topology:
                        self.clusters.alter_system("followup.run_at", at.strftime("%H:%M"))
                    self.history.write({"type": "run_at", "t": time.time(), "run_at": at.strftime("%H:%M"),
                                        "due": at.timestamp()})
                    if rng.random() < 0.5:
                        self.stopping.wait(max(0.0, at.timestamp() - time.time()))
                        self.terminate_scheduled_run(actor)
            except (psycopg.Error, Stop):
                pass
            self.stopping.wait(period * rng.uniform(0.7, 1.3))

    def terminate_scheduled_run(self, actor):
        for _ in range(50):
            if self.stopping.is_set():
                return
            try:
                row = actor.session().execute(
                    """SELECT a.pid FROM pg_stat_activity a JOIN followup.runs r ON r.backend_pid = a.pid
                        WHERE a.backend_type = 'pg_followup run' AND r.status = 'running'
                          AND r.trigger IN ('schedule', 'catch_up', 'retry')""").fetchone()
                if row:
                    self.terminate(actor.session(), row[0], "scheduled_run")
                    return
            except psycopg.Error:
                return
            time.sleep(0.2)

    # -- faults ---------------------------------------------------------------

    def fault(self, record):
        record["type"] = "fault"
        self.history.write(record)

    def terminate(self, conn, pid, target):
        row = conn.execute("SELECT backend_type, application_name, state, left(query, 80) "
                           "FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        t = time.time()
        done = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        if done and row:
            self.fault({"kind": "terminate", "t": t, "target": target, "pid": pid, "backend_type": row[0],
                        "application_name": row[1], "state": row[2], "query": row[3]})
        return done

    TARGETS = {
        # runs' workers: scheduled and manual
        "run": "backend_type = 'pg_followup run'",
        # the notifiers' sessions: claims, acks, fails
        "notifier": "usename = 'soak_notifier'",
        # the app's sessions, mostly in a tracking statement
        "writer": "application_name IN ('soak-direct', 'soak-proxy', 'soak-bulk', 'soak-coordinator_proxy', 'soak-app')",
        "scheduler": "backend_type = 'pg_followup scheduler'",
    }

    def terminate_some(self, actor, target):
        """A backend of that kind, busy if one is (waiting up to 2 s for one)."""
        for _ in range(20):
            rows = actor.session().execute(
                f"SELECT pid FROM pg_stat_activity WHERE datname = 'soak' AND {self.TARGETS[target]} "
                "ORDER BY state = 'active' DESC, pid").fetchall()
            if rows:
                busy = rows[:1] if actor.rng.random() < 0.7 else [actor.rng.choice(rows)]
                self.terminate(actor.session(), busy[0][0], target)
                return
            time.sleep(0.1)

    def fault_plan(self):
        """The faults, when and what, drawn from the seed before the soak starts."""
        rng = random.Random(f"{self.seed}-faults")
        rates = {"terminate": 0.7, "sigkill_notifier": 1 / 20, "webhook": 1 / 14,
                 "shutdown": 1 / 50 if not self.long else 1 / 240}
        if self.long:
            rates["promote"] = 1 / 900
        plan = []
        for kind, rate in rates.items():
            t = rng.expovariate(rate)
            while t < self.duration - 5:
                plan.append((t, kind))
                t += rng.expovariate(rate)
        if self.long and not any(kind == "promote" for _, kind in plan):
            # a soak with a standby promotes it at least once
            plan.append((self.duration * rng.uniform(0.3, 0.7), "promote"))
        return sorted(plan)

    def fault_injector(self):
        actor = Actor(self, "faults")
        rng = actor.rng
        began = self.began
        storm_until = 0
        for offset, kind in self.fault_plan():
            while not self.stopping.is_set() and time.time() < began + offset:
                if storm_until and time.time() > storm_until:
                    self.set_webhook({})
                    storm_until = 0
                time.sleep(0.05)
            if self.stopping.is_set():
                break
            try:
                if kind == "terminate":
                    self.terminate_some(actor, rng.choices(["run", "notifier", "writer", "scheduler"],
                                                           [0.35, 0.25, 0.36, 0.04])[0])
                elif kind == "sigkill_notifier":
                    self.fault(self.kill_notifier(rng))
                elif kind == "webhook":
                    mode = rng.choice(["p500", "phang", "pclose"])
                    chance, seconds = rng.uniform(0.4, 0.8), rng.uniform(3, 6)
                    self.set_webhook({mode: chance})
                    storm_until = time.time() + seconds
                    self.history.write({"type": "webhook_storm", "t": time.time(), "mode": mode, "chance": chance,
                                        "seconds": seconds})
                elif kind == "shutdown":
                    record = self.clusters.restart_immediate(rng.uniform(0.5, 3))
                    self.fault({"kind": "shutdown", **record})
                elif kind == "promote":
                    record = self.clusters.promote()
                    if record:
                        self.fault({"kind": "promote", **record})
            except (psycopg.Error, Stop) as e:
                self.history.write({"type": "fault_skipped", "t": time.time(), "kind": kind, "error": str(e)[:200]})
                actor.conn = None
        self.set_webhook({})

    def watchdog(self):
        """Nodes that died by themselves come back (Clusters.revive)."""
        seen_running = time.time()
        while not self.stopping.is_set() or self.draining:
            if self.monitor_done.wait(1):
                return
            if self.clusters.topology.locked():
                continue  # a fault of the soak's own is at work
            if all(self.clusters.running(n) for n in (self.clusters.primary, self.clusters.standby) if n):
                seen_running = time.time()
            elif time.time() - seen_running > 3:
                record = self.clusters.revive(seen_running)
                if record:
                    self.fault(record)

    def monitor(self):
        """The scheduler's pid, whenever it changes: a run skipped because
        some process held the run lock names that process."""
        actor = Actor(self, "monitor")
        last = None
        while not self.stopping.is_set() or self.draining:
            try:
                row = actor.session().execute("SELECT array_agg(pid ORDER BY pid) FROM pg_stat_activity "
                                              "WHERE backend_type = 'pg_followup scheduler'").fetchone()
                if row[0] != last:
                    last = row[0]
                    self.history.write({"type": "scheduler_pid", "t": time.time(), "pids": last or []})
            except (psycopg.Error, Stop):
                actor.conn = None
            if self.monitor_done.wait(0.5):
                return

    # -- the whole soak -----------------------------------------------------------

    def thread(self, target, *args):
        t = threading.Thread(target=self.guard, args=(target, *args), daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def guard(self, target, *args):
        try:
            target(*args)
        except Stop:
            pass
        except Exception as e:  # a harness bug must not pass for a quiet soak
            self.history.write({"type": "harness_error", "t": time.time(), "where": target.__name__,
                                "error": repr(e)})
            raise

    def run(self):
        self.history.write({"type": "soak", "t": time.time(), "seed": self.seed, "duration": self.duration,
                            "standby": self.long, "timezone": self.zone, "as_of": AS_OF.isoformat(),
                            "assignments": ASSIGNMENTS})
        self.clusters.start()
        self.setup_database()
        if self.long:
            self.clusters.attach_standby()
        self.start_receiver()
        self.notifiers_stopped = False
        self.monitor_done = threading.Event()
        for slot in ("n1", "n2", "d1"):
            self.notifiers[slot] = {"incarnation": 0, "proc": None, "lock": threading.Lock(), "stopped": False}
            self.start_notifier(slot)
        self.began = time.time()
        supervisor = threading.Thread(target=self.supervise_notifiers, daemon=True)
        supervisor.start()
        monitor = self.thread(self.monitor)
        self.thread(self.watchdog)
        load = [self.thread(self.contact_writer, p) for p in CONTACT_PATHS]
        load += [self.thread(self.app_writer), self.thread(self.ops_writer), self.thread(self.day_runner),
                 self.thread(self.extra_runner, "runs1"), self.thread(self.extra_runner, "runs2"),
                 self.thread(self.scheduler_driver), self.thread(self.fault_injector)]
        print(f"soak: seed {self.seed}, {self.duration} s{' with a standby' if self.long else ''}, "
              f"history in {self.out}", flush=True)
        self.stopping.wait(self.duration)
        self.drain(load, supervisor, monitor)

    def drain(self, load, supervisor, monitor):
        """Faults and load stop; the system is left to finish what it has."""
        self.draining = True
        self.stopping.set()
        self.history.write({"type": "drain", "t": time.time()})
        for t in load:
            t.join(120)
        self.set_webhook({})
        self.clusters.up.wait(60)
        actor = Actor(self, "final")
        # the final run, as of the last simulated day, once nothing writes:
        # afterwards nothing may be due that is not in the outbox
        final_day = self.today_sim()
        for _ in range(30):
            record = self.run_now(actor, final_day)
            if record.get("status") == "succeeded":
                break
            time.sleep(1)
        s = actor.session()
        preview = s.execute("SELECT count(*) FROM followup.preview(%s)", (final_day,)).fetchone()[0]
        self.history.write({"type": "final_run", "t": time.time(), "run_id": record.get("run_id"),
                            "status": record.get("status"), "as_of": final_day.isoformat(), "preview_after": preview})
        # until nothing is claimable or claimed (retries in backoff stay pending)
        deadline = time.time() + (90 if self.duration < 600 else 180)
        while time.time() < deadline:
            left = s.execute("SELECT (SELECT count(*) FROM followup.claimable) + "
                             "(SELECT count(*) FROM followup.outbox WHERE status = 'claimed') + "
                             "(SELECT count(*) FROM followup.runs WHERE status = 'running')").fetchone()[0]
            if left == 0:
                break
            time.sleep(1)
        self.history.write({"type": "quiet", "t": time.time(), "left": left})
        self.notifiers_stopped = True
        supervisor.join(5)
        for slot, state in self.notifiers.items():
            with state["lock"]:
                state["stopped"] = True
                state["proc"].send_signal(signal.SIGTERM)
                code = state["proc"].wait(30)
                self.history.write({"type": "notifier_stop", "t": time.time(), "consumer": state["consumer"],
                                    "code": code})
        self.monitor_done.set()
        monitor.join(5)
        self.receiver.send_signal(signal.SIGTERM)
        self.receiver.wait(10)
        self.snapshot(s)
        self.slow_claims()
        self.clusters.stop_all()

    def snapshot(self, s):
        """final.json: the database as the checker reads it."""
        def rows(sql):
            cur = s.execute(sql)
            names = [d.name for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        epoch = lambda c: f"extract(epoch FROM {c})::float8 AS {c}"  # noqa: E731
        final = {
            "outbox": rows(f"""SELECT message_id, run_id, assignment_id, cycle_start::text, kind::text, sequence,
                                      recipient_role::text, recipient_id, status::text, attempts, lease_id::text,
                                      claimed_by, last_error, cancel_reason, {epoch('enqueued_at')},
                                      {epoch('visible_at')}, {epoch('delivered_at')}, {epoch('cancelled_at')}
                                 FROM followup.outbox ORDER BY message_id"""),
            "runs": rows(f"""SELECT run_id, trigger::text, status::text, as_of::text, reminders_enqueued,
                                    duplicates_suppressed, error, backend_pid, {epoch('started_at')},
                                    {epoch('finished_at')},
                                    -- a finished run's row was last written by the transaction that
                                    -- enqueued its messages: when they became visible (track_commit_timestamp)
                                    extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS committed_at
                               FROM followup.runs ORDER BY run_id"""),
            "verify": rows("SELECT * FROM followup.verify(100000)"),
            "health": rows("SELECT outbox_pending, outbox_dead, last_run_status FROM followup.health")[0],
            "alerts": rows(f"SELECT alert_id, kind::text, run_id, message, {epoch('raised_at')} FROM followup.alerts"),
            "away": rows(f"""SELECT recipient_role::text, recipient_id, from_day::text, until_day::text,
                                    {epoch('ended_at')} FROM followup.away ORDER BY away_id"""),
            "max_attempts": int(s.execute("SELECT current_setting('followup.max_attempts')").fetchone()[0]),
        }
        with open(os.path.join(self.out, "final.json"), "w") as f:
            json.dump(final, f, default=str)

    def slow_claims(self):
        """The longest claim the servers logged (log_min_duration_statement):
        how long a claim's own statement may run between its snapshot and
        the clock_timestamp() it stamps on a message."""
        longest, n = 0.0, 0
        pattern = re.compile(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*): (.*)")
        for path in self.clusters.server_logs():
            try:
                with open(path, errors="replace") as f:
                    for line in f:
                        m = pattern.search(line)
                        if m and "followup.claim" in m.group(2):
                            longest, n = max(longest, float(m.group(1)) / 1000), n + 1
            except OSError:
                pass
        self.history.write({"type": "slow_claims", "t": time.time(), "count": n, "longest": longest})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--notifier", required=True)
    parser.add_argument("--standby", action="store_true")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        soak.run()
    finally:
        for state in soak.notifiers.values():
            if state["proc"] and state["proc"].poll() is None:
                state["proc"].kill()
        if soak.receiver and soak.receiver.poll() is None:
            soak.receiver.kill()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The soak's webhook receiver (tests/soak/run.sh): a real HTTP/1.1 server on
127.0.0.1 that the reference notifiers POST to, recording every request and
answering it with a fault now and then.

Each request is one JSON line in --log, written once its fate is known:

    {"type": "request", "n": 17, "t_recv": ..., "t_done": ..., "key": "...",
     "ids": [1187, 1190], "digest": true, "consumer": "n2.1",
     "messages": [{"id": 1187, "assignment_id": "42", "cycle_start": "2026-06-01",
                   "kind": "reminder", "sequence": 2, "visible_at": ..., "lease_id": "..."}],
     "answer": 200 | 500 | "hang" | "close", "completed": true, "check": "ok"}

Times are seconds since the epoch on this machine's clock (the database
server's clock: same machine). t_recv: the whole request has been read;
t_done: the answer has been written to the socket (for "hang" and "close":
the connection was closed without an answer). `completed` is false when
writing the answer failed (the client was gone): such a 200 was not
delivered. `visible_at` is each message's outbox row as the claim that
handed it out left it: clock_timestamp() of that claim's UPDATE plus the
consumer's lease (src/outbox.rs), so the checker recovers when the claim
ran. `check` is the well-formedness verdict of tests/lib/webhook.py (the
notifier tests' receiver): the key must be made of the body's parts, a
digest's key and ids must match its messages.

Faults come from --control, a JSON file the soak rewrites (read again when
it changes): {"p500": 0.01, "phang": 0.005, "pclose": 0.005} are the chances
that a request is answered 500, held past the notifier's timeout (--hang
seconds) and then closed unanswered, or closed at once unanswered. A few
healthy answers also close their connection (Connection: close) so that the
notifiers keep opening new ones. The draws come from --seed.
"""
import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from webhook import check, check_digest  # noqa: E402  (the notifier tests' well-formedness checks)

lock = threading.Lock()
counter = 0


def epoch(text):
    """A timestamptz as the outbox row's JSON has it, in seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp() if text else None


class Control:
    """The fault chances, re-read when the control file changes."""

    def __init__(self, path):
        self.path, self.mtime, self.chances = path, None, {}

    def get(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self.mtime:
                with open(self.path) as f:
                    self.chances = json.load(f)
                self.mtime = mtime
        except (OSError, ValueError):
            pass  # keep the last good one (the soak replaces the file atomically)
        return self.chances


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        global counter
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        t_recv = time.time()
        key = self.headers.get("Idempotency-Key", "-")
        digest_ids = self.headers.get("X-Followup-Message-Ids")
        if digest_ids is not None:
            ids = digest_ids.split(",")
            verdict = check_digest(self, body, ids, key)
        else:
            ids = [self.headers.get("X-Followup-Message-Id", "-")]
            verdict = check(self, body, ids[0], key)
        try:
            parsed = json.loads(body)
            rows = parsed.get("messages", []) if digest_ids is not None else [parsed]
        except (ValueError, AttributeError):
            rows = []
        messages = [{"id": r.get("message_id"), "assignment_id": r.get("assignment_id"),
                     "cycle_start": r.get("cycle_start"), "kind": r.get("kind"), "sequence": r.get("sequence"),
                     "visible_at": epoch(r.get("visible_at")), "lease_id": r.get("lease_id"),
                     "claimed_by": r.get("claimed_by")} for r in rows if isinstance(r, dict)]
        server = self.server
        with lock:
            counter += 1
            n = counter
            chances = server.control.get()
            draw = server.rng.random()
            close_healthy = server.rng.random() < 0.03
        if verdict != "ok":
            answer = 400
        elif draw < chances.get("p500", 0):
            answer = 500
        elif draw < chances.get("p500", 0) + chances.get("phang", 0):
            answer = "hang"
        elif draw < chances.get("p500", 0) + chances.get("phang", 0) + chances.get("pclose", 0):
            answer = "close"
        else:
            answer = 200
        completed = True
        if answer in ("hang", "close"):
            if answer == "hang":
                time.sleep(server.hang)  # past the notifier's --request-timeout
            self.close_connection = True
            completed = False
        else:
            text = b"ok" if answer == 200 else (b"injected failure" if verdict == "ok" else verdict.encode())
            try:
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                if close_healthy:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(text)
                self.wfile.flush()
            except OSError:
                completed = False
                self.close_connection = True
        record = {"type": "request", "n": n, "t_recv": t_recv, "t_done": time.time(), "key": key,
                  "ids": [int(i) if i.isdigit() else i for i in ids], "digest": digest_ids is not None,
                  "consumer": messages[0]["claimed_by"] if messages else None, "messages": messages,
                  "answer": answer, "completed": completed, "check": verdict}
        with lock:
            server.log.write(json.dumps(record) + "\n")
            server.log.flush()

    def log_message(self, format, *args):
        pass  # the JSON log is the record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--hang", type=float, required=True, help="seconds a hung request is held")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    server.control, server.rng, server.hang = Control(args.control), random.Random(args.seed), args.hang
    server.log = open(args.log, "a")

    def stop(*_):
        with lock:
            server.log.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A webhook for the notifier's integration tests (tests/integration/notifier*.sh).

A real HTTP/1.1 server on 127.0.0.1 (an OS-chosen port, written to --port-file)
that records every request and answers as a rules file says. Written in Python's
standard library on purpose: an HTTP implementation independent of the
notifier's. Connections are kept alive unless the client asks otherwise (or
--close: every answer closes its connection). With --tls-cert and --tls-key it
speaks HTTPS (TLS from Python's ssl module).

Rules (--rules, re-read on every request, so a test can change them while the
server runs), one per line, '#' starts a comment:

    <message_id|*> status <code> [<times>]   answer <code> (body "injected failure")
    <message_id|*> hang [<times>]            read the request, never answer (until the client
                                             closes the connection)
    <message_id|*> delay <seconds> [<times>] wait, then answer 200
    <message_id|*> jitter <min> <max> [<times>]  wait a random time between min and max
                                             seconds, then answer 200: answers come back
                                             in another order than the requests went out
    <message_id|*> hold <file> [<times>]     wait until <file> exists, then answer 200 (a
                                             test decides when a request in flight ends)

<message_id> is the X-Followup-Message-Id header. With <times>, a rule applies
to that many requests of the message (its 1st to <times>th); without, to all.
Rules naming the message come before '*' rules; the first that applies wins;
no rule: 200 at once.

Log (--log): one tab-separated line per request, written when the request has
been read and before it is answered:

    <n> <message_id> <idempotency_key> <answer> <nth> <check> <connection> <lease_id>
    <received> <in_flight>

n counts all requests; answer is the status code decided, or 'hang'; nth
counts this message's requests; check is 'ok' when the request is well-formed
(POST, Content-Type application/json, a JSON object body whose message_id is
the header's and whose assignment_id/cycle_start/kind/sequence make the
Idempotency-Key), else what is wrong; connection numbers the TCP connection
the request came on (1, 2, ... in the order they were accepted), so a test can
see connections being reused; lease_id is the one in the body (the claim that
carried the request); received is when it was read (Unix epoch seconds);
in_flight counts the requests being answered at that moment, this one
included (hanging ones left out: their end is the client's timeout, which the
server does not see at once), so it never exceeds what the client has in
flight. When a request has been answered, '<n> <answered>' (epoch seconds,
after the answer was written) is appended to the file <log>.answered.

Without --log nothing is written per request (the benchmark). On SIGTERM the
number of requests served is written to the file 'count' beside --port-file.
"""
import argparse
import json
import itertools
import os
import random
import select
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
requests_seen = 0
answering = 0
per_message = {}
connection_numbers = itertools.count(1)


def load_rules(path):
    rules = []
    try:
        with open(path) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if words:
                    rules.append(words)
    except FileNotFoundError:
        pass
    return rules


def decide(rules, message_id, nth):
    """(answer, delay): answer is an int status code or 'hang'; delay is
    seconds to wait, or the path of a file to wait for."""
    ordered = [r for r in rules if r[0] == message_id] + [r for r in rules if r[0] == "*"]
    for who, action, *args in ordered:
        if action == "status":
            code, times = int(args[0]), args[1:]
            answer, delay = code, 0.0
        elif action == "hang":
            times = args
            answer, delay = "hang", 0.0
        elif action == "delay":
            seconds, times = float(args[0]), args[1:]
            answer, delay = 200, seconds
        elif action == "jitter":
            low, high, times = float(args[0]), float(args[1]), args[2:]
            answer, delay = 200, random.uniform(low, high)
        elif action == "hold":
            times = args[1:]
            answer, delay = 200, args[0]
        else:
            raise ValueError(f"unknown rule action {action!r}")
        if times and nth > int(times[0]):
            continue
        return answer, delay
    return 200, 0.0


def fnv1a64_ids(ids):
    """The notifier's digest key hash: 64-bit FNV-1a over the ids as little-endian i64."""
    h = 0xcbf29ce484222325
    for i in ids:
        for byte in int(i).to_bytes(8, "little", signed=True):
            h ^= byte
            h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def lease_of(body):
    """The lease_id in a request's body (a message's, or a digest's first), or '-'."""
    try:
        row = json.loads(body)
    except ValueError:
        return "-"
    if isinstance(row, dict) and isinstance(row.get("messages"), list) and row["messages"]:
        row = row["messages"][0]
    return str(row.get("lease_id", "-")) if isinstance(row, dict) else "-"


def check_digest(handler, body, ids, key):
    """A digest: one recipient and all of its messages (X-Followup-Message-Ids)."""
    if handler.headers.get("Content-Type") != "application/json":
        return f"content-type {handler.headers.get('Content-Type')}"
    try:
        digest = json.loads(body)
    except ValueError:
        return "body is not JSON"
    messages = digest.get("messages") if isinstance(digest, dict) else None
    if not isinstance(messages, list):
        return "body is not a digest"
    if [str(m.get("message_id")) for m in messages] != ids:
        return f"body messages {[m.get('message_id') for m in messages]} != header {ids}"
    for m in messages:
        if (m.get("recipient_role"), m.get("recipient_id")) != (digest.get("recipient_role"), digest.get("recipient_id")):
            return f"message {m.get('message_id')} is for another recipient"
    expected = f"digest/{digest.get('recipient_role')}/{digest.get('recipient_id')}/{fnv1a64_ids(ids)}"
    if key != expected:
        return f"key {key} != {expected}"
    return "ok"


def check(handler, body, message_id, key):
    if handler.command != "POST":
        return f"method {handler.command}"
    if handler.headers.get("Content-Type") != "application/json":
        return f"content-type {handler.headers.get('Content-Type')}"
    try:
        row = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(row, dict):
        return "body is not a JSON object"
    if str(row.get("message_id")) != message_id:
        return f"body message_id {row.get('message_id')} != header {message_id}"
    expected = f"{row.get('assignment_id')}/{row.get('cycle_start')}/{row.get('kind')}/{row.get('sequence')}"
    if key != expected:
        return f"key {key} != {expected}"
    return "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The status line and headers, then the body, are separate writes: without
    # TCP_NODELAY the body would wait for the client's delayed ACK (40 ms) on a
    # kept-alive connection.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.connection_number = next(connection_numbers)

    def handle(self):
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                return  # e.g. the client refused our certificate
        super().handle()

    def do_POST(self):
        global requests_seen, answering
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        received = time.time()
        key = self.headers.get("Idempotency-Key", "-")
        digest_ids = self.headers.get("X-Followup-Message-Ids")
        if digest_ids is not None:
            # a digest: its messages, each logged on a line of its own; rules
            # by its first message
            ids = digest_ids.split(",")
            message_id = ids[0]
            verdict = check_digest(self, body, ids, key)
        else:
            message_id = self.headers.get("X-Followup-Message-Id", "-")
            ids = [message_id]
            verdict = check(self, body, message_id, key)
        lease_id = lease_of(body)
        with lock:
            requests_seen += 1
            n = requests_seen
            nth = per_message[message_id] = per_message.get(message_id, 0) + 1
            answer, delay = decide(load_rules(self.server.rules), message_id, nth)
            if verdict != "ok":
                answer = 400
            if answer != "hang":
                answering += 1
            if self.server.log:
                with open(self.server.log, "a") as log:
                    for logged in ids:
                        log.write(f"{n}\t{logged}\t{key}\t{answer}\t{nth}\t{verdict}"
                                  f"\t{self.connection_number}\t{lease_id}\t{received:.6f}\t{answering}\n")
        if answer == "hang":
            self.hang()
            return
        try:
            if isinstance(delay, str):
                while not os.path.exists(delay):
                    time.sleep(0.02)
            else:
                time.sleep(delay)
        finally:
            # Before the answer goes out: once the client has it, it may send
            # its next request (on another connection) at once.
            with lock:
                answering -= 1
        text = b"ok" if answer == 200 else (b"injected failure" if verdict == "ok" else verdict.encode())
        self.send_response(answer)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        if self.server.close_each:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(text)
        self.wfile.flush()
        if self.server.log:
            with lock, open(self.server.log + ".answered", "a") as log:
                log.write(f"{n}\t{time.time():.6f}\n")

    def hang(self):
        """Holds the connection without answering until the client gives up
        and closes it (its timeout), or 600 s. (A client waiting for an answer
        sends nothing more on the connection: anything readable is its end.)"""
        self.close_connection = True
        deadline = time.time() + 600
        while time.time() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:
                return

    do_GET = do_PUT = do_POST

    def log_message(self, format, *args):
        pass  # the log file above is the record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log")
    parser.add_argument("--rules", required=True)
    parser.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS with")
    parser.add_argument("--tls-key", help="its PEM private key")
    parser.add_argument("--close", action="store_true", help="close the connection after each answer")
    args = parser.parse_args()
    # A notifier with --concurrency N opens up to N connections at once: the
    # default listen backlog (5) would drop the others' SYNs, costing them a
    # second's retransmission.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.rules, server.log, server.close_each = args.rules, args.log, args.close
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake happens in the connection's own thread (Handler.handle),
        # so a client that refuses our certificate blocks no one.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    if args.log:
        open(args.log, "a").close()
        open(args.log + ".answered", "a").close()
    # SIGTERM: write the request count next to the port file, then exit
    count_file = os.path.join(os.path.dirname(os.path.abspath(args.port_file)), "count")

    def stop(*_):
        with open(count_file, "w") as f:
            f.write(f"{requests_seen}\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

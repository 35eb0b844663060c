#!/usr/bin/env python3
"""Overload of the release killkrill binary: what it answers, the memory it holds and
how fast /healthz stays, when offered more ingest than it can store and many large
bodies at once. See benches/README.md, section "Overload".

    python3 benches/overload/run.py            # target/release/killkrill
    OURS_BIN=/path/to/killkrill python3 benches/overload/run.py

Phases, on one fresh server (SQLite in a temporary directory, development defaults,
--no-grpc, WORKERS runtime threads, stdout to a file), all bodies NDJSON batches of LINES
log lines (about 2.75 MB at 10,000 lines) to POST /api/v1/logs with an ingest key:
  1. sustained: CALIBRATE s of CONNECTIONS closed-loop senders: the batches/s it stores.
  2. overload: OVERLOAD s of batches offered at FACTOR times that rate (open loop: each
     sent at its time on its own connection, whatever the answers before it).
  3. recovery: once the load stops, the time until one batch is stored again.
  4. burst: BURST batches sent at once.
  5. big: BIG bodies of BIG_BYTES (16.5 MB: over the 16 MiB limit) sent at once.
For each: answers counted as 2xx / 413 / 429 / 503 / other (a connection error counts as
other), peak RSS (VmHWM, reset through /proc/PID/clear_refs before the phase when allowed,
and the largest VmRSS sampled every 0.1 s), and the latency of GET /healthz sent every
0.02 s during the phase (p50, p99, max). The client runs on the same machine (its CPU
use is reported): the figures are of that machine, other builds included.

Environment: PHASES="1 2 3 4 5" (2 and 3 need 1), OURS_BIN, WORKERS=4, LINES=10000, CONNECTIONS=4, CALIBRATE=15, OVERLOAD=60,
FACTOR=2, BURST=40, BIG=40, BIG_BYTES=17301504, SERVER_ENV="" (extra NAME=VALUE pairs
for the server, e.g. "MAX_INFLIGHT_BODY_BYTES=33554432"). The report (markdown) goes to
stdout and benches/results/overload-<date>.md.
"""

import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("OURS_BIN", os.path.join(ROOT, "target/release/killkrill")))
WORKERS = int(os.environ.get("WORKERS", "4"))
LINES = int(os.environ.get("LINES", "10000"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "4"))
CALIBRATE = float(os.environ.get("CALIBRATE", "15"))
OVERLOAD = float(os.environ.get("OVERLOAD", "60"))
FACTOR = float(os.environ.get("FACTOR", "2"))
BURST = int(os.environ.get("BURST", "40"))
BIG = int(os.environ.get("BIG", "40"))
BIG_BYTES = int(os.environ.get("BIG_BYTES", str(16_500 * 1024 + 404 * 1024)))
PHASES = set(os.environ.get("PHASES", "1 2 3 4 5").split())
SERVER_ENV = dict(pair.split("=", 1) for pair in os.environ.get("SERVER_ENV", "").split())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir):
        self.port = free_port()
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{workdir}/killkrill.db", WORKERS=str(WORKERS), **SERVER_ENV)
        self.stdout = open(os.path.join(workdir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(
            [BIN, "--host", "127.0.0.1", "--port", str(self.port), "--no-grpc"],
            cwd=workdir, env=env, stdout=self.stdout, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("killkrill did not answer /healthz within 60 s")

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def reset_peak(self):
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as refs:
                refs.write("5")
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Phase:
    """Answers, RSS samples and /healthz latencies while it runs."""

    def __init__(self, server, name):
        self.server, self.name = server, name
        self.counts = {"2xx": 0, "413": 0, "429": 0, "503": 0, "other": 0}
        self.retry_after_missing = 0
        self.latencies = []
        self.health = []
        self.rss_max = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def __enter__(self):
        self.reset = self.server.reset_peak()
        self.cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.time()
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.probe)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.time() - self.t0
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        self.client_cpu = (cpu.ru_utime - self.cpu0.ru_utime) + (cpu.ru_stime - self.cpu0.ru_stime)
        self.done.set()
        for t in self.threads:
            t.join()
        self.hwm = self.server.kib("VmHWM")

    def sample(self):
        while not self.done.is_set():
            self.rss_max = max(self.rss_max, self.server.kib("VmRSS"))
            time.sleep(0.1)

    def probe(self):
        conn = None
        while not self.done.is_set():
            started = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn, ok = None, False
            self.health.append((time.time() - started) * 1000 if ok else float("inf"))
            time.sleep(0.02)

    def send(self, body, key, source_id):
        started = time.time()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=300)
        try:
            conn.request(
                "POST", f"/api/v1/logs?source_id={source_id}", body=body,
                headers={"Content-Type": "application/x-ndjson", "X-API-Key": key},
            )
            response = conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("Retry-After")
        except OSError:
            status, retry_after = 0, None
        finally:
            conn.close()
        kind = "2xx" if 200 <= status < 300 else str(status) if status in (413, 429, 503) else "other"
        with self.lock:
            self.counts[kind] += 1
            self.latencies.append(time.time() - started)
            if kind in ("429", "503") and retry_after is None:
                self.retry_after_missing += 1
        return kind

    def row(self):
        health = sorted(self.health)
        pct = lambda p: health[min(len(health) - 1, int(p * len(health)))] if health else float("nan")
        fmt = lambda ms: "no answer" if ms == float("inf") else f"{ms:.1f}"
        c = self.counts
        return (
            f"| {self.name} | {self.elapsed:.0f} | {c['2xx']} | {c['413']} | {c['429']} | {c['503']} | {c['other']} "
            f"| {self.retry_after_missing} | {self.hwm / 1024:.0f}{'' if self.reset else ' (lifetime)'} "
            f"| {self.rss_max / 1024:.0f} | {fmt(pct(0.5))} / {fmt(pct(0.99))} / {fmt(health[-1] if health else float('nan'))} "
            f"| {len(health)} | {self.client_cpu:.0f} |"
        )


def batch(mark):
    line = {"message": "GET /api/v1/orders/123 200 12ms user=alice " + "x" * 180, "level": "info",
            "labels": {"app": "bench", "mark": mark}}
    return "".join(json.dumps(dict(line, timestamp=1_767_225_600 + i * 0.001)) + "\n" for i in range(LINES)).encode()


def main():
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"{BIN} is missing: build it (cargo build --release --bin killkrill) or set OURS_BIN")
    workdir = tempfile.mkdtemp(prefix="killkrill-overload.")
    server = Server(workdir)
    rows = []
    try:
        status, body = server.request("POST", "/api/v1/auth/login", json.dumps({"username": "admin", "password": "admin123"}),
                                      {"Content-Type": "application/json"})
        token = json.loads(body)["access_token"]
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        _, body = server.request("POST", "/api/v1/sources", json.dumps({"name": "overload", "type": "http"}), auth)
        source_id = json.loads(body)["id"]
        _, body = server.request("POST", f"/api/v1/sources/{source_id}/keys", json.dumps({"name": "bench"}), auth)
        key = json.loads(body)["key"]
        body = batch("load")
        start_rss = server.kib("VmRSS")

        rate, recovery = float("nan"), float("nan")

        def sustained(phase):
            deadline = time.time() + CALIBRATE

            def loop():
                while time.time() < deadline:
                    phase.send(body, key, source_id)

            threads = [threading.Thread(target=loop) for _ in range(CONNECTIONS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        def overload(phase, offered):
            with ThreadPoolExecutor(max_workers=256) as pool:
                t0, n = time.time(), 0
                while time.time() - t0 < OVERLOAD:
                    pool.submit(phase.send, body, key, source_id)
                    n += 1
                    time.sleep(max(0.0, t0 + n / offered - time.time()))

        def at_once(phase, count, payload):
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(lambda _: phase.send(payload, key, source_id), range(count)))

        if "1" in PHASES:
            with Phase(server, f"1. sustained, {CONNECTIONS} closed-loop senders") as phase:
                sustained(phase)
            rows.append(phase.row())
            rate = max(phase.counts["2xx"] / phase.elapsed, 0.5)
            if "2" in PHASES:
                offered = rate * FACTOR
                with Phase(server, f"2. overload, {offered:.1f} batches/s offered ({FACTOR:g}x)") as phase:
                    overload(phase, offered)
                rows.append(phase.row())
            if "3" in PHASES:
                with Phase(server, "3. recovery: one batch after the load") as phase:
                    stopped = time.time()
                    while phase.send(body, key, source_id) != "2xx" and time.time() - stopped < 60:
                        time.sleep(0.1)
                    recovery = time.time() - stopped
                rows.append(phase.row())
        if "4" in PHASES:
            with Phase(server, f"4. burst, {BURST} batches at once") as phase:
                at_once(phase, BURST, body)
            rows.append(phase.row())
        if "5" in PHASES:
            with Phase(server, f"5. big, {BIG} bodies of {BIG_BYTES / 1e6:.1f} MB at once") as phase:
                at_once(phase, BIG, b"x" * BIG_BYTES)
            rows.append(phase.row())
        end_rss = server.kib("VmRSS")
    finally:
        server.stop()

    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    report = [
        f"# Overload, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- binary: `{BIN}` ({version}); WORKERS={WORKERS}; server env: {SERVER_ENV or 'defaults'}",
        f"- bodies: NDJSON batches of {LINES} lines, {len(body) / 1e6:.2f} MB; sustained rate {rate:.1f} batches/s;"
        f" recovery after the overload: {recovery:.2f} s to the first stored batch",
        f"- RSS at start {start_rss / 1024:.0f} MB, at the end {end_rss / 1024:.0f} MB; load average at the end {' '.join(load)}"
        f" ({os.cpu_count()} CPUs, shared with whatever else runs)",
        "",
        "| phase | s | 2xx | 413 | 429 | 503 | other | 429/503 without Retry-After | peak RSS MB (VmHWM) | max sampled RSS MB "
        "| /healthz ms p50 / p99 / max | probes | client CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(report) + "\n"
    print(text)
    results = os.path.join(ROOT, "benches/results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"overload-{time.strftime('%Y-%m-%d-%H%M%S')}.md"), "w") as out:
        out.write(text)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Soak test of issue 22: a steady mixed load for half an hour, memory and errors watched.

Usage: python3 tests/soak/run.py [--db sqlite|postgres] [--seconds N] [--scale X] [--seed N]

Starts the release binary on a free port with a fresh database, logs in as the
development admin, creates an API key and two sources with an ingest key each, then
offers a fixed rate of mixed requests (log and metric ingest on both sources, log
queries, PromQL instant and range queries, logins, API-key reads) from a few threads on
keep-alive connections, samples the server's RSS every 10 s, and at the end prints and
writes a JSON summary with PASS or FAIL against the goals: RSS at the end at most 1.10 x
RSS after the warm-up (5 minutes), no 5xx, every request answered. See
tests/soak/README.md.

Python 3.11 standard library only; psql for PostgreSQL. Exits 0 on PASS, 1 on FAIL, 2
when the run could not start.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "target", "soak")
PG_ADMIN_HOST = os.environ.get("KK_SOAK_PG_HOST", "127.0.0.1")
PG_ADMIN_PORT = int(os.environ.get("KK_SOAK_PG_PORT", "5432"))

# Requests a second of each kind at scale 1, and the threads that offer them (each on its
# own keep-alive connection). Log and metric ingest have one thread per source.
RATES = {
    "ingest_logs": 10.0,
    "ingest_metrics": 5.0,
    "log_query": 5.0,
    "promql_instant": 2.0,
    "promql_range": 1.0,
    "login": 1.0,
    "apikey_read": 5.0,
}
# Lines per log batch, at random between the two.
LOG_LINES = tuple(int(n) for n in os.environ.get("KK_SOAK_LOG_LINES", "100,500").split(","))
METRIC_HOSTS = 8  # hosts per source; with the routes below, 520 series per source
ROUTES = ["/", "/api/orders", "/api/users", "/api/cart", "/login", "/static"]
BUCKETS = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf"]
WORDS = ("request served cache miss upstream timeout connection refused retry user session "
         "checkout payment order inventory disk queue worker job started finished failed slow "
         "query index rebuild token expired websocket closed gc pause heartbeat shard replica").split()
LEVELS = [("info", 70), ("debug", 10), ("warning", 12), ("error", 7), ("critical", 1)]
APPS = ["nginx", "api", "worker", "scheduler", "auth"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=60):
    """One request on its own connection: (status, parsed JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw
    except http.client.HTTPException as e:
        raise OSError(f"http: {e!r}") from e
    finally:
        conn.close()


# ---------------------------------------------------------------------------- databases


class SqliteDb:
    kind = "sqlite"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kk_soak_db_")
        self.path = os.path.join(self.dir, "soak.db")
        self.url = "sqlite:///" + self.path

    def size(self):
        return sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir))

    def drop(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresDb:
    kind = "postgres"

    def __init__(self):
        self.name = f"kk_soak_{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {self.name}")
        self.url = f"postgresql://postgres@{PG_ADMIN_HOST}:{PG_ADMIN_PORT}/{self.name}"

    def psql(self, sql):
        r = subprocess.run(["psql", "-X", "-q", "-At", "-h", PG_ADMIN_HOST, "-p", str(PG_ADMIN_PORT),
                            "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def size(self):
        try:
            return int(self.psql(f"SELECT pg_database_size('{self.name}')"))
        except (Failed, ValueError):
            return None

    def drop(self):
        try:
            self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        except Failed as e:
            log(f"could not drop {self.name}: {e}")


# ---------------------------------------------------------------------------- the server


class Server:
    def __init__(self, binary, db_url, log_path, log_level):
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ)
        env.update({
            "FLASK_ENV": "development",
            "DATABASE_URL": db_url,
            "LOG_LEVEL": log_level,
            "DB_CONNECT_RETRY_SECONDS": "5",
        })
        self.workdir = tempfile.mkdtemp(prefix="kk_soak_run_")
        out = open(log_path, "wb")
        self.proc = subprocess.Popen([binary, "--no-grpc", "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"server exited with {self.proc.returncode} while starting; see {log_path}")
            try:
                if request(self.port, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failed(f"server not ready within 120 s; see {log_path}")

    def proc_status(self):
        """(VmRSS, VmHWM, RssAnon, RssFile, open descriptors, threads), sizes in KiB, or
        None once the process is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
            return (int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]),
                    int(fields["RssAnon"].split()[0]), int(fields["RssFile"].split()[0]), fds,
                    int(fields["Threads"]))
        except (OSError, KeyError, ValueError):
            return None

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def stop(self):
        """SIGTERM; the exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------- the load


class Setup:
    """The admin's token, an API key, two sources and an ingest key for each."""

    def __init__(self, port):
        status, body = request(port, "POST", "/api/v1/auth/login", {"username": "admin", "password": "admin123"})
        if status != 200:
            raise Failed(f"login: {status} {body}")
        self.token = body["access_token"]
        auth = {"Authorization": f"Bearer {self.token}"}
        status, body = request(port, "POST", "/api/v1/auth/api-keys", {"name": "soak"}, auth)
        if status != 201:
            raise Failed(f"create API key: {status} {body}")
        self.api_key = body["key"]
        self.sources = []  # (id, name, ingest key)
        for name in ("soak-web", "soak-batch"):
            status, body = request(port, "POST", "/api/v1/sources", {"name": name, "type": "http"}, auth)
            if status != 201:
                raise Failed(f"create source: {status} {body}")
            sid = body["id"]
            status, body = request(port, "POST", f"/api/v1/sources/{sid}/keys", {"name": "soak"}, auth)
            if status != 201:
                raise Failed(f"create ingest key: {status} {body}")
            self.sources.append((sid, name, body["key"]))


class Recorder:
    """Every request's (kind, start offset, latency, status or None), and the slots a
    lagging thread skipped."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples = []
        self.skipped = {}
        self.t0 = time.monotonic()

    def add(self, kind, started, latency, status):
        with self.lock:
            self.samples.append((kind, started - self.t0, latency, status))

    def skip(self, kind, n):
        with self.lock:
            self.skipped[kind] = self.skipped.get(kind, 0) + n


class Stream(threading.Thread):
    """One kind of request at a fixed rate, on one keep-alive connection. A thread that
    falls behind catches up at once, up to 5 s of slots; older slots are skipped (and
    counted), so the offered rate stays the configured one and a slow server shows as
    achieved < offered."""

    def __init__(self, name, kind, rate, make, port, recorder, rng, stop):
        super().__init__(name=name, daemon=True)
        self.kind, self.rate, self.make, self.port = kind, rate, make, port
        self.recorder, self.rng, self.stop_event = recorder, rng, stop
        self.conn = None

    def send(self, method, path, body, headers):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=90)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, raw
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return None, b""

    def run(self):
        interval = 1.0 / self.rate
        nxt = time.monotonic() + self.rng.uniform(0, interval)
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now < nxt:
                self.stop_event.wait(nxt - now)
                continue
            behind = int((now - nxt) / interval)
            if behind > 5 * self.rate:
                self.recorder.skip(self.kind, behind)
                nxt += behind * interval
            nxt += interval
            method, path, body, headers, check = self.make(self.rng)
            started = time.monotonic()
            status, raw = self.send(method, path, body, headers)
            latency = time.monotonic() - started
            if check and status is not None and 200 <= status < 300:
                status = check(raw, status)
            self.recorder.add(self.kind, started, latency, status)


class Traffic:
    """What each kind sends."""

    def __init__(self, setup):
        self.setup = setup
        self.counters = {}  # (source, host, route, code) -> running counter value
        self.lock = threading.Lock()
        self.bearer = {"Authorization": f"Bearer {setup.token}"}

    # -- ingest

    def log_batch(self, source_index):
        sid, _, key = self.setup.sources[source_index]

        def make(rng):
            n = rng.randint(*LOG_LINES)
            now = time.time()
            lines = []
            for _ in range(n):
                level = rng.choices([lv for lv, _ in LEVELS], [w for _, w in LEVELS])[0]
                words = " ".join(rng.choices(WORDS, k=rng.randint(4, 12)))
                lines.append({
                    "timestamp": round(now - rng.uniform(0, 2), 6),
                    "level": level,
                    "message": f"{words} req={uuid.UUID(int=rng.getrandbits(128)).hex[:16]} ms={rng.randint(1, 3000)}",
                    "hostname": f"host-{rng.randint(1, METRIC_HOSTS)}",
                    "application": rng.choice(APPS),
                    "attributes": {"user_id": rng.randint(1, 5000), "path": rng.choice(ROUTES)},
                    "labels": {"env": "soak", "zone": rng.choice(["a", "b", "c"])},
                })
            body = json.dumps({"source_id": sid, "logs": lines}).encode()
            return "POST", "/api/v1/logs", body, {"X-API-Key": key, "Content-Type": "application/json"}, \
                accepted_check(n)

        return make

    def metric_batch(self, source_index):
        sid, name, key = self.setup.sources[source_index]

        def make(rng):
            now = round(time.time(), 3)
            host = f"host-{rng.randint(1, METRIC_HOSTS)}"
            samples = []
            with self.lock:
                for route in ROUTES:
                    for code in ("200", "404", "500"):
                        k = (name, host, route, code)
                        self.counters[k] = self.counters.get(k, 0) + rng.randint(0, 50 if code == "200" else 3)
                        samples.append({"name": "soak_http_requests_total", "type": "counter",
                                        "labels": {"instance": f"{name}/{host}", "route": route, "code": code},
                                        "value": self.counters[k], "timestamp": now})
                    acc = 0
                    for le in BUCKETS:
                        k = (name, host, route, le)
                        acc += rng.randint(0, 10)
                        self.counters[k] = self.counters.get(k, 0) + acc
                        samples.append({"name": "soak_http_request_duration_seconds_bucket", "type": "counter",
                                        "labels": {"instance": f"{name}/{host}", "route": route, "le": le},
                                        "value": self.counters[k], "timestamp": now})
            for cpu in range(4):
                samples.append({"name": "soak_cpu_usage_ratio", "type": "gauge",
                                "labels": {"instance": f"{name}/{host}", "cpu": str(cpu)},
                                "value": rng.random(), "timestamp": now})
            samples.append({"name": "soak_queue_depth", "type": "gauge", "labels": {"instance": f"{name}/{host}"},
                            "value": rng.randint(0, 1000), "timestamp": now})
            body = json.dumps({"source_id": sid, "metrics": samples}).encode()
            return "POST", "/api/v1/metrics", body, {"X-API-Key": key, "Content-Type": "application/json"}, \
                accepted_check(len(samples))

        return make

    # -- reads

    def log_query(self, rng):
        sid = rng.choice(self.setup.sources)[0]
        since = int(time.time() - rng.choice([60, 300, 900]))
        params = [("limit", str(rng.choice([20, 50, 100])))]
        choice = rng.random()
        if choice < 0.3:
            params += [("source_id", sid), ("level", rng.choice(["error", "warning"])), ("since", str(since))]
        elif choice < 0.6:
            params += [("q", rng.choice(["timeout", "connection refused", "payment failed", "gc pause"])),
                       ("since", str(since))]
        elif choice < 0.8:
            params += [("source_id", sid), ("q", rng.choice(WORDS))]
        else:
            params += [("q", "req=" + uuid.UUID(int=rng.getrandbits(128)).hex[:6])]
        return "GET", "/api/v1/logs?" + urlencode(params), None, self.bearer, None

    def promql_instant(self, rng):
        q = rng.choice([
            'sum by (route) (rate(soak_http_requests_total{code="500"}[5m]))',
            "histogram_quantile(0.99, sum by (le) (rate(soak_http_request_duration_seconds_bucket[5m])))",
            "avg by (instance) (soak_cpu_usage_ratio)",
            "topk(3, max_over_time(soak_queue_depth[10m]))",
            'sum(increase(soak_http_requests_total{route="/api/orders"}[1m]))',
        ])
        params = [("query", q)]
        return "GET", "/prometheus/api/v1/query?" + urlencode(params), None, self.bearer, None

    def promql_range(self, rng):
        end = time.time()
        span, step = rng.choice([(900, "15s"), (3600, "60s"), (1800, "30s")])
        q = rng.choice([
            "sum by (instance) (rate(soak_http_requests_total[1m]))",
            "avg(soak_cpu_usage_ratio)",
            "histogram_quantile(0.9, sum by (le, route) (rate(soak_http_request_duration_seconds_bucket[2m])))",
        ])
        params = [("query", q), ("start", f"{end - span:.3f}"), ("end", f"{end:.3f}"), ("step", step)]
        return "GET", "/prometheus/api/v1/query_range?" + urlencode(params), None, self.bearer, None

    def login(self, rng):
        body = json.dumps({"username": "admin", "password": "admin123"}).encode()
        return "POST", "/api/v1/auth/login", body, {"Content-Type": "application/json"}, None

    def apikey_read(self, rng):
        sid = rng.choice(self.setup.sources)[0]
        path = rng.choice([
            "/api/v1/auth/me",
            "/api/v1/sources",
            f"/api/v1/sources/{sid}",
            "/api/v1/metrics?name=soak_queue_depth&limit=20",
            f"/api/v1/logs?source_id={sid}&limit=20",
            "/prometheus/api/v1/label/__name__/values",
        ])
        return "GET", path, None, {"X-API-Key": self.setup.api_key}, None


def urlencode(params):
    from urllib.parse import urlencode as enc
    return enc(params)


def accepted_check(n):
    """A 2xx ingest answer must accept the whole batch; else it is counted as status 0."""

    def check(raw, status):
        try:
            body = json.loads(raw)
            if body.get("accepted") == n:
                return status
        except (ValueError, AttributeError):
            pass
        return 0

    return check


# ---------------------------------------------------------------------------- figures


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    i = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[i]


def ms(x):
    return None if x is None else round(x * 1000, 1)


def status_class(status):
    if status is None:
        return "no_answer"
    if status == 0:
        return "bad_body"
    return f"{status // 100}xx"


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def rss_figures(rss, window):
    """RSS at the warm-up point and at the end. Each is the median of a minute's readings
    (the first minute from the warm-up point, the last minute), since single readings
    swing by tens of MiB: a login's password hash takes 19 MiB while it runs, and the
    allocator keeps or returns such blocks as it pleases. The single readings are given
    too."""
    if not rss:
        return {}
    first = [r for r in rss if window <= r[0] < window + 60] or [r for r in rss if r[0] >= window][:1]
    last_t = rss[-1][0]
    last = [r for r in rss if r[0] > last_t - 60]
    at_warmup = median([r[1] for r in first]) if first else None
    at_end = median([r[1] for r in last])
    return {
        "at_warmup": at_warmup, "at_end": at_end,
        "ratio_end_to_warmup": round(at_end / at_warmup, 4) if at_warmup and at_end else None,
        "reading_at_warmup": first[0][1] if first else None, "reading_at_end": rss[-1][1],
        "max": max(r[1] for r in rss), "hwm": max(r[2] for r in rss),
        "anon_at_warmup": median([r[3] for r in first]) if first else None, "anon_at_end": median([r[3] for r in last]),
        "file_at_warmup": median([r[4] for r in first]) if first else None, "file_at_end": median([r[4] for r in last]),
        "fds_at_warmup": first[0][5] if first else None, "fds_at_end": rss[-1][5],
    }


def summarize(recorder, rss, duration, window, offered, server_log):
    kinds = list(offered)
    per_kind = {}
    for kind in kinds:
        rows = [s for s in recorder.samples if s[0] == kind]
        classes, statuses = {}, {}
        for _, _, _, st in rows:
            classes[status_class(st)] = classes.get(status_class(st), 0) + 1
            statuses[str(st)] = statuses.get(str(st), 0) + 1
        first = [lat for _, t, lat, st in rows if t < window and st is not None]
        last = [lat for _, t, lat, st in rows if t >= duration - window and st is not None]
        per_kind[kind] = {
            "requests": len(rows),
            "offered_per_s": round(offered[kind], 2),
            "achieved_per_s": round(len(rows) / duration, 2) if duration else None,
            "skipped_slots": recorder.skipped.get(kind, 0),
            "status_classes": classes,
            "statuses": statuses,
            "first": {"n": len(first), "p50_ms": ms(percentile(first, 50)), "p99_ms": ms(percentile(first, 99)),
                      "max_ms": ms(max(first) if first else None)},
            "last": {"n": len(last), "p50_ms": ms(percentile(last, 50)), "p99_ms": ms(percentile(last, 99)),
                     "max_ms": ms(max(last) if last else None)},
        }
    rss_kib = rss_figures(rss, window)
    ratio = rss_kib["ratio_end_to_warmup"]
    fivexx = {k: v["status_classes"].get("5xx", 0) for k, v in per_kind.items()}
    unanswered = {k: v["status_classes"].get("no_answer", 0) for k, v in per_kind.items()}
    expected = {"2xx"}
    unexpected = {k: {c: n for c, n in v["status_classes"].items() if c not in expected}
                  for k, v in per_kind.items()}
    unexpected = {k: v for k, v in unexpected.items() if v}
    goals = {
        "rss_end_within_10pct_of_warmup": ratio is not None and ratio <= 1.10,
        "zero_5xx": sum(fivexx.values()) == 0,
        "every_request_answered": sum(unanswered.values()) == 0,
    }
    return {
        "rss_kib": rss_kib,
        "fivexx": fivexx,
        "unanswered": unanswered,
        "unexpected_status_classes": unexpected,
        "kinds": per_kind,
        "server_log": server_log,
        "goals": goals,
        "verdict": "PASS" if all(goals.values()) else "FAIL",
    }


def scan_log(path, limit=20):
    """ERROR/panic lines and a count of WARN lines of the server's JSON log."""
    errors, warns, events = [], 0, {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            level, event = None, None
            try:
                rec = json.loads(line)
                level = str(rec.get("level", "")).upper()
                event = rec.get("event")
            except ValueError:
                pass
            if level in ("ERROR", "WARN", "WARNING"):
                events[f"{level} {event}"] = events.get(f"{level} {event}", 0) + 1
            if level == "ERROR" or "panic" in line.lower():
                if len(errors) < limit:
                    errors.append(line[:500])
                if level != "ERROR":
                    events["panic"] = events.get("panic", 0) + 1
            elif level in ("WARN", "WARNING"):
                warns += 1
    n_err = sum(n for k, n in events.items() if k.startswith("ERROR") or k == "panic")
    return {"error_or_panic_lines": n_err, "warn_lines": warns, "events": events, "first_errors": errors}


def print_table(summary):
    r = summary["rss_kib"]
    log(f"RSS (median of a minute): {fmt_mib(r['at_warmup'])} after warm-up, {fmt_mib(r['at_end'])} at the end "
        f"(ratio {r['ratio_end_to_warmup']}; single readings {fmt_mib(r['reading_at_warmup'])} and "
        f"{fmt_mib(r['reading_at_end'])}), max {fmt_mib(r['max'])}, peak (VmHWM) {fmt_mib(r['hwm'])}; "
        f"anonymous {fmt_mib(r['anon_at_warmup'])} -> {fmt_mib(r['anon_at_end'])}, "
        f"file-backed {fmt_mib(r['file_at_warmup'])} -> {fmt_mib(r['file_at_end'])}, "
        f"descriptors {r['fds_at_warmup']} -> {r['fds_at_end']}")
    head = f"{'kind':16} {'offered/s':>9} {'achieved/s':>10} {'requests':>8} {'5xx':>4} {'other':>14} " \
           f"{'p50 first':>9} {'p99 first':>9} {'p50 last':>9} {'p99 last':>9}"
    print(head)
    for kind, k in summary["kinds"].items():
        other = ",".join(f"{c}:{n}" for c, n in k["status_classes"].items() if c not in ("2xx", "5xx")) or "-"
        print(f"{kind:16} {k['offered_per_s']:>9} {k['achieved_per_s']:>10} {k['requests']:>8} "
              f"{k['status_classes'].get('5xx', 0):>4} {other:>14} "
              f"{k['first']['p50_ms']!s:>9} {k['first']['p99_ms']!s:>9} {k['last']['p50_ms']!s:>9} "
              f"{k['last']['p99_ms']!s:>9}")
    print("(latencies in ms; first/last = the first and last warm-up-long windows)")
    sl = summary["server_log"]
    log(f"server log: {sl['error_or_panic_lines']} ERROR/panic lines, {sl['warn_lines']} WARN lines: {sl['events']}")
    for line in sl["first_errors"][:5]:
        print("  " + line)
    log(f"goals: {summary['goals']} -> {summary['verdict']}")


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


# ---------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres"], default=os.environ.get("KK_SOAK_DB", "sqlite"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("KK_SOAK_SECONDS", "1800")))
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("KK_SOAK_WARMUP", "300")),
                    help="the RSS baseline point and the length of the first and last latency windows")
    ap.add_argument("--scale", type=float, default=float(os.environ.get("KK_SOAK_SCALE", "1")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("KK_SOAK_SEED", str(random.randrange(1 << 30)))))
    ap.add_argument("--binary", default=os.environ.get("KK_SOAK_BINARY",
                                                       os.path.join(ROOT, "target", "release", "killkrill")))
    ap.add_argument("--log-level", default=os.environ.get("KK_SOAK_LOG_LEVEL", "WARNING"))
    ap.add_argument("--out", default=os.environ.get("KK_SOAK_OUT"))
    ap.add_argument("--nice", type=int, default=int(os.environ.get("KK_SOAK_NICE", "5")),
                    help="niceness the load generator takes once the server (which keeps its own) has started")
    ap.add_argument("--kinds", default=os.environ.get("KK_SOAK_KINDS", ",".join(RATES)),
                    help="comma-separated kinds of request to send (default: all), to tell which one a growth follows")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or any(k not in RATES for k in kinds):
        print(f"--kinds: choose among {', '.join(RATES)}", file=sys.stderr)
        return 2
    if args.warmup * 2 > args.seconds:
        print("--seconds must be at least twice --warmup", file=sys.stderr)
        return 2
    if not os.access(args.binary, os.X_OK):
        print(f"{args.binary} not found: cargo build --release, or set KK_SOAK_BINARY", file=sys.stderr)
        return 2
    os.makedirs(OUT_DIR, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(OUT_DIR, f"{args.db}-{stamp}.json")
    server_log = os.path.splitext(out)[0] + ".server.log"
    rng = random.Random(args.seed)
    log(f"soak on {args.db}: {args.seconds:.0f} s, warm-up {args.warmup:.0f} s, scale {args.scale}, "
        f"seed {args.seed}, binary {args.binary}")

    try:
        db = SqliteDb() if args.db == "sqlite" else PostgresDb()
    except Failed as e:
        print(f"database: {e}", file=sys.stderr)
        return 2
    server = None
    try:
        server = Server(args.binary, db.url, server_log, args.log_level)
        if args.nice:
            os.nice(args.nice)
        setup = Setup(server.port)
        traffic = Traffic(setup)
        recorder = Recorder()
        stop = threading.Event()
        offered = {k: r * args.scale for k, r in RATES.items() if k in kinds}
        rate = {k: r * args.scale for k, r in RATES.items()}
        plan = []  # (kind, rate, make)
        for i in range(2):
            plan.append(("ingest_logs", rate["ingest_logs"] / 2, traffic.log_batch(i)))
            plan.append(("ingest_metrics", rate["ingest_metrics"] / 2, traffic.metric_batch(i)))
        plan += [("log_query", rate["log_query"], traffic.log_query),
                 ("promql_instant", rate["promql_instant"], traffic.promql_instant),
                 ("promql_range", rate["promql_range"], traffic.promql_range),
                 ("login", rate["login"], traffic.login),
                 ("apikey_read", rate["apikey_read"], traffic.apikey_read)]
        plan = [p for p in plan if p[0] in kinds]
        streams = [Stream(f"{kind}-{i}", kind, rate, make, server.port, recorder, random.Random(rng.random()), stop)
                   for i, (kind, rate, make) in enumerate(plan)]
        rss = []  # (offset s, VmRSS, VmHWM, RssAnon, RssFile (KiB), descriptors, threads)
        cpu0, own0 = server.cpu_seconds(), os.times()
        recorder.t0 = time.monotonic()
        for s in streams:
            s.start()
        died = None
        next_sample = 0.0
        last_report = 0.0
        while True:
            t = time.monotonic() - recorder.t0
            if t >= args.seconds:
                break
            if t >= next_sample:
                st = server.proc_status()
                if st is None or server.proc.poll() is not None:
                    died = server.proc.poll()
                    log(f"server exited ({died}) at {t:.0f} s")
                    break
                rss.append((round(t, 1), *st))
                next_sample += 10.0
                if t - last_report >= 60 or len(rss) == 1:
                    last_report = t
                    with recorder.lock:
                        n = len(recorder.samples)
                        bad = sum(1 for s in recorder.samples if s[3] is None or s[3] == 0 or s[3] >= 500)
                    log(f"t={t:.0f}s RSS {st[0] / 1024:.1f} MiB (anon {st[2] / 1024:.1f}, file {st[3] / 1024:.1f}), "
                        f"{st[4]} fds, {st[5]} threads, {n} requests, {bad} 5xx/unanswered")
            time.sleep(min(1.0, max(0.0, next_sample - (time.monotonic() - recorder.t0))))
        # The end point of RSS is taken while the load is still on, as the warm-up's was.
        st = server.proc_status()
        if st is not None:
            rss.append((round(time.monotonic() - recorder.t0, 1), *st))
        stop.set()
        for s in streams:
            s.join(120)
        duration = time.monotonic() - recorder.t0
        cpu1, own1 = server.cpu_seconds(), os.times()
        db_size = db.size()
        code = server.stop()
        summary = summarize(recorder, rss, min(duration, args.seconds), args.warmup, offered, scan_log(server_log))
        summary.update({
            "database": args.db, "seconds": args.seconds, "warmup": args.warmup, "scale": args.scale,
            "seed": args.seed, "binary": args.binary, "started": stamp,
            "server_cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 1),
            "loadgen_cpu_s": round((own1.user + own1.system) - (own0.user + own0.system), 1),
            "database_bytes_at_end": db_size,
            "server_exit": died if died is not None else code,
            "rss_samples": rss,
        })
        if died is not None:
            summary["goals"]["server_alive"] = False
            summary["verdict"] = "FAIL"
        print_table(summary)
        log(f"server CPU {summary['server_cpu_s']} s, load generator CPU {summary['loadgen_cpu_s']} s over "
            f"{duration:.0f} s; database {db_size} bytes; server exit {summary['server_exit']}")
        with open(out, "w") as f:
            json.dump(summary, f, indent=1)
        log(f"summary: {out}; server log: {server_log}")
        return 0 if summary["verdict"] == "PASS" else 1
    except Failed as e:
        log(f"ERROR: {e}")
        return 2
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        db.drop()


if __name__ == "__main__":
    sys.exit(main())

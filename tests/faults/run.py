#!/usr/bin/env python3
"""Fault campaign of issue 22: crashes and database failures under ingest.

Usage: python3 tests/faults/run.py [scenario ...]   (no argument: all of them)

Scenarios: sigkill (sigkill:sqlite, sigkill:postgres, sigkill:mariadb), sigterm (on
SQLite; sigterm:postgres, sigterm:mariadb), diskfull, postgres-restart, mariadb-restart.
See tests/faults/README.md.

Python 3.11 standard library only; psql, mariadb/mysql and the PostgreSQL/MariaDB server
binaries are used as commands. Each scenario prints its figures and the run exits 1 when
a property failed, 2 when a scenario could not run.
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("KK_FAULTS_BINARY", os.path.join(ROOT, "target", "debug", "killkrill"))
PG_ADMIN = os.environ.get("KK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MY_HOST, MY_PORT = "127.0.0.1", 3306
PG_BIN = os.environ.get("KK_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin")
SEED = int(os.environ.get("KK_FAULTS_SEED", str(random.randrange(1 << 30))))
RNG = random.Random(SEED)

LOG_MARK = "kkf"
METRIC_NAME = "kkf_batch"


# ---------------------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def request(port, method, path, body=None, headers=None, timeout=60):
    """One request on its own connection: (status, parsed JSON or raw bytes, headers).
    A connection that fails or closes without an answer raises OSError."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return resp.status, parsed, dict(resp.getheaders())
    except http.client.HTTPException as e:
        raise OSError(f"http: {e!r}") from e
    finally:
        conn.close()


def send_in_two(port, path, body, headers, pause, timeout, half_sent=None):
    """POST with half of the body sent, a pause, then the rest; `half_sent` (an Event) is
    set once the first half is out."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        half = len(body) // 2
        conn.send(body[:half])
        if half_sent is not None:
            half_sent.set()
        time.sleep(pause)
        conn.send(body[half:])
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


def is_error_body(body, status):
    """The API's error body of docs/API.md."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("message"), str)
        and isinstance(body.get("correlation_id"), str)
        and body.get("status_code") == status
    )


# ---------------------------------------------------------------------------- databases


class Database:
    """A fresh database for one run, and a way to count what it holds."""

    kind = ""
    url = ""

    def count_logs(self, source_id):
        """{marker: number of lines}"""
        rows = self.query(f"SELECT message FROM logs WHERE source_id = '{source_id}'")
        counts = {}
        for (message,) in rows:
            parts = message.split(" ")
            if len(parts) >= 3 and parts[0] == LOG_MARK:
                counts[parts[1]] = counts.get(parts[1], 0) + 1
        return counts

    def count_samples(self, source_id):
        """{marker: number of samples}"""
        # The head's rows, and the chunks the compaction moved closed windows into.
        where = f"WHERE s.source_id = '{source_id}' AND s.name = '{METRIC_NAME}' GROUP BY s.labels"
        rows = self.query(
            "SELECT s.labels, COUNT(*) FROM metric_samples x JOIN metric_series s ON x.series_id = s.id " + where
        ) + self.query(
            "SELECT s.labels, SUM(c.samples) FROM metric_chunks c JOIN metric_series s ON c.series_id = s.id " + where
        )
        counts = {}
        for labels, n in rows:
            marker = json.loads(labels).get("batch")
            counts[marker] = counts.get(marker, 0) + int(n)
        return counts

    def drop(self):
        pass


class SqliteDb(Database):
    kind = "sqlite"

    def __init__(self, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="kk_faults_")
        self.own_dir = directory is None
        self.path = os.path.join(self.dir, f"kk_faults_{uuid.uuid4().hex[:8]}.db")
        self.url = "sqlite:///" + self.path  # an absolute path gives sqlite:////...

    def query(self, sql):
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def drop(self):
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_cmd(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


class PostgresDb(Database):
    kind = "postgres"

    def __init__(self, host="127.0.0.1", port=5432):
        self.host, self.port = host, port
        self.name = f"kk_faults_{uuid.uuid4().hex[:10]}"
        self.admin(f"CREATE DATABASE {self.name}")
        self.url = f"postgresql://postgres@{host}:{port}/{self.name}"

    def psql(self, db, sql):
        r = run_cmd(["psql", "-X", "-q", "-At", "-F", "\t", "-h", self.host, "-p", str(self.port), "-U", "postgres",
                     "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql])
        if r.returncode != 0:
            raise Failed(f"psql: {r.stderr.strip()}")
        return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line]

    def admin(self, sql):
        return self.psql("postgres", sql)

    def query(self, sql):
        return self.psql(self.name, sql)

    def drop(self):
        try:
            self.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        except Failed as e:
            log(f"could not drop {self.name}: {e}")


def mariadb_client():
    return shutil.which("mariadb") or shutil.which("mysql")


class MariaDb(Database):
    kind = "mariadb"

    def __init__(self, host=MY_HOST, port=MY_PORT):
        self.host, self.port = host, port
        self.name = f"kk_faults_{uuid.uuid4().hex[:10]}"
        self.sql(None, f"CREATE DATABASE {self.name}")
        self.url = f"mysql://root@{host}:{port}/{self.name}"

    def sql(self, db, sql):
        args = [mariadb_client(), "--protocol=TCP", "-h", self.host, "-P", str(self.port), "-u", "root", "-N", "-B", "-r"]
        if db:
            args.append(db)
        r = run_cmd(args + ["-e", sql])
        if r.returncode != 0:
            raise Failed(f"mariadb: {r.stderr.strip()}")
        return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line]

    def query(self, sql):
        return self.sql(self.name, sql)

    def drop(self):
        try:
            self.sql(None, f"DROP DATABASE IF EXISTS {self.name}")
        except Failed as e:
            log(f"could not drop {self.name}: {e}")


# ---------------------------------------------------------------------------- the server


class Server:
    """The debug binary on a free port, HTTP only, restartable on the same database."""

    def __init__(self, db_url, workdir, extra_env=None):
        self.db_url = db_url
        self.port = free_port()
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.proc = None
        self.starts = 0
        self.log_path = os.path.join(workdir, "server.log")

    def start(self, wait=True):
        env = dict(os.environ)
        env.update({
            "FLASK_ENV": "development",
            "DATABASE_URL": self.db_url,
            "LOG_LEVEL": os.environ.get("KK_FAULTS_LOG_LEVEL", "WARNING"),
            "RETENTION_INTERVAL_SECONDS": "86400",
            "DB_CONNECT_RETRY_SECONDS": "5",
        })
        env.update(self.extra_env)
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BINARY, "--no-grpc", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, within=60):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"server exited with {self.proc.returncode} while starting; see {self.log_path}")
            try:
                status, _, _ = request(self.port, "GET", "/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise Failed(f"server not ready within {within}s; see {self.log_path}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, within=40):
        """SIGTERM; the exit code, or None if it had to be killed."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


class Client:
    """The admin's token, a source and an ingest key for it."""

    def __init__(self, port):
        self.port = port
        status, body, _ = request(port, "POST", "/api/v1/auth/login", {"username": "admin", "password": "admin123"})
        if status != 200:
            raise Failed(f"login: {status} {body}")
        self.token = body["access_token"]
        auth = {"Authorization": f"Bearer {self.token}"}
        status, body, _ = request(port, "POST", "/api/v1/sources",
                                  {"name": f"faults-{uuid.uuid4().hex[:8]}", "type": "http"}, auth)
        if status != 201:
            raise Failed(f"create source: {status} {body}")
        self.source_id = body["id"]
        status, body, _ = request(port, "POST", f"/api/v1/sources/{self.source_id}/keys", {"name": "faults"}, auth)
        if status != 201:
            raise Failed(f"create ingest key: {status} {body}")
        self.key = body["key"]


class Batch:
    def __init__(self, kind, size):
        self.kind = kind  # "logs" or "metrics"
        self.size = size
        self.marker = uuid.uuid4().hex
        self.status = None  # HTTP status, or None when no answer came
        self.body = None
        self.error = None
        self.started = self.ended = None

    def payload(self, source_id):
        if self.kind == "logs":
            lines = [{"message": f"{LOG_MARK} {self.marker} {i} " + "x" * 40, "level": "info",
                      "hostname": "faults", "attributes": {"i": i}} for i in range(self.size)]
            return {"source_id": source_id, "logs": lines}
        now = time.time()
        samples = [{"name": METRIC_NAME, "type": "gauge", "labels": {"batch": self.marker},
                    "value": float(i), "timestamp": now - self.size + i} for i in range(self.size)]
        return {"source_id": source_id, "metrics": samples}

    def send(self, port, source_id, key, timeout=60, pause_at_half=0.0, half_sent=None):
        body = json.dumps(self.payload(source_id)).encode()
        self.started = time.monotonic()
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        try:
            if pause_at_half:
                self.status, self.body = send_in_two(port, f"/api/v1/{self.kind}", body, headers, pause_at_half,
                                                     timeout, half_sent)
            else:
                self.status, self.body, _ = request(port, "POST", f"/api/v1/{self.kind}", body, headers, timeout)
        except OSError as e:
            self.error = repr(e)
        self.ended = time.monotonic()

    @property
    def acked(self):
        return self.status is not None and 200 <= self.status < 300


def tally(db, source_id, batches):
    """Figures of a run and the list of property violations (exactly once for 2xx, all or
    nothing for the rest)."""
    logs = db.count_logs(source_id)
    samples = db.count_samples(source_id)
    f = {"sent": len(batches), "acknowledged": 0, "refused": 0, "no_answer": 0, "stored": 0, "lost": 0,
         "duplicated": 0, "half_stored": 0, "unacked_but_stored": 0, "statuses": {}}
    problems = []
    known = set()
    for b in batches:
        stored = (logs if b.kind == "logs" else samples).get(b.marker, 0)
        known.add((b.kind, b.marker))
        key = str(b.status) if b.status is not None else "none"
        f["statuses"][key] = f["statuses"].get(key, 0) + 1
        if b.acked:
            f["acknowledged"] += 1
            accepted = b.body.get("accepted") if isinstance(b.body, dict) else None
            if accepted != b.size:
                problems.append(f"{b.kind} {b.marker}: 2xx with accepted={accepted}, expected {b.size}")
        elif b.status is None:
            f["no_answer"] += 1
        else:
            f["refused"] += 1
        if stored == b.size:
            f["stored"] += 1
            if not b.acked:
                f["unacked_but_stored"] += 1
                if b.status is not None:
                    # An error answer with the data stored: a client retrying it duplicates it.
                    problems.append(f"{b.kind} {b.marker}: answered {b.status} but stored")
        elif stored > b.size:
            f["duplicated"] += 1
            problems.append(f"{b.kind} {b.marker}: {stored} stored of {b.size} (duplicated)")
        elif stored == 0:
            if b.acked:
                f["lost"] += 1
                problems.append(f"{b.kind} {b.marker}: acknowledged ({b.status}) but not stored")
        else:
            f["half_stored"] += 1
            problems.append(f"{b.kind} {b.marker}: {stored} of {b.size} stored (status {b.status})")
    strays = [m for m in logs if ("logs", m) not in known] + [m for m in samples if ("metrics", m) not in known]
    if strays:
        problems.append(f"{len(strays)} markers stored that were never sent")
    return f, problems


def show(figures):
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(figures.get("statuses", {}).items()))
    plain = {k: v for k, v in figures.items() if k != "statuses"}
    log("figures: " + ", ".join(f"{k}={v}" for k, v in plain.items()))
    if statuses:
        log(f"answers: {statuses}")


# ---------------------------------------------------------------------------- ingest load


class Load:
    """Concurrent clients posting log and metric batches until stopped."""

    def __init__(self, server, client, workers=4, sizes=(1, 2000), pause=0.0, timeout=60):
        self.server, self.client = server, client
        self.workers, self.sizes, self.pause, self.timeout = workers, sizes, pause, timeout
        self.batches = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def run_one(self, rng):
        while not self.stop.is_set():
            kind = "logs" if rng.random() < 0.6 else "metrics"
            b = Batch(kind, rng.randint(*self.sizes))
            b.send(self.server.port, self.client.source_id, self.client.key, self.timeout)
            with self.lock:
                self.batches.append(b)
            if b.status is None:
                time.sleep(0.05)  # the server is down: do not spin
            elif self.pause:
                time.sleep(self.pause)

    def start(self):
        for i in range(self.workers):
            t = threading.Thread(target=self.run_one, args=(random.Random(RNG.random()),), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.batches

    def first_ack_after(self, t0):
        with self.lock:
            times = [b.ended for b in self.batches if b.acked and b.started is not None and b.started >= t0]
        return min(times) if times else None


# ---------------------------------------------------------------------------- scenarios


LOG_DIR = os.path.join(ROOT, "target", "faults")
CURRENT = {"name": "run"}


def keep_log(work, name="server.log", suffix=""):
    """Keeps a log of the scenario as target/faults/<scenario>[-<suffix>].log: the
    server's, or a private database's."""
    src = os.path.join(work, name)
    if os.path.exists(src):
        os.makedirs(LOG_DIR, exist_ok=True)
        base = CURRENT["name"].replace(":", "-") + (f"-{suffix}" if suffix else "")
        shutil.copyfile(src, os.path.join(LOG_DIR, base + ".log"))


def make_db(kind):
    if kind == "sqlite":
        return SqliteDb()
    if kind == "postgres":
        return PostgresDb()
    if kind == "mariadb":
        return MariaDb()
    raise ValueError(kind)


def fresh_server(kind):
    """A new database of `kind` (the scenario is skipped when its server is unreachable),
    a work directory, and a server on them, not started yet."""
    try:
        db = make_db(kind)
    except Failed as e:
        raise Skipped(f"{kind} unreachable: {e}")
    work = tempfile.mkdtemp(prefix="kk_faults_run_")
    return db, work, Server(db.url, work)


def scenario_sigkill(kind, kills=6):
    """SIGKILL the server at random moments under concurrent ingest; restart on the same
    database; every 2xx stored exactly once, every other batch whole or not at all."""
    db, work, server = fresh_server(kind)
    try:
        server.start()
        client = Client(server.port)
        load = Load(server, client, workers=4, sizes=(1, 3000))
        load.start()
        downtimes = []
        for i in range(kills):
            time.sleep(RNG.uniform(0.5, 3.0))
            server.kill()
            t0 = time.monotonic()
            time.sleep(RNG.uniform(0.0, 0.5))
            server.start()
            downtimes.append(time.monotonic() - t0)
        time.sleep(1.0)
        batches = load.finish()
        code = server.terminate()
        figures, problems = tally(db, client.source_id, batches)
        figures["kills"] = kills
        figures["lines_or_samples_sent"] = sum(b.size for b in batches)
        figures["max_restart_s"] = round(max(downtimes), 2)
        figures["exit_code_after_sigterm"] = code
        if code != 0:
            problems.append(f"server exited with {code} on SIGTERM")
        return figures, problems
    finally:
        server.kill()
        db.drop()
        keep_log(work)
        shutil.rmtree(work, ignore_errors=True)


def scenario_sigterm(kind="sqlite", rounds=6, lines=10000):
    """SIGTERM while a 10,000-line batch is in flight: the batch is answered 2xx and
    stored, or not stored at all; the server exits 0."""
    db, work, server = fresh_server(kind)
    problems, batches, codes, exits = [], [], [], []
    try:
        server.start()
        client = Client(server.port)
        calibration = Batch("logs", lines)
        calibration.send(server.port, client.source_id, client.key, 120)
        batches.append(calibration)
        took = calibration.ended - calibration.started
        log(f"a {lines}-line batch takes {took:.2f}s undisturbed (answer {calibration.status})")
        for r in range(rounds):
            b = Batch("logs", lines)
            # Odd rounds: SIGTERM while the body is still arriving (half of it sent, the
            # rest after the signal). Even rounds: at a random moment of the whole request.
            split = r % 2 == 1
            half_sent = threading.Event()
            t = threading.Thread(target=b.send, args=(server.port, client.source_id, client.key, 120),
                                 kwargs={"pause_at_half": 0.3 if split else 0.0, "half_sent": half_sent})
            t.start()
            if split:
                half_sent.wait(30)
                time.sleep(0.1)  # the server has accepted the connection and reads the body
            else:
                time.sleep(RNG.uniform(0.0, took))
            t_term = time.monotonic()
            code = server.terminate(within=60)
            exits.append(round(time.monotonic() - t_term, 2))
            t.join()
            codes.append(code)
            batches.append(b)
            log(f"round {r + 1} ({'mid-body' if split else 'random'}): answer {b.status or b.error}, "
                f"exit code {code}, exited {exits[-1]}s after SIGTERM")
            if code != 0:
                problems.append(f"round {r + 1}: exit code {code}")
            server.start()
        server.terminate()
        figures, more = tally(db, client.source_id, batches)
        figures["exit_codes"] = codes
        figures["exit_seconds"] = exits
        return figures, problems + more
    finally:
        server.kill()
        db.drop()
        keep_log(work)
        shutil.rmtree(work, ignore_errors=True)


def scenario_diskfull(size_mb=24):
    """SQLite on a small tmpfs of its own: fill it; writes answer 507 or 503 with the
    error body, nothing half-written, reads keep working; writes resume when space
    returns."""
    if os.getuid() != 0:
        raise Skipped("not root: cannot mount a tmpfs (a loop device needs root too)")
    mnt = tempfile.mkdtemp(prefix="kk_faults_fs_")
    r = run_cmd(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", mnt])
    if r.returncode != 0:
        os.rmdir(mnt)
        raise Skipped(f"mount tmpfs: {r.stderr.strip()}")
    work = tempfile.mkdtemp(prefix="kk_faults_run_")
    db = SqliteDb(directory=mnt)
    server = Server(db.url, work)
    problems = []
    filler = os.path.join(mnt, "filler")
    try:
        server.start()
        client = Client(server.port)
        batches = []

        def post(kind, size):
            b = Batch(kind, size)
            b.send(server.port, client.source_id, client.key)
            batches.append(b)
            return b

        for _ in range(5):
            post("logs", 200)
        if not all(b.acked for b in batches):
            raise Failed(f"writes before the disk filled: {[b.status for b in batches]}")
        # Fill the filesystem to the last byte.
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for block in (1 << 20, 4096, 512):
                try:
                    while True:
                        os.write(fd, b"\0" * block)
                except OSError:
                    pass
        finally:
            os.close(fd)
        log(f"filesystem full: {shutil.disk_usage(mnt).free} bytes free")
        full_statuses = {}
        refused = []
        acked_while_full = 0
        for i in range(60):
            b = post("logs" if i % 2 == 0 else "metrics", 500)
            full_statuses[str(b.status)] = full_statuses.get(str(b.status), 0) + 1
            if b.acked:
                acked_while_full += 1
                continue
            refused.append(b)
            if b.status not in (503, 507):
                problems.append(f"full disk: {b.kind} answered {b.status or b.error}, expected 507 or 503")
            elif not is_error_body(b.body, b.status):
                problems.append(f"full disk: {b.status} without the error body: {b.body!r}")
            if len(refused) >= 10:
                break
        if not refused:
            problems.append("60 batches all acknowledged on a full filesystem")
        # Reads keep working.
        auth = {"Authorization": f"Bearer {client.token}"}
        status, body, _ = request(server.port, "GET", f"/api/v1/logs?source_id={client.source_id}&limit=10", None, auth)
        read_ok = status == 200 and isinstance(body, dict) and len(body.get("logs", [])) > 0
        if not read_ok:
            problems.append(f"read on a full disk: {status} {str(body)[:200]}")
        # Space returns.
        os.remove(filler)
        t0 = time.monotonic()
        resumed = None
        for _ in range(100):
            b = post("logs", 200)
            if b.acked:
                resumed = time.monotonic() - t0
                break
            time.sleep(0.1)
        if resumed is None:
            problems.append("writes did not resume within 100 tries after space returned")
        # Every connection of the pool must be sound again, not just the first one used.
        for i in range(30):
            b = post("metrics" if i % 2 else "logs", 200)
            if not b.acked:
                problems.append(f"after space returned: {b.kind} answered {b.status} {str(b.body)[:200]}")
        code = server.terminate()
        figures, more = tally(db, client.source_id, batches)
        figures["answers_while_full"] = full_statuses
        figures["acked_while_full"] = acked_while_full
        figures["read_while_full"] = status
        figures["resumed_after_s"] = None if resumed is None else round(resumed, 2)
        figures["exit_code"] = code
        return figures, problems + more
    finally:
        server.kill()
        keep_log(work)
        shutil.rmtree(work, ignore_errors=True)
        run_cmd(["umount", mnt])
        os.rmdir(mnt)


class PrivatePostgres:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kk_faults_pg_")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        r = run_cmd(self.as_user + [f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"])
        if r.returncode != 0:
            raise Skipped(f"initdb: {r.stderr.strip()[-300:]}")

    def start(self):
        r = run_cmd(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "pg.log"), "-w",
                                    "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on "
                                    + os.environ.get("KK_FAULTS_PG_OPTIONS", ""),
                                    "start"])
        if r.returncode != 0:
            raise Failed(f"pg_ctl start: {r.stdout} {r.stderr}")

    def stop(self, mode):
        r = run_cmd(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])
        if r.returncode != 0:
            raise Failed(f"pg_ctl stop -m {mode}: {r.stdout} {r.stderr}")

    def destroy(self):
        run_cmd(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
        keep_log(self.dir, "pg.log", "postgres")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateMariaDb:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kk_faults_my_")
        self.data = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "sock")
        self.port = free_port()
        self.proc = None
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        server = shutil.which("mariadbd") or shutil.which("mysqld") or "/usr/sbin/mariadbd"
        if not installer or not os.path.exists(server):
            raise Skipped("mariadb-install-db or mariadbd not found")
        self.server = server
        r = run_cmd([installer, "--no-defaults", f"--datadir={self.data}", "--user=root",
                     "--auth-root-authentication-method=normal", "--skip-test-db"])
        if r.returncode != 0:
            raise Skipped(f"mariadb-install-db: {r.stderr.strip()[-300:]}")

    def start(self):
        out = open(os.path.join(self.dir, "mariadbd.log"), "ab")
        self.proc = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}", f"--socket={self.socket}",
             "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=1",
             f"--pid-file={os.path.join(self.dir, 'pid')}", "--skip-log-bin"],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = run_cmd([mariadb_client(), "--protocol=TCP", "-h", "127.0.0.1", "-P", str(self.port), "-u", "root",
                         "-e", "SELECT 1"])
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise Failed(f"mariadbd exited with {self.proc.returncode}; see {self.dir}/mariadbd.log")
            time.sleep(0.2)
        raise Failed("mariadbd not ready within 60 s")

    def stop(self, mode):
        if mode == "fast":
            self.proc.send_signal(signal.SIGTERM)  # a clean shutdown
        else:
            self.proc.send_signal(signal.SIGKILL)  # a crash
        self.proc.wait(120)

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        keep_log(self.dir, "mariadbd.log", "mariadbd")
        shutil.rmtree(self.dir, ignore_errors=True)


def db_restart_scenario(kind, modes, down_seconds=3.0):
    """The database stopped and restarted under steady ingest: every 2xx stored exactly
    once, the others answered 503 with the error body and stored nothing, and writes
    answered again within 5 s of the database's return, without restarting the server."""
    instance = PrivatePostgres() if kind == "postgres" else PrivateMariaDb()
    server = None
    work = tempfile.mkdtemp(prefix="kk_faults_run_")
    problems = []
    try:
        instance.start()
        db = PostgresDb(port=instance.port) if kind == "postgres" else MariaDb(port=instance.port)
        server = Server(db.url, work)
        server.start()
        client = Client(server.port)
        load = Load(server, client, workers=3, sizes=(1, 300), pause=0.02, timeout=30)
        load.start()
        recoveries = {}
        for mode in modes:
            time.sleep(2.0)
            instance.stop(mode)
            log(f"{kind} stopped ({mode})")
            time.sleep(down_seconds)
            instance.start()
            back = time.monotonic()
            log(f"{kind} back")
            while time.monotonic() - back < 30 and load.first_ack_after(back) is None:
                time.sleep(0.05)
            first = load.first_ack_after(back)
            recovery = None if first is None else round(first - back, 2)
            recoveries[mode] = recovery
            log(f"first 2xx write {recovery}s after {kind} came back")
            if recovery is None or recovery > 5:
                problems.append(f"{mode}: writes answered again after {recovery}s (limit 5)")
        time.sleep(2.0)
        batches = load.finish()
        if server.proc.poll() is not None:
            problems.append(f"server exited with {server.proc.returncode} during the run")
        code = server.terminate()
        figures, more = tally(db, client.source_id, batches)
        problems += more
        for b in batches:
            if b.acked:
                continue
            if b.status != 503:
                problems.append(f"{b.kind} {b.marker}: answered {b.status or b.error}, expected 503")
            elif not is_error_body(b.body, 503):
                problems.append(f"{b.kind} {b.marker}: 503 without the error body: {b.body!r}")
        figures["recovery_s"] = recoveries
        figures["exit_code"] = code
        return figures, problems
    finally:
        if server:
            server.kill()
        instance.destroy()
        keep_log(work)
        shutil.rmtree(work, ignore_errors=True)


SCENARIOS = {
    "sigkill:sqlite": lambda: scenario_sigkill("sqlite"),
    "sigkill:postgres": lambda: scenario_sigkill("postgres"),
    "sigkill:mariadb": lambda: scenario_sigkill("mariadb"),
    "sigterm": lambda: scenario_sigterm("sqlite"),
    "sigterm:postgres": lambda: scenario_sigterm("postgres"),
    "sigterm:mariadb": lambda: scenario_sigterm("mariadb"),
    "diskfull": scenario_diskfull,
    "postgres-restart": lambda: db_restart_scenario("postgres", ["fast", "immediate"]),
    "mariadb-restart": lambda: db_restart_scenario("mariadb", ["fast", "immediate"]),
}
GROUPS = {
    "sigkill": ["sigkill:sqlite", "sigkill:postgres", "sigkill:mariadb"],
}
DEFAULT = ["sigkill:sqlite", "sigkill:postgres", "sigkill:mariadb", "sigterm", "diskfull", "postgres-restart",
           "mariadb-restart"]


def main(argv):
    names = []
    for arg in argv or DEFAULT:
        if arg in SCENARIOS:
            names.append(arg)
        elif arg in GROUPS:
            names += GROUPS[arg]
        else:
            print(f"unknown scenario {arg!r}; known: {', '.join(list(SCENARIOS) + list(GROUPS))}", file=sys.stderr)
            return 2
    if not os.access(BINARY, os.X_OK):
        print(f"{BINARY} not found: run cargo build", file=sys.stderr)
        return 2
    log(f"seed {SEED} (KK_FAULTS_SEED={SEED} repeats the random choices)")
    results = []
    for name in names:
        log(f"== {name}")
        CURRENT["name"] = name
        t0 = time.monotonic()
        try:
            figures, problems = SCENARIOS[name]()
        except Skipped as e:
            log(f"SKIPPED: {e}")
            results.append((name, "skipped"))
            continue
        except Failed as e:
            log(f"ERROR: {e}")
            results.append((name, "error"))
            continue
        show(figures)
        for p in problems[:20]:
            log(f"  FAIL {p}")
        if len(problems) > 20:
            log(f"  ... and {len(problems) - 20} more")
        results.append((name, "FAIL" if problems else "ok"))
        log(f"{name}: {results[-1][1]} in {time.monotonic() - t0:.0f}s")
    log("summary: " + ", ".join(f"{k} {v}" for k, v in results))
    if any(v == "FAIL" for _, v in results):
        return 1
    if any(v == "error" for _, v in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Bytes per metric sample on disk: see storage.sh for what it measures and how.

Usage: storage.py BIN BACKEND (sqlite|postgres) WORKDIR
Prints one line of JSON with the sizes measured.
"""
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import cramjam

SERIES = int(os.environ.get("SERIES", "1000"))
HOURS = int(os.environ.get("HOURS", "24"))
INTERVAL_MS = 15_000
PER_REQUEST = 8  # samples a series in one request (2 minutes: 8,000 samples a request)
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
METRIC_TABLES = ["metric_samples", "metric_chunks", "metric_series", "metric_rollups", "metric_metadata"]


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def sample(value, ts):
    return b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts)


def labels(name, **more):
    pairs = [("__name__", name)] + sorted(more.items())
    return b"".join(field(1, field(1, k.encode()) + field(2, v.encode())) for k, v in pairs)


def requests(start_ms):
    """remote_write bodies: every series' next PER_REQUEST samples, oldest first."""
    rng = random.Random(21)
    state = []
    for i in range(SERIES):
        if i < SERIES // 2:
            # A counter: requests served, 0 to 40 more each scrape.
            state.append(("c", labels("bench_requests_total", instance=f"host-{i:04d}", job="bench"), 0.0))
        elif i < SERIES * 3 // 4:
            # An integer gauge: a queue's depth, a random walk.
            state.append(("q", labels("bench_queue_depth", instance=f"host-{i:04d}", job="bench"), 50.0))
        else:
            # A fractional gauge: a temperature in hundredths, a random walk.
            state.append(("t", labels("bench_temperature_celsius", instance=f"host-{i:04d}", job="bench"), 40.0))
    total = HOURS * 3600_000 // INTERVAL_MS
    for first in range(0, total, PER_REQUEST):
        body = bytearray()
        for i, (kind, series_labels, value) in enumerate(state):
            points = bytearray()
            for k in range(first, min(first + PER_REQUEST, total)):
                if kind == "c":
                    value += rng.randint(0, 40)
                elif kind == "q":
                    value = max(0.0, value + rng.randint(-3, 3))
                else:
                    value = round(value + rng.randint(-20, 20) / 100, 2)
                points += field(2, sample(value, start_ms + k * INTERVAL_MS))
            state[i] = (kind, series_labels, value)
            body += field(1, series_labels + bytes(points))
        yield bytes(cramjam.snappy.compress_raw(bytes(body)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None, headers=None, data=None):
    request = urllib.request.Request(base + path, method=method, data=data)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    with urllib.request.urlopen(request, timeout=600) as answer:
        text = answer.read()
        return json.loads(text) if text else None


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def main():
    binary, backend, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    if backend == "sqlite":
        db_file = os.path.join(work, "bench.db")
        url = f"sqlite:///{db_file}"
    else:
        name = "kk_storage_" + os.urandom(4).hex()
        subprocess.run(PG + ["-d", "postgres", "-c", f"CREATE DATABASE {name}"], check=True)
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DATABASE_URL=url, METRIC_RETENTION_DAYS="0", RETENTION_INTERVAL_SECONDS="2")
    with open(os.path.join(work, "server.log"), "wb") as log:
        server = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--no-grpc"], cwd=work, env=env, stdout=log, stderr=log
        )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except Exception:
                time.sleep(0.5)
        token = call(base, "POST", "/api/v1/auth/login", {"username": "admin", "password": "admin123"})["access_token"]
        source = call(base, "POST", "/api/v1/sources", {"name": "bench", "type": "http", "description": "storage"}, token)
        key = call(base, "POST", f"/api/v1/sources/{source['id']}/keys", {"name": "bench"}, token)["key"]
        # 24 h ending at least two hours ago, on a whole hour: every window is closed.
        now_ms = int(time.time() * 1000)
        start_ms = (now_ms - (HOURS + 2) * 3600_000) // 3600_000 * 3600_000
        headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        started = time.time()
        for body in requests(start_ms):
            call(base, "POST", "/prometheus/api/v1/write", token=key, headers=headers, data=body)
        ingest_seconds = time.time() - started
        samples = SERIES * (HOURS * 3600_000 // INTERVAL_MS)
        compacted = metric(base, "killkrill_compaction_samples_total")
        if compacted is not None:
            # This binary compacts: wait until every sample has moved.
            while compacted < samples:
                time.sleep(2)
                compacted = metric(base, "killkrill_compaction_samples_total")
        compact_seconds = time.time() - started - ingest_seconds
    finally:
        server.terminate()
        server.wait(timeout=60)
    result = {"backend": backend, "samples": samples, "compacted": compacted,
              "ingest_seconds_noisy": round(ingest_seconds, 1), "compact_seconds_noisy": round(compact_seconds, 1)}
    if backend == "sqlite":
        import sqlite3

        files = [db_file, db_file + "-wal", db_file + "-shm"]
        result["file_bytes"] = sum(os.path.getsize(f) for f in files if os.path.exists(f))
        conn = sqlite3.connect(db_file)
        page, free, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ["page_size", "freelist_count", "page_count"])
        result["live_page_bytes"] = (pages - free) * page
        conn.execute("VACUUM")
        conn.close()
        result["vacuumed_file_bytes"] = os.path.getsize(db_file)
        result["bytes_per_sample"] = round(result["vacuumed_file_bytes"] / samples, 2)
    else:
        dsn = ["-d", name]
        tables = [t for t in METRIC_TABLES
                  if subprocess.run(PG + dsn + ["-c", f"SELECT to_regclass('{t}') IS NOT NULL"], capture_output=True,
                                    text=True, check=True).stdout.strip() == "t"]
        size = lambda t: int(subprocess.run(PG + dsn + ["-c", f"SELECT pg_total_relation_size('{t}')"],
                                            capture_output=True, text=True, check=True).stdout.strip())
        result["tables_bytes"] = {t: size(t) for t in tables}
        subprocess.run(PG + dsn + ["-c", "VACUUM FULL " + ", ".join(tables)], check=True)
        result["tables_bytes_after_vacuum_full"] = {t: size(t) for t in tables}
        total = sum(result["tables_bytes_after_vacuum_full"].values())
        result["bytes_per_sample"] = round(total / samples, 2)
        without_rollups = total - result["tables_bytes_after_vacuum_full"].get("metric_rollups", 0)
        result["bytes_per_sample_without_rollups"] = round(without_rollups / samples, 2)
        subprocess.run(PG + ["-d", "postgres", "-c", f"DROP DATABASE {name} WITH (FORCE)"], check=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Bytes per metric sample on disk (issue 21's storage goal: <= 4; Prometheus ~1.3).
#
#   OURS_BIN=/work/main/target/release/killkrill AFTER_BIN=target/release/killkrill \
#       bash benches/metrics/storage.sh
#
# Data: a 15 s scrape of SERIES=1000 series over HOURS=24 (5.76 M samples), remote-written
# (POST /prometheus/api/v1/write, 8 samples a series a request, oldest first) into a fresh
# database: 500 counters (0 to 40 more each scrape), 250 integer gauges (a random walk of
# +-3) and 250 gauges in hundredths (a random walk of +-0.20); timestamps whole
# milliseconds, exactly 15 s apart, the 24 h ending at least 2 h before the run (every
# 30-minute window closed). Seeded: every run writes the same values.
# For each binary (OURS_BIN: before, e.g. main's; AFTER_BIN: this branch's) and each
# backend (BACKENDS="sqlite postgres"), storage.py starts the server (development
# defaults, METRIC_RETENTION_DAYS=0, RETENTION_INTERVAL_SECONDS=2), writes the data, and,
# when the binary compacts (it exposes killkrill_compaction_samples_total), waits until
# every sample has moved into chunks; then stops the server and measures:
#   SQLite: the database file (with -wal/-shm) as left, its live pages (page_count -
#     freelist_count), and the file after VACUUM (bytes_per_sample = that / samples; the
#     whole file: users, sources and the migrations' tables are a few hundred KB of it);
#   PostgreSQL: pg_total_relation_size (heap, TOAST, indexes) of the metric tables as
#     left, and after VACUUM FULL (bytes_per_sample = their sum / samples; also without
#     metric_rollups, which the seed query's rollups are).
# Times are printed for information only: the machine is shared, they are noisy.
# Needs python3 with cramjam (tests/clients/setup.sh's venv has it) and psql for postgres.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite postgres}"
PYTHON="${PYTHON:-$ROOT/target/clients-venv/bin/python}"
OURS_BIN="${OURS_BIN:-}"
AFTER_BIN="${AFTER_BIN:-$ROOT/target/release/killkrill}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-storage.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
for label in before after; do
    if [[ "$label" == before ]]; then bin="$OURS_BIN"; else bin="$AFTER_BIN"; fi
    [[ -n "$bin" ]] || continue
    [[ -x "$bin" ]] || { echo "storage: $bin is not an executable" >&2; exit 2; }
    # A copy: others may rebuild target/ during the run.
    cp "$bin" "$WORK/killkrill-$label"
    for backend in $BACKENDS; do
        printf '%s %s: ' "$label" "$backend"
        "$PYTHON" "$ROOT/benches/metrics/storage.py" "$WORK/killkrill-$label" "$backend" "$WORK/$label-$backend"
    done
done

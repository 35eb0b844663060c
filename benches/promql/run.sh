#!/usr/bin/env bash
# PromQL queries on the release killkrill binary, side by side with Prometheus 2.42 on
# the same samples. See benches/README.md, section "PromQL".
#
#   bash benches/promql/run.sh
#
# One Prometheus (`--web.enable-remote-write-receiver`, a fresh TSDB) and, per backend, a
# fresh killkrill on an empty database receive the same remote_write samples
# (examples/promql_bench.rs: 1,000 counters over 65 min, a 12-bucket histogram on 10
# instances over 24 h 5 min, 10,000 gauges over 5 min, on a 15 s grid: 1.17 M samples).
# Then each of the issue's three queries is asked RUNS times of each server, alternating:
#   (a) sum by (job) (rate(x_total[5m]))                           1 h at a 15 s step
#   (b) histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) 24 h at a 60 s step
#   (c) y                                          an instant query of 10,000 series
# Reported per query: p50 / p90 / max in ms from request to the answer's last byte, the
# ratio of the p50s (goal: killkrill <= 2x Prometheus), whether the two answers were the
# same (labels, timestamps, values within 1e-9 relative), and the server's CPU a query.
# Also: each server's peak RSS, and its disk use for these samples.
#
# Environment (all optional):
#   BACKENDS="sqlite postgres"   RUNS=20   SCALE=1 (divides the x_total and y series counts)
#   SETTLE=0             seconds to wait between loading and querying killkrill, after
#                        its compaction has moved what it can into chunks (killkrill runs
#                        with RETENTION_INTERVAL_SECONDS=5; a binary without compaction
#                        is queried at once)
#   BUILD=1              0: use the binaries already built
#   OURS_BIN=...         the killkrill binary to measure (default: target/release/killkrill)
#   BENCH_BIN=...        the client (default: target/release/examples/promql_bench)
#   PROMETHEUS=prometheus  PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
#
# Only 127.0.0.1 is used. Output: a markdown report on stdout and in
# benches/results/promql-<date>.md (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite postgres}"
RUNS="${RUNS:-20}"
SCALE="${SCALE:-1}"
SETTLE="${SETTLE:-0}"
PROMETHEUS="${PROMETHEUS:-prometheus}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"

die() { echo "promql: $*" >&2; exit 2; }
for value in "$RUNS" "$SCALE" "$SETTLE" "$PG_PORT"; do
    [[ "$value" =~ ^[0-9]+$ ]] || die "not a number: $value"
done
for backend in $BACKENDS; do
    [[ "$backend" == sqlite || "$backend" == postgres ]] || die "BACKENDS: sqlite and/or postgres, not $backend"
done
[[ "$PG_HOST" == 127.0.0.1 ]] || die "PG_HOST must be 127.0.0.1"
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v "$PROMETHEUS" >/dev/null 2>&1 || die "needs Prometheus ($PROMETHEUS; bash tests/clients/setup.sh installs it)"
[[ " $BACKENDS " != *" postgres "* ]] || command -v psql >/dev/null 2>&1 || die "the postgres backend needs psql"

cd "$ROOT"
if [[ "${BUILD:-1}" != 0 ]]; then
    if [[ -n "${OURS_BIN:-}" ]]; then
        cargo build --release --example promql_bench
    else
        cargo build --release --bin killkrill --example promql_bench
    fi
fi
OURS_BIN="${OURS_BIN:-$ROOT/target/release/killkrill}"
BENCH_BIN="${BENCH_BIN:-$ROOT/target/release/examples/promql_bench}"
for bin in "$OURS_BIN" "$BENCH_BIN"; do [[ -x "$bin" ]] || die "$bin is missing (run with BUILD=1)"; done
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ "$OURS_BIN" == "$ROOT/target/release/killkrill" ]] || COMMIT="given binary $OURS_BIN"

STAMP="$(date +%Y-%m-%d-%H%M%S)"
mkdir -p "$ROOT/benches/results"
REPORT="$ROOT/benches/results/promql-$STAMP.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-promql.XXXXXX")"
cp "$OURS_BIN" "$WORK/killkrill"  # others may rebuild target/ during the run
PIDS=()
PG_DB=""
pg() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -z "$PG_DB" ]] || pg -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((10000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
    done
    die "no free port found"
}
wait_up() { # URL PID LOG
    for _ in $(seq 1 600); do
        curl -sf --max-time 2 "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$3" >&2
    die "$1 did not come up"
}
json_str() { { grep -o "\"$1\":\"[^\"]*\"" || true; } | head -n1 | sed 's/^"[^"]*":"//; s/"$//'; }
peak_mb() { awk '$1 == "VmHWM:" { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
CLK="$(getconf CLK_TCK)"
mb_of() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# Samples on the 15 s grid, ending a minute ago.
END_MS=$(( ($(date +%s) - 60) / 15 * 15 * 1000 ))

# --- Prometheus: loaded once, with the first backend's load ---------------------------
PDIR="$WORK/prometheus"
mkdir -p "$PDIR/data"
printf 'global:\n  scrape_interval: 1m\n' >"$PDIR/prometheus.yml"
PPORT="$(free_port)"
"$PROMETHEUS" --config.file="$PDIR/prometheus.yml" --storage.tsdb.path="$PDIR/data" \
    --web.listen-address="127.0.0.1:$PPORT" --web.enable-remote-write-receiver >"$PDIR/log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")
wait_up "http://127.0.0.1:$PPORT/-/ready" "$PROM_PID" "$PDIR/log"
PROM_URL="http://127.0.0.1:$PPORT"
PROM_VERSION="$("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 { print $3 }')"
PROM_LOADED=0

declare -A LINES_OF LOAD_OF DISK_OF RSS_OF COMPACTED_OF
for BACKEND in $BACKENDS; do
    dir="$WORK/$BACKEND"
    mkdir -p "$dir"
    if [[ "$BACKEND" == postgres ]]; then
        PG_DB="kk_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
        pg -d postgres -c "CREATE DATABASE $PG_DB"
        url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
    else
        url="sqlite:///$dir/killkrill.db"
    fi
    port="$(free_port)"
    (cd "$dir" && DATABASE_URL="$url" RETENTION_INTERVAL_SECONDS=5 exec "$WORK/killkrill" --host 127.0.0.1 --port "$port" --no-grpc \
        >"$dir/stdout.log" 2>"$dir/stderr.log") &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    BASE="http://127.0.0.1:$port"
    wait_up "$BASE/healthz" "$SERVER_PID" "$dir/stderr.log"

    post() { curl -sf --max-time 60 -X POST "$BASE$1" -H 'content-type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
    token="$(post /api/v1/auth/login '{"username":"admin","password":"admin123"}' | json_str access_token)"
    source_id="$(post /api/v1/sources '{"name":"bench-promql","type":"prometheus","description":"benches/promql"}' "$token" | json_str id)"
    ingest_key="$(post "/api/v1/sources/$source_id/keys" '{"name":"bench"}' "$token" | json_str key)"
    query_key="$(post /api/v1/auth/api-keys '{"name":"bench-promql"}' "$token" | json_str key)"
    [[ "$ingest_key" == kki_* && "$query_key" == kk_* ]] || die "could not create the keys"

    prometheus_target="$PROM_URL"
    ((PROM_LOADED == 0)) || prometheus_target=""
    echo "promql: loading $BACKEND${prometheus_target:+ and Prometheus}" >&2
    LOAD_OF[$BACKEND]="$("$BENCH_BIN" load --killkrill "$BASE" --ingest-key "$ingest_key" \
        ${prometheus_target:+--prometheus "$prometheus_target"} --end-ms "$END_MS" --scale "$SCALE")"
    PROM_LOADED=1
    # Compaction done: its sample count has stopped growing over two rounds.
    compacted() { curl -sf "$BASE/metrics" | awk '$1 == "killkrill_compaction_samples_total" { print $2 }'; }
    if [[ -n "$(compacted)" ]]; then
        last=-1
        for _ in $(seq 1 120); do
            now="$(compacted)"
            [[ "$now" != "$last" || "$now" == 0 ]] || break
            last="$now"
            sleep 11
        done
        COMPACTED_OF[$BACKEND]="$now"
    fi
    sleep "$SETTLE"

    echo "promql: querying $BACKEND and Prometheus, $RUNS runs each" >&2
    before="$(cpu_ticks "$SERVER_PID")"
    LINES_OF[$BACKEND]="$("$BENCH_BIN" query --killkrill "$BASE" --query-key "$query_key" \
        --prometheus "$PROM_URL" --end-ms "$END_MS" --runs "$RUNS" --scale "$SCALE")"
    cpu_s="$(awk -v t=$(($(cpu_ticks "$SERVER_PID") - before)) -v c="$CLK" 'BEGIN { printf "%.3f", t / c }')"
    RSS_OF[$BACKEND]="$(peak_mb "$SERVER_PID") MB"
    if [[ "$BACKEND" == postgres ]]; then
        DISK_OF[$BACKEND]="$(pg -d "$PG_DB" -At -c "SELECT pg_database_size(current_database())")"
    else
        DISK_OF[$BACKEND]="$(stat -c %s "$dir/killkrill.db")"
    fi
    LINES_OF[$BACKEND]+=$'\n'"{\"cpu_seconds\":$cpu_s}"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    if [[ -n "$PG_DB" ]]; then pg -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null; PG_DB=""; fi
done
RSS_OF[prometheus]="$(peak_mb "$PROM_PID") MB"
DISK_OF[prometheus]="$(du -sb "$PDIR/data" | awk '{ print $1 }')"

field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); 
for k in sys.argv[2].split("."): d=d[k]
print(round(d, 1) if isinstance(d, float) else d)' "$1" "$2"; }
{
    echo "# PromQL: killkrill against Prometheus $PROM_VERSION"
    echo
    echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $COMMIT, RUNS=$RUNS SCALE=$SCALE"
    echo
    for BACKEND in $BACKENDS; do
        samples="$(field "${LOAD_OF[$BACKEND]}" samples)"
        echo "## $BACKEND"
        echo
        echo "Loaded $samples samples: killkrill $(field "${LOAD_OF[$BACKEND]}" killkrill_seconds) s$(grep -q "\"prometheus_seconds\":[0-9]" <<<"${LOAD_OF[$BACKEND]}" && echo ", Prometheus $(field "${LOAD_OF[$BACKEND]}" prometheus_seconds) s")."
        [[ -z "${COMPACTED_OF[$BACKEND]:-}" ]] || echo "Compacted into chunks before the queries: ${COMPACTED_OF[$BACKEND]} samples (the rest, the last 30-minute window, is in the head)."
        echo "Disk: killkrill $(mb_of "${DISK_OF[$BACKEND]}") MB ($(awk -v b="${DISK_OF[$BACKEND]}" -v s="$samples" 'BEGIN { printf "%.1f", b / s }') B/sample, whole database), Prometheus $(mb_of "${DISK_OF[prometheus]}") MB. Peak RSS: killkrill ${RSS_OF[$BACKEND]}, Prometheus ${RSS_OF[prometheus]}."
        echo
        echo "| query | killkrill p50 / p90 / max ms | Prometheus p50 / p90 / max ms | ratio p50 | series x points | same answer |"
        echo "|---|---:|---:|---:|---:|---|"
        while read -r line; do
            [[ "$line" == *'"query"'* ]] || continue
            echo "| $(field "$line" query) | $(field "$line" killkrill_ms.p50) / $(field "$line" killkrill_ms.p90) / $(field "$line" killkrill_ms.max) | $(field "$line" prometheus_ms.p50) / $(field "$line" prometheus_ms.p90) / $(field "$line" prometheus_ms.max) | **$(field "$line" ratio_p50)** | $(field "$line" series) x $(field "$line" points) | $(field "$line" same_answer) |"
        done <<<"${LINES_OF[$BACKEND]}"
        echo
        echo "killkrill CPU during the queries: $(field "$(tail -n1 <<<"${LINES_OF[$BACKEND]}")" cpu_seconds) s for $((RUNS * 3 + 6)) queries."
        echo
    done
    echo "Goal (issue 21): killkrill p50 <= 2x Prometheus' on each query, on SQLite and PostgreSQL."
} | tee "$REPORT"

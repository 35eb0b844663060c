#!/usr/bin/env bash
# The second transports, measured on the release binary (see benches/README.md, section
# "gRPC and TLS"):
#   1. log ingest, the same batches over REST (POST /api/v1/logs, one batch a request) and
#      over gRPC (LogService/IngestLogs, one client stream per worker), by one load
#      generator (examples/ingest_load.rs), WORKERS_LIST concurrent workers, DURATION s
#      each, on each of BACKENDS; goal: gRPC >= 1.5x the REST lines/s;
#   2. GET /healthz with keep-alive, plain vs TLS (wrk -c$CONNECTIONS, a certificate made
#      by openssl); goal: TLS >= 70 % of plain req/s.
#
#   bash benches/grpc/run.sh
#
# Environment: BACKENDS="sqlite postgres" DURATION=10 WORKERS_LIST="4 8" BATCH=1000
#   CONNECTIONS=64 THREADS=2 SERVER_WORKERS=4 PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
#   BUILD=1 (0: use the binaries as they are), OURS_BIN (the killkrill binary to measure,
#   target/release/killkrill; e.g. a copy of an earlier commit's), LOAD_BIN (the load
#   generator, target/release/examples/ingest_load)
# The report goes to benches/results/transports-<date>.md (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite postgres}"
DURATION="${DURATION:-10}"
WORKERS_LIST="${WORKERS_LIST:-4 8}"
BATCH="${BATCH:-1000}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
SERVER_WORKERS="${SERVER_WORKERS:-4}"
PG_HOST="${PG_HOST:-127.0.0.1}" PG_PORT="${PG_PORT:-5432}" PG_USER="${PG_USER:-postgres}"

command -v wrk >/dev/null || { apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; }
cd "$ROOT"
if [[ "${BUILD:-1}" != 0 ]]; then
    cargo build --release --bin killkrill --example ingest_load
fi
BIN="${OURS_BIN:-$ROOT/target/release/killkrill}"
LOAD="${LOAD_BIN:-$ROOT/target/release/examples/ingest_load}"
for bin in "$BIN" "$LOAD"; do
    [[ -x "$bin" ]] || { echo "run.sh: $bin is missing (run with BUILD=1)" >&2; exit 1; }
done

WORK="$(mktemp -d)"
PIDS=()
PG_DB=""
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "$PG_DB" ]] && psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" postgres >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME DATABASE_URL EXTRA_ENV... -> sets HTTP_PORT GRPC_PORT_ SERVER_PID
start() {
    local name="$1" url="$2"
    shift 2
    HTTP_PORT="$(free_port)" GRPC_PORT_="$(free_port)"
    env -i PATH="$PATH" FLASK_ENV=development DATABASE_URL="$url" WORKERS="$SERVER_WORKERS" GRPC_PORT="$GRPC_PORT_" "$@" \
        "$BIN" --host 127.0.0.1 --port "$HTTP_PORT" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 1 300); do
        curl -ksf "http://127.0.0.1:$HTTP_PORT/livez" >/dev/null 2>&1 && return 0
        curl -ksf "https://127.0.0.1:$HTTP_PORT/livez" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server $name did not start:" >&2
    tail -5 "$WORK/$name.log" >&2
    exit 1
}

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

# The CPU seconds (user + system) of this shell's children reaped so far, into the
# variable named $1. `times` must run in this shell (not in a $(...) subshell, whose
# children are its own), so the load generator run in the foreground between two calls is
# what the difference counts.
children_cpu() {
    times >"$WORK/times"
    printf -v "$1" '%s' "$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$WORK/times")"
}

# The CPU ticks (user + system) the storage has used so far: on SQLite, the server's
# sqlx-sqlite connection threads (SQLite runs inside them, and one write transaction at a
# time: what they need per line bounds the lines/s of any transport); on PostgreSQL, every
# postgres process of the machine (the benchmark's database is the only busy one).
storage_ticks() { # BACKEND
    local pattern='^sqlx-sqlite' files=("/proc/$SERVER_PID/task/"*/stat)
    if [[ "$1" == postgres ]]; then
        pattern='^postgres$'
        files=(/proc/[0-9]*/stat)
    fi
    # comm is the second field, in parentheses; utime and stime are the 14th and 15th.
    cat "${files[@]}" 2>/dev/null | awk -v p="$pattern" '{
        c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*$/, "", c)
        if (c !~ p) next
        r = $0; sub(/^.*\) /, "", r); split(r, f, " ")
        t += f[12] + f[13]
    } END { print t + 0 }'
}

REPORT="$ROOT/benches/results/transports-$(date +%Y%m%d-%H%M%S).md"
mkdir -p "$(dirname "$REPORT")"
{
    echo "# Transports: commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ), $(nproc) CPUs"
    echo
    echo "## Log ingest, batches of $BATCH lines, ${DURATION} s a run"
    echo
    echo "| backend | workers | REST lines/s | gRPC lines/s | gRPC / REST | server µs/line REST | server µs/line gRPC | load generator µs/line REST | load generator µs/line gRPC | storage µs/line REST | storage µs/line gRPC | storage CPUs busy REST, gRPC | storage's ceiling, lines/s | ceiling / REST | errors (REST, gRPC) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} >"$REPORT"

# Each run gets a fresh server and an empty database: inserts slow down as the tables
# grow, and the second transport must not pay for the first one's rows.
fresh_server() { # BACKEND -> HTTP_PORT GRPC_PORT_ SERVER_PID SOURCE_ID KEY
    local backend="$1" url token
    case "$backend" in
        sqlite)
            rm -f "$WORK"/ingest.db*
            url="sqlite:///$WORK/ingest.db"
            ;;
        postgres)
            [[ -n "$PG_DB" ]] && psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" postgres
            PG_DB="kk_bench_$RANDOM$RANDOM"
            psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "CREATE DATABASE $PG_DB" postgres
            url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
            ;;
        *) echo "unknown backend $backend" >&2; exit 1 ;;
    esac
    start "$backend" "$url"
    token="$(curl -sf -X POST "http://127.0.0.1:$HTTP_PORT/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"admin123"}' | json '["access_token"]')"
    SOURCE_ID="$(curl -sf -X POST "http://127.0.0.1:$HTTP_PORT/api/v1/sources" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' -d '{"name":"bench","type":"http"}' | json '["id"]')"
    KEY="$(curl -sf -X POST "http://127.0.0.1:$HTTP_PORT/api/v1/sources/$SOURCE_ID/keys" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' -d '{"name":"bench"}' | json '["key"]')"
}

for backend in $BACKENDS; do
    for workers in $WORKERS_LIST; do
        declare -A rate errors cpu load_cpu store_cpu store_busy
        for mode in rest grpc; do
            fresh_server "$backend"
            before="$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")"
            store_before="$(storage_ticks "$backend")"
            children_cpu load_before
            "$LOAD" --http "127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT_" --key "$KEY" --source "$SOURCE_ID" \
                --mode "$mode" --workers "$workers" --seconds "$DURATION" --batch "$BATCH" >"$WORK/load.out"
            children_cpu load_after
            out="$(cat "$WORK/load.out")"
            after="$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")"
            store_after="$(storage_ticks "$backend")"
            echo "$backend $out"
            rate[$mode]="$(echo "$out" | json '["lines_per_second"]')"
            errors[$mode]="$(echo "$out" | json '["errors"]')"
            lines="$(echo "$out" | json '["lines"]')"
            # killkrill's own CPU (not the database's) per stored line, in microseconds.
            cpu[$mode]="$(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$lines" 'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')"
            store_cpu[$mode]="$(awk -v t="$((store_after - store_before))" -v hz="$(getconf CLK_TCK)" -v n="$lines" 'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')"
            store_busy[$mode]="$(awk -v t="$((store_after - store_before))" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" 'BEGIN { printf "%.2f", t / hz / d }')"
            load_cpu[$mode]="$(awk -v a="$load_before" -v b="$load_after" -v n="$lines" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) * 1e6 / n : 0) }')"
            kill "$SERVER_PID"
            wait "$SERVER_PID" 2>/dev/null || true
        done
        ratio="$(awk -v g="${rate[grpc]}" -v r="${rate[rest]}" 'BEGIN { printf "%.2f", (r > 0 ? g / r : 0) }')"
        # The lines/s the storage alone allows, at the smaller of the two transports' storage
        # cost a line: one CPU for SQLite's one writer at a time, all CPUs for PostgreSQL.
        # However little the transport costs, no transport stores more.
        cpus=1
        [[ "$backend" == postgres ]] && cpus="$(nproc)"
        ceiling="$(awk -v a="${store_cpu[rest]}" -v b="${store_cpu[grpc]}" -v c="$cpus" 'BEGIN { m = (a < b ? a : b); printf "%.0f", (m > 0 ? c * 1e6 / m : 0) }')"
        headroom="$(awk -v c="$ceiling" -v r="${rate[rest]}" 'BEGIN { printf "%.2f", (r > 0 ? c / r : 0) }')"
        echo "| $backend | $workers | ${rate[rest]%.*} | ${rate[grpc]%.*} | **$ratio** | ${cpu[rest]} | ${cpu[grpc]} | ${load_cpu[rest]} | ${load_cpu[grpc]} | ${store_cpu[rest]} | ${store_cpu[grpc]} | ${store_busy[rest]}, ${store_busy[grpc]} | $ceiling | $headroom | ${errors[rest]}, ${errors[grpc]} |" >>"$REPORT"
    done
done

# TLS vs plain /healthz, keep-alive, one server each on SQLite.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
{
    echo
    echo "## GET /healthz with keep-alive: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
    echo
    echo "| server | req/s | p50 | p99 |"
    echo "|---|---:|---:|---:|"
} >>"$REPORT"
declare -A healthz
for variant in plain tls; do
    if [[ "$variant" == tls ]]; then
        start "$variant" "sqlite:///$WORK/$variant.db" TLS_CERT_FILE="$WORK/cert.pem" TLS_KEY_FILE="$WORK/key.pem" LOG_LEVEL=INFO
        scheme=https
    else
        start "$variant" "sqlite:///$WORK/$variant.db" LOG_LEVEL=INFO
        scheme=http
    fi
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$scheme://127.0.0.1:$HTTP_PORT/healthz" >/dev/null
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$scheme://127.0.0.1:$HTTP_PORT/healthz")"
    echo "$out"
    rps="$(echo "$out" | awk '/Requests\/sec/ { print $2 }')"
    p50="$(echo "$out" | awk '$1 == "50%" { print $2 }')"
    p99="$(echo "$out" | awk '$1 == "99%" { print $2 }')"
    healthz[$variant]="$rps"
    echo "| $variant | ${rps%.*} | $p50 | $p99 |" >>"$REPORT"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
done
tls_ratio="$(awk -v t="${healthz[tls]}" -v p="${healthz[plain]}" 'BEGIN { printf "%.2f", t / p }')"
echo >>"$REPORT"
echo "TLS / plain: **$tls_ratio** (goal >= 0.70)" >>"$REPORT"
cat "$REPORT"

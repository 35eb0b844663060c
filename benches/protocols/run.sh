#!/usr/bin/env bash
# The agents' ingest protocols against the JSON API, and remote_write against Prometheus,
# on the release killkrill binary. See benches/README.md, section "Protocols".
#
#   bash benches/protocols/run.sh
#
# 1. Logs: the same BATCHES batches of LINES lines (examples/protocol_payloads.rs writes
#    each batch in each protocol's encoding) sent for DURATION s (after a WARMUP s warm-up)
#    at CONNECTIONS connections through each of PROTOCOLS, each batch once (their
#    timestamps increasing from batch to batch, as a live producer's):
#      json       POST /api/v1/logs, the JSON API (the reference)
#      otlp       POST /v1/logs, OTLP/HTTP protobuf
#      otlp-grpc  opentelemetry.proto.collector.logs.v1.LogsService/Export, unary calls
#                 (examples/otlp_grpc_load.rs; CONNECTIONS calls in flight, a connection each)
#      loki       POST /loki/api/v1/push, protobuf + snappy
#      bulk       POST /elastic/_bulk, NDJSON (create + ECS document)
#    wrk (-tN -cN, benches/protocols/post.lua) sends the HTTP ones, each connection its
#    share of the batches in order. Reported: batches/s, lines/s and their ratio to the JSON API's, p50/p99 per
#    batch, non-2xx answers, answers that refuse part of the batch, the server's CPU per
#    line, its peak RSS during the measured run, the rows stored against the lines accepted.
# 2. remote_write 1.0: RW_SHARDS shards of RW_SERIES series x RW_SAMPLES samples a request
#    (snappy block), each shard's requests sent in order by one connection (as Prometheus'
#    queue shards send), into killkrill (POST /prometheus/api/v1/write) and into Prometheus
#    (`prometheus --web.enable-remote-write-receiver`, POST /api/v1/write): samples/s, the
#    ratio killkrill / Prometheus, peak RSS of each.
#
# Each run gets a fresh server and an empty database (inserts slow down as tables grow;
# no protocol pays for another's rows), started as benches/http/data.sh starts it
# (development defaults, WORKERS runtime threads, stdout to a file; --no-grpc except for
# otlp-grpc). Peak RSS: VmHWM, reset through /proc/PID/clear_refs after the warm-up (so it
# is the peak of the measured run), and the largest VmRSS sampled every 0.2 s.
#
# Environment (all optional):
#   BACKENDS=sqlite      and/or postgres (a server on PG_HOST:PG_PORT, user PG_USER; a fresh
#                        database kk_bench_<random> a run, dropped after it)
#   PROTOCOLS="json otlp otlp-grpc loki bulk"   REMOTE_WRITE=1 (0: skip part 2)
#   DURATION=10 WARMUP=2 CONNECTIONS=4 WORKERS=4
#   BATCHES=$(( (WARMUP + DURATION) * 120 ))  LINES=1000   (more batches than any protocol
#                        sends in that time here; past them batches go again, which the
#                        report flags: their rows then land among the stored ones, which
#                        costs the databases more than appending does)
#   RW_SERIES=500 RW_SAMPLES=4 RW_SHARDS=$CONNECTIONS (one connection a shard)
#   RW_FILES=$(( (WARMUP + DURATION) * 300 ))   requests a shard (more than either receiver
#                        sends a connection in that time here; past them a shard starts
#                        over, which the report flags: a receiver refuses old samples)
#   QUIET_WAIT=120       before each run, wait at most this long for the CPUs to be idle
#                        (<= 10 % busy over 2 s); "other CPU %" in the report says how quiet
#   PERF=0               1: record the killkrill server during each measured run
#                        (perf record -g -p) and write its self time and inclusive time
#                        by symbol beside the raw outputs (<key>.perf.txt)
#   BUILD=1              0: use the binaries already built
#   OURS_BIN=...         the killkrill binary to measure (default: target/release/killkrill)
#   PAYLOADS_BIN, GRPC_LOAD_BIN  the two examples (target/release/examples/...)
#   PROMETHEUS=prometheus  PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
#
# Only 127.0.0.1 is used. Output: a markdown report on stdout and in
# benches/results/protocols-<date>.md, the raw wrk and client outputs beside it in
# benches/results/protocols-<date>/ (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite}"
PROTOCOLS="${PROTOCOLS:-json otlp otlp-grpc loki bulk}"
REMOTE_WRITE="${REMOTE_WRITE:-1}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-4}"
WORKERS="${WORKERS:-4}"
BATCHES="${BATCHES:-$(((WARMUP + DURATION) * 120))}"
LINES="${LINES:-1000}"
RW_SERIES="${RW_SERIES:-500}"
RW_SAMPLES="${RW_SAMPLES:-4}"
RW_SHARDS="${RW_SHARDS:-$CONNECTIONS}"
RW_FILES="${RW_FILES:-$(((WARMUP + DURATION) * 300))}"
QUIET_WAIT="${QUIET_WAIT:-120}"
PERF="${PERF:-0}"
PROMETHEUS="${PROMETHEUS:-prometheus}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"
export WORKERS

die() { echo "protocols: $*" >&2; exit 2; }
for value in "$DURATION" "$WARMUP" "$CONNECTIONS" "$WORKERS" "$BATCHES" "$LINES" "$RW_SERIES" "$RW_SAMPLES" \
    "$RW_SHARDS" "$RW_FILES" "$QUIET_WAIT" "$REMOTE_WRITE" "$PG_PORT"; do
    [[ "$value" =~ ^[0-9]+$ ]] || die "not a number: $value"
done
for backend in $BACKENDS; do
    [[ "$backend" == sqlite || "$backend" == postgres ]] || die "BACKENDS: sqlite and/or postgres, not $backend"
done
for protocol in $PROTOCOLS; do
    [[ " json otlp otlp-grpc loki bulk " == *" $protocol "* ]] || die "unknown protocol $protocol"
done
[[ "$PG_HOST" == 127.0.0.1 ]] || die "PG_HOST must be 127.0.0.1"
((DURATION >= 1 && DURATION <= 600 && WARMUP <= 60)) || die "DURATION 1..600, WARMUP 0..60"
((CONNECTIONS >= 1 && CONNECTIONS <= 64)) || die "CONNECTIONS must be 1..64"
((RW_SHARDS == CONNECTIONS)) || die "RW_SHARDS must equal CONNECTIONS (each connection sends one shard)"
((LINES >= 1 && LINES <= 10000 && BATCHES >= CONNECTIONS && BATCHES <= 10000)) || die "LINES 1..10000, BATCHES CONNECTIONS..10000"
((RW_SERIES * RW_SAMPLES <= 10000 && RW_FILES >= 1)) || die "RW_SERIES x RW_SAMPLES must be <= 10000"

# --- tools ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    echo "protocols: installing wrk (apt-get install -y wrk)" >&2
    $SUDO apt-get install -y wrk >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y wrk >&2; }
fi
command -v curl >/dev/null 2>&1 || die "curl is required"
if ((REMOTE_WRITE)) && ! command -v "$PROMETHEUS" >/dev/null 2>&1; then
    die "REMOTE_WRITE=1 needs Prometheus ($PROMETHEUS; Debian: apt-get install prometheus)"
fi
[[ " $BACKENDS " != *" postgres "* ]] || command -v psql >/dev/null 2>&1 || die "the postgres backend needs psql"

# --- build ---------------------------------------------------------------------------
cd "$ROOT"
if [[ "${BUILD:-1}" != 0 ]]; then
    if [[ -n "${OURS_BIN:-}" ]]; then
        cargo build --release --example protocol_payloads --example otlp_grpc_load
    else
        cargo build --release --bin killkrill --example protocol_payloads --example otlp_grpc_load
    fi
fi
SOURCE_BIN="${OURS_BIN:-$ROOT/target/release/killkrill}"
PAYLOADS_BIN="${PAYLOADS_BIN:-$ROOT/target/release/examples/protocol_payloads}"
GRPC_LOAD_BIN="${GRPC_LOAD_BIN:-$ROOT/target/release/examples/otlp_grpc_load}"
for bin in "$SOURCE_BIN" "$PAYLOADS_BIN" "$GRPC_LOAD_BIN"; do
    [[ -x "$bin" ]] || die "$bin is missing (run with BUILD=1)"
done
if [[ -n "${OURS_BIN:-}" ]]; then
    COMMIT="given binary $OURS_BIN"
else
    COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (uncommitted changes in src/ or Cargo.*)')"
fi

STAMP="$(date +%Y-%m-%d-%H%M%S)"
RESULTS="$ROOT/benches/results"
RAW="$RESULTS/protocols-$STAMP"
mkdir -p "$RAW"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-protocols.XXXXXX")"
# A copy: others may rebuild target/ during the run.
cp "$SOURCE_BIN" "$WORK/killkrill"
BIN="$WORK/killkrill"
LUA="$ROOT/benches/protocols/post.lua"
PIDS=()   # servers and samplers still running
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
forget() { # PID: no longer to be killed at exit (it was waited for)
    local pid keep=()
    for pid in "${PIDS[@]}"; do [[ "$pid" == "$1" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# --- helpers -------------------------------------------------------------------------
# A local port nothing listens on, below the ephemeral range.
free_port() {
    local port low
    low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    ((low > 11000)) || low=32768
    for _ in $(seq 1 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}
kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status" 2>/dev/null || echo 0; }  # FIELD PID
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
num() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }
to_ms() { # a wrk duration (12.34us, 1.2ms, 1.00s, 2m) in milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.1f", n
    }'
}
calls_in() { local n=""; [[ ! -f "$1" ]] || n="$(json_num "$2" <"$1")"; echo "${n:-0}"; }  # FILE NAME: a count of the client's
# The first number / string value of "NAME" in the JSON on stdin, or nothing.
json_num() { { grep -o "\"$1\":[-0-9.e]*" || true; } | head -n1 | sed 's/^[^:]*://'; }
json_str() { { grep -o "\"$1\":\"[^\"]*\"" || true; } | head -n1 | sed 's/^"[^"]*":"//; s/"$//'; }

CLK="$(getconf CLK_TCK)"
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }  # utime + stime
sys_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# The CPU ticks of the PostgreSQL processes (the benchmark's database is the only busy one).
pg_ticks() {
    [[ "$BACKEND" == postgres ]] || { echo 0; return; }
    cat /proc/[0-9]*/stat 2>/dev/null | awk '{
        c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*$/, "", c)
        if (c != "postgres") next
        r = $0; sub(/^.*\) /, "", r); split(r, f, " "); t += f[12] + f[13]
    } END { print t + 0 }'
}

# Before each run: wait (at most QUIET_WAIT s) until the CPUs have been <= 10 % busy for 2 s.
wait_quiet() {
    local waited=0 b1 t1 b2 t2 pct
    while ((waited < QUIET_WAIT)); do
        read -r b1 t1 < <(sys_ticks)
        sleep 2
        read -r b2 t2 < <(sys_ticks)
        pct=$((t2 > t1 ? 100 * (b2 - b1) / (t2 - t1) : 0))
        ((pct > 10)) || return 0
        ((waited > 0)) || echo "protocols: the machine is busy ($pct %); waiting (at most ${QUIET_WAIT}s)" >&2
        waited=$((waited + 2))
    done
    echo "protocols: still busy after ${QUIET_WAIT}s; measuring anyway" >&2
}

# window_start / window_end PID: the CPU seconds of the server (W_SERVER_S) and of the
# database (W_DB_S) between the two, and W_OTHER: the % of all CPUs that neither they nor
# the load generator (LOAD_TICKS, set by the caller) used.
window_start() {
    W_PROC="$(proc_ticks "$1")"
    W_PG="$(pg_ticks)"
    read -r W_BUSY W_TOTAL < <(sys_ticks)
}
window_end() {
    local busy total server db
    read -r busy total < <(sys_ticks)
    server=$(($(proc_ticks "$1") - W_PROC))
    db=$(($(pg_ticks) - W_PG))
    W_SERVER_S="$(awk -v s="$server" -v c="$CLK" 'BEGIN { printf "%.3f", s / c }')"
    W_DB_S="$(awk -v s="$db" -v c="$CLK" 'BEGIN { printf "%.3f", s / c }')"
    W_OTHER="$(awk -v b=$((busy - W_BUSY)) -v t=$((total - W_TOTAL)) -v s="$server" -v d="$db" -v l="$LOAD_TICKS" \
        'BEGIN { o = b - s - d - l; if (o < 0) o = 0; printf "%.0f", (t > 0 ? 100 * o / t : 0) }')"
}
# The CPU ticks (user + system) of this shell's reaped children so far, into LOAD_T.
children_ticks() {
    times >"$WORK/times"
    LOAD_T="$(awk -v c="$CLK" 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } printf "%.0f", s * c }' "$WORK/times")"
}

# sample_rss PID FILE: VmRSS every 0.2 s into FILE, in the background (SAMPLER).
sample_rss() {
    (
        for _ in $(seq 1 $(((DURATION + 30) * 5))); do
            kib VmRSS "$1" >>"$2"
            sleep 0.2
        done
    ) &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
}
stop_sampler() {
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    forget "$SAMPLER"
}
max_of() { awk '$1 + 0 > m { m = $1 + 0 } END { print m + 0 }' "$1" 2>/dev/null || echo 0; }

HWM_NOT_RESET=0
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || HWM_NOT_RESET=1; }

# --- killkrill -----------------------------------------------------------------------
# fresh_server NAME [grpc]: a new server on an empty database -> SERVER_PID BASE GRPC_ADDR
fresh_server() {
    local name="$1" grpc="${2:-}" url dir="$WORK/$BACKEND-$1" port gport
    mkdir -p "$dir"
    if [[ "$BACKEND" == postgres ]]; then
        PG_DB="kk_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
        pg -d postgres -c "CREATE DATABASE $PG_DB"
        url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
    else
        url="sqlite:///$dir/killkrill.db"  # $dir is absolute: sqlite:////tmp/...
        SQLITE_FILE="$dir/killkrill.db"
    fi
    port="$(free_port)"
    gport="$(free_port)"
    local flags=(--host 127.0.0.1 --port "$port")
    [[ -n "$grpc" ]] || flags+=(--no-grpc)
    (cd "$dir" && DATABASE_URL="$url" GRPC_PORT="$gport" exec "$BIN" "${flags[@]}" >"$dir/stdout.log" 2>"$dir/stderr.log") &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    BASE="http://127.0.0.1:$port"
    GRPC_ADDR="127.0.0.1:$gport"
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if curl -sf --max-time 2 "$BASE/healthz" >/dev/null 2>&1; then
            if [[ -z "$grpc" ]] || (exec 3<>"/dev/tcp/127.0.0.1/$gport") 2>/dev/null; then
                return 0
            fi
        fi
        sleep 0.1
    done
    echo "protocols: killkrill did not start; its stderr:" >&2
    tail -n 20 "$dir/stderr.log" >&2 || true
    exit 1
}
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    forget "$SERVER_PID"
    if [[ -n "$PG_DB" ]]; then
        pg -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
        PG_DB=""
    fi
}
api() { # METHOD PATH BODY [TOKEN]: prints the answer's body, fails unless 2xx
    local code
    code="$(curl -s -o "$WORK/api.out" -w '%{http_code}' --max-time 60 -X "$1" "$BASE$2" \
        -H 'content-type: application/json' ${4:+-H "Authorization: Bearer $4"} -d "$3")"
    [[ "$code" == 2* ]] || die "$1 $2 answered $code: $(head -c 300 "$WORK/api.out")"
    cat "$WORK/api.out"
}
# new_source NAME TYPE -> SOURCE_ID KEY (logs in as the development admin)
new_source() {
    local token
    token="$(api POST /api/v1/auth/login '{"username":"admin","password":"admin123"}' | json_str access_token)"
    SOURCE_ID="$(api POST /api/v1/sources "{\"name\":\"$1\",\"type\":\"$2\",\"description\":\"benches/protocols\"}" "$token" | json_str id)"
    KEY="$(api POST "/api/v1/sources/$SOURCE_ID/keys" '{"name":"bench"}' "$token" | json_str key)"
    [[ -n "$SOURCE_ID" && "$KEY" == kki_* ]] || die "could not create a source and an ingest key"
}
count_rows() { # TABLE: rows in the current server's database
    if [[ "$BACKEND" == postgres ]]; then
        pg -d "$PG_DB" -At -c "SELECT count(*) FROM $1"
    elif command -v sqlite3 >/dev/null 2>&1; then
        sqlite3 "file:$SQLITE_FILE?mode=ro" "SELECT count(*) FROM $1" 2>/dev/null || echo "?"
    else
        echo "?"
    fi
}

# --- one measured load ---------------------------------------------------------------
# Results keyed by "<backend>:<protocol>" (remote_write: "<backend>:rw", "prometheus:rw").
declare -A RPS UNITS P50 P99 BAD BAD_LAST REFUSED CPU_US DB_US HWM RSSMAX OTHER STORED SENT NOTE

# wrk_load KEY PID URL PROTOCOL AUTH_KEY SOURCE_ID: warm-up, then the measured run.
perf_summary() {
    echo "# self time by symbol"
    perf report -i "$1" --stdio --no-children --sort symbol -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 || true
    echo "# inclusive time (children) by symbol"
    perf report -i "$1" --stdio --children --sort symbol -g none --percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$' |
        grep -v 'poll\|call_once\|catch_unwind\|do_call\|closure_env\|{closure#0}\|0xffffffff\|async_block\|async_fn\|(inlined)' | head -n 50 || true
}
wrk_load() {
    local key="$1" pid="$2" url="$3" protocol="$4" auth="$5" source="$6" start=0 out warm
    local args=("$protocol" "$WORK/payloads" "$auth" "$source" "$CONNECTIONS")
    warm="$RAW/${key//:/-}.warmup.wrk"
    out="$RAW/${key//:/-}.wrk"
    wait_quiet
    if ((WARMUP > 0)); then
        wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 30s -s "$LUA" "$url" -- "${args[@]}" 0 >"$warm"
        # The measured run goes on from where the warm-up stopped: no file is sent twice.
        start="$(awk -F'[= ]' '/^next_file=/ { print $2 }' "$warm")"
    fi
    reset_hwm "$pid"
    rm -f "$WORK/rss"
    sample_rss "$pid" "$WORK/rss"
    echo "== $key: wrk -t$CONNECTIONS -c$CONNECTIONS -d${DURATION}s -s post.lua $url -- $protocol" >&2
    children_ticks
    local before="$LOAD_T" perf_pid=""
    window_start "$pid"
    if [[ "$PERF" == 1 && "$key" != prometheus:* ]]; then
        perf record -q -g -p "$pid" -o "$RAW/${key//:/-}.perf" -- sleep "$DURATION" 2>/dev/null &
        perf_pid=$!
    fi
    wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s --latency -s "$LUA" "$url" -- "${args[@]}" "${start:-0}" >"$out"
    children_ticks
    if [[ -n "$perf_pid" ]]; then
        wait "$perf_pid" || true
        perf_summary "$RAW/${key//:/-}.perf" >"$RAW/${key//:/-}.perf.txt"
    fi
    LOAD_TICKS=$((LOAD_T - before))
    window_end "$pid"
    stop_sampler
    cat "$out" >&2
    local ok runtime
    ok="$(awk '/^statuses:/ { split($2, a, "="); print a[2] + 0 }' "$out")"
    REFUSED[$key]="$(awk '/^statuses:/ { split($5, a, "="); print a[2] + 0 }' "$out")"
    BAD[$key]="$(awk '/^statuses:/ { split($3, a, "="); print a[2] + 0 }' "$out")"
    BAD_LAST[$key]="$(awk '/^statuses:/ { split($4, a, "="); print a[2] + 0 }' "$out")"
    runtime="$(awk '/requests in/ { v = $4; sub(/,$/, "", v); print v }' "$out")"
    runtime="$(to_ms "$runtime")"
    # Batches fully accepted a second (an answer refusing some items does not count).
    RPS[$key]="$(awk -v n="$ok" -v r="${REFUSED[$key]}" -v ms="$runtime" 'BEGIN { printf "%.1f", (ms > 0 ? (n - r) * 1000 / ms : 0) }')"
    P50[$key]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    P99[$key]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    if grep -q '^next_file=.* wrapped=1' "$out" "$warm" 2>/dev/null; then
        NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }**files sent again** (raise $([[ "$protocol" == rw ]] && echo RW_FILES || echo BATCHES))"
    fi
    grep -q 'Socket errors' "$out" && NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }$(awk '/Socket errors/ { sub(/^ +/, ""); print }' "$out")"
    finish_load "$key" "$pid" "$ok"
}

# grpc_load KEY PID: the OTLP/gRPC client, one run (so no batch goes twice) whose first
# WARMUP seconds it does not count; the server's RSS and CPU are measured after them.
grpc_load() {
    local key="$1" pid="$2" out="$RAW/${1//:/-}.json" client
    wait_quiet
    echo "== $key: otlp_grpc_load --concurrency $CONNECTIONS --warmup $WARMUP --seconds $DURATION ($GRPC_ADDR)" >&2
    children_ticks
    local before="$LOAD_T"
    "$GRPC_LOAD_BIN" --addr "$GRPC_ADDR" --key "$KEY" --dir "$WORK/payloads" --concurrency "$CONNECTIONS" \
        --lines "$LINES" --warmup "$WARMUP" --seconds "$DURATION" >"$out" &
    client=$!
    PIDS+=("$client")
    sleep "$WARMUP"
    reset_hwm "$pid"
    rm -f "$WORK/rss"
    sample_rss "$pid" "$WORK/rss"
    window_start "$pid"
    wait "$client" || true
    forget "$client"
    children_ticks
    LOAD_TICKS=$((LOAD_T - before))
    window_end "$pid"
    stop_sampler
    cat "$out" >&2
    local ok first_error
    ok="$(json_num calls <"$out")"
    ok="${ok:-0}"
    REFUSED[$key]="$(json_num partial <"$out")"
    REFUSED[$key]="${REFUSED[$key]:-0}"
    BAD[$key]="$(json_num errors <"$out")"
    first_error="$(json_str first_error <"$out")"
    [[ -n "$first_error" ]] || first_error="$(json_str error <"$out")"
    BAD_LAST[$key]="$first_error"
    RPS[$key]="$(awk -v n="$ok" -v r="${REFUSED[$key]}" -v d="$DURATION" 'BEGIN { printf "%.1f", (n - r) / d }')"
    P50[$key]="$(awk -v v="$(json_num p50_ms <"$out")" 'BEGIN { printf "%.1f", v }')"
    P99[$key]="$(awk -v v="$(json_num p99_ms <"$out")" 'BEGIN { printf "%.1f", v }')"
    ! grep -q '"repeated":true' "$out" || NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }**files sent again** (raise BATCHES)"
    finish_load "$key" "$pid" "$ok"
}

finish_load() { # KEY PID ACCEPTED_REQUESTS
    local key="$1" pid="$2" ok="$3" units=$LINES
    [[ "$key" != *:rw ]] || units=$((RW_SERIES * RW_SAMPLES))
    UNITS[$key]="$(awk -v r="${RPS[$key]}" -v u="$units" 'BEGIN { printf "%.0f", r * u }')"
    CPU_US[$key]="$(awk -v s="$W_SERVER_S" -v n="$ok" -v u="$units" 'BEGIN { printf "%.2f", (n > 0 ? s * 1e6 / (n * u) : 0) }')"
    DB_US[$key]="$(awk -v s="$W_DB_S" -v n="$ok" -v u="$units" 'BEGIN { printf "%.2f", (n > 0 ? s * 1e6 / (n * u) : 0) }')"
    HWM[$key]="$(kib VmHWM "$pid")"
    RSSMAX[$key]="$(max_of "$WORK/rss")"
    OTHER[$key]="$W_OTHER"
    ((HWM_NOT_RESET == 0)) || NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }VmHWM not reset: includes start-up"
}

# --- payloads ------------------------------------------------------------------------
echo "== payloads: $BATCHES batches of $LINES lines, $RW_SHARDS x $RW_FILES remote_write requests" >&2
"$PAYLOADS_BIN" "$WORK/payloads" --batches "$BATCHES" --lines "$LINES" --rw-shards "$RW_SHARDS" \
    --rw-files "$RW_FILES" --rw-series "$RW_SERIES" --rw-samples "$RW_SAMPLES" --verify >"$RAW/payloads.json"
cat "$RAW/payloads.json" >&2

declare -A LABEL=(
    [json]="JSON API, \`POST /api/v1/logs\`"
    [otlp]="OTLP/HTTP protobuf, \`POST /v1/logs\`"
    [otlp-grpc]="OTLP/gRPC, \`LogsService/Export\`"
    [loki]="Loki push, protobuf + snappy"
    [bulk]="Elasticsearch \`_bulk\`, NDJSON"
)
declare -A SOURCE_TYPE=([json]=http [otlp]=otlp [otlp-grpc]=otlp [loki]=http [bulk]=http)

# --- 1. logs, 2. remote_write into killkrill, per backend ------------------------------
for BACKEND in $BACKENDS; do
    for protocol in $PROTOCOLS; do
        key="$BACKEND:$protocol"
        if [[ "$protocol" == otlp-grpc ]]; then
            fresh_server "$protocol" grpc
            new_source "bench-$protocol" "${SOURCE_TYPE[$protocol]}"
            grpc_load "$key" "$SERVER_PID"
            sent=$(( $(calls_in "$RAW/${key//:/-}.json" calls) + $(calls_in "$RAW/${key//:/-}.json" warmup_calls) ))
        else
            fresh_server "$protocol"
            new_source "bench-$protocol" "${SOURCE_TYPE[$protocol]}"
            wrk_load "$key" "$SERVER_PID" "$BASE" "$protocol" "$KEY" "$SOURCE_ID"
            sent=$(awk '/^statuses:/ { split($2, a, "="); s += a[2] } END { print s + 0 }' "$RAW/${key//:/-}".*wrk)
        fi
        # Lines the server said it took (warm-up included), against the rows it stored.
        SENT[$key]=$((sent * LINES))
        STORED[$key]="$(count_rows logs)"
        stop_server
    done
    if ((REMOTE_WRITE)); then
        key="$BACKEND:rw"
        fresh_server rw
        new_source "bench-rw" prometheus
        wrk_load "$key" "$SERVER_PID" "$BASE" rw "$KEY" "$SOURCE_ID"
        sent=$(awk '/^statuses:/ { split($2, a, "="); s += a[2] } END { print s + 0 }' "$RAW/${key//:/-}".*wrk)
        SENT[$key]=$((sent * RW_SERIES * RW_SAMPLES))
        STORED[$key]="$(count_rows metric_samples)"
        stop_server
    fi
done

# --- 2. remote_write into Prometheus -----------------------------------------------------
if ((REMOTE_WRITE)); then
    BACKEND=prometheus
    key="prometheus:rw"
    pdir="$WORK/prometheus"
    mkdir -p "$pdir/data"
    printf 'global:\n  scrape_interval: 1m\n' >"$pdir/prometheus.yml"
    pport="$(free_port)"
    "$PROMETHEUS" --config.file="$pdir/prometheus.yml" --storage.tsdb.path="$pdir/data" \
        --web.listen-address="127.0.0.1:$pport" --web.enable-remote-write-receiver >"$pdir/log" 2>&1 &
    PROM_PID=$!
    PIDS+=("$PROM_PID")
    for _ in $(seq 1 300); do
        curl -sf --max-time 2 "http://127.0.0.1:$pport/-/ready" >/dev/null 2>&1 && break
        kill -0 "$PROM_PID" 2>/dev/null || { tail -n 20 "$pdir/log" >&2; die "Prometheus did not start"; }
        sleep 0.1
    done
    PROM_VERSION="Prometheus $("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 { print $3 }')"
    wrk_load "$key" "$PROM_PID" "http://127.0.0.1:$pport/api/v1/write" rw - ""
    sent=$(awk '/^statuses:/ { split($2, a, "="); s += a[2] } END { print s + 0 }' "$RAW/${key//:/-}".*wrk)
    SENT[$key]=$((sent * RW_SERIES * RW_SAMPLES))
    STORED[$key]="$(curl -sf "http://127.0.0.1:$pport/metrics" | awk '/^prometheus_tsdb_head_samples_appended_total/ { s += $2 } END { printf "%.0f", s }')"
    kill "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
    forget "$PROM_PID"
fi

# --- report --------------------------------------------------------------------------
REPORT="$RESULTS/protocols-$STAMP.md"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
{
    echo "# Protocols benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- command: \`BACKENDS=\"$BACKENDS\" PROTOCOLS=\"$PROTOCOLS\" DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS WORKERS=$WORKERS BATCHES=$BATCHES LINES=$LINES RW_SERIES=$RW_SERIES RW_SAMPLES=$RW_SAMPLES RW_FILES=$RW_FILES bash benches/protocols/run.sh\`"
    echo "- commit: $COMMIT; $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }'); $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), shared by the load generator, the server and the database"
    echo "- payloads: $(cat "$RAW/payloads.json")"
    echo "- each run: a fresh server and database, ${WARMUP}s warm-up, ${DURATION}s measured, $CONNECTIONS connections (wrk -t$CONNECTIONS -c$CONNECTIONS; gRPC: $CONNECTIONS calls in flight, a connection each), each batch (remote_write request) sent once"
    echo "- batches/s count the answers with the protocol's success status that refuse nothing; latencies per request; server CPU per line (sample) over the measured run; peak RSS: VmHWM reset after the warm-up, and the largest VmRSS sampled every 0.2 s; stored: rows in the database after the run / lines (samples) the answers accepted, warm-up included; other CPU %: all CPUs' use by anything but the server, the database and the load generator"
    echo "- raw outputs: \`benches/results/protocols-$STAMP/\`"
    for b in $BACKENDS; do
        echo
        echo "## Logs, $b: $LINES-line batches"
        echo
        echo "| protocol | batches/s | lines/s | / JSON API | p50 ms | p99 ms | non-2xx | refused in 2xx | server CPU µs/line | database CPU µs/line | peak RSS MB | max sampled RSS MB | stored / accepted | other CPU % | notes |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
        for p in $PROTOCOLS; do
            k="$b:$p"
            bad="${BAD[$k]}"
            [[ "${bad:-0}" == 0 ]] || bad="$bad (${BAD_LAST[$k]})"
            echo "| ${LABEL[$p]} | ${RPS[$k]} | $(num "${UNITS[$k]}") | **$(ratio "${UNITS[$k]}" "${UNITS[$b:json]:-0}")** | ${P50[$k]} | ${P99[$k]} | $bad | ${REFUSED[$k]} | ${CPU_US[$k]} | ${DB_US[$k]} | $(mb "${HWM[$k]}") | $(mb "${RSSMAX[$k]}") | $(num "${STORED[$k]}") / $(num "${SENT[$k]}") | ${OTHER[$k]} | ${NOTE[$k]:-} |"
        done
    done
    if ((REMOTE_WRITE)); then
        echo
        echo "## remote_write 1.0: $RW_SHARDS shards (one connection each) of $RW_SERIES series x $RW_SAMPLES samples a request"
        echo
        echo "| receiver | requests/s | samples/s | / Prometheus | p50 ms | p99 ms | non-2xx | server CPU µs/sample | database CPU µs/sample | peak RSS MB | max sampled RSS MB | stored / accepted | other CPU % | notes |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
        for k in $(for b in $BACKENDS; do echo "$b:rw"; done) prometheus:rw; do
            name="killkrill, ${k%%:*}, \`POST /prometheus/api/v1/write\`"
            [[ "$k" != prometheus:rw ]] || name="$PROM_VERSION, \`--web.enable-remote-write-receiver\`"
            bad="${BAD[$k]}"
            [[ "${bad:-0}" == 0 ]] || bad="$bad (${BAD_LAST[$k]})"
            echo "| $name | ${RPS[$k]} | $(num "${UNITS[$k]}") | **$(ratio "${UNITS[$k]}" "${UNITS[prometheus:rw]:-0}")** | ${P50[$k]} | ${P99[$k]} | $bad | ${CPU_US[$k]} | ${DB_US[$k]} | $(mb "${HWM[$k]}") | $(mb "${RSSMAX[$k]}") | $(num "${STORED[$k]}") / $(num "${SENT[$k]}") | ${OTHER[$k]} | ${NOTE[$k]:-} |"
        done
        echo
        echo "Prometheus' stored count is its \`prometheus_tsdb_head_samples_appended_total\`."
    fi
    echo
    echo "Goals (issue 20): each protocol >= 1.0x the JSON API's lines/s; remote_write into killkrill >= 0.5x Prometheus' samples/s."
} | tee "$REPORT"
echo >&2
echo "protocols: written $REPORT and $RAW/" >&2

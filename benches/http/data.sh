#!/usr/bin/env bash
# Ingest and query benchmark of the release killkrill binary, on SQLite and on PostgreSQL,
# with wrk and curl. See benches/README.md, section "Ingest and queries".
#
#   bash benches/http/data.sh
#
# For each backend (BACKENDS), one server, one run, three parts:
#   1. log ingest: SOURCES sources, each with an ingest key; BODIES JSON bodies of LINES
#      realistic log lines each (levels, 100-200 byte messages, hostnames, applications,
#      small attributes), POSTed to /api/v1/logs by wrk for DURATION seconds at each of
#      CONNECTIONS: a Lua script cycles through the bodies (X-API-Key of each body's
#      source) and fills in RFC 3339 timestamps that go on increasing from batch to batch,
#      as a live producer's would (a simulated clock: one line every DAY/LOG_TARGET, from
#      7 days ago); batches/s, lines/s, p50/p99 per batch, non-202 responses, server peak
#      RSS, server (and PostgreSQL) CPU per batch; goals: >= 50,000 lines/s, < 100 MB;
#   2. log queries: ingest the same way until LOG_TARGET lines are stored, then
#      wrk -c$QUERY_CONNECTIONS on GET /api/v1/logs with source_id, with level=error and with
#      since/until (one hour in the middle of the stored lines; limit=50, Bearer token):
#      req/s, p50/p99 (goal p99 < 50 ms); then follow
#      next_cursor PAGES pages deep once for each, with curl (latency of the last page);
#   3. metrics: SERIES series x SAMPLES samples (counter bench_requests_total, labels
#      {"instance": "i<n>"}, one sample per 10 s) in POSTs of METRIC_BATCH samples; then
#      wrk -c$METRIC_CONNECTIONS POST /api/v1/metrics/query over the whole range with a step
#      giving POINTS points per series, aggregations rate and avg, all series and one
#      (labels {"instance": "i7"}), and all series as Grafana asks (step rounded up to
#      whole minutes, start on a step): req/s,
#      p50/p99 (goal p99 < 100 ms).
#
# Environment (all optional):
#   BACKENDS="sqlite postgres"
#   DURATION=15          seconds of each measured wrk run
#   WARMUP=2             seconds of the wrk warm-up before each measured run
#   CONNECTIONS="2 4 8"  connection counts of the ingest runs
#   THREADS=2            wrk threads (at most one per connection)
#   WORKERS=4            runtime worker threads of the server (killkrill's default)
#   SOURCES=10 BODIES=20 LINES=1000
#   LOG_TARGET=1000000   lines stored before the log queries
#   FILL_MAX_SECONDS=900 time limit of the extra ingest that reaches LOG_TARGET
#   QUERY_CONNECTIONS=4 PAGES=10
#   SERIES=100 SAMPLES=10000 METRIC_BATCH=5000 POINTS=1000 METRIC_CONNECTIONS=2
#   METRIC_QUERIES="all aligned one"
#   PG_ANALYZE=1         PostgreSQL: ANALYZE the tables before the queries (what autovacuum
#                        would have done; this machine's PostgreSQL runs with autovacuum off)
#   OTHER_MAX=10 RETRIES=3  a measured run during which other processes took more than
#                        OTHER_MAX % of the CPUs (a build...) is rerun, at most RETRIES times;
#   QUIET_WAIT=300       before each measured run, wait at most this long for the CPUs to be
#                        idle (<= 10 % busy over 2 s)
#   OURS_BIN=...         measure this killkrill binary (e.g. a copy of an earlier commit's
#                        build) instead of building this checkout
#   PERF=0               1: after the ingest runs, profile an extra (unmeasured) ingest run:
#                        `perf record --call-graph dwarf -p SERVER` and a system-wide
#                        `perf record -a` (CPU split between server, database, wrk, kernel)
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres (trust authentication)
#
# PostgreSQL runs use a fresh database kk_bench_<random>, dropped at exit. Only 127.0.0.1 is
# used. The server is killed on exit; the report goes to benches/results/data-<date>.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite postgres}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-2 4 8}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-4}"
SOURCES="${SOURCES:-10}"
BODIES="${BODIES:-20}"
LINES="${LINES:-1000}"
LOG_TARGET="${LOG_TARGET:-1000000}"
FILL_MAX_SECONDS="${FILL_MAX_SECONDS:-900}"
QUERY_CONNECTIONS="${QUERY_CONNECTIONS:-4}"
PAGES="${PAGES:-10}"
SERIES="${SERIES:-100}"
SAMPLES="${SAMPLES:-10000}"
METRIC_BATCH="${METRIC_BATCH:-5000}"
POINTS="${POINTS:-1000}"
METRIC_CONNECTIONS="${METRIC_CONNECTIONS:-2}"
METRIC_QUERIES="${METRIC_QUERIES:-all aligned one}"
PG_ANALYZE="${PG_ANALYZE:-1}"
OTHER_MAX="${OTHER_MAX:-10}"
QUIET_WAIT="${QUIET_WAIT:-300}"
RETRIES="${RETRIES:-3}"
PERF="${PERF:-0}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"
export WORKERS

die() { echo "data.sh: $*" >&2; exit 2; }
for value in "$DURATION" "$WARMUP" "$THREADS" "$WORKERS" "$SOURCES" "$BODIES" "$LINES" "$LOG_TARGET" \
    "$FILL_MAX_SECONDS" "$QUERY_CONNECTIONS" "$PAGES" "$SERIES" "$SAMPLES" "$METRIC_BATCH" "$POINTS" \
    "$METRIC_CONNECTIONS" "$PG_ANALYZE" "$OTHER_MAX" "$QUIET_WAIT" "$RETRIES" "$PERF" "$PG_PORT" $CONNECTIONS; do
    [[ "$value" =~ ^[0-9]+$ ]] || die "not a number: $value"
done
for backend in $BACKENDS; do
    [[ "$backend" == sqlite || "$backend" == postgres ]] || die "BACKENDS: sqlite and/or postgres, not $backend"
done
[[ "$PG_HOST" == 127.0.0.1 ]] || die "PG_HOST must be 127.0.0.1"
((DURATION >= 1 && DURATION <= 600)) || die "DURATION must be 1..600"
((WARMUP <= 60)) || die "WARMUP must be 0..60"
((THREADS >= 1 && QUERY_CONNECTIONS >= 1 && METRIC_CONNECTIONS >= 1)) || die "threads and connections must be >= 1"
((SOURCES >= 1 && SOURCES <= 100 && BODIES >= SOURCES && BODIES <= 200)) || die "SOURCES 1..100, BODIES SOURCES..200"
((LINES >= 1 && LINES <= 10000)) || die "LINES must be 1..10000 (the API's batch limit)"
((LOG_TARGET <= 20000000)) || die "LOG_TARGET must be <= 20,000,000"
((FILL_MAX_SECONDS <= 3600)) || die "FILL_MAX_SECONDS must be <= 3600"
((PAGES >= 1 && PAGES <= 100)) || die "PAGES must be 1..100"
((SERIES >= 8 && SERIES <= 1000)) || die "SERIES must be 8..1000 (one query uses i7)"
((SAMPLES >= 10 && SAMPLES <= 100000)) || die "SAMPLES must be 10..100000"
((METRIC_BATCH >= SERIES && METRIC_BATCH <= 10000 && METRIC_BATCH % SERIES == 0)) ||
    die "METRIC_BATCH must be a multiple of SERIES, at most 10000"
(((SERIES * SAMPLES) % METRIC_BATCH == 0)) || die "SERIES x SAMPLES must be a multiple of METRIC_BATCH"
((POINTS >= 1 && POINTS <= 11000 && SAMPLES % POINTS == 0)) || die "POINTS must divide SAMPLES (and be <= 11000)"
((RETRIES <= 5)) || die "RETRIES must be 0..5"
((QUIET_WAIT <= 3600)) || die "QUIET_WAIT must be <= 3600"

# --- tools -------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
    echo "data.sh: installing wrk (apt-get install -y wrk)" >&2
    if ! $SUDO apt-get install -y wrk >&2; then
        $SUDO apt-get update >&2
        $SUDO apt-get install -y wrk >&2
    fi
fi
command -v curl >/dev/null 2>&1 || { echo "data.sh: curl is required" >&2; exit 1; }
if [[ " $BACKENDS " == *" postgres "* ]] && ! command -v psql >/dev/null 2>&1; then
    echo "data.sh: the postgres backend needs psql" >&2
    exit 1
fi
if [[ "$PERF" == 1 ]] && ! command -v perf >/dev/null 2>&1; then
    echo "data.sh: PERF=1 needs perf (linux-perf)" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------
cd "$ROOT"
SOURCE_BIN="${OURS_BIN:-$ROOT/target/release/killkrill}"
if [[ -n "${OURS_BIN:-}" ]]; then
    # Another build (an earlier commit's, for a before/after pair): not this checkout's.
    [[ -x "$OURS_BIN" ]] || { echo "data.sh: OURS_BIN=$OURS_BIN is not an executable" >&2; exit 1; }
    COMMIT="given binary $OURS_BIN ($("$OURS_BIN" --version 2>/dev/null || echo 'no --version'))"
else
    cargo build --release --bin killkrill
    COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (uncommitted changes in src/ or Cargo.*)')"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-data-bench.XXXXXX")"
# A copy: the binary must not change under the benchmark (others may rebuild target/), and
# perf needs the very file the server runs.
cp "$SOURCE_BIN" "$WORK/killkrill"
OURS_BIN="$WORK/killkrill"
PIDS=()      # servers
BG=()        # background wrk / samplers, all bounded in time anyway
PG_DBS=()    # databases to drop
pg() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
    local pid db
    for pid in "${BG[@]}" "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG[@]}" "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for db in "${PG_DBS[@]}"; do
        pg -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
            echo "data.sh: could not drop database $db" >&2
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers (as in run.sh and auth.sh) ----------------------------------------------
# Prints the HTTP status of GET http://127.0.0.1:$1/healthz, or nothing.
http_status() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        IFS=" " read -r _ status _ <&3 && printf "%s" "$status"
    ' _ "$1" 2>/dev/null || true
}

# Prints a local port nothing listens on (bounded number of tries), below the ephemeral
# range so that no client socket holds it.
free_port() {
    local try port low
    low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    ((low > 11000)) || low=32768
    for try in $(seq 1 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "data.sh: no free port found" >&2
    return 1
}

# wait_ready PID PORT: until /healthz answers 200. Returns 1 if the process exited,
# 2 if it did not answer within 30 s.
wait_ready() {
    local try
    for try in $(seq 1 300); do
        kill -0 "$1" 2>/dev/null || return 1
        [[ "$(http_status "$2")" == 200 ]] && return 0
        sleep 0.1
    done
    return 2
}

# kib FIELD PID: a VmRSS/VmHWM value of /proc/PID/status, in KiB.
kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }

# Converts a wrk duration (12.34us, 1.2ms, 1.00s, 2m) to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n
    }'
}

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
met() { awk -v v="$1" -v l="$2" -v op="$3" 'BEGIN { ok = (op == ">=" ? v >= l : v < l); print (ok ? "met" : "**NOT met**") }'; }
# Thousands separators for the report.
num() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }

# CPU accounting: the server's own CPU ticks, the database's (PostgreSQL: the backends of
# the benchmark's database and the shared background writers), the machine's busy/total
# ticks, and the CPU seconds of this shell's finished children (wrk, curl, psql, helpers).
CLK="$(getconf CLK_TCK)"
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }  # utime+stime
sys_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }  # busy total
child_seconds() {
    times >"$WORK/times"
    CHILD_S="$(awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] }
        printf "%.3f", s
    }' "$WORK/times")"
}
# db_snapshot FILE: "pid ticks" of the PostgreSQL processes working for this benchmark,
# and "reaped ticks": the CPU of the postmaster's children that have exited (the parallel
# workers a big query starts and ends, which no snapshot of live processes catches).
db_snapshot() {
    : >"$1"
    [[ "$BACKEND" == postgres ]] || return 0
    local pid ticks postmaster=""
    for pid in $(pg -d "$DB" -At -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
            OR backend_type IN ('checkpointer', 'background writer', 'walwriter', 'autovacuum launcher')"); do
        ticks="$(proc_ticks "$pid" || true)"  # the process may have ended meanwhile
        [[ -z "$ticks" ]] || echo "$pid $ticks" >>"$1"
        [[ -n "$postmaster" ]] || postmaster="$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null || true)"
    done
    if [[ -n "$postmaster" ]]; then
        ticks="$(sed 's/^.*) //' "/proc/$postmaster/stat" 2>/dev/null | awk '{ print $14 + $15 }' || true)"  # cutime+cstime
        [[ -z "$ticks" ]] || echo "reaped $ticks" >>"$1"
    fi
    return 0
}
# Ticks the database used between two snapshots (processes present at the end; those that
# started in between count whole).
db_delta() { awk 'NR == FNR { s[$1] = $2; next } { d += $2 - ($1 in s ? s[$1] : 0) } END { print d + 0 }' "$1" "$2"; }
window_start() {
    W_SERVER="$(proc_ticks "$SERVER_PID")"
    db_snapshot "$WORK/db.before"
    read -r W_BUSY W_TOTAL < <(sys_ticks)
    child_seconds
    W_CHILD="$CHILD_S"
}
# Sets W_SERVER_S, W_DB_S (CPU seconds), W_OTHER (% of all CPUs used by anything but the
# server, the database and this script's children).
window_end() {
    local busy total server db
    read -r busy total < <(sys_ticks)
    server="$(proc_ticks "$SERVER_PID")"
    child_seconds
    db_snapshot "$WORK/db.after"
    db="$(db_delta "$WORK/db.before" "$WORK/db.after")"
    W_SERVER_S="$(awk -v s=$((server - W_SERVER)) -v c="$CLK" 'BEGIN { printf "%.3f", s / c }')"
    W_DB_S="$(awk -v s="$db" -v c="$CLK" 'BEGIN { printf "%.3f", s / c }')"
    W_OTHER="$(awk -v b=$((busy - W_BUSY)) -v t=$((total - W_TOTAL)) -v s=$((server - W_SERVER)) -v d="$db" -v c="$CLK" \
        -v k="$(awk -v a="$CHILD_S" -v b="$W_CHILD" 'BEGIN { print a - b }')" \
        'BEGIN { o = b / c - s / c - d / c - k; if (o < 0) o = 0; printf "%.0f", (t > 0 ? 100 * o * c / t : 0) }')"
}

# Before each measured run: wait (at most QUIET_WAIT s) until the CPUs have been at most
# 10 % busy for 2 s, so that a build of someone else's does not overlap the run.
wait_quiet() {
    local waited=0 b1 t1 b2 t2 pct
    while ((waited < QUIET_WAIT)); do
        read -r b1 t1 < <(sys_ticks)
        sleep 2
        read -r b2 t2 < <(sys_ticks)
        pct=$((t2 > t1 ? 100 * (b2 - b1) / (t2 - t1) : 0))
        ((pct > 10)) || return 0
        ((waited > 0)) || echo "data.sh: the machine is busy ($pct %); waiting for it (at most ${QUIET_WAIT}s)" >&2
        waited=$((waited + 2))
    done
    echo "data.sh: still busy after ${QUIET_WAIT}s; measuring anyway" >&2
}

HWM_NOT_RESET=0
reset_hwm() { echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || HWM_NOT_RESET=1; }

# json_field NAME: the first string value of "NAME" in the JSON on stdin.
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -n1 | sed 's/^"[^"]*":"//; s/"$//' || true; }

# Background processes still running (killed by cleanup); bg_done PID forgets one that
# has been waited for, so that cleanup never signals a recycled PID.
bg_done() {
    local pid keep=()
    for pid in "${BG[@]}"; do [[ "$pid" == "$1" ]] || keep+=("$pid"); done
    BG=("${keep[@]}")
}

# --- data generators -----------------------------------------------------------------
# Log batches: {"source_id", "logs": [...]}, LINES entries, levels debug 10 % / info 65 % /
# warning 15 % / error 8 % / critical 2 %, messages of 100-200 bytes, 12 hostnames,
# 6 applications; each "timestamp" is a placeholder @TS@ that the wrk script fills in.
cat >"$WORK/logs.awk" <<'EOF'
function hex(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s substr("0123456789abcdef", int(rand() * 16) + 1, 1); return s }
function pick(list,   a, k) { k = split(list, a, "|"); return a[int(rand() * k) + 1] }
function num(lo, hi) { return lo + int(rand() * (hi - lo + 1)) }
function message(level,   m, target) {
    if (level == "error" || level == "critical") {
        if (rand() < 0.5)
            m = sprintf("Connection to postgres://db-%d.internal:5432/orders failed: timeout after %d ms (attempt %d of 5)", num(1, 4), num(100, 5000), num(1, 5))
        else
            m = sprintf("Unhandled exception in %s handler: %s while processing order %d for customer %d", pick("checkout|refund|invoice|shipment"), pick("KeyError: currency|NullPointerException|deadline exceeded|connection reset by peer"), num(1, 9999999), num(1, 999999))
    } else if (level == "warning") {
        if (rand() < 0.5)
            m = sprintf("Slow query (%d ms): SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50", num(500, 9000))
        else
            m = sprintf("Retrying request to %s after HTTP 503 (attempt %d), backing off %d ms", pick("http://inventory.internal/v2/stock|http://payments.internal/charge|https://api.partner.example/orders"), num(1, 4), num(50, 3200))
    } else if (level == "debug") {
        m = sprintf("Cache %s for key session:%s in region %s; ttl=%d s, size=%d bytes", pick("hit|miss"), hex(16), pick("eu-west-1|us-east-1|ap-south-1"), num(60, 3600), num(100, 90000))
    } else if (rand() < 0.6) {
        m = sprintf("%s /api/v1/%s/%d %s %d ms bytes=%d user_id=%d ua=Mozilla/5.0 (X11; Linux x86_64)", pick("GET|GET|GET|POST|PUT|DELETE"), pick("orders|customers|products|carts|invoices"), num(1, 999999), pick("200|200|200|201|204|304|404"), num(1, 250), num(100, 20000), num(1, 99999))
    } else {
        m = sprintf("Processed job %s from queue %s in %d ms: %d items, %d retries", hex(12), pick("emails|thumbnails|exports|webhooks"), num(5, 4000), num(1, 500), num(0, 3))
    }
    target = num(100, 200)
    if (length(m) < target) m = m " trace_id=" hex(32) " span_id=" hex(16)
    return substr(m, 1, target)
}
BEGIN {
    srand(seed)
    printf "{\"source_id\":\"%s\",\"logs\":[", source
    for (i = 0; i < n; i++) {
        r = rand()
        level = (r < 0.10 ? "debug" : r < 0.75 ? "info" : r < 0.90 ? "warning" : r < 0.98 ? "error" : "critical")
        app = pick("api-gateway|orders|billing|auth|search|worker")
        printf "%s{\"timestamp\":\"@TS@\",\"level\":\"%s\",\"message\":\"%s\",\"hostname\":\"%s-%02d\",\"application\":\"%s\",\"attributes\":{\"pid\":%d,\"thread\":\"worker-%d\",\"request_id\":\"%s\",\"region\":\"%s\"}}", \
            (i ? "," : ""), level, message(level), (app == "worker" ? "job" : "web"), num(1, 12), app, \
            num(1000, 65000), num(0, 15), hex(16), pick("eu-west-1|us-east-1|ap-south-1")
    }
    print "]}"
}
EOF

# Metric batches: samples k0 .. k0+per-1 (one per 10 s from m0) of every series; counter
# values strictly increasing, different rates per series.
cat >"$WORK/metrics.awk" <<'EOF'
BEGIN {
    printf "{\"source_id\":\"%s\",\"metrics\":[", source
    first = 1
    for (k = k0; k < k0 + per; k++) {
        for (i = 0; i < series; i++) {
            noise = ((k * 7919 + i * 104729) % 1000) / 1000
            printf "%s{\"name\":\"bench_requests_total\",\"type\":\"counter\",\"labels\":{\"instance\":\"i%d\"},\"value\":%d,\"timestamp\":%d}", \
                (first ? "" : ","), i, k * (i + 1) + int(noise * (i + 1)), m0 + k * 10
            first = 0
        }
    }
    print "]}"
}
EOF

# --- wrk scripts -----------------------------------------------------------------------
# Every script counts the responses with the expected status and the others, and prints
# "statuses: expected=N other=M last_other=S" at the end.
lua_footer() { # EXPECTED_STATUS
    cat <<EOF
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("first", #threads)
end
local function count(status)
    if status == $1 then ok = ok + 1 else bad = bad + 1; last_bad = status end
end
function response(status, headers, body) count(status) end
function done(summary, latency, requests)
    local o, b, l = 0, 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok"); b = b + t:get("bad")
        if t:get("last_bad") ~= 0 then l = t:get("last_bad") end
    end
    io.write(string.format("statuses: expected=%d other=%d last_other=%d\n", o, b, l))
end
EOF
}

# Ingest: the bodies listed in $WORK/bodies.txt ("<ingest key> <file>" a line), POSTed in
# turn with their source's key. Batch number seq (script arguments: the first number, and
# the stride = the number of wrk threads) gets the lines seq * LINES ... of the simulated
# clock: line k is at T0_MS + k * DT_MS.
write_ingest_lua() {
    {
        cat <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local templates, keys, n = {}, {}, 0
local t0_ms, dt_ms, lines = $T0_MS, $DT_MS, $LINES
local buf, last_s, last_prefix = {}, -1, ""
function init(args)
    ok, bad, last_bad = 0, 0, 0
    stride = tonumber(args[2]) or 1
    seq = (tonumber(args[1]) or 0) + (first or 1) - 1 - stride
    for line in io.lines("$WORK/bodies.txt") do
        local key, file = line:match("^(%S+)%s+(%S+)$")
        local f = assert(io.open(file, "rb"))
        local body = f:read("*a")
        f:close()
        local parts, pos = {}, 1
        while true do
            local a, b = body:find("@TS@", pos, true)
            if not a then parts[#parts + 1] = body:sub(pos); break end
            parts[#parts + 1] = body:sub(pos, a - 1)
            pos = b + 1
        end
        n = n + 1
        templates[n], keys[n] = parts, key
    end
end
function request()
    seq = seq + stride
    local parts = templates[seq % n + 1]
    local ms = t0_ms + seq * lines * dt_ms
    local m = #parts
    for j = 1, m - 1 do
        local t = ms + (j - 1) * dt_ms
        local s = math.floor(t / 1000)
        if s ~= last_s then last_s, last_prefix = s, os.date("!%Y-%m-%dT%H:%M:%S.", s) end
        buf[2 * j - 1] = parts[j]
        buf[2 * j] = last_prefix .. string.format("%03dZ", t - s * 1000)
    end
    buf[2 * m - 1] = parts[m]
    return wrk.format("POST", "/api/v1/logs",
        { ["Content-Type"] = "application/json", ["X-API-Key"] = keys[seq % n + 1] }, table.concat(buf, "", 1, 2 * m - 1))
end
EOF
        lua_footer 202
    } >"$WORK/ingest.lua"
}

# get_lua FILE: GET with the bearer token of $TOKEN.
get_lua() {
    {
        echo "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\""
        echo 'function init(args) ok, bad, last_bad = 0, 0, 0 end'
        lua_footer 200
    } >"$1"
}
# post_lua FILE BODY: POST a JSON body with the bearer token of $TOKEN.
post_lua() {
    {
        echo 'wrk.method = "POST"'
        echo "wrk.body = '$2'"
        echo 'wrk.headers["Content-Type"] = "application/json"'
        echo "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\""
        echo 'function init(args) ok, bad, last_bad = 0, 0, 0 end'
        lua_footer 200
    } >"$1"
}

# --- measurements ------------------------------------------------------------------
# Results, keyed by "<backend>:<name>".
declare -A RPS P50 P99 P999 HWM RSSMAX CPU_US DB_US OTHER STATUS_OK STATUS_BAD BAD_LAST ATTEMPTS NOTE REQS
STORED=0  # log lines accepted so far by the current server

# accepted FILE: the expected-status count printed by a wrk script.
accepted() { awk '/^statuses:/ { split($2, a, "="); print a[2] + 0; f = 1 } END { if (!f) print 0 }' "$1"; }

# measure NAME CONNECTIONS LUA PATH [ingest]: warm-up, then a measured wrk run with VmRSS
# sampled every 0.2 s; rerun (at most RETRIES times) when other processes took more than
# OTHER_MAX % of the CPUs. An ingest run adds its accepted lines to STORED.
measure() {
    local name="$1" conns="$2" lua="$3" path="$4" ingest="${5:-}"
    local key="$BACKEND:$name" threads=$((THREADS < conns ? THREADS : conns)) attempt out sampler requests others=""
    for attempt in $(seq 1 $((RETRIES + 1))); do
        wait_quiet
        reset_hwm
        if ((WARMUP > 0)); then
            wrk -t"$threads" -c"$conns" -d"${WARMUP}s" --timeout 30s -s "$lua" "$BASE$path" \
                ${ingest:+-- "$((STORED / LINES))" "$threads"} >"$WORK/warm.wrk"
            [[ -z "$ingest" ]] || STORED=$((STORED + $(accepted "$WORK/warm.wrk") * LINES))
        fi
        rm -f "$WORK/rss"
        (
            for _ in $(seq 1 $((DURATION * 5 + 10))); do
                kib VmRSS "$SERVER_PID" >>"$WORK/rss" 2>/dev/null || true
                sleep 0.2
            done
        ) &
        sampler=$!
        BG+=("$sampler")
        echo "== $BACKEND, $name: wrk -t$threads -c$conns -d${DURATION}s --latency -s $(basename "$lua") $BASE$path" >&2
        out="$WORK/$BACKEND-$name.wrk"
        window_start
        wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 30s --latency -s "$lua" "$BASE$path" \
            ${ingest:+-- "$((STORED / LINES))" "$threads"} >"$out"
        window_end
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        bg_done "$sampler"
        cat "$out" >&2
        [[ -z "$ingest" ]] || STORED=$((STORED + $(accepted "$out") * LINES))
        echo "   server CPU ${W_SERVER_S}s, database CPU ${W_DB_S}s, other CPU ${W_OTHER}%, stored lines $STORED" >&2
        ((W_OTHER > OTHER_MAX && attempt <= RETRIES)) || break
        others="$others$W_OTHER% "
        echo "data.sh: other processes took $W_OTHER% of the CPUs; rerunning" >&2
    done
    ATTEMPTS[$key]="$attempt"
    NOTE[$key]="${others:+rerun after other CPU $others}"
    ((W_OTHER <= OTHER_MAX)) || NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }**noisy** (other CPU > $OTHER_MAX %)"
    requests="$(awk '/requests in/ { print $1 }' "$out")"
    REQS[$key]="$requests"
    RPS[$key]="$(awk '/^Requests\/sec:/ { printf "%.1f", $2 }' "$out")"
    P50[$key]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    P99[$key]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    STATUS_OK[$key]="$(accepted "$out")"
    STATUS_BAD[$key]="$(awk '/^statuses:/ { split($3, a, "="); b = a[2] + 0; f = 1 } END { print (f ? b : -1) }' "$out")"
    BAD_LAST[$key]="$(awk '/^statuses:/ { split($4, a, "="); print a[2] + 0 }' "$out")"
    local socket
    socket="$(awk '/Socket errors/ { sub(/^ +/, ""); print }' "$out")"
    [[ -z "$socket" ]] || NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }$socket"
    CPU_US[$key]="$(awk -v s="$W_SERVER_S" -v r="$requests" 'BEGIN { printf "%.0f", (r > 0 ? s * 1e6 / r : 0) }')"
    DB_US[$key]="$(awk -v s="$W_DB_S" -v r="$requests" 'BEGIN { printf "%.0f", (r > 0 ? s * 1e6 / r : 0) }')"
    OTHER[$key]="$W_OTHER"
    HWM[$key]="$(kib VmHWM "$SERVER_PID")"
    RSSMAX[$key]="$(awk '$1 + 0 > m { m = $1 + 0 } END { print m + 0 }' "$WORK/rss" 2>/dev/null || echo 0)"
}

# --- server ------------------------------------------------------------------------
# Started as run.sh starts killkrill: in its own directory (no .env of the repository is
# read), development defaults (so the admin/admin123 account exists), stdout to a file.
start_server() { # DATABASE_URL
    local attempt port pid status dir="$WORK/$BACKEND"
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        (cd "$dir" && DATABASE_URL="$1" exec "$OURS_BIN" \
            --host 127.0.0.1 --port "$port" --no-grpc >"$dir/stdout.log" 2>"$dir/stderr.log") &
        pid=$!
        PIDS+=("$pid")
        status=0
        wait_ready "$pid" "$port" || status=$?
        if ((status == 0)); then
            SERVER_PID="$pid"
            BASE="http://127.0.0.1:$port"
            return 0
        fi
        ((status == 1)) || break
        echo "data.sh: killkrill exited during start-up (attempt $attempt, port $port)" >&2
    done
    echo "data.sh: killkrill did not answer 200 on /healthz; its stderr:" >&2
    tail -n 20 "$dir/stderr.log" >&2 || true
    exit 1
}
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local pid keep=()
    for pid in "${PIDS[@]}"; do [[ "$pid" == "$SERVER_PID" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# api METHOD PATH [BODY]: curl with the bearer token; prints the body, fails unless 2xx.
api() {
    local code
    code="$(curl -s -o "$WORK/api.out" -w '%{http_code}' --max-time 60 -X "$1" "$BASE$2" \
        -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' ${3:+-d "$3"})"
    if [[ "$code" != 2* ]]; then
        echo "data.sh: $1 $2 answered $code: $(head -c 500 "$WORK/api.out")" >&2
        exit 1
    fi
    cat "$WORK/api.out"
}

# sql QUERY: runs a read-only query on the backend's database, columns separated by spaces
# (prints nothing for SQLite without the sqlite3 command).
sql() {
    if [[ "$BACKEND" == postgres ]]; then
        pg -d "$DB" -At -F' ' -c "$1"
    elif command -v sqlite3 >/dev/null 2>&1; then
        sqlite3 -separator ' ' "file:$SQLITE_FILE?mode=ro" "$1" 2>/dev/null || true
    fi
}
count_rows() { sql "SELECT count(*) FROM $1"; }  # TABLE
db_size_mb() {
    if [[ "$BACKEND" == postgres ]]; then
        pg -d "$DB" -At -c "SELECT round(pg_database_size(current_database()) / 1048576.0)"
    else
        printf '%s (WAL file %s MB)' "$(du -cm "$SQLITE_FILE"* 2>/dev/null | awk 'END { print $1 }')" \
            "$(du -m "$SQLITE_FILE-wal" 2>/dev/null | awk '{ print $1 }' || echo 0)"
    fi
}

# --- one backend -------------------------------------------------------------------
declare -A INFO PAGE_MS PAGE1_MS PAGE_UNIQUE SERVER_LOG_LINES PERF_FILES
STAMP="$(date +%Y-%m-%d-%H%M%S)"
RESULTS="$ROOT/benches/results"
mkdir -p "$RESULTS"
NOW="$(date +%s)"
T0=$((NOW - NOW % 3600 - 7 * 86400))       # logs: the simulated clock starts 7 days ago,
DT_MS=$((86400000 / LOG_TARGET))           # LOG_TARGET lines a day
((DT_MS >= 1)) || DT_MS=1
T0_MS=$((T0 * 1000))
M_END=$((NOW - NOW % 10))                  # metrics: SAMPLES x 10 s up to now
M0=$((M_END - SAMPLES * 10))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
write_ingest_lua

run_backend() {
    BACKEND="$1"
    STORED=0
    local url i id key body_json src
    if [[ "$BACKEND" == postgres ]]; then
        DB="kk_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
        pg -d postgres -c "CREATE DATABASE $DB"
        PG_DBS+=("$DB")
        url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$DB"
        INFO[$BACKEND]="PostgreSQL $(pg -d "$DB" -At -c 'SHOW server_version'), database $DB (dropped at exit); $(pg -d "$DB" -At -F= -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'autovacuum') ORDER BY name" | paste -sd' ')"
    else
        DB=""
        SQLITE_FILE="$WORK/sqlite/killkrill.db"
        url="sqlite:///$SQLITE_FILE"
        INFO[$BACKEND]="SQLite file in a temporary directory (WAL, synchronous=NORMAL)"
    fi
    start_server "$url"
    INFO[$BACKEND]="${INFO[$BACKEND]}; start-up peak RSS $(mb "$(kib VmHWM "$SERVER_PID")") MB"

    local login
    login="$(curl -s --max-time 30 -X POST "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"admin123"}')"
    TOKEN="$(printf '%s' "$login" | json_field access_token)"
    [[ -n "$TOKEN" ]] || { echo "data.sh: login failed: $login" >&2; exit 1; }

    # Sources, keys and bodies: body j belongs to source j % SOURCES.
    SOURCE_IDS=()
    : >"$WORK/bodies.txt"
    for i in $(seq 0 $((SOURCES - 1))); do
        id="$(api POST /api/v1/sources "{\"name\":\"bench-$i\",\"type\":\"http\",\"description\":\"data.sh\"}" | json_field id)"
        key="$(api POST "/api/v1/sources/$id/keys" '{"name":"bench"}' | json_field key)"
        [[ -n "$id" && -n "$key" ]] || { echo "data.sh: could not create source $i and its key" >&2; exit 1; }
        SOURCE_IDS+=("$id")
        eval "KEY_$i=\$key"
    done
    for i in $(seq 0 $((BODIES - 1))); do
        src=$((i % SOURCES))
        key="KEY_$src"
        awk -v seed=$((i + 1)) -v source="${SOURCE_IDS[$src]}" -v n="$LINES" -f "$WORK/logs.awk" >"$WORK/body-$i.json"
        echo "${!key} $WORK/body-$i.json" >>"$WORK/bodies.txt"
    done
    INFO[bodies]="$(awk -v n="$BODIES" -v l="$LINES" '{ s += $1 } END { printf "%d bodies of %d lines, %.0f KB each on average (%.0f B per line)", n, l, s / n / 1024, s / n / l }' \
        < <(stat -c %s "$WORK"/body-*.json))"
    # One check with curl before the load (its lines an hour before the simulated clock).
    sed "s/@TS@/$(iso $((T0 - 3600)))/g" "$WORK/body-0.json" >"$WORK/check.json"
    body_json="$(curl -s --max-time 60 -X POST "$BASE/api/v1/logs" -H 'content-type: application/json' \
        -H "X-API-Key: $KEY_0" --data-binary @"$WORK/check.json")"
    [[ "$body_json" == *"\"accepted\":$LINES"* ]] || { echo "data.sh: ingest check failed: $body_json" >&2; exit 1; }
    STORED=$LINES

    # 1. ingest throughput
    local n
    for n in $CONNECTIONS; do
        INFO[$BACKEND:rows-before-c$n]="$STORED"
        measure "ingest-c$n" "$n" "$WORK/ingest.lua" /api/v1/logs ingest
    done
    INFO[$BACKEND:db-size-ingest]="$(db_size_mb)"
    if [[ "$PERF" == 1 ]]; then
        profile_ingest
    fi

    # 2. fill to LOG_TARGET, then queries
    local started=$SECONDS rate seconds round=0 fill_lines=0
    rate="$(awk -v r="${RPS[$BACKEND:ingest-c4]:-${RPS[$BACKEND:ingest-c${CONNECTIONS##* }]}}" -v l="$LINES" 'BEGIN { printf "%.0f", r * l }')"
    while ((STORED < LOG_TARGET && round < 60 && SECONDS - started < FILL_MAX_SECONDS)); do
        round=$((round + 1))
        seconds="$(awk -v need=$((LOG_TARGET - STORED)) -v r="$rate" 'BEGIN { s = (r > 0 ? need / r : 60) + 2; if (s > 60) s = 60; if (s < 3) s = 3; printf "%d", s }')"
        echo "== $BACKEND, fill: $STORED of $LOG_TARGET lines stored; wrk -c4 -d${seconds}s" >&2
        wrk -t"$((THREADS < 4 ? THREADS : 4))" -c4 -d"${seconds}s" --timeout 30s -s "$WORK/ingest.lua" "$BASE/api/v1/logs" \
            -- "$((STORED / LINES))" "$((THREADS < 4 ? THREADS : 4))" >"$WORK/fill.wrk"
        i="$(accepted "$WORK/fill.wrk")"
        STORED=$((STORED + i * LINES))
        fill_lines=$((fill_lines + i * LINES))
        if grep -q 'other=[1-9]' "$WORK/fill.wrk"; then
            echo "data.sh: failed ingest requests during the fill:" >&2
            cat "$WORK/fill.wrk" >&2
            exit 1
        fi
    done
    local counted
    counted="$(count_rows logs)"
    INFO[$BACKEND:fill]="$fill_lines lines in $((SECONDS - started)) s"
    INFO[$BACKEND:stored]="$STORED"
    INFO[$BACKEND:counted]="${counted:-n/a}"
    if ((${counted:-$STORED} < LOG_TARGET)); then
        echo "data.sh: only ${counted:-$STORED} lines stored (FILL_MAX_SECONDS=$FILL_MAX_SECONDS)" >&2
    fi
    INFO[$BACKEND:analyze]="no"
    if [[ "$BACKEND" == postgres && "$PG_ANALYZE" == 1 ]]; then
        pg -d "$DB" -c "ANALYZE"
        INFO[$BACKEND:analyze]="yes"
    fi
    INFO[$BACKEND:db-size-logs]="$(db_size_mb)"

    # since/until: the hour in the middle of the simulated clock's stored stretch.
    local mid=$((T0 + STORED / 2 * DT_MS / 1000))
    SINCE="$(iso $((mid - 1800)))"
    UNTIL="$(iso $((mid + 1800)))"
    INFO[$BACKEND:window]="$SINCE .. $UNTIL"
    local qname qpath
    declare -gA QPATH=(
        [source]="/api/v1/logs?source_id=${SOURCE_IDS[3 % SOURCES]}&limit=50"
        [level]="/api/v1/logs?level=error&limit=50"
        [window]="/api/v1/logs?since=$SINCE&until=$UNTIL&limit=50"
    )
    get_lua "$WORK/get.lua"
    for qname in source level window; do
        qpath="${QPATH[$qname]}"
        # Check once: 50 entries.
        INFO[$BACKEND:entries-$qname]="$(curl -s --max-time 60 -H "Authorization: Bearer $TOKEN" "$BASE$qpath" | grep -o '"received_at":"' | wc -l)"
        measure "query-$qname" "$QUERY_CONNECTIONS" "$WORK/get.lua" "$qpath"
        # Follow next_cursor PAGES pages deep.
        local page cursor="" ms json
        : >"$WORK/ids"
        for page in $(seq 1 "$PAGES"); do
            ms="$(curl -s -o "$WORK/page.json" -w '%{http_code} %{time_total}' --max-time 60 \
                -H "Authorization: Bearer $TOKEN" "$BASE$qpath${cursor:+&cursor=$cursor}")"
            [[ "$ms" == 200* ]] || { echo "data.sh: page $page of $qpath answered ${ms%% *}" >&2; exit 1; }
            ms="$(awk -v s="${ms#* }" 'BEGIN { printf "%.1f", s * 1000 }')"
            ((page == 1)) && PAGE1_MS[$BACKEND:$qname]="$ms"
            PAGE_MS[$BACKEND:$qname]="$ms"
            grep -o '"id":"[0-9a-f-]*"' "$WORK/page.json" >>"$WORK/ids" || true
            cursor="$(json_field next_cursor <"$WORK/page.json")"
            [[ -n "$cursor" ]] || break
        done
        PAGE_UNIQUE[$BACKEND:$qname]="$page pages, $(sort -u "$WORK/ids" | wc -l) distinct ids of $(wc -l <"$WORK/ids")"
    done

    # 3. metrics
    local msrc mkey batches per code t_start
    msrc="$(api POST /api/v1/sources '{"name":"bench-metrics","type":"prometheus","description":"data.sh"}' | json_field id)"
    mkey="$(api POST "/api/v1/sources/$msrc/keys" '{"name":"bench"}' | json_field key)"
    batches=$((SERIES * SAMPLES / METRIC_BATCH))
    per=$((METRIC_BATCH / SERIES))
    echo "== $BACKEND, metrics: $batches POSTs of $METRIC_BATCH samples" >&2
    local gen_s=0 t_gen
    wait_quiet
    t_start="$(date +%s.%N)"
    window_start
    for i in $(seq 0 $((batches - 1))); do
        t_gen="$(date +%s.%N)"
        awk -v source="$msrc" -v k0=$((i * per)) -v per="$per" -v series="$SERIES" -v m0="$M0" \
            -f "$WORK/metrics.awk" >"$WORK/metrics.json"
        gen_s="$(awk -v g="$gen_s" -v a="$t_gen" -v b="$(date +%s.%N)" 'BEGIN { print g + b - a }')"
        code="$(curl -s -o "$WORK/metrics.out" -w '%{http_code}' --max-time 60 -X POST "$BASE/api/v1/metrics" \
            -H 'content-type: application/json' -H "X-API-Key: $mkey" --data-binary @"$WORK/metrics.json")"
        [[ "$code" == 202 ]] || { echo "data.sh: metrics batch $i answered $code: $(head -c 500 "$WORK/metrics.out")" >&2; exit 1; }
    done
    window_end
    INFO[$BACKEND:metrics-ingest]="$(awk -v a="$t_start" -v b="$(date +%s.%N)" -v g="$gen_s" -v n=$((SERIES * SAMPLES)) \
        -v c="$batches" -v s="$W_SERVER_S" -v d="$W_DB_S" -v o="$W_OTHER" \
        'BEGIN { w = b - a - g; printf "%d samples in %d sequential POSTs: %.1f s excluding generation, %.0f samples/s; server CPU %.0f ms and database CPU %.0f ms per POST; other CPU %s %%", n, c, w, n / w, s * 1000 / c, d * 1000 / c, o }')"
    if [[ "$BACKEND" == postgres && "$PG_ANALYZE" == 1 ]]; then
        pg -d "$DB" -c "ANALYZE"
    fi
    INFO[$BACKEND:samples-counted]="$(count_rows metric_samples)"

    local step agg which labels qbody out qstart
    for agg in rate avg; do
        for which in $METRIC_QUERIES; do
            labels=""
            [[ "$which" == one ]] && labels=',"labels":{"instance":"i7"}'
            step=$((SAMPLES * 10 / POINTS))
            qstart=$M0
            if [[ "$which" == aligned ]]; then
                # As Grafana asks: the step rounded up to whole minutes, start on a step.
                step=$(((step + 59) / 60 * 60))
                qstart=$((M0 / step * step))
            fi
            qbody="{\"metric\":\"bench_requests_total\"$labels,\"start\":$qstart,\"end\":$((M0 + (SAMPLES - 1) * 10)),\"step\":$step,\"aggregation\":\"$agg\"}"
            QBODY[$agg-$which]="$qbody"
            out="$WORK/mq.json"
            code="$(curl -s -o "$out" -w '%{http_code} %{time_total}' --max-time 60 -X POST "$BASE/api/v1/metrics/query" \
                -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$qbody")"
            [[ "$code" == 200* ]] || { echo "data.sh: metrics query answered $code: $(head -c 500 "$out")" >&2; exit 1; }
            INFO[$BACKEND:mq-$agg-$which]="$(grep -o '"__name__"' "$out" | wc -l) series, $(grep -o '\[[0-9.]*,"' "$out" | wc -l) points, $(($(stat -c %s "$out") / 1024)) KB"
            post_lua "$WORK/mq.lua" "$qbody"
            measure "metrics-$agg-$which" "$METRIC_CONNECTIONS" "$WORK/mq.lua" /api/v1/metrics/query
        done
    done

    SERVER_LOG_LINES[$BACKEND]="$(wc -l <"$WORK/$BACKEND/stdout.log") lines, $(($(stat -c %s "$WORK/$BACKEND/stdout.log") / 1024)) KB"
    INFO[$BACKEND:db-size]="$(db_size_mb)"
    INFO[$BACKEND:audit-rows]="$(sql "SELECT count(*), action FROM audit_log GROUP BY action ORDER BY count(*) DESC LIMIT 4" |
        awk '{ n = $1; $1 = ""; printf "%s%s x%s", (NR > 1 ? ", " : ""), substr($0, 2), n }' || true)"
    stop_server
    if [[ "$BACKEND" == postgres ]]; then
        pg -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    else
        rm -f "$SQLITE_FILE" "$SQLITE_FILE"-*
    fi
}
declare -A QBODY
declare -A MQLABEL=(
    [all]="all $SERIES series, start on the first sample, step $((SAMPLES * 10 / POINTS)) s"
    [aligned]="all $SERIES series, step rounded up to whole minutes ($(((SAMPLES * 10 / POINTS + 59) / 60 * 60)) s), start on a step (Grafana's query)"
    [one]="labels {\"instance\":\"i7\"}, step $((SAMPLES * 10 / POINTS)) s"
)
declare -A QLABEL=(
    [source]="GET /api/v1/logs?source_id=<one of $SOURCES>&limit=50"
    [level]="GET /api/v1/logs?level=error&limit=50"
    [window]="GET /api/v1/logs?since=<T>&until=<T + 1 h>&limit=50"
)

# profile_ingest: an extra ingest run (c4, not measured) with perf on the server, then one
# with a system-wide perf (which processes take the CPUs).
profile_ingest() {
    local file="$RESULTS/data-$STAMP-perf-$BACKEND.txt" secs=5 w
    w=$((secs + 3))
    wait_quiet
    echo "== $BACKEND, perf during an extra ingest run (c4)" >&2
    wrk -t"$((THREADS < 4 ? THREADS : 4))" -c4 -d"${w}s" --timeout 30s -s "$WORK/ingest.lua" "$BASE/api/v1/logs" \
        -- "$((STORED / LINES))" "$((THREADS < 4 ? THREADS : 4))" >"$WORK/perf1.wrk" &
    BG+=("$!")
    sleep 1
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$WORK/server.perf" \
        -- sleep "$secs" >/dev/null 2>&1 || true
    wait "${BG[-1]}" || true
    bg_done "${BG[-1]}"
    STORED=$((STORED + $(accepted "$WORK/perf1.wrk") * LINES))
    wrk -t"$((THREADS < 4 ? THREADS : 4))" -c4 -d"${w}s" --timeout 30s -s "$WORK/ingest.lua" "$BASE/api/v1/logs" \
        -- "$((STORED / LINES))" "$((THREADS < 4 ? THREADS : 4))" >"$WORK/perf2.wrk" &
    BG+=("$!")
    sleep 1
    perf record -q -a -e cpu-clock -F 499 -o "$WORK/system.perf" -- sleep "$secs" >/dev/null 2>&1 || true
    wait "${BG[-1]}" || true
    bg_done "${BG[-1]}"
    STORED=$((STORED + $(accepted "$WORK/perf2.wrk") * LINES))
    # perf's table without comments, blank lines and trailing columns, lines cut at 160.
    tidy() { grep -v '^#' | grep -v '^[[:space:]]*$' | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//; s/[[:space:]]*$//' | cut -c1-160; }
    {
        echo "# $BACKEND: ingest at 4 connections; $(awk '/^Requests\/sec:/ { print $2 }' "$WORK/perf1.wrk") batches/s under perf"
        echo "# system-wide (perf record -a), by process"
        perf report -i "$WORK/system.perf" --stdio --sort comm --percent-limit 1 2>/dev/null | tidy || true
        if [[ "$BACKEND" == postgres ]]; then
            echo "# system-wide, postgres processes, self time by symbol"
            perf report -i "$WORK/system.perf" --stdio --comms postgres --sort dso,symbol --percent-limit 1 2>/dev/null |
                tidy | head -n 25 || true
        fi
        echo "# server (perf record --call-graph dwarf -p), self time by symbol"
        perf report -i "$WORK/server.perf" --stdio --no-children --sort symbol -g none --percent-limit 0.7 2>/dev/null |
            tidy | head -n 30 || true
        echo "# server, inclusive time (children) of the main steps"
        perf report -i "$WORK/server.perf" --stdio --children --sort symbol -g none --percent-limit 2 2>/dev/null |
            tidy | grep -v 'poll\|call_once\|catch_unwind\|do_call\|closure_env\|{closure#0}\|0xffffffff\|async_block\|async_fn\|(inlined)' |
            head -n 30 || true
    } >"$file"
    PERF_FILES[$BACKEND]="$file"
}

for backend in $BACKENDS; do
    run_backend "$backend"
done

# --- report ------------------------------------------------------------------------
REPORT="$RESULTS/data-$STAMP.md"
{
    echo "# Ingest and queries benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- command: \`BACKENDS=\"$BACKENDS\" DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=\"$CONNECTIONS\" THREADS=$THREADS WORKERS=$WORKERS SOURCES=$SOURCES BODIES=$BODIES LINES=$LINES LOG_TARGET=$LOG_TARGET QUERY_CONNECTIONS=$QUERY_CONNECTIONS SERIES=$SERIES SAMPLES=$SAMPLES METRIC_BATCH=$METRIC_BATCH POINTS=$POINTS METRIC_CONNECTIONS=$METRIC_CONNECTIONS PG_ANALYZE=$PG_ANALYZE PERF=$PERF bash benches/http/data.sh\`"
    echo "- $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }'); machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); wrk, curl, the server and PostgreSQL share them"
    echo "- commit: $COMMIT (built at the start; the server runs a copy of the binary)"
    echo "- server: killkrill release, development defaults, WORKERS=$WORKERS, stdout (one JSON line per request) to a file"
    echo "- log bodies: ${INFO[bodies]}, $SOURCES sources with an ingest key each; timestamps from $(iso "$T0"), one line every $DT_MS ms of the simulated clock (increasing across batches)"
    echo "- wrk: \`-d${DURATION}s --latency --timeout 30s\` after a ${WARMUP}s warm-up, at most $THREADS threads (one per connection); latencies are per request (one batch for ingest)"
    echo "- server / database CPU: CPU time (user+sys) of the server, and of the PostgreSQL processes of the benchmark's database (+ its background writers), per request;"
    echo "  other CPU %: share of all CPUs used by anything else (should be ~0; a run above $OTHER_MAX % is rerun, up to $RETRIES times)"
    echo "- peak RSS: the server's VmHWM, reset before each warm-up + run$( ((HWM_NOT_RESET)) && echo ' (reset FAILED: includes earlier phases)'); max sampled: VmRSS every 0.2 s"
    for backend in $BACKENDS; do
        b="$backend"
        echo
        echo "## $b"
        echo
        echo "${INFO[$b]}"
        echo
        echo "### 1. Log ingest (POST /api/v1/logs, $LINES lines a batch, X-API-Key)"
        echo
        echo "| connections | batches/s | lines/s | p50 ms | p99 ms | non-202 | peak RSS MB | max sampled VmRSS MB | server CPU ms/batch | database CPU ms/batch | other CPU % | rows before | notes |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        for n in $CONNECTIONS; do
            k="$b:ingest-c$n"
            echo "| $n | ${RPS[$k]} | $(num "$(awk -v r="${RPS[$k]}" -v l="$LINES" 'BEGIN { print r * l }')") | ${P50[$k]} | ${P99[$k]} | ${STATUS_BAD[$k]}$( ((${STATUS_BAD[$k]} > 0)) && echo " (last ${BAD_LAST[$k]})") | $(mb "${HWM[$k]}") | $(mb "${RSSMAX[$k]}") | $(awk -v u="${CPU_US[$k]}" 'BEGIN { printf "%.1f", u / 1000 }') | $(awk -v u="${DB_US[$k]}" 'BEGIN { printf "%.1f", u / 1000 }') | ${OTHER[$k]} | $(num "${INFO[$b:rows-before-c$n]}") | ${NOTE[$k]:-} |"
        done
        echo
        echo "Database size after these runs: ${INFO[$b:db-size-ingest]} MB."
        echo
        echo "### 2. Log queries (limit=50, Bearer, \`wrk -c$QUERY_CONNECTIONS\`)"
        echo
        echo "Stored: $(num "${INFO[$b:counted]}") rows counted in the database ($(num "${INFO[$b:stored]}") accepted by the API; the fill after part 1 added ${INFO[$b:fill]}); database size after the fill ${INFO[$b:db-size-logs]} MB; ANALYZE before the queries: ${INFO[$b:analyze]}."
        echo
        echo "| query | req/s | p50 ms | p99 ms | non-200 | entries | server CPU µs/req | database CPU µs/req | other CPU % | page 1 ms | page $PAGES ms (curl) | paging | notes |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        for q in source level window; do
            k="$b:query-$q"
            echo "| \`${QLABEL[$q]}\` | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} | ${STATUS_BAD[$k]} | ${INFO[$b:entries-$q]} | ${CPU_US[$k]} | ${DB_US[$k]} | ${OTHER[$k]} | ${PAGE1_MS[$b:$q]} | ${PAGE_MS[$b:$q]} | ${PAGE_UNIQUE[$b:$q]} | ${NOTE[$k]:-} |"
        done
        echo
        echo "### 3. Metrics ($SERIES series x $SAMPLES samples, one per 10 s; query over the whole range, \`wrk -c$METRIC_CONNECTIONS\`)"
        echo
        echo "Ingest: ${INFO[$b:metrics-ingest]}; $(num "${INFO[$b:samples-counted]:-0}") samples counted in the database; database size at the end ${INFO[$b:db-size]} MB."
        echo
        echo "| query | req/s | p50 ms | p99 ms | non-200 | response | server CPU ms/req | database CPU ms/req | other CPU % | notes |"
        echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"
        for agg in rate avg; do
            for which in $METRIC_QUERIES; do
                k="$b:metrics-$agg-$which"
                echo "| $agg, ${MQLABEL[$which]} | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} | ${STATUS_BAD[$k]} | ${INFO[$b:mq-$agg-$which]} | $(awk -v u="${CPU_US[$k]}" 'BEGIN { printf "%.1f", u / 1000 }') | $(awk -v u="${DB_US[$k]}" 'BEGIN { printf "%.1f", u / 1000 }') | ${OTHER[$k]} | ${NOTE[$k]:-} |"
            done
        done
        echo
        echo "Server stdout after the run: ${SERVER_LOG_LINES[$b]}. Audit rows by action: ${INFO[$b:audit-rows]:-n/a}."
    done
    echo
    echo "## Goals"
    echo
    echo "| goal | $(for b in $BACKENDS; do printf '%s | ' "$b"; done)"
    echo "|---|$(for b in $BACKENDS; do printf -- '---|'; done)"
    best() { # BACKEND: the best lines/s of the ingest runs and its connection count
        local b="$1" n r best=0 at=""
        for n in $CONNECTIONS; do
            r="$(awk -v r="${RPS[$b:ingest-c$n]}" -v l="$LINES" 'BEGIN { printf "%.0f", r * l }')"
            ((r > best)) && { best=$r; at=$n; }
        done
        echo "$best $at"
    }
    printf '| ingest >= 50,000 lines/s (best run), no non-202 | '
    for b in $BACKENDS; do
        read -r r at < <(best "$b")
        bad=0
        for n in $CONNECTIONS; do bad=$((bad + ${STATUS_BAD[$b:ingest-c$n]})); done
        printf '%s lines/s at c%s, %d non-202 -> %s | ' "$(num "$r")" "$at" "$bad" "$( ((bad == 0)) && met "$r" 50000 '>=' || echo '**NOT met**')"
    done
    echo
    printf '| server RSS < 100 MB during ingest | '
    for b in $BACKENDS; do
        m=0
        for n in $CONNECTIONS; do ((${HWM[$b:ingest-c$n]} > m)) && m=${HWM[$b:ingest-c$n]}; done
        printf '%s MB -> %s | ' "$(mb "$m")" "$(met "$m" $((100 * 1024)) '<')"
    done
    echo
    for q in source level window; do
        printf '| log query p99 < 50 ms (%s) | ' "$q"
        for b in $BACKENDS; do printf '%s ms -> %s | ' "${P99[$b:query-$q]}" "$(met "${P99[$b:query-$q]}" 50 '<')"; done
        echo
    done
    for agg in rate avg; do
        for which in $METRIC_QUERIES; do
            printf '| metrics query p99 < 100 ms (%s, %s) | ' "$agg" "$which"
            for b in $BACKENDS; do printf '%s ms -> %s | ' "${P99[$b:metrics-$agg-$which]}" "$(met "${P99[$b:metrics-$agg-$which]}" 100 '<')"; done
            echo
        done
    done
    for b in $BACKENDS; do
        if [[ -n "${PERF_FILES[$b]:-}" ]]; then
            echo
            echo "## perf, $b (extra, unmeasured ingest run at 4 connections)"
            echo
            echo '```'
            cat "${PERF_FILES[$b]}"
            echo '```'
        fi
    done
} | tee "$REPORT"
echo >&2
echo "data.sh: written $REPORT" >&2

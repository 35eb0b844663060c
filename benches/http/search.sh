#!/usr/bin/env bash
# Text search benchmark of the release killkrill binary (`q=` of GET /api/v1/logs), on SQLite
# and on PostgreSQL, with curl. See benches/README.md, section "Text search".
#
#   bash benches/http/search.sh
#
# For each backend (BACKENDS), one server, one run:
#   1. load: N lines through POST /api/v1/logs, BATCH lines a request, PARALLEL requests at
#      once, spread over SOURCES sources (an ingest key each); lines as data.sh makes them
#      (levels, 100-200 byte messages with trace ids, hostnames, applications, attributes),
#      timestamps spread evenly over the 7 days before the start; the rare string RARE
#      starts one line in RARE_EVERY (default 100,000), the common string COMMON one line in
#      COMMON_EVERY (default 6); lines/s of the load;
#   2. search: REQUESTS requests one after the other (curl, Bearer token, limit=50) for each
#      of q=RARE, q=COMMON, each alone and with a source_id (the source of the first rare
#      line; the first source for the common string): p50, p99,
#      max in ms and the entries on the first page; goals: rare p99 < 100 ms, common
#      p99 < 50 ms;
#   3. disk: bytes of the logs table and its indexes (SQLite: dbstat pages of `logs`, its
#      `ix_logs_*` indexes and the `logs_fts*` tables; PostgreSQL: pg_total_relation_size,
#      the heap, TOAST and every index, after VACUUM) per line, against the bytes of the lines
#      as sent (each line's compact JSON, all fields); goal <= 3x.
#
# Environment (all optional):
#   BACKENDS="sqlite postgres"
#   N=10000000             lines loaded (the issue's figure; 1000000 fits a shared machine)
#   BATCH=10000 PARALLEL=2 SOURCES=10
#   RARE=7Q2ZX81QK RARE_EVERY=100000 COMMON=checkout-retry COMMON_EVERY=6
#   REQUESTS=200           requests per search
#   PG_ANALYZE=1           PostgreSQL: VACUUM ANALYZE logs before the searches (this
#                          machine's PostgreSQL runs with autovacuum off)
#   OURS_BIN=...           measure this killkrill binary (e.g. an earlier commit's release
#                          build) instead of building this checkout
#   BUILD=1                0: measure this checkout's target/release/killkrill as it is
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres (trust authentication)
#
# PostgreSQL runs use a fresh database kk_search_<random>, dropped at exit; the SQLite file
# lives in a temporary directory, removed at exit. The report goes to stdout and to
# benches/results/search-<date>.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BACKENDS="${BACKENDS:-sqlite postgres}"
N="${N:-10000000}"
BATCH="${BATCH:-10000}"
PARALLEL="${PARALLEL:-2}"
SOURCES="${SOURCES:-10}"
RARE="${RARE:-7Q2ZX81QK}"
RARE_EVERY="${RARE_EVERY:-100000}"
COMMON="${COMMON:-checkout-retry}"
COMMON_EVERY="${COMMON_EVERY:-6}"
REQUESTS="${REQUESTS:-200}"
PG_ANALYZE="${PG_ANALYZE:-1}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"

die() { echo "search.sh: $*" >&2; exit 2; }
for value in "$N" "$BATCH" "$PARALLEL" "$SOURCES" "$RARE_EVERY" "$COMMON_EVERY" "$REQUESTS" "$PG_ANALYZE" "$PG_PORT"; do
    [[ "$value" =~ ^[0-9]+$ ]] || die "not a number: $value"
done
[[ "$RARE$COMMON" =~ ^[A-Za-z0-9-]+$ ]] || die "RARE and COMMON: letters, digits and '-' only"
((N >= BATCH && N % BATCH == 0)) || die "N must be a multiple of BATCH"
((BATCH >= 1 && BATCH <= 10000)) || die "BATCH must be 1..10000 (the API's batch limit)"
((PARALLEL >= 1 && SOURCES >= 1 && REQUESTS >= 2 && RARE_EVERY >= 2 && COMMON_EVERY >= 2)) || die "bad knob"
[[ "$PG_HOST" == 127.0.0.1 ]] || die "PG_HOST must be 127.0.0.1"
for tool in curl awk; do command -v "$tool" >/dev/null || die "$tool is required"; done
[[ " $BACKENDS " != *" postgres "* ]] || command -v psql >/dev/null || die "the postgres backend needs psql"
[[ " $BACKENDS " != *" sqlite "* ]] || command -v sqlite3 >/dev/null || die "the sqlite backend needs sqlite3"

cd "$ROOT"
if [[ -n "${OURS_BIN:-}" ]]; then
    [[ -x "$OURS_BIN" ]] || die "OURS_BIN=$OURS_BIN is not an executable"
    COMMIT="given binary $OURS_BIN"
else
    [[ "${BUILD:-1}" == 0 ]] || cargo build --release --bin killkrill
    OURS_BIN="$ROOT/target/release/killkrill"
    COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (uncommitted changes)')"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-search-bench.XXXXXX")"
cp "$OURS_BIN" "$WORK/killkrill"  # others may rebuild target/ meanwhile
SERVER_PID=""
PG_DB=""
pg() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    [[ -z "$PG_DB" ]] || pg -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Lines of one batch: BATCH lines, global numbers first .. first+BATCH-1, as data.sh writes
# them; writes the body to stdout and adds each line's compact JSON bytes to the file `sent`.
cat >"$WORK/lines.awk" <<'EOF'
function hex(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s substr("0123456789abcdef", int(rand() * 16) + 1, 1); return s }
function pick(list,   a, k) { k = split(list, a, "|"); return a[int(rand() * k) + 1] }
function num(lo, hi) { return lo + int(rand() * (hi - lo + 1)) }
function message(level, k,   m, target, lead) {
    if (level == "error" || level == "critical") {
        m = sprintf("Connection to postgres://db-%d.internal:5432/orders failed: timeout after %d ms (attempt %d of 5)", num(1, 4), num(100, 5000), num(1, 5))
    } else if (level == "warning") {
        m = sprintf("Slow query (%d ms): SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50", num(500, 9000))
    } else if (level == "debug") {
        m = sprintf("Cache %s for key session:%s in region %s; ttl=%d s, size=%d bytes", pick("hit|miss"), hex(16), pick("eu-west-1|us-east-1|ap-south-1"), num(60, 3600), num(100, 90000))
    } else if (rand() < 0.6) {
        m = sprintf("%s /api/v1/%s/%d %s %d ms bytes=%d user_id=%d ua=Mozilla/5.0 (X11; Linux x86_64)", pick("GET|GET|GET|POST|PUT|DELETE"), pick("orders|customers|products|carts|invoices"), num(1, 999999), pick("200|200|200|201|204|404"), num(1, 900), num(100, 90000), num(1, 99999))
    } else {
        m = sprintf("Processed job %s from queue %s in %d ms: %d items, %d retries", hex(12), pick("emails|thumbnails|exports|webhooks"), num(5, 4000), num(1, 500), num(0, 3))
    }
    lead = ""
    if (k % rare_every == rare_every / 2) lead = lead "order " rare " "
    if (k % common_every == 0) lead = lead common " "
    target = num(100, 200)
    m = lead m
    if (length(m) < target) m = m " trace_id=" hex(32) " span_id=" hex(16)
    return substr(m, 1, target < length(lead) + 20 ? length(lead) + 20 : target)
}
BEGIN {
    srand(first)
    printf "{\"source_id\":\"%s\",\"logs\":[", source
    for (k = first; k < first + n; k++) {
        r = rand()
        level = (r < 0.10 ? "debug" : r < 0.75 ? "info" : r < 0.90 ? "warning" : r < 0.98 ? "error" : "critical")
        app = pick("api-gateway|orders|billing|auth|search|worker")
        line = sprintf("{\"timestamp\":%d,\"level\":\"%s\",\"message\":\"%s\",\"hostname\":\"%s-%02d\",\"application\":\"%s\",\"attributes\":{\"pid\":%d,\"thread\":\"worker-%d\",\"request_id\":\"%s\",\"region\":\"%s\"}}", \
            t0 + int(k * span / total), level, message(level, k), (app == "worker" ? "job" : "web"), num(1, 12), app, \
            num(1000, 65000), num(0, 15), hex(16), pick("eu-west-1|us-east-1|ap-south-1"))
        bytes += length(line)
        printf "%s%s", (k > first ? "," : ""), line
    }
    print "]}"
    print bytes >> sent
}
EOF

http_ok() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/healthz" || true)" == 200 ]]; }
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -n1 | sed 's/^"[^"]*":"//; s/"$//' || true; }
api() { # METHOD PATH [BODY]
    curl -sf --max-time 60 -X "$1" "$BASE$2" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' ${3:+-d "$3"}
}

start_server() { # DATABASE_URL; a random port, tried again (5 times) when it is taken
    local port attempt
    mkdir -p "$WORK/$BACKEND"
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        (cd "$WORK/$BACKEND" && DATABASE_URL="$1" exec "$WORK/killkrill" --host 127.0.0.1 --port "$port" --no-grpc \
            >"$WORK/$BACKEND/stdout.log" 2>"$WORK/$BACKEND/stderr.log") &
        SERVER_PID=$!
        BASE="http://127.0.0.1:$port"
        for _ in $(seq 1 600); do
            http_ok "$BASE" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        wait "$SERVER_PID" 2>/dev/null || true
        grep -q "Address already in use" "$WORK/$BACKEND/stderr.log" || break
    done
    tail -n 20 "$WORK/$BACKEND/stderr.log" >&2
    die "killkrill did not start on $BACKEND"
}
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# search NAME QUERY: REQUESTS GETs; sets ROW to "| NAME | p50 | p99 | max | entries |".
search() {
    local name="$1" query="$2" entries
    entries="$(api GET "/api/v1/logs?$query&limit=50" | { grep -o '"message":' || true; } | wc -l)"
    for _ in $(seq 1 "$REQUESTS"); do
        curl -sf -o /dev/null -w '%{time_total}\n' --max-time 60 -H "Authorization: Bearer $TOKEN" \
            "$BASE/api/v1/logs?$query&limit=50"
    done | sort -n | awk -v n="$REQUESTS" -v name="$name" -v e="$entries" '
        { t[NR] = $1 * 1000 }
        END { printf "| %s | %.1f | %.1f | %.1f | %d |\n", name, t[int((n + 1) / 2)], t[int(n * 0.99 + 0.999)], t[NR], e }'
}

disk_bytes() {
    if [[ "$BACKEND" == postgres ]]; then
        pg -d "$PG_DB" -At -c "SELECT pg_total_relation_size('logs')"
    else
        sqlite3 "$SQLITE_FILE" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
        sqlite3 "$SQLITE_FILE" "SELECT sum(pgsize) FROM dbstat WHERE name = 'logs' OR name LIKE 'ix_logs_%' OR name LIKE 'logs_fts%'"
    fi
}

STAMP="$(date -u +%Y-%m-%d-%H%M%S)"
REPORT="$ROOT/benches/results/search-$STAMP.md"
mkdir -p "$ROOT/benches/results"
NOW="$(date +%s)"
{
    echo "# Text search, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Binary: $COMMIT. N=$N lines in batches of $BATCH ($PARALLEL at once), $SOURCES sources;"
    echo "RARE=$RARE in 1 line of $RARE_EVERY, COMMON=$COMMON in 1 of $COMMON_EVERY; $REQUESTS requests per search, limit=50."
    echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs."
} | tee "$REPORT"

for BACKEND in $BACKENDS; do
    if [[ "$BACKEND" == postgres ]]; then
        PG_DB="kk_search_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
        pg -d postgres -c "CREATE DATABASE $PG_DB"
        url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
    else
        mkdir -p "$WORK/sqlite"
        SQLITE_FILE="$WORK/sqlite/killkrill.db"
        url="sqlite:///$SQLITE_FILE"
    fi
    start_server "$url"
    TOKEN="$(curl -s -X POST "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"admin123"}' | json_field access_token)"
    [[ -n "$TOKEN" ]] || die "login failed"
    ids=() keys=()
    for i in $(seq 0 $((SOURCES - 1))); do
        ids+=("$(api POST /api/v1/sources "{\"name\":\"search-$i\",\"type\":\"http\"}" | json_field id)")
        keys+=("$(api POST "/api/v1/sources/${ids[$i]}/keys" '{"name":"bench"}' | json_field key)")
    done

    : >"$WORK/sent"
    started="$(date +%s.%N)"
    loaders=()
    for batch in $(seq 0 $((N / BATCH - 1))); do
        src=$((batch % SOURCES))
        (
            awk -v first=$((batch * BATCH)) -v n="$BATCH" -v total="$N" -v t0=$((NOW - 7 * 86400)) -v span=$((7 * 86400 - 60)) \
                -v source="${ids[$src]}" -v rare="$RARE" -v rare_every="$RARE_EVERY" -v common="$COMMON" \
                -v common_every="$COMMON_EVERY" -v sent="$WORK/sent" -f "$WORK/lines.awk" >"$WORK/body-$batch.json"
            answer="$(curl -s --max-time 120 -X POST "$BASE/api/v1/logs" -H 'content-type: application/json' \
                -H "X-API-Key: ${keys[$src]}" --data-binary @"$WORK/body-$batch.json")"
            rm -f "$WORK/body-$batch.json"
            [[ "$answer" == *"\"accepted\":$BATCH"* ]] || { echo "search.sh: batch $batch: $answer" >&2; exit 1; }
        ) &
        loaders+=($!)
        if ((${#loaders[@]} == PARALLEL)); then
            for pid in "${loaders[@]}"; do wait "$pid" || die "the load failed"; done
            loaders=()
        fi
        if (((batch + 1) % 100 == 0)); then echo "search.sh: $BACKEND: $(((batch + 1) * BATCH)) lines" >&2; fi
    done
    for pid in "${loaders[@]}"; do wait "$pid" || die "the load failed"; done
    load_s="$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
    sent="$(awk '{ s += $1 } END { print s }' "$WORK/sent")"
    if [[ "$BACKEND" == postgres && "$PG_ANALYZE" == 1 ]]; then
        pg -d "$PG_DB" -c "VACUUM ANALYZE logs"
    fi
    disk="$(disk_bytes)"
    {
        echo
        echo "## $BACKEND"
        echo
        echo "Loaded $N lines in ${load_s} s ($(awk -v n="$N" -v s="$load_s" 'BEGIN { printf "%.0f", n / s }') lines/s)."
        awk -v d="$disk" -v s="$sent" -v n="$N" 'BEGIN {
            printf "Disk (logs and its indexes): %.0f B/line; sent (compact JSON): %.0f B/line; ratio %.2fx (goal <= 3x)\n", d / n, s / n, d / s }'
        echo
        echo "| search | p50 ms | p99 ms | max ms | entries |"
        echo "|---|---|---|---|---|"
        search "rare" "q=$RARE"
        search "rare, source_id" "q=$RARE&source_id=${ids[$(((RARE_EVERY / 2 / BATCH) % SOURCES))]}"
        search "common" "q=$COMMON"
        search "common, source_id" "q=$COMMON&source_id=${ids[0]}"
        echo
        echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
    } | tee -a "$REPORT"
    stop_server
    if [[ "$BACKEND" == postgres ]]; then
        pg -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
        PG_DB=""
    fi
done
echo "search.sh: report in $REPORT" >&2

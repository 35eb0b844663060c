#!/usr/bin/env bash
# Authentication benchmark of the release killkrill binary (SQLite), with wrk and curl.
# See benches/README.md, section "Authentication".
#
#   bash benches/http/auth.sh
#
# One server, one run, three parts:
#   1. at CONNECTIONS (64) connections: GET /healthz, then GET /api/v1/auth/verify with a
#      bearer access token, then with an X-API-Key: req/s, p50, p99, server CPU per request,
#      and verify / healthz (goal: >= 0.80 each);
#   2. LOGINS (40) sequential POST /api/v1/auth/login with curl, one at a time: p50 and p99
#      latency (the argon2id cost) and the peak RSS during them;
#   3. GET /healthz (wrk -t1 -c$HEALTHZ_CONNECTIONS) alone, then during a burst of logins
#      (wrk -t1 -c$BURST_CONNECTIONS POSTing the login): p50/p99 of /healthz with and without
#      the burst (goal: p99 < 10 ms during it) and the logins/s the burst achieved.
#
# Environment (all optional):
#   ROUNDS=3                  part 1 runs healthz, JWT, API key in turn this many times; the
#                             goals use the median of the rounds' ratios (a shared VM's speed
#                             drifts by 20-30 % within minutes: one round is not a figure)
#   OTHER_MAX=10              a round in which anything else took more than this % of the
#                             CPUs is reported but left out of the median
#   DURATION=10               seconds of each measured wrk run
#   WARMUP=2                  seconds of the wrk warm-up before each run of parts 1 and 3
#   CONNECTIONS=64            connections of part 1
#   THREADS=2                 wrk threads of part 1
#   WORKERS=4                 runtime worker threads of the server (killkrill's default)
#   LOGINS=40                 sequential logins of part 2
#   HEALTHZ_CONNECTIONS=16    connections of the /healthz probe of part 3
#   BURST_CONNECTIONS=8       concurrent logins of the burst of part 3
#   BUILD=1                   0: skip the build and use target/release/killkrill as it is
#                             (to build first, then wait for a quiet machine)
#   PERF=0                    1: after the measured runs, profile each verify variant with
#                             `perf record -e cpu-clock --call-graph dwarf -p PID` during an
#                             extra (unmeasured) wrk run; the flat profiles go next to the report
#
# Logins use the development admin (admin / admin123) and always succeed: the throttles
# (10 failures per account, 60 per address) only count failures. Only 127.0.0.1 is used.
# The server is killed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
OTHER_MAX="${OTHER_MAX:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-4}"
LOGINS="${LOGINS:-40}"
HEALTHZ_CONNECTIONS="${HEALTHZ_CONNECTIONS:-16}"
BURST_CONNECTIONS="${BURST_CONNECTIONS:-8}"
PERF="${PERF:-0}"
BUILD="${BUILD:-1}"
export WORKERS

for value in "$ROUNDS" "$OTHER_MAX" "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$WORKERS" "$LOGINS" \
    "$HEALTHZ_CONNECTIONS" "$BURST_CONNECTIONS" "$PERF" "$BUILD"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { echo "auth.sh: not a number: $value" >&2; exit 2; }
done
((DURATION >= 1 && DURATION <= 600)) || { echo "auth.sh: DURATION must be 1..600" >&2; exit 2; }
((WARMUP <= 60)) || { echo "auth.sh: WARMUP must be 0..60" >&2; exit 2; }
((LOGINS >= 1 && LOGINS <= 1000)) || { echo "auth.sh: LOGINS must be 1..1000" >&2; exit 2; }
((CONNECTIONS >= 1 && HEALTHZ_CONNECTIONS >= 1 && BURST_CONNECTIONS >= 1 && THREADS >= 1)) ||
    { echo "auth.sh: connections and threads must be >= 1" >&2; exit 2; }
((BURST_CONNECTIONS <= 64)) || { echo "auth.sh: BURST_CONNECTIONS must be <= 64 (64 MiB per login)" >&2; exit 2; }

# --- wrk ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
    echo "auth.sh: installing wrk (apt-get install -y wrk)" >&2
    if ! $SUDO apt-get install -y wrk >&2; then
        $SUDO apt-get update >&2
        $SUDO apt-get install -y wrk >&2
    fi
fi
command -v curl >/dev/null 2>&1 || { echo "auth.sh: curl is required" >&2; exit 1; }
if [[ "$PERF" == 1 ]] && ! command -v perf >/dev/null 2>&1; then
    echo "auth.sh: PERF=1 needs perf (linux-perf)" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------
cd "$ROOT"
if [[ "$BUILD" != 0 ]]; then
    cargo build --release --bin killkrill
fi
OURS_BIN="$ROOT/target/release/killkrill"
[[ -x "$OURS_BIN" ]] || { echo "auth.sh: $OURS_BIN is missing (run with BUILD=1)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-auth-bench.XXXXXX")"
PIDS=()   # the server
BG=()     # background wrk / perf / samplers, all bounded in time anyway
cleanup() {
    local pid
    for pid in "${BG[@]}" "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG[@]}" "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers (as in run.sh) ----------------------------------------------------------
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
    echo "auth.sh: no free port found" >&2
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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }

# CPU accounting: the server's own CPU ticks, the machine's busy/total ticks, and the CPU
# seconds of this shell's finished children (wrk, curl, the helpers), from `times`.
CLK="$(getconf CLK_TCK)"
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }  # utime+stime
sys_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }  # busy total
# Sets CHILD_S to the user+sys seconds of all waited-for children so far. Must run in this
# shell (not in $(...)), since `times` reports the calling process's children.
child_seconds() {
    times >"$WORK/times"
    CHILD_S="$(awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] }
        printf "%.3f", s
    }' "$WORK/times")"
}
# Starts a CPU window (sets W_SERVER, W_BUSY, W_TOTAL, W_CHILD).
window_start() {
    W_SERVER="$(proc_ticks "$SERVER_PID")"
    read -r W_BUSY W_TOTAL < <(sys_ticks)
    child_seconds
    W_CHILD="$CHILD_S"
}
# Ends it: sets W_SERVER_S (server CPU seconds), W_OTHER (% of all CPUs used by anything but
# the server and this script's children) and W_WALL_S.
window_end() {
    local busy total server
    read -r busy total < <(sys_ticks)
    server="$(proc_ticks "$SERVER_PID")"
    child_seconds
    W_SERVER_S="$(awk -v s=$((server - W_SERVER)) -v c="$CLK" 'BEGIN { printf "%.3f", s / c }')"
    W_OTHER="$(awk -v b=$((busy - W_BUSY)) -v t=$((total - W_TOTAL)) -v s=$((server - W_SERVER)) -v c="$CLK" \
        -v k="$(awk -v a="$CHILD_S" -v b="$W_CHILD" 'BEGIN { print a - b }')" \
        'BEGIN { o = b / c - s / c - k; if (o < 0) o = 0; printf "%.0f", (t > 0 ? 100 * o * c / t : 0) }')"
}

# Peak RSS over a phase: VmHWM reset (writing 5 to clear_refs, Linux >= 4.0) at its start.
HWM_NOT_RESET=0
reset_hwm() { echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || HWM_NOT_RESET=1; }

# --- server ------------------------------------------------------------------------
# Started as run.sh starts killkrill: in $WORK (no .env of the repository is read), SQLite,
# development defaults (so the admin/admin123 account exists), stdout to a file.
SERVER_LOG="$WORK/killkrill.log"
start_server() {
    local attempt port pid status
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        (cd "$WORK" && DATABASE_URL="sqlite:///$WORK/killkrill.db" exec "$OURS_BIN" \
            --host 127.0.0.1 --port "$port" --no-grpc >"$SERVER_LOG" 2>"$WORK/killkrill.err") &
        pid=$!
        PIDS+=("$pid")
        status=0
        wait_ready "$pid" "$port" || status=$?
        if ((status == 0)); then
            SERVER_PID="$pid"
            PORT="$port"
            return 0
        fi
        ((status == 1)) || break
        echo "auth.sh: killkrill exited during start-up (attempt $attempt, port $port)" >&2
    done
    echo "auth.sh: killkrill did not answer 200 on /healthz; its stderr:" >&2
    tail -n 20 "$WORK/killkrill.err" >&2 || true
    exit 1
}
start_server
BASE="http://127.0.0.1:$PORT"
START_HWM="$(kib VmHWM "$SERVER_PID")"
LOGIN_BODY='{"username":"admin","password":"admin123"}'

# --- credentials -------------------------------------------------------------------
login_json="$(curl -s --max-time 30 -X POST "$BASE/api/v1/auth/login" \
    -H 'content-type: application/json' -d "$LOGIN_BODY")"
TOKEN="$(printf '%s' "$login_json" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
[[ -n "$TOKEN" ]] || { echo "auth.sh: login failed: $login_json" >&2; exit 1; }
key_json="$(curl -s --max-time 30 -X POST "$BASE/api/v1/auth/api-keys" -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name":"bench"}')"
API_KEY="$(printf '%s' "$key_json" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')"
[[ -n "$API_KEY" ]] || { echo "auth.sh: API key creation failed: $key_json" >&2; exit 1; }
for header in "Authorization: Bearer $TOKEN" "X-API-Key: $API_KEY"; do
    code="$(curl -s -o "$WORK/verify.json" -w '%{http_code}' --max-time 10 -H "$header" "$BASE/api/v1/auth/verify")"
    [[ "$code" == 200 ]] || { echo "auth.sh: verify answered $code: $(cat "$WORK/verify.json")" >&2; exit 1; }
done

# --- part 1: /healthz vs /auth/verify at $CONNECTIONS connections ---------------------
declare -A RPS P50 P99 HWM RSSMAX CPU_US OTHER ERRS LABEL
# measure KEY THREADS CONNS URL [HEADER]: warm-up, then a measured wrk run.
measure() {
    local key="$1" threads="$2" conns="$3" url="$4" header=("${@:5}") out requests
    local hdr=()
    ((${#header[@]} == 0)) || hdr=(-H "${header[0]}")
    reset_hwm
    if ((WARMUP > 0)); then
        wrk -t"$threads" -c"$conns" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null
    fi
    echo "== $key: wrk -t$threads -c$conns -d${DURATION}s --latency $url" >&2
    out="$WORK/$key.wrk"
    window_start
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "${hdr[@]}" "$url" >"$out"
    window_end
    cat "$out" >&2
    requests="$(awk '/requests in/ { print $1 }' "$out")"
    CPU_US[$key]="$(awk -v s="$W_SERVER_S" -v r="$requests" 'BEGIN { printf "%.1f", (r > 0 ? s * 1e6 / r : 0) }')"
    OTHER[$key]="$W_OTHER"
    RPS[$key]="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")"
    P50[$key]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    P99[$key]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    ERRS[$key]="$(awk '/Non-2xx|Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$out")"
    HWM[$key]="$(kib VmHWM "$SERVER_PID")"
}

LABEL[healthz]="GET /healthz"
LABEL[jwt]="GET /api/v1/auth/verify, Bearer token"
LABEL[apikey]="GET /api/v1/auth/verify, X-API-Key"
KEYS=()
NOISY=()
RATIOS_JWT=()
RATIOS_KEY=()
for round in $(seq 1 "$ROUNDS"); do
    for kind in healthz jwt apikey; do LABEL[$kind.$round]="${LABEL[$kind]} (round $round)"; done
    measure "healthz.$round" "$THREADS" "$CONNECTIONS" "$BASE/healthz"
    measure "jwt.$round" "$THREADS" "$CONNECTIONS" "$BASE/api/v1/auth/verify" "Authorization: Bearer $TOKEN"
    measure "apikey.$round" "$THREADS" "$CONNECTIONS" "$BASE/api/v1/auth/verify" "X-API-Key: $API_KEY"
    KEYS+=("healthz.$round" "jwt.$round" "apikey.$round")
    noisiest="$(printf '%s\n' "${OTHER[healthz.$round]}" "${OTHER[jwt.$round]}" "${OTHER[apikey.$round]}" | sort -n | tail -n1)"
    if ((noisiest > OTHER_MAX)); then
        NOISY+=("$round")
        continue
    fi
    RATIOS_JWT+=("$(ratio "${RPS[jwt.$round]}" "${RPS[healthz.$round]}")")
    RATIOS_KEY+=("$(ratio "${RPS[apikey.$round]}" "${RPS[healthz.$round]}")")
done
((${#RATIOS_JWT[@]} > 0)) || { RATIOS_JWT=(0); RATIOS_KEY=(0); }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# --- part 2: sequential logins -----------------------------------------------------
echo "== $LOGINS sequential logins" >&2
: >"$WORK/logins.txt"
reset_hwm
window_start
for _ in $(seq 1 "$LOGINS"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 30 -X POST "$BASE/api/v1/auth/login" \
        -H 'content-type: application/json' -d "$LOGIN_BODY" >>"$WORK/logins.txt" || echo "000 0" >>"$WORK/logins.txt"
done
window_end
LOGIN_HWM="$(kib VmHWM "$SERVER_PID")"
LOGIN_OTHER="$W_OTHER"
LOGIN_CPU_MS="$(awk -v s="$W_SERVER_S" -v n="$LOGINS" 'BEGIN { printf "%.1f", s * 1000 / n }')"
LOGIN_FAILED="$(awk '$1 != 200' "$WORK/logins.txt" | wc -l)"
LOGIN_STATUSES="$(awk '{ c[$1]++ } END { for (s in c) printf "%s x%d ", s, c[s] }' "$WORK/logins.txt")"
# Nearest-rank percentiles of the 200s, in ms.
read -r LOGIN_P50 LOGIN_P99 LOGIN_MIN LOGIN_MAX LOGIN_MEAN < <(awk '$1 == 200 { print $2 * 1000 }' "$WORK/logins.txt" |
    sort -n | awk '{ v[NR] = $1; s += $1 } END {
        if (NR == 0) { print "0 0 0 0 0"; exit }
        i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
        i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
        printf "%.1f %.1f %.1f %.1f %.1f\n", v[i50], v[i99], v[1], v[NR], s / NR
    }')
awk '{ printf "%s ", $2 } END { print "" }' "$WORK/logins.txt" >&2

# --- part 3: /healthz with and without a login burst ---------------------------------
cat >"$WORK/login.lua" <<EOF
wrk.method = "POST"
wrk.body = '$LOGIN_BODY'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; throttled = 0; other = 0 end
function response(status, headers, body)
    if status == 200 then ok = ok + 1 elseif status == 429 then throttled = throttled + 1 else other = other + 1 end
end
function done(summary, latency, requests)
    local o, t, x = 0, 0, 0
    for _, th in ipairs(threads) do o = o + th:get("ok"); t = t + th:get("throttled"); x = x + th:get("other") end
    io.write(string.format("statuses: 200=%d 429=%d other=%d\n", o, t, x))
end
EOF

LABEL[quiet]="GET /healthz, alone"
measure quiet 1 "$HEALTHZ_CONNECTIONS" "$BASE/healthz"

# The burst starts 1 s before the /healthz run and ends ~1 s after it.
BURST_SECONDS=$((DURATION + 2))
echo "== burst: wrk -t1 -c$BURST_CONNECTIONS -d${BURST_SECONDS}s POST /api/v1/auth/login," \
    "with wrk -t1 -c$HEALTHZ_CONNECTIONS -d${DURATION}s --latency $BASE/healthz" >&2
reset_hwm
# VmRSS every 0.2 s while the burst runs (bounded); VmHWM also covers 1.5 s after its end.
(
    for _ in $(seq 1 $(((BURST_SECONDS + 3) * 5))); do
        kib VmRSS "$SERVER_PID" >>"$WORK/burst.rss" 2>/dev/null || true
        sleep 0.2
    done
) &
sampler=$!
BG+=("$sampler")
window_start
wrk -t1 -c"$BURST_CONNECTIONS" -d"${BURST_SECONDS}s" --timeout 30s --latency -s "$WORK/login.lua" \
    "$BASE/api/v1/auth/login" >"$WORK/burst.wrk" &
burst_pid=$!
BG+=("$burst_pid")
sleep 1
wrk -t1 -c"$HEALTHZ_CONNECTIONS" -d"${DURATION}s" --latency "$BASE/healthz" >"$WORK/during.wrk"
wait "$burst_pid"
window_end
# When wrk stops it closes its connections: the server drops the logins in flight, which
# releases their hash permits while their argon2 runs go on. Wait a little so that VmHWM
# includes that.
sleep 1.5
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
cat "$WORK/during.wrk" "$WORK/burst.wrk" >&2
LABEL[during]="GET /healthz, during the login burst"
RPS[during]="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$WORK/during.wrk")"
P50[during]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$WORK/during.wrk")")"
P99[during]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$WORK/during.wrk")")"
ERRS[during]="$(awk '/Non-2xx|Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$WORK/during.wrk")"
OTHER[during]="$W_OTHER"
HWM[during]="$(kib VmHWM "$SERVER_PID")"
RSSMAX[during]="$(awk '$1 + 0 > m { m = $1 + 0 } END { print m + 0 }' "$WORK/burst.rss" 2>/dev/null || echo 0)"
BURST_RPS="$(awk '/^Requests\/sec:/ { printf "%.1f", $2 }' "$WORK/burst.wrk")"
BURST_P50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$WORK/burst.wrk")" | awk '{ printf "%.0f", $1 }')"
BURST_P99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$WORK/burst.wrk")" | awk '{ printf "%.0f", $1 }')"
BURST_STATUSES="$(awk '/^statuses:/ { sub(/^statuses: /, ""); print }' "$WORK/burst.wrk")"
BURST_ERRS="$(awk '/Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$WORK/burst.wrk")"
BURST_SERVER_CPU="$(awk -v s="$W_SERVER_S" -v w="$BURST_SECONDS" 'BEGIN { printf "%.0f", 100 * s / w }')"

# --- optional: perf profiles of the verify runs (not measured) ------------------------
RESULTS="$ROOT/benches/results"
mkdir -p "$RESULTS"
STAMP="$(date +%Y-%m-%d-%H%M%S)"
PERF_FILES=()
if [[ "$PERF" == 1 ]]; then
    for key in jwt apikey; do
        if [[ "$key" == jwt ]]; then header="Authorization: Bearer $TOKEN"; else header="X-API-Key: $API_KEY"; fi
        echo "== perf: $key" >&2
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$((DURATION + 2))s" -H "$header" "$BASE/api/v1/auth/verify" >/dev/null &
        BG+=("$!")
        sleep 1
        perf record -q -e cpu-clock -F 2000 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$WORK/$key.perf" \
            -- sleep "$((DURATION / 2 > 1 ? DURATION / 2 : 2))" >/dev/null 2>&1 || true
        wait "${BG[-1]}" || true
        # Self time by symbol, then inclusive time (callees included) of killkrill's own
        # functions, trailing padding removed.
        file="$RESULTS/auth-$STAMP-perf-$key.txt"
        {
            echo "# self time by symbol (perf report --no-children --sort symbol)"
            perf report -i "$WORK/$key.perf" --stdio --no-children --percent-limit 0.3 -g none \
                --sort symbol 2>/dev/null | grep -E '^ +[0-9]' || true
            echo
            echo "# inclusive time of killkrill:: functions (perf report --children --sort symbol)"
            perf report -i "$WORK/$key.perf" --stdio --children --percent-limit 0.3 -g none \
                --sort symbol 2>/dev/null | grep -E '^ +[0-9].*\] <?killkrill::' | grep -v 'killkrill::server::' || true
        } | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' >"$file"
        PERF_FILES+=("$file")
    done
fi

# --- report ------------------------------------------------------------------------
met() { awk -v v="$1" -v l="$2" -v op="$3" 'BEGIN { ok = (op == ">=" ? v >= l : v < l); print (ok ? "met" : "NOT met") }'; }
R_JWT="$(median "${RATIOS_JWT[@]}")"
R_KEY="$(median "${RATIOS_KEY[@]}")"
REPORT="$RESULTS/auth-$STAMP.md"
{
    echo "# Authentication benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- command: \`ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS WORKERS=$WORKERS LOGINS=$LOGINS HEALTHZ_CONNECTIONS=$HEALTHZ_CONNECTIONS BURST_CONNECTIONS=$BURST_CONNECTIONS PERF=$PERF BUILD=$BUILD bash benches/http/auth.sh\`"
    echo "- binary: target/release/killkrill built $(date -u -r "$OURS_BIN" +%Y-%m-%dT%H:%M:%SZ)$( [[ "$BUILD" == 0 ]] && echo ' (BUILD=0: not rebuilt by this run)')"
    echo "- $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }'); machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), wrk, curl and the server share them"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ has uncommitted changes)')"
    echo "- server: killkrill release, SQLite, development defaults, WORKERS=$WORKERS, stdout (one JSON line per request) to a file; start-up peak RSS (VmHWM) $(mb "$START_HWM") MB"
    echo "- server CPU µs/req: the server's CPU time (user+sys) during the run / requests served;"
    echo "  other CPU %: share of all CPUs used by anything but the server and the clients (should be ~0)"
    echo "- peak RSS: VmHWM, reset before each phase$( ((HWM_NOT_RESET)) && echo ' (reset FAILED: it includes earlier phases)'); for the burst it runs until 1.5 s after wrk stops (logins dropped at the disconnect)"
    echo
    echo "## 1. Verify vs /healthz, $CONNECTIONS connections (\`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency\`, ${WARMUP}s warm-up, $ROUNDS rounds)"
    echo
    echo "| request | req/s | / healthz | p50 ms | p99 ms | server CPU µs/req | peak RSS MB | other CPU % | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for key in "${KEYS[@]}"; do
        echo "| ${LABEL[$key]} | ${RPS[$key]} | $(ratio "${RPS[$key]}" "${RPS[healthz.${key#*.}]}") | ${P50[$key]} | ${P99[$key]} | ${CPU_US[$key]} | $(mb "${HWM[$key]}") | ${OTHER[$key]} | ${ERRS[$key]:-none} |"
    done
    echo
    echo "## 2. Sequential logins ($LOGINS \`curl\` POSTs, one at a time)"
    echo
    echo "| logins | p50 ms | p99 ms | min ms | max ms | mean ms | server CPU ms/login | peak RSS MB | other CPU % | statuses |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    echo "| $LOGINS | $LOGIN_P50 | $LOGIN_P99 | $LOGIN_MIN | $LOGIN_MAX | $LOGIN_MEAN | $LOGIN_CPU_MS | $(mb "$LOGIN_HWM") | $LOGIN_OTHER | $LOGIN_STATUSES|"
    echo
    echo "(nearest-rank percentiles of the 200s$( ((LOGINS < 100)) && echo "; with $LOGINS logins p99 is the maximum"))"
    echo
    echo "## 3. /healthz during a login burst (\`wrk -t1 -c$HEALTHZ_CONNECTIONS -d${DURATION}s --latency\`; burst: \`wrk -t1 -c$BURST_CONNECTIONS -d${BURST_SECONDS}s\` POST /api/v1/auth/login)"
    echo
    echo "| /healthz | req/s | p50 ms | p99 ms | peak RSS MB | max sampled VmRSS MB | other CPU % | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for key in quiet during; do
        echo "| ${LABEL[$key]} | ${RPS[$key]} | ${P50[$key]} | ${P99[$key]} | $(mb "${HWM[$key]}") | $( [[ -n "${RSSMAX[$key]:-}" ]] && mb "${RSSMAX[$key]}" || echo -) | ${OTHER[$key]} | ${ERRS[$key]:-none} |"
    done
    echo
    echo "- burst: **$BURST_RPS logins/s** over ${BURST_SECONDS}s with $BURST_CONNECTIONS concurrent; login p50 $BURST_P50 ms, p99 $BURST_P99 ms; statuses $BURST_STATUSES${BURST_ERRS:+; $BURST_ERRS}; server CPU (logins and /healthz) $BURST_SERVER_CPU % of one core over the burst"
    echo
    echo "## Goals"
    echo
    ((${#NOISY[@]} == 0)) || echo "- rounds left out of the medians (other CPU > $OTHER_MAX %): ${NOISY[*]}"
    echo "- verify (JWT) >= 80% of /healthz req/s, median of $ROUNDS rounds: $R_JWT (rounds: ${RATIOS_JWT[*]}) -> $(met "$R_JWT" 0.8 '>=')"
    echo "- verify (API key) >= 80% of /healthz req/s, median of $ROUNDS rounds: $R_KEY (rounds: ${RATIOS_KEY[*]}) -> $(met "$R_KEY" 0.8 '>=')"
    echo "- /healthz p99 < 10 ms during the login burst: ${P99[during]} ms (alone: ${P99[quiet]} ms) -> $(met "${P99[during]}" 10 '<')"
    if ((${#PERF_FILES[@]} > 0)); then
        echo
        echo "## perf (extra, unmeasured runs; self time by symbol)"
        for file in "${PERF_FILES[@]}"; do
            echo
            echo "$(basename "$file"): self time, top 20; inclusive time of killkrill:: functions, top 15"
            echo
            echo '```'
            awk '/^# self/ { s = 1; next } /^# incl/ { s = 0; print ""; i = 1; next }
                s && n++ < 20 { print } i && m++ < 15 { print }' "$file"
            echo '```'
        done
    fi
} | tee "$REPORT"
echo >&2
echo "auth.sh: written $REPORT" >&2

#!/usr/bin/env bash
# Load benchmark: `GET /healthz` of the release killkrill binary (SQLite) against a bare
# axum "hello" server (examples/bare_hello.rs) built from the same lockfile, with wrk,
# at 16 and 64 connections. See benches/README.md.
#
#   bash benches/http/run.sh
#
# Environment (all optional):
#   DURATION=10      seconds of each measured wrk run
#   WARMUP=2         seconds of the wrk warm-up before each measured run
#   CONNECTIONS="16 64"
#   THREADS=2        wrk threads
#   WORKERS=4        runtime worker threads of both servers (killkrill's default)
#   LOG_VARIANTS=1   also measure killkrill with stdout to /dev/null and with -v
#                    (warning level: no per-request log line), to price the logging
#   BUILD=1          0: skip the build and use the binaries as they are
#   OURS_BIN=...     killkrill binary to measure (target/release/killkrill), e.g. a copy
#                    of an earlier commit's, to compare two builds on one machine
#
# Only 127.0.0.1 is used. Both servers are killed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-16 64}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-4}"
LOG_VARIANTS="${LOG_VARIANTS:-0}"
export WORKERS

for value in "$DURATION" "$WARMUP" "$THREADS" "$WORKERS" $CONNECTIONS; do
    [[ "$value" =~ ^[0-9]+$ ]] || { echo "run.sh: not a number: $value" >&2; exit 2; }
done
((DURATION >= 1 && DURATION <= 600)) || { echo "run.sh: DURATION must be 1..600" >&2; exit 2; }
((WARMUP <= 60)) || { echo "run.sh: WARMUP must be 0..60" >&2; exit 2; }

# --- wrk ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
    echo "run.sh: installing wrk (apt-get install -y wrk)" >&2
    if ! $SUDO apt-get install -y wrk >&2; then
        $SUDO apt-get update >&2
        $SUDO apt-get install -y wrk >&2
    fi
fi

# --- build (one command, both binaries, same lockfile) -------------------------------
cd "$ROOT"
if [[ "${BUILD:-1}" != 0 ]]; then
    cargo build --release --bin killkrill --example bare_hello
fi
OURS_BIN="${OURS_BIN:-$ROOT/target/release/killkrill}"
BARE_BIN="$ROOT/target/release/examples/bare_hello"
for bin in "$OURS_BIN" "$BARE_BIN"; do
    [[ -x "$bin" ]] || { echo "run.sh: $bin is missing (run with BUILD=1)" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/killkrill-bench.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------------
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
    echo "run.sh: no free port found" >&2
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

# --- servers -----------------------------------------------------------------------
# Each server has a NAME (also its log file name), a PORT and a PID. Each runs in $WORK,
# so no .env of the repository is read.
NAMES=()
declare -A PORT PID LOGFILE

# start_server NAME STDOUT_FILE COMMAND...: @PORT@ in COMMAND becomes the port. A server
# that exits during start-up (e.g. the port was taken meanwhile) is retried on another port.
start_server() {
    local name="$1" out="$2" port attempt arg pid status
    shift 2
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        local command=()
        for arg in "$@"; do command+=("${arg//@PORT@/$port}"); done
        (cd "$WORK" && exec "${command[@]}" >"$out" 2>"$WORK/$name.err") &
        pid=$!
        PIDS+=("$pid")
        status=0
        wait_ready "$pid" "$port" || status=$?
        if ((status == 0)); then
            PID[$name]="$pid"
            PORT[$name]="$port"
            LOGFILE[$name]="$out"
            NAMES+=("$name")
            return 0
        fi
        ((status == 1)) || break
        echo "run.sh: $name exited during start-up (attempt $attempt, port $port)" >&2
    done
    echo "run.sh: $name did not answer 200 on /healthz; its stderr:" >&2
    tail -n 20 "$WORK/$name.err" >&2 || true
    exit 1
}

ours() { # NAME STDOUT_FILE EXTRA_ARGS...
    local name="$1" out="$2"
    shift 2
    DATABASE_URL="sqlite:///$WORK/$name.db" start_server "$name" "$out" \
        "$OURS_BIN" --host 127.0.0.1 --port @PORT@ --no-grpc "$@"
}

start_server bare "$WORK/bare.log" "$BARE_BIN" @PORT@

ours killkrill "$WORK/killkrill.log"
if [[ "$LOG_VARIANTS" == 1 ]]; then
    ours killkrill-devnull /dev/null
    ours killkrill-warn "$WORK/killkrill-warn.log" -v
fi

# --- runs --------------------------------------------------------------------------
# CPU accounting of each run: the server's own CPU time per request, and how much CPU
# other processes took (anything else running on the machine skews the figures).
CLK="$(getconf CLK_TCK)"
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }  # utime+stime
sys_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }  # busy total
declare -A RPS P50 P99 HWM RSSMAX ERRS CPU_US OTHER START_HWM
HWM_NOT_RESET=0
for n in $CONNECTIONS; do
    for name in "${NAMES[@]}"; do
        url="http://127.0.0.1:${PORT[$name]}/healthz"
        # Peak RSS "under load": start-up peaks are recorded, then VmHWM is reset (writing
        # 5 to clear_refs, Linux >= 4.0) so that it covers this warm-up and run only.
        [[ -n "${START_HWM[$name]:-}" ]] || START_HWM[$name]="$(kib VmHWM "${PID[$name]}")"
        echo 5 >"/proc/${PID[$name]}/clear_refs" 2>/dev/null || HWM_NOT_RESET=1
        if ((WARMUP > 0)); then
            wrk -t"$THREADS" -c"$n" -d"${WARMUP}s" "$url" >/dev/null
        fi
        # Sample VmRSS every 0.2 s while wrk runs (bounded by the run's length).
        (
            for _ in $(seq 1 $((DURATION * 5 + 10))); do
                kib VmRSS "${PID[$name]}" >>"$WORK/$name-$n.rss" 2>/dev/null || true
                sleep 0.2
            done
        ) &
        sampler=$!
        echo "== $name, $n connections: wrk -t$THREADS -c$n -d${DURATION}s --latency $url" >&2
        out="$WORK/$name-$n.wrk"
        server_before="$(proc_ticks "${PID[$name]}")"
        read -r busy_before total_before < <(sys_ticks)
        TIMEFORMAT='%U %S'
        { time wrk -t"$THREADS" -c"$n" -d"${DURATION}s" --latency "$url" >"$out"; } 2>"$out.time"
        read -r busy_after total_after < <(sys_ticks)
        server_after="$(proc_ticks "${PID[$name]}")"
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        cat "$out" >&2
        requests="$(awk '/requests in/ { print $1 }' "$out")"
        CPU_US[$name-$n]="$(awk -v s=$((server_after - server_before)) -v c="$CLK" -v r="$requests" \
            'BEGIN { printf "%.1f", (r > 0 ? s / c * 1e6 / r : 0) }')"
        OTHER[$name-$n]="$(tail -n1 "$out.time" | awk -v b=$((busy_after - busy_before)) \
            -v t=$((total_after - total_before)) -v s=$((server_after - server_before)) -v c="$CLK" \
            '{ o = b / c - s / c - ($1 + $2); if (o < 0) o = 0; printf "%.0f", (t > 0 ? 100 * o * c / t : 0) }')"
        RPS[$name-$n]="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")"
        P50[$name-$n]="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
        P99[$name-$n]="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
        ERRS[$name-$n]="$(awk '/Non-2xx|Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$out")"
        HWM[$name-$n]="$(kib VmHWM "${PID[$name]}")"
        RSSMAX[$name-$n]="$(awk '$1 + 0 > m { m = $1 + 0 } END { print m + 0 }' "$WORK/$name-$n.rss" 2>/dev/null || echo 0)"
    done
done

# --- report ------------------------------------------------------------------------
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }

RESULTS="$ROOT/benches/results"
mkdir -p "$RESULTS"
REPORT="$RESULTS/healthz-$(date +%Y-%m-%d-%H%M%S).md"
{
    echo "# GET /healthz load benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- command: \`DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=\"$CONNECTIONS\" THREADS=$THREADS WORKERS=$WORKERS LOG_VARIANTS=$LOG_VARIANTS bash benches/http/run.sh\`"
    echo "- wrk: \`wrk -t$THREADS -c<N> -d${DURATION}s --latency\` after a ${WARMUP}s warm-up; $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }')"
    echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), wrk and the servers share them"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ has uncommitted changes)')"
    echo "- peak RSS: VmHWM, reset before each warm-up + run$( ((HWM_NOT_RESET)) && echo ' (reset FAILED: it includes start-up and earlier runs)');"
    echo "  VmHWM from start to the first run (start-up peak): $(for name in "${NAMES[@]}"; do printf '%s %s MB; ' "$name" "$(mb "${START_HWM[$name]}")"; done)"
    echo "- server CPU µs/req: the server's CPU time (user+sys) during the run / requests served;"
    echo "  other CPU %: share of all CPUs used by anything but that server and wrk (should be ~0)"
    echo "- servers: WORKERS=$WORKERS; killkrill on SQLite, stdout (one JSON line per request) to a file"
    echo
    echo "| server | connections | req/s | p50 ms | p99 ms | peak RSS MB | max sampled VmRSS MB | server CPU µs/req | other CPU % | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for n in $CONNECTIONS; do
        for name in "${NAMES[@]}"; do
            k="$name-$n"
            echo "| $name | $n | ${RPS[$k]} | ${P50[$k]} | ${P99[$k]} | $(mb "${HWM[$k]}") | $(mb "${RSSMAX[$k]}") | ${CPU_US[$k]} | ${OTHER[$k]} | ${ERRS[$k]:-none} |"
        done
    done
    echo
    for n in $CONNECTIONS; do
        for name in "${NAMES[@]}"; do
            [[ "$name" == bare ]] && continue
            echo "- $n connections: $name / bare req/s = $(ratio "${RPS[$name-$n]}" "${RPS[bare-$n]}")"
        done
    done
    log_bytes="$(stat -c %s "${LOGFILE[killkrill]}")"
    log_lines="$(wc -l <"${LOGFILE[killkrill]}")"
    echo "- killkrill stdout log after all runs: $log_lines lines, $(mb $((log_bytes / 1024))) MB"
    if [[ " $CONNECTIONS " == *" 64 "* ]]; then
        r="$(ratio "${RPS[killkrill-64]}" "${RPS[bare-64]}")"
        echo
        echo "Goals at 64 connections (killkrill, logging to a file):"
        echo "- req/s >= 90% of bare: $r -> $(awk -v r="$r" 'BEGIN { print (r >= 0.9 ? "met" : "NOT met") }')"
        echo "- p99 < 5 ms: ${P99[killkrill-64]} ms -> $(awk -v p="${P99[killkrill-64]}" 'BEGIN { print (p < 5 ? "met" : "NOT met") }')"
        echo "- RSS < 30 MB: $(mb "${HWM[killkrill-64]}") MB -> $(awk -v k="${HWM[killkrill-64]}" 'BEGIN { print (k < 30 * 1024 ? "met" : "NOT met") }')"
    fi
} | tee "$REPORT"
echo >&2
echo "run.sh: written $REPORT" >&2

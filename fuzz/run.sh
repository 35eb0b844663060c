#!/usr/bin/env bash
# Builds every fuzz target and runs each, one after the other, for FUZZ_SECONDS (default
# 60). Not part of CI. Usage: fuzz/run.sh [target...] (default: all of `cargo fuzz list`).
#
# Each target reads seeds/<target> (real inputs, and the reproducers of crashes fixed)
# and grows corpus/<target>; a crash, panic, timeout (FUZZ_TIMEOUT seconds for one input,
# default 10) or an input using more than FUZZ_RSS_MB (default 2048) leaves its input in
# artifacts/<target>/. Prints, per target: runs, execs/s, coverage (edges), crashes.
# Exits 1 if any target crashed. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take the nightly flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
max_len=${FUZZ_MAX_LEN:-65536}
# No sanitizer: the code under test is safe Rust, and ASan would slow the build and every
# run; debug assertions (-a) make integer overflows panic, as they would in a debug build.
build_flags=(-s none -a)

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
cargo fuzz build "${build_flags[@]}"

failed=0
printf '%-16s %12s %10s %8s %8s\n' target runs execs/s cov crashes > summary.txt
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="artifacts/$target.log"
    status=0
    cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" -max_len="$max_len" \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$(( $(find "artifacts/$target" -type f | wc -l) - before ))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    if [ "$crashes" -gt 0 ]; then
        failed=1
        grep -m1 -E "panicked at|ERROR: libFuzzer|Test unit written" "$log" || true
    fi
    printf '%-16s %12s %10s %8s %8s\n' "$target" "${runs:-?}" "${speed:-?}" "${cov:-?}" "$crashes" | tee -a summary.txt
done
cat summary.txt
if [ "$failed" -ne 0 ]; then
    echo "crashes: see artifacts/<target>/ and artifacts/<target>.log" >&2
    exit 1
fi

#!/usr/bin/env bash
# Measures every fuzz target the way reports/bench/fuzz.md does: each target runs for SECS
# (default 300) on one core from a fresh copy of its checked-in corpus, two at a time, and
# libFuzzer's final line (exec/s, cov, ft) is printed per target.
#   fuzz/bench.sh [SECS]          (after `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O -s none`)
# The speed figures are for the documented default, `-s none` (coverage and comparison
# tracing, no AddressSanitizer); an ASan build (`cargo fuzz build -O`) measures the same way.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
bin=target/x86_64-unknown-linux-gnu/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
    cp -r "../corpus/$1" "$work/c-$1"
    "$bin/$1" "$work/c-$1" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$work/crash-$1-" >"$work/$1.log" 2>&1 || true
}
run btree_ops & run image_bytes & wait
run space_map_ops & run xml_restore & wait
run sim
for t in btree_ops image_bytes space_map_ops xml_restore sim; do
    line=$(grep -E '^#[0-9]+.*(DONE|NEW|REDUCE|pulse)' "$work/$t.log" | tail -1)
    found=$(ls "$work"/crash-"$t"-* 2>/dev/null | head -1 || true)
    echo "$t: $line${found:+ (crashed: $found)}"
done

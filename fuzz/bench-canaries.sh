#!/usr/bin/env bash
# Time for the `sim` target to find each engine canary, from the checked-in corpus without its
# canary-* files and from an empty corpus (CAP seconds each, default 90), two runs at a time.
#   fuzz/bench-canaries.sh [CAP]  (builds the canary fuzz binary into target/canary first)
# SANITIZER=address measures an ASan build; the default is `none`, the documented default for
# campaigns (coverage and comparison tracing, no sanitizer).
set -euo pipefail
cd "$(dirname "$0")"
cap=${1:-90}
san=${SANITIZER:-none}
RUSTC_BOOTSTRAP=1 cargo fuzz build -O -s "$san" --features canary --target-dir "target/canary-$san" sim
bin=target/canary-$san/x86_64-unknown-linux-gnu/release/sim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
one() {
    local c=$1 start=$2 d="$work/$2-$1"
    mkdir -p "$d"
    if [ "$start" = corpus ]; then
        cp ../corpus/sim/* "$d/" && rm -f "$d"/canary-*
    fi
    local t0 t1
    t0=$(date +%s.%N)
    THINSIM_CANARY=$c "$bin" "$d" -max_total_time="$cap" -artifact_prefix="$d-crash-" \
        >"$d.log" 2>&1 || true
    t1=$(date +%s.%N)
    if ls "$d"-crash-* >/dev/null 2>&1; then
        printf '%s %s found in %.1f s\n' "$c" "$start" "$(echo "$t1 - $t0" | bc)"
    else
        printf '%s %s NOT FOUND in %s s\n' "$c" "$start" "$cap"
    fi
}
for c in superblock_before_nodes no_flush_before_superblock reuse_freed_in_transaction \
    no_inc_on_shared_shadow abort_keeps_records skip_data_dec_on_remove \
    no_lower_key_on_new_min redistribute_keeps_parent_key; do
    one "$c" corpus & one "$c" empty & wait
done

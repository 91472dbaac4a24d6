#!/bin/sh
# dm-thin: out of data space, an empty flush fails when the thin device's block 0 is unmapped.
# A standalone reproducer: dmsetup and dd only, no thinsim. Runs as root on any Linux with
# dm-thin-pool, on two scratch block devices, or as init of a bare user-mode Linux guest
# (see run-in-uml.sh beside it, which passes META=/dev/ubda DATA=/dev/ubdb OUT=<dir>).
#
#   META=/dev/XXX DATA=/dev/YYY OUT=/tmp/out sh flush-enospc.sh
#
# META needs 4 MiB, DATA 3 MiB (48 blocks of 64 KiB). Both are overwritten.
# Prints one "CASE <name>: <result>" line per case, and saves the metadata image of the
# error_if_no_space pool, out of data space, to $OUT/flush-enospc-meta.img.
#
# Cases:
#   flush-block0-unmapped   error_if_no_space, pool full: fsync of a device whose block 0 is
#                           unmapped (it wrote nothing that needs a block) -> ENOSPC
#   flush-block0-mapped     the control, same pool and moment: a device whose block 0 is
#                           mapped -> ok
#   dsync-write             O_DSYNC overwrite of an already mapped block (no allocation) on a
#                           device whose block 0 is unmapped: dd reports ENOSPC, yet the data
#                           is on disk (read back) and the device's metadata committed
#   queue-mode-flush        the same flush on a pool without error_if_no_space: it waits for
#                           no_space_timeout (set to $TIMEOUT s here; 60 by default) and then
#                           fails with ENOSPC
set -u
: "${META:?META=<metadata block device>}" "${DATA:?DATA=<data block device>}"
OUT=${OUT:-/tmp}
TIMEOUT=${TIMEOUT:-5}
BLOCK=128                 # sectors: 64 KiB data blocks
NBLOCKS=48
VSECTORS=524288           # 256 MiB thin devices

log() { echo "$*"; [ -n "${RESULTS:-}" ] && echo "$*" >> "$RESULTS"; }
# One case's result: ok, or the error dd printed.
run() {
    if out=$("$@" 2>&1); then echo ok; return; fi
    why=$(echo "$out" | grep -m1 -o 'No space left on device\|Input/output error') || why=$(echo "$out" | tail -n 1)
    echo "failed: $why"
}

modprobe dm-thin-pool 2>/dev/null || true
dmsetup targets | grep -q '^thin-pool ' || { log "FATAL no thin-pool target"; exit 1; }
log "KERNEL $(uname -r)"

pool() {  # $1: feature args
    dd if=/dev/zero of="$META" bs=4096 count=1 oflag=direct status=none
    dmsetup create pool --table "0 $((NBLOCKS * BLOCK)) thin-pool $META $DATA $BLOCK 0 $1" || { log "FATAL create pool"; exit 1; }
    for id in 0 1 2 3; do
        dmsetup message pool 0 "create_thin $id" && dmsetup create "thin$id" --table "0 $VSECTORS thin /dev/mapper/pool $id" || { log "FATAL thin$id"; exit 1; }
    done
    dmsetup mknodes
    # thin2: block 0 mapped (the control). thin3: block 5 mapped, block 0 not.
    dd if=/dev/zero of=/dev/mapper/thin2 bs=64k count=1 oflag=direct status=none
    dd if=/dev/zero of=/dev/mapper/thin3 bs=64k seek=5 count=1 oflag=direct status=none
    sync
    # Fill the rest of the pool from thin0 (it fails with ENOSPC when the pool is full).
    dd if=/dev/zero of=/dev/mapper/thin0 bs=64k seek=1 count=$NBLOCKS oflag=direct status=none 2>/dev/null
    log "STATUS $(dmsetup status pool)"
}

teardown() {
    for id in 0 1 2 3; do dmsetup remove "thin$id"; done
    dmsetup remove pool
}

# 1. error_if_no_space.
pool "2 skip_block_zeroing error_if_no_space"
log "CASE flush-block0-unmapped: $(run dd if=/dev/null of=/dev/mapper/thin1 bs=4k count=0 conv=fsync status=none)"
log "CASE flush-block0-mapped: $(run dd if=/dev/null of=/dev/mapper/thin2 bs=4k count=0 conv=fsync status=none)"
tid_before=$(dmsetup status pool | awk '{print $4}')
printf 'thinsim-dsync-%s' "$(date +%s)" > "$OUT/pattern"
log "CASE dsync-write: $(run dd if="$OUT/pattern" of=/dev/mapper/thin3 bs=64k seek=5 count=1 oflag=dsync,direct iflag=fullblock conv=sync status=none)"
back=$(dd if=/dev/mapper/thin3 bs=64k skip=5 count=1 iflag=direct status=none | head -c "$(wc -c < "$OUT/pattern")")
log "CASE dsync-write-data-on-disk: $([ "$back" = "$(cat "$OUT/pattern")" ] && echo yes || echo no)"
log "STATUS $(dmsetup status pool)"
teardown
dd if="$META" of="$OUT/flush-enospc-meta.img" bs=4096 count=1024 status=none conv=sparse
log "SAVED $OUT/flush-enospc-meta.img (the pool out of data space; thin1's block 0 unmapped; transaction id $tid_before)"

# 2. The default mode: queue when out of data space, for no_space_timeout.
echo "$TIMEOUT" > /sys/module/dm_thin_pool/parameters/no_space_timeout
pool "1 skip_block_zeroing"
# The fill above already waited out the timeout (its last write queued, then failed), and
# from then on the pool fails at once, as with error_if_no_space, until it resumes: a
# resume queues again, with a fresh timeout.
log "STATUS after the fill $(dmsetup status pool)"
dmsetup suspend pool && dmsetup resume pool
log "STATUS after a resume $(dmsetup status pool)"
t0=$(date +%s)
r=$(run dd if=/dev/null of=/dev/mapper/thin1 bs=4k count=0 conv=fsync status=none)
log "CASE queue-mode-flush: $r after $(( $(date +%s) - t0 )) s (no_space_timeout $TIMEOUT s)"
log "CASE queue-mode-flush-block0-mapped: $(run dd if=/dev/null of=/dev/mapper/thin2 bs=4k count=0 conv=fsync status=none)"
teardown
log "END"

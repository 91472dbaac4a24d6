#!/bin/sh
# dm-thin: a pool that runs out of metadata space while provisioning buffered writes goes to
# fail mode (with skip_block_zeroing) or leaks a data block in its committed metadata (with
# block zeroing), where the out-of-metadata-space design promises a read-only pool and no
# aborted transaction. A standalone reproducer: dmsetup and dd only, no thinsim. Runs as
# root on any Linux with dm-thin-pool, on two scratch block devices, or as init of a bare
# user-mode Linux guest (run-in-uml.sh beside it, with DATA_SIZE=80M).
#
#   META=/dev/XXX DATA=/dev/YYY OUT=/tmp/out sh ooms-provision.sh
#
# META needs 4 MiB, DATA 80 MiB (1,280 blocks of 64 KiB). The pool's metadata device is
# `smeta`, the first 1 MiB of META (256 blocks: a reserve of 25), grown to all 4 MiB at the
# end of each case. Both are overwritten. Prints one "CASE <name>: <result>" line per fact, and saves
# each case's metadata, taken out after the pool was removed, to $OUT/ooms-<case>-meta.img.
#
# Each case fills the metadata with create_thin messages (each commits) until the status
# shows at most three blocks left above the reserve, then writes 1,000 whole blocks to an
# empty thin device with one O_DIRECT dd. The mapping inserts use up the last block; the
# next allocation finds the reported free metadata at 0, commits (the commit includes that
# allocation) and the commit switches the pool to out-of-metadata-space, read-only.
#   fail-mode        skip_block_zeroing: the bio's mapping is inserted at once, on metadata
#                    that is now read-only: the insert fails (EPERM), the target aborts, the
#                    abort cannot lock the superblock, and the pool goes to fail mode. The
#                    pool status says Fail; growing the metadata is refused until repaired.
#   leak             block zeroing on: the mapping waits for the zeroing, and the read-only
#                    mode's handler fails the bio without freeing the block: the pool counts
#                    one more data block used than its only device maps, committed; growing
#                    the metadata brings the pool back to write mode with the block leaked.
#   dsync-control    the same fill with O_DSYNC writes: each write commits, the commit after
#                    the last block switches the pool to read-only, the next write fails
#                    with EIO; no leak, no fail mode (what the design intends).
set -u
: "${META:?META=<metadata block device>}" "${DATA:?DATA=<data block device>}"
OUT=${OUT:-/tmp}
BLOCK=128                                   # sectors: 64 KiB data blocks
NBLOCKS=$(( $(blockdev --getsz "$DATA") / BLOCK ))
VSECTORS=$((1000 * BLOCK))

log() { echo "$*"; [ -n "${RESULTS:-}" ] && echo "$*" >> "$RESULTS"; }
run() {
    if out=$("$@" 2>&1); then echo ok; return; fi
    why=$(echo "$out" | grep -m1 -o 'No space left on device\|Input/output error') || why=$(echo "$out" | tail -n 1)
    echo "failed: $why"
}
field() { dmsetup status pool | awk -v f="$1" '{print $f}'; }   # 5: metadata, 6: data, 8: mode

modprobe dm-thin-pool 2>/dev/null || true
dmsetup targets | grep -q '^thin-pool ' || { log "FATAL no thin-pool target"; exit 1; }
[ "$NBLOCKS" -ge 1100 ] || { log "FATAL DATA holds $NBLOCKS blocks of 64 KiB; 1,100 needed"; exit 1; }
log "KERNEL $(uname -r)"

# $1: case name, $2: feature args, $3: dd's oflag
case_run() {
    dd if=/dev/zero of="$META" bs=4096 count=1 oflag=direct status=none
    dmsetup create smeta --table "0 2048 linear $META 0" || { log "FATAL create smeta"; exit 1; }
    dmsetup create pool --table "0 $((NBLOCKS * BLOCK)) thin-pool /dev/mapper/smeta $DATA $BLOCK 0 $2" || { log "FATAL create pool"; exit 1; }
    dmsetup message pool 0 "create_thin 0" && dmsetup create thin0 --table "0 $VSECTORS thin /dev/mapper/pool 0" || { log "FATAL thin0"; exit 1; }
    dmsetup mknodes
    # Fill: devices 1, 2, ... (each at least one metadata block, more when a leaf of the
    # device trees splits), in batches that stay short of the reserve, until at most three
    # blocks are left above it.
    next=1
    while :; do
        m=$(field 5); left=$(( ${m#*/} - ${m%/*} ))
        [ "$left" -le 3 ] && break
        n=$(( left > 12 ? left - 8 : 1 ))
        while [ "$n" -gt 0 ]; do
            dmsetup message pool 0 "create_thin $next" || { log "FATAL create_thin $next"; exit 1; }
            next=$((next + 1)); n=$((n - 1))
        done
    done
    log "STATUS $1 before $(dmsetup status pool)"
    log "CASE $1-write: $(run dd if=/dev/zero of=/dev/mapper/thin0 bs=64k count=1000 oflag="$3" status=none)"
    st=$(dmsetup status pool)
    log "STATUS $1 after $st"
    mode=$(echo "$st" | awk '{ print ($4 == "Fail") ? "Fail" : $8 }')
    log "CASE $1-mode: $mode"
    if [ "$mode" != Fail ]; then
        used=$(field 6); used=${used%/*}
        mapped=$(( $(dmsetup status thin0 | awk '{print $4}') / BLOCK ))
        log "CASE $1-data-blocks-used-but-unmapped: $((used - mapped)) (pool uses $used, thin0 maps $mapped, no other device maps any)"
    fi
    # Growing the metadata device is the documented way out of out-of-metadata-space.
    dmsetup suspend pool && dmsetup reload smeta --table "0 8192 linear $META 0" \
        && dmsetup resume smeta && dmsetup resume pool
    log "STATUS $1 after growing the metadata to 1,024 blocks $(dmsetup status pool)"
    dmsetup remove thin0
    dmsetup remove pool
    dmsetup remove smeta
    dd if="$META" of="$OUT/ooms-$1-meta.img" bs=4096 count=1024 status=none conv=sparse
    log "SAVED $OUT/ooms-$1-meta.img"
}

case_run fail-mode "1 skip_block_zeroing" direct
case_run leak "0" direct
case_run dsync-control "1 skip_block_zeroing" direct,dsync
log "END"

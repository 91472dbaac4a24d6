#!/bin/sh
# dm-thin: reserve_metadata_snap writes the superblock's held root outside the commit protocol.
# A standalone reproducer: dmsetup, dd, od and awk, no thinsim. Runs as root on any Linux with
# dm-thin-pool and dm-log-writes on three scratch block devices, or as init of a bare
# user-mode Linux guest with run-in-uml.sh beside it (META=/dev/ubda DATA=/dev/ubdb
# LOG=/dev/ubdc).
#
#   META=/dev/XXX DATA=/dev/YYY LOG=/dev/ZZZ OUT=/tmp/out sh held-root.sh
#
# META needs 4 MiB, DATA 3 MiB, LOG 64 MiB; all are overwritten. The metadata device is logged
# by dm-log-writes, so the log holds every metadata write in the order it completed, with its
# flushes. After reserve_metadata_snap the script reads the log: if the superblock was written
# inside the commit's pre-commit epoch (before the flush that makes the held copy durable),
# it cuts the crash image in which that superblock landed and the rest of the epoch did not
# (a power loss may keep any subset of an epoch's writes), saves it as
# $OUT/held-root-crash.img (thin_check it on the host: it finds the held copy unwritten).
#
# Prints "CASE superblock-in-pre-commit-epoch: yes|no" (yes: the defect; 6.1.176 and older),
# and "CASE crash-image-names-unwritten-held-root: yes|no".
set -u
: "${META:?}" "${DATA:?}" "${LOG:?}"
OUT=${OUT:-/tmp}
log() { echo "$*"; [ -n "${RESULTS:-}" ] && echo "$*" >> "$RESULTS"; }
modprobe dm-thin-pool 2>/dev/null; modprobe dm-log-writes 2>/dev/null
for t in thin-pool log-writes; do
    dmsetup targets | grep -q "^$t " || { log "FATAL no $t target"; exit 1; }
done
log "KERNEL $(uname -r)"

dd if=/dev/zero of="$META" bs=1M count=4 oflag=direct status=none
dd if=/dev/zero of="$LOG" bs=1M count=1 oflag=direct status=none
msectors=8192
dmsetup create logged --table "0 $msectors log-writes $META $LOG" || { log "FATAL log-writes"; exit 1; }
dmsetup create pool --table "0 6144 thin-pool /dev/mapper/logged $DATA 128 0 1 skip_block_zeroing" || { log "FATAL pool"; exit 1; }
dmsetup message pool 0 "create_thin 0" && dmsetup create thin0 --table "0 524288 thin /dev/mapper/pool 0" || { log "FATAL thin0"; exit 1; }
dmsetup mknodes
dd if=/dev/zero of=/dev/mapper/thin0 bs=64k count=8 oflag=direct conv=fsync status=none
dmsetup message logged 0 mark reserve
dmsetup message pool 0 reserve_metadata_snap || { log "FATAL reserve_metadata_snap"; exit 1; }
dmsetup message logged 0 mark reserved
dmsetup remove thin0; dmsetup remove pool; dmsetup remove logged   # the last removal counts every entry

# The log: a super block (sector size at byte 24), then entries from block 1 on: sector,
# nr_sectors, flags, data_len (u64 each; flags 1 flush, 2 fua, 4 discard, 8 mark), then the
# data blocks (none for a discard or a mark). A mark's text follows its 32 header bytes.
u64() { od -An -tu8 -j "$1" -N 8 "$LOG" | tr -d ' '; }
bs=$(od -An -tu4 -j 24 -N 4 "$LOG" | tr -d ' ')
n=$(u64 16)
at=$bs; i=0
: > "$OUT/entries"
while [ "$i" -lt "$n" ]; do
    sector=$(u64 "$at"); nr=$(u64 $((at + 8))); flags=$(u64 $((at + 16))); len=$(u64 $((at + 24)))
    text=
    [ $((flags & 8)) -ne 0 ] && text=$(dd if="$LOG" bs=1 skip=$((at + 32)) count="$len" status=none)
    echo "$i $at $sector $nr $flags $text" >> "$OUT/entries"
    if [ $((flags & 4)) -ne 0 ] || [ $((flags & 8)) -ne 0 ]; then at=$((at + bs)); else at=$((at + bs * (1 + nr))); fi
    i=$((i + 1))
done
# Epochs: an entry with the flush flag starts a new one (a flush with data flushes before
# its data). The defect: after the "reserve" mark, an epoch holding the superblock write
# (sector 0) and other writes, so the superblock is not ordered after them. With the fix
# the superblock is written alone, after the flush that follows the other writes.
awk '{ if ($5 % 2 == 1) e++; print $0, "epoch=" e }' "$OUT/entries" > "$OUT/epochs"
found=$(awk '
    $6 == "reserve" { on = 1; next }
    !on || $4 == 0 || $5 % 8 >= 4 { next }
    { split($NF, a, "="); if ($3 == 0) sb[a[2]] = $1; else other[a[2]] = 1 }
    END { for (e in sb) if (e in other) { print e, sb[e]; exit } }
' "$OUT/epochs")
if [ -z "$found" ]; then
    log "CASE superblock-in-pre-commit-epoch: no"
    log "END"
    exit 0
fi
set -- $found
epoch=$1 sbentry=$2
log "CASE superblock-in-pre-commit-epoch: yes (log entry $sbentry, with other writes before their flush)"
# The crash image: every write of the earlier epochs, then only that superblock write.
img="$OUT/held-root-crash.img"
dd if=/dev/zero of="$img" bs=1M count=4 status=none
awk -v epoch="$epoch" -v sb="$sbentry" '
    { split($NF, a, "=") }
    (a[2] + 0 < epoch + 0 || $1 == sb) && $4 > 0 && $5 % 8 < 4 { print $2, $3, $4 }
' "$OUT/epochs" | while read -r off sector nr; do
    dd if="$LOG" of="$img" bs="$bs" skip=$((off / bs + 1)) seek="$sector" count="$nr" conv=notrunc status=none
done
held=$(od -An -tu8 -j 56 -N 8 "$img" | tr -d ' ')   # the superblock's held_root field
log "CASE crash-image-names-unwritten-held-root: $([ "$held" -ne 0 ] && echo "yes (held root $held)" || echo no)"
# thin_check opens with O_DIRECT, which hostfs refuses: check the image on the host, where
# it answers "bad checksum in superblock" for the held copy the superblock names.
log "SAVED $img (check it: thin_check $img)"
log "END"

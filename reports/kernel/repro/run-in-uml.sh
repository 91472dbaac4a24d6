#!/bin/sh
# Runs a reproducer of this directory as init of a bare user-mode Linux guest: no thinsim,
# no root filesystem of its own (the host's / is mounted read-write through hostfs, as
# `thinsim kernel` does), two sparse scratch files as its block devices.
#
#   run-in-uml.sh SCRIPT OUT [LINUX [MODULES]]
#
# SCRIPT  a reproducer here (flush-enospc.sh, held-root.sh)
# OUT     a directory for its results file, console log and saved image
# LINUX   the UML kernel (default: Debian's linux.uml; on a host with AMX, the one that
#         sim/kernel/build-uml.sh built, ~/.cache/thinsim/uml-<release>/linux)
# MODULES its modules directory (default: /usr/lib/uml/modules/<release>, or modules/<release>
#         beside a built kernel)
#
# DATA_SIZE in the environment sizes the data device (default 3M; ooms-provision.sh needs 80M).
# Needs: apt-get install user-mode-linux dmsetup kmod. Prints the results file.
set -eu
script=$(readlink -f "$1")
out=$(mkdir -p "$2" && readlink -f "$2")
linux=${3:-linux.uml}
release=$("$linux" --version 2>/dev/null | head -n 1)
modules=${4:-}
if [ -z "$modules" ]; then
    if [ -d "$(dirname "$(readlink -f "$(command -v "$linux")")")/modules/$release" ]; then
        modules="$(dirname "$(readlink -f "$(command -v "$linux")")")/modules/$release"
    else
        modules=/usr/lib/uml/modules/$release
    fi
fi
truncate -s 4M "$out/meta.img"
truncate -s "${DATA_SIZE:-3M}" "$out/data.img"
truncate -s 64M "$out/log.img"
: > "$out/results"
cat > "$out/init.sh" <<EOF
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
mount -t proc proc /proc; mount -t sysfs sys /sys
awk '\$2 == "/dev" && \$3 == "devtmpfs" { f = 1 } END { exit !f }' /proc/mounts || mount -t devtmpfs dev /dev
[ -b /dev/ubda ] || { echo "FATAL no /dev/ubda: not the guest's devtmpfs" >> "$out/results"; poweroff -f; }
for t in dm-thin-pool dm-log-writes; do
    for m in \$(awk -v m="kernel/drivers/md/\$t.ko:" '\$1 == m { for (i = NF; i > 1; i--) print \$i }' "$modules/modules.dep") kernel/drivers/md/\$t.ko; do
        insmod "$modules/\$m" 2>/dev/null
    done
done
META=/dev/ubda DATA=/dev/ubdb LOG=/dev/ubdc OUT="$out" RESULTS="$out/results" sh "$script" > "$out/script.log" 2>&1
sync
poweroff -f
EOF
chmod +x "$out/init.sh"
"$linux" mem=256M root=/dev/root rootfstype=hostfs rootflags=/ rw init="$out/init.sh" \
    ubd0="$out/meta.img" ubd1="$out/data.img" ubd2="$out/log.img" con=null con0=null,fd:2 2> "$out/console.log" || true
rm -f "$out/data.img" "$out/meta.img" "$out/log.img"
cat "$out/results"

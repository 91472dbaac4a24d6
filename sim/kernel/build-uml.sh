#!/usr/bin/env bash
# Builds a user-mode Linux kernel for `thinsim kernel` from one of Debian's kernel source
# packages and caches it outside the clone, so a machine builds it once:
#
#   sim/kernel/build-uml.sh [--source linux-source-6.12] [--cache DIR] [--jobs N] [--print-dir]
#
# Result: DIR/uml-<release>/linux (the kernel) and DIR/uml-<release>/modules/<release>/ (its
# modules: dm-thin-pool, dm-log-writes, dm-flakey, dm-dust and what they need), where DIR is
# $THINSIM_CACHE or ${XDG_CACHE_HOME:-~/.cache}/thinsim. `thinsim kernel` and the kernel test
# look there first. A second call with the same source and recipe finds the stamp and only
# prints the directory.
#
# Why a build at all: Debian's user-mode-linux 6.1 keeps the host's XSAVE state in a buffer
# of a fixed 2,696 bytes and hands exactly that many to PTRACE_SETREGSET; a host whose XSAVE
# area is larger (AMX: about 11 KB) refuses it with EFAULT and the guest panics at init
# ("ptrace set fp regs failed, errno = 14"). 6.12's UML still has the fixed size, so the
# recipe below gives the buffer room for any current host and sizes each transfer by what
# the host reported when UML probed it at boot (the larger buffer lives in thread_info and in
# signal frames, so the kernel stacks are made larger too).
set -euo pipefail

source_pkg=linux-source-6.12
cache="${THINSIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinsim}"
jobs=$(nproc)
print_dir=0
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_pkg="$2"; shift 2 ;;
        --cache) cache="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --print-dir) print_dir=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "build-uml.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { [ "$print_dir" = 1 ] && echo "$*" >&2 || echo "$*"; }

# The recipe's revision: bump it whenever the edits or the configuration below change, so a
# cached kernel built from an older recipe is rebuilt.
recipe=thinsim2

# A kernel built before from the same source package and recipe is used as it is (the
# package need not even be installed any more).
for stamp in "$cache"/uml-*-"$recipe"/stamp; do
    [ -f "$stamp" ] || continue
    dir=$(dirname "$stamp")
    if grep -q "^source $source_pkg " "$stamp" && grep -qx "recipe $recipe" "$stamp" && [ -x "$dir/linux" ]; then
        say "cached: $dir"
        [ "$print_dir" = 1 ] && echo "$dir"
        exit 0
    fi
done

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v flex >/dev/null || need+=(flex)
command -v bison >/dev/null || need+=(bison)
command -v bc >/dev/null || need+=(bc)
command -v xz >/dev/null || need+=(xz-utils)
command -v perl >/dev/null || need+=(perl)
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
tarball=$(ls /usr/src/"$source_pkg".tar.xz 2>/dev/null || true)
[ -n "$tarball" ] || need+=("$source_pkg")
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" libc6-dev >/dev/null
fi
tarball=/usr/src/"$source_pkg".tar.xz
[ -f "$tarball" ] || { echo "build-uml.sh: $tarball is missing after installing $source_pkg" >&2; exit 1; }

# The Debian package's upstream version names the build (e.g. 6.12.118).
pkg_version=$(dpkg-query -W -f='${Version}' "$source_pkg" 2>/dev/null || echo unknown)
upstream=${pkg_version%%-*}
name="uml-$upstream-$recipe"
out="$cache/$name"
if [ -f "$out/stamp" ] && [ -x "$out/linux" ]; then
    say "cached: $out"
    [ "$print_dir" = 1 ] && echo "$out"
    exit 0
fi

start=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "extracting $tarball"
# The whole tree but the selftests (Kconfig reads every arch and Documentation/Kconfig).
tar -xJf "$tarball" -C "$work" --strip-components=1 --exclude='*/tools/testing'
cd "$work"

# The edit, made by pattern and checked: each one must match exactly as often as expected,
# so a source that moved on fails here, loudly, instead of building a kernel that still
# panics on a large-XSAVE host.
edit() { # file, expected matches, perl substitution
    local file=$1 want=$2 expr=$3 got
    got=$(perl -0777 -ne "print scalar($expr) || 0" "$file")
    [ "$got" = "$want" ] || { echo "build-uml.sh: $file: expected $want match(es), found $got" >&2; exit 1; }
    perl -0777 -pi -e "$expr" "$file"
}
# Room for any current host's XSAVE area (AMX hosts: about 11 KB; the buffer was 2,696 B).
edit arch/x86/um/user-offsets.c 1 's/DEFINE_LONGS\(HOST_FP_SIZE, 2696\)/DEFINE_LONGS(HOST_FP_SIZE, 16384)/g'
# Transfers sized by the host: PTRACE_SETREGSET wants exactly the host's XSAVE size.
regs=arch/x86/um/os-Linux/registers.c
edit "$regs" 1 's/(static int have_xstate_support;)/$1\n\/* thinsim: the host'"'"'s XSAVE size, learned by the probe in arch_init_registers. *\/\nstatic unsigned long host_xstate_bytes = FP_SIZE * sizeof(unsigned long);/g'
edit "$regs" 2 's/(iov\.iov_len = )FP_SIZE \* sizeof\(unsigned long\);(\n\t\tif \(ptrace\(PTRACE_(?:GET|SET)REGSET)/$1host_xstate_bytes;$2/g'
edit "$regs" 1 's/(NT_X86_XSTATE, &iov\) == 0\))\n\t\thave_xstate_support = 1;/$1 {\n\t\thave_xstate_support = 1;\n\t\thost_xstate_bytes = iov.iov_len;\n\t}/g'

say "configuring"
make -s ARCH=um x86_64_defconfig >/dev/null
./scripts/config --file .config \
    --module BLK_DEV_DM --module DM_THIN_PROVISIONING --module DM_LOG_WRITES \
    --module DM_FLAKEY --module DM_DUST --enable MD --enable BLK_DEV \
    --set-val KERNEL_STACK_ORDER 5 \
    --set-str LOCALVERSION "-$recipe" --disable LOCALVERSION_AUTO
make -s ARCH=um olddefconfig >/dev/null
for opt in CONFIG_DM_THIN_PROVISIONING=m CONFIG_DM_LOG_WRITES=m CONFIG_DM_FLAKEY=m \
    CONFIG_DM_DUST=m CONFIG_HOSTFS=y CONFIG_BLK_DEV_UBD=y CONFIG_DEVTMPFS=y CONFIG_KERNEL_STACK_ORDER=5; do
    grep -qx "$opt" .config || { echo "build-uml.sh: the configuration lacks $opt" >&2; exit 1; }
done

say "building with $jobs jobs (a first build takes several minutes)"
make -s ARCH=um -j"$jobs" linux modules >build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }
release=$(make -s ARCH=um kernelrelease)
stage="$work/stage"
make -s ARCH=um INSTALL_MOD_PATH="$stage" modules_install >/dev/null
rm -rf "$out.tmp"
mkdir -p "$out.tmp/modules"
cp linux "$out.tmp/linux"
strip --strip-debug "$out.tmp/linux" 2>/dev/null || true
cp -r "$stage/lib/modules/$release" "$out.tmp/modules/$release"
rm -f "$out.tmp/modules/$release/build" "$out.tmp/modules/$release/source"
printf 'source %s %s\nrelease %s\nrecipe %s\nseconds %s\n' "$source_pkg" "$pkg_version" \
    "$release" "$recipe" "$(( $(date +%s) - start ))" >"$out.tmp/stamp"
rm -rf "$out"
mv "$out.tmp" "$out"
say "built $release in $(( $(date +%s) - start )) s: $out"
[ "$print_dir" = 1 ] && echo "$out"
exit 0

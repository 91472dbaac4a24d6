//! The guest side of a kernel run: the `/bin/sh` script that user-mode Linux runs as init.
//! It loads the dm modules, builds the device stack, does each [`KOp`] to the real pool
//! target and writes one result line per op to a file in the run's directory (the guest's
//! root is the host's `/`, so that directory is shared).
//!
//! Device stack, bottom up: `/dev/ubda` is the metadata image and `/dev/ubdb` the data image,
//! both at their largest sizes; `both` joins them (linear: metadata sectors first, data from
//! [`Layout::data_offset_sectors`]); `logged` is a `log-writes` target over `both` that logs
//! every write of either, in the one order they completed, with its FLUSH/FUA flags, to
//! `/dev/ubdc`; `meta` and `data` are windows of `logged` ([`window`]: always-up `flakey`
//! targets, which keep a flush's window in its sector; `meta` as big as the
//! metadata device is now: a metadata growth reloads it); `pool` is the `thin-pool` target
//! on them, with the workload's block size and feature arguments ([`super::workload::
//! PoolFeatures`]); `thinN` is the `thin`
//! target of device N. A flush keeps the sector of the window it came through, so the log
//! says which device each flush was for. Writes, discards and flushes go through `thinsim
//! kernel-guest` (this binary, run in the guest), so a run of blocks is one process.
//!
//! Marks in the log: `ckpt<i>` before a checkpoint's suspend and `ckptend<i>` after its
//! resume (no I/O is in flight between them); `ack<i>` after op `i` returned success to
//! userspace when it promised durability (a FUA write, a flush, a discard with its flush).
//!
//! A fault window swaps the `meta` window's table ([`fault_table`]); its heal restores it,
//! tears the pool down, copies the metadata out (`heal-<i>.img`), clears needs_check with
//! `thinsim check --clear-needs-check-flag` (its output in `heal-<i>.check`), creates the
//! pool again and activates the devices that were active.
//!
//! Result lines (`results` in the run directory), one per op in order:
//! `OP <index> <exit status> <the error line>` (dmsetup's `… failed: <strerror>` line or
//! `kernel-guest`'s `errno <NAME>`, else the last line of its error output); at a checkpoint
//! `CKPT <index> <pool status line>`; at a heal `HEAL <index> <check's exit status>
//! <pool status line before the teardown>`; at a metadata exhaustion `EXHAUST <index>
//! <devices created> <pool status line>`; once `KERNEL <uname -r>` at the start and `END` after
//! a clean shutdown. `FATAL <what>` means the harness itself failed in the guest (a module
//! that would not load, a device that would not activate): the run is void, not a
//! difference.
//!
//! Invariant: the script never writes outside the run directory and the guest's own
//! devtmpfs: it refuses to go on unless `/dev` is the guest's devtmpfs and `/dev/ubda`
//! is a block device (with the host's `/` as root, a failed mount would otherwise send
//! writes to the host's `/dev`).

use super::workload::{KOp, MetaFault, Workload};
use std::fmt::Write as _;
use std::path::Path;

/// The modules a run needs (paths under the modules directory's `kernel/drivers/md/`).
/// Each is loaded after its dependencies as the kernel's own `modules.dep` lists them
/// (`libcrc32c` is a module in some builds and built in in others); a kernel with one built
/// in skips it, and a missing target is caught when the device stack is built.
pub const MODULES: [&str; 3] = ["dm-thin-pool", "dm-log-writes", "dm-flakey"];

/// The table of a window of `sectors` sectors of `logged` from `offset`: a `flakey` target
/// that is always up (up 1 s, down 0 s), not `linear`. In Linux 6.12 `linear` lets an
/// empty flush bypass its map (`flush_bypasses_map`), so the flush reaches log-writes at
/// sector 0 whichever window it came through, and the log could no longer tell a data
/// flush from a metadata one; `flakey` maps every bio, an empty flush included, onto its
/// window's first sector.
pub fn window(sectors: u64, offset: u64) -> String {
    format!("0 {sectors} flakey /dev/mapper/logged {offset} 1 0")
}

/// The `meta` window's table while `fault` is on: `flakey` always down with
/// `error_writes` (reads pass), or the `error` target (nothing passes).
pub fn fault_table(fault: MetaFault, sectors: u64) -> String {
    match fault {
        MetaFault::ErrorWrites => {
            format!("0 {sectors} flakey /dev/mapper/logged 0 0 1 1 error_writes")
        }
        MetaFault::ErrorAll => format!("0 {sectors} error"),
    }
}

/// Sectors of each 4 KiB metadata block.
const METADATA_BLOCK_SECTORS: u64 = 8;

/// Where each device lies in the logged device `both`, in 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The data device's first sector: the metadata device at its largest comes first.
    pub data_offset_sectors: u64,
    /// The data device at its largest.
    pub data_sectors: u64,
    pub data_block_sectors: u64,
}

impl Layout {
    pub fn of(w: &Workload) -> Layout {
        let s = &w.shape;
        Layout {
            data_offset_sectors: s.max_metadata_blocks * METADATA_BLOCK_SECTORS,
            data_sectors: s.max_data_blocks * s.data_block_sectors as u64,
            data_block_sectors: s.data_block_sectors as u64,
        }
    }
}

/// The mark after op `i` returned success with a durability promise.
pub fn ack_mark(i: usize) -> String {
    format!("ack{i}")
}

/// Where a script finds what it runs.
pub struct ScriptPaths<'a> {
    /// The run directory (shared with the guest).
    pub dir: &'a Path,
    /// The modules directory of the UML kernel (`/usr/lib/uml/modules/<version>`).
    pub modules: &'a Path,
    /// The thinsim binary, run in the guest as `kernel-guest`.
    pub thinsim: &'a Path,
}

fn q(p: &Path) -> String {
    // Paths are the harness's own (temporary directories, installed files); quote them
    // for the shell all the same.
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The start of every guest script: `$W` the run directory, `$R` the results file, `$M`
/// the modules, `$T` this binary; `fatal`; `/proc`, `/sys` and the guest's own devtmpfs
/// (checked); the `KERNEL` line; the modules loaded.
pub fn preamble(o: &mut String, paths: &ScriptPaths) {
    let _ = writeln!(o, "export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1");
    let _ = writeln!(
        o,
        "W={}; R=\"$W/results\"; M={}; T={}",
        q(paths.dir),
        q(paths.modules),
        q(paths.thinsim)
    );
    o.push_str(
        r#"fatal() { echo "FATAL $*" >> "$R"; sync; poweroff -f; exit 1; }
mount -t proc proc /proc || fatal "mount /proc"
mount -t sysfs sys /sys || fatal "mount /sys"
devfs() { awk '$2 == "/dev" && $3 == "devtmpfs" { found = 1 } END { exit !found }' /proc/mounts; }
devfs || mount -t devtmpfs dev /dev || fatal "mount devtmpfs on /dev"
devfs || fatal "/dev is not the guest's devtmpfs"
[ -b /dev/ubda ] && [ -b /dev/ubdb ] || fatal "no ubd devices"
echo "KERNEL $(uname -r)" >> "$R"
"#,
    );
    // modules.dep lists a module's dependencies with the deepest last: load in reverse.
    o.push_str(
        r#"load() {
    for d in $(awk -v m="$1:" '$1 == m { for (i = NF; i > 1; i--) print $i }' "$M/modules.dep" 2>/dev/null); do
        insmod "$M/$d" 2>/dev/null
    done
    insmod "$M/$1" 2>/dev/null
}
"#,
    );
    for m in MODULES {
        let _ = writeln!(o, "load kernel/drivers/md/{m}.ko");
    }
}

/// The init script for `w`.
pub fn script(w: &Workload, paths: &ScriptPaths) -> String {
    let s = &w.shape;
    let sectors = s.data_block_sectors as u64;
    let mut o = String::new();
    let layout = Layout::of(w);
    let features = s.features.table_args();
    let pool_table = |blocks: u64| {
        format!(
            "0 {} thin-pool /dev/mapper/meta /dev/mapper/data {} 0 {} {}",
            blocks * sectors,
            sectors,
            features.len(),
            features.join(" ")
        )
    };
    let meta_table = |blocks: u64| window(blocks * METADATA_BLOCK_SECTORS, 0);
    let _ = writeln!(o, "#!/bin/sh");
    let _ = writeln!(o, "# thinsim kernel workload, seed {} ({} ops)", w.seed, w.ops.len());
    preamble(&mut o, paths);
    let _ = writeln!(o, "VS={}", s.virtual_blocks * sectors);
    if !s.features.error_if_no_space {
        // Queued bios fail this long after the pool runs out of data space (a module
        // parameter, so set before the pool exists).
        let _ = writeln!(
            o,
            "echo {} > /sys/module/dm_thin_pool/parameters/no_space_timeout || fatal \"set no_space_timeout\"",
            s.features.no_space_timeout_seconds
        );
    }
    o.push_str(
        r#"for t in thin-pool thin log-writes flakey; do dmsetup targets | grep -q "^$t " || fatal "no $t target"; done
act() { dmsetup create "thin$1" --table "0 $VS thin /dev/mapper/pool $1" && dmsetup mknodes "thin$1" || fatal "activate thin$1"; }
acto() { dmsetup create "thin$1" --table "0 $VS thin /dev/mapper/pool $1" 2>"$E" && dmsetup mknodes "thin$1" 2>>"$E"; rc=$?; }
E="$W/stderr"
msg() { dmsetup message pool 0 "$1" 2>"$E"; rc=$?; }
mark() { dmsetup message logged 0 mark "$1" || fatal "mark $1"; }
res() {
  t=
  if [ $rc != 0 ]; then t=$(grep -m1 -E 'failed: |^errno ' "$E"); [ -n "$t" ] || t=$(tail -n 1 "$E"); fi
  echo "OP $1 $rc $t" >> "$R"
}
"#,
    );
    let mut meta_blocks = s.metadata_blocks;
    let mut data_blocks = s.data_blocks;
    let (mo, ds) = (layout.data_offset_sectors, layout.data_sectors);
    let _ = writeln!(
        o,
        "dmsetup create both --table \"0 {mo} linear /dev/ubda 0\n{mo} {ds} linear /dev/ubdb 0\" || fatal \"create both\"\n\
         dmsetup create logged --table \"0 {} log-writes /dev/mapper/both /dev/ubdc\" || fatal \"create logged\"\n\
         dmsetup create data --table \"{}\" || fatal \"create data\"\n\
         dmsetup create meta --table \"{}\" || fatal \"create meta\"",
        mo + ds,
        window(ds, mo),
        meta_table(meta_blocks)
    );
    let _ = writeln!(
        o,
        "dmsetup create pool --table \"{}\" || fatal \"create pool\"",
        pool_table(s.data_blocks)
    );
    let _ = writeln!(o, "dmsetup mknodes || fatal mknodes");
    // A restored image's devices are activated first, as for any pool that has devices.
    if let Some(p) = &s.prepopulation {
        for dev in 0..p.devices {
            let _ = writeln!(o, "act {dev}");
        }
    }
    for (i, op) in w.ops.iter().enumerate() {
        let _ = writeln!(o, "# {i}: {op:?}");
        let _ = writeln!(o, "rc=0; : > \"$E\"");
        match *op {
            KOp::CreateThin { dev } => {
                // A message whose commit failed still succeeds, and its device is gone:
                // activation is then the op's answer, not a harness failure.
                let _ = writeln!(o, "msg \"create_thin {dev}\"; [ $rc = 0 ] && acto {dev}");
            }
            KOp::CreateSnap { dev, origin } => {
                let _ = writeln!(
                    o,
                    "s=0; [ -e /dev/mapper/thin{origin} ] && dmsetup suspend thin{origin} && s=1\n\
                     msg \"create_snap {dev} {origin}\"\n\
                     [ $s = 1 ] && {{ dmsetup resume thin{origin} || fatal \"resume thin{origin}\"; }}\n\
                     [ $rc = 0 ] && acto {dev}"
                );
            }
            KOp::Delete { dev } => {
                let _ = writeln!(
                    o,
                    "[ -e /dev/mapper/thin{dev} ] && {{ dmsetup remove thin{dev} || fatal \"remove thin{dev}\"; }}\n\
                     msg \"delete {dev}\""
                );
            }
            KOp::SetTransactionId { current, new } => {
                let _ = writeln!(o, "msg \"set_transaction_id {current} {new}\"");
            }
            KOp::ReserveSnap => {
                let _ = writeln!(o, "msg reserve_metadata_snap");
            }
            KOp::ReleaseSnap => {
                let _ = writeln!(o, "msg release_metadata_snap");
            }
            KOp::Write { dev, vblock, blocks, fua } => {
                let _ = writeln!(
                    o,
                    "\"$T\" kernel-guest write /dev/mapper/thin{dev} --block-bytes {} --vblock {vblock} --blocks {blocks} --tag {i}{} 2>\"$E\"; rc=$?",
                    sectors * 512,
                    if fua { " --fua" } else { "" }
                );
            }
            KOp::Discard { dev, begin, end } => {
                let _ = writeln!(
                    o,
                    "\"$T\" kernel-guest discard /dev/mapper/thin{dev} --block-bytes {} --vblock {begin} --blocks {} --flush 2>\"$E\"; rc=$?",
                    sectors * 512,
                    end.saturating_sub(begin)
                );
            }
            KOp::Flush { dev } => {
                let _ =
                    writeln!(o, "\"$T\" kernel-guest flush /dev/mapper/thin{dev} 2>\"$E\"; rc=$?");
            }
            KOp::GrowData { blocks } => {
                data_blocks = blocks;
                let _ = writeln!(
                    o,
                    "{{ dmsetup reload pool --table \"{}\" && dmsetup resume pool; }} 2>\"$E\"; rc=$?",
                    pool_table(blocks)
                );
            }
            KOp::GrowMetadata { blocks } => {
                meta_blocks = blocks;
                let _ = writeln!(
                    o,
                    "{{ dmsetup suspend pool && dmsetup reload meta --table \"{}\" && dmsetup resume meta && dmsetup resume pool; }} 2>\"$E\"; rc=$?",
                    meta_table(meta_blocks)
                );
            }
            KOp::FaultMeta { fault } => {
                let table = fault_table(fault, meta_blocks * METADATA_BLOCK_SECTORS);
                let _ = writeln!(
                    o,
                    "{{ dmsetup reload meta --table \"{table}\" && dmsetup resume meta; }} || fatal \"fault meta\""
                );
            }
            KOp::HealMeta => {
                // The status first (noflush: a flushing status would commit), then the
                // metadata device back, and only then anything that suspends the pool. The
                // teardown writes what the target left dirty (needs_check); suspending
                // `meta` waits for those writes, and a flush ends their epoch in the log
                // before the tools write a superblock of their own (crash mode's epochs
                // hold one superblock each).
                let _ = writeln!(
                    o,
                    "st=$(dmsetup status --noflush pool)\n\
                     {{ dmsetup reload meta --table \"{}\" && dmsetup resume meta; }} || fatal \"restore meta\"\n\
                     A=$(dmsetup ls | awk '/^thin[0-9]/ {{print $1}}' | sort)\n\
                     for d in $A; do dmsetup remove \"$d\" || fatal \"remove $d\"; done\n\
                     dmsetup remove pool || fatal \"remove pool\"\n\
                     {{ dmsetup suspend meta && dmsetup resume meta; }} || fatal \"settle meta\"\n\
                     \"$T\" kernel-guest flush /dev/mapper/meta || fatal \"flush meta\"\n\
                     dd if=/dev/ubda of=\"$W/heal-{i}.img\" bs=4096 count={meta_blocks} iflag=direct status=none || fatal \"copy heal {i}\"\n\
                     \"$T\" check --clear-needs-check-flag /dev/mapper/meta >\"$W/heal-{i}.check\" 2>&1; hc=$?\n\
                     dmsetup create pool --table \"{}\" || fatal \"create pool again\"\n\
                     dmsetup mknodes || fatal mknodes\n\
                     for d in $A; do act \"${{d#thin}}\"; done\n\
                     echo \"HEAL {i} $hc $st\" >> \"$R\"",
                    meta_table(meta_blocks),
                    pool_table(data_blocks)
                );
            }
            KOp::ExhaustMeta { first_dev, limit } => {
                // Creates from one process until one fails: that message's answer is the
                // op's; the count and the pool's status (noflush: a flushing status would
                // try to commit) are the EXHAUST line.
                let _ = writeln!(
                    o,
                    "n=$(\"$T\" kernel-guest create-thins pool --first {first_dev} --limit {limit} 2>\"$E\"); rc=$?\n\
                     echo \"EXHAUST {i} $n $(dmsetup status --noflush pool)\" >> \"$R\""
                );
            }
            KOp::Checkpoint => {
                let _ = writeln!(
                    o,
                    "mark ckpt{i}\n\
                     dmsetup suspend pool || fatal \"suspend pool\"\n\
                     dd if=/dev/ubda of=\"$W/ckpt-{i}.img\" bs=4096 count={meta_blocks} iflag=direct status=none || fatal \"copy checkpoint {i}\"\n\
                     st=$(dmsetup status --noflush pool)\n\
                     dmsetup resume pool || fatal \"resume pool\"\n\
                     mark ckptend{i}\n\
                     echo \"CKPT {i} $st\" >> \"$R\""
                );
            }
        }
        if op.promises_durability() {
            let _ = writeln!(o, "[ $rc = 0 ] && mark {}", ack_mark(i));
        }
        let _ = writeln!(o, "res {i}");
    }
    o.push_str(
        r#"for d in $(dmsetup ls | awk '/^thin[0-9]/ {print $1}'); do dmsetup remove "$d" || fatal "remove $d"; done
dmsetup remove pool || fatal "remove pool"
for d in meta data logged both; do dmsetup remove $d || fatal "remove $d"; done
"#,
    );
    let _ = writeln!(o, "dd if=/dev/ubda of=\"$W/final.img\" bs=4096 count={meta_blocks} iflag=direct status=none || fatal \"copy final image\"");
    o.push_str("echo END >> \"$R\"\nsync\npoweroff -f\n");
    o
}

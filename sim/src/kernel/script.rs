//! The guest side of a kernel run: the `/bin/sh` script that user-mode Linux runs as init.
//! It loads the dm modules, builds the device stack, does each [`KOp`] to the real pool
//! target and writes one result line per op to a file in the run's directory (the guest's
//! root is the host's `/`, so that directory is shared).
//!
//! Device stack, bottom up: `/dev/ubda` is the metadata image and `/dev/ubdb` the data image;
//! `meta` is a `log-writes` target over `/dev/ubda` that logs every metadata write (with its
//! FLUSH/FUA flags, and a mark `ckpt<op>` at each checkpoint) to `/dev/ubdc`, and to the next
//! log device after each metadata growth (a reload starts a new log); `pool` is the
//! `thin-pool` target (64 KiB blocks, `skip_block_zeroing error_if_no_space`); `thinN` is the
//! `thin` target of device N. Writes, discards and flushes go through `thinsim kernel-guest`
//! (this binary, run in the guest), so a run of blocks is one process, not one per block.
//!
//! Result lines (`results` in the run directory), one per op in order:
//! `OP <index> <exit status> <the error line>` (dmsetup's `… failed: <strerror>` line or
//! `kernel-guest`'s `errno <NAME>`, else the last line of its error output); at a checkpoint
//! `CKPT <index> <pool status line>`; once `KERNEL <uname -r>` at the start and `END` after
//! a clean shutdown. `FATAL <what>` means the harness itself failed in the guest (a module
//! that would not load, a device that would not activate): the run is void, not a
//! difference.
//!
//! Invariant: the script never writes outside the run directory and the guest's own
//! devtmpfs: it refuses to go on unless `/dev` is the guest's devtmpfs and `/dev/ubda`
//! is a block device (with the host's `/` as root, a failed mount would otherwise send
//! writes to the host's `/dev`).

use super::workload::{KOp, Workload};
use std::fmt::Write as _;
use std::path::Path;

/// The modules a run needs, in load order (paths under the modules directory's
/// `kernel/drivers/md/`); a kernel with them built in skips the ones that are there.
pub const MODULES: [&str; 6] = [
    "dm-mod",
    "dm-bufio",
    "persistent-data/dm-persistent-data",
    "dm-bio-prison",
    "dm-thin-pool",
    "dm-log-writes",
];

/// First ubd letter of the log devices (`ubdc`, `ubdd`, …).
pub const FIRST_LOG_DEVICE: u8 = b'c';

/// Bytes of each 4 KiB metadata block, in sectors.
const METADATA_BLOCK_SECTORS: u64 = 8;

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

/// The init script for `w`.
pub fn script(w: &Workload, paths: &ScriptPaths) -> String {
    let s = &w.shape;
    let sectors = s.data_block_sectors as u64;
    let mut o = String::new();
    let pool_table = |blocks: u64| {
        format!(
            "0 {} thin-pool /dev/mapper/meta /dev/ubdb {} 0 2 skip_block_zeroing error_if_no_space",
            blocks * sectors,
            sectors
        )
    };
    let meta_table = |blocks: u64, log: u8| {
        format!(
            "0 {} log-writes /dev/ubda /dev/ubd{}",
            blocks * METADATA_BLOCK_SECTORS,
            log as char
        )
    };
    let _ = writeln!(o, "#!/bin/sh");
    let _ = writeln!(o, "# thinsim kernel workload, seed {} ({} ops)", w.seed, w.ops.len());
    let _ = writeln!(o, "export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1");
    let _ = writeln!(
        o,
        "W={}; R=\"$W/results\"; M={}; T={}",
        q(paths.dir),
        q(paths.modules),
        q(paths.thinsim)
    );
    let _ = writeln!(o, "VS={}", s.virtual_blocks * sectors);
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
    for m in MODULES {
        let _ = writeln!(o, "insmod \"$M/kernel/drivers/md/{m}.ko\" 2>/dev/null");
    }
    o.push_str(
        r#"for t in thin-pool thin log-writes; do dmsetup targets | grep -q "^$t " || fatal "no $t target"; done
act() { dmsetup create "thin$1" --table "0 $VS thin /dev/mapper/pool $1" && dmsetup mknodes "thin$1" || fatal "activate thin$1"; }
E="$W/stderr"
msg() { dmsetup message pool 0 "$1" 2>"$E"; rc=$?; }
mark() { dmsetup message meta 0 mark "$1" || fatal "mark $1"; }
res() {
  t=
  if [ $rc != 0 ]; then t=$(grep -m1 -E 'failed: |^errno ' "$E"); [ -n "$t" ] || t=$(tail -n 1 "$E"); fi
  echo "OP $1 $rc $t" >> "$R"
}
"#,
    );
    let mut log = FIRST_LOG_DEVICE;
    let mut meta_blocks = s.metadata_blocks;
    let _ = writeln!(
        o,
        "dmsetup create meta --table \"{}\" || fatal \"create meta\"",
        meta_table(meta_blocks, log)
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
                let _ = writeln!(o, "msg \"create_thin {dev}\"; [ $rc = 0 ] && act {dev}");
            }
            KOp::CreateSnap { dev, origin } => {
                let _ = writeln!(
                    o,
                    "s=0; [ -e /dev/mapper/thin{origin} ] && dmsetup suspend thin{origin} && s=1\n\
                     msg \"create_snap {dev} {origin}\"\n\
                     [ $s = 1 ] && {{ dmsetup resume thin{origin} || fatal \"resume thin{origin}\"; }}\n\
                     [ $rc = 0 ] && act {dev}"
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
            KOp::Write { dev, vblock, blocks } => {
                let _ = writeln!(
                    o,
                    "\"$T\" kernel-guest write /dev/mapper/thin{dev} --block-bytes {} --vblock {vblock} --blocks {blocks} --tag {i} 2>\"$E\"; rc=$?",
                    sectors * 512
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
                let _ = writeln!(
                    o,
                    "{{ dmsetup reload pool --table \"{}\" && dmsetup resume pool; }} 2>\"$E\"; rc=$?",
                    pool_table(blocks)
                );
            }
            KOp::GrowMetadata { blocks } => {
                log += 1;
                meta_blocks = blocks;
                let _ = writeln!(
                    o,
                    "{{ dmsetup suspend pool && dmsetup reload meta --table \"{}\" && dmsetup resume meta && dmsetup resume pool; }} 2>\"$E\"; rc=$?",
                    meta_table(meta_blocks, log)
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
                     echo \"CKPT {i} $st\" >> \"$R\""
                );
            }
        }
        let _ = writeln!(o, "res {i}");
    }
    o.push_str(
        r#"for d in $(dmsetup ls | awk '/^thin[0-9]/ {print $1}'); do dmsetup remove "$d" || fatal "remove $d"; done
dmsetup remove pool || fatal "remove pool"
dmsetup remove meta || fatal "remove meta"
"#,
    );
    let _ = writeln!(o, "dd if=/dev/ubda of=\"$W/final.img\" bs=4096 count={meta_blocks} iflag=direct status=none || fatal \"copy final image\"");
    o.push_str("echo END >> \"$R\"\nsync\npoweroff -f\n");
    o
}

/// How many log devices a workload's script uses.
pub fn log_devices(w: &Workload) -> usize {
    1 + w.ops.iter().filter(|op| matches!(op, KOp::GrowMetadata { .. })).count()
}

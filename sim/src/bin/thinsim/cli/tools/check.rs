//! `check` (thin_check): the audit, with thin_check's options and 1.x's split of findings
//! into fatal errors and non-fatal leaks.
//!
//! Exit code 1 for any fatal finding, and for leaks unless `--ignore-non-fatal-errors` or
//! `--auto-repair` (which fixes them) is given. The image is written only by
//! `--auto-repair` when there are leaks and no fatal finding, and by
//! `--clear-needs-check-flag` when the flag is set and the check passed: healthy metadata
//! is never touched.

use super::{describe_open_error, fail, open_input, progress, xml_given_for_metadata, Flavour};
use clap::Args;
use engine::thin::{Pool, PoolOptions};
use engine::tools::check::{self, CheckOptions, CheckReport, Severity, Space};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Metadata image or device.
    pub image: PathBuf,
    /// Print nothing; the exit code says it all.
    #[arg(short, long)]
    pub quiet: bool,
    /// Check the superblock only.
    #[arg(long)]
    pub super_block_only: bool,
    /// Do not walk the mapping trees (nor compare the reference counts they feed).
    #[arg(long)]
    pub skip_mappings: bool,
    /// Leaks (space-map counts above the real references) do not fail the check.
    #[arg(long)]
    pub ignore_non_fatal_errors: bool,
    /// Fix leaks in place (one committed transaction); fatal damage is left alone. Refused
    /// with a partial check or the snapshot (`-m`), as by 1.x: repairs need the whole
    /// metadata, checked.
    #[arg(
        long,
        conflicts_with_all = [
            "metadata_snapshot",
            "skip_mappings",
            "super_block_only",
            "ignore_non_fatal_errors",
        ]
    )]
    pub auto_repair: bool,
    /// Clear NEEDS_CHECK, only when the check passes (not with `-m`: the flag is the live
    /// pool's).
    #[arg(long, conflicts_with = "metadata_snapshot")]
    pub clear_needs_check_flag: bool,
    /// Check the held metadata snapshot only: its trees, not the live ones or the space maps.
    #[arg(short = 'm', long = "metadata-snapshot", alias = "metadata-snap")]
    pub metadata_snapshot: bool,
}

pub fn check(args: &CheckArgs, flavour: Flavour) -> ExitCode {
    let say = |s: &str| {
        if !args.quiet && flavour == Flavour::Thin {
            eprintln!("{s}");
        }
    };
    let opts = CheckOptions {
        super_block_only: args.super_block_only,
        skip_mappings: args.skip_mappings,
        metadata_snapshot: args.metadata_snapshot,
        ..CheckOptions::default()
    };
    let report = match audit(&args.image, opts, args.quiet) {
        Ok(r) => r,
        Err(e) => return fail(e, 1),
    };
    say("examining superblock");
    if !args.super_block_only {
        say("examining devices tree");
        if !args.skip_mappings {
            say("examining mapping tree");
            if !args.metadata_snapshot {
                say("checking space map counts");
            }
        }
    }
    print_report(&report, args, flavour);
    let fatal = report.count(Severity::Error);
    let leaks = report.leaks();
    if fatal > 0 {
        if !args.quiet && report.superblock_valid {
            eprintln!("{fatal} fatal error(s) found: the metadata needs `thinsim repair`");
        }
        return ExitCode::from(1);
    }
    let mut leaks_left = !leaks.is_empty();
    if args.auto_repair && leaks_left {
        match fix_leaks(&args.image, &leaks) {
            Ok(()) => {
                if !args.quiet {
                    let (m, d) = tally(&leaks);
                    eprintln!(
                        "auto-repair: released {m} leaked metadata and {d} leaked data references"
                    );
                }
                leaks_left = false;
            }
            Err(e) => return fail(format!("auto-repair failed: {e}"), 1),
        }
    } else if leaks_left && !args.quiet {
        let (m, d) = tally(&leaks);
        eprintln!(
            "{m} metadata and {d} data references have leaked (non-fatal; --auto-repair fixes them)"
        );
    }
    let passed = !leaks_left || args.ignore_non_fatal_errors;
    if args.clear_needs_check_flag && report.needs_check {
        if !passed {
            return fail("not clearing the needs_check flag: leaks remain (non-fatal errors)", 1);
        }
        if let Err(e) = clear_flag(&args.image) {
            return fail(format!("clearing the needs_check flag failed: {e}"), 1);
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs the audit on `path`, read only.
fn audit(path: &Path, opts: CheckOptions, quiet: bool) -> Result<CheckReport, String> {
    let dev = open_input(path, false)?;
    if let Some(why) = xml_given_for_metadata(path) {
        return Err(why);
    }
    let bar = progress(quiet, None, "check");
    let report = check::check_with(dev, &BTreeMap::new(), opts);
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(r: &CheckReport, args: &CheckArgs, flavour: Flavour) {
    if args.quiet {
        return;
    }
    if r.superblock_valid {
        outln!("TRANSACTION_ID={}", r.transaction_id);
        // thin_check 0.9.0 prints the device's block count less one whatever is in use
        // (observed on every image, its own thin_restore's included); `thinsim check`
        // prints what the space map's root records.
        let free = match flavour {
            Flavour::Thin => r.metadata_nr_blocks.saturating_sub(1),
            Flavour::Thinsim => r.metadata_free_blocks,
        };
        outln!("METADATA_FREE_BLOCKS={free}");
    }
    if flavour == Flavour::Thinsim && !args.super_block_only && r.superblock_valid {
        outln!("DEVICES={} MAPPINGS={}", r.devices, r.mappings);
        // Under -m the space maps are not read: no counts to report.
        if !args.skip_mappings && !args.metadata_snapshot {
            outln!(
                "METADATA_BLOCKS_USED={} DATA_BLOCKS_USED={}",
                r.metadata_blocks_used,
                r.data_blocks_used
            );
        }
    }
    // Hints (warnings) are thinsim's own: thin_check 0.9.0 does not judge them.
    let shown =
        |f: &&check::Finding| flavour == Flavour::Thinsim || f.severity() > Severity::Warning;
    for f in r.findings.iter().filter(shown) {
        eprintln!("{f}");
    }
}

/// Leaked references per space: (metadata, data).
fn tally(leaks: &[(Space, u64, u32, u32)]) -> (u64, u64) {
    let sum =
        |s: Space| leaks.iter().filter(|l| l.0 == s).map(|l| u64::from(l.2 - l.3)).sum::<u64>();
    (sum(Space::Metadata), sum(Space::Data))
}

fn open_writable(path: &Path) -> Result<Pool, String> {
    let raw = open_input(path, false)?;
    let sb = {
        let pool = Pool::open_image(raw).map_err(|e| describe_open_error(path, &e))?;
        pool.summary().map_err(|e| e.to_string())?.data_block_size
    };
    let dev = open_input(path, true)?;
    let opts = PoolOptions { may_format: false, ..PoolOptions::new(sb) };
    Pool::open(dev, opts).map_err(|e| describe_open_error(path, &e))
}

/// Releases the leaks in one transaction and re-audits: the result must be clean.
fn fix_leaks(path: &Path, leaks: &[(Space, u64, u32, u32)]) -> Result<(), String> {
    let pick = |s: Space| -> Vec<(u64, u32)> {
        leaks.iter().filter(|l| l.0 == s).map(|l| (l.1, l.2 - l.3)).collect()
    };
    let pool = open_writable(path)?;
    pool.release_leaks(&pick(Space::Metadata), &pick(Space::Data))
        .and_then(|()| pool.commit())
        .map_err(|e| e.to_string())?;
    pool.close().map_err(|e| format!("{e:?}"))?;
    let after = audit(path, CheckOptions::default(), true)?;
    if !after.is_clean() {
        let first = after.findings.first().map(|f| f.to_string()).unwrap_or_default();
        return Err(format!("the image still has findings after the fix: {first}"));
    }
    Ok(())
}

fn clear_flag(path: &Path) -> Result<(), String> {
    let pool = open_writable(path)?;
    pool.clear_needs_check().map_err(|e| e.to_string())?;
    pool.close().map(|_| ()).map_err(|e| format!("{e:?}"))
}

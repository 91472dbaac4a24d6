//! `repair -i IN -o OUT` (thin_repair): what survives of damaged metadata, written to OUT
//! as a clean image (which `check` passes). IN is only read; OUT must exist, must not be
//! IN, and is overwritten.

use super::{fail, open_input, same_file, vet_output, Flavour, OverrideArgs};
use clap::Args;
use engine::io::FileDevice;
use engine::tools::repair::{repair as engine_repair, RootsFrom};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The damaged metadata image (read only).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Existing file or device to write the repaired metadata to.
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

pub fn repair(args: &RepairArgs, _flavour: Flavour) -> ExitCode {
    if same_file(&args.input, &args.output) {
        return fail("the input and the output are the same file: repair writes a new image", 2);
    }
    let input = match open_input(&args.input, false) {
        Ok(d) => d,
        Err(e) => return fail(e, 1),
    };
    if let Err(e) = vet_output(&args.output) {
        return fail(e, 1);
    }
    let output = match FileDevice::open(&args.output, true) {
        Ok(d) => Box::new(d),
        Err(e) => {
            let why = if args.output.exists() { e.to_string() } else { "does not exist".into() };
            return fail(
                format!(
                    "{}: the output {why} (create it first, e.g. truncate -s 8M)",
                    args.output.display()
                ),
                1,
            );
        }
    };
    match engine_repair(input, output, args.overrides.overrides()) {
        Ok((r, _)) => {
            if !args.quiet {
                let from = match r.roots_from {
                    RootsFrom::Superblock => "the superblock".to_string(),
                    RootsFrom::DamagedSuperblock => "the damaged superblock's roots".to_string(),
                    RootsFrom::Scan => format!("a scan ({} valid nodes)", r.nodes_scanned),
                    RootsFrom::LostTreeFound => format!(
                        "the superblock, and a scan ({} valid nodes) for the tree it named that did not read",
                        r.nodes_scanned
                    ),
                };
                eprintln!(
                    "repaired from {from}: {} devices, {} mappings kept; {} unreadable nodes, \
                     {} entries dropped",
                    r.devices, r.mappings, r.unreadable_nodes, r.dropped_entries
                );
                for i in &r.inferred {
                    eprintln!("inferred from the surviving trees: {i}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{}: repair failed: {e}", args.input.display()), 1),
    }
}

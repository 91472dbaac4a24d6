//! `dump` (thin_dump): the XML of an image, of its held snapshot (`-m`), or of what survives
//! of a damaged one (`--repair`), with thin_dump's filters and superblock overrides.
//! A closed pipe or FIFO ends the dump quietly (exit 0): the reader chose to stop.

use super::{fail, is_broken_pipe, open_input, open_trees, same_file, Flavour, OverrideArgs};
use clap::Args;
use engine::thin::{MetadataBlock, Source};
use engine::tools::defs::dump_shared;
use engine::tools::dump::{dump_salvage, dump_with, DumpOptions};
use engine::tools::repair::salvage;
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use engine::tools::ToolError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DumpArgs {
    pub image: PathBuf,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format: xml or human_readable.
    #[arg(short, long, default_value = "xml")]
    pub format: String,
    /// Dump the held metadata snapshot (optionally: it must be at this block).
    #[arg(short = 'm', long = "metadata-snap", num_args = 0..=1, require_equals = true)]
    pub metadata_snap: Option<Option<u64>>,
    /// Dump what survives of damaged metadata (the salvage `repair` writes).
    #[arg(long)]
    pub repair: bool,
    /// Devices only, without their mappings.
    #[arg(long)]
    pub skip_mappings: bool,
    /// Only this device (repeatable).
    #[arg(long = "dev-id", value_name = "ID")]
    pub dev_ids: Vec<u64>,
    /// Write each run of mappings that several devices hold alike once, as thin_dump 1.x's
    /// `<def>`, and `<ref>` it from each device (XML only). Without it, 0.9.0's form.
    #[arg(long)]
    pub shared_defs: bool,
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

pub fn dump(args: &DumpArgs, _flavour: Flavour) -> ExitCode {
    let format = match args.format.as_str() {
        "xml" => DumpFormat::Xml,
        "human_readable" => DumpFormat::HumanReadable,
        other => return fail(format!("unknown format '{other}' (xml or human_readable)"), 2),
    };
    if args.shared_defs && (format != DumpFormat::Xml || args.repair) {
        return fail(
            "--shared-defs writes XML of a readable pool: not with -f human_readable or --repair",
            2,
        );
    }
    if args.repair && args.metadata_snap.is_some() {
        return fail("--repair and -m do not go together (repair rebuilds the live trees)", 2);
    }
    let opts = DumpOptions {
        skip_mappings: args.skip_mappings,
        dev_ids: (!args.dev_ids.is_empty()).then(|| args.dev_ids.iter().copied().collect()),
        overrides: args.overrides.overrides(),
    };
    if args.output.as_ref().is_some_and(|o| same_file(&args.image, o)) {
        return fail("the output is the metadata image: dump would destroy what it reads", 2);
    }
    // The input is judged before the output is created: a bad input leaves no empty file.
    enum What {
        // Boxed: a pool is large and lives only until the dump is written.
        Pool(Box<dyn engine::thin::Trees>),
        Salvage(engine::tools::repair::Salvage),
    }
    let what = if args.repair {
        let dev = match open_input(&args.image, false) {
            Ok(d) => d,
            Err(e) => return fail(e, 1),
        };
        match salvage(dev, opts.overrides) {
            Ok(s) => {
                for i in &s.report.inferred {
                    eprintln!("{}: inferred from the surviving trees: {i}", args.image.display());
                }
                What::Salvage(s)
            }
            Err(e) => return fail(format!("{}: nothing to salvage: {e}", args.image.display()), 1),
        }
    } else {
        match open_trees(&args.image, args.metadata_snap.is_some()) {
            Ok(p) => What::Pool(p),
            Err(e) => return fail(e, 1),
        }
    };
    let out: Box<dyn Write> = match &args.output {
        Some(p) => match File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("{}: cannot create the output: {e}", p.display()), 1),
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = DumpWriter::new(BufWriter::with_capacity(1 << 20, out), format);
    let r = match &what {
        What::Pool(pool) => {
            let source = match args.metadata_snap {
                None => Source::Live,
                Some(b) => Source::MetadataSnap(b.map(MetadataBlock)),
            };
            if args.shared_defs {
                dump_shared(pool.as_ref(), &mut w, source, &opts)
            } else {
                dump_with(pool.as_ref(), &mut w, source, &opts)
            }
        }
        What::Salvage(s) => dump_salvage(s, &mut w, &opts),
    };
    // The writer's own buffer is flushed by `finish`, ours here: a full disk or a closed pipe
    // is met now, not dropped silently with the buffer.
    let r = r.and_then(|()| {
        let mut inner = w.finish()?;
        inner.flush().map_err(|e| ToolError::from(engine::tools::xml_write::DumpError::Io(e)))
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: status 1 and nothing on stderr, as thin_dump 1.x.
        Err(e) if is_broken_pipe(&e) => ExitCode::FAILURE,
        Err(e) => fail(format!("{}: {e}", args.image.display()), 1),
    }
}

//! The `check`, `dump`, `restore` and `ls` subcommands: thin-provisioning-tools' jobs on
//! metadata images, with the same flags where they overlap.
//!
//! Exit codes: 0 success; 1 findings or a refused input (like thin_check); 2 usage or I/O.

use super::fail;
use super::progress::Metered;
use clap::Args;
use engine::io::FileDevice;
use engine::thin::{MetadataBlock, Pool, Source};
use engine::tools::check::{self, Severity};
use engine::tools::ls::{format_table, parse_fields, LsField};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use engine::tools::{restore, ToolError};
use indicatif::ProgressBar;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Metadata image or device.
    pub image: PathBuf,
    /// Print nothing; the exit code says it all.
    #[arg(short, long)]
    pub quiet: bool,
    /// Warnings (tool quirks the kernel accepts) do not fail the check (they never do).
    #[arg(long)]
    pub ignore_non_fatal_errors: bool,
}

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
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// thin_dump XML to read.
    #[arg(short, long)]
    pub input: PathBuf,
    /// Existing file or device to write (its size is the metadata size).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    pub image: PathBuf,
    /// Comma-separated fields (thin_ls names).
    #[arg(short = 'o', long = "format")]
    pub fields: Option<String>,
    #[arg(long)]
    pub no_headers: bool,
    /// List the held metadata snapshot's devices.
    #[arg(short = 'm', long = "metadata-snap")]
    pub metadata_snap: bool,
}

/// The tools' bar: bytes of a known length, else a spinner; hidden with `--quiet`.
fn progress(quiet: bool, len: Option<u64>, what: &'static str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let template = match len {
        Some(_) => "{msg} [{bar:40}] {bytes}/{total_bytes} {elapsed}",
        None => "{spinner} {msg} {bytes} {elapsed}",
    };
    let bar = super::progress::bar(len, template);
    bar.set_message(what);
    bar
}

fn open_read_only(path: &Path) -> Result<Box<FileDevice>, String> {
    FileDevice::open(path, false).map(Box::new).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn check(args: &CheckArgs) -> ExitCode {
    let dev = match open_read_only(&args.image) {
        Ok(d) => d,
        Err(e) => return fail(e, 2),
    };
    let bar = progress(args.quiet, None, "check");
    let report = check::check(dev);
    bar.finish_and_clear();
    if !args.quiet {
        println!("TRANSACTION_ID={}", report.transaction_id);
        println!("DEVICES={} MAPPINGS={}", report.devices, report.mappings);
        println!(
            "METADATA_BLOCKS_USED={} DATA_BLOCKS_USED={}",
            report.metadata_blocks_used, report.data_blocks_used
        );
        for f in &report.findings {
            eprintln!("{f}");
        }
    }
    let errors = report.findings.iter().filter(|f| f.severity == Severity::Error).count();
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        if !args.quiet {
            eprintln!("{errors} error(s) found");
        }
        ExitCode::from(1)
    }
}

fn open_pool(path: &Path) -> Result<Pool, String> {
    let dev = open_read_only(path)?;
    Pool::open_image(dev).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn dump(args: &DumpArgs) -> ExitCode {
    let format = match args.format.as_str() {
        "xml" => DumpFormat::Xml,
        "human_readable" => DumpFormat::HumanReadable,
        other => return fail(format!("unknown format '{other}' (xml or human_readable)"), 2),
    };
    let pool = match open_pool(&args.image) {
        Ok(p) => p,
        Err(e) => return fail(e, 1),
    };
    let source = match args.metadata_snap {
        None => Source::Live,
        Some(b) => Source::MetadataSnap(b.map(MetadataBlock)),
    };
    let out: Box<dyn Write> = match &args.output {
        Some(p) => match File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("{}: {e}", p.display()), 2),
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = DumpWriter::new(BufWriter::with_capacity(1 << 20, out), format);
    let r = engine::tools::dump::dump(&pool, &mut w, source)
        .and_then(|()| w.finish().map(|_| ()).map_err(ToolError::from));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

pub fn restore(args: &RestoreArgs) -> ExitCode {
    let file = match File::open(&args.input) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: {e}", args.input.display()), 2),
    };
    let len = file.metadata().map(|m| m.len()).ok();
    let bar = progress(args.quiet, len, "restore: checking");
    let metered = Metered { inner: file, bar: bar.clone(), after_seek: Some("restore: building") };
    let input = BufReader::with_capacity(1 << 20, metered);
    let dev = match FileDevice::open(&args.output, true) {
        Ok(d) => Box::new(d),
        Err(e) => {
            return fail(
                format!("{}: {e} (create it first, e.g. truncate -s 8M)", args.output.display()),
                2,
            )
        }
    };
    // A regular file of a size the fast path takes is mapped, not read: no copy of the
    // document, and the kernel's page cache serves it. Anything else is streamed.
    let mapped = len.filter(|&n| n > 0 && n <= restore::FAST_PATH_MAX_BYTES).and_then(|_| {
        // SAFETY: the mapping is read-only and lives only for this call, and nothing in this
        // process writes the input. Another process changing the file meanwhile would change
        // the bytes under the parser, which validates every byte (bad XML is reported, the
        // output untouched); truncating it would raise SIGBUS, as for any mapped input.
        unsafe { memmap2::Mmap::map(&input.get_ref().inner) }.ok()
    });
    let r = match &mapped {
        Some(doc) => {
            // Nothing reads through `input`: a spinner instead of a byte count.
            bar.finish_and_clear();
            let spin = progress(args.quiet, None, "restore");
            let r = restore::restore_slice(doc, dev);
            spin.finish_and_clear();
            r
        }
        None => restore::restore(input, dev),
    };
    bar.finish_and_clear();
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{}: {e}", args.input.display()), 1),
    }
}

pub fn ls(args: &LsArgs) -> ExitCode {
    let fields = match &args.fields {
        Some(list) => match parse_fields(list) {
            Ok(f) => f,
            Err(e) => return fail(format!("unknown field {e:?}"), 2),
        },
        None => LsField::DEFAULT.to_vec(),
    };
    let pool = match open_pool(&args.image) {
        Ok(p) => p,
        Err(e) => return fail(e, 1),
    };
    let source = if args.metadata_snap { Source::MetadataSnap(None) } else { Source::Live };
    match engine::tools::dump::ls_rows(&pool, source) {
        Ok((rows, block_size)) => {
            print!("{}", format_table(&rows, block_size, &fields, !args.no_headers));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e, 1),
    }
}

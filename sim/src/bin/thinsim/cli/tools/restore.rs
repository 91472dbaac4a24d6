//! `restore` (thin_restore): a metadata image from thin_dump XML, with thin_restore's
//! superblock overrides. The input is vetted (missing, a directory) and the output must
//! exist and hold the metadata; too small an output is named as such.

use super::{fail, progress, same_file, vet_input, vet_output, Flavour, OverrideArgs};
use crate::cli::progress::Metered;
use clap::Args;
use engine::io::FileDevice;
use engine::tools::{restore as engine_restore, ToolError};
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

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
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

pub fn restore(args: &RestoreArgs, _flavour: Flavour) -> ExitCode {
    if let Err(e) = vet_input(&args.input, "XML input") {
        return fail(e, 1);
    }
    if let Err(e) = vet_output(&args.output) {
        return fail(e, 1);
    }
    if same_file(&args.input, &args.output) {
        return fail(
            "the input and the output are the same file: restore would overwrite its XML",
            2,
        );
    }
    let file = match File::open(&args.input) {
        Ok(f) => f,
        Err(e) => {
            return fail(format!("{}: cannot open the XML input: {e}", args.input.display()), 1)
        }
    };
    let len = file.metadata().map(|m| m.len()).ok();
    let bar = progress(args.quiet, len, "restore: checking");
    let metered = Metered { inner: file, bar: bar.clone(), after_seek: Some("restore: building") };
    let input = BufReader::with_capacity(1 << 20, metered);
    let dev = match FileDevice::open(&args.output, true) {
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
    let o = args.overrides.overrides();
    // A regular file of a size the fast path takes is mapped, not read: no copy of the
    // document, and the kernel's page cache serves it. Anything else is streamed.
    let mapped =
        len.filter(|&n| n > 0 && n <= engine_restore::FAST_PATH_MAX_BYTES).and_then(|_| {
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
            let r = engine_restore::restore_slice_with(doc, dev, o);
            spin.finish_and_clear();
            r
        }
        None => engine_restore::restore_with(input, dev, o),
    };
    bar.finish_and_clear();
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(describe_restore_error(args, &e), 1),
    }
}

/// A full metadata device is the output's fault, not the input's: say so.
fn describe_restore_error(args: &RestoreArgs, e: &ToolError) -> String {
    let no_space =
        matches!(e, ToolError::Engine(engine::Error::NoSpace(engine::error::Space::Metadata)));
    if no_space {
        let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
        return format!(
            "{}: the output is too small for this metadata ({size} bytes); make it larger",
            args.output.display()
        );
    }
    format!("{}: {e}", args.input.display())
}

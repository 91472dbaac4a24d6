//! `ls` (thin_ls): the device table of an image or of its held snapshot (`-m`).

use super::{fail, open_trees, Flavour};
use clap::Args;
use engine::thin::Source;
use engine::tools::ls::{format_table, parse_fields, LsField};
use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn ls(args: &LsArgs, _flavour: Flavour) -> ExitCode {
    let fields = match &args.fields {
        Some(list) => match parse_fields(list) {
            Ok(f) => f,
            Err(e) => {
                let names: Vec<&str> = LsField::ALL_1X.iter().map(|f| f.name()).collect();
                return fail(format!("{e}; the fields are {}", names.join(",")), 2);
            }
        },
        None => LsField::DEFAULT.to_vec(),
    };
    let pool = match open_trees(&args.image, args.metadata_snap) {
        Ok(p) => p,
        Err(e) => return fail(e, 1),
    };
    let source = if args.metadata_snap { Source::MetadataSnap(None) } else { Source::Live };
    match engine::tools::dump::ls_rows(pool.as_ref(), source) {
        Ok((rows, block_size)) => {
            out!("{}", format_table(&rows, block_size, &fields, !args.no_headers));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{}: {e}", args.image.display()), 1),
    }
}

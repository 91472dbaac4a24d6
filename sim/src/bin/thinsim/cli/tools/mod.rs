//! The offline tools' front ends — `check`, `dump`, `restore`, `ls`, `repair` — with the
//! command lines of thin-provisioning-tools (0.9.0's, and 1.x's options), and the multi-call
//! entry: a binary named `thin_check`, `thin_dump`, `thin_restore`, `thin_ls` or
//! `thin_repair` (a symlink or a copy) is that tool, as `pdata_tools` is.
//!
//! Exit codes: 0 success; 1 findings, a refused input or a failed repair (as thin_check);
//! 2 usage.
//!
//! Every input path is vetted here before the engine sees it ([`open_input`]): a missing
//! file, a directory, an input too small for a superblock, and an input with no dm-thin
//! superblock each get a message that names the problem in words (a script can rely on the
//! phrases "does not exist", "is a directory", "too small", "not dm-thin metadata"). A
//! metadata input that is neither a regular file nor a block device (a FIFO, a socket, a
//! character device) is refused before it is opened, with 1.x's phrase "Not a block device
//! or regular file": opening a FIFO with no writer would block forever. An output that is the
//! input (the same file by device and inode, through any link) is refused before anything is
//! written ([`same_file`]).
//!
//! Standard output goes through `out`: a closed pipe ends a tool with status 1 and nothing
//! on stderr (as 1.x), a failing one (`/dev/full`) with status 1 and one line.

mod check;
mod dump;
mod ls;
mod repair;
mod restore;

pub use check::{check, CheckArgs};
pub use dump::{dump, DumpArgs};
pub use ls::{ls, LsArgs};
pub use repair::{repair, RepairArgs};
pub use restore::{restore, RestoreArgs};

use super::fail;
use clap::{Args, Parser};
use engine::io::FileDevice;
use engine::thin::Pool;
use engine::tools::repair::Overrides;
use indicatif::ProgressBar;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// How a tool prints where thinsim and thin-provisioning-tools could differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `thinsim <tool>`: thinsim's extra lines (devices, mappings, blocks used).
    Thinsim,
    /// Called as `thin_<tool>`: thin-provisioning-tools 0.9.0's text, byte for byte.
    Thin,
}

/// Superblock values for a damaged superblock (thin_dump / thin_repair / thin_restore).
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct OverrideArgs {
    /// Use this transaction id instead of the superblock's.
    #[arg(long, value_name = "ID")]
    pub transaction_id: Option<u64>,
    /// Use this data block size (512-byte sectors) instead of the superblock's.
    #[arg(long, value_name = "SECTORS")]
    pub data_block_size: Option<u32>,
    /// Use this number of data blocks instead of the superblock's.
    #[arg(long, value_name = "BLOCKS")]
    pub nr_data_blocks: Option<u64>,
}

impl OverrideArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            transaction_id: self.transaction_id,
            data_block_size: self.data_block_size,
            nr_data_blocks: self.nr_data_blocks,
        }
    }
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
    let bar = crate::cli::progress::bar(len, template);
    bar.set_message(what);
    bar
}

/// Smallest metadata image: a superblock.
const MIN_IMAGE_BYTES: u64 = 4096;

/// Why an input path cannot be used, in words (see the module doc for the phrases).
pub fn vet_input(path: &Path, what: &str) -> Result<(), String> {
    let p = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{p}: No such file or directory (the {what} does not exist)"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!("{p}: permission denied (cannot read the {what})"));
        }
        Err(e) => return Err(format!("{p}: cannot read the {what}: {e}")),
    };
    if meta.is_dir() {
        return Err(format!("{p}: is a directory; the {what} must be a file or a block device"));
    }
    if what.contains("metadata") && !meta.is_file() && !is_block_device(&meta) {
        return Err(format!(
            "{p}: Not a block device or regular file ({}); the {what} must be one",
            file_kind(&meta)
        ));
    }
    if meta.is_file() && meta.len() < MIN_IMAGE_BYTES && what.contains("metadata") {
        return Err(format!(
            "{p}: Metadata device/file too small. Is this binary metadata? (too small to be a \
             {what}: {} bytes; the superblock alone is 4096)",
            meta.len()
        ));
    }
    Ok(())
}

fn is_block_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

/// What a path that is neither a file, a directory nor a block device is, in words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_symlink() {
        "a dangling link"
    } else {
        "not a file"
    }
}

/// Whether two paths name the same file (device and inode, through any link); false when
/// either does not exist yet.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Opens a metadata image after [`vet_input`].
pub fn open_input(path: &Path, writable: bool) -> Result<Box<FileDevice>, String> {
    vet_input(path, "metadata image")?;
    FileDevice::open(path, writable)
        .map(Box::new)
        .map_err(|e| format!("{}: cannot open the metadata image: {e}", path.display()))
}

/// The words for a pool that did not open: no superblock, or damage.
pub fn describe_open_error(path: &Path, e: &engine::Error) -> String {
    use engine::error::CorruptKind;
    let p = path.display();
    match e {
        engine::Error::ReadOnly(_) => {
            format!("{p}: not dm-thin metadata (block 0 is all zeros: never formatted, or wiped)")
        }
        engine::Error::Corrupt { block: 0, kind: CorruptKind::Magic { .. }, .. } => {
            not_metadata(path)
        }
        engine::Error::Corrupt { block: 0, .. } => {
            format!("{p}: the superblock is damaged ({e}); try `thinsim repair` or `dump --repair`")
        }
        engine::Error::Corrupt { .. } => {
            format!("{p}: metadata is damaged ({e}); try `thinsim repair` or `dump --repair`")
        }
        other => format!("{p}: {other}"),
    }
}

/// The trees a read-only tool reads: the whole pool, or with `held_only` (`-m`) only the held
/// metadata snapshot, read without the live trees or the space maps
/// ([`engine::thin::HeldSnapshot`]), so `-m` works while those are changing or damaged.
fn open_trees(path: &Path, held_only: bool) -> Result<Box<dyn engine::thin::Trees>, String> {
    if !held_only {
        return open_pool(path).map(|p| Box::new(p) as Box<dyn engine::thin::Trees>);
    }
    let dev = open_input(path, false)?;
    engine::thin::HeldSnapshot::open(dev)
        .map(|h| Box::new(h) as Box<dyn engine::thin::Trees>)
        .map_err(|e| match e {
            engine::Error::Corrupt { block: 0, .. } if !has_thin_magic(path) => not_metadata(path),
            e => describe_open_error(path, &e),
        })
}

fn open_pool(path: &Path) -> Result<Pool, String> {
    let dev = open_input(path, false)?;
    Pool::open_image(dev).map_err(|e| match e {
        engine::Error::Corrupt { block: 0, .. } if !has_thin_magic(path) => not_metadata(path),
        e => describe_open_error(path, &e),
    })
}

/// The words for an input with no thin superblock: XML given where binary metadata belongs
/// is named as such (a common slip: `check dump.xml`).
fn not_metadata(path: &Path) -> String {
    let p = path.display();
    if looks_like_xml(path) {
        format!(
            "{p}: not dm-thin metadata: this is thin_dump XML, not binary metadata \
             (make an image from it with `thinsim restore -i {p} -o IMAGE`)"
        )
    } else {
        format!("{p}: not dm-thin metadata (no thin superblock magic at block 0)")
    }
}

/// The file starts (after white space) with thin_dump XML's first element or a declaration.
fn looks_like_xml(path: &Path) -> bool {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let text = text.trim_start();
    text.starts_with("<superblock") || text.starts_with("<?xml")
}

/// An input that is XML where binary metadata belongs, in words; `None` otherwise.
pub fn xml_given_for_metadata(path: &Path) -> Option<String> {
    looks_like_xml(path).then(|| not_metadata(path))
}

/// Block 0 carries the thin superblock magic (whatever else is wrong with it).
fn has_thin_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 40];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && u64::from_le_bytes(head[32..40].try_into().expect("8 bytes"))
            == engine::limits::SUPERBLOCK_MAGIC
}

/// The tool a binary named `argv0` is, if its name is one of thin-provisioning-tools'.
pub fn multi_call_tool(argv0: Option<&OsString>) -> Option<&'static str> {
    let name = Path::new(argv0?).file_name()?.to_str()?;
    ["thin_check", "thin_dump", "thin_restore", "thin_ls", "thin_repair"]
        .into_iter()
        .find(|t| *t == name)
}

#[derive(Debug, Parser)]
#[command(name = "thin_check", version, about = "Validate thin provisioning metadata")]
struct ThinCheck {
    #[command(flatten)]
    a: CheckArgs,
}

#[derive(Debug, Parser)]
#[command(name = "thin_dump", version, about = "Dump thin provisioning metadata")]
struct ThinDump {
    #[command(flatten)]
    a: DumpArgs,
}

#[derive(Debug, Parser)]
#[command(name = "thin_restore", version, about = "Restore thin provisioning metadata")]
struct ThinRestore {
    #[command(flatten)]
    a: RestoreArgs,
}

#[derive(Debug, Parser)]
#[command(name = "thin_ls", version, about = "List thin devices")]
struct ThinLs {
    #[command(flatten)]
    a: LsArgs,
}

#[derive(Debug, Parser)]
#[command(name = "thin_repair", version, about = "Repair thin provisioning metadata")]
struct ThinRepair {
    #[command(flatten)]
    a: RepairArgs,
}

/// Runs `tool` (from [`multi_call_tool`]) on the process's arguments.
pub fn run_as(tool: &str) -> ExitCode {
    let f = Flavour::Thin;
    match tool {
        "thin_check" => check(&ThinCheck::parse().a, f),
        "thin_dump" => dump(&ThinDump::parse().a, f),
        "thin_restore" => restore(&ThinRestore::parse().a, f),
        "thin_ls" => ls(&ThinLs::parse().a, f),
        "thin_repair" => repair(&ThinRepair::parse().a, f),
        other => fail(format!("{other}: not a multi-call tool name"), 2),
    }
}

/// Output that goes nowhere (a closed pipe, a reader gone from a FIFO) is the reader's
/// choice, not an error: a `| head` must not print one.
pub fn is_broken_pipe(e: &engine::tools::ToolError) -> bool {
    use engine::tools::xml_write::DumpError;
    matches!(e, engine::tools::ToolError::Output(DumpError::Io(io))
        if io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// A path that must not exist as a directory (an output).
fn vet_output(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "{}: is a directory; the output must be a file or a block device",
            path.display()
        ));
    }
    Ok(())
}

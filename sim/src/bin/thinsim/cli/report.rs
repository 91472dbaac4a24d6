//! `thinsim report --merge DIR... --out DIR`: merges shard reports into one.
//! `thinsim report --compare CHECKED_IN NEW`: exits 1 when the two differ in anything the
//! code and the seeds decide (`Summary::differences`): a checked-in report is then stale.

use clap::Args;
use sim::report::Summary;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Shard report directories (each with a summary.json).
    #[arg(long, num_args = 1.., required_unless_present = "compare", requires = "out")]
    pub merge: Vec<PathBuf>,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Two report directories: the one checked in, and one just produced.
    #[arg(long, num_args = 2, value_names = ["CHECKED_IN", "NEW"], conflicts_with = "merge")]
    pub compare: Vec<PathBuf>,
}

pub fn report(a: &ReportArgs) -> ExitCode {
    match (&a.compare[..], &a.out) {
        ([old, new], _) => compare(old, new),
        (_, Some(out)) => merge(&a.merge, out),
        _ => {
            eprintln!("--merge needs --out");
            ExitCode::from(2)
        }
    }
}

fn compare(old: &Path, new: &Path) -> ExitCode {
    let (a, b) = match (Summary::read(old), Summary::read(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let diff = a.differences(&b);
    if diff.is_empty() {
        outln!("{} is current: same as {}", old.display(), new.display());
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{} is stale: {} differences from {} (regenerate it; reports/README.md says how)",
        old.display(),
        diff.len(),
        new.display()
    );
    for d in diff.iter().take(20) {
        eprintln!("  {d}");
    }
    ExitCode::from(1)
}

fn merge(dirs: &[PathBuf], out: &Path) -> ExitCode {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut total = Summary::new(&name, None);
    for dir in dirs {
        match Summary::read(dir) {
            Ok(s) => total.merge(&s),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    total.finalize(None);
    if let Err(e) = total.write(out) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::from(2);
    }
    outln!(
        "merged {} shards: {} runs, {} failure signatures, {} coverage gaps -> {}",
        dirs.len(),
        total.seeds.runs,
        total.failures.len(),
        total.coverage_gaps.len() + total.structure_gaps.len() + total.oracle_gaps.len(),
        out.display()
    );
    if total.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

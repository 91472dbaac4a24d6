//! `thinsim report --merge DIR... --out DIR`: merges shard reports into one.

use clap::Args;
use sim::report::Summary;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Shard report directories (each with a summary.json).
    #[arg(long, num_args = 1.., required = true)]
    pub merge: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn report(a: &ReportArgs) -> ExitCode {
    let name = a.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut total = Summary::new(&name, None);
    for dir in &a.merge {
        match Summary::read(dir) {
            Ok(s) => total.merge(&s),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    total.finalize(None);
    if let Err(e) = total.write(&a.out) {
        eprintln!("{}: {e}", a.out.display());
        return ExitCode::from(2);
    }
    println!(
        "merged {} shards: {} runs, {} failure signatures, {} coverage gaps -> {}",
        a.merge.len(),
        total.seeds.runs,
        total.failures.len(),
        total.coverage_gaps.len(),
        a.out.display()
    );
    if total.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

//! thin-provisioning-tools 0.9.0 for the interop tests: where each tool is, and the one
//! switch to skip them (`THINSIM_SKIP_TOOLS=1`, for a machine that cannot install the tools;
//! CI installs them and never sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of tool `name` (`/usr/sbin` first, then `PATH`); `None` only when skipping is
/// allowed. Panics when the tool is missing and skipping is not allowed: a missing oracle
/// must not pass silently.
pub fn tool(name: &str) -> Option<PathBuf> {
    match find(name) {
        Some(path) => Some(path),
        None if std::env::var_os("THINSIM_SKIP_TOOLS").is_some() => {
            eprintln!("skipping: {name} not installed (THINSIM_SKIP_TOOLS)");
            None
        }
        None => panic!(
            "{name} (thin-provisioning-tools 0.9.0) is not installed \
             (install it, or set THINSIM_SKIP_TOOLS=1 to skip)"
        ),
    }
}

fn find(name: &str) -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return Some(sbin);
    }
    let found = Command::new("which").arg(name).output().ok()?;
    let path = String::from_utf8(found.stdout).ok()?;
    let path = path.trim();
    (found.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

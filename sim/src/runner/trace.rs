//! Trace files: a run as values, in JSON lines a person can read and edit.
//!
//! ```text
//! # optional comment lines (a regression says here what broke and what fixed it)
//! {"thinsim_trace":1,"build":"thinsim 0.1.0","seed":7,"options":{...},"expect":{...}}
//! {"op":"create_thin","dev":0}
//! {"op":"provision","dev":0,"vblock":12,"faults":[{"io":3,"fault":"lost_write"}]}
//! {"op":"commit","faults":[{"io":9,"fault":"power_loss"},{"io":9,"fault":{"crash":{...}}}]}
//! {"op":"final_power_cut"}
//! ```
//!
//! The first line that is not a comment is the header: the format version, the build that
//! wrote it, the run's seed (for the failure text), canary and verification mode, the
//! drawn options, and the failure it is expected to reproduce (or none). Every other line
//! is one op with the faults the disk injected during it, each at an I/O offset from the
//! op's first I/O call. Deleting a line deletes that op and its faults; the replay runs
//! the ops in file order (a trace without a `final_power_cut` gets one).
//!
//! Invariants:
//! - A trace of another format version is refused with both versions named, never
//!   reinterpreted; a line that does not parse is refused with its line number.
//! - `Trace::parse(&t.to_text()) == t` for every trace `t` (comments aside).

use super::config::RunConfig;
use super::op::Op;
use super::options::Options;
use super::verify::VerifyMode;
use crate::disk::Planned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The trace format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The build that writes a trace (for the reader's information; any build of the same
/// format version replays it).
pub fn build_id() -> String {
    let canary = if super::CANARY_BUILD { " (canary build)" } else { "" };
    format!("thinsim {}{canary}", env!("CARGO_PKG_VERSION"))
}

/// A fault the disk injected during an op, `io` I/O calls after the op's first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFault {
    pub io: u64,
    pub fault: Planned,
}

/// One line: an op and its faults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub op: Op,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<StepFault>,
}

/// The failure a trace reproduces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// `Failure::signature`: oracle / op kind / fault kinds.
    pub signature: String,
    /// The op (1-based, over the op lines) that failed.
    pub step: u64,
}

/// The header line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    thinsim_trace: u32,
    build: String,
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<String>,
    #[serde(default)]
    verify: VerifyMode,
    options: Options,
    #[serde(default)]
    expect: Option<Expected>,
}

/// A whole run as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub build: String,
    pub seed: u64,
    pub canary: Option<String>,
    pub verify: VerifyMode,
    pub options: Options,
    pub expect: Option<Expected>,
    pub steps: Vec<Step>,
}

/// Why a trace could not be read or run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceError {
    Io {
        path: String,
        error: String,
    },
    Empty,
    Version {
        found: u32,
        supported: u32,
    },
    Parse {
        line: usize,
        error: String,
    },
    /// The trace names a canary and this build has none (`--features canary`), or the
    /// canary is unknown.
    Canary {
        name: String,
        reason: &'static str,
    },
    /// The header's options cannot be run (see `Options::validate`).
    Options {
        line: usize,
        error: super::options::OptionsError,
    },
    /// An op that cannot run at its step (a device with no open handle, a block the caller
    /// does not hold).
    InvalidStep {
        step: u64,
        op: String,
        reason: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, error } => write!(f, "cannot read trace {path}: {error}"),
            TraceError::Empty => write!(f, "the trace has no header line"),
            TraceError::Version { found, supported } => write!(
                f,
                "trace format version {found}: this build reads version {supported} only \
                 (record it again with this build, or replay it with a build of version {found})"
            ),
            TraceError::Parse { line, error } => write!(f, "trace line {line}: {error}"),
            TraceError::Options { line, error } => write!(f, "trace line {line}: {error}"),
            TraceError::Canary { name, reason } => {
                write!(f, "trace needs canary {name:?}: {reason}")
            }
            TraceError::InvalidStep { step, op, reason } => {
                write!(f, "trace step {step} ({op}) cannot run: {reason}")
            }
        }
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// The run configuration a replay uses (no scheduled crash: the trace's faults say all).
    pub fn config(&self) -> RunConfig {
        RunConfig { canary: self.canary.clone(), verify: self.verify, ..RunConfig::new(self.seed) }
    }

    /// The trace as text (header, then one line per op).
    pub fn to_text(&self) -> String {
        let header = Header {
            thinsim_trace: FORMAT_VERSION,
            build: self.build.clone(),
            seed: self.seed,
            canary: self.canary.clone(),
            verify: self.verify,
            options: self.options.clone(),
            expect: self.expect.clone(),
        };
        let mut out = json_line(&header);
        for s in &self.steps {
            out.push_str(&json_line(s));
        }
        out
    }

    /// Reads a trace; `#` lines and blank lines are comments.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (n, first) = lines.next().ok_or(TraceError::Empty)?;
        // The version first, so a trace of another version is named as such rather than
        // refused for a field this build does not know.
        let version: serde_json::Value = serde_json::from_str(first)
            .map_err(|e| TraceError::Parse { line: n, error: e.to_string() })?;
        let found = version.get("thinsim_trace").and_then(serde_json::Value::as_u64);
        match found {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                let found = u32::try_from(v).unwrap_or(u32::MAX);
                return Err(TraceError::Version { found, supported: FORMAT_VERSION });
            }
            None => {
                let error = "not a thinsim trace header (no \"thinsim_trace\" version)".to_owned();
                return Err(TraceError::Parse { line: n, error });
            }
        }
        let h: Header = serde_json::from_value(version)
            .map_err(|e| TraceError::Parse { line: n, error: e.to_string() })?;
        h.options.validate().map_err(|error| TraceError::Options { line: n, error })?;
        let steps = lines
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| TraceError::Parse { line: n, error: e.to_string() })
            })
            .collect::<Result<Vec<Step>, _>>()?;
        Ok(Trace {
            build: h.build,
            seed: h.seed,
            canary: h.canary,
            verify: h.verify,
            options: h.options,
            expect: h.expect,
            steps,
        })
    }

    pub fn read(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Trace::parse(&text)
    }

    /// Writes the trace, after `comment` lines (each prefixed with `# `).
    pub fn write(&self, path: &Path, comment: &[&str]) -> std::io::Result<()> {
        let mut text: String = comment.iter().map(|c| format!("# {c}\n")).collect();
        text.push_str(&self.to_text());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)
    }

    /// Number of faults over all steps (crash plans included).
    pub fn fault_count(&self) -> usize {
        self.steps.iter().map(|s| s.faults.len()).sum()
    }
}

fn json_line<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("trace values serialize");
    s.push('\n');
    s
}

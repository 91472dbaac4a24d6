//! What the caller chooses about a run (everything else comes from the seed), and the
//! one-line replay command that reproduces it.
//!
//! Invariant: `RunConfig::replay_line` parses back (through the CLI) into an equal config.

use super::op::OpKind;
use super::verify::VerifyMode;
use engine::canary::{Canaries, Canary};
use std::fmt;
use std::str::FromStr;

/// Default number of steps of a run.
pub const DEFAULT_STEPS: u64 = 400;

/// Where `--crash-at` cuts the power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashAt {
    /// At a random I/O inside the first op of this kind (e.g. `commit`, `reserve_snap`).
    Phase(OpKind),
    /// At the N-th I/O call of the disk (1-based, counted from format).
    Io(u64),
}

impl FromStr for CrashAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("io:") {
            return n.parse().map(CrashAt::Io).map_err(|e| format!("bad I/O ordinal {n:?}: {e}"));
        }
        let norm = |x: &str| x.to_ascii_lowercase().replace(['_', '-'], "");
        OpKind::ALL
            .into_iter()
            .find(|k| norm(&format!("{k:?}")) == norm(s))
            .map(CrashAt::Phase)
            .ok_or_else(|| {
                format!("unknown phase {s:?}: use io:N or an op kind such as commit, reserve_snap")
            })
    }
}

impl fmt::Display for CrashAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashAt::Io(n) => write!(f, "io:{n}"),
            CrashAt::Phase(k) => write!(f, "{}", snake(&format!("{k:?}"))),
        }
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The caller's part of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub seed: u64,
    pub steps: u64,
    pub crash_at: Option<CrashAt>,
    /// Name of an engine canary (a deliberately broken behaviour; needs feature `canary`).
    pub canary: Option<String>,
    /// Inject class A faults only (crashes, tears within the atomic unit): every recovery
    /// must then be exact. The seed still draws every other option.
    pub class_a_only: bool,
    /// How much is verified after each commit (full every time, or incremental with
    /// amortized full verifications; see `runner::verify`).
    pub verify: VerifyMode,
    /// Keep the last verified (recovered) image in the outcome, for export to real tools.
    /// Does not change the run, so it is not part of the replay line.
    pub keep_final_image: bool,
    /// `thinsim explore`: at every power cut, enumerate crash states within these bounds
    /// (instead of the run's sampled few) and `check` every one.
    pub explore: Option<ExploreBounds>,
}

/// How far `thinsim explore` enumerates the crash states of one power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExploreBounds {
    /// Above this many states, sample this many (and say so).
    pub max_states: u64,
    pub tears: crate::disk::TearSet,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        RunConfig {
            seed,
            steps: DEFAULT_STEPS,
            crash_at: None,
            canary: None,
            class_a_only: false,
            verify: VerifyMode::Amortized,
            keep_final_image: false,
            explore: None,
        }
    }

    /// The exact command that replays this run.
    pub fn replay_line(&self) -> String {
        let features = if self.canary.is_some() { " --features canary" } else { "" };
        let mut s = format!(
            "cargo run --release -p thinsim{features} -- run --seed {} --steps {}",
            self.seed, self.steps
        );
        if let Some(c) = self.crash_at {
            s.push_str(&format!(" --crash-at {c}"));
        }
        if let Some(c) = &self.canary {
            s.push_str(&format!(" --canary {c}"));
        }
        if self.class_a_only {
            s.push_str(" --class-a-only");
        }
        if self.verify == VerifyMode::Full {
            s.push_str(" --verify full");
        }
        s
    }

    /// The canaries to set on every pool of this run: none unless this is a canary build
    /// and the run names one.
    pub(super) fn canaries(&self) -> Canaries {
        #[cfg(feature = "canary")]
        if let Some(c) = self.canary.as_deref().and_then(Canary::from_name) {
            return Canaries::of(c);
        }
        Canaries::NONE
    }
}

/// Every canary name the engine has (`engine::canary::Canary::ALL`).
pub const CANARIES: [&str; Canary::ALL.len()] = {
    let mut names = [""; Canary::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Canary::ALL[i].name();
        i += 1;
    }
    names
};

/// Whether this build can run canaries.
pub const CANARY_BUILD: bool = cfg!(feature = "canary");

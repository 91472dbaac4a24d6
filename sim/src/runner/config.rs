//! What the caller chooses about a run (everything else comes from the seed), and the
//! one-line replay command that reproduces it.
//!
//! Invariant: `RunConfig::replay_line` parses back (through the CLI) into an equal config.

use super::options::OpKind;
use super::verify::VerifyMode;
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

    /// The canary flags to set on every pool of this run.
    #[cfg(feature = "canary")]
    pub(super) fn canary_flags(&self) -> Option<engine::canary::Canary> {
        self.canary.as_deref().and_then(canary_by_name)
    }

    #[cfg(not(feature = "canary"))]
    pub(super) fn canary_flags(&self) -> Option<()> {
        None
    }
}

/// Every canary name the engine has (the fields of `engine::canary::Canary`).
pub const CANARIES: [&str; 8] = [
    "superblock_before_nodes",
    "no_flush_before_superblock",
    "reuse_freed_in_transaction",
    "no_inc_on_shared_shadow",
    "abort_keeps_records",
    "skip_data_dec_on_remove",
    "no_lower_key_on_new_min",
    "redistribute_keeps_parent_key",
];

/// Whether this build can run canaries.
pub const CANARY_BUILD: bool = cfg!(feature = "canary");

#[cfg(feature = "canary")]
pub fn canary_by_name(name: &str) -> Option<engine::canary::Canary> {
    let mut c = engine::canary::Canary::default();
    match name {
        "superblock_before_nodes" => c.superblock_before_nodes = true,
        "no_flush_before_superblock" => c.no_flush_before_superblock = true,
        "reuse_freed_in_transaction" => c.reuse_freed_in_transaction = true,
        "no_inc_on_shared_shadow" => c.no_inc_on_shared_shadow = true,
        "abort_keeps_records" => c.abort_keeps_records = true,
        "skip_data_dec_on_remove" => c.skip_data_dec_on_remove = true,
        "no_lower_key_on_new_min" => c.no_lower_key_on_new_min = true,
        "redistribute_keeps_parent_key" => c.redistribute_keeps_parent_key = true,
        _ => return None,
    }
    Some(c)
}

#[cfg(feature = "canary")]
pub(super) fn set_canary(pool: &engine::thin::Pool, c: engine::canary::Canary) {
    pool.set_canary(c);
}

#[cfg(not(feature = "canary"))]
pub(super) fn set_canary(_pool: &engine::thin::Pool, _c: ()) {}

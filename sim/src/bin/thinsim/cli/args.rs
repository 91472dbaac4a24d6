//! The argument parsers the subcommands share: seed ranges, shards, durations and run
//! classes. They sit below every subcommand module, so no two subcommands import each other
//! for them.

use sim::runner::RunClass;
use std::time::Duration;

pub(super) fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.parse().map_err(|e| format!("{a}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{b}: {e}"))?;
    if b < a {
        return Err("empty range".into());
    }
    Ok((a, b))
}

pub(super) fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N")?;
    let k: u64 = k.parse().map_err(|e| format!("{k}: {e}"))?;
    let n: u64 = n.parse().map_err(|e| format!("{n}: {e}"))?;
    if n == 0 || k == 0 || k > n {
        return Err("need 1 <= K <= N".into());
    }
    Ok((k, n))
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|e| format!("{s}: {e}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s}: unit must be s, m or h")),
    }
}

/// A class of run by its report name (`deep_tree`) or with dashes (`deep-tree`).
pub(super) fn parse_class(s: &str) -> Result<RunClass, String> {
    let name = s.replace('-', "_");
    RunClass::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
        let names: Vec<&str> = RunClass::ALL.iter().map(|c| c.name()).collect();
        format!("{s}: a class is one of {}", names.join(", "))
    })
}

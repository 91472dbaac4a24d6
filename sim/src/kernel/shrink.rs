//! Shrinking a kernel workload: the fewest ops that keep a property, found by deleting runs
//! of ops (halves, then quarters, down to single ops) for as long as any deletion keeps it
//! (delta debugging). The shape is kept; the last op is kept, since a finding is about
//! it. Deterministic: the same workload and property give the same result.
//!
//! Deleting ops can leave ops that name devices no longer created: the emulation answers
//! those as the pool target does (a refused message, a write to a missing device), so a
//! shrunk workload is still a workload; whether it keeps the property is the caller's
//! predicate.

use super::workload::Workload;

/// The smallest workload found whose ops are a subsequence of `w`'s, ending with its last
/// op, for which `keeps` holds. `keeps(w)` must hold on entry (else `w` is returned as is).
pub fn shrink(w: &Workload, keeps: impl Fn(&Workload) -> bool) -> Workload {
    let mut best = w.clone();
    if best.ops.len() < 2 || !keeps(&best) {
        return best;
    }
    let mut chunk = (best.ops.len() - 1).div_ceil(2);
    while chunk > 0 {
        let mut start = 0;
        let mut progressed = false;
        // The last op is never deleted: only ops before it.
        while start < best.ops.len() - 1 {
            let end = (start + chunk).min(best.ops.len() - 1);
            let mut candidate = best.clone();
            candidate.ops.drain(start..end);
            if keeps(&candidate) {
                best = candidate;
                progressed = true;
            } else {
                start = end;
            }
        }
        if !progressed {
            chunk /= 2;
        }
    }
    debug_assert!(keeps(&best), "a shrink keeps its property");
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::workload::KOp;

    fn workload(ops: Vec<KOp>) -> Workload {
        let shape = crate::kernel::draw::draw(0, 1).expect("draws").shape;
        Workload { format_version: super::super::workload::FORMAT_VERSION, seed: 0, shape, ops }
    }

    #[test]
    fn keeps_only_the_ops_the_property_needs_and_the_last() {
        let mut ops: Vec<KOp> = (0..40).map(|d| KOp::Flush { dev: d }).collect();
        ops[7] = KOp::CreateThin { dev: 7 };
        ops[23] = KOp::CreateThin { dev: 23 };
        ops.push(KOp::Checkpoint);
        let needs = |w: &Workload| {
            [7, 23].iter().all(|&d| w.ops.contains(&KOp::CreateThin { dev: d }))
                && w.ops.last() == Some(&KOp::Checkpoint)
        };
        let s = shrink(&workload(ops), needs);
        assert_eq!(
            s.ops,
            vec![KOp::CreateThin { dev: 7 }, KOp::CreateThin { dev: 23 }, KOp::Checkpoint]
        );
    }

    #[test]
    fn a_property_that_does_not_hold_leaves_the_workload_alone() {
        let w = workload(vec![KOp::Flush { dev: 1 }, KOp::Checkpoint]);
        assert_eq!(shrink(&w, |_| false), w);
    }
}

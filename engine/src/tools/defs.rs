//! `dump --shared-defs`: thin_dump 1.x's shared runs, written. A run of mappings that
//! several devices hold alike (a snapshot and its origin, before either was written) is
//! written once, as `<def name="N">` before the devices, and each device that holds it has a
//! `<ref name="N"/>` at its place. 0.9.0's form, with every mapping written out, stays the
//! default (it is what CI compares byte for byte with thin_dump 0.9.0).
//!
//! What counts as shared is decided on the mappings, not on the metadata blocks: a mapping
//! (virtual block, data block, time) is shared when two or more dumped devices hold it. A
//! shared mapping continues the run of the one before it when both are held by the same
//! devices, and in every one of them it comes next. So a run is the same sequence, in the
//! same place, in every device that holds it, and one def serves them all.
//!
//! Invariant (checked by the tests, and by the reader's rule that a ref stands for its def's
//! mappings at its place): the dump expands to exactly the mappings [`super::dump::dump_with`]
//! writes, device by device and in order. The plan is made in memory: a few words per
//! mapping dumped, as 1.x's own dump holds the whole metadata.

use super::dump::{collect, device_of, dump_with, superblock_of, DumpOptions};
use super::error::ToolError;
use super::xml_write::DumpWriter;
use crate::thin::{Source, Trees};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::Write;

/// One mapping: (virtual block, data block, time).
type Key = (u64, u64, u32);

/// What a device's mapping lines become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Mapping(Key),
    /// The def of this index.
    Ref(usize),
}

/// The defs, in order of first use, and each device's items.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    defs: Vec<Vec<Key>>,
    devices: Vec<Vec<Item>>,
}

/// The mapping that follows a key in every device that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The same in all (`None`: the last mapping of all).
    One(Option<Key>),
    /// Not the same in all.
    Many,
}

/// Whether writing `run` once as a def, and a ref in each of its `holders`, takes fewer
/// lines than writing it out in each: its lines once, the def's two, a ref per holder,
/// against its lines per holder. (Short runs, the one- or two-line ones a snapshot of a
/// sparsely written device leaves, are written out.)
fn pays_off(run: &[Key], holders: usize) -> bool {
    let lines = 1 + run.windows(2).filter(|w| !continues_run(w[0], w[1])).count();
    lines * holders > lines + 2 + holders
}

/// Whether mapping `b` extends a `range_mapping` ending at `a` (the writer's merge rule).
fn continues_run(a: Key, b: Key) -> bool {
    a.0.checked_add(1) == Some(b.0) && a.1.checked_add(1) == Some(b.1) && a.2 == b.2
}

/// Plans the defs of `devices` (each one's mappings, ascending); a shared run becomes a def
/// when `worth(run, holders)` says so, and is written out in each holder otherwise.
fn plan(devices: &[Vec<Key>], worth: impl Fn(&[Key], usize) -> bool) -> Plan {
    // Only lookups go through the hash maps: the output's order is the devices' order.
    let mut holders: HashMap<Key, Vec<u32>> = HashMap::new();
    let mut next: HashMap<Key, Next> = HashMap::new();
    for (i, keys) in devices.iter().enumerate() {
        for (p, k) in keys.iter().enumerate() {
            holders.entry(*k).or_default().push(i as u32);
            let n = Next::One(keys.get(p + 1).copied());
            match next.entry(*k) {
                Entry::Vacant(e) => {
                    e.insert(n);
                }
                Entry::Occupied(mut e) if *e.get() != n => {
                    e.insert(Next::Many);
                }
                Entry::Occupied(_) => {}
            }
        }
    }
    let shared = |k: &Key| holders[k].len() >= 2;
    let continues = |a: &Key, b: &Key| {
        shared(a) && shared(b) && holders[a] == holders[b] && next[a] == Next::One(Some(*b))
    };
    let mut plan = Plan::default();
    // A run's first mapping names its def: every holder's run starts there (see `continues`).
    let mut def_of: HashMap<Key, usize> = HashMap::new();
    for keys in devices {
        let mut items = Vec::new();
        let mut p = 0;
        while p < keys.len() {
            if !shared(&keys[p]) {
                items.push(Item::Mapping(keys[p]));
                p += 1;
                continue;
            }
            let start = p;
            while p + 1 < keys.len() && continues(&keys[p], &keys[p + 1]) {
                p += 1;
            }
            p += 1;
            let run = &keys[start..p];
            if !worth(run, holders[&run[0]].len()) {
                items.extend(run.iter().map(|&k| Item::Mapping(k)));
                continue;
            }
            let def = *def_of.entry(run[0]).or_insert_with(|| {
                plan.defs.push(run.to_vec());
                plan.defs.len() - 1
            });
            // The rule above makes every holder's run the same; should it not be, the
            // mappings are written out, which is never wrong.
            if plan.defs[def] == run {
                items.push(Item::Ref(def));
            } else {
                debug_assert!(false, "a shared run differs between its holders");
                items.extend(run.iter().map(|&k| Item::Mapping(k)));
            }
        }
        plan.devices.push(items);
    }
    plan
}

/// Writes the pool as thin_dump 1.x's XML with shared runs written once, through `w`
/// (narrowed by `opts` as [`dump_with`] is; with `skip_mappings` there is nothing to share).
pub fn dump_shared<W: Write>(
    pool: &dyn Trees,
    w: &mut DumpWriter<W>,
    source: Source,
    opts: &DumpOptions,
) -> Result<(), ToolError> {
    if opts.skip_mappings {
        return dump_with(pool, w, source, opts);
    }
    let c = collect(pool, source, opts)?;
    let keys: Vec<Vec<Key>> = c
        .devices
        .iter()
        .map(|d| d.2.iter().map(|(v, bt)| (*v, bt.data_block.0, bt.time.0)).collect())
        .collect();
    let plan = plan(&keys, pays_off);
    w.superblock(&superblock_of(&c.header, &opts.overrides))?;
    for (name, def) in plan.defs.iter().enumerate() {
        w.begin_def(name as u64)?;
        for &(v, d, t) in def {
            w.mapping(v, d, t)?;
        }
        w.end_def()?;
    }
    for ((id, details, _), items) in c.devices.iter().zip(&plan.devices) {
        w.begin_device(&device_of(*id, details))?;
        for item in items {
            match *item {
                Item::Mapping((v, d, t)) => w.mapping(v, d, t)?,
                Item::Ref(def) => {
                    let run = &plan.defs[def];
                    // A def holds at least one mapping: it was cut from a device's run.
                    w.reference(def as u64, run[0].0, run[run.len() - 1].0)?;
                }
            }
        }
        w.end_device()?;
    }
    w.end_superblock()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each shared mapping is written once: in exactly one def, and no def twice.
    fn assert_written_once(plan: &Plan, devices: &[Vec<Key>]) {
        let mut count: std::collections::BTreeMap<Key, usize> = Default::default();
        for keys in devices {
            for k in keys {
                *count.entry(*k).or_default() += 1;
            }
        }
        let in_defs: Vec<Key> = plan.defs.iter().flatten().copied().collect();
        let distinct: std::collections::BTreeSet<Key> = in_defs.iter().copied().collect();
        assert_eq!(in_defs.len(), distinct.len(), "a mapping in two defs: {plan:?}");
        let shared: std::collections::BTreeSet<Key> =
            count.iter().filter(|(_, &n)| n >= 2).map(|(k, _)| *k).collect();
        assert_eq!(distinct, shared, "the defs hold the shared mappings: {plan:?}");
    }

    /// The successor must be the same in every holder, not only in the first one seen:
    /// here device 0 has k2 after k1, and device 1 has an unshared mapping between them.
    /// (A plan that kept the first successor seen put k1 and k2 in one def that device 1
    /// could not use; `cargo mutants` found no test that told.)
    #[test]
    fn a_run_continues_only_where_every_holder_has_the_same_next_mapping() {
        let (k1, k2, x) = ((0, 1, 0), (2, 3, 0), (1, 9, 0));
        let devices = vec![vec![k1, k2], vec![k1, x, k2]];
        let p = plan(&devices, |_, _| true);
        assert_eq!(expand(&p), devices);
        assert_eq!(p.defs, vec![vec![k1], vec![k2]]);
        assert_eq!(p.devices[1], vec![Item::Ref(0), Item::Mapping(x), Item::Ref(1)]);
    }

    #[test]
    fn a_mapping_a_third_device_also_holds_starts_a_def_of_its_own() {
        let (k1, k2, x) = ((0, 1, 0), (1, 2, 0), (0, 7, 0));
        let devices = vec![vec![k1, k2], vec![k1, k2], vec![x, k2]];
        let p = plan(&devices, |_, _| true);
        assert_eq!(expand(&p), devices);
        assert_written_once(&p, &devices);
        assert_eq!(p.defs, vec![vec![k1], vec![k2]]);
    }

    fn expand(plan: &Plan) -> Vec<Vec<Key>> {
        plan.devices
            .iter()
            .map(|items| {
                items
                    .iter()
                    .flat_map(|i| match *i {
                        Item::Mapping(k) => vec![k],
                        Item::Ref(d) => plan.defs[d].clone(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_snapshot_shares_its_origins_runs_and_the_dump_expands_to_the_mappings() {
        let origin: Vec<Key> = (0..10).map(|v| (v, 100 + v, 0)).collect();
        let mut snap = origin.clone();
        snap[4] = (4, 500, 1); // one block written in the snapshot since
        snap.push((20, 501, 1));
        let alone: Vec<Key> = vec![(0, 100, 0)]; // same tuple as origin[0] in a third device
        let devices = vec![origin, snap, alone];
        let p = plan(&devices, |_, _| true);
        assert_eq!(expand(&p), devices);
        assert_written_once(&p, &devices);
        // origin[0] is held by all three, 1..4 by two, then 5..10 by two.
        assert_eq!(
            p.defs,
            vec![
                vec![(0, 100, 0)],
                (1..4).map(|v| (v, 100 + v, 0)).collect(),
                (5..10).map(|v| (v, 100 + v, 0)).collect()
            ]
        );
        assert_eq!(
            p.devices[0],
            vec![Item::Ref(0), Item::Ref(1), Item::Mapping((4, 104, 0)), Item::Ref(2)]
        );
        assert_eq!(p.devices[2], vec![Item::Ref(0)]);
    }

    #[test]
    fn a_run_breaks_where_one_holder_has_a_mapping_between() {
        let a: Vec<Key> = vec![(0, 1, 0), (1, 2, 0), (2, 3, 0)];
        let b: Vec<Key> = vec![(0, 1, 0), (1, 9, 0), (2, 3, 0)];
        let c: Vec<Key> = vec![(0, 1, 0), (2, 3, 0)];
        let devices = vec![a, b, c];
        let p = plan(&devices, |_, _| true);
        assert_eq!(expand(&p), devices);
        assert_written_once(&p, &devices);
        for items in &p.devices {
            for i in items {
                if let Item::Ref(d) = i {
                    assert_eq!(p.defs[*d].len(), 1, "no run spans a gap in a holder: {p:?}");
                }
            }
        }
    }

    #[test]
    fn a_def_is_written_only_where_it_takes_fewer_lines() {
        // Two holders: a run of 4 single lines is written out (8 < 4 + 2 + 2 is false:
        // 8 > 8 is false), one of 5 becomes a def (10 > 9); one range line never does.
        let singles = |n: u64| (0..n).map(|v| (v * 2, v * 3, 0)).collect::<Vec<Key>>();
        assert!(!pays_off(&singles(4), 2) && pays_off(&singles(5), 2));
        let range: Vec<Key> = (0..100).map(|v| (v, v, 0)).collect();
        assert!(!pays_off(&range, 2) && !pays_off(&range, 50));
        assert!(pays_off(&singles(2), 5), "two lines in five devices: 10 > 9");
        let devices = vec![singles(4), singles(4)];
        let p = plan(&devices, pays_off);
        assert!(p.defs.is_empty());
        assert_eq!(expand(&p), devices);
    }

    #[test]
    fn nothing_shared_means_no_def() {
        let devices = vec![vec![(0, 1, 0), (1, 2, 0)], vec![(0, 3, 0)], vec![]];
        let p = plan(&devices, |_, _| true);
        assert!(p.defs.is_empty());
        assert_eq!(expand(&p), devices);
    }
}

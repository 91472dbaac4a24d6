//! Whole-state comparison of an engine pool with the model, and of a metadata image with
//! `check`. Every comparison returns a typed verdict, [`Mismatch`]: a state difference (a
//! readable diff naming the device, the virtual block, and what was expected and found), a
//! failed query, `check` findings, or a `check` panic. The runner decides by the variant,
//! never by the text.
//!
//! Invariants:
//! - Nothing here changes the pool except block-cache contents (queries only).
//! - A comparison is only asked for when the model's answers are specified: never while the
//!   transaction is poisoned or the pool is in fail mode.

use crate::disk::MemoryImage;
use engine::canary::Canaries;
use engine::format::{BlockTime, DeviceDetails};
use engine::thin::Pool;
use engine::thin::ThinId;
use model::{Device, Devices, Mapping, Model};
use std::collections::BTreeMap;

/// Devices as the engine shows them: details and mappings per thin id.
type EngineDevices = BTreeMap<u64, (DeviceDetails, Vec<(u64, BlockTime)>)>;

/// At most this many difference lines per diff (the first ones tell the story).
const MAX_DIFF_LINES: usize = 12;

/// Collects difference lines up to the bound.
#[derive(Default)]
pub struct Diff {
    lines: Vec<String>,
    more: usize,
}

impl Diff {
    pub fn push(&mut self, line: String) {
        if self.lines.len() < MAX_DIFF_LINES {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }

    pub fn into_result(self) -> Result<(), Mismatch> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let mut s = self.lines.join("\n");
        if self.more > 0 {
            s.push_str(&format!("\n... and {} more differences", self.more));
        }
        Err(Mismatch::State(s))
    }
}

/// What a comparison found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The pool's answers (or `check`'s totals) differ from the model's: lines of diff.
    State(String),
    /// The comparison could not be made: an engine query failed with this typed error (an
    /// injected I/O error is a class C outcome, not a difference).
    Query(String),
    /// `check` found damage in the image: what the format detected.
    CheckFindings(Vec<String>),
    /// `check` panicked: always an engine bug, whatever faults were injected.
    CheckPanicked(String),
    /// Every candidate state mismatched (after a crash: the old and the new commit), each
    /// in its own way.
    Candidates(Vec<(&'static str, Mismatch)>),
}

impl Mismatch {
    /// Whether this verdict, or any candidate's, satisfies `f`.
    fn any(&self, f: &dyn Fn(&Mismatch) -> bool) -> bool {
        match self {
            Mismatch::Candidates(c) => c.iter().any(|(_, m)| m.any(f)),
            m => f(m),
        }
    }

    pub fn check_panicked(&self) -> bool {
        self.any(&|m| matches!(m, Mismatch::CheckPanicked(_)))
    }

    pub fn query_failed(&self) -> bool {
        self.any(&|m| matches!(m, Mismatch::Query(_)))
    }

    /// Damage surfaced as a typed error or a `check` finding: detected, not a lie.
    pub fn detected(&self) -> bool {
        self.any(&|m| matches!(m, Mismatch::Query(_) | Mismatch::CheckFindings(_)))
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::State(d) => write!(f, "{d}"),
            Mismatch::Query(e) => write!(f, "engine query failed: {e}"),
            Mismatch::CheckFindings(v) => {
                let lines: Vec<String> = v.iter().map(|x| format!("check: {x}")).collect();
                write!(f, "{}", lines.join("\n"))
            }
            Mismatch::CheckPanicked(m) => write!(f, "check panicked: {m}"),
            Mismatch::Candidates(c) => {
                let parts: Vec<String> =
                    c.iter().map(|(n, m)| format!("against {n}:\n{m}")).collect();
                write!(f, "{}", parts.join("\n"))
            }
        }
    }
}

pub(crate) fn e2s(e: engine::Error) -> Mismatch {
    Mismatch::Query(e.to_string())
}

/// Compares everything the pool answers about its current state with the model: pool
/// values, every device's details and mappings, the held snapshot, needs_check, free data.
/// (`runner::memo` keys remembered verifications on what this and [`check_image`] read of
/// the model: keep its `ModelView` in step.)
pub fn compare_pool(pool: &Pool, model: &Model) -> Result<(), Mismatch> {
    let mut d = Diff::default();
    compare_values(pool, model, &mut d)?;
    let devices = pool.devices().map_err(e2s)?;
    let mut found: EngineDevices = BTreeMap::new();
    for (id, det) in devices {
        found.insert(id, (det, pool.mappings(ThinId(id)).map_err(e2s)?));
    }
    diff_devices("", &model.current().devices, &found, &mut d);
    compare_held(pool, model, &mut d)?;
    d.into_result()
}

/// Pool-wide values: time, transaction id, data size, needs_check, free data blocks.
pub(crate) fn compare_values(pool: &Pool, model: &Model, d: &mut Diff) -> Result<(), Mismatch> {
    let cur = model.current();
    let s = pool.summary().map_err(e2s)?;
    if s.time.0 != cur.time {
        d.push(format!("pool time: expected {}, found {}", cur.time, s.time));
    }
    if s.transaction_id.0 != cur.trans_id {
        d.push(format!("transaction id: expected {}, found {}", cur.trans_id, s.transaction_id));
    }
    if s.data_nr_blocks != cur.data_blocks {
        d.push(format!("data size: expected {}, found {}", cur.data_blocks, s.data_nr_blocks));
    }
    let nc = pool.needs_check().map_err(e2s)?;
    if Ok(nc) != model.needs_check() {
        d.push(format!("needs_check: expected {:?}, found {nc}", model.needs_check()));
    }
    let free = pool.get_free_block_count().map_err(e2s)?;
    if Ok(free) != model.free_data_blocks() {
        d.push(format!("free data blocks: expected {:?}, found {free}", model.free_data_blocks()));
    }
    Ok(())
}

/// The held metadata snapshot, in full.
pub(crate) fn compare_held(pool: &Pool, model: &Model, d: &mut Diff) -> Result<(), Mismatch> {
    match (pool.held_snapshot().map_err(e2s)?, &model.current().held) {
        (None, None) => {}
        (Some(h), Some(m)) => diff_devices("held snapshot: ", m, &h, d),
        (h, m) => d.push(format!(
            "held metadata snapshot: expected {}, found {}",
            if m.is_some() { "held" } else { "none" },
            if h.is_some() { "held" } else { "none" }
        )),
    }
    Ok(())
}

/// After an open (nothing allocated in this transaction): raw free + used = size, and the
/// used count the space map keeps equals a recount of its blocks with a non-zero count (the
/// kept count feeds the free count; the recount is the counts themselves).
pub fn compare_metadata_space(pool: &Pool) -> Result<(), Mismatch> {
    let size = pool.get_metadata_dev_size().map_err(e2s)?;
    let free = pool.get_raw_free_metadata_block_count().map_err(e2s)?;
    let used = pool.metadata_blocks_used().map_err(e2s)?;
    if free + used != size {
        return Err(Mismatch::State(format!(
            "metadata space: free {free} + used {used} != size {size}"
        )));
    }
    compare_metadata_counts(pool)
}

/// At any time: the used count the metadata space map keeps equals a recount of its blocks
/// with a non-zero count.
pub fn compare_metadata_counts(pool: &Pool) -> Result<(), Mismatch> {
    let used = pool.metadata_blocks_used().map_err(e2s)?;
    let counted = pool.metadata_blocks_counted().map_err(e2s)?;
    if used != counted {
        return Err(Mismatch::State(format!(
            "metadata space: {used} blocks kept as used, {counted} with a non-zero count"
        )));
    }
    Ok(())
}

pub(crate) fn diff_devices(what: &str, want: &Devices, found: &EngineDevices, d: &mut Diff) {
    for (id, dev) in want {
        match found.get(id) {
            None => d.push(format!("{what}device {id}: expected, missing in the engine")),
            Some((det, maps)) => {
                diff_details(what, *id, dev, det, d);
                diff_mappings(what, *id, dev, maps, d);
            }
        }
    }
    for id in found.keys().filter(|&id| !want.contains_key(id)) {
        d.push(format!("{what}device {id}: found in the engine, not expected"));
    }
}

/// A device's details: mapped blocks, transaction id, creation and snapshot times.
pub(crate) fn diff_details(what: &str, id: u64, dev: &Device, det: &DeviceDetails, d: &mut Diff) {
    let want = (dev.mapped_blocks(), dev.transaction_id, dev.creation_time, dev.snapshotted_time);
    let got =
        (det.mapped_blocks, det.transaction_id.0, det.creation_time.0, det.snapshotted_time.0);
    if want != got {
        d.push(format!(
            "{what}device {id}: details (mapped, trans_id, created, snapshotted) expected {want:?}, found {got:?}"
        ));
    }
}

/// A device's mappings against the engine's (ascending), by a merge of the two sorted lists.
pub(crate) fn diff_mappings(
    what: &str,
    id: u64,
    dev: &Device,
    maps: &[(u64, BlockTime)],
    d: &mut Diff,
) {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let mut want = dev.mappings.iter().peekable();
    let mut found = maps.iter().peekable();
    loop {
        let order = match (want.peek(), found.peek()) {
            (None, None) => return,
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (Some((wv, _)), Some((fv, _))) => wv.cmp(fv),
        };
        let (w, f) = match order {
            Less => (want.next(), None),
            Greater => (None, found.next()),
            Equal => (want.next(), found.next()),
        };
        let v = w.map(|(v, _)| v).or(f.map(|(v, _)| *v)).unwrap_or_default();
        diff_mapping(what, id, v, w.map(|(_, m)| m), f.map(|(_, bt)| *bt), d);
    }
}

/// One vblock's mapping: expected (model) against found (engine).
pub(crate) fn diff_mapping(
    what: &str,
    id: u64,
    v: u64,
    want: Option<Mapping>,
    found: Option<BlockTime>,
    d: &mut Diff,
) {
    let want = want.map(|m| (m.data_block, m.time));
    let found = found.map(|bt| (bt.data_block.0, bt.time.0));
    if want != found {
        let show = |x: Option<(u64, u32)>| match x {
            Some((b, t)) => format!("data {b} (time {t})"),
            None => "unmapped".to_owned(),
        };
        d.push(format!(
            "{what}device {id}: vblock {v}: expected {}, found {}",
            show(want),
            show(found)
        ));
    }
}

/// Runs `check` on `image` and compares its totals with the model's committed state.
pub fn check_image(image: &MemoryImage, model: &Model) -> Result<(), Mismatch> {
    check_image_with(image, image.to_device(), model, Canaries::NONE).map(drop)
}

/// [`check_image`] reading `image` through `dev` (a recording device, for the memo), with the
/// run's canaries (a broken `check` is one of them). Returns how
/// many leaked data blocks `check` reported: exactly the ones the model holds references to
/// outside the trees, or this is a mismatch ([`judge_leaks`]).
pub fn check_image_with(
    image: &MemoryImage,
    dev: Box<dyn engine::io::BlockDevice>,
    model: &Model,
    canaries: Canaries,
) -> Result<u64, Mismatch> {
    let c = model.committed();
    // `check` promises never to panic on any bytes; if it does, that is an engine bug to
    // report, not a reason to lose the rest of the campaign.
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let options = engine::tools::check::CheckOptions { canaries, ..Default::default() };
        engine::tools::check::check_with(dev, &BTreeMap::new(), options)
    }))
    .map_err(|p| {
        // For the bug report: `THINSIM_DUMP_DIR` keeps the image check panicked on.
        if let Some(dir) = std::env::var_os("THINSIM_DUMP_DIR") {
            let path = std::path::Path::new(&dir)
                .join(format!("check-panic-{:016x}.img", crate::disk::content_hash(image)));
            let _ = std::fs::write(path, image.to_bytes());
        }
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()));
        Mismatch::CheckPanicked(msg.unwrap_or_default())
    })?;
    let leaked = judge_leaks(&report, &c.caller_refs)?;
    let mut d = Diff::default();
    let mappings: u64 = c.devices.values().map(Device::mapped_blocks).sum();
    {
        if report.devices != c.devices.len() as u64 || report.mappings != mappings {
            d.push(format!(
                "check counted {} devices / {} mappings, the model has {} / {mappings}",
                report.devices,
                report.mappings,
                c.devices.len()
            ));
        }
        if report.transaction_id.0 != c.trans_id {
            d.push(format!(
                "check read transaction id {}, the model has {}",
                report.transaction_id, c.trans_id
            ));
        }
    }
    d.into_result().map(|()| leaked)
}

/// `check`'s findings against the model, `check` run as a user runs it (no references
/// handed in): the only findings allowed are data leaks, and they must be exactly the blocks
/// the model knows hold references no mapping accounts for (`caller_refs`: allocated and not
/// inserted, `inc_data_range` without a mapping), each leaked by exactly that many. This
/// judges `check` too: one that stopped reporting a leak (a non-fatal finding), or reported
/// one too many, fails here. Every other finding, warnings included, is a finding: the engine
/// writes exact counts and index entries, so a loose one is a bug here.
pub(crate) fn judge_leaks(
    report: &engine::tools::check::CheckReport,
    caller_refs: &BTreeMap<u64, u64>,
) -> Result<u64, Mismatch> {
    use engine::tools::check::Space;
    let mut reported = BTreeMap::new();
    let mut others = Vec::new();
    for f in &report.findings {
        match f.leak() {
            Some((Space::Data, b, stored, referenced)) => {
                reported.insert(b, u64::from(stored - referenced));
            }
            _ => others.push(f.to_string()),
        }
    }
    // A leak the model does not know of is a finding like any other (damage may make one).
    for (&b, &n) in &reported {
        if caller_refs.get(&b) != Some(&n) {
            others.push(format!("data block {b}: check reports {n} leaked references"));
        }
    }
    if !others.is_empty() {
        return Err(Mismatch::CheckFindings(others));
    }
    // The model keeps non-zero counts only, so every entry is a leak check must report.
    let missed: Vec<String> = caller_refs
        .iter()
        .filter(|(b, _)| !reported.contains_key(b))
        .map(|(b, n)| format!("data block {b}: {n} references no mapping accounts for"))
        .collect();
    if !missed.is_empty() {
        return Err(Mismatch::State(format!(
            "check reported no leak where the model holds references outside the trees:\n{}",
            missed.join("\n")
        )));
    }
    Ok(reported.len() as u64)
}

/// After a commit (details tree current): thin_ls numbers of the live pool and, when held, of
/// the metadata snapshot — mapped, exclusive and shared per device — against the model's.
pub fn compare_ls(pool: &Pool, model: &Model) -> Result<(), Mismatch> {
    use engine::thin::Source;
    let mut d = Diff::default();
    let mut sources = vec![(Source::Live, "", model::ls(&model.current().devices))];
    if let Some(held) = &model.current().held {
        sources.push((Source::MetadataSnap(None), "held snapshot ", model::ls(held)));
    }
    for (source, what, want) in sources {
        let (rows, _) = engine::tools::dump::ls_rows(pool, source)
            .map_err(|e| Mismatch::Query(e.to_string()))?;
        let found: BTreeMap<u64, (u64, u64, u64)> = rows
            .iter()
            .map(|r| (r.dev_id, (r.mapped_blocks, r.exclusive_blocks, r.shared_blocks())))
            .collect();
        let want: BTreeMap<u64, (u64, u64, u64)> =
            want.iter().map(|(id, r)| (*id, (r.mapped, r.exclusive, r.shared))).collect();
        if found != want {
            d.push(format!(
                "{what}ls (mapped, exclusive, shared): expected {want:?}, found {found:?}"
            ));
        }
    }
    d.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::io::MemoryDevice;
    use engine::thin::{DataBlock, PoolOptions, ThinId, VBlock};

    /// A committed pool holding references no mapping accounts for: one allocated block
    /// never inserted, `inc_data_range` over two blocks (one of them twice over), and once
    /// over a block a mapping also references (stored 2, referenced 1); the model that says
    /// the same; and the image.
    fn leaky() -> (MemoryImage, Model) {
        let pool =
            Pool::open(Box::new(MemoryDevice::new(256)), PoolOptions::new(128)).expect("format");
        let mut m = Model::new(0);
        pool.resize_data_dev(100).and_then(|()| pool.commit()).expect("size");
        m.resize_data_dev(100).and_then(|()| m.commit()).expect("size");
        pool.create_thin(ThinId(1)).expect("create");
        m.create_thin(1).expect("create");
        let (h, mh) =
            (pool.open_thin_device(ThinId(1)).expect("open"), m.open_thin(1).expect("open"));
        let mapped = pool.alloc_data_block().expect("a block");
        m.alloc_data_block_check(mapped.0).expect("the model agrees");
        pool.insert_block(&h, VBlock(0), mapped).expect("insert");
        m.insert_block(mh, 0, mapped.0).expect("insert");
        pool.close_thin_device(h);
        m.close_thin(mh).expect("close");
        pool.inc_data_range(mapped, DataBlock(mapped.0 + 1)).expect("inc");
        m.inc_data_range(mapped.0, mapped.0 + 1).expect("inc");
        let b = pool.alloc_data_block().expect("a block");
        m.alloc_data_block_check(b.0).expect("the model agrees");
        pool.inc_data_range(DataBlock(10), DataBlock(12)).expect("inc");
        m.inc_data_range(10, 12).expect("inc");
        pool.inc_data_range(DataBlock(11), DataBlock(12)).expect("inc");
        m.inc_data_range(11, 12).expect("inc");
        pool.commit().expect("commit");
        m.commit().expect("commit");
        let mut device = pool.close().map_err(|e| format!("{e:?}")).expect("close");
        let mut image = MemoryDevice::new(device.nr_blocks());
        let mut buf = [0u8; 4096];
        for b in 0..device.nr_blocks() {
            device.read(b, &mut buf).expect("read back");
            image.block_mut(b).copy_from_slice(&buf);
        }
        (image, m)
    }

    /// `check` run as a user runs it reports each block the model holds outside the trees as
    /// leaked by exactly that many references; the judge passes that, and fails a model (or
    /// a `check`) that disagrees by one block or one reference either way.
    #[test]
    fn check_must_report_exactly_the_leaks_the_model_holds() {
        let (image, m) = leaky();
        let refs = &m.committed().caller_refs;
        assert_eq!(refs.values().sum::<u64>(), 5, "{refs:?}");
        check_image(&image, &m).expect("check reports exactly the model's leaks");
        let report = engine::tools::check::check(image.to_device());
        assert_eq!(report.leaks().len(), 4, "four blocks leak: {:?}", report.findings);
        let (_, _, stored, referenced) =
            report.leaks().into_iter().find(|l| l.3 > 0).expect("the mapped block leaks too");
        assert_eq!((stored, referenced), (2, 1));

        let mut fewer = refs.clone();
        let (&b, _) = fewer.iter().next().expect("a block");
        fewer.remove(&b);
        let e = judge_leaks(&report, &fewer).expect_err("a leak the model does not know");
        assert!(matches!(e, Mismatch::CheckFindings(_)), "{e:?}");

        let mut more = refs.clone();
        more.insert(50, 1);
        let e = judge_leaks(&report, &more).expect_err("check must report block 50");
        assert!(matches!(e, Mismatch::State(_)), "{e:?}");

        let mut off_by_one = refs.clone();
        *off_by_one.get_mut(&11).expect("block 11") += 1;
        judge_leaks(&report, &off_by_one).expect_err("11 leaks two references, not three");

        // A `check` that stopped reporting leaks (its findings dropped) fails the judge.
        let mut silent = report.clone();
        silent.findings.clear();
        let e = judge_leaks(&silent, refs).expect_err("no leak reported");
        assert!(matches!(e, Mismatch::State(_)), "{e:?}");
    }
}

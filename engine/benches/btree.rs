//! Btree benchmark: insert, lookup and remove of N keys (default 10^6; THINSIM_BENCH_KEYS),
//! sequential and random, engine btree (cache-hot, in-memory device) side by side with
//! `std::collections::BTreeMap`, in one run. Writes reports/bench/btree.{json,md}.
//!
//! Targets (issue): cache-hot lookups within 5× of BTreeMap, inserts within 10×.

use engine::block_manager::BlockManager;
use engine::btree::{self, ReadMode, ValueKind};
use engine::io::MemoryDevice;
use engine::space_map::metadata_commit;
use engine::transaction::TransactionManager;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const VK: ValueKind<'static> = &btree::Plain { size: 8, tree: engine::events::Tree::Overflow };

struct Row {
    op: &'static str,
    order: &'static str,
    engine_ns: f64,
    btreemap_ns: f64,
}

fn per_op(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn engine_run(keys: &[u64]) -> (f64, f64, f64) {
    let n = keys.len();
    let meta_blocks = (n as u64 / 80 + 1024).min(engine::limits::MAX_METADATA_BLOCKS);
    let bm = BlockManager::new(Box::new(MemoryDevice::new(meta_blocks)), meta_blocks as usize + 64);
    let mut tm = TransactionManager::new(bm);
    metadata_commit::format(&mut tm, meta_blocks).unwrap();
    let mut root = btree::empty(&mut tm, VK).unwrap();
    let t = Instant::now();
    for &k in keys {
        root = btree::insert(&mut tm, VK, root, k, &k.to_le_bytes()).unwrap().0;
    }
    let insert = per_op(t, n);
    let t = Instant::now();
    for &k in keys {
        black_box(btree::lookup_u64(&tm, root, VK, k, ReadMode::Blocking).unwrap());
    }
    let lookup = per_op(t, n);
    let t = Instant::now();
    for &k in keys {
        root = btree::remove(&mut tm, VK, root, k).unwrap().0;
    }
    let remove = per_op(t, n);
    (insert, lookup, remove)
}

fn btreemap_run(keys: &[u64]) -> (f64, f64, f64) {
    let n = keys.len();
    let mut m = BTreeMap::new();
    let t = Instant::now();
    for &k in keys {
        m.insert(k, k);
    }
    let insert = per_op(t, n);
    let t = Instant::now();
    for &k in keys {
        black_box(m.get(&k));
    }
    let lookup = per_op(t, n);
    let t = Instant::now();
    for &k in keys {
        m.remove(&k);
    }
    let remove = per_op(t, n);
    (insert, lookup, remove)
}

fn main() {
    let n: usize =
        std::env::var("THINSIM_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let sequential: Vec<u64> = (0..n as u64).collect();
    let mut random = sequential.clone();
    random.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let mut rows = Vec::new();
    for (order, keys) in [("sequential", &sequential), ("random", &random)] {
        let e = engine_run(keys);
        let b = btreemap_run(keys);
        rows.push(Row { op: "insert", order, engine_ns: e.0, btreemap_ns: b.0 });
        rows.push(Row { op: "lookup", order, engine_ns: e.1, btreemap_ns: b.1 });
        rows.push(Row { op: "remove", order, engine_ns: e.2, btreemap_ns: b.2 });
    }
    let mut md = format!("# Btree benchmark ({n} keys, cache-hot, one transaction)\n\n");
    md.push_str("| op | order | engine ns/op | BTreeMap ns/op | ratio |\n|---|---|---|---|---|\n");
    let mut json = String::from("{\n  \"keys\": ");
    json.push_str(&format!("{n},\n  \"rows\": [\n"));
    for (i, r) in rows.iter().enumerate() {
        let ratio = r.engine_ns / r.btreemap_ns;
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.1}× |\n",
            r.op, r.order, r.engine_ns, r.btreemap_ns, ratio
        ));
        json.push_str(&format!(
            "    {{\"op\": \"{}\", \"order\": \"{}\", \"engine_ns_per_op\": {:.1}, \"btreemap_ns_per_op\": {:.1}, \"ratio\": {:.2}}}{}\n",
            r.op, r.order, r.engine_ns, r.btreemap_ns, ratio, if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("  ]\n}\n");
    md.push_str("\nTargets: lookups within 5×, inserts within 10× of BTreeMap.\n");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("btree.json"), json).unwrap();
    std::fs::write(dir.join("btree.md"), &md).unwrap();
    print!("{md}");
}

//! The engine's layers import one way: the module graph read from the sources (`crate::`
//! and `super::` paths outside test modules) has no cycle, and the layers the crate doc
//! names sit in its order. A module is a top-level module of `src/`, except that the space
//! maps are split by file (the in-core metadata map sits below the transaction manager;
//! the code that reads and writes space maps on disk sits above the btree), and the tools
//! are split by file (each tool is its own node one floor above the pool API).

#[path = "common/module_graph.rs"]
mod module_graph;

use module_graph::{code, find_cycle, idents_after, module_path, reaches, rust_files};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Directories whose files are separate nodes.
const SPLIT: [&str; 2] = ["space_map", "tools"];

/// The node a path names, if it names a module of the crate (not an item of `lib.rs`).
fn node_named(src: &Path, path: &[String]) -> Option<String> {
    let top = path.first()?;
    let is_module = |p: &Path| p.with_extension("rs").is_file() || p.join("mod.rs").is_file();
    if !is_module(&src.join(top)) {
        return None;
    }
    match path.get(1) {
        // `space_map::OVERFLOW_VALUES` is the directory's own node; `space_map::data` is
        // the file's.
        Some(sub) if SPLIT.contains(&top.as_str()) && is_module(&src.join(top).join(sub)) => {
            Some(format!("{top}::{sub}"))
        }
        _ => Some(top.clone()),
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src, &[]);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let module = module_path(&src, &f);
        let Some(me) = node_named(&src, &module) else { continue };
        let text = code(&std::fs::read_to_string(&f).expect("readable"));
        let mut targets = idents_after(&text, "crate::");
        // `super::x` names a sibling: from `a/b.rs` (module `a::b`) it is `a::x`; from
        // `a/b/mod.rs` (also module `a::b`) the same.
        let parent = &module[..module.len().saturating_sub(1)];
        for p in idents_after(&text, "super::") {
            targets.push(parent.iter().cloned().chain(p).collect());
        }
        let edges = g.entry(me.clone()).or_default();
        for t in targets {
            if let Some(n) = node_named(&src, &t).filter(|n| *n != me) {
                edges.insert(n);
            }
        }
    }
    g
}

#[test]
fn the_engine_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() >= 12, "too few modules found: {:?}", g.keys().collect::<Vec<_>>());
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn layers_import_only_downwards() {
    let g = graph();
    // Each pair: the first is below the second and must not reach it.
    let below_above = [
        ("io", "format"),
        ("format", "block_manager"),
        ("block_manager", "transaction"),
        ("space_map::metadata", "transaction"),
        ("transaction", "btree"),
        ("transaction", "space_map::metadata_commit"),
        ("transaction", "space_map::data"),
        ("btree", "space_map::data"),
        ("btree", "thin"),
        ("space_map::data", "thin"),
        ("space_map::metadata_commit", "thin"),
    ];
    for (low, high) in below_above {
        assert!(g.contains_key(low) && g.contains_key(high), "{low} or {high} not found");
        assert!(!reaches(&g, low, high), "{low} imports {high} (directly or not): {g:?}");
    }
    // The graph is read, not assumed: the upward edges exist.
    for (high, low) in
        [("thin", "btree"), ("btree", "transaction"), ("transaction", "block_manager")]
    {
        assert!(g[high].contains(low), "{high} should import {low}: {:?}", g[high]);
    }
}

/// The offline tools are a floor above the pool: nothing at or below `thin` reaches any of
/// them, dump and restore reach the pool, and `check` — the independent oracle — reaches
/// no tree-walking code of the engine (neither the btree nor anything above it).
#[test]
fn the_tools_sit_above_the_pool_and_check_walks_its_own_trees() {
    let g = graph();
    let tools: Vec<&String> = g.keys().filter(|k| k.starts_with("tools::")).collect();
    assert!(tools.len() >= 8, "tool modules: {tools:?}");
    for t in &tools {
        for low in ["thin", "btree", "transaction", "space_map::data", "block_manager"] {
            assert!(!reaches(&g, low, t), "{low} imports {t}: {:?}", g[low]);
        }
    }
    for engine_walker in ["btree", "thin", "transaction", "space_map::data"] {
        assert!(
            !reaches(&g, "tools::check", engine_walker),
            "check reaches {engine_walker}: {:?}",
            g["tools::check"]
        );
    }
    for tool in ["tools::dump", "tools::restore"] {
        assert!(g[tool].contains("thin"), "{tool} should build on the pool: {:?}", g[tool]);
    }
}

/// The parser itself: a grouped `use` and a `super::` path both count.
#[test]
fn the_reader_sees_grouped_and_relative_paths() {
    let paths = idents_after("use crate::{btree::{self, X}, io::Block};", "crate::");
    assert_eq!(paths[0][0], "btree");
    assert!(paths.iter().any(|p| p[0] == "io"), "{paths:?}");
    let rel = idents_after("use super::metadata::MetadataSpaceMap;", "super::");
    assert_eq!(rel[0], vec!["metadata".to_string(), "MetadataSpaceMap".to_string()]);
}

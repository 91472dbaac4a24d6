//! The engine's layers import one way: the module graph read from the sources (`crate::`
//! and `super::` paths outside test modules) has no cycle, and the layers the crate doc
//! names sit in its order. A module is a top-level module of `src/`, except that the space
//! maps are split by file (the in-core metadata map sits below the transaction manager;
//! the code that reads and writes space maps on disk sits above the btree), and the tools
//! are split by file (each tool is its own node one floor above the pool API).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directories whose files are separate nodes.
const SPLIT: [&str; 2] = ["space_map", "tools"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `space_map/data.rs` is `["space_map", "data"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> =
        rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The paths that follow `prefix` in `s`: `crate::a::b` gives `[a, b]`, and a group
/// `crate::{a::{self, b}, c}` gives one path per top-level item (`[a]`, `[c]`).
fn idents_after(s: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let path_of = |text: &str| -> Vec<String> {
        text.split("::")
            .map(str::trim)
            .take_while(|p| !p.is_empty() && p.chars().all(ident))
            .map(str::to_string)
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(prefix) {
        let glued = rest[..i].chars().last().is_some_and(ident);
        rest = &rest[i + prefix.len()..];
        if glued {
            continue;
        }
        let Some(inner) = rest.strip_prefix('{') else {
            let end = rest.find(|c: char| !(ident(c) || c == ':')).unwrap_or(rest.len());
            out.push(path_of(&rest[..end]));
            continue;
        };
        // Split the group at its top-level commas.
        let (mut depth, mut item) = (0usize, String::new());
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(path_of(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        out.push(path_of(&item));
    }
    out.retain(|p| !p.is_empty());
    out
}

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
    let mut files = Vec::new();
    rust_files(&src, &mut files);
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

/// A cycle, if any (depth-first over the graph).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = dfs(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = dfs(g, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(g.get(&n).into_iter().flatten().cloned());
        }
    }
    false
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

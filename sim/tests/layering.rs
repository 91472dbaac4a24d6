//! No import circle anywhere in the workspace, file by file, and the simulator's floors in
//! the order its crate doc (`sim/src/lib.rs`) names them. The reader is the engine's layering
//! test's (`engine/tests/common/module_graph.rs`): `crate::`, `super::`, `self::` and child
//! module paths outside test modules, a file's own ancestors not counted.

#[path = "../../engine/tests/common/module_graph.rs"]
mod module_graph;

use module_graph::{file_graph, find_cycle, reaches_any};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// Each crate root of the workspace (and the fuzz crate) with the directories that belong
/// to another root.
fn roots() -> Vec<(PathBuf, Vec<&'static str>)> {
    let w = workspace();
    vec![
        (w.join("engine/src"), vec![]),
        (w.join("model/src"), vec![]),
        (w.join("sim/src"), vec!["bin"]),
        (w.join("sim/src/bin/thinsim"), vec![]),
        (w.join("fuzz/fuzz_targets"), vec![]),
    ]
}

fn sim_lib() -> Graph {
    file_graph(&workspace().join("sim/src"), &["bin"])
}

#[test]
fn no_crate_of_the_workspace_has_an_import_circle() {
    let mut files = 0;
    for (src, skip) in roots() {
        let g = file_graph(&src, &skip);
        files += g.len();
        if src.ends_with("bin/thinsim") {
            // Read, not assumed: the subcommands reach their shared parsers and each other.
            let swarm = &g["cli/swarm.rs"];
            assert!(swarm.contains("cli/args.rs") && swarm.contains("cli/shrink.rs"), "{swarm:?}");
        }
        if let Some(c) = find_cycle(&g) {
            panic!("import circle in {}: {}", src.display(), c.join(" -> "));
        }
    }
    assert!(files >= 120, "too few files read: {files}");
}

/// The simulator's floors, bottom up; each floor is a file or a directory of `sim/src`.
/// Nothing on a floor reaches a floor above it.
const FLOORS: [&[&str]; 5] = [
    &["fnv.rs"],
    &["entropy.rs"],
    &["disk/"],
    &["runner/"],
    &["shrink.rs", "explore.rs", "report/", "fuzzing/", "kernel/"],
];

fn on(floor: &[&str], node: &str) -> bool {
    floor.iter().any(|f| node == *f || (f.ends_with('/') && node.starts_with(f)))
}

#[test]
fn the_simulator_imports_only_downwards() {
    let g = sim_lib();
    for (i, low) in FLOORS.iter().enumerate() {
        let nodes: Vec<&String> = g.keys().filter(|n| on(low, n)).collect();
        assert!(!nodes.is_empty(), "floor {low:?} has no file");
        for high in &FLOORS[i + 1..] {
            for n in &nodes {
                assert!(
                    !reaches_any(&g, n, |m| on(high, m)),
                    "{n} (floor {low:?}) reaches floor {high:?}: {:?}",
                    g[*n]
                );
            }
        }
    }
    // Beside each other on the top floor: only the front end and the tests use the kernel
    // wing, and the fuzz targets' bodies reach neither the kernel nor the reports.
    for n in g.keys().filter(|n| !n.starts_with("kernel/")) {
        assert!(!reaches_any(&g, n, |m| m.starts_with("kernel/")), "{n} reaches the kernel wing");
    }
    for n in g.keys().filter(|n| n.starts_with("fuzzing/")) {
        assert!(!reaches_any(&g, n, |m| m.starts_with("report/")), "{n} reaches the reports");
    }
    // The graph is read, not assumed: the downward edges exist.
    for (high, low) in [
        ("runner/mod.rs", "disk/mod.rs"),
        ("kernel/crash.rs", "runner/oracle.rs"),
        ("shrink.rs", "runner/mod.rs"),
    ] {
        assert!(g[high].contains(low), "{high} should import {low}: {:?}", g[high]);
    }
}

/// The check can fail: a two-file circle written to a scratch crate is found, and a child's
/// use of its parent is not one.
#[test]
fn a_circle_is_found_and_the_module_tree_is_not_one() {
    let dir = tempfile::tempdir().expect("a scratch dir");
    let src = dir.path();
    std::fs::create_dir(src.join("a")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a;\npub struct Root;\n").expect("write");
    std::fs::write(src.join("a/mod.rs"), "mod b;\nmod c;\nuse b::B;\n").expect("write");
    std::fs::write(src.join("a/b.rs"), "use super::super::Root;\npub struct B;\n").expect("write");
    std::fs::write(src.join("a/c.rs"), "use crate::a::b::B;\n").expect("write");
    let g = file_graph(src, &[]);
    assert_eq!(find_cycle(&g), None, "{g:?}");
    assert!(g["a/mod.rs"].contains("a/b.rs") && g["a/c.rs"].contains("a/b.rs"), "{g:?}");
    std::fs::write(src.join("a/b.rs"), "use super::c;\npub struct B;\n").expect("write");
    let cycle = find_cycle(&file_graph(src, &[])).expect("b -> c -> b is a circle");
    assert!(cycle.contains(&"a/b.rs".to_string()) && cycle.contains(&"a/c.rs".to_string()));
}

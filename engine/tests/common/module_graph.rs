//! The import graph of a crate's sources, read as text, for the layering tests of the engine
//! (`engine/tests/layering.rs`) and of the whole workspace (`sim/tests/layering.rs`).
//!
//! What counts as an import: a `crate::`, `super::` or `self::` path anywhere in a file's
//! code (test modules and comment lines left out), and in a file that declares child
//! modules, a path that starts with a child's name. A path names the deepest module file
//! that exists along it, so `crate::runner::oracle::Mismatch` is an edge to
//! `runner/oracle.rs`, and `super::Runner` from `runner/recovery.rs` one to `runner/mod.rs`.
//!
//! A file's use of its own ancestors (the modules that declare it, up to the crate root) is
//! the module tree, not a layering claim, and is no edge: `impl Runner` split over
//! `runner/*.rs` reads `super::Runner` by design. Every other edge counts, so two siblings
//! that import each other, or a parent that imports a child that imports a sibling that
//! imports the parent's child back, are a cycle.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, except under the directories in `skip` (paths relative to
/// `dir`), in a stable order.
pub fn rust_files(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("readable source directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).expect("under the root");
            if p.is_dir() {
                if !skip.iter().any(|s| rel == Path::new(s)) {
                    walk(root, &p, skip, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// The module path of a file: `space_map/data.rs` is `["space_map", "data"]`; `lib.rs`,
/// `main.rs` and a directory's `mod.rs` name the directory's module.
pub fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> =
        rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        parts.pop();
    }
    parts
}

/// The code of a file without its test module and comments.
pub fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The paths that follow `prefix` in `s`: `crate::a::b` gives `[a, b]`, and a group
/// `crate::{a::{self, b}, c}` gives one path per top-level item (`[a]`, `[c]`). A prefix
/// glued to an identifier before it (`xcrate::`) is not one.
pub fn idents_after(s: &str, prefix: &str) -> Vec<Vec<String>> {
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
        let glued = rest[..i].chars().last().is_some_and(|c| ident(c) || c == ':');
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

/// The child modules a file declares (`mod x;` and `pub mod x;`, any visibility).
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest =
                l.strip_prefix("pub ").or_else(|| l.strip_prefix("pub(crate) ")).unwrap_or(l);
            let rest = rest.strip_prefix("pub(super) ").unwrap_or(rest);
            let name = rest.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// The file of module `path` under `src`, if it has one of its own.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    let base: PathBuf = path.iter().collect();
    if path.is_empty() {
        return ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.is_file());
    }
    [src.join(&base).with_extension("rs"), src.join(&base).join("mod.rs")]
        .into_iter()
        .find(|p| p.is_file())
}

/// The deepest module file along an absolute path.
fn deepest_file(src: &Path, path: &[String]) -> Option<PathBuf> {
    (0..=path.len()).rev().find_map(|n| file_of(src, &path[..n]))
}

/// A crate's file graph: each file (by path relative to `src`) and the files it imports.
pub fn file_graph(src: &Path, skip: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let rel = |p: &Path| p.strip_prefix(src).expect("under src").display().to_string();
    let mut g = BTreeMap::new();
    for f in rust_files(src, skip) {
        let module = module_path(src, &f);
        let text = code(&std::fs::read_to_string(&f).expect("readable source"));
        let mut targets: Vec<Vec<String>> = idents_after(&text, "crate::");
        // `super::super::x` arrives as `[super, x]`: the second prefix is glued to the first.
        for p in idents_after(&text, "super::") {
            let mut up = module[..module.len().saturating_sub(1)].to_vec();
            let mut rest = p.as_slice();
            while rest.first().is_some_and(|s| s == "super") {
                up.pop();
                rest = &rest[1..];
            }
            targets.push(up.into_iter().chain(rest.iter().cloned()).collect());
        }
        let children = declared_children(&text);
        let mut own = idents_after(&text, "self::");
        for c in &children {
            own.extend(
                idents_after(&text, &format!("{c}::"))
                    .into_iter()
                    .map(|p| std::iter::once(c.clone()).chain(p).collect::<Vec<_>>()),
            );
        }
        targets.extend(own.into_iter().map(|p| module.iter().cloned().chain(p).collect()));
        let ancestors: BTreeSet<PathBuf> =
            (0..module.len()).filter_map(|n| file_of(src, &module[..n])).collect();
        let edges: BTreeSet<String> = targets
            .iter()
            .filter_map(|t| deepest_file(src, t))
            .filter(|t| *t != f && !ancestors.contains(t))
            .map(|t| rel(&t))
            .collect();
        g.insert(rel(&f), edges);
    }
    g
}

/// A cycle, if any (depth-first over the graph), as the nodes around it.
pub fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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

/// Whether `to` can be reached from `from`.
pub fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    reaches_any(g, from, |n| n == to)
}

/// Whether a node for which `hit` holds can be reached from `from`.
pub fn reaches_any(
    g: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    hit: impl Fn(&str) -> bool,
) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        if hit(&n) {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(g.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

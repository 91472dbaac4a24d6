//! The human page of a campaign: one self-contained HTML file with inline SVG charts (op
//! mix, outcome classes, fault × phase heat map), the classes of runs with their crash-image
//! rates, the structural coverage table, and the failure list with replay lines.
//!
//! Invariant: the page is a pure function of the summary (no clock), so equal summaries
//! render byte-identical pages.

use super::{Summary, REACHABLE_EXPECTED};
use crate::disk::FaultKind;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A horizontal bar chart of labelled counts.
fn bars(title: &str, rows: &[(String, u64)]) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let h = 20 * rows.len() + 30;
    let mut s = format!(
        "<h3>{}</h3><svg xmlns='http://www.w3.org/2000/svg' width='720' height='{h}' font-size='12'>",
        esc(title)
    );
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = 20 * i + 10;
        let w = (*n as f64 / max * 440.0).round();
        let _ = write!(
            s,
            "<text x='0' y='{}'>{}</text><rect x='190' y='{y}' width='{w}' height='14' fill='#4a7fb5'/>\
             <text x='{}' y='{}'>{n}</text>",
            y + 11,
            esc(label),
            195.0 + w,
            y + 11
        );
    }
    s.push_str("</svg>");
    s
}

/// Fault kinds × phase (inside a commit or not, metadata snapshot held or not); colour is
/// log-scaled count, blank = never fired; the expected count beside it where the rates give
/// one, and a red outline where an enforced cell stayed at zero.
fn heat_map(s: &Summary) -> String {
    let cols = [(false, false), (false, true), (true, false), (true, true)];
    let names = ["outside commit", "outside, snap held", "in commit", "in commit, snap held"];
    let mut out = String::from(
        "<h3>Fault × phase coverage</h3><svg xmlns='http://www.w3.org/2000/svg' width='720' \
         height='330' font-size='12'>",
    );
    for (c, n) in names.iter().enumerate() {
        let _ = write!(out, "<text x='{}' y='14'>{n}</text>", 150 + c * 140);
    }
    let count = |kind: FaultKind, (in_commit, held): (bool, bool)| -> u64 {
        s.coverage
            .cells()
            .iter()
            .filter(|(k, _)| k.fault == kind && k.in_commit == in_commit && k.snap_held == held)
            .map(|(_, n)| n)
            .sum()
    };
    let max = FaultKind::ALL
        .iter()
        .flat_map(|k| cols.iter().map(move |c| (*k, *c)))
        .map(|(k, c)| count(k, c))
        .max();
    let max = max.unwrap_or(1).max(1) as f64;
    // Expected counts (summed over block kinds) where the runs' rates and I/O give them; a
    // phase holding an enforced cell that never fired is outlined in red.
    let expected = |kind: FaultKind, (in_commit, held): (bool, bool)| {
        let cells = s.expected_cells.iter();
        let mine: Vec<_> = cells
            .filter(|(k, _)| k.fault == kind && k.in_commit == in_commit && k.snap_held == held)
            .collect();
        let sum: f64 = mine.iter().map(|(_, e)| **e).sum();
        let gap = mine.iter().any(|(k, e)| **e >= REACHABLE_EXPECTED && s.coverage.count(k) == 0);
        (sum, gap)
    };
    for (r, kind) in FaultKind::ALL.iter().enumerate() {
        let y = 22 + r * 22;
        let _ = write!(out, "<text x='0' y='{}'>{kind:?}</text>", y + 14);
        for (c, col) in cols.iter().enumerate() {
            let n = count(*kind, *col);
            let (e, gap) = expected(*kind, *col);
            // Log scale: one event is already visible, the busiest cell is darkest.
            let shade =
                if n == 0 { 255 } else { 220 - ((n as f64).ln_1p() / max.ln_1p() * 180.0) as u32 };
            let stroke = if gap { "red' stroke-width='2" } else { "#ccc" };
            let label = if e >= 0.5 { format!("{n} (~{e:.0} expected)") } else { n.to_string() };
            let _ = write!(
                out,
                "<rect x='{}' y='{y}' width='136' height='20' fill='rgb({shade},{shade},255)' \
                 stroke='{stroke}'/><text x='{}' y='{}'>{label}</text>",
                150 + c * 140,
                155 + c * 140,
                y + 14
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Runs, crash images and crash images per core-second of each class of run.
fn classes_table(s: &Summary) -> String {
    let mut h = String::from(
        "<h3>Classes of runs</h3><table border='1' cellpadding='3'><tr><th>class</th>\
         <th>runs</th><th>steps</th><th>crash images</th><th>of them remembered</th>\
         <th>crash images / core-second</th></tr>",
    );
    for (class, c) in &s.classes {
        let rate = if c.run_seconds > 0.0 {
            format!("{:.0}", c.crash_images_per_core_s())
        } else {
            "–".to_owned()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td></tr>",
            class.name(),
            c.runs,
            c.steps,
            c.crash_images,
            c.crash_images_memo
        );
    }
    h.push_str("</table>");
    h
}

/// The enforced structural counters (red: a reachable zero) and every other counter.
fn structure_table(s: &Summary) -> String {
    let mut h = String::from(
        "<h3>Structural coverage</h3><p>What the engine's trees and space maps did, from its \
         own counters. A row is enforced once the campaign holds the runs of the classes that \
         reach it; an enforced row below its bound fails the campaign.</p>\
         <table border='1' cellpadding='3'><tr><th>counter</th><th>value</th><th>needs</th>\
         <th>runs reaching it</th><th>reached by</th><th>runs of those</th>\
         <th>enforced from</th></tr>",
    );
    for r in &s.structure_table {
        let style = if r.gap { " style='background:#f4c7c7'" } else { "" };
        let _ = write!(
            h,
            "<tr{style}><td>{}</td><td>{}</td><td>≥ {}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(&r.name),
            r.count,
            r.at_least,
            r.runs_reaching,
            esc(&r.classes.join(", ")),
            r.runs,
            r.min_runs
        );
    }
    h.push_str("</table><h4>Every counter</h4><table border='1' cellpadding='3'>");
    for (name, n) in &s.structure.0 {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(name));
    }
    h.push_str("</table><h4>Not enforced</h4><ul>");
    for (name, why) in super::structure::UNENFORCED {
        let _ = write!(h, "<li><code>{}</code>: {}</li>", esc(name), esc(why));
    }
    h.push_str("</ul>");
    h
}

/// Every oracle: what makes it due, and how often it was due, ran and fired (red: due and
/// never ran).
fn oracle_table(s: &Summary) -> String {
    let mut h = String::from(
        "<h3>Oracles</h3><p>Every check that can fail a run. One due at least 30 times that \
         never ran fails the campaign.</p><table border='1' cellpadding='3'><tr>\
         <th>oracle</th><th>due by</th><th>due</th><th>ran</th><th>fired</th></tr>",
    );
    for r in &s.oracle_table {
        let style = if r.gap { " style='background:#f4c7c7'" } else { "" };
        let due = r.due.map_or_else(|| "replays only".to_owned(), |n| n.to_string());
        let _ = write!(
            h,
            "<tr{style}><td>{}</td><td>{}</td><td>{due}</td><td>{}</td><td>{}</td></tr>",
            esc(r.oracle.name()),
            esc(&r.due_by),
            r.ran,
            r.fired
        );
    }
    h.push_str("</table>");
    h
}

pub fn render_html(s: &Summary) -> String {
    let st = &s.stats;
    let o = &st.outcomes;
    let mut h = format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>thinsim {}</title></head><body>\
         <h1>thinsim campaign {}</h1><p><b>{}</b> — {} runs, {} steps, {} commits, {} crashes \
         ({} inside commits), {} crash images checked, {:.1} s wall; {:.1} runs/s, {:.0} \
         crash images/s.{}</p>",
        esc(&s.name),
        esc(&s.name),
        if s.passed() { "PASSED" } else { "FAILED" },
        st.runs,
        st.steps,
        st.commits,
        st.crashes,
        st.crashes_in_commit,
        st.crash_images_checked,
        s.wall_seconds,
        s.throughput.runs_per_s,
        s.throughput.crash_images_per_s,
        s.canary.as_ref().map(|c| format!(" Canary: {}.", esc(c))).unwrap_or_default()
    );
    h.push_str(&format!(
        "<p>Data device: {} writes of provisioned blocks, {} pre-commit flushes, {} mapped \
         blocks found durable after recoveries (the data-durability oracle).</p>",
        st.data_writes, st.data_flushes, st.data_blocks_verified
    ));
    h.push_str(&format!(
        "<p>Verification: of {} crash images, {} were judged by a remembered verification (an \
         image holding the same bytes in every block a passing verification read, against the \
         same candidates: <code>runner::memo</code>) and {} in full; of {} recoveries, {} by a \
         remembered verification. Commits: {} verified incrementally, {} in full with \
         <code>check</code>.</p>",
        st.crash_images_checked,
        st.crash_images_memo,
        st.crash_images_checked - st.crash_images_memo,
        st.recoveries,
        st.recoveries_memo,
        st.incremental_checks,
        st.commit_checks
    ));
    let ops: Vec<(String, u64)> = st.ops.iter().map(|(k, n)| (format!("{k:?}"), *n)).collect();
    h.push_str(&bars("Op mix", &ops));
    let outcomes = vec![
        ("A exact".to_owned(), o.a_exact),
        ("A new state".to_owned(), o.a_new_state),
        ("B recovered".to_owned(), o.b_recovered),
        ("B detected".to_owned(), o.b_detected),
        ("B undetectable".to_owned(), o.b_undetectable),
        ("C errors".to_owned(), o.c_errors),
        ("C aborts".to_owned(), o.c_aborts),
        ("C fail modes".to_owned(), o.c_fail_modes),
        ("C recovered".to_owned(), o.c_recovered),
    ];
    h.push_str(&bars("Outcome classes", &outcomes));
    h.push_str(&repair_table(st));
    h.push_str(&heat_map(s));
    h.push_str(&classes_table(s));
    h.push_str(&structure_table(s));
    h.push_str(&oracle_table(s));
    if !st.undetectable_reasons.is_empty() {
        h.push_str("<h3>Undetectable class B outcomes</h3><ul>");
        for (why, n) in &st.undetectable_reasons {
            let _ = write!(h, "<li>{n} × {}</li>", esc(why));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h3>Coverage gaps</h3><ul>");
    for g in s.coverage_gaps.iter().chain(&s.structure_gaps).chain(&s.oracle_gaps) {
        let _ = write!(h, "<li>{}</li>", esc(g));
    }
    h.push_str("</ul><h3>Failures</h3>");
    for g in &s.failures {
        let _ = write!(
            h,
            "<h4>{} ({} runs; seeds {:?})</h4><pre>{}</pre>",
            esc(&g.signature),
            g.count,
            g.seeds,
            esc(&g.first.to_string())
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// Repair after class B damage, one row per fault kind (`runner::repair`).
fn repair_table(st: &crate::runner::RunStats) -> String {
    let mut h = String::from(
        "<h3>Repair after class B damage</h3><p>After every class B outcome the damaged image \
         is repaired (as <code>thinsim repair</code>) and judged: the result must pass check, \
         keep only mappings the model had at the last commit, and, when the superblock \
         validates, keep every mapping a tolerant walk from its roots still reads through \
         valid blocks (the bound). Each run also repairs one undamaged committed image, which \
         must come back whole (row <i>undamaged</i>), but for the one loss repair documents: \
         data block 0 in a mapping leaf whose every value could be a tree root.</p>\
         <table><tr><th>fault kind</th><th>repaired</th><th>refused</th>\
         <th>committed mappings</th><th>recovered</th><th>share</th>\
         <th>judged against the bound</th><th>bound mappings</th><th>kept of the bound</th>\
         <th>stale: lost/misdirected write / unverified roots</th>\
         <th>roots: superblock / damaged superblock / scan / lost tree found by a scan</th></tr>",
    );
    let undamaged = ("undamaged".to_owned(), st.clean_repair.clone());
    for (kind, t) in st.repair.iter().map(|(k, t)| (k.clone(), t.clone())).chain([undamaged]) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td>\
             <td>{}</td><td>{}</td><td>{:.1}%</td><td>{} / {}</td><td>{} / {} / {} / {}</td></tr>",
            esc(&kind),
            t.repaired,
            t.refused,
            t.committed_mappings,
            t.recovered_mappings,
            t.recovered_percent(),
            t.bound_judged,
            t.bound_mappings,
            t.bound_kept_percent(),
            t.stale_mappings,
            t.stale_from_unverified_roots,
            t.from_superblock,
            t.from_damaged_superblock,
            t.from_scan,
            t.from_lost_tree_found
        );
    }
    h.push_str("</table>");
    let l = &st.check_leaks;
    let _ = write!(
        h,
        "<h3>Check's findings</h3><p>After each full verification, <code>check</code> runs as a \
         user runs it and must report exactly the data leaks the model holds (references no \
         mapping accounts for) and nothing else: {} images judged, {} with leaks, {} leaked \
         blocks reported exactly.</p>",
        l.images, l.images_with_leaks, l.leaked_blocks
    );
    h
}

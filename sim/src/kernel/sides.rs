//! Both sides of a metadata difference, as a person reads them: the kernel's committed
//! metadata at a checkpoint dumped by thinsim (thin_dump's XML), the model's state at that
//! op rendered in the same XML, both written beside the run, and the lines around their
//! first difference.
//!
//! The model's rendering ([`crate::runner::model_dump`]) is what `dump` must print for
//! that state, so when the two agree the files are byte-equal (the tests here pin it at
//! every checkpoint of drawn workloads), and when they do not, a unified diff of the two is
//! the difference in the format the tools speak.
//! The verdict itself is never taken from this text: it is [`super::differential`]'s typed
//! [`Difference`](super::differential::Difference); this is the evidence printed with it.

use super::observe::open_kernel_image;
use crate::runner::model_dump;
use engine::thin::{Pool, Source};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use model::Model;
use std::path::{Path, PathBuf};

/// Lines of context either side of each change in the excerpt.
const CONTEXT_LINES: usize = 3;
/// The excerpt stops after this many lines (the files hold the rest).
const EXCERPT_MAX_LINES: usize = 40;

/// The two dumps, where they were written, and the first lines that differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sides {
    pub kernel: PathBuf,
    pub model: PathBuf,
    /// A unified diff (model → kernel) of the first hunks, at most
    /// [`EXCERPT_MAX_LINES`] lines; empty when the dumps are equal.
    pub excerpt: String,
}

/// The pool's live metadata as thinsim's `dump` prints it.
pub fn pool_dump(pool: &Pool) -> Result<Vec<u8>, String> {
    let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
    engine::tools::dump::dump(pool, &mut w, Source::Live).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())
}

/// Dumps the kernel's image at `image` and the model beside it in `dir`, as
/// `op-<op>.kernel.xml` and `op-<op>.model.xml`, and diffs them.
pub fn write(
    dir: &Path,
    op: usize,
    image: &Path,
    model: &Model,
    data_block_sectors: u32,
) -> Result<Sides, String> {
    let kernel = match open_kernel_image(image) {
        Ok((_dev, pool)) => pool_dump(&pool)?,
        Err(e) => format!("thinsim could not open the kernel's image: {e}\n").into_bytes(),
    };
    let expected = model_dump(model, data_block_sectors);
    let sides = Sides {
        kernel: dir.join(format!("op-{op}.kernel.xml")),
        model: dir.join(format!("op-{op}.model.xml")),
        excerpt: excerpt(&expected, &kernel),
    };
    for (path, bytes) in [(&sides.kernel, &kernel), (&sides.model, &expected)] {
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(sides)
}

/// The first hunks of a unified diff from `model` to `kernel`, `---`/`+++` named so.
pub fn excerpt(model: &[u8], kernel: &[u8]) -> String {
    let (m, k) = (String::from_utf8_lossy(model), String::from_utf8_lossy(kernel));
    let diff = similar::TextDiff::from_lines(m.as_ref(), k.as_ref());
    let full =
        diff.unified_diff().context_radius(CONTEXT_LINES).header("model", "kernel").to_string();
    let mut lines: Vec<&str> = full.lines().take(EXCERPT_MAX_LINES + 1).collect();
    if lines.len() > EXCERPT_MAX_LINES {
        lines.truncate(EXCERPT_MAX_LINES);
        lines.push("… (the files hold the rest)");
    }
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::draw::draw_shape;
    use crate::kernel::emulate::initial_image;

    /// The image a prepopulated kernel seed starts from (17,000 mappings, 4 devices,
    /// sharing), opened by the engine, and the model of it.
    fn restored() -> (Pool, Model, u32) {
        let shape = (0..)
            .map(|seed| draw_shape(&mut crate::entropy::Entropy::seeded(seed)))
            .find(|s| s.prepopulation.is_some())
            .expect("one seed in three is prepopulated");
        let (dev, model) = initial_image(&shape).expect("the restored image");
        let pool = Pool::open_image(dev.to_device()).expect("it opens");
        (pool, model, shape.data_block_sectors)
    }

    #[test]
    fn the_model_renders_what_dump_prints_of_the_same_state() {
        let (pool, model, sectors) = restored();
        let dumped = pool_dump(&pool).unwrap();
        let rendered = model_dump(&model, sectors);
        assert!(rendered.len() > 10_000, "a real state: {} bytes", rendered.len());
        assert_eq!(String::from_utf8_lossy(&rendered), String::from_utf8_lossy(&dumped));
        assert_eq!(excerpt(&rendered, &dumped), "", "equal dumps have no excerpt");
    }

    #[test]
    fn at_every_checkpoint_of_drawn_workloads_the_model_renders_the_engines_dump() {
        use crate::kernel::draw::draw;
        use crate::kernel::emulate::Emulation;
        use crate::kernel::workload::KOp;
        let mut compared = 0;
        let mut with_times = 0;
        for seed in 0..4 {
            let w = draw(seed, 120).expect("no divergence");
            let mut em = Emulation::new(&w.shape).expect("the pool");
            for op in &w.ops {
                em.apply(op).expect("no divergence");
                if *op == KOp::Checkpoint {
                    let dumped = pool_dump(em.pool()).unwrap();
                    let rendered = model_dump(em.model(), w.shape.data_block_sectors);
                    assert_eq!(excerpt(&rendered, &dumped), "", "seed {seed}");
                    compared += 1;
                    with_times += usize::from(em.model().current().time > 0);
                }
            }
        }
        assert!(compared >= 8 && with_times > 0, "{compared} checkpoints, {with_times} with time");
    }

    #[test]
    fn a_moved_mapping_shows_in_the_excerpt_with_its_context() {
        let (pool, _, _) = restored();
        let dumped = String::from_utf8(pool_dump(&pool).unwrap()).unwrap();
        let line = dumped.lines().find(|l| l.contains("<single_mapping")).expect("a single");
        let moved = line.replacen("data_block=\"", "data_block=\"9", 1);
        let kernel = dumped.replacen(line, &moved, 1);
        let e = excerpt(dumped.as_bytes(), kernel.as_bytes());
        assert!(e.starts_with("--- model\n+++ kernel\n@@"), "{e}");
        assert!(e.contains(&format!("-{line}\n")) && e.contains(&format!("+{moved}\n")), "{e}");
        assert!(e.lines().count() <= EXCERPT_MAX_LINES + 1);
    }

    #[test]
    fn write_puts_both_dumps_beside_the_run_and_diffs_them() {
        let shapes: Vec<_> = (0..)
            .map(|seed| draw_shape(&mut crate::entropy::Entropy::seeded(seed)))
            .filter(|s| s.prepopulation.is_some())
            .take(24)
            .collect();
        let a = &shapes[0];
        let b = shapes
            .iter()
            .find(|s| s.data_blocks != a.data_blocks && s.prepopulation == a.prepopulation)
            .expect("two sizes of the same layout");
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("ckpt-7.img");
        let (dev, model_a) = initial_image(a).unwrap();
        std::fs::write(&image, dev.to_bytes()).unwrap();
        // The same devices on a pool of another size: only the superblock line differs.
        let (_, model_b) = initial_image(b).unwrap();
        let s = write(dir.path(), 7, &image, &model_b, b.data_block_sectors).unwrap();
        assert_eq!(s.kernel, dir.path().join("op-7.kernel.xml"));
        assert_eq!(std::fs::read(&s.model).unwrap(), model_dump(&model_b, b.data_block_sectors));
        assert_eq!(std::fs::read(&s.kernel).unwrap(), model_dump(&model_a, a.data_block_sectors));
        let changed: Vec<&str> =
            s.excerpt.lines().filter(|l| l.starts_with(['-', '+'])).skip(2).collect();
        assert_eq!(changed.len(), 2, "{}", s.excerpt);
        assert!(changed[0].contains(&format!("nr_data_blocks=\"{}\"", b.data_blocks)));
        assert!(changed[1].contains(&format!("nr_data_blocks=\"{}\"", a.data_blocks)));
        // An image thinsim cannot open still gives both files, the kernel's saying why.
        std::fs::write(&image, vec![0u8; 4096 * 8]).unwrap();
        let s = write(dir.path(), 7, &image, &model_b, b.data_block_sectors).unwrap();
        let k = std::fs::read_to_string(&s.kernel).unwrap();
        assert!(k.starts_with("thinsim could not open the kernel's image"), "{k}");
    }

    #[test]
    fn a_long_difference_is_cut_and_says_so() {
        let a: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let b: String = (0..200).map(|i| format!("line {}\n", i * 7)).collect();
        let e = excerpt(a.as_bytes(), b.as_bytes());
        assert_eq!(e.lines().count(), EXCERPT_MAX_LINES + 1);
        assert!(e.ends_with("… (the files hold the rest)\n"), "{e}");
    }
}

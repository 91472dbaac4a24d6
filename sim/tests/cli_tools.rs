//! The `thinsim` binary's tool commands end to end, as a user runs them: `restore` (which
//! maps its input file) of each corpus recipe gives an image that `dump` prints exactly as it
//! prints the image thin_restore made from the same recipe (itself equal to thin_dump's
//! output, `engine/tests/tools_interop.rs`), and `check` finds clean; bad XML exits non-zero
//! with line and column and leaves the image untouched.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_thinsim");

fn corpus_xml() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    v.sort();
    v
}

fn image(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("out.img");
    std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    img
}

#[test]
fn restore_then_dump_matches_the_image_thin_restore_made() {
    let xmls = corpus_xml();
    assert!(!xmls.is_empty());
    for xml in xmls {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path());
        let st = Command::new(BIN)
            .args(["restore", "-q", "-i"])
            .arg(&xml)
            .arg("-o")
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success(), "{}", xml.display());
        let dump = |path: &Path| {
            let out = Command::new(BIN).arg("dump").arg(path).output().unwrap();
            assert!(out.status.success(), "dump {}", path.display());
            String::from_utf8(out.stdout).unwrap()
        };
        let theirs = xml.with_extension("img");
        assert_eq!(dump(&img), dump(&theirs), "{}", xml.display());
        let check = Command::new(BIN).args(["check", "-q"]).arg(&img).status().unwrap();
        assert!(check.success(), "{}", xml.display());
    }
}

#[test]
fn bad_xml_fails_with_position_and_leaves_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let xml = dir.path().join("bad.xml");
    let good = std::fs::read_to_string(&corpus_xml()[0]).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    // Cut the document inside the second line's tag.
    std::fs::write(&xml, format!("{}\n{}", lines[0], &lines[1][..10])).unwrap();
    let out = Command::new(BIN)
        .args(["restore", "-q", "-i"])
        .arg(&xml)
        .arg("-o")
        .arg(&img)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "image changed");
}

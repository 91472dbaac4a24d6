//! The command line against hostile surroundings and input, as scripts meet them (issue 29,
//! item 4): a reader that goes away, a full output device, an output that is the input, a
//! FIFO given as a metadata image, and a trace whose options would hang or exhaust memory.
//! Each must end with a clear status and never a panic; a refusal changes nothing on disk.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "support/closed_pipe.rs"]
mod closed_pipe;

const BIN: &str = env!("CARGO_BIN_EXE_thinsim");

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name)
}

fn image() -> PathBuf {
    corpus("images/mappings-2k.img")
}

fn regression_trace() -> PathBuf {
    let dir = corpus("regressions");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    v.sort();
    v.remove(0)
}

/// `text` with the value `value` (a JSON text) in the field `field` of the trace's options
/// object; the options are written back in key order, the rest of the trace byte for byte.
/// `text` comes back unchanged when the options have no such field.
fn with_option(text: &str, field: &str, value: &str) -> String {
    let (head, rest) = text.split_once("\"options\":").expect("the trace has options");
    let len = options_len(rest);
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&rest[..len]).expect("the options are a JSON object");
    let Some(slot) = options.get_mut(field) else { return text.to_string() };
    *slot = serde_json::from_str(value).expect("the hostile value is JSON");
    let options = serde_json::to_string(&options).unwrap();
    format!("{head}\"options\":{options}{}", &rest[len..])
}

/// The length in bytes of the JSON object at the start of `rest`.
fn options_len(rest: &str) -> usize {
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    stream.next().unwrap().unwrap();
    stream.byte_offset()
}

/// Every subcommand that prints to stdout, with its arguments.
fn printing_commands() -> Vec<Vec<String>> {
    let img = image().display().to_string();
    let trace = regression_trace().display().to_string();
    vec![
        vec!["ls".into(), img.clone()],
        vec!["check".into(), img.clone()],
        vec!["dump".into(), img],
        vec!["replay".into(), trace],
    ]
}

/// Runs `args` with stdout a pipe whose reader went away before the child started.
fn with_reader_gone(args: &[String]) -> (Option<i32>, String) {
    let write = closed_pipe::write_end_without_reader();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut err = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut err).expect("stderr");
    (child.wait().expect("exits").code(), err)
}

#[test]
fn a_reader_that_goes_away_ends_each_command_with_status_1_and_a_quiet_stderr() {
    for args in printing_commands() {
        let (code, err) = with_reader_gone(&args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: a closed pipe is the reader's choice: {err}");
    }
}

#[test]
fn a_full_output_device_ends_each_command_with_status_1_and_says_so() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    for args in printing_commands() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let out = Command::new(BIN).args(&args).stdout(full).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
    }
}

#[test]
fn an_output_that_is_the_input_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    std::fs::copy(image(), &img).unwrap();
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let xml = dir.path().join("a.xml");
    std::fs::copy(corpus("images/mappings-2k.xml"), &xml).unwrap();
    let before = (std::fs::read(&img).unwrap(), std::fs::read(&xml).unwrap());
    let cases: [(&[&str], &Path, &Path, &str); 4] = [
        (&["dump"], &img, &img, "dump would destroy what it reads"),
        (&["dump"], &link, &img, "dump would destroy what it reads"),
        (&["restore", "-i"], &xml, &xml, "restore would overwrite its XML"),
        (&["repair", "-i"], &link, &img, "the same file"),
    ];
    for (cmd, input, output, words) in cases {
        let out =
            Command::new(BIN).args(cmd).arg(input).arg("-o").arg(output).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?} {input:?}: {err}");
        assert!(err.contains(words), "{cmd:?}: {err}");
    }
    assert_eq!((std::fs::read(&img).unwrap(), std::fs::read(&xml).unwrap()), before);
}

#[test]
fn a_fifo_or_a_character_device_is_not_a_metadata_image() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    for input in [fifo.as_path(), Path::new("/dev/null")] {
        for cmd in ["check", "dump", "ls"] {
            // With no writer, opening the FIFO would block forever: the refusal comes first.
            let out = Command::new(BIN).arg(cmd).arg(input).output().expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} {input:?}: {err}");
            assert!(err.contains("Not a block device or regular file"), "{cmd}: {err}");
        }
    }
}

#[test]
fn a_trace_whose_options_would_hang_or_exhaust_memory_is_refused_in_words() {
    let text = std::fs::read_to_string(regression_trace()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big_prepop = |devices: u64, mappings: u64| {
        format!(
            "{{\"devices\":{devices},\"mappings\":{mappings},\"hole_every\":1,\
             \"sharers\":0,\"share_every\":1,\"mappings_per_other\":0}}"
        )
    };
    let cases = [
        ("explore_images", "9223372036854775808".to_string()),
        ("data_blocks", "1099511627776".to_string()),
        ("prepopulate", big_prepop(1, 1 << 40)),
        ("prepopulate", big_prepop(1 << 40, 1)),
    ];
    for (field, hostile) in cases {
        // Whatever the trace holds today (a regenerated trace has other numbers), only this
        // one field of the options changes.
        let edited = with_option(&text, field, &hostile);
        assert_ne!(edited, text, "the regression trace holds the option {field}");
        let file = dir.path().join("hostile.trace");
        std::fs::write(&file, edited).unwrap();
        let out = Command::new(BIN).arg("replay").arg(&file).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The phrases of 1.x's messages that scripts grep for, beside thinsim's own words.
#[test]
fn inputs_that_are_not_metadata_are_named_with_1x_phrases() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.img");
    std::fs::write(&small, [0u8; 100]).unwrap();
    let missing = dir.path().join("missing.img");
    let xml = corpus("images/mappings-2k.xml");
    let cases: [(&Path, &[&str]); 3] = [
        (&missing, &["No such file or directory", "does not exist"]),
        (&small, &["Metadata device/file too small. Is this binary metadata?", "too small"]),
        (&xml, &["not dm-thin metadata", "thin_dump XML", "thinsim restore"]),
    ];
    for (input, phrases) in cases {
        for cmd in ["check", "dump", "ls"] {
            let out = Command::new(BIN).arg(cmd).arg(input).output().expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} {input:?}: {err}");
            for phrase in phrases {
                assert!(err.contains(phrase), "{cmd} {input:?}: {phrase:?} in {err}");
            }
        }
    }
}

//! Crash images reopened in the kernel itself: a sample of the images crash mode passed
//! (chosen uniformly by the judge) is activated as a pool's metadata in a second UML boot,
//! so the kernel, not only thinsim's engine, says each one opens; then the kernel's own
//! `dmsetup status` of it, and the image as the kernel left it after deactivation, must
//! equal the model state the engine found in it.
//!
//! Each image is written at the metadata size its superblock records, and the pool's table
//! has the data size it records, so activation resizes nothing. One boot reopens them all
//! (`/dev/ubda` a sparse data device, `/dev/ubdb` … the images). Result lines: `REOPEN
//! <i> <exit status> <status line or error text>`, then `END`.

use super::crash::Sample;
use super::observe::compare_status;
use super::script::{preamble, ScriptPaths};
use super::uml::{boot, sparse, UmlError, UmlKernel};
use super::workload::{PoolFeatures, Workload};
use crate::runner::oracle::{self, Mismatch};
use engine::io::MemoryDevice;
use engine::thin::Pool;
use model::Model;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Crash images reopened per seed (at most: ubd devices are few, and each is a boot's
/// worth of work for the kernel).
pub const REOPEN_SAMPLES: usize = 6;

const BLOCK: u64 = 4096;

/// What reopening found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReopenFinding {
    /// The kernel would not activate a pool on the image.
    Refused { epoch: usize, image: usize, text: String },
    /// The kernel's status of the pool differs from the model.
    Status { epoch: usize, image: usize, detail: String },
    /// The image, as the kernel left it, does not open or differs from the model.
    Changed { epoch: usize, image: usize, mismatch: Mismatch },
    /// The guest gave no result for an image.
    NoResult { sample: usize },
    /// Crash mode passed images, and none was reopened: the check did not run.
    NothingReopened { samples: usize },
}

impl std::fmt::Display for ReopenFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReopenFinding::Refused { epoch, image, text } => write!(
                f,
                "the kernel refused crash image {image} of epoch {epoch}, which the engine opened: {text}"
            ),
            ReopenFinding::Status { epoch, image, detail } => {
                write!(f, "the kernel's status of crash image {image} of epoch {epoch}: {detail}")
            }
            ReopenFinding::Changed { epoch, image, mismatch } => write!(
                f,
                "crash image {image} of epoch {epoch}, after the kernel opened it, differs:\n{mismatch}"
            ),
            ReopenFinding::NoResult { sample } => write!(f, "no reopen result for sample {sample}"),
            ReopenFinding::NothingReopened { samples } => {
                write!(f, "none of {samples} sampled crash images could be reopened")
            }
        }
    }
}

/// What a reopen did.
#[derive(Debug, Clone, Default)]
pub struct ReopenVerdict {
    pub reopened: usize,
    pub finding: Option<ReopenFinding>,
}

/// Reopens `samples` (of a run of `w`, whose states are `points`) in the kernel, in
/// `dir/reopen/`.
pub fn reopen(
    k: &UmlKernel,
    dir: &Path,
    thinsim: &Path,
    w: &Workload,
    samples: &[Sample],
    points: &[Model],
) -> Result<ReopenVerdict, UmlError> {
    let io = |what: String| move |error| UmlError::Io { what, error };
    let sub = dir.join("reopen");
    std::fs::create_dir_all(&sub).map_err(io(format!("create {}", sub.display())))?;
    let sub = sub.canonicalize().map_err(io(format!("resolve {}", sub.display())))?;
    let bs = w.shape.data_block_sectors as u64;
    let data = sub.join("data.img");
    sparse(&data, w.shape.max_data_blocks * bs * 512)?;
    let mut disks = vec![data];
    // (sample, image path, data blocks): a pool of 0 data blocks (the format commit,
    // before the first resume sized it) is no table the kernel takes, so it is left out.
    let mut chosen: Vec<(&Sample, PathBuf, u64)> = Vec::new();
    for s in samples {
        let (meta_blocks, data_blocks) = (s.metadata_blocks, s.data_blocks);
        if data_blocks == 0 {
            continue;
        }
        let path = sub.join(format!("sample-{}.img", chosen.len()));
        let bytes = s.device.to_bytes();
        let len = ((meta_blocks * BLOCK) as usize).min(bytes.len());
        std::fs::write(&path, &bytes[..len]).map_err(io(format!("write {}", path.display())))?;
        disks.push(path.clone());
        chosen.push((s, path, data_blocks));
    }
    if chosen.is_empty() {
        return Ok(ReopenVerdict::default());
    }
    let mut o = String::from("#!/bin/sh\n# thinsim: crash images reopened in the kernel\n");
    preamble(&mut o, &ScriptPaths { dir: &sub, modules: &k.modules, thinsim });
    o.push_str("E=\"$W/stderr\"\n");
    for (i, (_, _, data_blocks)) in chosen.iter().enumerate() {
        let dev = (b'b' + i as u8) as char;
        let _ = writeln!(
            o,
            "rc=0; dmsetup create pool --table \"0 {} thin-pool /dev/ubd{dev} /dev/ubda {bs} 0 1 skip_block_zeroing\" 2>\"$E\" || rc=$?\n\
             if [ $rc = 0 ]; then t=$(dmsetup status pool); dmsetup remove pool || fatal \"remove pool\"; else t=$(head -n 1 \"$E\"); fi\n\
             echo \"REOPEN {i} $rc $t\" >> \"$R\"",
            data_blocks * bs
        );
    }
    o.push_str("echo END >> \"$R\"\nsync\npoweroff -f\n");
    let text = boot(k, &sub, &o, &disks)?;
    let mut lines: Vec<Option<(i32, String)>> = vec![None; chosen.len()];
    let mut ended = false;
    for line in text.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "KERNEL" => {}
            "END" => ended = true,
            "FATAL" => {
                return Err(UmlError::Fatal {
                    what: rest.to_string(),
                    console: sub.join("console.log"),
                })
            }
            "REOPEN" => {
                let bad = || UmlError::BadResults { line: line.to_string() };
                let mut it = rest.splitn(3, ' ');
                let i: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let rc: i32 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let slot = lines.get_mut(i).ok_or_else(bad)?;
                *slot = Some((rc, it.next().unwrap_or("").to_string()));
            }
            _ => return Err(UmlError::BadResults { line: line.to_string() }),
        }
    }
    if !ended {
        return Err(super::uml::diagnose(k, &sub.join("console.log"), 0));
    }
    let mut v = ReopenVerdict::default();
    for (i, ((s, path, _), line)) in chosen.iter().zip(&lines).enumerate() {
        let (epoch, image) = (s.epoch, s.image);
        // The image holds the point's state as committed (a kernel commit may fall inside
        // a transaction of the emulation): judge it against that state, committed.
        let mut model = points[s.point].clone();
        if let Err(e) = model.commit() {
            v.finding = Some(ReopenFinding::Changed {
                epoch,
                image,
                mismatch: Mismatch::State(format!("the model cannot commit its state: {e:?}")),
            });
            return Ok(v);
        }
        let model = &model;
        let Some((rc, text)) = line else {
            v.finding = Some(ReopenFinding::NoResult { sample: i });
            return Ok(v);
        };
        if *rc != 0 {
            v.finding = Some(ReopenFinding::Refused { epoch, image, text: text.clone() });
            return Ok(v);
        }
        // The reopening table's features (skip_block_zeroing only), and a pool that has
        // allocated nothing yet is never out of data space.
        let features = PoolFeatures {
            error_if_no_space: false,
            zero_new_blocks: false,
            ..PoolFeatures::default()
        };
        if let Err(detail) = compare_status(text, model, &features, false) {
            v.finding = Some(ReopenFinding::Status { epoch, image, detail });
            return Ok(v);
        }
        let after = std::fs::read(path).map_err(io(format!("read {}", path.display())))?;
        let dev = MemoryDevice::from_bytes(&after);
        let judged = Pool::open_image(dev.to_device())
            .map_err(|e| Mismatch::Query(e.to_string()))
            .and_then(|pool| oracle::compare_pool(&pool, model))
            .and_then(|()| oracle::check_image(&dev, model));
        if let Err(mismatch) = judged {
            v.finding = Some(ReopenFinding::Changed { epoch, image, mismatch });
            return Ok(v);
        }
        v.reopened += 1;
    }
    Ok(v)
}

//! Reading a pool's trees whole, for the offline tools above the pool API (`tools::dump`,
//! `tools::dump::ls_rows`): the superblock's values, then every device in ascending id with
//! its details and its mappings in ascending virtual block, from the live trees or from the
//! held metadata snapshot.
//!
//! Invariants:
//! - One visit runs under one shared lock, so it sees one state of the pool.
//! - A device is visited only when both the top-level mapping tree and the details tree
//!   name it; a mapping tree with no details is refused ([`VisitError::OrphanMappings`])
//!   before any device is visited, as thin_dump refuses it.
//! - The visitor may stop the visit ([`ControlFlow::Break`]); the visit then returns
//!   [`VisitError::Stopped`] and reads nothing more.

use super::records::DETAILS_VALUES;
use super::{Pool, PoolInner};
use crate::btree;
use crate::error::Error;
use crate::format::checksum::BlockKind;
use crate::format::superblock::Superblock;
use crate::format::{BlockTime, DeviceDetails, MetadataBlock, Time, TransactionId};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;

/// Which trees to read: the live ones, or the held metadata snapshot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Live,
    /// The held snapshot (`-m`); with `Some(b)` it must be at block `b`.
    MetadataSnap(Option<MetadataBlock>),
}

/// The superblock values of the trees visited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHeader {
    pub time: Time,
    pub trans_id: TransactionId,
    pub flags: u32,
    pub version: u32,
    pub data_block_size: u32,
    /// The data device's size; 0 for the held snapshot, whose copy describes no space maps.
    pub nr_data_blocks: u64,
}

/// What a visit calls, in order: `header`, then per device `device`, its `mapping`s and
/// `end_device`.
pub trait TreeVisitor {
    fn header(&mut self, header: &TreeHeader) -> ControlFlow<()>;
    fn device(&mut self, id: u64, details: &DeviceDetails) -> ControlFlow<()>;
    fn mapping(&mut self, vblock: u64, bt: BlockTime) -> ControlFlow<()>;
    fn end_device(&mut self) -> ControlFlow<()>;
}

/// Why a visit did not finish.
#[derive(Debug)]
pub enum VisitError {
    /// A held snapshot was asked for and none is held.
    NoHeldSnapshot,
    /// The held snapshot is not at the block asked for.
    HeldElsewhere { asked: MetadataBlock, held: MetadataBlock },
    /// The mapping tree names a device the details tree does not.
    OrphanMappings { dev: u64 },
    /// The visitor stopped the visit.
    Stopped,
    /// The live trees were asked of a [`super::HeldSnapshot`], which never read them.
    LiveNotOpened,
    /// Reading the metadata failed.
    Engine(Error),
}

impl From<Error> for VisitError {
    fn from(e: Error) -> Self {
        VisitError::Engine(e)
    }
}

impl fmt::Display for VisitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VisitError::NoHeldSnapshot => write!(f, "no current metadata snap"),
            VisitError::HeldElsewhere { asked, held } => write!(
                f,
                "metadata snapshot does not match that in superblock (asked for block \
                 {asked}, held at {held})"
            ),
            VisitError::OrphanMappings { dev } => {
                write!(f, "mappings present for device {dev}, but it isn't present in device tree")
            }
            VisitError::Stopped => write!(f, "the visit was stopped"),
            VisitError::LiveNotOpened => {
                write!(
                    f,
                    "opened for the held metadata snapshot only: the live trees were not read"
                )
            }
            VisitError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VisitError {}

impl Pool {
    /// Visits the trees of `source` whole; see the module invariants.
    pub fn visit(&self, source: Source, v: &mut dyn TreeVisitor) -> Result<(), VisitError> {
        let p = self.read();
        let (sb, header) = p.roots(source)?;
        flow(v.header(&header))?;
        for (id, details, root) in p.device_list(&sb)? {
            flow(v.device(id, &details))?;
            let mut stopped = false;
            let walked = btree::walk(&p.tm, root, &p.values.mappings, &mut |k, val| {
                if v.mapping(k, BlockTime::unpack(btree::le(val))).is_break() {
                    stopped = true;
                    return Err(Error::Invalid("visit stopped".into()));
                }
                Ok(())
            });
            match walked {
                Err(_) if stopped => return Err(VisitError::Stopped),
                r => r?,
            }
            flow(v.end_device())?;
        }
        Ok(())
    }
}

/// What the tools read a pool's trees through: a whole [`Pool`], or a [`HeldSnapshot`]
/// (only its `Source::MetadataSnap`).
pub trait Trees {
    fn visit_trees(&self, source: Source, v: &mut dyn TreeVisitor) -> Result<(), VisitError>;
}

impl Trees for Pool {
    fn visit_trees(&self, source: Source, v: &mut dyn TreeVisitor) -> Result<(), VisitError> {
        self.visit(source, v)
    }
}

impl Trees for super::HeldSnapshot {
    fn visit_trees(&self, source: Source, v: &mut dyn TreeVisitor) -> Result<(), VisitError> {
        match source {
            Source::Live => Err(VisitError::LiveNotOpened),
            Source::MetadataSnap(_) => self.pool.visit(source, v),
        }
    }
}

fn flow(c: ControlFlow<()>) -> Result<(), VisitError> {
    match c {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(VisitError::Stopped),
    }
}

impl PoolInner {
    /// The superblock whose roots `source` names, and its values for the visitor.
    fn roots(&self, source: Source) -> Result<(Superblock, TreeHeader), VisitError> {
        let (sb, nr_data_blocks) = match source {
            Source::Live => (self.live_superblock(), self.dsm.nr_blocks()),
            Source::MetadataSnap(asked) => {
                if self.held_root.0 == 0 {
                    return Err(VisitError::NoHeldSnapshot);
                }
                let held = self.held_root;
                if let Some(asked) = asked.filter(|&b| b != held) {
                    return Err(VisitError::HeldElsewhere { asked, held });
                }
                let raw = self.tm.read(self.held_root, BlockKind::Superblock)?;
                (Superblock::unpack_unchecked(&raw), 0)
            }
        };
        let header = TreeHeader {
            time: sb.time,
            trans_id: sb.trans_id,
            flags: sb.flags,
            version: sb.version,
            data_block_size: sb.data_block_size,
            nr_data_blocks,
        };
        Ok((sb, header))
    }

    /// (device, details, bottom root) in ascending id, from the top-level tree.
    fn device_list(
        &self,
        sb: &Superblock,
    ) -> Result<Vec<(u64, DeviceDetails, MetadataBlock)>, VisitError> {
        let mut details = BTreeMap::new();
        btree::walk(&self.tm, sb.device_details_root, DETAILS_VALUES, &mut |id, v| {
            details.insert(id, DeviceDetails::unpack(v));
            Ok(())
        })?;
        let mut out = Vec::new();
        let mut missing = None;
        btree::walk(&self.tm, sb.data_mapping_root, &self.values, &mut |id, v| {
            match details.get(&id) {
                Some(d) => out.push((id, *d, MetadataBlock(btree::le(v)))),
                None => missing = missing.or(Some(id)),
            }
            Ok(())
        })?;
        match missing {
            Some(dev) => Err(VisitError::OrphanMappings { dev }),
            None => Ok(out),
        }
    }
}

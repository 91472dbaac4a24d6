//! The structure of a metadata image, not its content: for each kind of tree its height,
//! internal nodes, leaves and entries; how many mapping-tree nodes two or more trees reach
//! (sharing made by snapshots); each space map's bitmaps and overflow entries. It says
//! what an image's writer reached: a kernel run whose images never show a two-level
//! details tree never split one. The kernel wing walks every checkpoint image with it.
//!
//! It reads through the tools' tolerant walker (the format's validators only, nothing from
//! `btree/`), so it measures any writer's image the same way. A node that does not read
//! ends its branch and is counted in `unreadable`; a shape is never an audit (`check` is).
//!
//! Invariants: every distinct node is counted once, whatever number of trees reach it;
//! `shared_mapping_nodes` counts distinct nodes, not pointers; heights count levels (a
//! lone leaf is 1, an empty tree's root leaf too).

use super::tolerant::{self, Go, KeyRange, Place, Reader, Seen, TreeKind, Visitor};
use crate::format::index::unpack_metadata_index;
use crate::format::node;
use crate::format::superblock::Superblock;
use crate::io::{Block, BlockDevice};
use crate::limits::ENTRIES_PER_BITMAP;
use std::collections::BTreeSet;

/// One kind of tree, summed over every tree of that kind in the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeShape {
    /// Trees of this kind (one, except mapping trees: one per device).
    pub trees: u64,
    /// The tallest one's levels.
    pub max_height: u64,
    pub internal_nodes: u64,
    pub leaves: u64,
    /// Leaf entries.
    pub entries: u64,
}

/// A space map's structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapShape {
    pub nr_blocks: u64,
    /// Blocks in use, as the space map's root says.
    pub allocated: u64,
    /// Bitmap blocks (one per 16,320 blocks).
    pub bitmaps: u64,
    /// Entries of its overflow tree (blocks whose count is 3 or more).
    pub overflow_entries: u64,
}

/// An image's structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageShape {
    pub details: TreeShape,
    pub top: TreeShape,
    /// Every device's mapping tree, each distinct node counted once.
    pub mappings: TreeShape,
    /// Mapping-tree nodes reached from two or more places (snapshot sharing).
    pub shared_mapping_nodes: u64,
    pub data: MapShape,
    pub metadata: MapShape,
    /// Whether the superblock holds a metadata snapshot.
    pub held_snapshot: bool,
    pub needs_check: bool,
    /// Nodes that did not read (their branches are not counted).
    pub unreadable: u64,
}

/// Counts the nodes of the trees it walks; a pointer to a node it has already entered is
/// a share.
#[derive(Default)]
struct Counter {
    shape: TreeShape,
    entered: BTreeSet<u64>,
    shared: BTreeSet<u64>,
    unreadable: u64,
}

impl Visitor for Counter {
    fn pointer(&mut self, b: u64, _at: Place<'_>) -> Go {
        if self.entered.contains(&b) {
            self.shared.insert(b);
        }
        Go::Enter
    }
    fn unreadable(&mut self, _b: u64, _e: &crate::error::Error, _at: Place<'_>) {
        self.unreadable += 1;
    }
    fn node(&mut self, b: u64, n: &Block, _at: Place<'_>) -> Go {
        self.entered.insert(b);
        if node::is_leaf(n) {
            self.shape.leaves += 1;
            self.shape.entries += node::nr_entries(n) as u64;
        } else {
            self.shape.internal_nodes += 1;
        }
        Go::Enter
    }
}

impl Counter {
    fn tree(&mut self, reader: &mut Reader, seen: &mut Seen, root: u64) {
        self.shape.trees += 1;
        if let Some(below) = tolerant::walk(reader, seen, root, KeyRange::ALL, self) {
            self.shape.max_height = self.shape.max_height.max(below as u64 + 1);
        }
    }
}

/// Entries of the tree under `root` whose leaves hold `kind`'s values.
fn entries(reader: &mut Reader, root: u64, kind: TreeKind) -> u64 {
    let mut n = 0;
    tolerant::for_each_leaf_entry(reader, root, kind, &mut |_, _| n += 1);
    n
}

/// The structure of the image on `dev`; `Err` says why its superblock cannot be used.
pub fn image_shape(dev: Box<dyn BlockDevice>) -> Result<ImageShape, String> {
    let mut reader = Reader::new(dev);
    let raw = reader.read_raw(0).map_err(|e| format!("cannot read the superblock: {e}"))?;
    let sb = Superblock::unpack(&raw, 0).map_err(|k| format!("superblock: {k}"))?;
    let mut shape = ImageShape {
        held_snapshot: sb.held_root.0 != 0,
        needs_check: sb.needs_check(),
        ..ImageShape::default()
    };

    let mut details = Counter::default();
    details.tree(&mut reader, &mut Seen::default(), sb.device_details_root.0);
    shape.details = details.shape;

    let mut top = Counter::default();
    let mut roots = Vec::new();
    top.tree(&mut reader, &mut Seen::default(), sb.data_mapping_root.0);
    tolerant::for_each_leaf_entry(
        &mut reader,
        sb.data_mapping_root.0,
        TreeKind::Top,
        &mut |_, v| {
            roots.push(u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
        },
    );
    shape.top = top.shape;

    // One `Seen` for every mapping tree: a node two devices share is entered once, and the
    // second pointer to it is a share.
    let mut mappings = Counter::default();
    let mut seen = Seen::default();
    for root in roots {
        mappings.tree(&mut reader, &mut seen, root);
    }
    shape.mappings = mappings.shape;
    shape.shared_mapping_nodes = mappings.shared.len() as u64;
    shape.unreadable = details.unreadable + top.unreadable + mappings.unreadable;

    let d = sb.data_sm_root;
    shape.data = MapShape {
        nr_blocks: d.nr_blocks,
        allocated: d.nr_allocated,
        bitmaps: entries(&mut reader, d.bitmap_root.0, TreeKind::DataIndex),
        overflow_entries: entries(&mut reader, d.ref_count_root.0, TreeKind::DataOverflow),
    };
    let m = sb.metadata_sm_root;
    let nr_bitmaps = m.nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
    let index_ok = reader
        .read(m.bitmap_root.0, crate::format::checksum::BlockKind::Index)
        .map(|idx| unpack_metadata_index(&idx, nr_bitmaps as usize).len() as u64);
    shape.metadata = MapShape {
        nr_blocks: m.nr_blocks,
        allocated: m.nr_allocated,
        bitmaps: index_ok.unwrap_or_else(|_| {
            shape.unreadable += 1;
            0
        }),
        overflow_entries: entries(&mut reader, m.ref_count_root.0, TreeKind::MetaOverflow),
    };
    Ok(shape)
}

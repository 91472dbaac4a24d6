//! What the kernel's own images show it reached: each checkpoint image the kernel wrote is
//! walked for its structure ([`engine::tools::shape`]), and consecutive checkpoints are
//! compared for the structural events between them (a tree that gained or lost a level,
//! leaves, shared nodes; a space map that gained a bitmap or overflow entries). The tally
//! is per run and merges over a campaign; the kernel summary shows it, so a campaign says
//! whether the kernel split a details tree or only ever wrote single leaves.
//!
//! Invariants: an event is counted from two images the kernel committed, never from the
//! emulation; gauges are maxima over every image, events are sums (so [`Structure::merge`]
//! is order-free). Counts come from committed checkpoints only, so an event undone between
//! two checkpoints is not seen (a lower bound, stated as such in reports).

use engine::tools::shape::{ImageShape, TreeShape};
use serde::{Deserialize, Serialize};

/// A structural event seen between two consecutive checkpoint images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShapeEvent {
    DetailsLevelUp,
    DetailsLevelDown,
    DetailsLeavesUp,
    DetailsLeavesDown,
    TopLevelUp,
    TopLevelDown,
    TopLeavesUp,
    TopLeavesDown,
    MappingLevelUp,
    MappingLevelDown,
    MappingLeavesUp,
    MappingLeavesDown,
    SharedNodesUp,
    SharedNodesDown,
    DataBitmapsUp,
    MetadataBitmapsUp,
    DataOverflowUp,
    DataOverflowDown,
    MetadataOverflowUp,
    MetadataOverflowDown,
}

impl ShapeEvent {
    pub const ALL: [ShapeEvent; 20] = [
        ShapeEvent::DetailsLevelUp,
        ShapeEvent::DetailsLevelDown,
        ShapeEvent::DetailsLeavesUp,
        ShapeEvent::DetailsLeavesDown,
        ShapeEvent::TopLevelUp,
        ShapeEvent::TopLevelDown,
        ShapeEvent::TopLeavesUp,
        ShapeEvent::TopLeavesDown,
        ShapeEvent::MappingLevelUp,
        ShapeEvent::MappingLevelDown,
        ShapeEvent::MappingLeavesUp,
        ShapeEvent::MappingLeavesDown,
        ShapeEvent::SharedNodesUp,
        ShapeEvent::SharedNodesDown,
        ShapeEvent::DataBitmapsUp,
        ShapeEvent::MetadataBitmapsUp,
        ShapeEvent::DataOverflowUp,
        ShapeEvent::DataOverflowDown,
        ShapeEvent::MetadataOverflowUp,
        ShapeEvent::MetadataOverflowDown,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            ShapeEvent::DetailsLevelUp => "details_level_up",
            ShapeEvent::DetailsLevelDown => "details_level_down",
            ShapeEvent::DetailsLeavesUp => "details_leaves_up",
            ShapeEvent::DetailsLeavesDown => "details_leaves_down",
            ShapeEvent::TopLevelUp => "top_level_up",
            ShapeEvent::TopLevelDown => "top_level_down",
            ShapeEvent::TopLeavesUp => "top_leaves_up",
            ShapeEvent::TopLeavesDown => "top_leaves_down",
            ShapeEvent::MappingLevelUp => "mapping_level_up",
            ShapeEvent::MappingLevelDown => "mapping_level_down",
            ShapeEvent::MappingLeavesUp => "mapping_leaves_up",
            ShapeEvent::MappingLeavesDown => "mapping_leaves_down",
            ShapeEvent::SharedNodesUp => "shared_nodes_up",
            ShapeEvent::SharedNodesDown => "shared_nodes_down",
            ShapeEvent::DataBitmapsUp => "data_bitmaps_up",
            ShapeEvent::MetadataBitmapsUp => "metadata_bitmaps_up",
            ShapeEvent::DataOverflowUp => "data_overflow_up",
            ShapeEvent::DataOverflowDown => "data_overflow_down",
            ShapeEvent::MetadataOverflowUp => "metadata_overflow_up",
            ShapeEvent::MetadataOverflowDown => "metadata_overflow_down",
        }
    }
}

/// The greatest value each gauge reached over the images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauges {
    pub devices: u64,
    pub details_height: u64,
    pub top_height: u64,
    pub mapping_height: u64,
    pub mapping_leaves: u64,
    pub shared_mapping_nodes: u64,
    pub data_bitmaps: u64,
    pub metadata_bitmaps: u64,
    pub metadata_blocks_used: u64,
    pub data_overflow_entries: u64,
    pub metadata_overflow_entries: u64,
}

/// A run's (or a campaign's) structure: images walked, gauges, events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Structure {
    pub images: u64,
    pub gauges: Gauges,
    events: [u64; ShapeEvent::ALL.len()],
    last: Option<ImageShape>,
}

fn ups_downs(a: u64, b: u64, up: ShapeEvent, down: ShapeEvent) -> Option<ShapeEvent> {
    match b.cmp(&a) {
        std::cmp::Ordering::Greater => Some(up),
        std::cmp::Ordering::Less => Some(down),
        std::cmp::Ordering::Equal => None,
    }
}

fn tree_events(a: &TreeShape, b: &TreeShape, e: [ShapeEvent; 4]) -> [Option<ShapeEvent>; 2] {
    [ups_downs(a.max_height, b.max_height, e[0], e[1]), ups_downs(a.leaves, b.leaves, e[2], e[3])]
}

/// The events between two consecutive images.
pub fn events_between(a: &ImageShape, b: &ImageShape) -> Vec<ShapeEvent> {
    use ShapeEvent::*;
    let mut out = Vec::new();
    out.extend(tree_events(
        &a.details,
        &b.details,
        [DetailsLevelUp, DetailsLevelDown, DetailsLeavesUp, DetailsLeavesDown],
    ));
    out.extend(tree_events(&a.top, &b.top, [TopLevelUp, TopLevelDown, TopLeavesUp, TopLeavesDown]));
    out.extend(tree_events(
        &a.mappings,
        &b.mappings,
        [MappingLevelUp, MappingLevelDown, MappingLeavesUp, MappingLeavesDown],
    ));
    let pairs = [
        (a.shared_mapping_nodes, b.shared_mapping_nodes, SharedNodesUp, SharedNodesDown),
        (a.data.overflow_entries, b.data.overflow_entries, DataOverflowUp, DataOverflowDown),
        (
            a.metadata.overflow_entries,
            b.metadata.overflow_entries,
            MetadataOverflowUp,
            MetadataOverflowDown,
        ),
    ];
    out.extend(pairs.into_iter().map(|(x, y, up, down)| ups_downs(x, y, up, down)));
    out.push((b.data.bitmaps > a.data.bitmaps).then_some(DataBitmapsUp));
    out.push((b.metadata.bitmaps > a.metadata.bitmaps).then_some(MetadataBitmapsUp));
    out.into_iter().flatten().collect()
}

impl Structure {
    /// Adds the next checkpoint image of a run (in op order).
    pub fn add(&mut self, s: ImageShape) {
        self.images += 1;
        if let Some(last) = &self.last {
            for e in events_between(last, &s) {
                self.events[e as usize] += 1;
            }
        }
        let g = &mut self.gauges;
        g.devices = g.devices.max(s.details.entries);
        g.details_height = g.details_height.max(s.details.max_height);
        g.top_height = g.top_height.max(s.top.max_height);
        g.mapping_height = g.mapping_height.max(s.mappings.max_height);
        g.mapping_leaves = g.mapping_leaves.max(s.mappings.leaves);
        g.shared_mapping_nodes = g.shared_mapping_nodes.max(s.shared_mapping_nodes);
        g.data_bitmaps = g.data_bitmaps.max(s.data.bitmaps);
        g.metadata_bitmaps = g.metadata_bitmaps.max(s.metadata.bitmaps);
        g.metadata_blocks_used = g.metadata_blocks_used.max(s.metadata.allocated);
        g.data_overflow_entries = g.data_overflow_entries.max(s.data.overflow_entries);
        g.metadata_overflow_entries = g.metadata_overflow_entries.max(s.metadata.overflow_entries);
        self.last = Some(s);
    }

    pub fn count(&self, e: ShapeEvent) -> u64 {
        self.events[e as usize]
    }

    /// Sums events and images, takes the maximum of gauges (runs merge in any order).
    pub fn merge(&mut self, o: &Structure) {
        self.images += o.images;
        for (a, b) in self.events.iter_mut().zip(&o.events) {
            *a += b;
        }
        let (g, h) = (&mut self.gauges, &o.gauges);
        let pairs = [
            (&mut g.devices, h.devices),
            (&mut g.details_height, h.details_height),
            (&mut g.top_height, h.top_height),
            (&mut g.mapping_height, h.mapping_height),
            (&mut g.mapping_leaves, h.mapping_leaves),
            (&mut g.shared_mapping_nodes, h.shared_mapping_nodes),
            (&mut g.data_bitmaps, h.data_bitmaps),
            (&mut g.metadata_bitmaps, h.metadata_bitmaps),
            (&mut g.metadata_blocks_used, h.metadata_blocks_used),
            (&mut g.data_overflow_entries, h.data_overflow_entries),
            (&mut g.metadata_overflow_entries, h.metadata_overflow_entries),
        ];
        for (a, b) in pairs {
            *a = (*a).max(b);
        }
    }

    /// As JSON: `images`, `gauges` and every event by name (zeros included: a zero is a
    /// finding about reach).
    pub fn to_json(&self) -> serde_json::Value {
        let events: serde_json::Map<String, serde_json::Value> =
            ShapeEvent::ALL.iter().map(|&e| (e.name().to_string(), self.count(e).into())).collect();
        serde_json::json!({ "checkpoint_images": self.images, "gauges": self.gauges, "events": events })
    }

    /// Reads [`Structure::to_json`] back (a campaign's summary merges its runs' records).
    pub fn from_json(v: &serde_json::Value) -> Structure {
        let mut s = Structure {
            images: v["checkpoint_images"].as_u64().unwrap_or(0),
            gauges: serde_json::from_value(v["gauges"].clone()).unwrap_or_default(),
            ..Structure::default()
        };
        for e in ShapeEvent::ALL {
            s.events[e as usize] = v["events"][e.name()].as_u64().unwrap_or(0);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(details_h: u64, leaves: u64, bitmaps: u64) -> ImageShape {
        let details = TreeShape {
            trees: 1,
            max_height: details_h,
            leaves,
            entries: 3,
            ..TreeShape::default()
        };
        let metadata = engine::tools::shape::MapShape { bitmaps, ..Default::default() };
        ImageShape { details, metadata, ..ImageShape::default() }
    }

    #[test]
    fn events_come_from_consecutive_images_and_gauges_are_maxima() {
        let mut t = Structure::default();
        t.add(shape(1, 1, 1));
        t.add(shape(2, 3, 2));
        t.add(shape(1, 1, 2));
        assert_eq!(t.images, 3);
        assert_eq!(t.count(ShapeEvent::DetailsLevelUp), 1);
        assert_eq!(t.count(ShapeEvent::DetailsLevelDown), 1);
        assert_eq!(t.count(ShapeEvent::DetailsLeavesUp), 1);
        assert_eq!(t.count(ShapeEvent::DetailsLeavesDown), 1);
        assert_eq!(t.count(ShapeEvent::MetadataBitmapsUp), 1);
        assert_eq!(t.count(ShapeEvent::TopLevelUp), 0);
        assert_eq!((t.gauges.details_height, t.gauges.metadata_bitmaps), (2, 2));
        let mut m = Structure::default();
        m.merge(&t);
        m.merge(&Structure::from_json(&t.to_json()));
        assert_eq!(m.count(ShapeEvent::DetailsLevelUp), 2);
        assert_eq!(m.gauges, t.gauges);
        assert_eq!(m.images, 6);
    }
}

//! Creating, snapshotting, deleting, opening and closing thin devices.

use super::records::{ThinHandle, DETAILS_VALUES};
use super::Pool;
use crate::btree::{self, ReadMode};
use crate::error::{Error, Result, Space};
use crate::format::DeviceDetails;
use crate::format::ThinId;
use crate::limits::TIME_LIMIT;

impl Pool {
    /// Creates an empty thin device `id` (EEXIST if it exists now, [R3]).
    pub fn create_thin(&self, id: ThinId) -> Result<()> {
        let id = id.0;
        self.mutate(|p| {
            if p.exists(id)? {
                return Err(Error::Exists(id));
            }
            let root = btree::empty(&mut p.tm, &p.values.mappings)?;
            p.add_device_root(id, root)?;
            let details = DeviceDetails {
                mapped_blocks: 0,
                transaction_id: p.trans_id,
                creation_time: p.time,
                snapshotted_time: p.time,
            };
            p.add_new_record(id, details);
            Ok(())
        })
    }

    /// Creates `id` as a snapshot of `origin`: both share the origin's mapping tree, the pool
    /// time advances by one, and the origin's `snapshotted_time` becomes the new time.
    /// ENOSPC if the time would no longer fit a mapping's 24 bits ([R8]).
    pub fn create_snap(&self, id: ThinId, origin: ThinId) -> Result<()> {
        let (id, origin) = (id.0, origin.0);
        self.mutate(|p| {
            if p.exists(id)? {
                return Err(Error::Exists(id));
            }
            let origin_details = p
                .details(origin)?
                .ok_or_else(|| Error::NoData(format!("no origin device {origin}")))?;
            if p.time.0 >= TIME_LIMIT - 1 {
                return Err(Error::NoSpace(Space::Time));
            }
            let root = p.device_root(origin, ReadMode::Blocking)?;
            p.tm.inc(root)?;
            p.add_device_root(id, root)?;
            p.time = p.time.next();
            let time = p.time;
            let details = DeviceDetails {
                mapped_blocks: origin_details.mapped_blocks,
                transaction_id: p.trans_id,
                creation_time: time,
                snapshotted_time: time,
            };
            p.add_new_record(id, details);
            let o = p.record_mut(origin)?;
            o.details.snapshotted_time = time;
            o.changed = true;
            Ok(())
        })
    }

    /// Deletes `id`, releasing its mappings ([H2]: allowed while open; the handle goes dead).
    pub fn delete_thin_device(&self, id: ThinId) -> Result<()> {
        let id = id.0;
        self.mutate(|p| {
            if !p.exists(id)? {
                return Err(Error::NoData(format!("no thin device {id}")));
            }
            if let Some(r) = p.records.remove(&id) {
                if r.open {
                    p.dead.insert(r.generation);
                }
            }
            p.details_root = btree::remove(&mut p.tm, DETAILS_VALUES, p.details_root, id)?.0;
            let (top, removed) = btree::remove(&mut p.tm, &p.values, p.mapping_root, id)?;
            if removed.is_none() {
                return Err(Error::structure(
                    p.mapping_root,
                    format!("device {id} has details but no mapping tree"),
                ));
            }
            p.mapping_root = top;
            p.apply_data_ops()
        })
    }

    /// Opens device `id` ([H1]: EBUSY if it already has a live handle).
    pub fn open_thin_device(&self, id: ThinId) -> Result<ThinHandle> {
        let id = id.0;
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        let r = p.record_mut(id)?;
        if r.open {
            return Err(Error::Busy(format!("thin device {id} is already open")));
        }
        r.open = true;
        r.aborted_with_changes = false;
        Ok(ThinHandle { id, generation: r.generation })
    }

    /// Closes a handle (always succeeds, also on dead handles and in fail mode).
    pub fn close_thin_device(&self, h: ThinHandle) {
        let mut p = self.write();
        p.dead.remove(&h.generation);
        if let Some(r) = p.records.get_mut(&h.id) {
            if r.generation == h.generation {
                r.open = false;
                if !r.changed {
                    p.records.remove(&h.id);
                }
            }
        }
    }

    /// The id a handle was opened with.
    pub fn dev_id(&self, h: &ThinHandle) -> ThinId {
        ThinId(h.id)
    }
}

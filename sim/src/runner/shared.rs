//! The simulated disk shared between the engine (which owns its device as a
//! `Box<dyn BlockDevice>`) and the runner (which crashes it, reads its pending writes and
//! labels its phases): [`engine::io::Shared`] of a [`SimDisk`], whose invariants hold (the
//! runner never holds the lock across a call into the pool).

use crate::disk::SimDisk;

pub type SharedDisk = engine::io::Shared<SimDisk>;

//! The pool lock, swappable for loom's model of it (`RUSTFLAGS="--cfg loom"`), so loom can
//! explore every interleaving of concurrent pool calls at the lock. The block cache's inner
//! mutex stays std's: it is only ever taken while the pool lock is held, for short critical
//! sections that finish without calling out.

#[cfg(loom)]
pub(crate) use loom::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

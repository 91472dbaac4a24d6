//! The real kernel as a second engine: workloads of what userspace does to a dm-thin pool
//! (`workload`, drawn by `draw`), the pool target's metadata calls for each of them on
//! thinsim's engine and the model (`emulate`), the guest script that does the same to Linux's
//! dm-thin under user-mode Linux (`script`, run by `uml`), and the comparison of the two at
//! every checkpoint (`differential`). `logwrites` reads dm-log-writes' log of the kernel's
//! metadata and data writes, `crash` judges crash images cut from that real write stream,
//! and `durability` judges the data device's content against what the metadata published
//! and what userspace was promised.
//!
//! `host` says what this host can boot and where the built kernels are (`sim/kernel/
//! build-uml.sh`), and `defects` which kernels carry the defects thinsim found, so that one
//! seen on a kernel that has its fix fails the run.
//!
//! One way down: workload ← draw/emulate ← script ← host/defects ← uml ←
//! differential/crash. Nothing here
//! changes the engine-only simulator; UML is found at run time, and its absence is a typed
//! error ([`uml::UmlError::Missing`]), never a panic.

pub mod crash;
pub mod defects;
pub mod differential;
pub mod draw;
pub mod durability;
pub mod emulate;
pub mod faults;
pub mod guest;
pub mod held;
pub mod host;
pub mod logwrites;
pub mod observe;
pub mod regression;
pub mod reopen;
pub mod script;
pub mod shrink;
pub mod sides;
pub mod structure;
pub mod uml;
pub mod workload;

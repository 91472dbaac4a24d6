//! Per-I/O statistics and the running trace hash.
//!
//! The trace hash folds every I/O call (operation, block, data, result), every injected fault
//! and every crash outcome into 64 bits. Two runs of one seed must end with the same hash
//! (`--twice`); a different hash means something in the run was not driven by the seed.
//! No external hash crate: a word-at-a-time multiply-rotate mix is enough to compare runs.

use engine::io::{Block, IoError, IoErrorKind};
use serde::{Deserialize, Serialize};

/// Counts of I/O calls by operation, failed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    pub reads: u64,
    pub writes: u64,
    pub fua_writes: u64,
    pub flushes: u64,
    /// Calls that returned an error (any kind, including power loss).
    pub errors: u64,
    pub crashes: u64,
}

impl IoStats {
    /// Every I/O call so far: the ordinal space of `set_crash_at_io`.
    pub fn io_calls(&self) -> u64 {
        self.reads + self.writes + self.fua_writes + self.flushes
    }
}

/// Operation codes folded into the trace hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TraceOp {
    Read = 1,
    Write = 2,
    WriteFua = 3,
    Flush = 4,
    Crash = 5,
    Fault = 6,
    Restore = 7,
    CrashChoice = 8,
    CrashOrder = 9,
}

const MIX_K: u64 = 0x9E37_79B9_7F4A_7C15;
const HASH_SEED: u64 = 0xCBF2_9CE4_8422_2325;

fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(MIX_K)
}

/// The splitmix64 finaliser: spreads the last words' influence over every output bit.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// A 64-bit hash of a block's contents. Four independent lanes over interleaved words, so
/// the multiplies overlap in the CPU (every read and write of the simulated disk hashes its
/// block), folded in order at the end.
pub fn hash_block(block: &Block) -> u64 {
    let mut lanes = [HASH_SEED, HASH_SEED ^ 1, HASH_SEED ^ 2, HASH_SEED ^ 3];
    for quad in block.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(quad.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            *lane = mix(*lane, u64::from_le_bytes(bytes));
        }
    }
    finish(lanes.into_iter().fold(HASH_SEED, mix))
}

/// The running trace hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(HASH_SEED)
    }
}

impl TraceHash {
    /// Folds one event: an operation code and up to three operands.
    pub(super) fn event(&mut self, op: TraceOp, a: u64, b: u64, c: u64) {
        for v in [op as u64, a, b, c] {
            self.0 = mix(self.0, v);
        }
    }

    /// Folds the result of an I/O call.
    pub(super) fn result<T>(&mut self, r: &Result<T, IoError>) {
        let code = match r {
            Ok(_) => 0,
            Err(e) => match e.kind {
                IoErrorKind::OutOfRange => 1,
                IoErrorKind::Device => 2,
                IoErrorKind::ReadOnly => 3,
            },
        };
        self.0 = mix(self.0, code);
    }

    pub(super) fn value(&self) -> u64 {
        finish(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hash_sees_every_byte() {
        let zero = [0u8; 4096];
        let h0 = hash_block(&zero);
        for at in [0, 7, 8, 2047, 4095] {
            let mut b = zero;
            b[at] = 1;
            assert_ne!(hash_block(&b), h0, "byte {at}");
        }
    }

    #[test]
    fn trace_depends_on_order() {
        let mut a = TraceHash::default();
        let mut b = TraceHash::default();
        a.event(TraceOp::Read, 1, 0, 0);
        a.event(TraceOp::Write, 2, 0, 0);
        b.event(TraceOp::Write, 2, 0, 0);
        b.event(TraceOp::Read, 1, 0, 0);
        assert_ne!(a.value(), b.value());
    }
}

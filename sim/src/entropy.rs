//! The simulator's source of randomness: a seeded ChaCha stream (`run`, `swarm`) or, under a
//! fuzzer, the fuzzer's bytes (the `sim` fuzz target).
//!
//! Every choice a run makes (its options, each op and its arguments, each fault the disk
//! injects and each crash cut) is a draw from an [`Entropy`]. Swarm testing draws from
//! ChaCha; the fuzz target hands the same generator the fuzzer's bytes instead, so the
//! bytes decode into exactly the options, ops and faults a seed would produce (valid ops on
//! existing devices, small ids and blocks, the run classes that reach splits and
//! exhaustion), and libFuzzer's mutations and comparisons steer those choices. Hypothesis
//! calls this a choice sequence; the trace the run records holds the decoded values, so a
//! fuzzer's finding replays and shrinks like a swarm's.
//!
//! Invariants:
//! - Deterministic: the same seed or the same bytes give the same stream, on every machine.
//! - Bytes are read big-endian, so the first byte of a draw weighs most: `0x00…` picks the
//!   low end of a range and `0xff…` the high end, and a one-byte change moves a choice a
//!   little rather than anywhere.
//! - After the bytes run out the stream goes on from ChaCha seeded with a hash of the bytes:
//!   a short input still makes a whole run (never a degenerate one of all-zero draws, which
//!   would fire every fault at once), and two inputs that differ anywhere go on differently.
//! - [`Entropy::Seeded`] is exactly [`ChaCha8Rng`]: wrapping it changes no seed's run.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A stream of random choices; cloning continues the same stream independently.
#[derive(Clone, Debug)]
pub enum Entropy {
    Seeded(ChaCha8Rng),
    Bytes(ByteStream),
}

/// The fuzzer's bytes, then a ChaCha stream seeded from them.
#[derive(Clone, Debug)]
pub struct ByteStream {
    bytes: Arc<[u8]>,
    /// Bytes consumed so far.
    pos: usize,
    tail: ChaCha8Rng,
}

impl Entropy {
    pub fn seeded(seed: u64) -> Self {
        Entropy::Seeded(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let tail = ChaCha8Rng::seed_from_u64(crate::fnv::Fnv::of(bytes));
        Entropy::Bytes(ByteStream { bytes: bytes.into(), pos: 0, tail })
    }

    /// Whether every fuzzer byte was consumed (always false for a seeded stream).
    pub fn exhausted(&self) -> bool {
        match self {
            Entropy::Seeded(_) => false,
            Entropy::Bytes(b) => b.pos >= b.bytes.len(),
        }
    }
}

impl ByteStream {
    /// Fills `out` from the bytes left, then from the tail.
    fn fill(&mut self, out: &mut [u8]) {
        let n = out.len().min(self.bytes.len() - self.pos);
        out[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        if n < out.len() {
            self.tail.fill_bytes(&mut out[n..]);
        }
    }
}

impl RngCore for Entropy {
    fn next_u32(&mut self) -> u32 {
        match self {
            Entropy::Seeded(r) => r.next_u32(),
            Entropy::Bytes(b) => {
                let mut x = [0; 4];
                b.fill(&mut x);
                u32::from_be_bytes(x)
            }
        }
    }

    fn next_u64(&mut self) -> u64 {
        match self {
            Entropy::Seeded(r) => r.next_u64(),
            Entropy::Bytes(b) => {
                let mut x = [0; 8];
                b.fill(&mut x);
                u64::from_be_bytes(x)
            }
        }
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        match self {
            Entropy::Seeded(r) => r.fill_bytes(dst),
            Entropy::Bytes(b) => b.fill(dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn seeded_is_chacha() {
        let mut a = Entropy::seeded(42);
        let mut b = ChaCha8Rng::seed_from_u64(42);
        for _ in 0..100 {
            assert_eq!(a.random_range(0..1000u64), b.random_range(0..1000u64));
            assert_eq!(a.next_u32(), b.next_u32());
        }
    }

    #[test]
    fn bytes_come_first_big_endian_then_a_tail_that_depends_on_them() {
        let mut e = Entropy::from_bytes(&[0, 0, 0, 7, 0xff]);
        assert_eq!(e.next_u32(), 7);
        assert!(!e.exhausted());
        let mixed = e.next_u32();
        assert_eq!(mixed >> 24, 0xff, "the last byte leads, the tail fills the rest");
        assert!(e.exhausted());
        let mut low = Entropy::from_bytes(&[0; 8]);
        let mut high = Entropy::from_bytes(&[0xff; 8]);
        assert_eq!(low.random_range(0..10u32), 0);
        assert_eq!(high.random_range(0..10u32), 9);
        let (mut x, mut y) = (Entropy::from_bytes(&[1]), Entropy::from_bytes(&[2]));
        x.next_u32();
        y.next_u32();
        let tail_x: Vec<u64> = (0..4).map(|_| x.next_u64()).collect();
        let tail_y: Vec<u64> = (0..4).map(|_| y.next_u64()).collect();
        assert_ne!(tail_x, tail_y);
        assert!(tail_x.iter().any(|&v| v != 0), "an exhausted stream is not all zeros");
    }

    #[test]
    fn clones_continue_the_same_stream() {
        let mut a = Entropy::from_bytes(&[9, 8, 7, 6, 5, 4, 3, 2, 1]);
        a.next_u32();
        let mut b = a.clone();
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(a.next_u64(), b.next_u64());
    }
}

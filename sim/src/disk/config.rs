//! The simulated disk's typed options: atomic unit, fault rates, crash policy, backed size.
//!
//! Invariants:
//! - Every rate is in parts per million of the operations it applies to; values above
//!   1,000,000 behave as 1,000,000 (certain).
//! - A config is plain data: `Clone + Debug + Serialize + Deserialize`, so a run prints it
//!   first and a trace file stores it.
//! - [`DiskConfig::draw`] consumes the caller's RNG only, so a run's options come from its
//!   one seed (swarm testing: each fault kind is switched off in about half the runs).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One million: the denominator of every `*_ppm` field.
pub const PPM: u32 = 1_000_000;

/// The largest write the device promises to persist whole or not at all.
///
/// A crash may tear a write only at multiples of this unit (class A). Tears finer than the
/// unit are sub-atomic tears, a class B fault enabled by [`DiskConfig::subsector_tears`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AtomicUnit {
    /// 512-byte sectors: a 4 KiB block may be torn at any of its 7 sector boundaries.
    Sector512,
    /// 1 KiB.
    Bytes1024,
    /// 2 KiB.
    Bytes2048,
    /// 4 KiB: a block is never torn (only dropped or applied whole).
    Block4096,
}

impl AtomicUnit {
    /// The unit's size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            AtomicUnit::Sector512 => 512,
            AtomicUnit::Bytes1024 => 1024,
            AtomicUnit::Bytes2048 => 2048,
            AtomicUnit::Block4096 => 4096,
        }
    }

    /// Atomic units in one 4 KiB block (1, 2, 4 or 8).
    pub const fn units_per_block(self) -> usize {
        engine::limits::BLOCK_SIZE / self.bytes()
    }

    /// 512-byte sectors in one atomic unit.
    pub const fn sectors_per_unit(self) -> usize {
        self.bytes() / engine::limits::SECTOR_SIZE
    }
}

/// Per-operation fault rates, in parts per million.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRates {
    /// Per accepted write: acknowledged, kept in the cache, never destaged (class B).
    pub lost_write_ppm: u32,
    /// Per accepted write: destaged onto another, random block (class B).
    pub misdirected_write_ppm: u32,
    /// Per read of a block with no cached write: one bit of the durable copy flips first
    /// and stays flipped until the block is rewritten (class B).
    pub bit_rot_ppm: u32,
    /// Per read of a block with no cached write: the block becomes unreadable (EIO) until a
    /// write to it is destaged (class C).
    pub latent_sector_ppm: u32,
    /// Per read: this read fails with EIO, nothing changes (class C).
    pub read_eio_ppm: u32,
    /// Per write (plain or FUA): this write fails with EIO and is not accepted (class C).
    pub write_eio_ppm: u32,
    /// Per flush: this flush fails with EIO, every pending write stays pending (class C).
    pub flush_eio_ppm: u32,
    /// Per read of a block with no cached write: one 512-byte sector of the durable copy
    /// reads back as zeros first, and stays so until the block is rewritten (class B; a
    /// metadata block's checksum covers every sector, so it is detectable).
    #[serde(default)]
    pub zeroed_sector_ppm: u32,
}

impl FaultRates {
    /// No faults at all.
    pub const ZERO: FaultRates = FaultRates {
        lost_write_ppm: 0,
        misdirected_write_ppm: 0,
        bit_rot_ppm: 0,
        latent_sector_ppm: 0,
        read_eio_ppm: 0,
        write_eio_ppm: 0,
        flush_eio_ppm: 0,
        zeroed_sector_ppm: 0,
    };

    /// Whether any rate is non-zero.
    pub fn any(&self) -> bool {
        *self != FaultRates::ZERO
    }
}

/// How [`super::SimDisk::crash`] picks the fate of each pending write.
///
/// Each pending write is applied whole with `apply_ppm`, torn with `tear_ppm`, and dropped
/// otherwise. (A lost write is always dropped: it never reached the media.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashPolicy {
    pub apply_ppm: u32,
    pub tear_ppm: u32,
    /// Apply the surviving writes in a random order, so an older version of a block may land
    /// over a newer one. Off: issue order (a drive that destages its cache in order).
    pub reorder: bool,
}

impl CrashPolicy {
    /// Half the writes survive whole, a fifth are torn, the rest dropped; any order.
    pub const ANY_SUBSET: CrashPolicy =
        CrashPolicy { apply_ppm: 500_000, tear_ppm: 200_000, reorder: true };
}

impl Default for CrashPolicy {
    fn default() -> Self {
        CrashPolicy::ANY_SUBSET
    }
}

/// Everything that shapes a simulated disk's behaviour besides its size and seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    pub atomic_unit: AtomicUnit,
    /// Allow crash tears finer than `atomic_unit` (class B).
    pub subsector_tears: bool,
    pub rates: FaultRates,
    pub crash: CrashPolicy,
    /// Full device: only blocks `0..backed_blocks` can be written; a write beyond fails with
    /// EIO (class C), as on a metadata volume whose backing store ran out. Reads still work.
    /// `None`: every block is backed.
    pub backed_blocks: Option<u64>,
}

impl DiskConfig {
    /// No faults; sector-atomic; crashes keep any subset of pending writes (class A only).
    pub fn none() -> Self {
        DiskConfig {
            atomic_unit: AtomicUnit::Sector512,
            subsector_tears: false,
            rates: FaultRates::ZERO,
            crash: CrashPolicy::ANY_SUBSET,
            backed_blocks: None,
        }
    }

    /// Refuses a configuration the disk cannot honour (a rate over one million per million,
    /// a crash policy whose apply and tear shares add up to more than all writes), naming
    /// the field; a drawn config always passes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rates;
        let ppm = [
            ("rates.lost_write_ppm", r.lost_write_ppm),
            ("rates.misdirected_write_ppm", r.misdirected_write_ppm),
            ("rates.bit_rot_ppm", r.bit_rot_ppm),
            ("rates.latent_sector_ppm", r.latent_sector_ppm),
            ("rates.read_eio_ppm", r.read_eio_ppm),
            ("rates.write_eio_ppm", r.write_eio_ppm),
            ("rates.flush_eio_ppm", r.flush_eio_ppm),
            ("rates.zeroed_sector_ppm", r.zeroed_sector_ppm),
            ("crash.apply_ppm", self.crash.apply_ppm),
            ("crash.tear_ppm", self.crash.tear_ppm),
            (
                "crash.apply_ppm + crash.tear_ppm",
                self.crash.apply_ppm.saturating_add(self.crash.tear_ppm),
            ),
        ];
        match ppm.into_iter().find(|&(_, v)| v > PPM) {
            Some((field, ppm)) => Err(ConfigError::Rate { field, ppm }),
            None => Ok(()),
        }
    }

    /// Whether anything beyond class A (crash, any subset, tears within the atomic unit) can
    /// be injected with this config.
    pub fn injects_beyond_class_a(&self) -> bool {
        self.subsector_tears || self.rates.any() || self.backed_blocks.is_some()
    }

    /// Draws a config for a swarm run on a device of `nr_blocks` blocks.
    ///
    /// Each fault kind is enabled with probability 1/2 and then gets a rate spread over four
    /// decades, so some runs see a fault once and others see it constantly.
    pub fn draw<R: Rng + ?Sized>(rng: &mut R, nr_blocks: u64) -> Self {
        let atomic_unit = match rng.random_range(0..8u32) {
            0 => AtomicUnit::Block4096,
            1 => AtomicUnit::Bytes1024,
            2 => AtomicUnit::Bytes2048,
            _ => AtomicUnit::Sector512,
        };
        let rates = FaultRates {
            lost_write_ppm: draw_rate(rng),
            misdirected_write_ppm: draw_rate(rng),
            bit_rot_ppm: draw_rate(rng),
            latent_sector_ppm: draw_rate(rng),
            read_eio_ppm: draw_rate(rng),
            write_eio_ppm: draw_rate(rng),
            flush_eio_ppm: draw_rate(rng),
            zeroed_sector_ppm: draw_rate(rng),
        };
        let crash = CrashPolicy {
            apply_ppm: rng.random_range(0..=PPM),
            tear_ppm: 0,
            reorder: rng.random_bool(0.5),
        };
        let crash = CrashPolicy { tear_ppm: rng.random_range(0..=PPM - crash.apply_ppm), ..crash };
        let backed_blocks = if nr_blocks > 1 && rng.random_range(0..8u32) == 0 {
            Some(rng.random_range(nr_blocks / 2..nr_blocks))
        } else {
            None
        };
        DiskConfig {
            atomic_unit,
            subsector_tears: rng.random_range(0..4u32) == 0,
            rates,
            crash,
            backed_blocks,
        }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig::none()
    }
}

/// Zero half the time; otherwise 10, 100, 1,000 or 10,000 ppm times a factor in 1..10.
fn draw_rate<R: Rng + ?Sized>(rng: &mut R) -> u32 {
    if rng.random_bool(0.5) {
        return 0;
    }
    let decade = 10u32.pow(rng.random_range(1..=4u32));
    decade * rng.random_range(1..10u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn none_injects_nothing_beyond_class_a() {
        let c = DiskConfig::none();
        assert!(!c.injects_beyond_class_a());
        assert_eq!(c.atomic_unit.units_per_block(), 8);
        assert_eq!(AtomicUnit::Block4096.units_per_block(), 1);
        assert_eq!(AtomicUnit::Bytes2048.sectors_per_unit(), 4);
    }

    #[test]
    fn draw_is_deterministic_and_varied() {
        let a = DiskConfig::draw(&mut ChaCha8Rng::seed_from_u64(7), 64);
        let b = DiskConfig::draw(&mut ChaCha8Rng::seed_from_u64(7), 64);
        assert_eq!(a, b);
        let configs: Vec<_> =
            (0..64).map(|s| DiskConfig::draw(&mut ChaCha8Rng::seed_from_u64(s), 64)).collect();
        assert!(configs.iter().any(|c| c.rates.lost_write_ppm == 0));
        assert!(configs.iter().any(|c| c.rates.lost_write_ppm > 0));
        assert!(configs.iter().any(|c| c.backed_blocks.is_some()));
        for c in &configs {
            assert!(c.crash.apply_ppm + c.crash.tear_ppm <= PPM);
            if let Some(b) = c.backed_blocks {
                assert!((32..64).contains(&b));
            }
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = DiskConfig::draw(&mut ChaCha8Rng::seed_from_u64(3), 128);
        let text = serde_json::to_string(&c).expect("config serialises");
        let back: DiskConfig = serde_json::from_str(&text).expect("config parses");
        assert_eq!(c, back);
    }
}

/// A disk the simulator refuses to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// More blocks than the simulator holds in memory ([`super::MAX_SIM_BLOCKS`]).
    TooLarge { nr_blocks: u64, max: u64 },
    /// A rate (or a sum of shares) over 1,000,000 per million.
    Rate { field: &'static str, ppm: u32 },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::TooLarge { nr_blocks, max } => {
                write!(f, "a simulated disk of {nr_blocks} blocks is over the limit of {max}")
            }
            ConfigError::Rate { field, ppm } => {
                write!(f, "disk {field} is {ppm} ppm, over 1000000 (every event)")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

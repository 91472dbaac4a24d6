//! A mapping value: data block in the high 40 bits, time stamp in the low 24.
//!
//! | bits  | field      |
//! |-------|------------|
//! | 63..24| data block |
//! | 23..0 | time       |
//!
//! Packing refuses values that would not round-trip (the kernel ORs them together
//! unmasked; callers keep time < 2^24 and blocks < 2^40, see [R8]).

use super::ids::{DataBlock, Time};
use crate::limits::{DATA_BLOCK_LIMIT, TIME_BITS, TIME_LIMIT};

/// A decoded mapping value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockTime {
    pub data_block: DataBlock,
    pub time: Time,
}

impl BlockTime {
    /// Packs; `None` when either field would not fit.
    pub fn pack(self) -> Option<u64> {
        if self.data_block.0 >= DATA_BLOCK_LIMIT || self.time.0 >= TIME_LIMIT {
            return None;
        }
        Some((self.data_block.0 << TIME_BITS) | u64::from(self.time.0))
    }

    pub fn unpack(v: u64) -> Self {
        BlockTime {
            data_block: DataBlock(v >> TIME_BITS),
            time: Time((v & u64::from(TIME_LIMIT - 1)) as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let v = BlockTime { data_block: DataBlock(20), time: Time(1) }.pack().unwrap();
        assert_eq!(v, 0x0000_0000_1400_0001);
        assert_eq!(BlockTime::unpack(v), BlockTime { data_block: DataBlock(20), time: Time(1) });
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(BlockTime { data_block: DataBlock(1), time: Time(TIME_LIMIT) }.pack(), None);
        assert_eq!(
            BlockTime { data_block: DataBlock(DATA_BLOCK_LIMIT), time: Time(0) }.pack(),
            None
        );
    }
}

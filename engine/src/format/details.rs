//! Device-details value (24 bytes), the value of the details tree keyed by thin id.
//!
//! | off | size | field            |
//! |-----|------|------------------|
//! | 0   | 8    | mapped_blocks    |
//! | 8   | 8    | transaction_id   |
//! | 16  | 4    | creation_time    |
//! | 20  | 4    | snapshotted_time |

use super::ids::{Time, TransactionId};
use super::{le_u32, le_u64, put_u32, put_u64};

pub const DETAILS_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceDetails {
    pub mapped_blocks: u64,
    pub transaction_id: TransactionId,
    pub creation_time: Time,
    pub snapshotted_time: Time,
}

impl DeviceDetails {
    pub fn pack(&self) -> [u8; DETAILS_BYTES] {
        let mut b = [0u8; DETAILS_BYTES];
        put_u64(&mut b, 0, self.mapped_blocks);
        put_u64(&mut b, 8, self.transaction_id.0);
        put_u32(&mut b, 16, self.creation_time.0);
        put_u32(&mut b, 20, self.snapshotted_time.0);
        b
    }

    pub fn unpack(b: &[u8]) -> Self {
        DeviceDetails {
            mapped_blocks: le_u64(b, 0),
            transaction_id: TransactionId(le_u64(b, 8)),
            creation_time: Time(le_u32(b, 16)),
            snapshotted_time: Time(le_u32(b, 20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let bytes = [5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let d = DeviceDetails::unpack(&bytes);
        assert_eq!(
            d,
            DeviceDetails {
                mapped_blocks: 5,
                transaction_id: TransactionId(2),
                creation_time: Time(0),
                snapshotted_time: Time(1)
            }
        );
        assert_eq!(d.pack(), bytes);
    }
}

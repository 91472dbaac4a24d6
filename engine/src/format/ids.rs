//! The number spaces of the pool API, as types: a thin device's id, a virtual block of a
//! thin device, a block of the data device, a block of the metadata device, a transaction id
//! and the pool's time (the snapshot counter). Each is its own type so that a call cannot take
//! one for another (`insert_block(&h, VBlock(v), DataBlock(b))`, never two bare `u64`s);
//! `From<u64>` and `u64::from` are the explicit crossings, at the edge of a caller that
//! holds plain numbers (a trace, a model, a test's literal).
//!
//! Invariant: the wrapped number is the number the kernel's API uses for it (`dm_thin_id`,
//! `dm_block_t` of a virtual or a data block), with no offset or scaling.

use std::fmt;

macro_rules! number_space {
    ($(#[$doc:meta])* $name:ident) => {
        number_space!($(#[$doc])* $name, u64);
    };
    ($(#[$doc:meta])* $name:ident, $repr:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $repr);

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

number_space!(
    /// A thin device's id (24 bits in the kernel's API).
    ThinId
);
number_space!(
    /// A block of a thin device's virtual address space, in data-block units.
    VBlock
);
number_space!(
    /// A block of the data device.
    DataBlock
);
number_space!(
    /// A 4 KiB block of the metadata device (where the held metadata snapshot lives, say).
    MetadataBlock
);
number_space!(
    /// A transaction id: the superblock's (set by the pool's user, `dm_pool_set_transaction_id`)
    /// or the one a device's details record from the last commit that changed it.
    TransactionId
);
number_space!(
    /// The pool's time: a counter that each snapshot advances, stamped on every mapping and
    /// device (24 bits in a mapping, [R8]; 32 in the superblock and details).
    Time,
    u32
);

impl MetadataBlock {
    /// The block number as a btree value stores it (a child pointer, a subtree root).
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }
}

impl Time {
    /// The time after this one (a snapshot's); the caller keeps it below the format's limit.
    pub fn next(self) -> Time {
        Time(self.0 + 1)
    }
}

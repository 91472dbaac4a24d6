//! Btree nodes: one node per 4 KiB block, u64 keys, fixed-size values.
//!
//! Header (32 bytes, salt 121107):
//! | off | size | field       |
//! |-----|------|-------------|
//! | 0   | 4    | csum        |
//! | 4   | 4    | flags: 1 = INTERNAL, 2 = LEAF |
//! | 8   | 8    | blocknr     |
//! | 16  | 4    | nr_entries  |
//! | 20  | 4    | max_entries |
//! | 24  | 4    | value_size  |
//! | 28  | 4    | padding     |
//!
//! Keys are a u64 array at 32; values start after *all* `max_entries` key slots, at
//! `32 + 8·max_entries`. Slots at and after `nr_entries` are unused and may hold stale bytes.
//!
//! Invariants of a validated node (`validate`): flags is exactly INTERNAL or LEAF;
//! `32 + (8 + value_size)·max_entries ≤ 4096`; `nr_entries ≤ max_entries`; internal nodes
//! have value size 8; keys strictly increase. The mutators below keep all of them.

use super::ids::MetadataBlock;
use super::{le_u32, le_u64, put_u32, put_u64};
use crate::error::CorruptKind;
use crate::io::Block;
use crate::limits::{BLOCK_SIZE, NODE_HEADER_BYTES};

pub const INTERNAL: u32 = 1;
pub const LEAF: u32 = 2;

/// Capacity of a node whose values are `value_size` bytes (always a multiple of 3).
pub const fn max_entries(value_size: usize) -> u32 {
    let n = (BLOCK_SIZE - NODE_HEADER_BYTES) / (8 + value_size);
    (3 * (n / 3)) as u32
}

const _: () = assert!(max_entries(4) == 336);
const _: () = assert!(max_entries(8) == 252);
const _: () = assert!(max_entries(16) == 168);
const _: () = assert!(max_entries(24) == 126);

#[inline]
pub fn flags(b: &Block) -> u32 {
    le_u32(b, 4)
}
#[inline]
pub fn is_leaf(b: &Block) -> bool {
    flags(b) == LEAF
}
#[inline]
pub fn nr_entries(b: &Block) -> usize {
    le_u32(b, 16) as usize
}
#[inline]
pub fn max_entries_of(b: &Block) -> usize {
    le_u32(b, 20) as usize
}
#[inline]
pub fn value_size(b: &Block) -> usize {
    le_u32(b, 24) as usize
}
#[inline]
pub fn key(b: &Block, i: usize) -> u64 {
    le_u64(b, NODE_HEADER_BYTES + 8 * i)
}
#[inline]
fn value_offset(b: &Block, i: usize) -> usize {
    NODE_HEADER_BYTES + 8 * max_entries_of(b) + value_size(b) * i
}
#[inline]
pub fn value(b: &Block, i: usize) -> &[u8] {
    let off = value_offset(b, i);
    &b[off..off + value_size(b)]
}
#[inline]
pub fn value_u64(b: &Block, i: usize) -> u64 {
    le_u64(b, value_offset(b, i))
}
/// Child `i` of an internal node: the metadata block its value names.
#[inline]
pub fn child(b: &Block, i: usize) -> MetadataBlock {
    MetadataBlock(value_u64(b, i))
}

/// Initialises an empty node in `b` (header only; the rest is zeroed).
pub fn init(b: &mut Block, flags: u32, value_size: usize) {
    b.fill(0);
    put_u32(b, 4, flags);
    put_u32(b, 20, max_entries(value_size));
    put_u32(b, 24, value_size as u32);
}

pub fn set_nr_entries(b: &mut Block, n: usize) {
    debug_assert!(n <= max_entries_of(b));
    put_u32(b, 16, n as u32);
}

pub fn set_key(b: &mut Block, i: usize, k: u64) {
    put_u64(b, NODE_HEADER_BYTES + 8 * i, k);
}

pub fn set_value(b: &mut Block, i: usize, v: &[u8]) {
    let off = value_offset(b, i);
    debug_assert_eq!(v.len(), value_size(b));
    b[off..off + v.len()].copy_from_slice(v);
}

/// Index of the last key ≤ `k` (None when `k` is below every key).
pub fn lower_bound(b: &Block, k: u64) -> Option<usize> {
    let n = nr_entries(b);
    // Binary search over the key array: first index with key > k, minus one.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if key(b, mid) <= k {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1)
}

/// Index of the first key ≥ `k` (== nr_entries when none).
pub fn upper_bound(b: &Block, k: u64) -> usize {
    match lower_bound(b, k) {
        Some(i) if key(b, i) == k => i,
        Some(i) => i + 1,
        None => 0,
    }
}

/// Inserts (k, v) at slot `i`, shifting later entries right. The node must not be full.
pub fn insert_at(b: &mut Block, i: usize, k: u64, v: &[u8]) {
    let n = nr_entries(b);
    let max = max_entries_of(b);
    let vs = value_size(b);
    assert!(n < max && i <= n, "insert into a full node or past its end");
    let kb = NODE_HEADER_BYTES + 8 * i;
    b.copy_within(kb..NODE_HEADER_BYTES + 8 * n, kb + 8);
    let vb = NODE_HEADER_BYTES + 8 * max + vs * i;
    let ve = NODE_HEADER_BYTES + 8 * max + vs * n;
    b.copy_within(vb..ve, vb + vs);
    set_nr_entries(b, n + 1);
    set_key(b, i, k);
    set_value(b, i, v);
}

/// Removes entries `[i, j)`, shifting later entries left.
pub fn remove_range_at(b: &mut Block, i: usize, j: usize) {
    let n = nr_entries(b);
    let max = max_entries_of(b);
    let vs = value_size(b);
    assert!(i <= j && j <= n);
    b.copy_within(NODE_HEADER_BYTES + 8 * j..NODE_HEADER_BYTES + 8 * n, NODE_HEADER_BYTES + 8 * i);
    let vbase = NODE_HEADER_BYTES + 8 * max;
    b.copy_within(vbase + vs * j..vbase + vs * n, vbase + vs * i);
    set_nr_entries(b, n - (j - i));
}

/// Copies entries `[from, from+count)` of `src` to slots `[to, to+count)` of `dst`
/// (same value size), without touching `dst`'s entry count.
pub fn copy_entries(dst: &mut Block, to: usize, src: &Block, from: usize, count: usize) {
    let vs = value_size(src);
    debug_assert_eq!(vs, value_size(dst));
    let sk = NODE_HEADER_BYTES + 8 * from;
    let dk = NODE_HEADER_BYTES + 8 * to;
    dst[dk..dk + 8 * count].copy_from_slice(&src[sk..sk + 8 * count]);
    let sv = NODE_HEADER_BYTES + 8 * max_entries_of(src) + vs * from;
    let dv = NODE_HEADER_BYTES + 8 * max_entries_of(dst) + vs * to;
    dst[dv..dv + vs * count].copy_from_slice(&src[sv..sv + vs * count]);
}

/// Moves the first `count` entries of `b` out (shifting the rest left).
pub fn shift_left(b: &mut Block, count: usize) {
    remove_range_at(b, 0, count);
}

/// Opens `count` empty slots at the front of `b` (shifting entries right).
pub fn shift_right(b: &mut Block, count: usize) {
    let n = nr_entries(b);
    let max = max_entries_of(b);
    let vs = value_size(b);
    assert!(n + count <= max);
    b.copy_within(NODE_HEADER_BYTES..NODE_HEADER_BYTES + 8 * n, NODE_HEADER_BYTES + 8 * count);
    let vbase = NODE_HEADER_BYTES + 8 * max;
    b.copy_within(vbase..vbase + vs * n, vbase + vs * count);
    set_nr_entries(b, n + count);
}

/// Checks the shape of a node whose checksum and location already verified.
pub fn validate(b: &Block) -> Result<(), CorruptKind> {
    let bad = |s: String| Err(CorruptKind::Structure(s));
    let f = flags(b);
    if f != INTERNAL && f != LEAF {
        return bad(format!("node flags {f} are neither internal (1) nor leaf (2)"));
    }
    let vs = value_size(b);
    let max = max_entries_of(b);
    let n = nr_entries(b);
    if vs == 0 || NODE_HEADER_BYTES + (8 + vs) * max > BLOCK_SIZE {
        return bad(format!("max_entries {max} with value size {vs} overflows the block"));
    }
    if n > max {
        return bad(format!("nr_entries {n} exceeds max_entries {max}"));
    }
    if f == INTERNAL && vs != 8 {
        return bad(format!("internal node with value size {vs}"));
    }
    for i in 1..n {
        if key(b, i - 1) >= key(b, i) {
            return bad(format!(
                "keys out of order at entry {i}: {} then {}",
                key(b, i - 1),
                key(b, i)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_keep_order() {
        let mut b = [0u8; 4096];
        init(&mut b, LEAF, 8);
        for (i, k) in [10u64, 30, 20].into_iter().enumerate() {
            let at = upper_bound(&b, k);
            insert_at(&mut b, at, k, &(k * 100 + i as u64).to_le_bytes());
        }
        assert_eq!((0..3).map(|i| key(&b, i)).collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(value_u64(&b, 1), 2002);
        assert_eq!(lower_bound(&b, 25), Some(1));
        assert_eq!(lower_bound(&b, 5), None);
        remove_range_at(&mut b, 0, 2);
        assert_eq!(nr_entries(&b), 1);
        assert_eq!(key(&b, 0), 30);
        assert_eq!(validate(&b), Ok(()));
    }
}

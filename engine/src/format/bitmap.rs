//! Space-map bitmap blocks: 16320 two-bit reference counts after a 16-byte header.
//!
//! | off | size | field                              |
//! |-----|------|------------------------------------|
//! | 0   | 4    | csum (salt 240779)                 |
//! | 4   | 4    | not_used                           |
//! | 8   | 8    | blocknr                            |
//! | 16  | 4080 | 510 little-endian u64 words        |
//!
//! Entry i is in word i/32 at bit p = 2·(i mod 32). Bit p is the value-2 bit and bit p+1 the
//! value-1 bit. Value 3 means "the full count is in the overflow btree".

use super::{le_u64, put_u64};
use crate::io::Block;
use crate::limits::{BITMAP_HEADER_BYTES, ENTRIES_PER_BITMAP};

/// Largest count a bitmap entry stores directly; 3 defers to the overflow tree.
pub const OVERFLOW_MARK: u32 = 3;

#[inline]
fn word_offset(i: u64) -> usize {
    BITMAP_HEADER_BYTES + (i / 32) as usize * 8
}

/// The bit pair that stores `v` (0..=3): the value-2 bit low, the value-1 bit high. The
/// swap is its own inverse, so [`value_of_pair`] is the same function.
#[inline]
const fn pair_of(v: u64) -> u64 {
    ((v >> 1) & 1) | ((v & 1) << 1)
}

/// The value (0..=3) a bit pair stores.
#[inline]
const fn value_of_pair(pair: u64) -> u64 {
    pair_of(pair)
}

/// The 2-bit value of entry `i`.
#[inline]
pub fn get(block: &Block, i: u64) -> u32 {
    debug_assert!(i < ENTRIES_PER_BITMAP);
    decode_entry(le_u64(block, word_offset(i)), i % 32)
}

/// Sets entry `i` to `v` (0..=3).
#[inline]
pub fn set(block: &mut Block, i: u64, v: u32) {
    debug_assert!(i < ENTRIES_PER_BITMAP && v <= OVERFLOW_MARK);
    let off = word_offset(i);
    let p = 2 * (i % 32);
    let w = (le_u64(block, off) & !(3u64 << p)) | (pair_of(u64::from(v)) << p);
    put_u64(block, off, w);
}

/// Word `w` (entries `32·w .. 32·w + 32`) as a little-endian u64.
#[inline]
pub fn word(block: &Block, w: u64) -> u64 {
    le_u64(block, word_offset(w * 32))
}

/// Stores word `w` (entries `32·w ..`).
#[inline]
pub fn put_word(block: &mut Block, w: u64, value: u64) {
    put_u64(block, word_offset(w * 32), value)
}

/// The word holding `counts` (at most 32, each capped at 3), entry 0 in the lowest pair.
#[inline]
pub fn encode_word(counts: &[u32]) -> u64 {
    debug_assert!(counts.len() <= 32);
    let pairs = counts.iter().map(|&c| pair_of(u64::from(c.min(OVERFLOW_MARK))));
    pairs.enumerate().fold(0, |w, (j, pair)| w | (pair << (2 * j)))
}

/// Entry `j` (0..32) of a word.
#[inline]
pub fn decode_entry(w: u64, j: u64) -> u32 {
    value_of_pair((w >> (2 * j)) & 3) as u32
}

/// Whether the 32 entries of the word holding entry `i` are all zero.
#[inline]
pub fn word_is_zero(block: &Block, i: u64) -> bool {
    le_u64(block, word_offset(i)) == 0
}

/// Number of zero entries among all 16320 (what the kernel keeps in `nr_free`).
pub fn count_free(block: &Block) -> u32 {
    let mut used = 0u32;
    for word in 0..(ENTRIES_PER_BITMAP / 32) {
        let w = le_u64(block, word_offset(word * 32));
        // An entry is in use when either of its two bits is set.
        let pairs = (w | (w >> 1)) & 0x5555_5555_5555_5555;
        used += pairs.count_ones();
    }
    ENTRIES_PER_BITMAP as u32 - used
}

/// First zero entry in `[start, end)`, skipping words whose entries are all in use.
pub fn find_free(block: &Block, start: u64, end: u64) -> Option<u64> {
    let end = end.min(ENTRIES_PER_BITMAP);
    let mut i = start;
    while i < end {
        let w = le_u64(block, word_offset(i));
        let in_use = (w | (w >> 1)) & 0x5555_5555_5555_5555;
        if in_use == 0x5555_5555_5555_5555 {
            i = (i / 32 + 1) * 32;
            continue;
        }
        if get(block, i) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_matches_real_images() {
        // Metadata bitmap with blocks 0-7 and 9-11 at count 1 starts `aa aa a8 00`.
        let mut b = [0u8; 4096];
        for i in (0..8).chain(9..12) {
            set(&mut b, i, 1);
        }
        assert_eq!(&b[16..20], &[0xaa, 0xaa, 0xa8, 0x00]);
        // Data bitmap with counts 2, 2, 1 at blocks 10, 11, 12: byte 2 = 0x50, byte 3 = 0x02.
        let mut d = [0u8; 4096];
        set(&mut d, 10, 2);
        set(&mut d, 11, 2);
        set(&mut d, 12, 1);
        assert_eq!(d[16 + 2], 0x50);
        assert_eq!(d[16 + 3], 0x02);
    }

    #[test]
    fn get_set_round_trip_and_free_counts() {
        let mut b = [0u8; 4096];
        for i in 0..ENTRIES_PER_BITMAP {
            set(&mut b, i, (i % 4) as u32);
        }
        for i in 0..ENTRIES_PER_BITMAP {
            assert_eq!(get(&b, i), (i % 4) as u32);
        }
        assert_eq!(count_free(&b), (ENTRIES_PER_BITMAP / 4) as u32);
        assert_eq!(find_free(&b, 1, ENTRIES_PER_BITMAP), Some(4));
        assert_eq!(find_free(&b, 4, 4), None);
    }

    #[test]
    fn word_encoding_agrees_with_per_entry_set_and_get() {
        // Counts 0..=5 in a rotating pattern: 4 and 5 must be stored as 3 (overflow mark).
        let counts: Vec<u32> =
            (0..ENTRIES_PER_BITMAP as u32).map(|i| (i * 7 + i / 3) % 6).collect();
        let (mut by_entry, mut by_word) = ([0u8; 4096], [0u8; 4096]);
        for (i, &c) in counts.iter().enumerate() {
            set(&mut by_entry, i as u64, c.min(OVERFLOW_MARK));
        }
        for (w, chunk) in counts.chunks(32).enumerate() {
            put_word(&mut by_word, w as u64, encode_word(chunk));
        }
        assert_eq!(by_entry, by_word);
        for (i, &c) in counts.iter().enumerate() {
            let w = word(&by_word, i as u64 / 32);
            assert_eq!(decode_entry(w, i as u64 % 32), c.min(OVERFLOW_MARK), "entry {i}");
        }
    }
}

//! Line and column tracking for the XML parser: a `BufRead` adapter that counts the lines and
//! characters of every byte the tokenizer consumes.
//!
//! Invariant: `Tracked::at` is the position just after the last consumed byte. quick-xml
//! consumes exactly the bytes of each event it returns (plus, after text, the `<` that ended
//! it), so the parser can locate every event without keeping old input. Columns count UTF-8
//! characters (bytes that are not `10xxxxxx` continuation bytes); a leading byte-order mark is
//! not a column.

use std::io::{self, BufRead, Read};

/// Where in the input: 1-based line and column (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub(super) const START: Position = Position { line: 1, column: 1 };

    /// The position after `bytes` have been read from `self`.
    pub(super) fn advanced(mut self, bytes: &[u8]) -> Position {
        // Counting first (word at a time) keeps the common newline-free chunk cheap.
        let newlines = count_newlines(bytes);
        if newlines == 0 {
            self.column += count_chars(bytes);
            return self;
        }
        self.line += newlines;
        let after_last = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.column = 1 + count_chars(&bytes[after_last..]);
        self
    }
}

const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Counts, eight bytes at a time, the bytes of `bytes` for which `marks` sets the byte's high
/// bit; `tail` decides the remaining bytes one by one.
fn count_swar(bytes: &[u8], marks: impl Fn(u64) -> u64, tail: impl Fn(u8) -> bool) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut total = 0u64;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        total += u64::from(marks(u64::from_le_bytes(w)).count_ones());
    }
    total + words.remainder().iter().filter(|&&b| tail(b)).count() as u64
}

fn count_newlines(bytes: &[u8]) -> u64 {
    // High bit of each byte that equals b'\n': zero bytes of x, found without carries.
    let marks = |word: u64| {
        let x = word ^ 0x0A0A_0A0A_0A0A_0A0A;
        !(((x & LOW7) + LOW7) | x | LOW7)
    };
    count_swar(bytes, marks, |b| b == b'\n')
}

/// UTF-8 characters = bytes that are not continuation bytes (`10xxxxxx`).
fn count_chars(bytes: &[u8]) -> u64 {
    // A continuation byte has bit 7 set and bit 6 clear; `word << 1` moves bit 6 to bit 7.
    let continuation = |word: u64| word & !(word << 1) & HIGH;
    bytes.len() as u64 - count_swar(bytes, continuation, |b| b & 0xC0 == 0x80)
}

/// A `BufRead` over any reader that tracks the line and column of the consumed bytes. The
/// tokenizer consumes exactly the bytes of each event it returns, so after an event the
/// tracked position is where the event ended.
pub(super) struct Tracked<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Invariant: `pos <= filled <= buf.len()`.
    pos: usize,
    filled: usize,
    consumed_bytes: u64,
    pub(super) at: Position,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: Read> Tracked<R> {
    pub(super) fn new(inner: R) -> Self {
        let buf = vec![0; 1 << 16].into_boxed_slice();
        Tracked { inner, buf, pos: 0, filled: 0, consumed_bytes: 0, at: Position::START }
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.filled = self.inner.read(&mut self.buf)?.min(self.buf.len());
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        let end = self.pos + amt.min(self.filled - self.pos);
        let mut chunk = &self.buf[self.pos..end];
        // The tokenizer drops a leading byte-order mark; it is not a column.
        if self.consumed_bytes == 0 && chunk.starts_with(UTF8_BOM) {
            chunk = &chunk[UTF8_BOM.len()..];
        }
        self.at = self.at.advanced(chunk);
        self.consumed_bytes += (end - self.pos) as u64;
        self.pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_counts_match_byte_counts() {
        let text = "ab\n\ncdé\u{1F600}x\n\n\nyz\u{2028}q\n\n\n\n\n\n\n\n".repeat(3);
        for start in 0..8 {
            let bytes = &text.as_bytes()[start..];
            let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            let chars = bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
            assert_eq!(count_newlines(bytes), newlines);
            assert_eq!(count_chars(bytes), chars);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(count_newlines(&all), 1);
        assert_eq!(count_chars(&all), 256 - 64);
    }

    #[test]
    fn position_advances_by_characters_and_lines() {
        let p = Position::START.advanced("ab\ncdé".as_bytes());
        assert_eq!(p, Position { line: 2, column: 4 });
        let p = p.advanced(b"xy");
        assert_eq!(p, Position { line: 2, column: 6 });
    }
}

//! FNV-1a, the simulator's one stable hash (std's hasher may change between Rust releases,
//! and a trace hash or an entropy tail must not).

/// An FNV-1a state; [`Fnv::default`] is the standard offset basis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv::default();
        h.add(bytes);
        h.0
    }
}

impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.add(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vectors() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(super::Fnv::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::Fnv::of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

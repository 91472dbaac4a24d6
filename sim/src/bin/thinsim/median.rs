//! The benchmarks' one statistic. The median, not the mean: this machine's speed drifts by
//! tens of percent between minutes, and one slow run must not move a figure.

/// The middle element of `values` by `key` (the upper of the two middle ones for an even
/// count), so a measured run keeps its other fields (peak memory, verification counts);
/// `None` for none.
pub fn median_by<T>(mut values: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    values.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = values.len() / 2;
    (mid < values.len()).then(|| values.swap_remove(mid))
}

/// The median of plain figures; 0 for none.
pub fn median(values: &[f64]) -> f64 {
    median_by(values.to_vec(), |v| *v).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middle_element_by_key() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median_by(vec![(9, 0.5), (7, 0.1), (8, 0.3)], |r| r.1), Some((8, 0.3)));
    }
}

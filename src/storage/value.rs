//! How a metric value is stored in the head's rows (`metric_samples.value`, `bits`) and
//! read back.

/// The bits of -0.0, the one finite value stored with its bits (not every backend keeps
/// its sign); reads that aggregate count it as a number.
const NEGATIVE_ZERO_BITS: i64 = i64::MIN;

/// A value as stored: a number as itself; -0.0, NaN (with its payload, such as
/// Prometheus' stale marker) and ±Inf as 0 with their bits beside it, which every backend
/// keeps exactly (SQLite binds NaN as NULL, MariaDB refuses it and ±Inf).
pub fn stored_value(value: f64) -> (f64, Option<i64>) {
    let bits = value.to_bits() as i64;
    if value.is_finite() && bits != NEGATIVE_ZERO_BITS { (value, None) } else { (0.0, Some(bits)) }
}

/// The value a stored `(value, bits)` pair stands for.
pub fn loaded_value(value: f64, bits: Option<i64>) -> f64 {
    bits.map_or(value, |bits| f64::from_bits(bits as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_stored_so_its_bits_come_back() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        for value in [1.5, 0.0, -0.0, f64::NAN, stale, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE] {
            let (stored, bits) = stored_value(value);
            assert!(stored.is_finite(), "{value} is stored as a number");
            assert_eq!(loaded_value(stored, bits).to_bits(), value.to_bits(), "{value}");
        }
        assert_eq!(stored_value(-0.0), (0.0, Some(NEGATIVE_ZERO_BITS)));
        assert_eq!(stored_value(2.0), (2.0, None));
    }
}

//! Float helpers shared by the metric store and the Prometheus output.

/// Whole numbers below 2^53, which print the same as an integer and faster.
pub fn whole(x: f64) -> Option<i64> {
    // The cast saturates (NaN gives 0), so only a whole `x` comes back unchanged; cheaper
    // than `fract`, a libm call here.
    let n = x as i64;
    (n as f64 == x && n.unsigned_abs() < 1 << 53 && !(x == 0.0 && x.is_sign_negative())).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_those_below_2_to_the_53_but_negative_zero() {
        for (x, n) in [(0.0, Some(0)), (-0.0, None), (3.0, Some(3)), (-3.0, Some(-3)), (2.5, None), (f64::NAN, None)] {
            assert_eq!(whole(x), n, "{x}");
        }
        let limit = 9_007_199_254_740_992f64;
        assert_eq!(whole(limit - 1.0), Some((1 << 53) - 1));
        assert_eq!(whole(-(limit - 1.0)), Some(1 - (1 << 53)));
        for x in [limit, -limit, f64::INFINITY, f64::NEG_INFINITY, 9.3e18, -9.3e18, i64::MAX as f64] {
            assert_eq!(whole(x), None, "{x}");
        }
    }
}

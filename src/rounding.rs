//! Rounding to integers in loops over whole rasters.
//!
//! `f32::round` is a call into libm on baseline x86_64 (its rounding instruction needs SSE4.1),
//! one call per pixel that also keeps the loop around it from vectorising. [`round_half_away`]
//! gives the same results with additions and compares, which vectorise; [`to_u16`] adds the
//! conversion without the per-lane range checks of a saturating `as`.
//!
//! ```
//! use geosr::rounding::round_half_away;
//! assert_eq!(round_half_away(2.5), 3.0);
//! assert_eq!(round_half_away(-2.5), -3.0);
//! assert_eq!(round_half_away(0.49999997), 0.0);
//! ```

/// From this magnitude on every `f32` is an integer, and adding it to a smaller non-negative
/// `f32` leaves no fraction: the sum is rounded to an integer, halves to even.
const ALL_INTEGERS: f32 = 8_388_608.0; // 2^23

/// `v` rounded to the nearest integer, halves away from zero: `f32::round`, bit for bit (NaN
/// and infinities pass through, `-0.4` gives `-0.0`).
#[inline]
pub fn round_half_away(v: f32) -> f32 {
    let a = v.abs();
    let even = (a + ALL_INTEGERS) - ALL_INTEGERS;
    // `a - even` is exact; it is one half only where a half was rounded down to even.
    let r = if a - even == 0.5 { even + 1.0 } else { even };
    if a < ALL_INTEGERS {
        r.copysign(v)
    } else {
        v
    }
}

/// `v` rounded ([`round_half_away`]) and clamped to `0..=65535`; NaN gives 0.
#[inline]
#[allow(clippy::manual_clamp)] // `clamp` would keep a NaN
pub fn to_u16(v: f32) -> u16 {
    // `max` takes the number over a NaN, so `c` is finite and within `0..=65535`.
    let c = round_half_away(v.max(0.0).min(65535.0));
    // SAFETY: `c` is finite and fits an `i32` (above); a saturating `as` would check every lane.
    unsafe { c.to_int_unchecked::<i32>() as u16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_rounding() {
        let special = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999997,
            -0.49999997,
            0.50000006,
            65534.5,
            65535.5,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for v in special {
            assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
        }
        assert!(round_half_away(f32::NAN).is_nan());
        // A spread of every magnitude where fractions exist, both signs.
        for bits in (0..0x4b00_0000u32).step_by(97) {
            let v = f32::from_bits(bits);
            for v in [v, -v] {
                assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
            }
        }
        // Every fraction near the halves of a range of integers.
        let mut x = -70_000.0f32;
        while x < 70_000.0 {
            for v in [x, x + 0.5, f32::from_bits((x + 0.5).to_bits() + 1)] {
                assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
            }
            x += 1.25;
        }
    }

    #[test]
    fn to_u16_saturates_and_zeroes_nan() {
        assert_eq!(to_u16(-3.7), 0);
        assert_eq!(to_u16(70_000.0), 65535);
        assert_eq!(to_u16(65534.5), 65535);
        assert_eq!(to_u16(1.49999), 1);
        assert_eq!(to_u16(f32::NAN), 0);
        for v in [0.0f32, 12.5, 300.49, 65535.0] {
            assert_eq!(to_u16(v), v.round() as u16);
        }
    }
}

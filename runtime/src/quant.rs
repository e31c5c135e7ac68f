//! TFLite's fixed-point quantization arithmetic, bit for bit (gemmlowp rounding, double rounding).

/// `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2*a*b`, rounded half away from zero.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C++ integer division truncates toward zero; so does Rust's `/`.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `RoundingDivideByPOT`: `x / 2^exponent`, rounded half away from zero.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=31).contains(&exponent));
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// `MultiplyByQuantizedMultiplier`: `x * multiplier * 2^shift` with TFLite's double rounding.
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left_shift = if shift > 0 { shift } else { 0 };
    let right_shift = if shift > 0 { 0 } else { -shift };
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left_shift), multiplier),
        right_shift,
    )
}

/// `x * multiplier * 2^shift` with one rounding (half up), as TFLite's fully connected int8
/// path computes it (ruy's requantization and `TFLITE_SINGLE_ROUNDING`).
#[inline(always)]
pub fn multiply_by_quantized_multiplier_single_rounding(
    x: i32,
    multiplier: i32,
    shift: i32,
) -> i32 {
    let total_shift = 31 - shift;
    let round = 1i64 << (total_shift - 1);
    ((x as i64 * multiplier as i64 + round) >> total_shift) as i32
}

/// `MultiplyByQuantizedMultiplierSmallerThanOneExp` (shift <= 0).
#[inline(always)]
pub fn multiply_by_quantized_multiplier_smaller_than_one(
    x: i32,
    multiplier: i32,
    shift: i32,
) -> i32 {
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -shift)
}

/// `MultiplyByQuantizedMultiplierGreaterThanOne` (shift >= 0).
#[inline(always)]
pub fn multiply_by_quantized_multiplier_greater_than_one(
    x: i32,
    multiplier: i32,
    shift: i32,
) -> i32 {
    saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << shift), multiplier)
}

/// `frexp` for finite doubles: `x = m * 2^e` with `0.5 <= |m| < 1`.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7FF) as i32;
    if exp_bits == 0 {
        // Subnormal: scale up into the normal range first.
        let (m, e) = frexp(x * (1u64 << 54) as f64);
        return (m, e - 54);
    }
    let e = exp_bits - 1022;
    let m = f64::from_bits((bits & !(0x7FFu64 << 52)) | (1022u64 << 52));
    (m, e)
}

/// Rounds half away from zero, like C's `round`.
pub fn round_half_away(x: f64) -> f64 {
    // Values here are far inside i64's range; `as` truncates toward zero.
    let t = x as i64 as f64;
    if (x - t).abs() >= 0.5 {
        t + x.signum()
    } else {
        t
    }
}

/// `QuantizeMultiplier`: a real multiplier as a Q31 fixed-point value and a power-of-two shift.
/// Runs on the host at conversion time, so the device never needs double-precision math.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 {
        return (0, 0);
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = round_half_away(q * (1i64 << 31) as f64) as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    if shift > 30 {
        shift = 30;
        q_fixed = (1i64 << 31) - 1;
    }
    (q_fixed as i32, shift)
}

/// `QuantizeMultiplierSmallerThanOneExp`.
pub fn quantize_multiplier_smaller_than_one(real: f64) -> (i32, i32) {
    quantize_multiplier(real)
}

/// `QuantizeMultiplierGreaterThanOne`: like [`quantize_multiplier`] for `real > 1`.
pub fn quantize_multiplier_greater_than_one(real: f64) -> (i32, i32) {
    quantize_multiplier(real)
}

/// `CalculateInputRadius`: the largest input magnitude that does not saturate a fixed-point op.
pub fn calculate_input_radius(
    input_integer_bits: i32,
    input_left_shift: i32,
    total_signed_bits: i32,
) -> i32 {
    let max_input_rescaled = 1.0f64
        * ((1i64 << input_integer_bits) - 1) as f64
        * (1i64 << (total_signed_bits - input_integer_bits)) as f64
        / (1i64 << input_left_shift) as f64;
    // TFLite floors the radius.
    let truncated = max_input_rescaled as i64;
    let floored = if (truncated as f64) > max_input_rescaled {
        truncated - 1
    } else {
        truncated
    };
    floored as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_matches_known_values() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        let (m, s) = quantize_multiplier(0.003_921_568_627_451);
        assert_eq!(s, -7);
        assert!(m > 1 << 30);
    }

    #[test]
    fn rounding_divide_rounds_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
    }

    #[test]
    fn high_mul_saturates() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
    }

    #[test]
    fn frexp_matches_libm() {
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(-3.0), (-0.75, 2));
    }
}

//! Shared parts of the hybrid kernels (int8 weights, float activations; TFLite's dynamic-range
//! quantization): on-the-fly quantization of a float batch and the arena scratch that holds it.
//!
//! TFLite quantizes every batch of the float input separately (symmetric: `q = round(x * 127 /
//! max|x|)`, asymmetric: a per-batch zero point), accumulates in int32, then rescales in float.
//! The functions here follow `tensor_utils::SymmetricQuantizeFloats` and
//! `tensor_utils::AsymmetricQuantizeFloats` (portable versions) operation for operation.
//!
//! # Scratch layout
//!
//! A hybrid op gets one `I32` arena tensor, `scratch`, planned by the converter (it must not
//! overlap the op's input or output; it may be reused by other ops before and after). Its
//! element count is [`scratch_elements`]`(batches, input_elements)`, and its bytes hold:
//!
//! | bytes | contents |
//! |---|---|
//! | `0 .. 4*batches` | per-batch scaling factor, `f32` |
//! | `4*batches .. 8*batches` | per-batch input zero point, `i32` (0 when symmetric) |
//! | `8*batches .. 8*batches + input_elements` | quantized input, `i8` |

use crate::arena::{as_f32, as_i32, as_i8, Validator};
use crate::error::{Error, Result};
use crate::tensor::{DType, TensorDef};

/// `I32` elements of the scratch tensor of a hybrid op (see the module docs).
pub const fn scratch_elements(batches: usize, input_elements: usize) -> usize {
    2 * batches + input_elements.div_ceil(4)
}

/// Load-time check of a hybrid op's scratch tensor.
pub fn validate_scratch(
    v: &Validator,
    scratch: &TensorDef,
    input: &TensorDef,
    output: &TensorDef,
    batches: usize,
) -> Result<()> {
    v.activation(scratch, DType::I32)?;
    let needed = scratch_elements(batches, input.elements());
    v.check(
        scratch.elements() >= needed,
        "hybrid scratch is smaller than scaling factors, zero points and quantized input",
    )?;
    v.disjoint(scratch, input)?;
    v.disjoint(scratch, output)
}

/// The scratch bytes split into their three parts, writable.
#[derive(Debug)]
pub struct ScratchMut<'a> {
    pub scaling_factors: &'a mut [f32],
    pub input_offsets: &'a mut [i32],
    pub quantized: &'a mut [i8],
}

/// The scratch bytes split into their three parts, read-only.
#[derive(Debug)]
pub struct ScratchRef<'a> {
    pub scaling_factors: &'a [f32],
    pub input_offsets: &'a [i32],
    pub quantized: &'a [i8],
}

const SCRATCH_ERROR: Error = Error::Malformed {
    what: "hybrid scratch too small or misaligned",
};

pub fn split_scratch_mut(
    bytes: &mut [u8],
    batches: usize,
    input_elements: usize,
) -> Result<ScratchMut<'_>> {
    let factors_len = 4 * batches;
    if bytes.len() < 2 * factors_len + input_elements {
        return Err(SCRATCH_ERROR);
    }
    let (factors, rest) = bytes.split_at_mut(factors_len);
    let (offsets, rest) = rest.split_at_mut(factors_len);
    Ok(ScratchMut {
        scaling_factors: bytemuck::try_cast_slice_mut(factors).map_err(|_| SCRATCH_ERROR)?,
        input_offsets: bytemuck::try_cast_slice_mut(offsets).map_err(|_| SCRATCH_ERROR)?,
        quantized: bytemuck::cast_slice_mut(&mut rest[..input_elements]),
    })
}

pub fn split_scratch(
    bytes: &[u8],
    batches: usize,
    input_elements: usize,
) -> Result<ScratchRef<'_>> {
    let factors_len = 4 * batches;
    if bytes.len() < 2 * factors_len + input_elements {
        return Err(SCRATCH_ERROR);
    }
    let (factors, rest) = bytes.split_at(factors_len);
    let (offsets, rest) = rest.split_at(factors_len);
    Ok(ScratchRef {
        scaling_factors: as_f32(factors)?,
        input_offsets: as_i32(offsets)?,
        quantized: as_i8(&rest[..input_elements]),
    })
}

/// `std::minmax_element` over floats: the first smallest and the last largest value.
fn min_max(values: &[f32]) -> (f32, f32) {
    let first = values.first().copied().unwrap_or(0.0);
    values.iter().fold((first, first), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v < hi { hi } else { v })
    })
}

/// `std::max` for floats: `b` only when `a < b`.
fn max_f32(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `tensor_utils::SymmetricQuantizeFloats`: `q = clamp(round(x * (127 / range)), -127, 127)`
/// with `range = max(|min|, |max|)`; returns the scaling factor `range / 127` (1 for an
/// all-zero batch, which quantizes to zeros).
pub fn symmetric_quantize(values: &[f32], quantized: &mut [i8]) -> f32 {
    const SCALE: i32 = 127;
    let (lo, hi) = min_max(values);
    let range = max_f32(lo.abs(), hi.abs());
    if range == 0.0 {
        quantized.fill(0);
        return 1.0;
    }
    let scaling_factor = range / SCALE as f32;
    let inverse = SCALE as f32 / range;
    for (q, &x) in quantized.iter_mut().zip(values) {
        let rounded = libm::roundf(x * inverse) as i32;
        *q = rounded.clamp(-SCALE, SCALE) as i8;
    }
    scaling_factor
}

/// `tensor_utils::AsymmetricQuantizeFloats`: the range `[min(0, lo), max(0, hi)]` mapped onto
/// `[-128, 127]` in double precision with TFLite's zero-point nudging; returns `(scaling
/// factor, zero point)` (`(1, 0)` for an all-zero batch, which quantizes to zeros).
pub fn asymmetric_quantize(values: &[f32], quantized: &mut [i8]) -> (f32, i32) {
    const QMIN: i32 = -128;
    const QMAX: i32 = 127;
    let qmin = QMIN as f64;
    let qmax = QMAX as f64;
    let (lo, hi) = min_max(values);
    let rmin = libm::fmin(0.0, lo as f64);
    let rmax = libm::fmax(0.0, hi as f64);
    if rmin == rmax {
        quantized.fill(0);
        return (1.0, 0);
    }
    let scale = (rmax - rmin) / (qmax - qmin);
    let zero_point_from_min = qmin - rmin / scale;
    let zero_point_from_max = qmax - rmax / scale;
    let zero_point_from_min_error = qmin.abs() + (rmin / scale).abs();
    let zero_point_from_max_error = qmax.abs() + (rmax / scale).abs();
    let zero_point = if zero_point_from_min_error < zero_point_from_max_error {
        zero_point_from_min
    } else {
        zero_point_from_max
    };
    let nudged_zero_point = if zero_point <= qmin {
        QMIN
    } else if zero_point >= qmax {
        QMAX
    } else {
        libm::round(zero_point) as i32
    };
    let scaling_factor = scale as f32;
    // `1.0 / *scaling_factor` is a double division stored into a float.
    let inverse = (1.0 / scaling_factor as f64) as f32;
    for (q, &x) in quantized.iter_mut().zip(values) {
        let rounded = libm::roundf(nudged_zero_point as f32 + x * inverse) as i32;
        *q = rounded.clamp(QMIN, QMAX) as i8;
    }
    (scaling_factor, nudged_zero_point)
}

/// How a hybrid op quantizes each float batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputQuantization {
    Symmetric,
    Asymmetric,
}

/// Quantizes `input` batch by batch (`batches` rows of `input.len() / batches`) into `scratch`.
pub fn quantize_batches(
    input: &[f32],
    batches: usize,
    mode: InputQuantization,
    scratch: &mut ScratchMut<'_>,
) {
    let row = input.len().checked_div(batches).unwrap_or(0);
    if row == 0 {
        return;
    }
    let rows = input
        .chunks_exact(row)
        .zip(scratch.quantized.chunks_exact_mut(row));
    for (b, (values, quantized)) in rows.enumerate().take(batches) {
        let (factor, offset) = match mode {
            InputQuantization::Symmetric => (symmetric_quantize(values, quantized), 0),
            InputQuantization::Asymmetric => asymmetric_quantize(values, quantized),
        };
        if let (Some(f), Some(o)) = (
            scratch.scaling_factors.get_mut(b),
            scratch.input_offsets.get_mut(b),
        ) {
            *f = factor;
            *o = offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_matches_hand_computed() {
        let values = [0.5f32, -1.27, 0.0, 1.0, 0.005];
        let mut q = [0i8; 5];
        let factor = symmetric_quantize(&values, &mut q);
        assert_eq!(factor, 1.27f32 / 127.0);
        // 127 / 1.27 = 100 (in float), so values scale by ~100 and round half away from zero.
        assert_eq!(q, [50, -127, 0, 100, 1]);
    }

    #[test]
    fn symmetric_all_zero_gives_unit_factor() {
        let mut q = [5i8; 3];
        assert_eq!(symmetric_quantize(&[0.0, -0.0, 0.0], &mut q), 1.0);
        assert_eq!(q, [0, 0, 0]);
    }

    #[test]
    fn asymmetric_positive_range_uses_full_scale() {
        // Range [0, 2.55]: scale 0.01, zero point -128 (zero maps to the lowest code).
        let values = [0.0f32, 2.55, 1.0];
        let mut q = [0i8; 3];
        let (factor, offset) = asymmetric_quantize(&values, &mut q);
        assert_eq!(factor, (2.55f32 as f64 / 255.0) as f32);
        assert_eq!(offset, -128);
        assert_eq!(q, [-128, 127, -28]);
    }

    #[test]
    fn asymmetric_all_zero() {
        let mut q = [1i8; 2];
        assert_eq!(asymmetric_quantize(&[0.0, 0.0], &mut q), (1.0, 0));
        assert_eq!(q, [0, 0]);
    }

    #[test]
    fn asymmetric_symmetric_range_centres_zero_point() {
        let values = [-1.0f32, 1.0, 0.0];
        let mut q = [0i8; 3];
        let (factor, offset) = asymmetric_quantize(&values, &mut q);
        assert_eq!(factor, (2.0f64 / 255.0) as f32);
        // zero_point_from_min = -128 + 127.5 = -0.5 -> rounds away from zero to -1.
        assert_eq!(offset, -1);
        // The float inverse of the scale is 127.49999, so 1.0 lands on -1 + 127.49999 -> 126.
        assert_eq!(q, [-128, 126, -1]);
    }

    #[test]
    fn scratch_round_trips() {
        let mut bytes = [0u8; 4 * scratch_elements(2, 6)];
        let input = [1.0f32, -2.0, 0.5, 0.0, 0.0, 0.0];
        {
            let mut s = split_scratch_mut(&mut bytes, 2, 6).unwrap();
            quantize_batches(&input, 2, InputQuantization::Symmetric, &mut s);
        }
        let s = split_scratch(&bytes, 2, 6).unwrap();
        assert_eq!(s.scaling_factors, &[2.0 / 127.0, 1.0]);
        assert_eq!(s.input_offsets, &[0, 0]);
        assert_eq!(s.quantized, &[64, -127, 32, 0, 0, 0]);
    }
}

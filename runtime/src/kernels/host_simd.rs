//! Dispatch to the host SIMD kernels (x86-64 AVX2/SSE4.1 in [`super::x86`], aarch64 NEON in
//! `super::aarch64`) and the portable pieces they share.
//!
//! Every function returns `true` when a SIMD variant ran and wrote the whole output, `false`
//! when none applies (other architecture, missing CPU feature, unsupported geometry); the caller
//! then runs the scalar reference. The variants are bit-exact with the references: they keep
//! TFLite's int32 accumulation (wrapping adds are associative, so summation order does not
//! matter) and the same integer requantization.

use super::conv::{tap, Conv2dS8, SpatialDims};
use super::depthwise::DepthwiseConv2dS8;
use super::fully_connected::{FcDims, FullyConnectedS8};
use super::packed::Packed;

/// Longest im2col row (`kh * kw * in_c`, or FC `accum_depth`) the SIMD kernels keep on the
/// stack; longer ones use the reference.
pub(crate) const MAX_PATCH: usize = 4096;

/// Slices and requantization arrays every int8 convolution-like kernel takes.
#[derive(Debug, Clone, Copy)]
pub struct S8Operands<'a> {
    pub input: &'a [i8],
    pub filter: &'a [i8],
    pub bias: Option<&'a [i32]>,
    pub multipliers: &'a [i32],
    pub shifts: &'a [i32],
}

impl S8Operands<'_> {
    /// True when bias/multipliers/shifts have the lengths the kernels index with.
    pub(crate) fn channels_ok(&self, channels: usize) -> bool {
        let n = self.multipliers.len();
        self.bias.is_none_or(|b| b.len() == channels)
            && (n == 1 || n == channels)
            && self.shifts.len() == n
            && self.shifts.iter().all(|s| (-31..=30).contains(s))
    }
}

/// The host SIMD kernels this CPU runs, for reports (`"x86-64 AVX-512 VNNI"`, `"aarch64 NEON"`,
/// `"scalar reference"`).
pub fn describe() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    return match super::x86::best() {
        super::x86::Isa::Avx512 => "x86-64 AVX-512 VNNI",
        super::x86::Isa::Avx2 => "x86-64 AVX2",
        super::x86::Isa::Sse41 => "x86-64 SSE4.1",
        super::x86::Isa::Scalar => "scalar reference",
    };
    #[cfg(target_arch = "aarch64")]
    return "aarch64 NEON";
    #[allow(unreachable_code)]
    "scalar reference"
}

/// Runs a SIMD CONV_2D int8 variant if one applies.
#[allow(unused_variables)]
pub fn conv2d_s8(p: &Conv2dS8, d: SpatialDims, ops: S8Operands<'_>, output: &mut [i8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::conv2d_s8(p, d, ops, output, super::x86::best());
    #[cfg(target_arch = "aarch64")]
    return super::aarch64::conv2d_s8(p, d, ops, output);
    #[allow(unreachable_code)]
    false
}

/// Runs a SIMD DEPTHWISE_CONV_2D int8 variant if one applies.
#[allow(unused_variables)]
pub fn depthwise_conv2d_s8(
    p: &DepthwiseConv2dS8,
    d: SpatialDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::depthwise_conv2d_s8(p, d, ops, output, super::x86::best());
    #[cfg(target_arch = "aarch64")]
    return super::aarch64::depthwise_conv2d_s8(p, d, ops, output);
    #[allow(unreachable_code)]
    false
}

/// Runs a SIMD FULLY_CONNECTED int8 variant if one applies.
#[allow(unused_variables)]
pub fn fully_connected_s8(
    p: &FullyConnectedS8,
    dims: FcDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::fully_connected_s8(p, dims, ops, output, super::x86::best());
    #[cfg(target_arch = "aarch64")]
    return super::aarch64::fully_connected_s8(p, dims, ops, output);
    #[allow(unreachable_code)]
    false
}

/// Runs CONV_2D int8 over weights `PreparedModel` packed, if they fit this operator
/// and this CPU.
#[allow(unused_variables)]
pub fn conv2d_s8_packed(
    p: &Conv2dS8,
    d: SpatialDims,
    input: &[i8],
    output: &mut [i8],
    packed: &Packed,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::conv2d_s8_packed(p, d, input, output, packed);
    #[allow(unreachable_code)]
    false
}

/// Runs FULLY_CONNECTED int8 over weights `PreparedModel` packed, if they fit this
/// operator and this CPU.
#[allow(unused_variables)]
pub fn fully_connected_s8_packed(
    p: &FullyConnectedS8,
    dims: FcDims,
    input: &[i8],
    output: &mut [i8],
    packed: &Packed,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::fully_connected_s8_packed(p, dims, input, output, packed);
    #[allow(unreachable_code)]
    false
}

/// Runs a SIMD AVERAGE_POOL_2D / MAX_POOL_2D int8 variant if one applies (x86-64 AVX2 only).
#[allow(unused_variables)]
pub fn pool2d_s8(
    p: &super::pooling::Pool2dS8,
    d: SpatialDims,
    input: &[i8],
    output: &mut [i8],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::pool2d_s8(p, d, input, output, super::x86::best());
    #[allow(unreachable_code)]
    false
}

/// Checks shared by the convolution variants: ungrouped, patch fits [`MAX_PATCH`], slices as
/// long as the geometry says. Returns the patch length `kh * kw * in_c`.
#[allow(dead_code)]
pub(crate) fn conv_patch_len(
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &[i8],
) -> Option<usize> {
    if d.filter_in_c != d.in_c {
        return None;
    }
    let k = d.filter_h.checked_mul(d.filter_w)?.checked_mul(d.in_c)?;
    let input_len = d.batches * d.in_h * d.in_w * d.in_c;
    (k <= MAX_PATCH
        && ops.filter.len() >= k.checked_mul(d.out_c)?
        && ops.input.len() >= input_len
        && output.len() >= d.output_elements()
        && ops.channels_ok(d.out_c))
    .then_some(k)
}

/// Fills `patch[..kh * kw * in_c]` with the im2col row of output pixel `(b, out_y, out_x)`:
/// `x + input_offset` per tap, 0 for taps in the padding (the reference skips those, and a zero
/// adds nothing). Ungrouped convolutions only. Without horizontal dilation the valid taps of a
/// filter row are one contiguous run of the input row, copied in one pass.
#[allow(dead_code)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gather_patch(
    p: &Conv2dS8,
    d: &SpatialDims,
    input: &[i8],
    b: usize,
    out_y: usize,
    out_x: usize,
    patch: &mut [i16],
) {
    let w = p.window;
    let c = d.in_c;
    let offset = p.input_offset as i16;
    let row_len = d.filter_w * c;
    // Valid horizontal taps `fx_lo..fx_hi` when dilation is 1.
    let left = out_x as i64 * w.stride_w as i64 - w.pad_left as i64;
    let fx_lo = (-left).clamp(0, d.filter_w as i64) as usize;
    let fx_hi = (d.in_w as i64 - left).clamp(fx_lo as i64, d.filter_w as i64) as usize;
    for (fy, dst_row) in patch.chunks_exact_mut(row_len).take(d.filter_h).enumerate() {
        let Some(y) = tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h) else {
            dst_row.fill(0);
            continue;
        };
        if w.dilation_w == 1 {
            dst_row[..fx_lo * c].fill(0);
            dst_row[fx_hi * c..].fill(0);
            if fx_hi > fx_lo {
                // fx_lo > 0 only when left < 0, so the first valid column is left + fx_lo >= 0.
                let src_at = d.input_index(b, y, (left + fx_lo as i64) as usize, 0);
                let src = &input[src_at..src_at + (fx_hi - fx_lo) * c];
                for (v, &s) in dst_row[fx_lo * c..fx_hi * c].iter_mut().zip(src) {
                    *v = s as i16 + offset;
                }
            }
            continue;
        }
        for (fx, dst) in dst_row.chunks_exact_mut(c).enumerate() {
            match tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w) {
                Some(x) => {
                    let src_at = d.input_index(b, y, x, 0);
                    for (v, &s) in dst.iter_mut().zip(&input[src_at..src_at + c]) {
                        *v = s as i16 + offset;
                    }
                }
                None => dst.fill(0),
            }
        }
    }
}

/// Depthwise checks: depth multiplier 1, slices as long as the geometry says.
#[allow(dead_code)]
pub(crate) fn depthwise_ok(d: &SpatialDims, ops: &S8Operands<'_>, output: &[i8]) -> bool {
    d.out_c == d.in_c
        && ops.filter.len() >= d.filter_h * d.filter_w * d.out_c
        && ops.input.len() >= d.batches * d.in_h * d.in_w * d.in_c
        && output.len() >= d.output_elements()
        && ops.channels_ok(d.out_c)
}

/// Fully connected checks: row fits [`MAX_PATCH`], slices as long as the dims say.
#[allow(dead_code)]
pub(crate) fn fc_ok(dims: &FcDims, ops: &S8Operands<'_>, output: &[i8]) -> bool {
    dims.accum_depth <= MAX_PATCH
        && ops.filter.len() >= dims.accum_depth * dims.output_depth
        && ops.input.len() >= dims.batches * dims.accum_depth
        && output.len() >= dims.batches * dims.output_depth
        && ops.channels_ok(dims.output_depth)
}

/// Random cases for the SIMD variant tests of every architecture.
#[cfg(test)]
pub(crate) mod testing {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::conv::conv2d_s8_reference;
    use crate::kernels::depthwise::depthwise_conv2d_s8_reference;
    use crate::kernels::fully_connected::fully_connected_s8_reference;
    use crate::kernels::testing::Rng;
    use crate::kernels::{Requant, Window};
    use crate::quant::quantize_multiplier;
    use crate::tensor::{DType, Location, Shape, TensorDef};

    /// A placeholder tensor: the references and variants only read the param structs' numbers.
    fn unused_tensor() -> TensorDef {
        TensorDef {
            dtype: DType::I8,
            shape: Shape::new(&[1]).expect("rank 1"),
            location: Location::Arena(0),
            quant: None,
        }
    }

    fn unused_requant() -> Requant {
        Requant {
            multipliers: unused_tensor(),
            shifts: unused_tensor(),
        }
    }

    /// Requantization arrays: mostly realistic, sometimes arbitrary words (edge arithmetic).
    fn requant_arrays(rng: &mut Rng, channels: usize) -> (Vec<i32>, Vec<i32>) {
        let n = if rng.range(0, 3) == 0 { 1 } else { channels };
        let wild = rng.range(0, 4) == 0;
        (0..n)
            .map(|_| {
                if wild {
                    (rng.next_u64() as i32, rng.range(-31, 30) as i32)
                } else {
                    quantize_multiplier(rng.f32(1e-5, 0.05) as f64)
                }
            })
            .unzip()
    }

    fn bias(rng: &mut Rng, channels: usize) -> Option<Vec<i32>> {
        match rng.range(0, 4) {
            0 => None,
            1 => Some((0..channels).map(|_| rng.next_u64() as i32).collect()),
            _ => Some(
                (0..channels)
                    .map(|_| rng.range(-20000, 20000) as i32)
                    .collect(),
            ),
        }
    }

    fn act_range(rng: &mut Rng) -> (i32, i32) {
        let lo = if rng.range(0, 1) == 0 {
            -128
        } else {
            rng.range(-128, 0) as i32
        };
        let hi = if rng.range(0, 1) == 0 {
            127
        } else {
            rng.range(lo as i64, 127) as i32
        };
        (lo, hi)
    }

    fn window(
        rng: &mut Rng,
        k_h: usize,
        k_w: usize,
        in_h: usize,
        in_w: usize,
    ) -> (Window, usize, usize) {
        let stride_h = rng.range(1, 2) as u16;
        let stride_w = rng.range(1, 2) as u16;
        let dilation_h = rng.range(1, 2) as u16;
        let dilation_w = rng.range(1, 2) as u16;
        let span_h = (k_h - 1) * dilation_h as usize + 1;
        let span_w = (k_w - 1) * dilation_w as usize + 1;
        let pad_top = rng.range(0, span_h as i64 - 1) as u16;
        let pad_left = rng.range(0, span_w as i64 - 1) as u16;
        let out = |size: usize, pad: u16, span: usize, stride: u16| {
            (size + 2 * pad as usize).saturating_sub(span) / stride as usize + 1
        };
        let w = Window {
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
        };
        (
            w,
            out(in_h, pad_top, span_h, stride_h),
            out(in_w, pad_left, span_w, stride_w),
        )
    }

    #[derive(Debug)]
    pub struct ConvCase {
        pub p: Conv2dS8,
        pub d: SpatialDims,
        pub input: Vec<i8>,
        pub filter: Vec<i8>,
        pub bias: Option<Vec<i32>>,
        pub multipliers: Vec<i32>,
        pub shifts: Vec<i32>,
    }

    impl ConvCase {
        pub fn random(rng: &mut Rng) -> ConvCase {
            let in_c = [1, 3, 8, 16, 17, 32, 64][rng.range(0, 6) as usize];
            let (k_h, k_w) = if rng.range(0, 2) == 0 {
                (1, 1)
            } else {
                (rng.range(1, 4) as usize, rng.range(1, 4) as usize)
            };
            let in_h = rng.range(k_h as i64, 9) as usize;
            let in_w = rng.range(k_w as i64, 9) as usize;
            let (window, out_h, out_w) = window(rng, k_h, k_w, in_h, in_w);
            let out_c = rng.range(1, 40) as usize;
            let batches = rng.range(1, 2) as usize;
            let (multipliers, shifts) = requant_arrays(rng, out_c);
            let (act_min, act_max) = act_range(rng);
            let d = SpatialDims {
                batches,
                in_h,
                in_w,
                in_c,
                out_h,
                out_w,
                out_c,
                filter_h: k_h,
                filter_w: k_w,
                filter_in_c: in_c,
            };
            ConvCase {
                p: Conv2dS8 {
                    input: unused_tensor(),
                    filter: unused_tensor(),
                    bias: None,
                    output: unused_tensor(),
                    window,
                    input_offset: rng.range(-127, 128) as i32,
                    output_offset: rng.range(-128, 127) as i32,
                    requant: unused_requant(),
                    act_min,
                    act_max,
                },
                d,
                input: rng.vec_i8(batches * in_h * in_w * in_c),
                filter: rng.vec_i8(out_c * k_h * k_w * in_c),
                bias: bias(rng, out_c),
                multipliers,
                shifts,
            }
        }

        pub fn ops(&self) -> S8Operands<'_> {
            S8Operands {
                input: &self.input,
                filter: &self.filter,
                bias: self.bias.as_deref(),
                multipliers: &self.multipliers,
                shifts: &self.shifts,
            }
        }
    }

    pub fn conv_reference(c: &ConvCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        conv2d_s8_reference(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            c.bias.as_deref(),
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }

    #[derive(Debug)]
    pub struct DepthwiseCase {
        pub p: DepthwiseConv2dS8,
        pub d: SpatialDims,
        pub input: Vec<i8>,
        pub filter: Vec<i8>,
        pub bias: Option<Vec<i32>>,
        pub multipliers: Vec<i32>,
        pub shifts: Vec<i32>,
    }

    impl DepthwiseCase {
        pub fn random(rng: &mut Rng) -> DepthwiseCase {
            let in_c = [1, 7, 8, 16, 24, 33, 48, 64, 112][rng.range(0, 8) as usize];
            let multiplier = if rng.range(0, 5) == 0 { 2 } else { 1 };
            let out_c = in_c * multiplier;
            let k_h = rng.range(1, 4) as usize;
            let k_w = rng.range(1, 4) as usize;
            let in_h = rng.range(k_h as i64, 9) as usize;
            let in_w = rng.range(k_w as i64, 9) as usize;
            let (window, out_h, out_w) = window(rng, k_h, k_w, in_h, in_w);
            let batches = rng.range(1, 2) as usize;
            let (multipliers, shifts) = requant_arrays(rng, out_c);
            let (act_min, act_max) = act_range(rng);
            let d = SpatialDims {
                batches,
                in_h,
                in_w,
                in_c,
                out_h,
                out_w,
                out_c,
                filter_h: k_h,
                filter_w: k_w,
                filter_in_c: 1,
            };
            DepthwiseCase {
                p: DepthwiseConv2dS8 {
                    input: unused_tensor(),
                    filter: unused_tensor(),
                    bias: None,
                    output: unused_tensor(),
                    window,
                    depth_multiplier: multiplier as u16,
                    input_offset: rng.range(-127, 128) as i32,
                    output_offset: rng.range(-128, 127) as i32,
                    requant: unused_requant(),
                    act_min,
                    act_max,
                },
                d,
                input: rng.vec_i8(batches * in_h * in_w * in_c),
                filter: rng.vec_i8(k_h * k_w * out_c),
                bias: bias(rng, out_c),
                multipliers,
                shifts,
            }
        }

        pub fn ops(&self) -> S8Operands<'_> {
            S8Operands {
                input: &self.input,
                filter: &self.filter,
                bias: self.bias.as_deref(),
                multipliers: &self.multipliers,
                shifts: &self.shifts,
            }
        }
    }

    pub fn depthwise_reference(c: &DepthwiseCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        depthwise_conv2d_s8_reference(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            c.bias.as_deref(),
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }

    #[derive(Debug)]
    pub struct FcCase {
        pub p: FullyConnectedS8,
        pub dims: FcDims,
        pub input: Vec<i8>,
        pub filter: Vec<i8>,
        pub bias: Option<Vec<i32>>,
        pub multipliers: Vec<i32>,
        pub shifts: Vec<i32>,
    }

    impl FcCase {
        pub fn random(rng: &mut Rng) -> FcCase {
            let accum_depth = rng.range(1, 700) as usize;
            let output_depth = rng.range(1, 40) as usize;
            let batches = rng.range(1, 3) as usize;
            let dims = FcDims {
                batches,
                accum_depth,
                output_depth,
            };
            let (multipliers, shifts) = requant_arrays(rng, output_depth);
            // Single rounding needs shift <= 30 and a total shift of at most 62.
            let shifts = shifts.into_iter().map(|s| s.clamp(-31, 30)).collect();
            let (act_min, act_max) = act_range(rng);
            let filter_offset = if rng.range(0, 2) == 0 {
                0
            } else {
                rng.range(-255, 255) as i32
            };
            FcCase {
                p: FullyConnectedS8 {
                    input: unused_tensor(),
                    filter: unused_tensor(),
                    bias: None,
                    output: unused_tensor(),
                    input_offset: rng.range(-255, 255) as i32,
                    filter_offset,
                    output_offset: rng.range(-128, 127) as i32,
                    requant: unused_requant(),
                    act_min,
                    act_max,
                },
                dims,
                input: rng.vec_i8(batches * accum_depth),
                filter: rng.vec_i8(accum_depth * output_depth),
                bias: bias(rng, output_depth).map(|b| b.into_iter().map(|v| v >> 8).collect()),
                multipliers,
                shifts,
            }
        }

        pub fn ops(&self) -> S8Operands<'_> {
            S8Operands {
                input: &self.input,
                filter: &self.filter,
                bias: self.bias.as_deref(),
                multipliers: &self.multipliers,
                shifts: &self.shifts,
            }
        }
    }

    pub fn fc_reference(c: &FcCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.dims.batches * c.dims.output_depth];
        fully_connected_s8_reference(
            &c.p,
            c.dims,
            &c.input,
            &c.filter,
            c.bias.as_deref(),
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }
}

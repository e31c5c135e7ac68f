//! aarch64 NEON int8 kernels (Raspberry Pi 4/5 class cores; NEON is part of the base
//! `aarch64-unknown-linux-gnu` target, so there is nothing to detect at run time).
//!
//! Exactness as in [`super::x86`]: int8 sign-extended to int16 with the offsets added (within
//! ±383), widening multiply-accumulate into int32 lanes (`vmlal_s16`, wrapping adds), then the
//! reference's integer requantization. Double rounding is vectorized: `vqrdmulhq_s32` *is*
//! TFLite's `SaturatingRoundingDoublingHighMul` (rounding and saturation included), and
//! `RoundingDivideByPOT` uses the scalar code's mask/threshold formula. Fully connected keeps the
//! scalar single-rounding requantization.

// Every `unsafe fn` here is a NEON body whose contract ("slices as long as the geometry says")
// is checked once at the safe entry points.
#![allow(unsafe_op_in_unsafe_fn)]

use super::conv::{Conv2dS8, SpatialDims};
use super::depthwise::DepthwiseConv2dS8;
use super::fully_connected::{FcDims, FullyConnectedS8};
use super::host_simd::S8Operands;

/// CONV_2D int8 with NEON; `false` when it does not apply.
#[allow(unused_variables)]
pub fn conv2d_s8(p: &Conv2dS8, d: SpatialDims, ops: S8Operands<'_>, output: &mut [i8]) -> bool {
    #[cfg(target_feature = "neon")]
    {
        let Some(k) = super::host_simd::conv_patch_len(&d, &ops, output) else {
            return false;
        };
        // SAFETY: NEON is enabled at compile time; `conv_patch_len` checked the slice lengths.
        unsafe { neon::conv2d_s8(p, &d, &ops, output, k) };
        return true;
    }
    #[allow(unreachable_code)]
    false
}

/// DEPTHWISE_CONV_2D int8 (depth multiplier 1) with NEON; `false` when it does not apply.
#[allow(unused_variables)]
pub fn depthwise_conv2d_s8(
    p: &DepthwiseConv2dS8,
    d: SpatialDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    #[cfg(target_feature = "neon")]
    {
        if !super::host_simd::depthwise_ok(&d, &ops, output) {
            return false;
        }
        // SAFETY: NEON enabled; `depthwise_ok` checked the slice lengths.
        unsafe { neon::depthwise_s8(p, &d, &ops, output) };
        return true;
    }
    #[allow(unreachable_code)]
    false
}

/// FULLY_CONNECTED int8 with NEON; `false` when it does not apply.
#[allow(unused_variables)]
pub fn fully_connected_s8(
    p: &FullyConnectedS8,
    dims: FcDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    #[cfg(target_feature = "neon")]
    {
        if !super::host_simd::fc_ok(&dims, &ops, output) {
            return false;
        }
        // SAFETY: NEON enabled; `fc_ok` checked the slice lengths.
        unsafe { neon::fully_connected_s8(p, &dims, &ops, output) };
        return true;
    }
    #[allow(unreachable_code)]
    false
}

#[cfg(target_feature = "neon")]
mod neon {
    use core::arch::aarch64::*;

    use super::super::conv::{per_channel, tap, Conv2dS8, SpatialDims};
    use super::super::depthwise::DepthwiseConv2dS8;
    use super::super::fully_connected::{FcDims, FullyConnectedS8};
    use super::super::host_simd::{gather_patch, S8Operands, MAX_PATCH};
    use crate::quant::{
        multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_rounding,
    };

    /// Dot products of `patch[..k]` with filter rows `row0..row0 + 4` (`(w + fo) * x`).
    ///
    /// Safety: `patch.len() >= k`, `filter.len() >= (row0 + 4) * k`.
    #[inline(always)]
    unsafe fn dot4(patch: &[i16], filter: &[i8], k: usize, row0: usize, fo: i16) -> int32x4_t {
        let mut acc = [vdupq_n_s32(0); 4];
        let fo16 = vdupq_n_s16(fo);
        let k8 = k & !7;
        let px = patch.as_ptr();
        let fp = filter.as_ptr().add(row0 * k);
        let mut i = 0;
        while i < k8 {
            let x = vld1q_s16(px.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                let w = vaddq_s16(vmovl_s8(vld1_s8(fp.add(r * k + i))), fo16);
                *a = vmlal_s16(*a, vget_low_s16(x), vget_low_s16(w));
                *a = vmlal_high_s16(*a, x, w);
            }
            i += 8;
        }
        let mut sums = [0i32; 4];
        for (r, s) in sums.iter_mut().enumerate() {
            *s = vaddvq_s32(acc[r]);
            let row = &filter[(row0 + r) * k..(row0 + r + 1) * k];
            for j in k8..k {
                *s = s.wrapping_add(patch[j] as i32 * (row[j] as i32 + fo as i32));
            }
        }
        vld1q_s32(sums.as_ptr())
    }

    fn dot_scalar(patch: &[i16], row: &[i8], fo: i32) -> i32 {
        patch.iter().zip(row).fold(0i32, |acc, (&x, &w)| {
            acc.wrapping_add(x as i32 * (w as i32 + fo))
        })
    }

    #[inline(always)]
    unsafe fn channel_vec(values: &[i32], c: usize) -> int32x4_t {
        if values.len() == 1 {
            vdupq_n_s32(values[0])
        } else {
            vld1q_s32(values[c..c + 4].as_ptr())
        }
    }

    /// `MultiplyByQuantizedMultiplier` (double rounding) on 4 lanes.
    #[inline(always)]
    pub(super) unsafe fn requant_double(
        acc: int32x4_t,
        mult: int32x4_t,
        shift: int32x4_t,
    ) -> int32x4_t {
        let zero = vdupq_n_s32(0);
        let left = vmaxq_s32(shift, zero);
        let right = vmaxq_s32(vnegq_s32(shift), zero);
        let high = vqrdmulhq_s32(vshlq_s32(acc, left), mult);
        let one = vdupq_n_s32(1);
        let mask = vsubq_s32(vshlq_s32(one, right), one);
        let remainder = vandq_s32(high, mask);
        // threshold = (mask >> 1) + (high < 0); the compare yields all ones (-1) for true.
        let threshold = vsubq_s32(
            vshrq_n_s32(mask, 1),
            vreinterpretq_s32_u32(vcltzq_s32(high)),
        );
        let shifted = vshlq_s32(high, vnegq_s32(right));
        vsubq_s32(
            shifted,
            vreinterpretq_s32_u32(vcgtq_s32(remainder, threshold)),
        )
    }

    /// Bias, requantization, offset and clamp for 4 channels from `c`, as 4 int32 lanes.
    #[inline(always)]
    unsafe fn finish4(
        mut acc: int32x4_t,
        ops: &S8Operands<'_>,
        c: usize,
        out_offset: i32,
        lo: i32,
        hi: i32,
    ) -> int32x4_t {
        if let Some(bias) = ops.bias {
            acc = vaddq_s32(acc, vld1q_s32(bias[c..c + 4].as_ptr()));
        }
        let v = requant_double(
            acc,
            channel_vec(ops.multipliers, c),
            channel_vec(ops.shifts, c),
        );
        let v = vaddq_s32(v, vdupq_n_s32(out_offset));
        vminq_s32(vmaxq_s32(v, vdupq_n_s32(lo)), vdupq_n_s32(hi))
    }

    #[inline(always)]
    fn requant_scalar(
        acc: i32,
        ops: &S8Operands<'_>,
        c: usize,
        out_offset: i32,
        lo: i32,
        hi: i32,
    ) -> i8 {
        let mut acc = acc;
        if let Some(bias) = ops.bias {
            acc = acc.wrapping_add(bias[c]);
        }
        multiply_by_quantized_multiplier(
            acc,
            per_channel(ops.multipliers, c),
            per_channel(ops.shifts, c),
        )
        .wrapping_add(out_offset)
        .clamp(lo, hi) as i8
    }

    pub(super) unsafe fn conv2d_s8(
        p: &Conv2dS8,
        d: &SpatialDims,
        ops: &S8Operands<'_>,
        output: &mut [i8],
        k: usize,
    ) {
        let mut patch = [0i16; MAX_PATCH];
        let oc4 = d.out_c & !3;
        for b in 0..d.batches {
            for out_y in 0..d.out_h {
                for out_x in 0..d.out_w {
                    gather_patch(p, d, ops.input, b, out_y, out_x, &mut patch);
                    let patch = &patch[..k];
                    let out_at = d.output_index(b, out_y, out_x, 0);
                    let out_pixel = &mut output[out_at..out_at + d.out_c];
                    let mut oc = 0;
                    while oc < oc4 {
                        let acc = dot4(patch, ops.filter, k, oc, 0);
                        let v = finish4(acc, ops, oc, p.output_offset, p.act_min, p.act_max);
                        let mut lanes = [0i32; 4];
                        vst1q_s32(lanes.as_mut_ptr(), v);
                        for (o, &l) in out_pixel[oc..oc + 4].iter_mut().zip(&lanes) {
                            *o = l as i8;
                        }
                        oc += 4;
                    }
                    for oc in oc4..d.out_c {
                        let acc = dot_scalar(patch, &ops.filter[oc * k..(oc + 1) * k], 0);
                        out_pixel[oc] =
                            requant_scalar(acc, ops, oc, p.output_offset, p.act_min, p.act_max);
                    }
                }
            }
        }
    }

    pub(super) unsafe fn depthwise_s8(
        p: &DepthwiseConv2dS8,
        d: &SpatialDims,
        ops: &S8Operands<'_>,
        output: &mut [i8],
    ) {
        let w = p.window;
        let c8 = d.out_c & !7;
        let offset = vdupq_n_s16(p.input_offset as i16);
        for b in 0..d.batches {
            for out_y in 0..d.out_h {
                for out_x in 0..d.out_w {
                    let out_at = d.output_index(b, out_y, out_x, 0);
                    let mut c = 0;
                    while c < d.out_c {
                        let wide = c < c8;
                        let mut acc_lo = vdupq_n_s32(0);
                        let mut acc_hi = vdupq_n_s32(0);
                        let mut tail = [0i32; 8];
                        for fy in 0..d.filter_h {
                            let Some(in_y) =
                                tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h)
                            else {
                                continue;
                            };
                            for fx in 0..d.filter_w {
                                let Some(in_x) =
                                    tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w)
                                else {
                                    continue;
                                };
                                let x_at = d.input_index(b, in_y, in_x, c);
                                let f_at = (fy * d.filter_w + fx) * d.out_c + c;
                                if wide {
                                    let x8 = &ops.input[x_at..x_at + 8];
                                    let f8 = &ops.filter[f_at..f_at + 8];
                                    let x = vaddq_s16(vmovl_s8(vld1_s8(x8.as_ptr())), offset);
                                    let f = vmovl_s8(vld1_s8(f8.as_ptr()));
                                    acc_lo = vmlal_s16(acc_lo, vget_low_s16(x), vget_low_s16(f));
                                    acc_hi = vmlal_high_s16(acc_hi, x, f);
                                } else {
                                    for (j, t) in tail.iter_mut().enumerate().take(d.out_c - c) {
                                        let x = ops.input[x_at + j] as i32 + p.input_offset;
                                        let f = ops.filter[f_at + j] as i32;
                                        *t = t.wrapping_add(f.wrapping_mul(x));
                                    }
                                }
                            }
                        }
                        if wide {
                            let lo = finish4(acc_lo, ops, c, p.output_offset, p.act_min, p.act_max);
                            let hi =
                                finish4(acc_hi, ops, c + 4, p.output_offset, p.act_min, p.act_max);
                            let bytes = vqmovn_s16(vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)));
                            let out = &mut output[out_at + c..out_at + c + 8];
                            vst1_s8(out.as_mut_ptr(), bytes);
                            c += 8;
                        } else {
                            for (j, &t) in tail.iter().enumerate().take(d.out_c - c) {
                                output[out_at + c + j] = requant_scalar(
                                    t,
                                    ops,
                                    c + j,
                                    p.output_offset,
                                    p.act_min,
                                    p.act_max,
                                );
                            }
                            c = d.out_c;
                        }
                    }
                }
            }
        }
    }

    pub(super) unsafe fn fully_connected_s8(
        p: &FullyConnectedS8,
        dims: &FcDims,
        ops: &S8Operands<'_>,
        output: &mut [i8],
    ) {
        let k = dims.accum_depth;
        let mut patch = [0i16; MAX_PATCH];
        let o4 = dims.output_depth & !3;
        let fo = p.filter_offset as i16;
        let finish = |oc: usize, mut acc: i32| -> i8 {
            if let Some(bias) = ops.bias {
                acc = acc.wrapping_add(bias[oc]);
            }
            let v = multiply_by_quantized_multiplier_single_rounding(
                acc,
                per_channel(ops.multipliers, oc),
                per_channel(ops.shifts, oc),
            );
            v.wrapping_add(p.output_offset).clamp(p.act_min, p.act_max) as i8
        };
        for b in 0..dims.batches {
            let row = &ops.input[b * k..(b + 1) * k];
            for (v, &x) in patch.iter_mut().zip(row) {
                *v = x as i16 + p.input_offset as i16;
            }
            let patch = &patch[..k];
            let out_row = &mut output[b * dims.output_depth..(b + 1) * dims.output_depth];
            let mut oc = 0;
            while oc < o4 {
                let mut sums = [0i32; 4];
                vst1q_s32(sums.as_mut_ptr(), dot4(patch, ops.filter, k, oc, fo));
                for (r, &a) in sums.iter().enumerate() {
                    out_row[oc + r] = finish(oc + r, a);
                }
                oc += 4;
            }
            for oc in o4..dims.output_depth {
                out_row[oc] = finish(
                    oc,
                    dot_scalar(patch, &ops.filter[oc * k..(oc + 1) * k], p.filter_offset),
                );
            }
        }
    }
}

#[cfg(all(test, target_feature = "neon"))]
mod tests {
    use super::*;
    use crate::kernels::host_simd::testing::*;
    use crate::quant::multiply_by_quantized_multiplier;

    fn run_conv(case: &ConvCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        assert!(conv2d_s8(&case.p, case.d, case.ops(), &mut out));
        out
    }

    fn run_depthwise(case: &DepthwiseCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        if depthwise_conv2d_s8(&case.p, case.d, case.ops(), &mut out) {
            out
        } else {
            depthwise_reference(case)
        }
    }

    fn run_fc(case: &FcCase) -> Vec<i8> {
        let mut out = vec![0i8; case.dims.batches * case.dims.output_depth];
        assert!(fully_connected_s8(&case.p, case.dims, case.ops(), &mut out));
        out
    }

    crate::kernel_variants_match_reference!(
        conv2d_s8_neon_variant,
        cases = 300,
        setup = ConvCase::random,
        reference = conv_reference,
        variants = [run_conv]
    );

    crate::kernel_variants_match_reference!(
        depthwise_conv2d_s8_neon_variant,
        cases = 300,
        setup = DepthwiseCase::random,
        reference = depthwise_reference,
        variants = [run_depthwise]
    );

    crate::kernel_variants_match_reference!(
        fully_connected_s8_neon_variant,
        cases = 300,
        setup = FcCase::random,
        reference = fc_reference,
        variants = [run_fc]
    );

    #[test]
    fn neon_requant_matches_scalar_on_edge_values() {
        use core::arch::aarch64::*;
        let mut rng = crate::kernels::testing::Rng(11);
        let special = [
            0,
            1,
            -1,
            i32::MIN,
            i32::MAX,
            1 << 30,
            -(1 << 30),
            12345,
            -54321,
        ];
        for round in 0..20_000 {
            let mut lanes = [[0i32; 4]; 3];
            for l in 0..4 {
                lanes[0][l] = if round % 3 == 0 {
                    special[rng.range(0, 8) as usize]
                } else {
                    rng.next_u64() as i32
                };
                lanes[1][l] = if round % 5 == 0 {
                    special[rng.range(0, 8) as usize]
                } else {
                    rng.next_u64() as i32
                };
                lanes[2][l] = rng.range(-31, 30) as i32;
            }
            let mut got = [0i32; 4];
            // SAFETY: arrays hold 4 lanes each.
            unsafe {
                let v = neon::requant_double(
                    vld1q_s32(lanes[0].as_ptr()),
                    vld1q_s32(lanes[1].as_ptr()),
                    vld1q_s32(lanes[2].as_ptr()),
                );
                vst1q_s32(got.as_mut_ptr(), v);
            }
            for l in 0..4 {
                assert_eq!(
                    got[l],
                    multiply_by_quantized_multiplier(lanes[0][l], lanes[1][l], lanes[2][l])
                );
            }
        }
    }
}

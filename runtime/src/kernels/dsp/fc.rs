//! Fully connected with the DSP shim.

use super::*;

/// [`FullyConnectedS8`]: 4 output channels per pass over the input row. Same arguments as
/// [`super::fully_connected::fully_connected_s8_reference`]; `false` when not handled here.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_s8_dsp(
    p: &FullyConnectedS8,
    dims: FcDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> bool {
    let depth = dims.accum_depth;
    if !(-255..=255).contains(&p.input_offset)
        || !(-255..=255).contains(&p.filter_offset)
        || input.len() < dims.batches * depth
        || filter.len() < dims.output_depth * depth
        || output.len() < dims.batches * dims.output_depth
        || bias.is_some_and(|b| b.len() < dims.output_depth)
        || multipliers.is_empty()
        || multipliers.len() != shifts.len()
        || shifts.iter().any(|s| !(-31..=30).contains(s))
    {
        return false;
    }
    let store = |acc: i32, c: usize| {
        let acc = acc.wrapping_add(bias.map_or(0, |b| b[c]));
        let v = multiply_by_quantized_multiplier_single_rounding(
            acc,
            per_channel(multipliers, c),
            per_channel(shifts, c),
        );
        v.wrapping_add(p.output_offset).clamp(p.act_min, p.act_max) as i8
    };
    let groups = depth / 4;
    let tail = groups * 4;
    let mut wide = [0u32; FC_WIDE_WORDS];
    let widen = groups * 2 <= FC_WIDE_WORDS;
    for batch in 0..dims.batches {
        let row = &input[batch * depth..(batch + 1) * depth];
        let out_row = &mut output[batch * dims.output_depth..(batch + 1) * dims.output_depth];
        // The row widened (offset added) once for every channel, when it fits the stack.
        if widen {
            widen_row(row, groups, simd::splat16(p.input_offset), &mut wide);
        }
        let mut c = 0;
        while c < dims.output_depth {
            let count = (dims.output_depth - c).min(4);
            // Rows past the last channel repeat it; their sums are discarded.
            let w = |i: usize| filter[(c + i.min(count - 1)) * depth..].as_ptr();
            let rows = [w(0), w(1), w(2), w(3)];
            // SAFETY: each filter row holds `depth` values, the widened row `groups * 2` words
            // and the input row `depth` values.
            let mut acc = unsafe {
                if widen {
                    if p.filter_offset == 0 {
                        dot_1x4_wide::<false>(wide.as_ptr(), rows, groups, 0)
                    } else {
                        dot_1x4_wide::<true>(
                            wide.as_ptr(),
                            rows,
                            groups,
                            simd::splat16(p.filter_offset),
                        )
                    }
                } else {
                    dot_1x4_narrow(row.as_ptr(), rows, groups, p.input_offset, p.filter_offset)
                }
            };
            for k in tail..depth {
                let x = row[k] as i32 + p.input_offset;
                for (i, a) in acc.iter_mut().enumerate() {
                    let f = filter[(c + i.min(count - 1)) * depth + k] as i32 + p.filter_offset;
                    *a = a.wrapping_add(f * x);
                }
            }
            for (i, &a) in acc.iter().enumerate().take(count) {
                out_row[c + i] = store(a, c + i);
            }
            c += count;
        }
    }
    true
}

/// Largest widened FC row held on the stack, in words (2 per 4 input values).
const FC_WIDE_WORDS: usize = 1024;

/// The first `groups * 4` values of `row` plus `offset`, widened as `[lanes 0/2, lanes 1/3]`
/// per group of 4 (the order `SXTB16` / `SXTB16 ROR #8` give a filter word).
#[inline(always)]
fn widen_row(row: &[i8], groups: usize, offset: u32, wide: &mut [u32]) {
    use simd::*;
    for (x, out) in row
        .chunks_exact(4)
        .zip(wide.chunks_exact_mut(2))
        .take(groups)
    {
        let x = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
        out[0] = sxtab16(offset, x);
        out[1] = sxtab16_ror8(offset, x);
    }
}

/// Four channels' sums over `groups * 4` values of a row widened by [`widen_row`]; with
/// `FILTER_OFFSET`, `filter_offset` (packed) is added to each filter value.
///
/// # Safety
/// `wide` must point to `groups * 2` readable words and every row to `groups * 4` bytes.
#[inline(always)]
unsafe fn dot_1x4_wide<const FILTER_OFFSET: bool>(
    wide: *const u32,
    rows: [*const i8; 4],
    groups: usize,
    filter_offset: u32,
) -> [i32; 4] {
    use simd::*;
    let widen_lo = |f: u32| {
        if FILTER_OFFSET {
            sxtab16(filter_offset, f)
        } else {
            sxtb16(f)
        }
    };
    let widen_hi = |f: u32| {
        if FILTER_OFFSET {
            sxtab16_ror8(filter_offset, f)
        } else {
            sxtb16_ror8(f)
        }
    };
    let [mut w0, mut w1, mut w2, mut w3] = rows;
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    let mut x = wide;
    // SAFETY (whole block): every read stays within the bounds the caller guarantees.
    unsafe {
        let end = x.add(groups * 2);
        while x != end {
            let x02 = *x;
            let x13 = *x.add(1);
            x = x.add(2);
            let f = read_u32(w0);
            w0 = w0.add(4);
            a0 = smlad(x02, widen_lo(f), a0);
            a0 = smlad(x13, widen_hi(f), a0);
            let f = read_u32(w1);
            w1 = w1.add(4);
            a1 = smlad(x02, widen_lo(f), a1);
            a1 = smlad(x13, widen_hi(f), a1);
            let f = read_u32(w2);
            w2 = w2.add(4);
            a2 = smlad(x02, widen_lo(f), a2);
            a2 = smlad(x13, widen_hi(f), a2);
            let f = read_u32(w3);
            w3 = w3.add(4);
            a3 = smlad(x02, widen_lo(f), a3);
            a3 = smlad(x13, widen_hi(f), a3);
        }
    }
    [a0, a1, a2, a3]
}

/// As [`dot_1x4_wide`] for rows too long to widen on the stack: widens as it goes.
///
/// # Safety
/// `x` and every row must point to `groups * 4` readable bytes.
#[inline(always)]
unsafe fn dot_1x4_narrow(
    x: *const i8,
    rows: [*const i8; 4],
    groups: usize,
    input_offset: i32,
    filter_offset: i32,
) -> [i32; 4] {
    use simd::*;
    let (input_offset, filter_offset) = (splat16(input_offset), splat16(filter_offset));
    let mut rows = rows;
    let mut acc = [0i32; 4];
    let mut x = x;
    // SAFETY (whole block): each pointer walks `groups * 4` values of its row.
    unsafe {
        for _ in 0..groups {
            let v = read_u32(x);
            let v02 = sxtab16(input_offset, v);
            let v13 = sxtab16_ror8(input_offset, v);
            for (a, wp) in acc.iter_mut().zip(rows.iter_mut()) {
                let f = read_u32(*wp);
                *a = smlad(v02, sxtab16(filter_offset, f), *a);
                *a = smlad(v13, sxtab16_ror8(filter_offset, f), *a);
                *wp = wp.add(4);
            }
            x = x.add(4);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::dsp::tests::{def, random_act, random_requant};
    use crate::kernels::fully_connected::fully_connected_s8_reference;
    use crate::kernels::testing::Rng;
    use crate::kernels::Requant;

    #[derive(Debug)]
    struct FcCase {
        p: FullyConnectedS8,
        dims: FcDims,
        input: Vec<i8>,
        filter: Vec<i8>,
        bias: Option<Vec<i32>>,
        multipliers: Vec<i32>,
        shifts: Vec<i32>,
    }

    fn fc_case(rng: &mut Rng) -> FcCase {
        let dims = FcDims {
            batches: rng.range(1, 3) as usize,
            accum_depth: rng.range(1, 70) as usize,
            output_depth: rng.range(1, 11) as usize,
        };
        let (multipliers, shifts) = random_requant(rng, dims.output_depth);
        let (act_min, act_max) = random_act(rng);
        FcCase {
            p: FullyConnectedS8 {
                input: def(),
                filter: def(),
                bias: None,
                output: def(),
                input_offset: rng.range(-128, 127) as i32,
                filter_offset: if rng.range(0, 3) == 0 {
                    rng.range(-128, 127) as i32
                } else {
                    0
                },
                output_offset: rng.range(-128, 127) as i32,
                requant: Requant {
                    multipliers: def(),
                    shifts: def(),
                },
                act_min,
                act_max,
            },
            input: rng.vec_i8(dims.batches * dims.accum_depth),
            filter: rng.vec_i8(dims.output_depth * dims.accum_depth),
            bias: (rng.range(0, 3) > 0).then(|| {
                (0..dims.output_depth)
                    .map(|_| rng.range(-40_000, 40_000) as i32)
                    .collect()
            }),
            dims,
            multipliers,
            shifts,
        }
    }

    fn fc_reference(c: &FcCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.dims.batches * c.dims.output_depth];
        let bias = c.bias.as_deref();
        fully_connected_s8_reference(
            &c.p,
            c.dims,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }

    fn fc_dsp(c: &FcCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.dims.batches * c.dims.output_depth];
        let bias = c.bias.as_deref();
        assert!(fully_connected_s8_dsp(
            &c.p,
            c.dims,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out
        ));
        out
    }

    crate::kernel_variants_match_reference!(
        fully_connected_s8_dsp_matches_reference,
        cases = 600,
        setup = fc_case,
        reference = fc_reference,
        variants = [fc_dsp]
    );

    /// Rows longer than the stack's widened copy take the widen-as-you-go loop.
    #[test]
    fn fully_connected_long_rows_match_reference() {
        let mut rng = Rng(17);
        for _ in 0..6 {
            let mut c = fc_case(&mut rng);
            c.dims.accum_depth = FC_WIDE_WORDS * 2 + rng.range(1, 9) as usize;
            c.input = rng.vec_i8(c.dims.batches * c.dims.accum_depth);
            c.filter = rng.vec_i8(c.dims.output_depth * c.dims.accum_depth);
            assert_eq!(fc_dsp(&c), fc_reference(&c), "{:?}", c.dims);
        }
    }
}

//! Fully connected with the DSP shim.
//!
//! One pass over the input row per 4 output channels. The row is widened once (input offset
//! added, `[lanes 0/2, lanes 1/3]` per 4 values, [`widen_row`]); each pair of widened words then
//! feeds the filter words of 4 channels, split with `SXTB16` / `SXTB16 ROR #8` into the same lane
//! order, so a filter word costs one load, two splits and two `SMLAD`s (4 MACs). A filter offset
//! (asymmetric weights) is not added per weight: `sum((w + fo) * x) = sum(w * x) + fo * sum(x)`,
//! and `sum(x)` over the widened row is computed once per row.
//!
//! On `thumbv7em` the 4-channel loop is one `asm!` block ([`dot_4rows`]): it needs 14 registers
//! (4 sums, 4 filter row pointers, the widened row's pointer and end, 2 widened words, a filter
//! word and its split half), more than LLVM leaves to Rust code, which spilled. Elsewhere the same
//! loop runs in Rust with the shim, so the host tests hold both to the reference.

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
    let channels = dims.output_depth;
    if !(-255..=255).contains(&p.input_offset)
        || !(-255..=255).contains(&p.filter_offset)
        || depth == 0
        || input.len() < dims.batches * depth
        || filter.len() < channels * depth
        || output.len() < dims.batches * channels
        || bias.is_some_and(|b| b.len() < channels)
        || multipliers.is_empty()
        || multipliers.len() != shifts.len()
        || (multipliers.len() != 1 && multipliers.len() < channels)
        || shifts.iter().any(|s| !(-31..=30).contains(s))
    {
        return false;
    }
    let per_tensor = FcRequant::new(multipliers[0], shifts[0]);
    let groups = depth / 4;
    let tail = groups * 4;
    // Uninitialized: `widen_row` writes the words it hands out (no 4 KB clear per call).
    let mut wide = [core::mem::MaybeUninit::<u32>::uninit(); FC_WIDE_WORDS];
    let widen = groups * 2 <= FC_WIDE_WORDS;
    for (row, out_row) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(channels))
        .take(dims.batches)
    {
        // The row widened (offset added) once for every channel, when it fits the stack, and
        // its sum for the filter offset.
        let wide_row = if widen {
            widen_row(row, groups, simd::splat16(p.input_offset), &mut wide)
        } else {
            &[]
        };
        let filter_offset_sum = if p.filter_offset != 0 {
            let ones = simd::splat16(1);
            let row_sum = wide_row.iter().fold(0, |sum, &x| simd::smlad(x, ones, sum));
            p.filter_offset.wrapping_mul(row_sum)
        } else {
            0
        };
        // Raw sums of up to `SUMS_CHUNK` channels first, then their requantization in one
        // tight loop (its parameters stay in registers, which the `asm!` loop needs all of).
        let mut sums = [0i32; SUMS_CHUNK];
        for start in (0..channels).step_by(SUMS_CHUNK) {
            let len = (channels - start).min(SUMS_CHUNK);
            for (block, block_sums) in sums[..len].chunks_mut(4).enumerate() {
                let c = start + block * 4;
                let count = block_sums.len();
                // SAFETY: the filter holds `channels * depth` values (checked above) and
                // `c + count <= channels`; rows past the last channel repeat it (their sums are
                // dropped).
                let rows = unsafe {
                    let base = filter.as_ptr().add(c * depth);
                    let row = |i: usize| base.add(i.min(count - 1) * depth);
                    if count == 4 {
                        [
                            base,
                            base.add(depth),
                            base.add(2 * depth),
                            base.add(3 * depth),
                        ]
                    } else {
                        [row(0), row(1), row(2), row(3)]
                    }
                };
                // SAFETY: each filter row holds `depth` values, the widened row `groups * 2`
                // words and the input row `depth` values.
                let mut acc = unsafe {
                    if widen {
                        dot_4rows(wide_row.as_ptr(), rows, groups)
                    } else {
                        dot_1x4_narrow(row.as_ptr(), rows, groups, p.input_offset, p.filter_offset)
                    }
                };
                if widen && filter_offset_sum != 0 {
                    for a in &mut acc {
                        *a = a.wrapping_add(filter_offset_sum);
                    }
                }
                for k in tail..depth {
                    let x = row[k] as i32 + p.input_offset;
                    for (i, a) in acc.iter_mut().enumerate() {
                        let f = filter[(c + i.min(count - 1)) * depth + k] as i32 + p.filter_offset;
                        *a = a.wrapping_add(f * x);
                    }
                }
                block_sums.copy_from_slice(&acc[..count]);
            }
            let out_chunk = &mut out_row[start..start + len];
            let bias_chunk = bias.map(|b| &b[start..start + len]);
            if multipliers.len() > 1 {
                let requant = |i: usize| FcRequant::new(multipliers[start + i], shifts[start + i]);
                finish_outputs(p, &sums[..len], bias_chunk, requant, out_chunk);
            } else {
                finish_outputs(p, &sums[..len], bias_chunk, |_| per_tensor, out_chunk);
            }
        }
    }
    true
}

/// Channels whose raw sums are held on the stack before requantization.
const SUMS_CHUNK: usize = 256;

/// `out[i] = clamp(requant(i)(sums[i] + bias[i]) + output_offset)`.
#[inline(always)]
fn finish_outputs(
    p: &FullyConnectedS8,
    sums: &[i32],
    bias: Option<&[i32]>,
    requant: impl Fn(usize) -> FcRequant,
    out: &mut [i8],
) {
    let finish = |i: usize, acc: i32| {
        requant(i)
            .apply(acc)
            .wrapping_add(p.output_offset)
            .clamp(p.act_min, p.act_max) as i8
    };
    match bias {
        Some(bias) => {
            for (i, ((o, &s), &b)) in out.iter_mut().zip(sums).zip(bias).enumerate() {
                *o = finish(i, s.wrapping_add(b));
            }
        }
        None => {
            for (i, (o, &s)) in out.iter_mut().zip(sums).enumerate() {
                *o = finish(i, s);
            }
        }
    }
}

/// TFLite's single-rounding requantization (`multiply_by_quantized_multiplier_single_rounding`)
/// for one channel, with the rounding constant prepared.
#[derive(Debug, Clone, Copy)]
struct FcRequant {
    multiplier: i32,
    /// `31 - shift`, in `1..=62`.
    total_shift: u32,
    /// For `total_shift >= 33`: `1 << (total_shift - 33)`, the high word of the rounding
    /// constant `1 << (total_shift - 1)` (its low word is 0).
    high_round: i32,
}

impl FcRequant {
    /// `shift` must be in `-31..=30` (checked by the caller).
    #[inline(always)]
    fn new(multiplier: i32, shift: i32) -> Self {
        let total_shift = (31 - shift) as u32;
        FcRequant {
            multiplier,
            total_shift,
            high_round: 1i32.wrapping_shl(total_shift.wrapping_sub(33)),
        }
    }

    /// Equals `multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)`.
    #[inline(always)]
    fn apply(self, acc: i32) -> i32 {
        let product = acc as i64 * self.multiplier as i64;
        if self.total_shift >= 33 {
            // The usual case (shift < -1): adding a constant with a zero low word commutes with
            // taking the high word, and floor shifts compose, so `(product + round) >> total`
            // is `(high(product) + high_round) >> (total - 32)`: one SMMLA and one ASR. The sum
            // stays within +-2^30 + 2^29.
            ((product >> 32) as i32 + self.high_round) >> (self.total_shift - 32)
        } else {
            ((product + (1i64 << (self.total_shift - 1))) >> self.total_shift) as i32
        }
    }
}

/// Largest widened FC row held on the stack, in words (2 per 4 input values).
const FC_WIDE_WORDS: usize = 1024;

/// The first `groups * 4` values of `row` plus `offset`, widened as `[lanes 0/2, lanes 1/3]`
/// per group of 4 (the order `SXTB16` / `SXTB16 ROR #8` give a filter word) into the first
/// `groups * 2` words of `wide` (at least that long), which it returns (fewer when `row` is
/// shorter than `groups * 4`).
#[inline(always)]
fn widen_row<'a>(
    row: &[i8],
    groups: usize,
    offset: u32,
    wide: &'a mut [core::mem::MaybeUninit<u32>],
) -> &'a [u32] {
    use simd::*;
    let groups = groups.min(row.len() / 4);
    let wide = &mut wide[..groups * 2];
    for (x, out) in row.chunks_exact(4).zip(wide.chunks_exact_mut(2)) {
        let x = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
        out[0].write(sxtab16(offset, x));
        out[1].write(sxtab16_ror8(offset, x));
    }
    // SAFETY: `row` holds at least `groups * 4` values, so the loop wrote all `groups * 2` words.
    unsafe { core::slice::from_raw_parts(wide.as_ptr() as *const u32, wide.len()) }
}

/// Four channels' sums of `filter * x` over `groups * 4` values of a row widened by
/// [`widen_row`] (no filter offset). The Rust twin of the `thumbv7em` assembly below: the same
/// loop, one group of 4 values at a time.
///
/// # Safety
/// `wide` must point to `groups * 2` readable words and every row to `groups * 4` bytes.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn dot_4rows(wide: *const u32, rows: [*const i8; 4], groups: usize) -> [i32; 4] {
    use simd::*;
    let mut acc = [0i32; 4];
    // SAFETY (whole block): group `g` reads words `2g, 2g + 1` of `wide` and bytes
    // `4g..4g + 4` of each row, within the bounds the caller guarantees.
    unsafe {
        for g in 0..groups {
            let x02 = *wide.add(2 * g);
            let x13 = *wide.add(2 * g + 1);
            for (a, row) in acc.iter_mut().zip(rows) {
                let f = read_u32(row.add(4 * g));
                *a = smlad(x02, sxtb16(f), *a);
                *a = smlad(x13, sxtb16_ror8(f), *a);
            }
        }
    }
    acc
}

/// One group of 4 values for the 4 channels: 21 instructions for 16 MACs. Registers: sums
/// `r0`-`r3`, filter row pointers `r4`, `r5`, `r8`, `r9`, widened row pointer `r10`, widened
/// words `r12` (lanes 0/2) and `lr` (lanes 1/3), filter word `r6`, its split half `r7`.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
macro_rules! fc_group {
    () => {
        concat!(
            "ldrd r12, lr, [r10], #8\n",
            "ldr r6, [r4], #4\n",
            "sxtb16 r7, r6\n",
            "smlad r0, r12, r7, r0\n",
            "sxtb16 r7, r6, ror #8\n",
            "smlad r0, lr, r7, r0\n",
            "ldr r6, [r5], #4\n",
            "sxtb16 r7, r6\n",
            "smlad r1, r12, r7, r1\n",
            "sxtb16 r7, r6, ror #8\n",
            "smlad r1, lr, r7, r1\n",
            "ldr r6, [r8], #4\n",
            "sxtb16 r7, r6\n",
            "smlad r2, r12, r7, r2\n",
            "sxtb16 r7, r6, ror #8\n",
            "smlad r2, lr, r7, r2\n",
            "ldr r6, [r9], #4\n",
            "sxtb16 r7, r6\n",
            "smlad r3, r12, r7, r3\n",
            "sxtb16 r7, r6, ror #8\n",
            "smlad r3, lr, r7, r3\n",
        )
    };
}

/// [`dot_4rows`] on Cortex-M4/M7: 4 groups per loop iteration (86 instructions for 64 MACs),
/// then the remaining 0-3 groups one at a time (`r11` holds the end of each loop). `r6` and `r7`
/// cannot be `asm!` operands (LLVM's base and frame pointers), so the block saves and restores
/// them itself.
///
/// # Safety
/// As the Rust twin.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn dot_4rows(wide: *const u32, rows: [*const i8; 4], groups: usize) -> [i32; 4] {
    let [w0, w1, w2, w3] = rows;
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    // SAFETY: the pointers stay within the bounds the caller guarantees (each group reads
    // 2 words of `wide` and 4 bytes of each row); the stack is restored before the block ends.
    unsafe {
        let quad_end = wide.add((groups & !3) * 2);
        let end = wide.add(groups * 2);
        core::arch::asm!(
            "push {{r6, r7}}",
            // The end of the row, for the single-group loop (no register left to hold it).
            "str r12, [sp, #-8]!",
            "cmp r10, r11",
            "beq 3f",
            "2:",
            fc_group!(),
            fc_group!(),
            fc_group!(),
            fc_group!(),
            "cmp r10, r11",
            "bne 2b",
            "3:",
            "ldr r11, [sp]",
            "cmp r10, r11",
            "beq 5f",
            "4:",
            fc_group!(),
            "cmp r10, r11",
            "bne 4b",
            "5:",
            "add sp, #8",
            "pop {{r6, r7}}",
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") a2,
            inout("r3") a3,
            inout("r4") w0 => _,
            inout("r5") w1 => _,
            inout("r8") w2 => _,
            inout("r9") w3 => _,
            inout("r10") wide => _,
            inout("r11") quad_end => _,
            inout("r12") end => _,
            out("lr") _,
        );
    }
    [a0, a1, a2, a3]
}

/// Four channels' sums for rows too long to widen on the stack: widens as it goes.
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

    #[test]
    fn requant_matches_single_rounding() {
        use crate::quant::multiply_by_quantized_multiplier_single_rounding as single;
        let mut rng = Rng(29);
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -1,
            0,
            1,
            i32::MAX,
            1 << 30,
            -(1 << 30),
        ];
        for i in 0..200_000 {
            let acc = if i % 7 == 0 {
                edges[i % edges.len()]
            } else {
                rng.next_u64() as i32 >> rng.range(0, 31)
            };
            let multiplier = if i % 11 == 0 {
                edges[(i / 11) % edges.len()].max(0)
            } else {
                (rng.next_u64() as i32) & i32::MAX
            };
            let shift = rng.range(-31, 30) as i32;
            assert_eq!(
                FcRequant::new(multiplier, shift).apply(acc),
                single(acc, multiplier, shift),
                "acc {acc} multiplier {multiplier} shift {shift}"
            );
        }
    }

    /// Layer shapes of the shared models (AD 640/128/8 wide, KWS 64 -> 12, hello_world
    /// 1 -> 16 -> 16 -> 1), with and without a filter offset: long runs of the 4-group loop,
    /// every remainder of the 1-group loop, and depths under 4 (no group: the scalar tail only).
    #[test]
    fn fully_connected_model_shapes_match_reference() {
        let mut rng = Rng(23);
        let shapes = [
            (640, 128),
            (128, 128),
            (128, 8),
            (8, 128),
            (128, 640),
            (64, 12),
            (76, 5),
            (1, 16),
            (16, 16),
            (16, 1),
            (3, 7),
        ];
        for (depth, channels) in shapes {
            for filter_offset in [0, 3, -128] {
                let mut c = fc_case(&mut rng);
                c.dims.accum_depth = depth;
                c.dims.output_depth = channels;
                c.p.filter_offset = filter_offset;
                c.input = rng.vec_i8(c.dims.batches * depth);
                c.filter = rng.vec_i8(channels * depth);
                (c.multipliers, c.shifts) = random_requant(&mut rng, channels);
                c.bias = Some(
                    (0..channels)
                        .map(|_| rng.range(-40_000, 40_000) as i32)
                        .collect(),
                );
                assert_eq!(fc_dsp(&c), fc_reference(&c), "{:?}", c.dims);
            }
        }
    }

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

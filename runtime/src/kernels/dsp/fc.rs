//! Fully connected with the DSP shim.
//!
//! The input row is widened once per call (input offset added, `[lanes 0/2, lanes 1/3]` per 4
//! values, [`widen_row`]) into a stack buffer. Output channels then go in pairs: each pass over
//! the widened row feeds the filter words of 2 channels, split with `SXTB16` / `SXTB16 ROR #8`
//! into the same lane order, so a filter word costs two splits and two `SMLAD`s (4 MACs) plus
//! its share of the loads. A filter offset (asymmetric weights) is not added per weight:
//! `sum((w + fo) * x) = sum(w * x) + fo * sum(x)`, and `fo * sum(x)` over the widened row is
//! computed once per row and starts every sum.
//!
//! On `thumbv7em` the loop over every channel pair of a chunk is one `asm!` block
//! ([`dot_row_pairs`]): 8 inputs x 2 channels per step with one `LDM` of 4 widened words and one
//! `LDRD` of 2 filter words per channel (19 instructions for 16 MACs), 4 steps per iteration.
//! `LDRD` needs word-aligned filter rows, so the kernel takes depths that are a multiple of 4
//! with a word-aligned filter (the format aligns constants to 16 bytes) and declines the rest,
//! which run the reference. Elsewhere the same loop runs in Rust with the shim, so the host
//! tests hold both to the reference. The raw sums of up to [`SUMS_CHUNK`] channels go to the
//! stack and one tight loop requantizes them.

use core::mem::MaybeUninit;

use super::*;

/// [`FullyConnectedS8`]: 2 output channels per pass over the widened input row. Same arguments
/// as [`crate::kernels::fully_connected::fully_connected_s8_reference`]; `false` when not handled here
/// (depth not a multiple of 4, filter not word-aligned, offsets or requantization out of range).
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
        || !depth.is_multiple_of(4)
        || !(filter.as_ptr() as usize).is_multiple_of(4)
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
    // A row longer than the stack buffer goes in segments, with half the sums buffer per chunk
    // (the other half takes the later segments' partial sums).
    let chunk = if depth > FC_WIDE_WORDS * 2 {
        SUMS_CHUNK / 2
    } else {
        SUMS_CHUNK
    };
    // Uninitialized: `widen_row` writes the words it hands out and `dot_row_pairs` the sums
    // (no 4 KB + 1 KB clear per call).
    let mut wide = [MaybeUninit::<u32>::uninit(); FC_WIDE_WORDS];
    let mut sums = [MaybeUninit::<i32>::uninit(); SUMS_CHUNK + 1];
    let mut init = 0;
    for (row, out_row) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(channels))
        .take(dims.batches)
    {
        for start in (0..channels).step_by(chunk) {
            let len = (channels - start).min(chunk);
            // SAFETY: the filter holds `channels * depth` values (checked above) and
            // `start + len <= channels`.
            let chunk_sums = unsafe {
                let rows = filter.as_ptr().add(start * depth);
                chunk_sums(p, row, rows, len, start, &mut wide, &mut init, &mut sums)
            };
            let out_chunk = &mut out_row[start..start + len];
            let bias_chunk = bias.map(|b| &b[start..start + len]);
            requantize(
                p,
                chunk_sums,
                bias_chunk,
                multipliers,
                shifts,
                start,
                out_chunk,
            );
        }
    }
    true
}

/// The sums `sum((w + filter_offset) * (x + input_offset))` of the `len` channels whose filter
/// rows start at `rows`, over one input `row`, in the first `len` values of `sums` (returned).
/// The row is widened into `wide` (and `init`, the filter offset's share, computed) for the
/// first chunk (`start == 0`) or when it is longer than `wide`, in which case it goes in
/// segments whose sums are added from the second half of `sums` (`len <= SUMS_CHUNK / 2` then).
///
/// # Safety
/// `rows` must point to `len` rows of `row.len()` readable bytes each, word-aligned, `row.len()`
/// a multiple of 4; `wide` and `init` must hold the widened `row` when `start > 0` and the row
/// fits `wide`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_sums<'a>(
    p: &FullyConnectedS8,
    row: &[i8],
    rows: *const i8,
    len: usize,
    start: usize,
    wide: &mut [MaybeUninit<u32>; FC_WIDE_WORDS],
    init: &mut i32,
    sums: &'a mut [MaybeUninit<i32>; SUMS_CHUNK + 1],
) -> &'a [i32] {
    let depth = row.len();
    let segment_len = FC_WIDE_WORDS * 2;
    let rewiden = start == 0 || depth > segment_len;
    let sums_out = sums.as_mut_ptr() as *mut i32;
    let pairs = len / 2;
    for seg_start in (0..depth).step_by(segment_len) {
        let segment = &row[seg_start..depth.min(seg_start + segment_len)];
        let groups = segment.len() / 4;
        if rewiden {
            let wide_row = widen_row(segment, groups, simd::splat16(p.input_offset), wide);
            *init = if p.filter_offset != 0 {
                let ones = simd::splat16(1);
                let sum = wide_row.iter().fold(0, |sum, &x| simd::smlad(x, ones, sum));
                p.filter_offset.wrapping_mul(sum)
            } else {
                0
            };
        }
        let wide_row = wide.as_ptr() as *const u32;
        let partial = if seg_start == 0 { 0 } else { SUMS_CHUNK / 2 };
        // SAFETY: `wide` holds the segment's `groups * 2` widened words; each row read stays
        // inside the `len` rows the caller guarantees; `sums` has room for `partial + len + 1`
        // values (`len <= SUMS_CHUNK / 2` when `partial > 0`).
        unsafe {
            let first = rows.add(seg_start);
            let out = sums_out.add(partial);
            if pairs > 0 {
                // After a pair's segment, the next pair's starts `2 * depth` further.
                let stride = 2 * depth - segment.len();
                let pair = [first, first.add(depth)];
                dot_row_pairs(wide_row, groups, pair, stride, pairs, *init, out);
            }
            if len % 2 == 1 {
                // The last channel of an odd count, paired with itself.
                let last = first.add((len - 1) * depth);
                dot_row_pairs(
                    wide_row,
                    groups,
                    [last, last],
                    0,
                    1,
                    *init,
                    out.add(len - 1),
                );
            }
            for i in 0..if partial > 0 { len } else { 0 } {
                let total = sums_out.add(i);
                *total = (*total).wrapping_add(*out.add(i));
            }
        }
    }
    // SAFETY: the first segment wrote the first `len` sums.
    unsafe { core::slice::from_raw_parts(sums_out as *const i32, len) }
}

/// Channels whose raw sums are held on the stack before requantization.
const SUMS_CHUNK: usize = 256;

/// `out[i] = ssat8(requant(sums[i] + bias[i]) + output_offset)` for one requantizer with
/// `total_shift >= 33` (a shift below -1) and the full int8 activation range: [`FcRequant::apply`]'s
/// first branch, no per-output test.
#[inline(never)]
fn requantize_per_tensor(
    output_offset: i32,
    requant: FcRequant,
    sums: &[i32],
    bias: Option<&[i32]>,
    out: &mut [i8],
) {
    let (multiplier, high_round) = (requant.multiplier, requant.high_round);
    let shift = requant.total_shift - 32;
    let finish = |acc: i32| {
        let high = ((acc as i64 * multiplier as i64) >> 32) as i32;
        simd::ssat8(((high + high_round) >> shift).wrapping_add(output_offset)) as i8
    };
    match bias {
        Some(bias) => {
            for ((o, &s), &b) in out.iter_mut().zip(sums).zip(bias) {
                *o = finish(s.wrapping_add(b));
            }
        }
        None => {
            for (o, &s) in out.iter_mut().zip(sums) {
                *o = finish(s);
            }
        }
    }
}

/// `out[i] = clamp(requant_c(sums[i] + bias[i]) + output_offset)` for channel
/// `c = start + i` (or the single requantizer), any shift and activation range; the usual case
/// goes to [`requantize_per_tensor`].
#[inline(never)]
fn requantize(
    p: &FullyConnectedS8,
    sums: &[i32],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    start: usize,
    out: &mut [i8],
) {
    if let ([multiplier], [shift]) = (multipliers, shifts) {
        let requant = FcRequant::new(*multiplier, *shift);
        if requant.total_shift >= 33 && p.act_min == -128 && p.act_max == 127 {
            // One multiplier, one `SMMLA`-based rounding, no clamp.
            return requantize_per_tensor(p.output_offset, requant, sums, bias, out);
        }
    }
    let per_channel = multipliers.len() > 1;
    for (i, (o, &s)) in out.iter_mut().zip(sums).enumerate() {
        let c = if per_channel { start + i } else { 0 };
        // In bounds (checked by the caller); the defaults are never used.
        let bias = bias.and_then(|b| b.get(i)).copied().unwrap_or(0);
        let multiplier = multipliers.get(c).copied().unwrap_or(0);
        let shift = shifts.get(c).copied().unwrap_or(0);
        *o = FcRequant::new(multiplier, shift)
            .apply(s.wrapping_add(bias))
            .wrapping_add(p.output_offset)
            .clamp(p.act_min, p.act_max) as i8;
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

/// For `blocks` pairs of filter rows, the pair's two sums `init + sum(filter * x)` over
/// `groups * 4` values of a row widened by [`widen_row`], written to `sums[2 * b]` and
/// `sums[2 * b + 1]`. The first pair is `rows`; each next pair starts `stride` bytes after the
/// end of the previous one (`stride = depth` for consecutive pairs of a row-major filter). The
/// Rust twin of the `thumbv7em` assembly below: the same loop, one group of 4 values at a time.
///
/// # Safety
/// `wide` must point to `groups * 2` readable words, each row of every pair to `groups * 4`
/// readable bytes (word-aligned on `thumbv7em`), and `sums` to `2 * blocks` writable values.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn dot_row_pairs(
    wide: *const u32,
    groups: usize,
    rows: [*const i8; 2],
    stride: usize,
    blocks: usize,
    init: i32,
    sums: *mut i32,
) {
    use simd::*;
    let mut rows = rows;
    // SAFETY (whole block): group `g` reads words `2g, 2g + 1` of `wide` and bytes
    // `4g..4g + 4` of each row, pair `b` writes `sums[2b..2b + 2]`, within the bounds the caller
    // guarantees.
    unsafe {
        for b in 0..blocks {
            let mut acc = [init; 2];
            for g in 0..groups {
                let x02 = *wide.add(2 * g);
                let x13 = *wide.add(2 * g + 1);
                for (a, row) in acc.iter_mut().zip(rows) {
                    let f = read_u32(row.add(4 * g));
                    *a = smlad(x02, sxtb16(f), *a);
                    *a = smlad(x13, sxtb16_ror8(f), *a);
                }
            }
            *sums.add(2 * b) = acc[0];
            *sums.add(2 * b + 1) = acc[1];
            rows = rows.map(|row| row.wrapping_add(groups * 4 + stride));
        }
    }
}

/// One group of 4 values for the 2 channels (11 instructions, 8 MACs). Registers: sums `r0`,
/// `r1`, filter row pointers `r2`, `r3`, widened row pointer `r4`, widened words `r9` (lanes
/// 0/2) and `r10` (lanes 1/3), filter word `lr`, its split half `r7`.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
macro_rules! fc_group {
    () => {
        concat!(
            "ldrd r9, r10, [r4], #8\n",
            "ldr lr, [r2], #4\n",
            "sxtb16 r7, lr\n",
            "smlad r0, r9, r7, r0\n",
            "sxtb16 lr, lr, ror #8\n",
            "smlad r0, r10, lr, r0\n",
            "ldr lr, [r3], #4\n",
            "sxtb16 r7, lr\n",
            "smlad r1, r9, r7, r1\n",
            "sxtb16 lr, lr, ror #8\n",
            "smlad r1, r10, lr, r1\n",
        )
    };
}

/// Two groups (8 values) for the 2 channels: one `LDM` of 4 widened words (`r9`-`r12`), one
/// `LDRD` of 2 filter words (`lr`, `r6`) per channel; 19 instructions for 16 MACs.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
macro_rules! fc_step8 {
    () => {
        concat!(
            "ldm r4!, {{r9, r10, r11, r12}}\n",
            "ldrd lr, r6, [r2], #8\n",
            "sxtb16 r7, lr\n",
            "smlad r0, r9, r7, r0\n",
            "sxtb16 lr, lr, ror #8\n",
            "smlad r0, r10, lr, r0\n",
            "sxtb16 r7, r6\n",
            "smlad r0, r11, r7, r0\n",
            "sxtb16 r6, r6, ror #8\n",
            "smlad r0, r12, r6, r0\n",
            "ldrd lr, r6, [r3], #8\n",
            "sxtb16 r7, lr\n",
            "smlad r1, r9, r7, r1\n",
            "sxtb16 lr, lr, ror #8\n",
            "smlad r1, r10, lr, r1\n",
            "sxtb16 r7, r6\n",
            "smlad r1, r11, r7, r1\n",
            "sxtb16 r6, r6, ror #8\n",
            "smlad r1, r12, r6, r1\n",
        )
    };
}

/// [`dot_row_pairs`] on Cortex-M4/M7, the loop over pairs included: per pair, `groups % 8`
/// single groups (up to `r5`), then 4 [`fc_step8`]s (32 values) per iteration up to `r8`, the
/// two sums stored with `STRD`, and both row pointers moved on by `stride`. The pair loop's
/// state lives on the stack (`[sp]` widened row, `init`, `stride`, sums pointer, pairs left),
/// as every register is taken inside. `r6` and `r7` cannot be `asm!` operands (LLVM's base and
/// frame pointers), so the block saves and restores them itself.
///
/// # Safety
/// As the Rust twin; `blocks >= 1` and the filter rows word-aligned (`LDRD`).
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(never)]
unsafe fn dot_row_pairs(
    wide: *const u32,
    groups: usize,
    rows: [*const i8; 2],
    stride: usize,
    blocks: usize,
    init: i32,
    sums: *mut i32,
) {
    let [row0, row1] = rows;
    // SAFETY: the pointers stay within the bounds the caller guarantees (each group reads
    // 2 words of `wide` and 4 bytes of each row, each pair writes 2 sums); the stack is restored
    // before the block ends.
    unsafe {
        let singles_end = wide.add((groups % 8) * 2);
        let end = wide.add(groups * 2);
        core::arch::asm!(
            "push {{r6, r7}}",
            // [sp]: widened row, init, stride, sums pointer, pairs left.
            "push {{r9, r10, r11, r12, lr}}",
            "1:",
            "ldrd r4, r0, [sp]",
            "mov r1, r0",
            "cmp r4, r5",
            "beq 3f",
            "2:",
            fc_group!(),
            "cmp r4, r5",
            "bne 2b",
            "3:",
            "cmp r4, r8",
            "beq 5f",
            "4:",
            fc_step8!(),
            fc_step8!(),
            fc_step8!(),
            fc_step8!(),
            "cmp r4, r8",
            "bne 4b",
            "5:",
            "ldr r9, [sp, #8]",
            "ldrd r10, r11, [sp, #12]",
            "strd r0, r1, [r10], #8",
            "add r2, r2, r9",
            "add r3, r3, r9",
            "subs r11, r11, #1",
            "strd r10, r11, [sp, #12]",
            "bne 1b",
            "add sp, #20",
            "pop {{r6, r7}}",
            out("r0") _,
            out("r1") _,
            inout("r2") row0 => _,
            inout("r3") row1 => _,
            out("r4") _,
            in("r5") singles_end,
            in("r8") end,
            inout("r9") wide => _,
            inout("r10") init => _,
            inout("r11") stride => _,
            inout("r12") sums => _,
            inout("lr") blocks => _,
        );
    }
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
        // Mostly depths the kernel takes (multiples of 4: single groups and 32-value steps),
        // some it declines.
        let accum_depth = if rng.range(0, 3) == 0 {
            rng.range(1, 70)
        } else {
            rng.range(1, 40) * 4
        } as usize;
        let dims = FcDims {
            batches: rng.range(1, 3) as usize,
            accum_depth,
            output_depth: rng.range(1, 19) as usize,
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

    /// The filter copied to a word-aligned buffer (as the format aligns constants), or shifted
    /// one byte off alignment.
    fn placed_filter(filter: &[i8], misaligned: bool) -> (Vec<u32>, usize) {
        let offset = usize::from(misaligned);
        let mut words = std::vec![0u32; (filter.len() + offset).div_ceil(4) + 1];
        let bytes = bytemuck::cast_slice_mut::<u32, i8>(&mut words);
        bytes[offset..offset + filter.len()].copy_from_slice(filter);
        (words, offset)
    }

    /// The DSP kernel's output, `None` when it declines.
    fn fc_dsp_placed(c: &FcCase, misaligned: bool) -> Option<Vec<i8>> {
        let mut out = std::vec![0i8; c.dims.batches * c.dims.output_depth];
        let (words, offset) = placed_filter(&c.filter, misaligned);
        let filter = &bytemuck::cast_slice::<u32, i8>(&words)[offset..offset + c.filter.len()];
        fully_connected_s8_dsp(
            &c.p,
            c.dims,
            &c.input,
            filter,
            c.bias.as_deref(),
            &c.multipliers,
            &c.shifts,
            &mut out,
        )
        .then_some(out)
    }

    /// What `eval` computes: the DSP kernel, which must take every depth that is a multiple of
    /// 4 with an aligned filter, else the reference.
    fn fc_dsp(c: &FcCase) -> Vec<i8> {
        match fc_dsp_placed(c, false) {
            Some(out) => out,
            None => {
                assert!(
                    !c.dims.accum_depth.is_multiple_of(4),
                    "declined {:?}",
                    c.dims
                );
                fc_reference(c)
            }
        }
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
    /// 1 -> 16 -> 16 -> 1), with and without a filter offset: long runs of the 32-value loop,
    /// single groups only (36), odd channel counts, more channels than one chunk of sums, the
    /// longest row the kernel widens, and depths it declines (1, 3).
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
            (36, 3),
            (260, 257),
            (FC_WIDE_WORDS * 2, 5),
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

    /// Depths that are not a multiple of 4 and filters that are not word-aligned (`LDRD`) are
    /// declined (the reference runs them).
    #[test]
    fn fully_connected_declines_what_it_cannot_load() {
        let mut rng = Rng(17);
        for depth in [7, 130] {
            let mut c = fc_case(&mut rng);
            c.dims.accum_depth = depth;
            c.input = rng.vec_i8(c.dims.batches * depth);
            c.filter = rng.vec_i8(c.dims.output_depth * depth);
            assert!(fc_dsp_placed(&c, false).is_none(), "{:?}", c.dims);
        }
        let mut c = fc_case(&mut rng);
        c.dims.accum_depth = 64;
        c.input = rng.vec_i8(c.dims.batches * 64);
        c.filter = rng.vec_i8(c.dims.output_depth * 64);
        assert!(fc_dsp_placed(&c, true).is_none());
        assert_eq!(fc_dsp_placed(&c, false), Some(fc_reference(&c)));
    }

    /// Rows longer than the stack's widened copy go in segments (micro_speech's 4,000-deep
    /// layer), with more channels than one chunk of sums and odd channel counts.
    #[test]
    fn fully_connected_long_rows_match_reference() {
        let mut rng = Rng(19);
        let longest = FC_WIDE_WORDS * 2;
        for (depth, channels) in [
            (longest + 4, 3),
            (4000, 4),
            (2 * longest + 36, 131),
            (longest + 32, 256),
        ] {
            for filter_offset in [0, 5] {
                let mut c = fc_case(&mut rng);
                c.dims.accum_depth = depth;
                c.dims.output_depth = channels;
                c.p.filter_offset = filter_offset;
                c.input = rng.vec_i8(c.dims.batches * depth);
                c.filter = rng.vec_i8(channels * depth);
                (c.multipliers, c.shifts) = random_requant(&mut rng, channels);
                c.bias = (filter_offset == 0).then(|| {
                    (0..channels)
                        .map(|_| rng.range(-40_000, 40_000) as i32)
                        .collect()
                });
                assert_eq!(
                    fc_dsp_placed(&c, false),
                    Some(fc_reference(&c)),
                    "{:?}",
                    c.dims
                );
            }
        }
    }
}

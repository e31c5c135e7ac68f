//! Convolution and depthwise convolution with the DSP shim.

use super::*;

/// Copies a pixel's filter window into `patch` (padding taps get `pad_value`).
#[inline(always)]
fn gather_patch(
    p: &Conv2dS8,
    d: &SpatialDims,
    input: &[i8],
    pixel: usize,
    patch: &mut [i8],
    pad_value: i8,
) -> Option<()> {
    let w = p.window;
    let out_x = pixel % d.out_w;
    let out_y = (pixel / d.out_w) % d.out_h;
    let b = pixel / (d.out_w * d.out_h);
    let mut chunks = patch.chunks_exact_mut(d.in_c);
    for fy in 0..d.filter_h {
        let in_y = tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h);
        for fx in 0..d.filter_w {
            let dst = chunks.next()?;
            let in_x = tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w);
            match (in_y, in_x) {
                (Some(in_y), Some(in_x)) => {
                    let at = d.input_index(b, in_y, in_x, 0);
                    let src = input.get(at..at + d.in_c)?;
                    // A one-channel tap (a first layer over raw features) is not worth a memcpy call.
                    match (dst, src) {
                        ([one], [value]) => *one = *value,
                        (dst, src) => dst.copy_from_slice(src),
                    }
                }
                _ => dst.fill(pad_value),
            }
        }
    }
    Some(())
}

/// [`Conv2dS8`] with the DSP extension. Same arguments as
/// [`crate::kernels::conv::conv2d_s8_reference`]; `false` when the shape is not handled here (the
/// caller then runs the reference): grouped convolution, a window over [`CONV_PATCH_MAX`]
/// values, inconsistent lengths, or a channel whose accumulator may exceed
/// [`BoundedRequantizer`]'s range or whose requantizer is outside it (never for a realistic
/// layer).
///
/// A GEMM over blocks of 4 pixels x 1 output channel: each block's windows are widened once
/// (offset added) and reused by every output channel, the accumulators start at the bias, and
/// [`BoundedRequantizer`] finishes them. A 1x1 stride-1 unpadded convolution reads its pixels
/// in place; other windows are gathered per pixel (padding = input zero point).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn conv2d_s8_dsp(
    p: &Conv2dS8,
    d: SpatialDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> bool {
    let depth = d.filter_h * d.filter_w * d.in_c;
    let pixels = d.batches * d.out_h * d.out_w;
    if d.filter_in_c != d.in_c
        || depth > CONV_PATCH_MAX
        || !(-127..=128).contains(&p.input_offset)
        || input.len() < d.batches * d.in_h * d.in_w * d.in_c
        || filter.len() < d.out_c * depth
        || output.len() < pixels * d.out_c
        || bias.is_some_and(|b| b.len() < d.out_c)
        || !per_channel_counts_ok(multipliers, shifts, d.out_c)
    {
        return false;
    }
    let w = p.window;
    // Pixels are consecutive input rows: no gathering.
    let in_place = d.filter_h == 1
        && d.filter_w == 1
        && w.stride_h == 1
        && w.stride_w == 1
        && w.pad_top == 0
        && w.pad_left == 0
        && d.in_h == d.out_h
        && d.in_w == d.out_w;
    let full_range = p.act_min == -128 && p.act_max == 127;
    let offset = simd::splat16(p.input_offset);
    let pad_value = (-p.input_offset) as i8;
    let groups = depth / 4;
    let tail = groups * 4;
    let finish = |a: i32, r: BoundedRequantizer| {
        clamp_to_int8(
            r.apply(a).wrapping_add(p.output_offset),
            full_range,
            p.act_min,
            p.act_max,
        )
    };
    let mut chunk = 0;
    while chunk < d.out_c {
        let chunk_end = (chunk + CHANNEL_CHUNK).min(d.out_c);
        let Some(params) = bounded_params(bias, multipliers, shifts, depth, chunk, d.out_c) else {
            return false;
        };
        let mut patch = [0i8; CONV_PATCH_MAX];
        let mut wide = [0u32; 2 * CONV_PATCH_MAX];
        // `x + input_offset` of the values past the last whole group, per pixel of the block.
        let mut tails = [[0i32; 3]; BLOCK];
        let mut pixel = 0;
        while pixel < pixels {
            let count = (pixels - pixel).min(BLOCK);
            for (slot, tail_values) in tails.iter_mut().enumerate().take(count) {
                let x: &[i8] = if in_place {
                    let at = (pixel + slot) * d.in_c;
                    match input.get(at..at + depth) {
                        Some(x) => x,
                        None => return false,
                    }
                } else {
                    if gather_patch(p, &d, input, pixel + slot, &mut patch, pad_value).is_none() {
                        return false;
                    }
                    &patch[..depth]
                };
                // SAFETY: `x` holds `depth >= groups * 4` values; `wide` has
                // `2 * CONV_PATCH_MAX >= groups * 8` words.
                unsafe { widen_into_block(x.as_ptr(), groups, offset, wide.as_mut_ptr(), slot) };
                for (t, v) in tail_values.iter_mut().zip(&x[tail..]) {
                    *t = *v as i32 + p.input_offset;
                }
            }
            if count == BLOCK && tail == depth && groups > 0 {
                // The common case, with nothing to check per channel: whole groups, 4 pixels.
                // SAFETY: `(pixel + 3) * out_c + c < pixels * out_c <= output.len()` for every
                // channel `c < out_c`; the filter holds `out_c * depth` values and `wide`
                // `groups * 8` aligned words (checked above); `c - chunk < CHANNEL_CHUNK`.
                unsafe {
                    let first = output.as_mut_ptr().add(pixel * d.out_c);
                    for c in chunk..chunk_end {
                        let ChannelParams {
                            bias: b,
                            requant: r,
                        } = *params.get_unchecked(c - chunk);
                        let acc =
                            dot_block(wide.as_ptr(), filter.as_ptr().add(c * depth), groups, b);
                        let out = first.add(c);
                        *out = finish(acc[0], r);
                        *out.add(d.out_c) = finish(acc[1], r);
                        *out.add(2 * d.out_c) = finish(acc[2], r);
                        *out.add(3 * d.out_c) = finish(acc[3], r);
                    }
                }
                pixel += BLOCK;
                continue;
            }
            // Slots past `count` keep stale values whose sums are never stored.
            for c in chunk..chunk_end {
                let ChannelParams {
                    bias: b,
                    requant: r,
                } = params[c - chunk];
                let row = c * depth;
                let mut acc = if groups > 0 {
                    // SAFETY: `wide` holds `groups * 8` aligned words, the filter
                    // `out_c * depth` values (checked above).
                    unsafe { dot_block(wide.as_ptr(), filter.as_ptr().add(row), groups, b) }
                } else {
                    [b; BLOCK]
                };
                for (k, &f) in filter[row + tail..row + depth].iter().enumerate() {
                    for (a, t) in acc.iter_mut().zip(&tails) {
                        *a = a.wrapping_add(t[k] * f as i32);
                    }
                }
                for (j, &a) in acc.iter().enumerate().take(count) {
                    // SAFETY: `(pixel + j) * out_c + c < pixels * out_c <= output.len()`.
                    unsafe { *output.get_unchecked_mut((pixel + j) * d.out_c + c) = finish(a, r) };
                }
            }
            pixel += BLOCK;
        }
        chunk = chunk_end;
    }
    true
}

/// Pixels per block of the 4-pixel GEMM.
const BLOCK: usize = 4;

/// A channel's bias and requantizer, laid out for the `asm!` in [`depthwise_groups4_store`]:
/// bias at byte 0, then [`BoundedRequantizer`]'s multiplier, `left_shift + 1`,
/// `2^right_shift`, `right_shift + 1` at bytes 4, 8, 12, 16; 20 bytes per channel.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct ChannelParams {
    bias: i32,
    requant: BoundedRequantizer,
}

/// Requantizes the accumulators of 4 consecutive channels (parameters at `params[0..4]`)
/// and stores them to `out[0..4]`, for the full int8 activation range: the Rust form of the
/// requantization in the `asm!` of [`depthwise_groups4_store`], for its emulation twin.
///
/// # Safety
/// `params` must point to 4 readable [`ChannelParams`] and `out` to 4 writable bytes.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn requantize4_store(
    acc: [i32; 4],
    params: *const ChannelParams,
    out: *mut i8,
    output_offset: i32,
) {
    for (j, &a) in acc.iter().enumerate() {
        // SAFETY: `j < 4`, within the caller's guarantee.
        unsafe {
            let r = (*params.add(j)).requant;
            *out.add(j) = simd::ssat8(r.apply(a).wrapping_add(output_offset)) as i8;
        }
    }
}

/// Bias and bounded requantizer of each channel in `start..start + CHANNEL_CHUNK` (clipped to
/// `channels`); `None` when a channel's accumulator may exceed [`BoundedRequantizer`]'s range.
fn bounded_params(
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    terms: usize,
    start: usize,
    channels: usize,
) -> Option<[ChannelParams; CHANNEL_CHUNK]> {
    let mut params = [ChannelParams::default(); CHANNEL_CHUNK];
    let products = (terms as u64).checked_mul(MAX_PRODUCT)?;
    for (i, slot) in params
        .iter_mut()
        .enumerate()
        .take(channels.saturating_sub(start))
    {
        let c = start + i;
        let b = bias.map_or(0, |b| b[c]);
        let bound = products.checked_add(b.unsigned_abs() as u64)?;
        *slot = ChannelParams {
            bias: b,
            requant: BoundedRequantizer::new(
                per_channel(multipliers, c),
                per_channel(shifts, c),
                bound,
            )?,
        };
    }
    Some(params)
}

/// Widens one pixel's window (`groups * 4` values at `x`) into slot `slot` of a 4-pixel block:
/// group `g` of the block is 8 words, `[lanes 0/2 of pixels 0..4, lanes 1/3 of pixels 0..4]`,
/// so one filter word (widened to its lanes 0/2 and 1/3) meets four pixels in 8 `SMLAD`s.
///
/// # Safety
/// `x` must point to `groups * 4` readable bytes and `wide` to `groups * 8` writable words.
#[inline(always)]
unsafe fn widen_into_block(x: *const i8, groups: usize, offset: u32, wide: *mut u32, slot: usize) {
    use simd::*;
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        let mut out = wide.add(slot);
        for g in 0..groups {
            let v = read_u32(x.add(g * 4));
            *out = sxtab16(offset, v);
            *out.add(BLOCK) = sxtab16_ror8(offset, v);
            out = out.add(2 * BLOCK);
        }
    }
}

/// `init + sum over groups` of a 4-pixel block widened by [`widen_into_block`] times one
/// filter row of `groups * 4` values, for the block's 4 pixels.
///
/// On the Cortex-M4 this is one `asm!` loop (13 instructions per 16 MACs: `LDR` of the filter
/// word, 2 `SXTB16`, 2 `LDM` of 4 widened words, 8 `SMLAD`; unrolled twice), since the loop
/// needs 13 registers and LLVM spills with the 12 it can allocate around it; elsewhere the
/// same arithmetic in Rust, which the host tests check against the reference.
///
/// # Safety
/// `groups >= 1`; `wide` must point to `groups * 8` readable, 4-byte-aligned words and `row`
/// to `groups * 4` readable bytes.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn dot_block(wide: *const u32, row: *const i8, groups: usize, init: i32) -> [i32; BLOCK] {
    let (mut a0, mut a1, mut a2, mut a3) = (init, init, init, init);
    macro_rules! group {
        () => {
            concat!(
                "ldr r4, [lr], #4\n",
                "ldmia r12!, {{r8-r11}}\n",
                "sxtb16 r5, r4\n",
                "smlad r0, r8, r5, r0\n",
                "smlad r1, r9, r5, r1\n",
                "smlad r2, r10, r5, r2\n",
                "smlad r3, r11, r5, r3\n",
                "ldmia r12!, {{r8-r11}}\n",
                "sxtb16 r5, r4, ror #8\n",
                "smlad r0, r8, r5, r0\n",
                "smlad r1, r9, r5, r1\n",
                "smlad r2, r10, r5, r2\n",
                "smlad r3, r11, r5, r3\n",
            )
        };
    }
    // SAFETY: reads `groups * 32` bytes at `wide` and `groups * 4` at `row` (the caller's
    // guarantee); r6 is saved and restored on the stack around its use as the loop end.
    unsafe {
        core::arch::asm!(
            "push {{r6}}",
            "add r6, r12, r4, lsl #5",
            "tst r4, #1",
            "beq 2f",
            group!(),
            "2:",
            "cmp r12, r6",
            "beq 4f",
            "3:",
            group!(),
            group!(),
            "cmp r12, r6",
            "bne 3b",
            "4:",
            "pop {{r6}}",
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") a2,
            inout("r3") a3,
            inout("r4") groups => _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            inout("r12") wide => _,
            inout("lr") row => _,
            options(readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// Emulation twin of the `asm!` [`dot_block`]: same layout, same instruction semantics.
///
/// # Safety
/// As the `asm!` version.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn dot_block(wide: *const u32, row: *const i8, groups: usize, init: i32) -> [i32; BLOCK] {
    use simd::*;
    let mut acc = [init; BLOCK];
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        for g in 0..groups {
            let f = read_u32(row.add(g * 4));
            let (f02, f13) = (sxtb16(f), sxtb16_ror8(f));
            let words = wide.add(g * 2 * BLOCK);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = smlad(*words.add(j), f02, *a);
                *a = smlad(*words.add(BLOCK + j), f13, *a);
            }
        }
    }
    acc
}

/// Depthwise sums of 4 channels over `taps` filter taps: tap `t` reads 4 input values at
/// `rows[t] + c`, widens them with the input offset and multiplies them with the tap's widened
/// filter words `fw[2t]` (lanes 0/2) and `fw[2t + 1]` (lanes 1/3); the sums start at `init`.
///
/// On the Cortex-M4 one `asm!` loop, 11 instructions per tap (`LDR` of the row pointer, `LDR`
/// of the values, `LDRD` of the filter words, 2 `SXTAB16`, 4 `SMLAxy`, compare and branch), so
/// its speed does not depend on the optimization level the rest of the runtime is built with;
/// it needs 13 registers, r6 saved by hand as in [`dot_block`]. Elsewhere the same arithmetic
/// in Rust, which the host tests check against the reference.
///
/// # Safety
/// `taps >= 1`; `rows` must point to `taps` row pointers, each with 4 readable bytes at
/// offset `c`, and `fw` to `2 * taps` readable, 4-byte-aligned words.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn depthwise_taps4(
    rows: *const *const i8,
    taps: usize,
    c: usize,
    fw: *const u32,
    offset: u32,
    init: [i32; 4],
) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = init;
    // SAFETY: reads `taps` pointers at `rows`, 4 bytes at each plus `c`, and `taps * 8` bytes at
    // `fw` (the caller's guarantee); r6 is saved and restored around its use as the loop end.
    unsafe {
        core::arch::asm!(
            "push {{r6}}",
            "add r6, r4, r10, lsl #2",
            "2:",
            "ldr r10, [r4], #4",
            "ldr r10, [r10, r5]",
            "ldrd r11, r12, [r8], #8",
            "sxtab16 lr, r9, r10",
            "sxtab16 r10, r9, r10, ror #8",
            "smlabb r0, lr, r11, r0",
            "smlatt r2, lr, r11, r2",
            "smlabb r1, r10, r12, r1",
            "smlatt r3, r10, r12, r3",
            "cmp r4, r6",
            "bne 2b",
            "pop {{r6}}",
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") a2,
            inout("r3") a3,
            inout("r4") rows => _,
            in("r5") c,
            inout("r8") fw => _,
            in("r9") offset,
            inout("r10") taps => _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// Emulation twin of the `asm!` [`depthwise_taps4`]: same layout, same instruction semantics.
///
/// # Safety
/// As the `asm!` version.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn depthwise_taps4(
    rows: *const *const i8,
    taps: usize,
    c: usize,
    fw: *const u32,
    offset: u32,
    init: [i32; 4],
) -> [i32; 4] {
    use simd::*;
    let mut acc = init;
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        for t in 0..taps {
            let x = read_u32((*rows.add(t)).add(c));
            let (f02, f13) = (*fw.add(2 * t), *fw.add(2 * t + 1));
            let a02 = sxtab16(offset, x);
            let a13 = sxtab16_ror8(offset, x);
            acc[0] = smlabb(a02, f02, acc[0]);
            acc[2] = smlatt(a02, f02, acc[2]);
            acc[1] = smlabb(a13, f13, acc[1]);
            acc[3] = smlatt(a13, f13, acc[3]);
        }
    }
    acc
}

/// One output pixel of the depthwise kernel over whole groups of 4 channels, full int8
/// activation range: the arguments of [`depthwise_groups4_store`].
#[derive(Debug)]
#[repr(C)]
struct DepthwiseGroups {
    /// `taps` pointers to the window's input pixels (or the padding row).
    rows: *const *const i8,
    taps: usize,
    /// First channel of the first group.
    channel: usize,
    groups: usize,
    /// `[group][tap][lanes 0/2, lanes 1/3]`, `groups * taps * 2` words.
    wide_filter: *const u32,
    /// `groups * 4` channel parameters.
    params: *const ChannelParams,
    /// Where channel `channel` of this pixel goes.
    output: *mut i8,
    /// The input offset packed by [`simd::splat16`].
    input_offset: u32,
    output_offset: i32,
}

/// For each group of 4 channels: [`depthwise_taps4`] from the biases, then
/// [`requantize4_store`]. On the Cortex-M4 the whole loop over groups is one `asm!` block, so
/// that neither the tap loop nor the per-group bookkeeping depends on the optimization level the
/// rest of the runtime is built with (at `opt-level = "s"` LLVM spills the accumulators around
/// each group); the values the tap loop has no register for live in a 24-byte stack frame.
///
/// # Safety
/// `taps >= 1`, `groups >= 1`; every row pointer must address `channel + groups * 4` readable
/// bytes, `wide_filter` `groups * taps * 2` aligned words, `params` `groups * 4` entries and
/// `output` `groups * 4` writable bytes.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn depthwise_groups4_store(a: &DepthwiseGroups) {
    // One output of 4: the five instructions of `BoundedRequantizer::apply` on accumulator
    // `$acc` with the parameters at `$m` (multiplier, left shift + 1) and `$r` (2^right shift,
    // right shift + 1) bytes into the group's parameters (r11), the output offset (`$off`),
    // `SSAT` and the store to byte `$o` of the group's output (r12).
    macro_rules! one {
        ($acc:literal, $m:literal, $r:literal, $off:literal, $o:literal) => {
            concat!(
                "ldrd r4, r6, [r11, #",
                $m,
                "]\n",
                "ldrd r10, lr, [r11, #",
                $r,
                "]\n",
                "lsl r6, ",
                $acc,
                ", r6\n",
                "smmulr r6, r6, r4\n",
                "add r10, r10, r6, lsl #1\n",
                "add r10, r10, r6, asr #31\n",
                "asr r10, r10, lr\n",
                "add r10, r10, ",
                $off,
                "\n",
                "ssat r10, #8, r10\n",
                "strb r10, [r12, #",
                $o,
                "]\n",
            )
        };
    }
    // SAFETY: reads and writes within the bounds the caller guarantees, plus its own balanced
    // stack frame; r6 is saved and restored around its use.
    unsafe {
        core::arch::asm!(
            "push {{r6}}",
            "sub sp, sp, #24",
            // Frame: [0] output offset, [4] rows, [8] taps * 4, [12] params, [16] output,
            // [20] groups left.
            "str r0, [sp, #0]",
            "str r4, [sp, #4]",
            "lsl r10, r10, #2",
            "str r10, [sp, #8]",
            "str r11, [sp, #12]",
            "str r12, [sp, #16]",
            "str lr, [sp, #20]",
            "3:",
            "ldr r11, [sp, #12]",
            "ldr r0, [r11, #0]",
            "ldr r1, [r11, #20]",
            "ldr r2, [r11, #40]",
            "ldr r3, [r11, #60]",
            "ldrd r4, r6, [sp, #4]",
            "add r6, r4, r6",
            "2:",
            "ldr r10, [r4], #4",
            "ldr r10, [r10, r5]",
            "ldrd r11, r12, [r8], #8",
            "sxtab16 lr, r9, r10",
            "sxtab16 r10, r9, r10, ror #8",
            "smlabb r0, lr, r11, r0",
            "smlatt r2, lr, r11, r2",
            "smlabb r1, r10, r12, r1",
            "smlatt r3, r10, r12, r3",
            "cmp r4, r6",
            "bne 2b",
            "ldr r11, [sp, #12]",
            "ldr r12, [sp, #16]",
            // The first output borrows r5 (the channel) for the output offset; the others use
            // r0, free once the first accumulator is stored.
            "push {{r5}}",
            "ldr r5, [sp, #4]",
            one!("r0", "4", "12", "r5", "0"),
            "mov r0, r5",
            "pop {{r5}}",
            one!("r1", "24", "32", "r0", "1"),
            one!("r2", "44", "52", "r0", "2"),
            one!("r3", "64", "72", "r0", "3"),
            "add r11, r11, #80",
            "str r11, [sp, #12]",
            "add r12, r12, #4",
            "str r12, [sp, #16]",
            "add r5, r5, #4",
            "ldr r0, [sp, #20]",
            "subs r0, r0, #1",
            "str r0, [sp, #20]",
            "bne 3b",
            "add sp, sp, #24",
            "pop {{r6}}",
            inout("r0") a.output_offset => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            inout("r4") a.rows => _,
            inout("r5") a.channel => _,
            inout("r8") a.wide_filter => _,
            in("r9") a.input_offset,
            inout("r10") a.taps => _,
            inout("r11") a.params => _,
            inout("r12") a.output => _,
            inout("lr") a.groups => _,
        );
    }
}

/// Emulation twin of the `asm!` [`depthwise_groups4_store`]: same layout, same arithmetic.
///
/// # Safety
/// As the `asm!` version.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn depthwise_groups4_store(a: &DepthwiseGroups) {
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        let mut fw = a.wide_filter;
        for g in 0..a.groups {
            let params = a.params.add(4 * g);
            let bias = [0, 1, 2, 3].map(|j| (*params.add(j)).bias);
            let acc = depthwise_taps4(a.rows, a.taps, a.channel + 4 * g, fw, a.input_offset, bias);
            fw = fw.add(2 * a.taps);
            requantize4_store(acc, params, a.output.add(4 * g), a.output_offset);
        }
    }
}

/// Words of the stack buffer that holds a channel chunk's filter widened to `i16` pairs.
const DEPTHWISE_WIDE_FILTER_WORDS: usize = 1024;

/// [`DepthwiseConv2dS8`] with depth multiplier 1. Same arguments as
/// [`crate::kernels::depthwise::depthwise_conv2d_s8_reference`]; `false` when the shape is not handled
/// (the caller then runs the reference), including a channel whose accumulator may exceed
/// [`BoundedRequantizer`]'s range (never for a realistic layer).
///
/// 4 channels per step of one output pixel, with the filter of a chunk of channels widened
/// once (lanes 0/2 and 1/3 of each tap's 4 channels, the order `SXTB16` gives the input word),
/// accumulators starting at the bias and the [`BoundedRequantizer`]. Taps in the padding read
/// a row of input zero points (adds `0`).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn depthwise_conv2d_s8_dsp(
    p: &DepthwiseConv2dS8,
    d: SpatialDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> bool {
    let channels = d.in_c;
    let taps = d.filter_h * d.filter_w;
    // Channels per chunk: a multiple of 4 whose widened filter fits the stack buffer.
    let chunk_size = (DEPTHWISE_WIDE_FILTER_WORDS * 2 / taps.max(1)).min(CHANNEL_CHUNK) & !3;
    if d.out_c != channels
        || channels > DEPTHWISE_CHANNELS_MAX
        || taps == 0
        || taps > DEPTHWISE_TAPS_MAX
        || chunk_size == 0
        || !(-127..=128).contains(&p.input_offset)
        || input.len() < d.batches * d.in_h * d.in_w * channels
        || filter.len() < taps * channels
        || output.len() < d.batches * d.out_h * d.out_w * channels
        || bias.is_some_and(|b| b.len() < channels)
        || !per_channel_counts_ok(multipliers, shifts, channels)
    {
        return false;
    }
    use simd::*;
    let w = p.window;
    let full_range = p.act_min == -128 && p.act_max == 127;
    let offset = splat16(p.input_offset);
    // Padding taps read this row: `zero_point + input_offset = 0`.
    let pad_row = [(-p.input_offset) as i8; DEPTHWISE_CHANNELS_MAX + 4];
    let mut rows = [pad_row.as_ptr(); DEPTHWISE_TAPS_MAX];
    let mut wide_filter = [0u32; DEPTHWISE_WIDE_FILTER_WORDS];
    let finish = |a: i32, r: BoundedRequantizer| {
        clamp_to_int8(
            r.apply(a).wrapping_add(p.output_offset),
            full_range,
            p.act_min,
            p.act_max,
        )
    };
    let mut chunk = 0;
    while chunk < channels {
        let chunk_end = (chunk + chunk_size).min(channels);
        let Some(params) = bounded_params(bias, multipliers, shifts, taps, chunk, channels) else {
            return false;
        };
        let vector_end = chunk + ((chunk_end - chunk) & !3);
        // `[group][tap][lanes 0/2, lanes 1/3]` for the chunk's whole groups of 4 channels.
        for (g, c) in (chunk..vector_end).step_by(4).enumerate() {
            for t in 0..taps {
                // SAFETY: `t * channels + c + 4 <= taps * channels <= filter.len()`.
                let f = unsafe { read_u32(filter.as_ptr().add(t * channels + c)) };
                let at = (g * taps + t) * 2;
                wide_filter[at] = sxtb16(f);
                wide_filter[at + 1] = sxtb16_ror8(f);
            }
        }
        for b in 0..d.batches {
            for out_y in 0..d.out_h {
                for out_x in 0..d.out_w {
                    let mut t = 0;
                    for fy in 0..d.filter_h {
                        let in_y = tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h);
                        for fx in 0..d.filter_w {
                            let in_x = tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w);
                            rows[t] = match (in_y, in_x) {
                                // SAFETY: an in-image pixel: its `channels` values lie in `input`.
                                (Some(in_y), Some(in_x)) => unsafe {
                                    input.as_ptr().add(d.input_index(b, in_y, in_x, 0))
                                },
                                _ => pad_row.as_ptr(),
                            };
                            t += 1;
                        }
                    }
                    let out_at = d.output_index(b, out_y, out_x, 0);
                    let mut c = chunk;
                    if full_range && vector_end > chunk {
                        // SAFETY: every row addresses `channels` readable values (an input pixel
                        // or the padding row) and `vector_end <= channels`; `wide_filter` holds
                        // the `taps * 2` widened words of each of the chunk's groups, `params`
                        // their parameters, and `out_at + vector_end <= output.len()`;
                        // `taps >= 1` (checked above).
                        unsafe {
                            depthwise_groups4_store(&DepthwiseGroups {
                                rows: rows.as_ptr(),
                                taps,
                                channel: chunk,
                                groups: (vector_end - chunk) / 4,
                                wide_filter: wide_filter.as_ptr(),
                                params: params.as_ptr(),
                                output: output.as_mut_ptr().add(out_at + chunk),
                                input_offset: offset,
                                output_offset: p.output_offset,
                            });
                        }
                        c = vector_end;
                    }
                    let mut fw = wide_filter.as_ptr();
                    while c < vector_end {
                        // SAFETY: `c + 3 - chunk < chunk_size <= CHANNEL_CHUNK`.
                        let group = unsafe { params.get_unchecked(c - chunk..c - chunk + 4) };
                        let bias = [group[0].bias, group[1].bias, group[2].bias, group[3].bias];
                        // SAFETY: every row addresses `channels` readable values (an input pixel
                        // or the padding row) and `c + 4 <= channels`; `fw` points to the
                        // `taps * 2` widened words of this group; `taps >= 1` (checked above).
                        let acc = unsafe {
                            let acc = depthwise_taps4(rows.as_ptr(), taps, c, fw, offset, bias);
                            fw = fw.add(2 * taps);
                            acc
                        };
                        for (lane, (&a, prm)) in acc.iter().zip(group).enumerate() {
                            // SAFETY: `out_at + c + lane < out_at + channels <= output.len()`.
                            unsafe {
                                *output.get_unchecked_mut(out_at + c + lane) =
                                    finish(a, prm.requant)
                            };
                        }
                        c += 4;
                    }
                    while c < chunk_end {
                        let mut acc = params[c - chunk].bias;
                        for (t, row) in rows[..taps].iter().enumerate() {
                            // SAFETY: as above, one value at channel `c < channels`.
                            let x = unsafe { *row.add(c) };
                            let f = filter[t * channels + c] as i32;
                            acc = acc.wrapping_add(f * (x as i32 + p.input_offset));
                        }
                        output[out_at + c] = finish(acc, params[c - chunk].requant);
                        c += 1;
                    }
                }
            }
        }
        chunk = chunk_end;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::conv::conv2d_s8_reference;
    use crate::kernels::depthwise::depthwise_conv2d_s8_reference;
    use crate::kernels::dsp::tests::{def, random_act, random_requant};
    use crate::kernels::testing::Rng;
    use crate::kernels::{Requant, Window};

    #[derive(Debug)]
    struct ConvCase {
        p: Conv2dS8,
        d: SpatialDims,
        input: Vec<i8>,
        filter: Vec<i8>,
        bias: Option<Vec<i32>>,
        multipliers: Vec<i32>,
        shifts: Vec<i32>,
    }

    fn random_window(rng: &mut Rng) -> Window {
        let stride = rng.range(1, 3) as u16;
        let dilation = rng.range(1, 2) as u16;
        Window {
            stride_h: stride,
            stride_w: rng.range(1, 3) as u16,
            dilation_h: dilation,
            dilation_w: rng.range(1, 2) as u16,
            pad_top: rng.range(0, 2) as u16,
            pad_left: rng.range(0, 2) as u16,
        }
    }

    /// Output size along one axis, at least 1.
    fn out_size(input: usize, k: usize, stride: u16, dilation: u16, pad: u16) -> usize {
        let extent = (k - 1) * dilation as usize + 1;
        (input + 2 * pad as usize).saturating_sub(extent) / stride as usize + 1
    }

    fn random_dims(rng: &mut Rng, w: &Window, in_c: usize, out_c: usize) -> SpatialDims {
        let pointwise = rng.range(0, 2) == 0;
        let (filter_h, filter_w) = if pointwise {
            (1, 1)
        } else {
            (rng.range(1, 4) as usize, rng.range(1, 4) as usize)
        };
        let in_h = rng.range(1, 9) as usize;
        let in_w = rng.range(1, 9) as usize;
        SpatialDims {
            batches: rng.range(1, 2) as usize,
            in_h,
            in_w,
            in_c,
            out_h: out_size(in_h, filter_h, w.stride_h, w.dilation_h, w.pad_top),
            out_w: out_size(in_w, filter_w, w.stride_w, w.dilation_w, w.pad_left),
            out_c,
            filter_h,
            filter_w,
            filter_in_c: in_c,
        }
    }

    fn conv_case(rng: &mut Rng) -> ConvCase {
        let window = random_window(rng);
        let in_c = rng.range(1, 13) as usize;
        let out_c = rng.range(1, 9) as usize;
        let d = random_dims(rng, &window, in_c, out_c);
        let (multipliers, shifts) = random_requant(rng, out_c);
        let (act_min, act_max) = random_act(rng);
        ConvCase {
            p: Conv2dS8 {
                input: def(),
                filter: def(),
                bias: None,
                output: def(),
                window,
                input_offset: rng.range(-127, 128) as i32,
                output_offset: rng.range(-128, 127) as i32,
                requant: Requant {
                    multipliers: def(),
                    shifts: def(),
                },
                act_min,
                act_max,
            },
            input: rng.vec_i8(d.batches * d.in_h * d.in_w * in_c),
            filter: rng.vec_i8(out_c * d.filter_h * d.filter_w * in_c),
            bias: (rng.range(0, 3) > 0).then(|| {
                (0..out_c)
                    .map(|_| rng.range(-40_000, 40_000) as i32)
                    .collect()
            }),
            d,
            multipliers,
            shifts,
        }
    }

    fn conv_reference(c: &ConvCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        conv2d_s8_reference(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }

    /// What `Conv2dS8::eval` does with the DSP kernel: it, or the reference where it declines.
    fn conv_dsp(c: &ConvCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        if conv2d_s8_dsp(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out,
        ) {
            out
        } else {
            conv_reference(c)
        }
    }

    crate::kernel_variants_match_reference!(
        conv2d_s8_dsp_matches_reference,
        cases = 600,
        setup = conv_case,
        reference = conv_reference,
        variants = [conv_dsp]
    );

    #[test]
    fn dsp_kernel_handles_realistic_layers() {
        let mut rng = Rng(5);
        let mut handled = 0;
        for _ in 0..200 {
            let c = conv_case(&mut rng);
            let mut out = std::vec![0i8; c.d.output_elements()];
            if conv2d_s8_dsp(
                &c.p,
                c.d,
                &c.input,
                &c.filter,
                c.bias.as_deref(),
                &c.multipliers,
                &c.shifts,
                &mut out,
            ) {
                assert_eq!(out, conv_reference(&c));
                handled += 1;
            }
        }
        // Only the extreme requantizers (huge left shifts) are left to the reference.
        assert!(handled > 150, "the DSP kernel took {handled} of 200");
    }

    #[derive(Debug)]
    struct DepthwiseCase {
        p: DepthwiseConv2dS8,
        d: SpatialDims,
        input: Vec<i8>,
        filter: Vec<i8>,
        bias: Option<Vec<i32>>,
        multipliers: Vec<i32>,
        shifts: Vec<i32>,
    }

    fn depthwise_case(rng: &mut Rng) -> DepthwiseCase {
        let window = random_window(rng);
        let channels = rng.range(1, 19) as usize;
        let mut d = random_dims(rng, &window, channels, channels);
        d.filter_in_c = 1;
        let (multipliers, shifts) = random_requant(rng, channels);
        let (act_min, act_max) = random_act(rng);
        DepthwiseCase {
            p: DepthwiseConv2dS8 {
                input: def(),
                filter: def(),
                bias: None,
                output: def(),
                window,
                depth_multiplier: 1,
                input_offset: rng.range(-127, 128) as i32,
                output_offset: rng.range(-128, 127) as i32,
                requant: Requant {
                    multipliers: def(),
                    shifts: def(),
                },
                act_min,
                act_max,
            },
            input: rng.vec_i8(d.batches * d.in_h * d.in_w * channels),
            filter: rng.vec_i8(d.filter_h * d.filter_w * channels),
            bias: (rng.range(0, 3) > 0).then(|| {
                (0..channels)
                    .map(|_| rng.range(-40_000, 40_000) as i32)
                    .collect()
            }),
            d,
            multipliers,
            shifts,
        }
    }

    fn depthwise_reference(c: &DepthwiseCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        depthwise_conv2d_s8_reference(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out,
        );
        out
    }

    /// What `DepthwiseConv2dS8::eval` does: the DSP kernel, or the reference where it declines.
    fn depthwise_dsp(c: &DepthwiseCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        if depthwise_conv2d_s8_dsp(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            bias,
            &c.multipliers,
            &c.shifts,
            &mut out,
        ) {
            out
        } else {
            depthwise_reference(c)
        }
    }

    crate::kernel_variants_match_reference!(
        depthwise_conv2d_s8_dsp_matches_reference,
        cases = 600,
        setup = depthwise_case,
        reference = depthwise_reference,
        variants = [depthwise_dsp]
    );

    /// One requantizer per channel from scales a converter would produce.
    fn realistic_requant(rng: &mut Rng, channels: usize) -> (Vec<i32>, Vec<i32>) {
        (0..channels)
            .map(|_| crate::quant::quantize_multiplier(rng.f32(0.0001, 0.9) as f64))
            .unzip()
    }

    /// More channels than one parameter chunk ([`CHANNEL_CHUNK`]): the second chunk indexes its
    /// parameters from its own start, and depthwise has a scalar channel tail.
    #[test]
    fn channels_spanning_several_chunks_match_reference() {
        let mut rng = Rng(21);
        let channels = CHANNEL_CHUNK + 6;
        for _ in 0..8 {
            let mut c = conv_case(&mut rng);
            c.d.out_c = channels;
            c.filter = rng.vec_i8(channels * c.d.filter_h * c.d.filter_w * c.d.in_c);
            c.bias = Some(
                (0..channels)
                    .map(|_| rng.range(-40_000, 40_000) as i32)
                    .collect(),
            );
            (c.multipliers, c.shifts) = realistic_requant(&mut rng, channels);
            let mut out = std::vec![0i8; c.d.output_elements()];
            assert!(conv2d_s8_dsp(
                &c.p,
                c.d,
                &c.input,
                &c.filter,
                c.bias.as_deref(),
                &c.multipliers,
                &c.shifts,
                &mut out
            ));
            assert_eq!(out, conv_reference(&c), "{:?}", c.d);

            let mut w = depthwise_case(&mut rng);
            w.d.in_c = channels;
            w.d.out_c = channels;
            w.input = rng.vec_i8(w.d.batches * w.d.in_h * w.d.in_w * channels);
            w.filter = rng.vec_i8(w.d.filter_h * w.d.filter_w * channels);
            w.bias = None;
            (w.multipliers, w.shifts) = realistic_requant(&mut rng, channels);
            let mut out = std::vec![0i8; w.d.output_elements()];
            assert!(depthwise_conv2d_s8_dsp(
                &w.p,
                w.d,
                &w.input,
                &w.filter,
                None,
                &w.multipliers,
                &w.shifts,
                &mut out
            ));
            assert_eq!(out, depthwise_reference(&w), "{:?}", w.d);
        }
    }

    #[test]
    fn declines_grouped_convolution() {
        let mut rng = Rng(3);
        let mut c = conv_case(&mut rng);
        c.d.filter_in_c = c.d.in_c + 1;
        let mut out = std::vec![0i8; c.d.output_elements()];
        assert!(!conv2d_s8_dsp(
            &c.p,
            c.d,
            &c.input,
            &c.filter,
            None,
            &c.multipliers,
            &c.shifts,
            &mut out
        ));
    }
}

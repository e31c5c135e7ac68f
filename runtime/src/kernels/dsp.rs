//! Faster int8 kernels in the style of Cortex-M's DSP extension (SXTB16, SXTAB16, SMLAD).
//!
//! On `thumbv7em` (`target_feature = "dsp"`) the [`simd`] shim emits the real instructions;
//! everywhere else it is a bit-exact Rust emulation, so the host tests hold every kernel here
//! to its scalar reference (`kernel_variants_match_reference!`) and the device runs the same
//! algorithm. Cores without the extension (Cortex-M0+, `thumbv6m`) keep the scalar references:
//! the dispatch in each op's `eval` only picks these kernels where [`ENABLED`] is true.
//!
//! The arithmetic is integer throughout, so summation order does not matter (wrapping `i32`
//! addition is associative): results equal the references bit for bit. Each kernel returns
//! `false` when a shape is outside what it handles (grouped convolution, a filter window larger
//! than its stack buffers, depth multiplier other than 1, ...) and the caller runs the reference.
//!
//! Techniques (the ones CMSIS-NN uses, written anew here):
//! - read 4 int8 at a time with unaligned `u32` loads and widen them to two pairs of `i16` with
//!   `SXTB16` / `SXTB16 ROR #8`; the input offset is added in the same instruction (`SXTAB16`),
//!   so `x + input_offset` costs nothing;
//! - `SMLAD` multiplies two pairs and accumulates: 2 MACs per instruction;
//! - convolution as a GEMM over 2 output pixels x 2 output channels, so each widened input word
//!   feeds two channels and each widened filter word two pixels; a filter window that is not
//!   1x1 is gathered per pixel into a stack buffer (padding filled with the input zero point,
//!   which contributes `0` after the offset is added, as TFLite's skipped taps do);
//! - requantization of TFLite's double rounding with one 64-bit multiply-add
//!   ([`Requantizer`]).

use crate::quant::multiply_by_quantized_multiplier_single_rounding;

use super::conv::{per_channel, tap, Conv2dS8, SpatialDims};
use super::depthwise::DepthwiseConv2dS8;
use super::fully_connected::{FcDims, FullyConnectedS8};

/// Whether `eval` uses these kernels on this target: on cores with the DSP extension and on
/// non-ARM hosts; not on ARM cores without it (Cortex-M0+/M3), which keep the references.
pub const ENABLED: bool = cfg!(any(target_feature = "dsp", not(target_arch = "arm")));

/// Largest filter window (`kh * kw * in_c`) the convolution gathers on the stack (2 pixels).
pub const CONV_PATCH_MAX: usize = 512;
/// Largest channel count the depthwise kernel handles (its padding row lives on the stack).
pub const DEPTHWISE_CHANNELS_MAX: usize = 512;
/// Largest depthwise filter window (`kh * kw`).
pub const DEPTHWISE_TAPS_MAX: usize = 64;

/// Cortex-M DSP instructions: real ones on `thumbv7em`, bit-exact emulations elsewhere.
pub mod simd {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    mod imp {
        use core::arch::asm;

        macro_rules! unary {
            ($name:ident, $insn:literal) => {
                #[inline(always)]
                pub fn $name(x: u32) -> u32 {
                    let r: u32;
                    // SAFETY: a register-only instruction.
                    unsafe {
                        asm!($insn, r = lateout(reg) r, x = in(reg) x,
                             options(pure, nomem, nostack, preserves_flags));
                    }
                    r
                }
            };
        }
        macro_rules! binary {
            ($name:ident, $insn:literal) => {
                #[inline(always)]
                pub fn $name(a: u32, x: u32) -> u32 {
                    let r: u32;
                    // SAFETY: a register-only instruction.
                    unsafe {
                        asm!($insn, r = lateout(reg) r, a = in(reg) a, x = in(reg) x,
                             options(pure, nomem, nostack, preserves_flags));
                    }
                    r
                }
            };
        }
        macro_rules! mac {
            ($name:ident, $insn:literal) => {
                #[inline(always)]
                pub fn $name(a: u32, b: u32, acc: i32) -> i32 {
                    let r: i32;
                    // SAFETY: a register-only instruction (it may set the sticky Q flag, which
                    // nothing reads).
                    unsafe {
                        asm!($insn, r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                             acc = in(reg) acc, options(pure, nomem, nostack));
                    }
                    r
                }
            };
        }
        unary!(sxtb16, "sxtb16 {r}, {x}");
        unary!(sxtb16_ror8, "sxtb16 {r}, {x}, ror #8");
        binary!(sxtab16, "sxtab16 {r}, {a}, {x}");
        binary!(sxtab16_ror8, "sxtab16 {r}, {a}, {x}, ror #8");
        mac!(smlad, "smlad {r}, {a}, {b}, {acc}");
        mac!(smlabb, "smlabb {r}, {a}, {b}, {acc}");
        mac!(smlatt, "smlatt {r}, {a}, {b}, {acc}");
    }

    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    mod imp {
        #[inline(always)]
        fn lanes(x: u32) -> (i32, i32) {
            (x as u16 as i16 as i32, (x >> 16) as u16 as i16 as i32)
        }

        #[inline(always)]
        fn pack(lo: i32, hi: i32) -> u32 {
            (lo as u32 & 0xffff) | ((hi as u32) << 16)
        }

        /// Bytes 0 and 2 of `x`, sign-extended into the low and high halfwords.
        #[inline(always)]
        pub fn sxtb16(x: u32) -> u32 {
            pack(x as u8 as i8 as i32, (x >> 16) as u8 as i8 as i32)
        }

        /// Bytes 1 and 3 of `x`, sign-extended into the low and high halfwords.
        #[inline(always)]
        pub fn sxtb16_ror8(x: u32) -> u32 {
            sxtb16(x.rotate_right(8))
        }

        /// `a + sxtb16(x)`, halfword by halfword (each lane wraps in 16 bits).
        #[inline(always)]
        pub fn sxtab16(a: u32, x: u32) -> u32 {
            let (a_lo, a_hi) = lanes(a);
            let (x_lo, x_hi) = lanes(sxtb16(x));
            pack(a_lo.wrapping_add(x_lo), a_hi.wrapping_add(x_hi))
        }

        #[inline(always)]
        pub fn sxtab16_ror8(a: u32, x: u32) -> u32 {
            sxtab16(a, x.rotate_right(8))
        }

        /// `acc + a.lo * b.lo + a.hi * b.hi` (wrapping).
        #[inline(always)]
        pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
            let (a_lo, a_hi) = lanes(a);
            let (b_lo, b_hi) = lanes(b);
            acc.wrapping_add(a_lo * b_lo).wrapping_add(a_hi * b_hi)
        }

        /// `acc + a.lo * b.lo` (wrapping).
        #[inline(always)]
        pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
            acc.wrapping_add(lanes(a).0 * lanes(b).0)
        }

        /// `acc + a.hi * b.hi` (wrapping).
        #[inline(always)]
        pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
            acc.wrapping_add(lanes(a).1 * lanes(b).1)
        }
    }

    pub use imp::*;

    /// Two copies of `v` as halfwords, the second operand of `SXTAB16` for an offset.
    #[inline(always)]
    pub fn splat16(v: i32) -> u32 {
        (v as u32 & 0xffff) | ((v as u32) << 16)
    }

    /// Four bytes at `p`, any alignment.
    ///
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn read_u32(p: *const i8) -> u32 {
        // SAFETY: the caller guarantees 4 readable bytes; `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(p as *const u32) }
    }
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding) for one channel, with the shift
/// split once into its left and right parts.
///
/// `SaturatingRoundingDoublingHighMul(a, m)` is `(a * m + 2^30) >> 31` (arithmetic shift) for
/// every `a, m` except `a = m = i32::MIN`: for a negative product the reference's nudge
/// `1 - 2^30` and truncating division give the same floor. [`Requantizer::new`] refuses
/// `m = i32::MIN`, so the saturating case never arises.
#[derive(Debug, Clone, Copy)]
pub struct Requantizer {
    multiplier: i32,
    left_shift: u32,
    right_shift: u32,
    /// `(1 << right_shift) - 1`.
    mask: i32,
}

impl Requantizer {
    /// `None` when the multiplier is `i32::MIN` or the shift is outside TFLite's `-31..=30`.
    #[inline(always)]
    pub fn new(multiplier: i32, shift: i32) -> Option<Self> {
        if multiplier == i32::MIN || !(-31..=30).contains(&shift) {
            return None;
        }
        let left_shift = shift.max(0) as u32;
        let right_shift = (-shift).max(0) as u32;
        Some(Requantizer {
            multiplier,
            left_shift,
            right_shift,
            mask: ((1u64 << right_shift) - 1) as i32,
        })
    }

    /// Equals `multiply_by_quantized_multiplier(acc, multiplier, shift)`.
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i32 {
        let x = acc.wrapping_shl(self.left_shift);
        let high = ((x as i64 * self.multiplier as i64 + (1 << 30)) >> 31) as i32;
        // RoundingDivideByPOT: round half away from zero.
        let remainder = high & self.mask;
        let threshold = (self.mask >> 1) + ((high >> 31) & 1);
        (high >> self.right_shift) + (remainder > threshold) as i32
    }
}

/// Every per-channel requantizer valid (`None` otherwise).
fn requantizers_ok(multipliers: &[i32], shifts: &[i32]) -> bool {
    multipliers.len() == shifts.len()
        && multipliers
            .iter()
            .zip(shifts)
            .all(|(&m, &s)| Requantizer::new(m, s).is_some())
}

#[inline(always)]
fn requantizer(multipliers: &[i32], shifts: &[i32], c: usize) -> Requantizer {
    // Checked by `requantizers_ok` before any kernel loop runs.
    Requantizer::new(per_channel(multipliers, c), per_channel(shifts, c)).unwrap_or(Requantizer {
        multiplier: 0,
        left_shift: 0,
        right_shift: 0,
        mask: 0,
    })
}

/// Output channels whose bias and requantizer are prepared at once (a stack array), so the
/// per-output work is one inline requantization.
const CHANNEL_CHUNK: usize = 64;

/// Bias and requantizer of each channel in `start..start + CHANNEL_CHUNK` (clipped to `channels`).
fn channel_params(
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    start: usize,
    channels: usize,
) -> [(i32, Requantizer); CHANNEL_CHUNK] {
    let mut params = [(0, requantizer(multipliers, shifts, 0)); CHANNEL_CHUNK];
    for (i, slot) in params
        .iter_mut()
        .enumerate()
        .take(channels.saturating_sub(start))
    {
        let c = start + i;
        *slot = (
            bias.map_or(0, |b| b[c]),
            requantizer(multipliers, shifts, c),
        );
    }
    params
}

#[inline(always)]
fn finish(acc: i32, r: Requantizer, output_offset: i32, act_min: i32, act_max: i32) -> i8 {
    r.apply(acc)
        .wrapping_add(output_offset)
        .clamp(act_min, act_max) as i8
}

/// Widens the first `groups * 4` values of two gathered windows into `wide`, with `offset`
/// (packed by [`simd::splat16`]) added, interleaved per group of 4 values as
/// `[x0 lanes 0/2, x0 lanes 1/3, x1 lanes 0/2, x1 lanes 1/3]`: the order `SXTB16` /
/// `SXTB16 ROR #8` give a filter word, so one pass widens what every output channel reuses.
#[inline(always)]
fn widen_pair(x0: &[i8], x1: &[i8], groups: usize, offset: u32, wide: &mut [u32]) {
    use simd::*;
    for ((a, b), out) in x0
        .chunks_exact(4)
        .zip(x1.chunks_exact(4))
        .zip(wide.chunks_exact_mut(4))
        .take(groups)
    {
        let a = u32::from_le_bytes([a[0] as u8, a[1] as u8, a[2] as u8, a[3] as u8]);
        let b = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        out[0] = sxtab16(offset, a);
        out[1] = sxtab16_ror8(offset, a);
        out[2] = sxtab16(offset, b);
        out[3] = sxtab16_ror8(offset, b);
    }
}

/// `[x0.w0, x0.w1, x1.w0, x1.w1]` over `groups * 4` values from a window pair widened by
/// [`widen_pair`] and two filter rows.
///
/// # Safety
/// `wide` must point to `groups * 4` readable words, `w0` and `w1` to `groups * 4` bytes each.
#[inline(always)]
unsafe fn dot_2x2_wide(wide: *const u32, w0: *const i8, w1: *const i8, groups: usize) -> [i32; 4] {
    use simd::*;
    let (mut a00, mut a01, mut a10, mut a11) = (0i32, 0i32, 0i32, 0i32);
    let (mut x, mut w0, mut w1) = (wide, w0, w1);
    // SAFETY (whole block): every read stays within the bounds the caller guarantees.
    unsafe {
        let end = x.add(groups * 4);
        while x != end {
            let a02 = *x;
            let a13 = *x.add(1);
            let b02 = *x.add(2);
            let b13 = *x.add(3);
            x = x.add(4);
            let f = read_u32(w0);
            w0 = w0.add(4);
            let f02 = sxtb16(f);
            let f13 = sxtb16_ror8(f);
            a00 = smlad(a02, f02, a00);
            a00 = smlad(a13, f13, a00);
            a10 = smlad(b02, f02, a10);
            a10 = smlad(b13, f13, a10);
            let g = read_u32(w1);
            w1 = w1.add(4);
            let g02 = sxtb16(g);
            let g13 = sxtb16_ror8(g);
            a01 = smlad(a02, g02, a01);
            a01 = smlad(a13, g13, a01);
            a11 = smlad(b02, g02, a11);
            a11 = smlad(b13, g13, a11);
        }
    }
    [a00, a01, a10, a11]
}

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

/// [`Conv2dS8`] as a GEMM over 2 pixels x 2 output channels. Same arguments as
/// [`super::conv::conv2d_s8_reference`]; `false` (output untouched) when the shape is not
/// handled here: grouped convolution, a window over [`CONV_PATCH_MAX`] values, inconsistent
/// lengths or an invalid requantizer.
#[allow(clippy::too_many_arguments)]
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
        || !requantizers_ok(multipliers, shifts)
    {
        return false;
    }
    let offset = simd::splat16(p.input_offset);
    let lane_offset = p.input_offset;
    let pad_value = (-p.input_offset) as i8;
    let groups = depth / 4;
    let tail = groups * 4;
    // Two gathered windows, the second `CONV_PATCH_MAX` after the first, and both widened.
    let mut patches = [0i8; 2 * CONV_PATCH_MAX];
    let mut wide = [0u32; CONV_PATCH_MAX];
    let store = |acc: i32, (bias, r): (i32, Requantizer)| {
        finish(
            acc.wrapping_add(bias),
            r,
            p.output_offset,
            p.act_min,
            p.act_max,
        )
    };
    for chunk in (0..d.out_c).step_by(CHANNEL_CHUNK) {
        let chunk_end = (chunk + CHANNEL_CHUNK).min(d.out_c);
        let params = channel_params(bias, multipliers, shifts, chunk, d.out_c);
        let mut pixel = 0;
        while pixel < pixels {
            let second = pixel + 1 < pixels;
            let (patch0, patch1) = patches.split_at_mut(CONV_PATCH_MAX);
            if gather_patch(p, &d, input, pixel, patch0, pad_value).is_none()
                || (second && gather_patch(p, &d, input, pixel + 1, patch1, pad_value).is_none())
            {
                return false;
            }
            // Without a second pixel, `patch1` holds stale values whose sums are discarded.
            widen_pair(patch0, patch1, groups, offset, &mut wide);
            let out0 = pixel * d.out_c;
            let out1 = out0 + d.out_c;
            let mut c = chunk;
            while c < chunk_end {
                let c1 = if c + 1 < chunk_end { c + 1 } else { c };
                let (row0, row1) = (c * depth, c1 * depth);
                // SAFETY: `wide` holds `groups * 4 <= CONV_PATCH_MAX` words and the filter
                // `out_c * depth` values (checked above).
                let [mut a00, mut a01, mut a10, mut a11] = unsafe {
                    dot_2x2_wide(
                        wide.as_ptr(),
                        filter.as_ptr().add(row0),
                        filter.as_ptr().add(row1),
                        groups,
                    )
                };
                for k in tail..depth {
                    let x0 = patch0[k] as i32 + lane_offset;
                    let x1 = patch1[k] as i32 + lane_offset;
                    let (f0, f1) = (filter[row0 + k] as i32, filter[row1 + k] as i32);
                    a00 = a00.wrapping_add(x0 * f0);
                    a01 = a01.wrapping_add(x0 * f1);
                    a10 = a10.wrapping_add(x1 * f0);
                    a11 = a11.wrapping_add(x1 * f1);
                }
                let (p0, p1) = (params[c - chunk], params[c1 - chunk]);
                // SAFETY: `out0 + c1 < (pixel + 1) * out_c <= output.len()`, and with a
                // second pixel `out1 + c1 < (pixel + 2) * out_c <= output.len()` (checked above).
                unsafe {
                    *output.get_unchecked_mut(out0 + c) = store(a00, p0);
                    if second {
                        *output.get_unchecked_mut(out1 + c) = store(a10, p0);
                    }
                    if c1 != c {
                        *output.get_unchecked_mut(out0 + c1) = store(a01, p1);
                        if second {
                            *output.get_unchecked_mut(out1 + c1) = store(a11, p1);
                        }
                    }
                }
                c += 2;
            }
            pixel += 2;
        }
    }
    true
}

/// [`DepthwiseConv2dS8`] with depth multiplier 1: 4 channels per step of one output pixel
/// (two pixels at once need more registers than a Cortex-M4 has and spill). Taps in the padding read a row of input zero
/// points (which adds `0`). Same arguments as [`super::depthwise::depthwise_conv2d_s8_reference`];
/// `false` when the shape is not handled here.
#[allow(clippy::too_many_arguments)]
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
    if d.out_c != channels
        || channels > DEPTHWISE_CHANNELS_MAX
        || taps > DEPTHWISE_TAPS_MAX
        || !(-127..=128).contains(&p.input_offset)
        || input.len() < d.batches * d.in_h * d.in_w * channels
        || filter.len() < taps * channels
        || output.len() < d.batches * d.out_h * d.out_w * channels
        || bias.is_some_and(|b| b.len() < channels)
        || !requantizers_ok(multipliers, shifts)
    {
        return false;
    }
    use simd::*;
    let w = p.window;
    let offset = splat16(p.input_offset);
    let lane_offset = p.input_offset;
    // Padding taps read this row: `zero_point + input_offset = 0`.
    let pad_row = [(-p.input_offset) as i8; DEPTHWISE_CHANNELS_MAX + 4];
    let mut rows = [pad_row.as_ptr(); DEPTHWISE_TAPS_MAX];
    let fill_rows = |rows: &mut [*const i8; DEPTHWISE_TAPS_MAX], b: usize, y: usize, x: usize| {
        let mut t = 0;
        for fy in 0..d.filter_h {
            let in_y = tap(y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h);
            for fx in 0..d.filter_w {
                let in_x = tap(x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w);
                rows[t] = match (in_y, in_x) {
                    // SAFETY: an in-image pixel: its `channels` values lie inside `input`.
                    (Some(in_y), Some(in_x)) => unsafe {
                        input.as_ptr().add(d.input_index(b, in_y, in_x, 0))
                    },
                    _ => pad_row.as_ptr(),
                };
                t += 1;
            }
        }
    };
    let store = |acc: i32, (bias, r): (i32, Requantizer)| {
        finish(
            acc.wrapping_add(bias),
            r,
            p.output_offset,
            p.act_min,
            p.act_max,
        )
    };
    for chunk in (0..channels).step_by(CHANNEL_CHUNK) {
        let chunk_end = (chunk + CHANNEL_CHUNK).min(channels);
        let params = channel_params(bias, multipliers, shifts, chunk, channels);
        // CHANNEL_CHUNK is a multiple of 4, so only the last chunk has a scalar tail.
        let vector_end = chunk + ((chunk_end - chunk) & !3);
        for b in 0..d.batches {
            for out_y in 0..d.out_h {
                for out_x in 0..d.out_w {
                    fill_rows(&mut rows, b, out_y, out_x);
                    let out_at = d.output_index(b, out_y, out_x, 0);
                    let mut c = chunk;
                    while c < vector_end {
                        let mut acc = [0i32; 4];
                        let mut f_at = c;
                        for row in &rows[..taps] {
                            // SAFETY: every row pointer addresses `channels` readable values (an
                            // input pixel or the padding row) and `c + 4 <= channels`; the filter
                            // holds `taps * channels` values.
                            let (x, f) = unsafe {
                                (read_u32(row.add(c)), read_u32(filter.as_ptr().add(f_at)))
                            };
                            let f02 = sxtb16(f);
                            let f13 = sxtb16_ror8(f);
                            let a02 = sxtab16(offset, x);
                            let a13 = sxtab16_ror8(offset, x);
                            acc[0] = smlabb(a02, f02, acc[0]);
                            acc[2] = smlatt(a02, f02, acc[2]);
                            acc[1] = smlabb(a13, f13, acc[1]);
                            acc[3] = smlatt(a13, f13, acc[3]);
                            f_at += channels;
                        }
                        for (lane, &a) in acc.iter().enumerate() {
                            output[out_at + c + lane] = store(a, params[c - chunk + lane]);
                        }
                        c += 4;
                    }
                    while c < chunk_end {
                        let mut acc = 0i32;
                        for (t, row) in rows[..taps].iter().enumerate() {
                            // SAFETY: as above, one value at channel `c < channels`.
                            let x = unsafe { *row.add(c) };
                            let f = filter[t * channels + c] as i32;
                            acc = acc.wrapping_add(f * (x as i32 + lane_offset));
                        }
                        output[out_at + c] = store(acc, params[c - chunk]);
                        c += 1;
                    }
                }
            }
        }
    }
    true
}

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
    use crate::kernels::conv::conv2d_s8_reference;
    use crate::kernels::depthwise::depthwise_conv2d_s8_reference;
    use crate::kernels::fully_connected::fully_connected_s8_reference;
    use crate::kernels::testing::Rng;
    use crate::kernels::{Requant, Window};
    use crate::quant::{multiply_by_quantized_multiplier, quantize_multiplier};
    use crate::tensor::{DType, Location, Shape, TensorDef};

    fn def() -> TensorDef {
        TensorDef {
            dtype: DType::I8,
            shape: Shape::new(&[1]).unwrap(),
            location: Location::Arena(0),
            quant: None,
        }
    }

    #[test]
    fn simd_emulation_matches_instruction_semantics() {
        use simd::*;
        assert_eq!(sxtb16(0x80_7f_01_ff), 0x007f_ffff);
        assert_eq!(sxtb16_ror8(0x80_7f_01_ff), 0xff80_0001);
        assert_eq!(sxtab16(splat16(128), 0x80_00_7f_80), 0x0080_0000);
        assert_eq!(sxtab16_ror8(splat16(-1), 0x7f_00_80_00), 0x007e_ff7f);
        assert_eq!(smlad(splat16(-3), splat16(5), 100), 70);
        assert_eq!(smlabb(0x0002_0003, 0x0004_fffe, 1), -5);
        assert_eq!(smlatt(0x0002_0003, 0xfffc_0005, 1), -7);
    }

    #[test]
    fn requantizer_matches_double_rounding() {
        let mut rng = Rng(11);
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
                edges[(i / 11) % edges.len()].max(i32::MIN + 1)
            } else {
                rng.next_u64() as i32
            };
            let shift = rng.range(-31, 30) as i32;
            let r = Requantizer::new(multiplier, shift).unwrap();
            assert_eq!(
                r.apply(acc),
                multiply_by_quantized_multiplier(acc, multiplier, shift),
                "acc {acc} multiplier {multiplier} shift {shift}"
            );
        }
        assert!(Requantizer::new(i32::MIN, 0).is_none());
        assert!(Requantizer::new(1 << 30, 31).is_none());
    }

    /// Requantization arrays: one entry or one per channel, realistic scales and some extremes.
    fn random_requant(rng: &mut Rng, channels: usize) -> (Vec<i32>, Vec<i32>) {
        let n = if rng.range(0, 3) == 0 { 1 } else { channels };
        (0..n)
            .map(|_| match rng.range(0, 9) {
                0 => (
                    (rng.next_u64() as i32 & i32::MAX) | 1 << 30,
                    rng.range(-31, 30) as i32,
                ),
                _ => quantize_multiplier(rng.f32(0.0001, 3.0) as f64),
            })
            .unzip()
    }

    fn random_act(rng: &mut Rng) -> (i32, i32) {
        match rng.range(0, 2) {
            0 => (-128, 127),
            1 => (rng.range(-128, 0) as i32, 127),
            _ => (rng.range(-128, 0) as i32, rng.range(1, 127) as i32),
        }
    }

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

    fn conv_dsp(c: &ConvCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        assert!(conv2d_s8_dsp(
            &c.p,
            c.d,
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
        conv2d_s8_dsp_matches_reference,
        cases = 600,
        setup = conv_case,
        reference = conv_reference,
        variants = [conv_dsp]
    );

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

    fn depthwise_dsp(c: &DepthwiseCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        let bias = c.bias.as_deref();
        assert!(depthwise_conv2d_s8_dsp(
            &c.p,
            c.d,
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
        depthwise_conv2d_s8_dsp_matches_reference,
        cases = 600,
        setup = depthwise_case,
        reference = depthwise_reference,
        variants = [depthwise_dsp]
    );

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

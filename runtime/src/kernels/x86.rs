//! x86-64 int8 kernels: AVX-512 (F/BW/VL/VNNI), AVX2 and SSE4.1, chosen at run time with
//! `is_x86_feature_detected!` under the `std` feature, from the compile-time target features
//! without it. The AVX-512 kernels live in submodules: `vnni` (FULLY_CONNECTED and CONV_2D with
//! `vpdpbusd` over weights a `PreparedModel` packs once; without packed weights these
//! operators run their AVX2 kernels) and `depthwise512` (DEPTHWISE_CONV_2D).
//!
//! Exactness: int8 values are sign-extended to int16 (`x + input_offset` fits: both are within
//! ±255, and so do FC weights plus their offset, within ±383), multiplied pairwise into int32 with
//! `madd_epi16` (|a*b + c*d| < 2^31, no saturation) and summed with wrapping int32 adds, which
//! equal the reference's wrapping sums in any order. Requantization is the same integer
//! arithmetic as [`crate::quant`]: AVX2 does TFLite's double rounding on 8 lanes (see
//! `requant_double_avx2` and `Requant8`, whose per-channel constants are worked out once
//! per call) and the FC's single rounding (see `requant_single_avx2`); SSE4.1 stays scalar per
//! output.
//!
//! Kernels (AVX2): CONV_2D over a filter packed once (kept per thread with `std`, see
//! `packed_cache`) and im2col rows copied from a zero-bordered int16 copy of the input;
//! DEPTHWISE_CONV_2D over widened input rows with two taps per `vpmaddwd`; FULLY_CONNECTED as
//! dot products of 8 rows; AVERAGE/MAX_POOL_2D. Shapes a kernel does not take fall back to the
//! previous kernel or to the reference.

// Every `unsafe fn` here is a SIMD body whose whole contract is "the CPU has the feature and the
// slices are as long as the geometry says", checked once at the safe entry points; wrapping each
// intrinsic call again would add noise, not safety.
#![allow(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::conv::{per_channel, tap, Conv2dS8, SpatialDims};
use super::depthwise::DepthwiseConv2dS8;
use super::fully_connected::{FcDims, FullyConnectedS8};
use super::host_simd::{conv_patch_len, depthwise_ok, fc_ok, gather_patch, S8Operands, MAX_PATCH};
use super::packed::Packed;
use super::pooling::{filter_range, Pool2dS8, PoolKind};
use crate::quant::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_rounding,
};

#[cfg(feature = "std")]
pub mod vnni;

mod depthwise512;

/// Instruction set a variant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`): Ice Lake, Zen 4 and later. Kernels that have no
    /// AVX-512 variant run their AVX2 one.
    Avx512,
    Avx2,
    Sse41,
    /// No SIMD variant: callers use the reference.
    Scalar,
}

/// The best instruction set this CPU (or, without `std`, this build) supports.
#[inline]
pub fn best() -> Isa {
    #[cfg(feature = "std")]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        // Asked once per kernel call: one load instead of five feature lookups.
        static BEST: AtomicU8 = AtomicU8::new(u8::MAX);
        const ISAS: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Sse41, Isa::Scalar];
        if let Some(&isa) = ISAS.get(BEST.load(Ordering::Relaxed) as usize) {
            return isa;
        }
        let isa = detect();
        BEST.store(
            ISAS.iter().position(|&i| i == isa).unwrap_or(3) as u8,
            Ordering::Relaxed,
        );
        isa
    }
    #[cfg(not(feature = "std"))]
    {
        detect()
    }
}

/// [`best`] without its cache.
fn detect() -> Isa {
    #[cfg(feature = "std")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx2")
        {
            Isa::Avx512
        } else if std::is_x86_feature_detected!("avx2") {
            Isa::Avx2
        } else if std::is_x86_feature_detected!("sse4.1") {
            Isa::Sse41
        } else {
            Isa::Scalar
        }
    }
    #[cfg(not(feature = "std"))]
    {
        if cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni",
            target_feature = "avx2"
        )) {
            Isa::Avx512
        } else if cfg!(target_feature = "avx2") {
            Isa::Avx2
        } else if cfg!(target_feature = "sse4.1") {
            Isa::Sse41
        } else {
            Isa::Scalar
        }
    }
}

/// `true` when `isa` can run here (so tests can ask for a variant the CPU lacks and skip it).
pub fn supported(isa: Isa) -> bool {
    match (isa, best()) {
        (Isa::Scalar, _) => false,
        (Isa::Avx512, Isa::Avx512) => true,
        (Isa::Avx2, Isa::Avx512 | Isa::Avx2) => true,
        (Isa::Sse41, Isa::Avx512 | Isa::Avx2 | Isa::Sse41) => true,
        _ => false,
    }
}

/// Reference requantization of one convolution accumulator (double rounding).
#[inline(always)]
fn requant_conv_scalar(acc: i32, m: i32, s: i32, out_offset: i32, lo: i32, hi: i32) -> i8 {
    multiply_by_quantized_multiplier(acc, m, s)
        .wrapping_add(out_offset)
        .clamp(lo, hi) as i8
}

/// CONV_2D int8 over packed weights (AVX-512 VNNI); `false` when they do not fit the
/// operator or the CPU lacks the instructions.
#[allow(unused_variables)]
pub fn conv2d_s8_packed(
    p: &Conv2dS8,
    d: SpatialDims,
    input: &[i8],
    output: &mut [i8],
    packed: &Packed,
) -> bool {
    #[cfg(not(feature = "std"))]
    match *packed {}
    #[cfg(feature = "std")]
    {
        let Packed::Vnni(w) = packed;
        let input_len = d
            .batches
            .checked_mul(d.in_h)
            .and_then(|n| n.checked_mul(d.in_w)?.checked_mul(d.in_c));
        let patch = d
            .filter_h
            .checked_mul(d.filter_w)
            .and_then(|n| n.checked_mul(d.in_c));
        // SAFETY: AVX-512 checked; the kernel reads `input_len` input values and writes
        // `output_elements` outputs, both checked here, and its im2col rows hold `MAX_PATCH`.
        input_len <= Some(input.len())
            && d.output_elements() <= output.len()
            && patch <= Some(MAX_PATCH)
            && best() == Isa::Avx512
            && unsafe { vnni::conv2d_s8(p, &d, input, output, w) }
    }
}

/// CONV_2D int8 with `isa`; `false` when it does not apply.
pub fn conv2d_s8(
    p: &Conv2dS8,
    d: SpatialDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
    isa: Isa,
) -> bool {
    let Some(k) = conv_patch_len(&d, &ops, output) else {
        return false;
    };
    if !supported(isa) {
        return false;
    }
    // SAFETY: `supported` checked the CPU feature; `conv_patch_len` checked every slice length
    // the kernels index (patch <= MAX_PATCH, filter >= out_c * k, input and output sizes).
    unsafe {
        match isa {
            Isa::Avx512 | Isa::Avx2 => conv2d_s8_avx2(p, &d, &ops, output, k),
            _ => conv2d_s8_sse41(p, &d, &ops, output, k),
        }
    }
    true
}

/// DEPTHWISE_CONV_2D int8 (depth multiplier 1) with `isa`; `false` when it does not apply.
pub fn depthwise_conv2d_s8(
    p: &DepthwiseConv2dS8,
    d: SpatialDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
    isa: Isa,
) -> bool {
    if !depthwise_ok(&d, &ops, output) || !supported(isa) {
        return false;
    }
    // SAFETY: feature checked; `depthwise_ok` checked the slice lengths.
    unsafe {
        match isa {
            Isa::Avx512 if depthwise512::depthwise_s8_avx512(p, &d, &ops, output) => {}
            Isa::Avx512 | Isa::Avx2 if depthwise_s8_avx2_rows(p, &d, &ops, output) => {}
            Isa::Avx512 | Isa::Avx2 if d.filter_h * d.filter_w <= MAX_DEPTHWISE_TAPS => {
                depthwise_s8_avx2(p, &d, &ops, output)
            }
            _ => depthwise_s8_sse41(p, &d, &ops, output),
        }
    }
    true
}

/// FULLY_CONNECTED int8 over packed weights (AVX-512 VNNI); `false` when they do not fit
/// the operator or the CPU lacks the instructions.
#[allow(unused_variables)]
pub fn fully_connected_s8_packed(
    p: &FullyConnectedS8,
    dims: FcDims,
    input: &[i8],
    output: &mut [i8],
    packed: &Packed,
) -> bool {
    // The packed weights carry their own checked per-channel constants: only the activations'
    // lengths are left to check (per operator, so cheap checks matter on small layers).
    #[cfg(not(feature = "std"))]
    match *packed {}
    #[cfg(feature = "std")]
    {
        let Packed::Vnni(w) = packed;
        let input_ok = dims.batches.checked_mul(dims.accum_depth) <= Some(input.len());
        let output_ok = dims.batches.checked_mul(dims.output_depth) <= Some(output.len());
        // SAFETY: AVX-512 checked; input and output lengths checked above, the depth against
        // the kernel's row buffer.
        input_ok
            && output_ok
            && dims.accum_depth <= MAX_PATCH
            && best() == Isa::Avx512
            && unsafe { vnni::fully_connected_s8(p, &dims, input, output, w) }
    }
}

/// FULLY_CONNECTED int8 with `isa`; `false` when it does not apply.
pub fn fully_connected_s8(
    p: &FullyConnectedS8,
    dims: FcDims,
    ops: S8Operands<'_>,
    output: &mut [i8],
    isa: Isa,
) -> bool {
    if !fc_ok(&dims, &ops, output) || !supported(isa) {
        return false;
    }
    // SAFETY: feature checked; `fc_ok` checked the slice lengths.
    unsafe {
        match isa {
            Isa::Avx512 | Isa::Avx2 => fully_connected_s8_avx2(p, &dims, &ops, output),
            _ => fully_connected_s8_sse41(p, &dims, &ops, output),
        }
    }
    true
}

/// AVERAGE_POOL_2D / MAX_POOL_2D int8 with AVX2 (the other instruction sets use the
/// reference); `false` when it does not apply.
pub fn pool2d_s8(p: &Pool2dS8, d: SpatialDims, input: &[i8], output: &mut [i8], isa: Isa) -> bool {
    let input_len = d.batches * d.in_h * d.in_w * d.in_c;
    if !matches!(isa, Isa::Avx512 | Isa::Avx2)
        || !supported(isa)
        || d.in_c != d.out_c
        || input.len() < input_len
        || output.len() < d.output_elements()
    {
        return false;
    }
    // SAFETY: AVX2 checked; the slice lengths were checked against the geometry above.
    unsafe { pool2d_s8_avx2(p, &d, input, output) }
}

// ---------------------------------------------------------------------------------------------
// AVX2

/// Sums each of 8 vectors across its lanes: lane `r` of the result is the sum of `acc[r]`.
#[inline(always)]
unsafe fn hsum8_avx2(acc: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(acc[0], acc[1]);
    let h23 = _mm256_hadd_epi32(acc[2], acc[3]);
    let h45 = _mm256_hadd_epi32(acc[4], acc[5]);
    let h67 = _mm256_hadd_epi32(acc[6], acc[7]);
    let q0 = _mm256_hadd_epi32(h01, h23);
    let q1 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256(q0, q1, 0x20),
        _mm256_permute2x128_si256(q0, q1, 0x31),
    )
}

/// Pixels per register block of the AVX2 convolution (each loaded weight vector is used this
/// many times).
const CONV_PIXELS: usize = 3;
/// Output channels per register block of the AVX2 convolution (3 x 4 accumulators plus 4
/// weight vectors fill the 16 ymm registers).
const CONV_ROWS: usize = 4;
/// Output channels whose accumulators are buffered before requantization.
const CONV_CHUNK: usize = 256;

/// Rounds a patch length up to whole 16-lane steps; the patch buffers are zero past the patch,
/// so the extra filter bytes read there add nothing.
#[inline(always)]
fn padded_len(k: usize) -> usize {
    (k + 15) & !15
}

/// Zeroes the first `len` (at most `N`) elements of an uninitialized buffer and returns them:
/// the kernels run once per operator, and clearing whole `MAX_PATCH` buffers every time costs
/// more than a small layer's arithmetic.
#[inline(always)]
fn zeroed_prefix<T: bytemuck::Zeroable, const N: usize>(
    buf: &mut MaybeUninit<[T; N]>,
    len: usize,
) -> &mut [T] {
    let len = len.min(N);
    let first = buf.as_mut_ptr() as *mut T;
    // SAFETY: `len <= N` elements of the buffer are written with zero bytes, a valid value of
    // the `Zeroable` element type, before the slice over them is made.
    unsafe {
        core::ptr::write_bytes(first, 0, len);
        core::slice::from_raw_parts_mut(first, len)
    }
}

/// Filter rows the SIMD loops may read `kp` bytes from: rows near the end of the filter slice
/// would read past it, so those are copied into `spare` (zero padded) once per call.
struct FilterRows<'a> {
    filter: &'a [i8],
    k: usize,
    kp: usize,
    /// Rows `0..direct` are read in place.
    direct: usize,
    /// Rows `direct..` copied and zero padded to `kp` bytes each.
    spare: &'a [i8],
}

impl<'a> FilterRows<'a> {
    /// `filter.len() >= rows * k`, `k <= MAX_PATCH` (checked by the callers' `*_ok`).
    fn new(
        filter: &'a [i8],
        rows: usize,
        k: usize,
        spare_buf: &'a mut MaybeUninit<[i8; MAX_PATCH]>,
    ) -> Self {
        let kp = padded_len(k);
        let direct = if filter.len() >= kp {
            ((filter.len() - kp) / k + 1).min(rows)
        } else {
            0
        };
        // At most one row when k >= 16 (kp < 2k), at most 16 rows of 16 bytes below that: both
        // fit MAX_PATCH.
        let spare = zeroed_prefix(spare_buf, (rows - direct) * kp);
        for (r, dst) in (direct..rows).zip(spare.chunks_exact_mut(kp)) {
            dst[..k].copy_from_slice(&filter[r * k..r * k + k]);
        }
        FilterRows {
            filter,
            k,
            kp,
            direct,
            spare,
        }
    }

    /// Start of row `r`, readable for `kp` bytes.
    #[inline(always)]
    fn row(&self, r: usize) -> *const i8 {
        if r < self.direct {
            self.filter[r * self.k..].as_ptr()
        } else {
            self.spare[(r - self.direct) * self.kp..].as_ptr()
        }
    }
}

/// int32 dot products of `P` patches (`patches + px * stride`, int16, zero past the patch)
/// with `R` filter rows (int8, plus `fo` when `OFFSET`), over `kp` (a multiple of 16) lanes.
/// Result `[px][r]` holds 8 partial sums to add up.
///
/// Safety: AVX2; every patch readable for `kp` int16, every row for `kp` bytes.
#[inline(always)]
unsafe fn dot_block_avx2<const P: usize, const R: usize, const OFFSET: bool>(
    patches: *const i16,
    stride: usize,
    rows: [*const i8; R],
    kp: usize,
    fo: __m256i,
) -> [[__m256i; R]; P] {
    let mut acc = [[_mm256_setzero_si256(); R]; P];
    let mut i = 0;
    while i < kp {
        let mut w = [_mm256_setzero_si256(); R];
        for (wr, row) in w.iter_mut().zip(rows) {
            *wr = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.add(i) as *const __m128i));
            if OFFSET {
                *wr = _mm256_add_epi16(*wr, fo);
            }
        }
        for (px, acc_px) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_si256(patches.add(px * stride + i) as *const __m256i);
            for (a, &wr) in acc_px.iter_mut().zip(&w) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, wr));
            }
        }
        i += 16;
    }
    acc
}

/// Sums each of 4 vectors across its lanes: lane `r` of the result is the sum of `acc[r]`.
#[inline(always)]
unsafe fn hsum4_avx2(acc: &[__m256i; 4]) -> __m128i {
    let h01 = _mm256_hadd_epi32(acc[0], acc[1]);
    let h23 = _mm256_hadd_epi32(acc[2], acc[3]);
    let q = _mm256_hadd_epi32(h01, h23);
    _mm_add_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1))
}

/// Sum of the 8 lanes of `v`.
#[inline(always)]
unsafe fn hsum1_avx2(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Scalar dot product for leftover rows.
#[inline(always)]
fn dot_scalar(patch: &[i16], row: &[i8], fo: i32) -> i32 {
    patch.iter().zip(row).fold(0i32, |acc, (&x, &w)| {
        acc.wrapping_add(x as i32 * (w as i32 + fo))
    })
}

/// 8 per-channel values starting at `c` (or the single per-tensor value, broadcast).
#[inline(always)]
unsafe fn channel_vec_avx2(values: &[i32], c: usize) -> __m256i {
    if values.len() == 1 {
        _mm256_set1_epi32(values[0])
    } else {
        let lanes = &values[c..c + 8];
        _mm256_loadu_si256(lanes.as_ptr() as *const __m256i)
    }
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding) on 8 lanes.
///
/// `SaturatingRoundingDoublingHighMul(a, b)` adds `±2^30` and truncates toward zero, which
/// equals `floor((a*b + 2^30) / 2^31)` for every `a*b` (for negative products, truncation is a
/// ceiling, and `ceil((n + 1 - 2^30) / 2^31) = floor((n + 2^30) / 2^31)`); the only
/// saturating case, `a = b = i32::MIN`, is patched. `RoundingDivideByPOT` is done with the
/// same mask/threshold formula as the scalar code.
#[inline(always)]
unsafe fn requant_double_avx2(acc: __m256i, mult: __m256i, shift: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let left = _mm256_max_epi32(shift, zero);
    let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    let x = _mm256_sllv_epi32(acc, left);
    let round = _mm256_set1_epi64x(1 << 30);
    // Even lanes: bits 31..62 of the 64-bit sum land in the low half after >> 31.
    let even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, mult), round), 31);
    // Odd lanes: the same bits land in the high half after << 1.
    let odd_product = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32));
    let odd = _mm256_slli_epi64(_mm256_add_epi64(odd_product, round), 1);
    let mut high = _mm256_blend_epi32(even, odd, 0b1010_1010);
    let min = _mm256_set1_epi32(i32::MIN);
    let saturated = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(mult, min));
    high = _mm256_blendv_epi8(high, _mm256_set1_epi32(i32::MAX), saturated);
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let remainder = _mm256_and_si256(high, mask);
    // threshold = (mask >> 1) + (high < 0); the compare yields -1 for true.
    let threshold = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(zero, high));
    _mm256_sub_epi32(
        _mm256_srav_epi32(high, right),
        _mm256_cmpgt_epi32(remainder, threshold),
    )
}

/// Bias (if any), requantization, output offset and clamp for 8 channels from `c`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish8_avx2(
    mut acc: __m256i,
    ops: &S8Operands<'_>,
    c: usize,
    out_offset: __m256i,
    lo: __m256i,
    hi: __m256i,
) -> __m256i {
    if let Some(bias) = ops.bias {
        acc = _mm256_add_epi32(acc, channel_vec_avx2(&bias[c..c + 8], 0));
    }
    let v = requant_double_avx2(
        acc,
        channel_vec_avx2(ops.multipliers, c),
        channel_vec_avx2(ops.shifts, c),
    );
    _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, out_offset), lo), hi)
}

/// The per-channel constants of [`requant_double_avx2`] for 8 channels, worked out once and
/// applied to every pixel of a block (the shift masks, the odd-lane multiplier and the bias are
/// per channel, so recomputing them per pixel was a third of a requantization).
#[derive(Clone, Copy)]
struct Requant8 {
    bias: __m256i,
    mult: __m256i,
    /// The multiplier of odd lanes moved to the even positions `_mm256_mul_epi32` reads.
    mult_odd: __m256i,
    /// All ones in lanes whose multiplier is `i32::MIN` (the one saturating case).
    mult_min: __m256i,
    left: __m256i,
    right: __m256i,
    mask: __m256i,
    half_mask: __m256i,
    /// [`REQUANT_CLAMPED`] only: `2^30 + 2^(30 + right)` per even / odd channel (64-bit) and
    /// `right - 1`.
    round_even: __m256i,
    round_odd: __m256i,
    right_less_one: __m256i,
    /// [`REQUANT_FOLDED`] only: the clamped mode's constants plus `bias * m` and
    /// `out_offset * 2^(31 + right)` per even / odd channel (64-bit).
    folded_even: __m256i,
    folded_odd: __m256i,
    out_offset: __m256i,
    lo: __m256i,
    hi: __m256i,
    /// The clamp bounds as bytes, for [`REQUANT_FOLDED`]'s clamp after packing.
    lo_bytes: __m128i,
    hi_bytes: __m128i,
}

/// [`Requant8::apply`] modes: any multiplier and shift (TFLite's arithmetic step by step);
/// [`requant_mode`] has checked that no shift is a left shift and no multiplier is `i32::MIN`;
/// or, on top of that, that every shift is at least 1 to the right and the clamp's lower bound
/// is at or above the output offset (a fused ReLU).
const REQUANT_GENERAL: u8 = 0;
const REQUANT_PLAIN: u8 = 1;
const REQUANT_CLAMPED: u8 = 2;
/// [`REQUANT_CLAMPED`] where the bias and the output offset fit in its 64-bit rounding
/// constant: no int32 `acc + bias` can wrap (bounded accumulators) and no 64-bit sum can
/// overflow (shifts at most 22 to the right, `|out_offset| <= 255`); the clamp runs on the
/// packed bytes (see [`requant16`]).
const REQUANT_FOLDED: u8 = 3;

/// Largest right shift [`REQUANT_FOLDED`] takes: `255 * 2^(31 + 22) + 2^52 + 2^30` plus a
/// product below `2^62` stays below `2^63`.
const FOLDED_MAX_RIGHT: i32 = 22;

impl Requant8 {
    /// Constants of channels `c..c + 8` (per-channel arrays, or per-tensor values broadcast).
    ///
    /// Safety: AVX2; `c + 8` within the per-channel arrays of `ops`.
    #[inline(always)]
    unsafe fn new(ops: &S8Operands<'_>, c: usize, out_offset: i32, lo: i32, hi: i32) -> Self {
        let zero = _mm256_setzero_si256();
        let bias = match ops.bias {
            Some(bias) => channel_vec_avx2(&bias[c..c + 8], 0),
            None => zero,
        };
        let mult = channel_vec_avx2(ops.multipliers, c);
        let shift = channel_vec_avx2(ops.shifts, c);
        let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
        let one = _mm256_set1_epi32(1);
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
        let mult_odd = _mm256_srli_epi64(mult, 32);
        let right_even = _mm256_and_si256(right, _mm256_set1_epi64x(0xFFFF_FFFF));
        let right_odd = _mm256_srli_epi64(right, 32);
        let round_even = _mm256_add_epi64(
            _mm256_set1_epi64x(1 << 30),
            _mm256_sllv_epi64(_mm256_set1_epi64x(1 << 30), right_even),
        );
        let round_odd = _mm256_add_epi64(
            _mm256_set1_epi64x(1 << 30),
            _mm256_sllv_epi64(_mm256_set1_epi64x(1 << 30), right_odd),
        );
        // out_offset * 2^(31 + right): adds out_offset to the result of the final shift.
        let offset64 = _mm256_set1_epi64x(out_offset as i64);
        let thirty_one = _mm256_set1_epi64x(31);
        let folded_even = _mm256_add_epi64(
            _mm256_add_epi64(round_even, _mm256_mul_epi32(bias, mult)),
            _mm256_sllv_epi64(offset64, _mm256_add_epi64(right_even, thirty_one)),
        );
        let folded_odd = _mm256_add_epi64(
            _mm256_add_epi64(
                round_odd,
                _mm256_mul_epi32(_mm256_srli_epi64(bias, 32), mult_odd),
            ),
            _mm256_sllv_epi64(offset64, _mm256_add_epi64(right_odd, thirty_one)),
        );
        Requant8 {
            bias,
            mult,
            mult_odd,
            mult_min: _mm256_cmpeq_epi32(mult, _mm256_set1_epi32(i32::MIN)),
            left: _mm256_max_epi32(shift, zero),
            right,
            mask,
            half_mask: _mm256_srai_epi32(mask, 1),
            round_even,
            round_odd,
            right_less_one: _mm256_sub_epi32(right, one),
            folded_even,
            folded_odd,
            out_offset: _mm256_set1_epi32(out_offset),
            lo: _mm256_set1_epi32(lo),
            hi: _mm256_set1_epi32(hi),
            lo_bytes: _mm_set1_epi8(lo.clamp(-128, 127) as i8),
            hi_bytes: _mm_set1_epi8(hi.clamp(-128, 127) as i8),
        }
    }

    /// The constants of `a` (channels `c..c + 8`) and `b` (`c + 8..c + 16`) regrouped by
    /// 128-bit half: channels `[c..c + 4, c + 8..c + 12]` and `[c + 4..c + 8, c + 12..c + 16]`,
    /// the lane order of `unpacklo`/`unpackhi` (64-bit fields stay whole: halves move as units).
    #[inline(always)]
    unsafe fn lane_pair(a: &Requant8, b: &Requant8) -> [Requant8; 2] {
        let mut low = *a;
        let mut high = *b;
        macro_rules! regroup {
            ($($field:ident),*) => {$(
                low.$field = _mm256_permute2x128_si256(a.$field, b.$field, 0x20);
                high.$field = _mm256_permute2x128_si256(a.$field, b.$field, 0x31);
            )*};
        }
        regroup!(
            bias,
            mult,
            mult_odd,
            mult_min,
            left,
            right,
            mask,
            half_mask,
            round_even,
            round_odd,
            right_less_one,
            folded_even,
            folded_odd,
            out_offset,
            lo,
            hi
        );
        [low, high]
    }

    /// [`REQUANT_FOLDED`] before the clamp: one 64-bit add of the folded constant per lane and
    /// the high word shifted by `right - 1` (bias, rounding and output offset included).
    #[inline(always)]
    unsafe fn folded(&self, acc: __m256i) -> __m256i {
        let even = _mm256_add_epi64(_mm256_mul_epi32(acc, self.mult), self.folded_even);
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_shuffle_epi32(acc, 0b11_11_01_01), self.mult_odd),
            self.folded_odd,
        );
        let high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0b1010_1010);
        _mm256_srav_epi32(high, self.right_less_one)
    }

    /// Bias, TFLite's double-rounding requantization (as [`requant_double_avx2`]), output
    /// offset and clamp of 8 raw accumulators, in one of the `REQUANT_*` modes (see
    /// [`requant_mode`]).
    ///
    /// [`REQUANT_CLAMPED`]: with `high = floor((x*m + 2^30) / 2^31)` (the doubling high
    /// multiply) and `r >= 1`, rounding `high / 2^r` half up is
    /// `floor((x*m + 2^30 + 2^(30+r)) / 2^(31+r))`, one 64-bit add and the high word shifted
    /// by `r - 1`. TFLite rounds half away from zero, which differs only for negative `high`;
    /// both results are then <= 0 and the clamp (lower bound >= output offset) maps them to
    /// the same value.
    #[inline(always)]
    unsafe fn apply<const MODE: u8>(&self, acc: __m256i) -> __m256i {
        let zero = _mm256_setzero_si256();
        if MODE == REQUANT_FOLDED {
            return _mm256_min_epi32(_mm256_max_epi32(self.folded(acc), self.lo), self.hi);
        }
        let mut x = _mm256_add_epi32(acc, self.bias);
        if MODE == REQUANT_CLAMPED {
            let even = _mm256_add_epi64(_mm256_mul_epi32(x, self.mult), self.round_even);
            let odd = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_shuffle_epi32(x, 0b11_11_01_01), self.mult_odd),
                self.round_odd,
            );
            // High words of the 64-bit sums, in lane order.
            let high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0b1010_1010);
            let v = _mm256_srav_epi32(high, self.right_less_one);
            return _mm256_min_epi32(
                _mm256_max_epi32(_mm256_add_epi32(v, self.out_offset), self.lo),
                self.hi,
            );
        }
        if MODE == REQUANT_GENERAL {
            x = _mm256_sllv_epi32(x, self.left);
        }
        let round = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, self.mult), round), 31);
        let odd_product = _mm256_mul_epi32(_mm256_shuffle_epi32(x, 0b11_11_01_01), self.mult_odd);
        let odd = _mm256_slli_epi64(_mm256_add_epi64(odd_product, round), 1);
        let mut high = _mm256_blend_epi32(even, odd, 0b1010_1010);
        if MODE == REQUANT_GENERAL {
            // x = m = i32::MIN wraps to i32::MIN above; flipping every bit gives i32::MAX.
            let saturated = _mm256_and_si256(
                _mm256_cmpeq_epi32(x, _mm256_set1_epi32(i32::MIN)),
                self.mult_min,
            );
            high = _mm256_xor_si256(high, saturated);
        }
        let remainder = _mm256_and_si256(high, self.mask);
        let threshold = _mm256_sub_epi32(self.half_mask, _mm256_cmpgt_epi32(zero, high));
        let v = _mm256_sub_epi32(
            _mm256_srav_epi32(high, self.right),
            _mm256_cmpgt_epi32(remainder, threshold),
        );
        _mm256_min_epi32(
            _mm256_max_epi32(_mm256_add_epi32(v, self.out_offset), self.lo),
            self.hi,
        )
    }
}

/// Channels whose [`Requant8`] constants a kernel works out once per call (17 KiB of stack);
/// later channels get theirs per use.
const REQUANT_TABLE: usize = 256;

/// [`Requant8`] of channels `0..8 * len`, built once per call instead of once per pixel block.
struct RequantTable<'a> {
    entries: &'a [Requant8],
    /// Pairs of entries regrouped by [`Requant8::lane_pair`].
    lane_order: bool,
}

impl<'a> RequantTable<'a> {
    /// Safety: AVX2; per-channel arrays of `ops` cover `channels`.
    #[inline(always)]
    unsafe fn new(
        buf: &'a mut MaybeUninit<[Requant8; REQUANT_TABLE / 8]>,
        ops: &S8Operands<'_>,
        channels: usize,
        out_offset: i32,
        lo: i32,
        hi: i32,
    ) -> Self {
        let len = (channels / 8).min(REQUANT_TABLE / 8);
        let first = buf.as_mut_ptr() as *mut Requant8;
        for i in 0..len {
            first
                .add(i)
                .write(Requant8::new(ops, i * 8, out_offset, lo, hi));
        }
        // SAFETY: the first `len` entries were written above.
        RequantTable {
            entries: core::slice::from_raw_parts(first, len),
            lane_order: false,
        }
    }

    /// As [`RequantTable::new`], in the lane order of `unpacklo`/`unpackhi` per 16 channels
    /// (see [`Requant8::lane_pair`]); `channels` a multiple of 16.
    ///
    /// Safety: as [`RequantTable::new`].
    #[inline(always)]
    unsafe fn new_lane_order(
        buf: &'a mut MaybeUninit<[Requant8; REQUANT_TABLE / 8]>,
        ops: &S8Operands<'_>,
        channels: usize,
        out_offset: i32,
        lo: i32,
        hi: i32,
    ) -> Self {
        let len = (channels / 16 * 2).min(REQUANT_TABLE / 8);
        let first = buf.as_mut_ptr() as *mut Requant8;
        for i in (0..len).step_by(2) {
            let pair = Requant8::lane_pair(
                &Requant8::new(ops, i * 8, out_offset, lo, hi),
                &Requant8::new(ops, i * 8 + 8, out_offset, lo, hi),
            );
            first.add(i).write(pair[0]);
            first.add(i + 1).write(pair[1]);
        }
        // SAFETY: the first `len` entries were written above.
        RequantTable {
            entries: core::slice::from_raw_parts(first, len),
            lane_order: true,
        }
    }

    /// Constants of channels `c..c + 16` (`c` a multiple of 8, inside the arrays of `ops`):
    /// borrowed from the table (copying 1.2 KiB of constants per pixel block cost more than
    /// the block's requantization), or worked out into `spare` past its end.
    #[inline(always)]
    unsafe fn pair<'s>(
        &'s self,
        spare: &'s mut MaybeUninit<[Requant8; 2]>,
        ops: &S8Operands<'_>,
        c: usize,
        out_offset: i32,
        lo: i32,
        hi: i32,
    ) -> &'s [Requant8; 2] {
        match self
            .entries
            .get(c / 8..c / 8 + 2)
            .and_then(|entries| <&[Requant8; 2]>::try_from(entries).ok())
        {
            Some(entries) => entries,
            None => {
                let a = Requant8::new(ops, c, out_offset, lo, hi);
                let b = Requant8::new(ops, c + 8, out_offset, lo, hi);
                spare.write(if self.lane_order {
                    Requant8::lane_pair(&a, &b)
                } else {
                    [a, b]
                })
            }
        }
    }
}

/// The fastest [`Requant8::apply`] mode that is exact for these per-channel arrays, output
/// offset and clamp, when no raw accumulator exceeds `acc_bound` in magnitude.
fn requant_mode(ops: &S8Operands<'_>, out_offset: i32, act_min: i32, acc_bound: i64) -> u8 {
    let (min_shift, max_shift) = ops
        .shifts
        .iter()
        .fold((i32::MAX, i32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    if max_shift > 0 || ops.multipliers.contains(&i32::MIN) {
        REQUANT_GENERAL
    } else if act_min >= out_offset && max_shift <= -1 {
        let max_bias = ops.bias.map_or(0, |bias| {
            bias.iter().map(|&b| i64::from(b).abs()).max().unwrap_or(0)
        });
        let folds = min_shift >= -FOLDED_MAX_RIGHT
            && out_offset.unsigned_abs() <= 255
            && acc_bound.saturating_add(max_bias) <= i64::from(i32::MAX);
        if folds {
            REQUANT_FOLDED
        } else {
            REQUANT_CLAMPED
        }
    } else {
        REQUANT_PLAIN
    }
}

/// Largest magnitude of an int8 convolution accumulator over `taps` products: inputs plus
/// their offset within ±255, weights within [-128, 127].
fn conv_acc_bound(taps: usize) -> i64 {
    (taps as i64).saturating_mul(255 * 128)
}

/// Requantization, clamp and packing of 16 accumulators (channels in the lane order of
/// `rq`): [`REQUANT_FOLDED`] packs with saturation first and clamps the 16 bytes at once
/// (saturation keeps the order, and the clamp bounds lie inside the int8 range).
#[inline(always)]
unsafe fn requant16<const MODE: u8>(rq: &[Requant8; 2], a: __m256i, b: __m256i) -> __m128i {
    if MODE == REQUANT_FOLDED {
        let bytes = pack16_avx2(rq[0].folded(a), rq[1].folded(b));
        return _mm_min_epi8(_mm_max_epi8(bytes, rq[0].lo_bytes), rq[0].hi_bytes);
    }
    pack16_avx2(rq[0].apply::<MODE>(a), rq[1].apply::<MODE>(b))
}

/// Packs 16 int32 lanes (channels `0..8` in `a`, `8..16` in `b`) into 16 bytes in channel
/// order, saturating to [-128, 127].
#[inline(always)]
unsafe fn pack16_avx2(a: __m256i, b: __m256i) -> __m128i {
    // packs works per 128-bit lane: reorder to channel order afterwards.
    let words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0b11_01_10_00);
    _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256(words, 1),
    )
}

/// Stores 8 int32 lanes already inside [-128, 127] as 8 bytes.
#[inline(always)]
unsafe fn store8_avx2(dst: &mut [i8], v: __m256i) {
    let words = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let bytes = _mm_packs_epi16(words, words);
    let out = &mut dst[..8];
    _mm_storel_epi64(out.as_mut_ptr() as *mut __m128i, bytes);
}

/// int16 elements of the per-call repacked convolution filter (64 KiB on the stack).
const PACKED_FILTER: usize = 32 * 1024;
/// Pixels per register block of the packed AVX2 convolution (6 x 2 accumulators).
const PACKED_PIXELS: usize = 6;

/// AVX2 CONV_2D: the packed kernel when the repacked filter fits [`PACKED_FILTER`], else the
/// dot-product one.
#[target_feature(enable = "avx2")]
unsafe fn conv2d_s8_avx2(
    p: &Conv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    k: usize,
) {
    let k_even = (k + 1) & !1;
    if d.out_c.div_ceil(16) * 16 * k_even <= PACKED_FILTER {
        conv2d_s8_avx2_packed(p, d, ops, output, k)
    } else {
        conv2d_s8_avx2_dot(p, d, ops, output, k)
    }
}

/// Widens the filter to int16 and interleaves it for [`packed_block_avx2`]: per group of 16
/// output channels and per pair of patch positions `(2j, 2j + 1)`, 32 values
/// `[c0 2j, c0 2j+1, c1 2j, c1 2j+1, ..., c15 2j+1]`; channels past `out_c` and the odd
/// position past `k` are zero.
fn pack_filter(filter: &[i8], out_c: usize, k: usize, packed: &mut [i16]) {
    let pairs = k.div_ceil(2);
    for (g, group) in packed.chunks_exact_mut(32 * pairs).enumerate() {
        for (j, pair) in group.chunks_exact_mut(32).enumerate() {
            for (lane, dst) in pair.chunks_exact_mut(2).enumerate() {
                let c = g * 16 + lane;
                for (t, v) in dst.iter_mut().enumerate() {
                    let at = 2 * j + t;
                    *v = if c < out_c && at < k {
                        filter[c * k + at] as i16
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// Accumulators of `P` pixels x 16 channels: `acc[px][h]` holds channels `8h..8h + 8` of the
/// group whose packed filter starts at `w`. Each step broadcasts two patch values (one int32)
/// and multiplies them into 8 channels at once, so no horizontal sums are needed.
///
/// Safety: AVX2; every patch readable for `2 * pairs` int16, `w` for `32 * pairs`.
#[inline(always)]
unsafe fn packed_block_avx2<const P: usize>(
    patches: *const i16,
    stride: usize,
    w: *const i16,
    pairs: usize,
) -> [[__m256i; 2]; P] {
    #[inline(always)]
    unsafe fn step<const P: usize>(
        acc: &mut [[__m256i; 2]; P],
        patches: *const i16,
        stride: usize,
        w: *const i16,
        j: usize,
    ) {
        let w0 = _mm256_loadu_si256(w.add(32 * j) as *const __m256i);
        let w1 = _mm256_loadu_si256(w.add(32 * j + 16) as *const __m256i);
        for (px, acc_px) in acc.iter_mut().enumerate() {
            let pair = (patches.add(px * stride + 2 * j) as *const i32).read_unaligned();
            let x = _mm256_set1_epi32(pair);
            acc_px[0] = _mm256_add_epi32(acc_px[0], _mm256_madd_epi16(x, w0));
            acc_px[1] = _mm256_add_epi32(acc_px[1], _mm256_madd_epi16(x, w1));
        }
    }
    let mut acc = [[_mm256_setzero_si256(); 2]; P];
    // Two pairs per iteration: the loop bookkeeping was 4 of 36 instructions per pair.
    let mut j = 0;
    while j + 2 <= pairs {
        step(&mut acc, patches, stride, w, j);
        step(&mut acc, patches, stride, w, j + 1);
        j += 2;
    }
    if j < pairs {
        step(&mut acc, patches, stride, w, j);
    }
    acc
}

#[target_feature(enable = "avx2")]
unsafe fn conv2d_s8_avx2_packed(
    p: &Conv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    k: usize,
) {
    let source = &ops.filter[..d.out_c * k];
    #[cfg(feature = "std")]
    {
        packed_cache::with_packed(source, d.out_c, k, |packed| {
            conv2d_s8_avx2_packed_run(p, d, ops, output, k, packed)
        })
    }
    #[cfg(not(feature = "std"))]
    {
        let mut packed_buf = MaybeUninit::<[i16; PACKED_FILTER]>::uninit();
        let packed = zeroed_prefix(&mut packed_buf, d.out_c.div_ceil(16) * 32 * k.div_ceil(2));
        pack_filter(source, d.out_c, k, packed);
        conv2d_s8_avx2_packed_run(p, d, ops, output, k, packed)
    }
}

/// Packed filters kept between calls (`std` only): the filter of a layer is repacked once per
/// thread instead of on every inference, which cost as much as a third of a small layer.
/// An entry is found by the filter's address and used only when its bytes still equal the
/// copy kept with it, so a model freed and another loaded at the same address cannot hit a
/// stale entry.
#[cfg(feature = "std")]
mod packed_cache {
    extern crate std;
    use std::cell::RefCell;
    use std::vec::Vec;

    struct Entry {
        address: usize,
        out_c: usize,
        k: usize,
        source: Vec<i8>,
        packed: Vec<i16>,
    }

    /// Packed int16 values kept per thread before the cache is emptied.
    const MAX_PACKED: usize = 16 << 20;

    std::thread_local! {
        static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    }

    /// Runs `run` on the packed form of `source` (`out_c` rows of `k`), packing it on a miss.
    pub(super) fn with_packed<R>(
        source: &[i8],
        out_c: usize,
        k: usize,
        run: impl FnOnce(&[i16]) -> R,
    ) -> R {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let address = source.as_ptr() as usize;
            let found = cache.iter().position(|e| {
                e.address == address && e.out_c == out_c && e.k == k && e.source == source
            });
            let index = match found {
                Some(index) => index,
                None => {
                    let mut packed = std::vec![0i16; out_c.div_ceil(16) * 32 * k.div_ceil(2)];
                    super::pack_filter(source, out_c, k, &mut packed);
                    let held: usize = cache.iter().map(|e| e.packed.len()).sum();
                    if held + packed.len() > MAX_PACKED {
                        cache.clear();
                    }
                    cache.retain(|e| e.address != address);
                    cache.push(Entry {
                        address,
                        out_c,
                        k,
                        source: source.to_vec(),
                        packed,
                    });
                    cache.len() - 1
                }
            };
            run(&cache[index].packed)
        })
    }
}

/// The packed AVX2 convolution over a filter already packed by [`pack_filter`].
#[target_feature(enable = "avx2")]
unsafe fn conv2d_s8_avx2_packed_run(
    p: &Conv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    k: usize,
    packed: &[i16],
) {
    match requant_mode(ops, p.output_offset, p.act_min, conv_acc_bound(k)) {
        REQUANT_FOLDED => {
            conv2d_s8_avx2_packed_with::<REQUANT_FOLDED>(p, d, ops, output, k, packed)
        }
        REQUANT_CLAMPED => {
            conv2d_s8_avx2_packed_with::<REQUANT_CLAMPED>(p, d, ops, output, k, packed)
        }
        REQUANT_PLAIN => conv2d_s8_avx2_packed_with::<REQUANT_PLAIN>(p, d, ops, output, k, packed),
        _ => conv2d_s8_avx2_packed_with::<REQUANT_GENERAL>(p, d, ops, output, k, packed),
    }
}

#[target_feature(enable = "avx2")]
unsafe fn conv2d_s8_avx2_packed_with<const MODE: u8>(
    p: &Conv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    k: usize,
    packed: &[i16],
) {
    let pairs = k.div_ceil(2);
    let stride = 2 * pairs;
    let groups = d.out_c.div_ceil(16);
    // 8 values of slack: the padded-image gather copies whole 8-value chunks.
    let mut patch_buf = MaybeUninit::<[i16; PACKED_PIXELS * MAX_PATCH + 8]>::uninit();
    let patches = zeroed_prefix(&mut patch_buf, PACKED_PIXELS * stride + 8);
    let mut image_buf = MaybeUninit::<[i16; PADDED_IMAGE + 8]>::uninit();
    let image = PaddedImage::new(p, d, ops.input, &mut image_buf);
    let mut table_buf = MaybeUninit::uninit();
    let table = RequantTable::new(
        &mut table_buf,
        ops,
        d.out_c,
        p.output_offset,
        p.act_min,
        p.act_max,
    );
    let pixels = d.batches * d.out_h * d.out_w;
    // A 1x1 stride-1 convolution's patches are the widened input's pixels themselves, one
    // after another: whole blocks read them in place instead of copying them.
    let in_place = match &image {
        Some(image)
            if d.filter_h == 1
                && d.filter_w == 1
                && k.is_multiple_of(2)
                && image.step_x == k
                && image.step_y == d.out_w * k =>
        {
            Some(image.values)
        }
        _ => None,
    };
    let mut first = 0;
    while first < pixels {
        let count = PACKED_PIXELS.min(pixels - first);
        // Whole blocks only: a partial one would read past the widened input.
        let block = match in_place {
            Some(values) if count == PACKED_PIXELS => {
                values[first * k..(first + count) * k].as_ptr()
            }
            _ => {
                for px in 0..count {
                    let n = first + px;
                    let (b, out_y, out_x) = (
                        n / (d.out_h * d.out_w),
                        (n / d.out_w) % d.out_h,
                        n % d.out_w,
                    );
                    match &image {
                        Some(image) => {
                            image.gather(out_y, out_x, patches[px * stride..].as_mut_ptr())
                        }
                        None => gather_patch(
                            p,
                            d,
                            ops.input,
                            b,
                            out_y,
                            out_x,
                            &mut patches[px * stride..px * stride + k],
                        ),
                    }
                }
                patches.as_ptr()
            }
        };
        for g in 0..groups {
            let group = &packed[g * 32 * pairs..(g + 1) * 32 * pairs];
            let acc = packed_block_avx2::<PACKED_PIXELS>(block, stride, group.as_ptr(), pairs);
            let out_pixels = &mut output[first * d.out_c..(first + count) * d.out_c];
            if g * 16 + 16 <= d.out_c {
                // A whole group: both halves requantized, then one 16-byte store per pixel.
                let mut spare = MaybeUninit::uninit();
                let rq = table.pair(
                    &mut spare,
                    ops,
                    g * 16,
                    p.output_offset,
                    p.act_min,
                    p.act_max,
                );
                for (acc_px, out_pixel) in acc.iter().zip(out_pixels.chunks_exact_mut(d.out_c)) {
                    let bytes = requant16::<MODE>(rq, acc_px[0], acc_px[1]);
                    let out = &mut out_pixel[g * 16..g * 16 + 16];
                    _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
                }
                continue;
            }
            for h in 0..2 {
                let c = g * 16 + h * 8;
                if c + 8 <= d.out_c {
                    let rq = Requant8::new(ops, c, p.output_offset, p.act_min, p.act_max);
                    for (acc_px, out_pixel) in acc.iter().zip(out_pixels.chunks_exact_mut(d.out_c))
                    {
                        store8_avx2(&mut out_pixel[c..], rq.apply::<MODE>(acc_px[h]));
                    }
                } else if c < d.out_c {
                    for (acc_px, out_pixel) in acc.iter().zip(out_pixels.chunks_exact_mut(d.out_c))
                    {
                        let mut lanes = [0i32; 8];
                        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc_px[h]);
                        for (c, &lane) in (c..d.out_c).zip(&lanes) {
                            let mut acc = lane;
                            if let Some(bias) = ops.bias {
                                acc = acc.wrapping_add(bias[c]);
                            }
                            out_pixel[c] = requant_conv_scalar(
                                acc,
                                per_channel(ops.multipliers, c),
                                per_channel(ops.shifts, c),
                                p.output_offset,
                                p.act_min,
                                p.act_max,
                            );
                        }
                    }
                }
            }
        }
        first += count;
    }
}

/// int16 elements of [`PaddedImage`] (64 KiB on the stack).
const PADDED_IMAGE: usize = 32 * 1024;

/// The input of a one-batch convolution widened once to int16 (`x + input_offset`) inside a
/// zero border as wide as the padding the windows reach, so that a window's filter row is one
/// contiguous run (no horizontal dilation) and the im2col row of a pixel is `filter_h` copies
/// instead of per-tap bounds checks and fills (which cost more than the arithmetic of a
/// one-channel first layer).
struct PaddedImage<'a> {
    values: &'a [i16],
    /// Elements of one filter row (`filter_w * in_c`).
    run: usize,
    filter_h: usize,
    /// Elements between two filter rows and between two output rows / columns.
    step_fy: usize,
    step_y: usize,
    step_x: usize,
}

impl<'a> PaddedImage<'a> {
    /// `None` when it does not apply (batches, horizontal dilation) or does not fit.
    ///
    /// Safety: AVX2; `input` as long as `d` says.
    #[inline(always)]
    unsafe fn new(
        p: &Conv2dS8,
        d: &SpatialDims,
        input: &[i8],
        buf: &'a mut MaybeUninit<[i16; PADDED_IMAGE + 8]>,
    ) -> Option<Self> {
        // `len` below is at most PADDED_IMAGE + 8, the buffer's size.
        let w = p.window;
        let (pad_top, pad_left) = (w.pad_top as usize, w.pad_left as usize);
        let (stride_h, stride_w) = (w.stride_h as usize, w.stride_w as usize);
        let dilation_h = w.dilation_h as usize;
        if d.batches != 1 || w.dilation_w != 1 {
            return None;
        }
        let height =
            (pad_top + d.in_h).max((d.out_h - 1) * stride_h + (d.filter_h - 1) * dilation_h + 1);
        let width = (pad_left + d.in_w).max((d.out_w - 1) * stride_w + d.filter_w);
        let c = d.in_c;
        let row_len = width * c;
        if height.checked_mul(row_len)? > PADDED_IMAGE {
            return None;
        }
        let len = height * row_len + 8;
        let first = buf.as_mut_ptr() as *mut i16;
        // Only the border (and the slack) needs zeros: the interior is written below.
        let interior = pad_left * c..(pad_left + d.in_w) * c;
        core::ptr::write_bytes(first, 0, pad_top * row_len + interior.start);
        for y in 0..d.in_h {
            let row_end = (pad_top + y) * row_len + interior.end;
            let next_start = if y + 1 < d.in_h {
                (pad_top + y + 1) * row_len + interior.start
            } else {
                len
            };
            core::ptr::write_bytes(first.add(row_end), 0, next_start - row_end);
        }
        let offset = p.input_offset as i16;
        let offset16 = _mm256_set1_epi16(offset);
        for y in 0..d.in_h {
            let src = &input[y * d.in_w * c..(y + 1) * d.in_w * c];
            // Written through the raw pointer: the interior is uninitialized until here.
            let dst = first.add((pad_top + y) * row_len + interior.start);
            let mut chunks = src.chunks_exact(16);
            let mut i = 0;
            for x16 in &mut chunks {
                let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(x16.as_ptr() as *const __m128i));
                _mm256_storeu_si256(dst.add(i) as *mut __m256i, _mm256_add_epi16(v, offset16));
                i += 16;
            }
            for &x in chunks.remainder() {
                dst.add(i).write(x as i16 + offset);
                i += 1;
            }
        }
        // Every element is now written: border and slack zero, interior widened.
        let values = core::slice::from_raw_parts(first, len);
        Some(PaddedImage {
            values,
            run: d.filter_w * c,
            filter_h: d.filter_h,
            step_fy: dilation_h * row_len,
            step_y: stride_h * row_len,
            step_x: stride_w * c,
        })
    }

    /// Writes the im2col row of output pixel `(out_y, out_x)` to `dst`, in 8-value chunks: up
    /// to 7 values past the row are overwritten (later rows and pixels are written after, and
    /// the value past an odd patch meets a zero weight).
    ///
    /// Safety: `dst` writable for `filter_h * run + 8` values.
    #[inline(always)]
    unsafe fn gather(&self, out_y: usize, out_x: usize, dst: *mut i16) {
        let base = out_y * self.step_y + out_x * self.step_x;
        let src = self.values.as_ptr();
        for fy in 0..self.filter_h {
            let from = src.add(base + fy * self.step_fy);
            let to = dst.add(fy * self.run);
            let mut i = 0;
            while i < self.run {
                let v = _mm_loadu_si128(from.add(i) as *const __m128i);
                _mm_storeu_si128(to.add(i) as *mut __m128i, v);
                i += 8;
            }
        }
    }
}

/// AVX2 CONV_2D for filters too large to repack: dot products along the patch.
#[target_feature(enable = "avx2")]
unsafe fn conv2d_s8_avx2_dot(
    p: &Conv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    k: usize,
) {
    let kp = padded_len(k);
    // CONV_PIXELS im2col rows, zero past `k` (gather_patch writes exactly `k` values).
    let mut patch_buf = MaybeUninit::<[i16; CONV_PIXELS * MAX_PATCH]>::uninit();
    let patches = zeroed_prefix(&mut patch_buf, CONV_PIXELS * kp);
    let mut sums = [[0i32; CONV_CHUNK]; CONV_PIXELS];
    let mut spare = MaybeUninit::uninit();
    let rows = FilterRows::new(ops.filter, d.out_c, k, &mut spare);
    let out_offset = _mm256_set1_epi32(p.output_offset);
    let lo = _mm256_set1_epi32(p.act_min);
    let hi = _mm256_set1_epi32(p.act_max);
    let unused = _mm256_setzero_si256();
    let pixels = d.batches * d.out_h * d.out_w;
    let mut first = 0;
    while first < pixels {
        let count = CONV_PIXELS.min(pixels - first);
        for px in 0..count {
            let n = first + px;
            let (b, out_y, out_x) = (
                n / (d.out_h * d.out_w),
                (n / d.out_w) % d.out_h,
                n % d.out_w,
            );
            let dst = &mut patches[px * kp..px * kp + k];
            gather_patch(p, d, ops.input, b, out_y, out_x, dst);
        }
        let mut chunk = 0;
        while chunk < d.out_c {
            let chunk_end = (chunk + CONV_CHUNK).min(d.out_c);
            let mut oc = chunk;
            while oc + CONV_ROWS <= chunk_end {
                let acc = dot_block_avx2::<CONV_PIXELS, CONV_ROWS, false>(
                    patches.as_ptr(),
                    kp,
                    core::array::from_fn(|r| rows.row(oc + r)),
                    kp,
                    unused,
                );
                for (px, acc_px) in acc.iter().enumerate() {
                    let dst = &mut sums[px][oc - chunk..oc - chunk + CONV_ROWS];
                    _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, hsum4_avx2(acc_px));
                }
                oc += CONV_ROWS;
            }
            while oc < chunk_end {
                let acc = dot_block_avx2::<CONV_PIXELS, 1, false>(
                    patches.as_ptr(),
                    kp,
                    [rows.row(oc)],
                    kp,
                    unused,
                );
                for (px, acc_px) in acc.iter().enumerate() {
                    sums[px][oc - chunk] = hsum1_avx2(acc_px[0]);
                }
                oc += 1;
            }
            for (px, pixel_sums) in sums.iter().enumerate().take(count) {
                let out_at = (first + px) * d.out_c;
                let out_pixel = &mut output[out_at..out_at + d.out_c];
                let mut c = chunk;
                while c + 8 <= chunk_end {
                    let lanes = &pixel_sums[c - chunk..c - chunk + 8];
                    let acc = _mm256_loadu_si256(lanes.as_ptr() as *const __m256i);
                    let v = finish8_avx2(acc, ops, c, out_offset, lo, hi);
                    store8_avx2(&mut out_pixel[c..], v);
                    c += 8;
                }
                for c in c..chunk_end {
                    let mut acc = pixel_sums[c - chunk];
                    if let Some(bias) = ops.bias {
                        acc = acc.wrapping_add(bias[c]);
                    }
                    out_pixel[c] = requant_conv_scalar(
                        acc,
                        per_channel(ops.multipliers, c),
                        per_channel(ops.shifts, c),
                        p.output_offset,
                        p.act_min,
                        p.act_max,
                    );
                }
            }
            chunk = chunk_end;
        }
        first += count;
    }
}

/// Filter taps (`kh * kw`) the AVX2 depthwise kernel lists per output pixel; larger filters use
/// the SSE4.1 kernel.
const MAX_DEPTHWISE_TAPS: usize = 256;
/// 16-channel groups per depthwise register block (8 int32 accumulators).
const DEPTHWISE_GROUPS: usize = 4;

/// Depthwise sums of `G` 16-channel groups from channel `c` over the listed taps (input and
/// filter offsets of channel 0); `acc[g]` holds channels `c + 16g ..+ 8` and `..+ 16`.
///
/// Safety: AVX2; every listed offset plus `c + 16 * G` within its slice.
#[inline(always)]
unsafe fn depthwise_block_avx2<const G: usize>(
    taps: &[(usize, usize)],
    input: &[i8],
    filter: &[i8],
    c: usize,
    offset: __m256i,
) -> [[__m256i; 2]; G] {
    let mut acc = [[_mm256_setzero_si256(); 2]; G];
    let (xp, fp) = (input.as_ptr().add(c), filter.as_ptr().add(c));
    for &(x_at, f_at) in taps {
        for (g, acc_g) in acc.iter_mut().enumerate() {
            let x8 = _mm_loadu_si128(xp.add(x_at + 16 * g) as *const __m128i);
            let f8 = _mm_loadu_si128(fp.add(f_at + 16 * g) as *const __m128i);
            let x = _mm256_add_epi16(_mm256_cvtepi8_epi16(x8), offset);
            // |x| <= 255 and |f| <= 128: the int16 product is exact.
            let product = _mm256_mullo_epi16(x, _mm256_cvtepi8_epi16(f8));
            acc_g[0] = _mm256_add_epi32(
                acc_g[0],
                _mm256_cvtepi16_epi32(_mm256_castsi256_si128(product)),
            );
            acc_g[1] = _mm256_add_epi32(
                acc_g[1],
                _mm256_cvtepi16_epi32(_mm256_extracti128_si256(product, 1)),
            );
        }
    }
    acc
}

/// Scalar depthwise output for one channel (channel tails), reference arithmetic.
#[allow(clippy::too_many_arguments)]
fn depthwise_channel_scalar(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    b: usize,
    out_y: usize,
    out_x: usize,
    c: usize,
) -> i8 {
    let w = p.window;
    let mut acc: i32 = 0;
    for fy in 0..d.filter_h {
        let Some(in_y) = tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h) else {
            continue;
        };
        for fx in 0..d.filter_w {
            let Some(in_x) = tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w) else {
                continue;
            };
            let x = ops.input[d.input_index(b, in_y, in_x, c)] as i32 + p.input_offset;
            let f = ops.filter[(fy * d.filter_w + fx) * d.out_c + c] as i32;
            acc = acc.wrapping_add(f.wrapping_mul(x));
        }
    }
    if let Some(bias) = ops.bias {
        acc = acc.wrapping_add(bias[c]);
    }
    requant_conv_scalar(
        acc,
        per_channel(ops.multipliers, c),
        per_channel(ops.shifts, c),
        p.output_offset,
        p.act_min,
        p.act_max,
    )
}

#[target_feature(enable = "avx2")]
unsafe fn depthwise_s8_avx2(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) {
    let w = p.window;
    let c16 = d.out_c & !15;
    let offset = _mm256_set1_epi16(p.input_offset as i16);
    let out_offset = _mm256_set1_epi32(p.output_offset);
    let lo = _mm256_set1_epi32(p.act_min);
    let hi = _mm256_set1_epi32(p.act_max);
    let mut taps = [(0usize, 0usize); MAX_DEPTHWISE_TAPS];
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                // The taps inside the input, listed once for every channel group.
                let mut count = 0;
                for fy in 0..d.filter_h {
                    let Some(in_y) = tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h)
                    else {
                        continue;
                    };
                    for fx in 0..d.filter_w {
                        let Some(in_x) =
                            tap(out_x, w.stride_w, w.pad_left, fx, w.dilation_w, d.in_w)
                        else {
                            continue;
                        };
                        taps[count] = (
                            d.input_index(b, in_y, in_x, 0),
                            (fy * d.filter_w + fx) * d.out_c,
                        );
                        count += 1;
                    }
                }
                let taps = &taps[..count];
                let out_at = d.output_index(b, out_y, out_x, 0);
                let mut c = 0;
                while c < c16 {
                    let groups = ((c16 - c) / 16).min(DEPTHWISE_GROUPS);
                    let mut acc = [[_mm256_setzero_si256(); 2]; DEPTHWISE_GROUPS];
                    let (input, filter) = (ops.input, ops.filter);
                    match groups {
                        4 => acc = depthwise_block_avx2::<4>(taps, input, filter, c, offset),
                        3 => {
                            let a = depthwise_block_avx2::<3>(taps, input, filter, c, offset);
                            acc[..3].copy_from_slice(&a);
                        }
                        2 => {
                            let a = depthwise_block_avx2::<2>(taps, input, filter, c, offset);
                            acc[..2].copy_from_slice(&a);
                        }
                        _ => acc[0] = depthwise_block_avx2::<1>(taps, input, filter, c, offset)[0],
                    }
                    for (g, acc_g) in acc.iter().enumerate().take(groups) {
                        let ch = c + 16 * g;
                        let v0 = finish8_avx2(acc_g[0], ops, ch, out_offset, lo, hi);
                        let v1 = finish8_avx2(acc_g[1], ops, ch + 8, out_offset, lo, hi);
                        // packs works per 128-bit lane: reorder to channel order afterwards.
                        let words =
                            _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0b11_01_10_00);
                        let bytes = _mm_packs_epi16(
                            _mm256_castsi256_si128(words),
                            _mm256_extracti128_si256(words, 1),
                        );
                        let out = &mut output[out_at + ch..out_at + ch + 16];
                        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
                    }
                    c += 16 * groups;
                }
                for c in c16..d.out_c {
                    output[out_at + c] = depthwise_channel_scalar(p, d, ops, b, out_y, out_x, c);
                }
            }
        }
    }
}

/// int16 elements of the widened input rows of [`depthwise_s8_avx2_rows`] (32 KiB).
const DW_ROWS: usize = 16 * 1024;
/// int16 elements of its tap-paired filter (16 KiB).
const DW_FILTER: usize = 8 * 1024;
/// Input rows one window spans (`(filter_h - 1) * dilation_h + 1`) it keeps at most.
const DW_SPAN: usize = 16;
/// Filter taps (`filter_h * filter_w`) it handles at most.
const DW_TAPS: usize = 64;

/// Interleaves the filter of taps `2q` and `2q + 1` for `vpmaddwd`: per tap pair and 16-channel
/// block, the `unpacklo`/`unpackhi` of the two taps' widened weights (32 int16), the same lane
/// order [`depthwise_s8_avx2_rows`] gives its inputs. A missing last tap has zero weights.
///
/// Safety: AVX2; `filter` holds `taps * channels` weights, `channels % 16 == 0`,
/// `packed.len() >= taps.div_ceil(2) * channels * 2`.
#[inline(always)]
unsafe fn pack_depthwise_filter(filter: &[i8], taps: usize, channels: usize, packed: &mut [i16]) {
    let blocks = channels / 16;
    // Weights of tap `t`, channels `c..c + 16`, widened (zero past the last tap).
    #[inline(always)]
    unsafe fn widen(filter: &[i8], taps: usize, channels: usize, t: usize, c: usize) -> __m256i {
        if t < taps {
            let w = &filter[t * channels + c..t * channels + c + 16];
            _mm256_cvtepi8_epi16(_mm_loadu_si128(w.as_ptr() as *const __m128i))
        } else {
            _mm256_setzero_si256()
        }
    }
    for q in 0..taps.div_ceil(2) {
        for cb in 0..blocks {
            let a = widen(filter, taps, channels, 2 * q, cb * 16);
            let b = widen(filter, taps, channels, 2 * q + 1, cb * 16);
            let dst = &mut packed[(q * blocks + cb) * 32..(q * blocks + cb + 1) * 32];
            _mm256_storeu_si256(
                dst.as_mut_ptr() as *mut __m256i,
                _mm256_unpacklo_epi16(a, b),
            );
            _mm256_storeu_si256(
                dst.as_mut_ptr().add(16) as *mut __m256i,
                _mm256_unpackhi_epi16(a, b),
            );
        }
    }
}

/// Depthwise sums of `P` neighbouring pixels (`x + px * column`) over tap pairs: `acc[px]`
/// holds channels `[0..4, 8..12]` and `[4..8, 12..16]` of the block (the lane order of
/// `unpacklo`/`unpackhi`), see [`depthwise_finish16`].
///
/// Safety: AVX2; every `x + px * column + tap_at[t]` readable for 16 values (`t < 2 * pairs`),
/// `weights + q * blocks * 32` for 32.
#[inline(always)]
unsafe fn depthwise_pairs_avx2<const P: usize>(
    x: *const i16,
    column: usize,
    tap_at: &[usize],
    weights: *const i16,
    pairs: usize,
    blocks: usize,
) -> [[__m256i; 2]; P] {
    let mut acc = [[_mm256_setzero_si256(); 2]; P];
    for q in 0..pairs {
        let (a, b) = (tap_at[2 * q], tap_at[2 * q + 1]);
        let wq = weights.add(q * blocks * 32);
        let w_lo = _mm256_loadu_si256(wq as *const __m256i);
        let w_hi = _mm256_loadu_si256(wq.add(16) as *const __m256i);
        for (px, acc_px) in acc.iter_mut().enumerate() {
            let xp = x.add(px * column);
            let xa = _mm256_loadu_si256(xp.add(a) as *const __m256i);
            let xb = _mm256_loadu_si256(xp.add(b) as *const __m256i);
            acc_px[0] = _mm256_add_epi32(
                acc_px[0],
                _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb), w_lo),
            );
            acc_px[1] = _mm256_add_epi32(
                acc_px[1],
                _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), w_hi),
            );
        }
    }
    acc
}

/// Requantization and packing of one pixel's 16 depthwise sums, which are in the lane order of
/// `unpacklo`/`unpackhi` as the constants of `rq` (a [`RequantTable::new_lane_order`] pair):
/// `packs_epi32` then puts channels `0..8` in the low half and `8..16` in the high one, so no
/// lane-crossing shuffle is needed.
#[inline(always)]
unsafe fn depthwise_finish16<const MODE: u8>(acc: &[__m256i; 2], rq: &[Requant8; 2]) -> __m128i {
    let (a, b) = if MODE == REQUANT_FOLDED {
        (rq[0].folded(acc[0]), rq[1].folded(acc[1]))
    } else {
        (rq[0].apply::<MODE>(acc[0]), rq[1].apply::<MODE>(acc[1]))
    };
    let words = _mm256_packs_epi32(a, b);
    let bytes = _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256(words, 1),
    );
    if MODE == REQUANT_FOLDED {
        _mm_min_epi8(_mm_max_epi8(bytes, rq[0].lo_bytes), rq[0].hi_bytes)
    } else {
        bytes
    }
}

/// AVX2 DEPTHWISE_CONV_2D (multiplier 1, channels a multiple of 16) over widened rows: each
/// input row the windows reach is widened once to int16 with the input offset added, into a
/// ring of `span_h` rows zero padded left and right (a window row in the padding reads a zero
/// row), so every window has all its taps at fixed offsets. Two taps at a time go through one
/// `vpmaddwd` (interleaved inputs times interleaved weights: 16 exact products summed in
/// pairs into 8 int32). Returns `false` (nothing written) when the buffers are too small.
///
/// Safety: AVX2; slice lengths as [`depthwise_ok`] checks them.
#[target_feature(enable = "avx2")]
unsafe fn depthwise_s8_avx2_rows(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    let taps = d.filter_h * d.filter_w;
    match requant_mode(ops, p.output_offset, p.act_min, conv_acc_bound(taps)) {
        REQUANT_FOLDED => depthwise_s8_avx2_rows_with::<REQUANT_FOLDED>(p, d, ops, output),
        REQUANT_CLAMPED => depthwise_s8_avx2_rows_with::<REQUANT_CLAMPED>(p, d, ops, output),
        REQUANT_PLAIN => depthwise_s8_avx2_rows_with::<REQUANT_PLAIN>(p, d, ops, output),
        _ => depthwise_s8_avx2_rows_with::<REQUANT_GENERAL>(p, d, ops, output),
    }
}

/// `true` when [`depthwise_s8_avx2_rows`] takes this geometry: channels a multiple of 16 and
/// its widened rows, taps and packed filter within its buffers.
fn depthwise_rows_fit(p: &DepthwiseConv2dS8, d: &SpatialDims) -> bool {
    let w = p.window;
    let (dilation_h, dilation_w) = (w.dilation_h as usize, w.dilation_w as usize);
    let taps = d.filter_h * d.filter_w;
    let span_h = (d.filter_h - 1) * dilation_h + 1;
    let width = ((d.out_w - 1) * w.stride_w as usize + (d.filter_w - 1) * dilation_w + 1)
        .max(w.pad_left as usize + d.in_w);
    d.in_c.is_multiple_of(16)
        && taps <= DW_TAPS
        && span_h <= DW_SPAN
        && (span_h + 1) * width * d.in_c <= DW_ROWS
        && taps.div_ceil(2) * (d.in_c / 16) * 32 <= DW_FILTER
}

#[target_feature(enable = "avx2")]
unsafe fn depthwise_s8_avx2_rows_with<const MODE: u8>(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    let w = p.window;
    let channels = d.in_c;
    let stride_w = w.stride_w as usize;
    let (dilation_h, dilation_w) = (w.dilation_h as usize, w.dilation_w as usize);
    let taps = d.filter_h * d.filter_w;
    let pairs = taps.div_ceil(2);
    let span_h = (d.filter_h - 1) * dilation_h + 1;
    let pad_left = w.pad_left as usize;
    // Columns from `-pad_left` up to the last one a window reaches.
    let width =
        ((d.out_w - 1) * stride_w + (d.filter_w - 1) * dilation_w + 1).max(pad_left + d.in_w);
    let row_len = width * channels;
    let blocks = channels / 16;
    if !depthwise_rows_fit(p, d) {
        return false;
    }
    let mut filter_buf = MaybeUninit::<[i16; DW_FILTER]>::uninit();
    let packed = zeroed_prefix(&mut filter_buf, pairs * blocks * 32);
    pack_depthwise_filter(ops.filter, taps, channels, packed);
    let mut rows_buf = MaybeUninit::<[i16; DW_ROWS]>::uninit();
    // Every slot's padding columns stay zero; the last row is all zero.
    let rows = zeroed_prefix(&mut rows_buf, (span_h + 1) * row_len);
    let zero_row = span_h * row_len;
    let mut table_buf = MaybeUninit::uninit();
    let table = RequantTable::new_lane_order(
        &mut table_buf,
        ops,
        channels,
        p.output_offset,
        p.act_min,
        p.act_max,
    );
    let offset = _mm256_set1_epi16(p.input_offset as i16);
    for b in 0..d.batches {
        let mut slot_row = [usize::MAX; DW_SPAN];
        for out_y in 0..d.out_h {
            let mut tap_at = [0usize; DW_TAPS + 1];
            for fy in 0..d.filter_h {
                let at = match tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h) {
                    None => zero_row,
                    Some(in_y) => {
                        let slot = in_y % span_h;
                        if slot_row[slot] != in_y {
                            slot_row[slot] = in_y;
                            let src_at = d.input_index(b, in_y, 0, 0);
                            let src = &ops.input[src_at..src_at + d.in_w * channels];
                            let dst_at = slot * row_len + pad_left * channels;
                            let dst = &mut rows[dst_at..dst_at + d.in_w * channels];
                            for (x16, dst16) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
                                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                    x16.as_ptr() as *const __m128i
                                ));
                                _mm256_storeu_si256(
                                    dst16.as_mut_ptr() as *mut __m256i,
                                    _mm256_add_epi16(x, offset),
                                );
                            }
                        }
                        slot * row_len
                    }
                };
                for fx in 0..d.filter_w {
                    tap_at[fy * d.filter_w + fx] = at + fx * dilation_w * channels;
                }
            }
            // The odd last tap's partner: any readable data (its weights are zero).
            tap_at[taps] = tap_at[taps - 1];
            let out_row = d.output_index(b, out_y, 0, 0);
            for cb in 0..blocks {
                let mut spare = MaybeUninit::uninit();
                let rq = table.pair(
                    &mut spare,
                    ops,
                    cb * 16,
                    p.output_offset,
                    p.act_min,
                    p.act_max,
                );
                let weights = packed.as_ptr().add(cb * 32);
                let column = stride_w * channels;
                let x0 = rows.as_ptr().add(cb * 16);
                let mut out_x = 0;
                while out_x < d.out_w {
                    let x = x0.add(out_x * column);
                    let out_at = out_row + out_x * channels + cb * 16;
                    if out_x + 4 <= d.out_w {
                        let acc =
                            depthwise_pairs_avx2::<4>(x, column, &tap_at, weights, pairs, blocks);
                        for (px, acc_px) in acc.iter().enumerate() {
                            let bytes = depthwise_finish16::<MODE>(acc_px, rq);
                            let at = out_at + px * channels;
                            let out = &mut output[at..at + 16];
                            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
                        }
                        out_x += 4;
                    } else if out_x + 2 <= d.out_w {
                        let acc =
                            depthwise_pairs_avx2::<2>(x, column, &tap_at, weights, pairs, blocks);
                        for (px, acc_px) in acc.iter().enumerate() {
                            let bytes = depthwise_finish16::<MODE>(acc_px, rq);
                            let at = out_at + px * channels;
                            let out = &mut output[at..at + 16];
                            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
                        }
                        out_x += 2;
                    } else {
                        let [acc] =
                            depthwise_pairs_avx2::<1>(x, column, &tap_at, weights, pairs, blocks);
                        let bytes = depthwise_finish16::<MODE>(&acc, rq);
                        let out = &mut output[out_at..out_at + 16];
                        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
                        out_x += 1;
                    }
                }
            }
        }
    }
    true
}

/// Windows of more elements than this are left to the reference (the float division below
/// is exact for sums of fewer than 2^24).
const POOL_MAX_COUNT: usize = 1 << 16;

/// AVX2 pooling: per output pixel, the window's rows are summed 8 channels at a time in int32
/// (average) or reduced 32 channels at a time with `vpmaxsb` (max). The average's rounding
/// (`(sum ± count / 2) / count`, truncating) is a double division: with `|n| < 2^24` and
/// `count < 2^24` the quotient is never within rounding error of the next integer, so
/// truncating it is exact. Returns `false` at the first empty window (the reference reports
/// the error).
#[target_feature(enable = "avx2")]
unsafe fn pool2d_s8_avx2(p: &Pool2dS8, d: &SpatialDims, input: &[i8], output: &mut [i8]) -> bool {
    let w = p.window;
    let c = d.in_c;
    let (lo, hi) = (p.act_min, p.act_max);
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            let (y0, y1) = filter_range(out_y, w.stride_h, w.pad_top, d.filter_h, d.in_h);
            for out_x in 0..d.out_w {
                let (x0, x1) = filter_range(out_x, w.stride_w, w.pad_left, d.filter_w, d.in_w);
                if y1 <= y0 || x1 <= x0 || (y1 - y0) * (x1 - x0) > POOL_MAX_COUNT {
                    return false;
                }
                let in_y0 = out_y * w.stride_h as usize + y0 - w.pad_top as usize;
                let in_x0 = out_x * w.stride_w as usize + x0 - w.pad_left as usize;
                let (rows, cols) = (y1 - y0, x1 - x0);
                let out_at = d.output_index(b, out_y, out_x, 0);
                let out_pixel = &mut output[out_at..out_at + c];
                match p.kind {
                    PoolKind::Average => {
                        let count = (rows * cols) as i32;
                        let mut ch = 0;
                        while ch < c {
                            let lanes = (c - ch).min(8);
                            let mut sum = _mm256_setzero_si256();
                            for y in in_y0..in_y0 + rows {
                                for x in in_x0..in_x0 + cols {
                                    let at = d.input_index(b, y, x, ch);
                                    let v = if lanes == 8 {
                                        let src = &input[at..at + 8];
                                        _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                            src.as_ptr() as *const __m128i
                                        ))
                                    } else {
                                        let mut tail = [0i8; 8];
                                        tail[..lanes].copy_from_slice(&input[at..at + lanes]);
                                        _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                            tail.as_ptr() as *const __m128i
                                        ))
                                    };
                                    sum = _mm256_add_epi32(sum, v);
                                }
                            }
                            // sum + count/2 for positive sums, sum - count/2 otherwise.
                            let half = _mm256_set1_epi32(count / 2);
                            let positive = _mm256_cmpgt_epi32(sum, _mm256_setzero_si256());
                            let nudged = _mm256_add_epi32(
                                _mm256_sub_epi32(sum, half),
                                _mm256_and_si256(positive, _mm256_add_epi32(half, half)),
                            );
                            let divisor = _mm256_set1_pd(count as f64);
                            let q_lo = _mm256_cvttpd_epi32(_mm256_div_pd(
                                _mm256_cvtepi32_pd(_mm256_castsi256_si128(nudged)),
                                divisor,
                            ));
                            let q_hi = _mm256_cvttpd_epi32(_mm256_div_pd(
                                _mm256_cvtepi32_pd(_mm256_extracti128_si256(nudged, 1)),
                                divisor,
                            ));
                            let mut q = [0i32; 8];
                            _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, q_lo);
                            _mm_storeu_si128(q.as_mut_ptr().add(4) as *mut __m128i, q_hi);
                            for (dst, &v) in out_pixel[ch..ch + lanes].iter_mut().zip(&q) {
                                *dst = v.clamp(lo, hi) as i8;
                            }
                            ch += lanes;
                        }
                    }
                    PoolKind::Max => {
                        let mut ch = 0;
                        while ch < c {
                            let lanes = (c - ch).min(32);
                            let mut max = _mm256_set1_epi8(i8::MIN);
                            for y in in_y0..in_y0 + rows {
                                for x in in_x0..in_x0 + cols {
                                    let at = d.input_index(b, y, x, ch);
                                    let mut lane_values = [i8::MIN; 32];
                                    let v = if lanes == 32 {
                                        _mm256_loadu_si256(
                                            input[at..at + 32].as_ptr() as *const __m256i
                                        )
                                    } else {
                                        lane_values[..lanes]
                                            .copy_from_slice(&input[at..at + lanes]);
                                        _mm256_loadu_si256(lane_values.as_ptr() as *const __m256i)
                                    };
                                    max = _mm256_max_epi8(max, v);
                                }
                            }
                            let mut m = [0i8; 32];
                            _mm256_storeu_si256(m.as_mut_ptr() as *mut __m256i, max);
                            for (dst, &v) in out_pixel[ch..ch + lanes].iter_mut().zip(&m) {
                                *dst = (v as i32).clamp(lo, hi) as i8;
                            }
                            ch += lanes;
                        }
                    }
                }
            }
        }
    }
    true
}

/// Output rows per register block of the AVX2 fully connected kernel.
const FC_ROWS: usize = 8;

#[target_feature(enable = "avx2")]
unsafe fn fully_connected_s8_avx2(
    p: &FullyConnectedS8,
    dims: &FcDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) {
    let k = dims.accum_depth;
    let kp = padded_len(k);
    let mut patch_buf = MaybeUninit::<[i16; MAX_PATCH]>::uninit();
    let patch = zeroed_prefix(&mut patch_buf, kp);
    let mut spare = MaybeUninit::uninit();
    let rows = FilterRows::new(ops.filter, dims.output_depth, k, &mut spare);
    let unused = _mm256_setzero_si256();
    let out_offset = _mm256_set1_epi32(p.output_offset);
    let lo = _mm256_set1_epi32(p.act_min);
    let hi = _mm256_set1_epi32(p.act_max);
    let input_offset = _mm256_set1_epi16(p.input_offset as i16);
    let ones = _mm256_set1_epi16(1);
    for b in 0..dims.batches {
        let row = &ops.input[b * k..(b + 1) * k];
        // The patch (x + input_offset), and its sum: sum((x + io) * (w + fo)) is
        // sum((x + io) * w) + fo * sum(x + io) in wrapping int32, so the filter offset costs
        // one multiply per row instead of an add per weight.
        let mut chunks = row.chunks_exact(16);
        let mut lane_sums = _mm256_setzero_si256();
        for (x16, dst) in (&mut chunks).zip(patch.chunks_exact_mut(16)) {
            let x = _mm256_add_epi16(
                _mm256_cvtepi8_epi16(_mm_loadu_si128(x16.as_ptr() as *const __m128i)),
                input_offset,
            );
            lane_sums = _mm256_add_epi32(lane_sums, _mm256_madd_epi16(x, ones));
            _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, x);
        }
        let mut patch_sum = hsum1_avx2(lane_sums);
        let tail = k - chunks.remainder().len();
        for (v, &x) in patch[tail..k].iter_mut().zip(chunks.remainder()) {
            *v = x as i16 + p.input_offset as i16;
            patch_sum = patch_sum.wrapping_add(*v as i32);
        }
        let offset_term = patch_sum.wrapping_mul(p.filter_offset);
        let out_row = &mut output[b * dims.output_depth..(b + 1) * dims.output_depth];
        let mut oc = 0;
        while oc + FC_ROWS <= dims.output_depth {
            let block: [*const i8; FC_ROWS] = if oc + FC_ROWS <= rows.direct {
                // In place: rows below `direct` are readable for `kp` bytes.
                let first = ops.filter.as_ptr().add(oc * k);
                core::array::from_fn(|r| first.add(r * k))
            } else {
                core::array::from_fn(|r| rows.row(oc + r))
            };
            let [acc] = dot_block_avx2::<1, FC_ROWS, false>(patch.as_ptr(), 0, block, kp, unused);
            let mut sums = _mm256_add_epi32(hsum8_avx2(&acc), _mm256_set1_epi32(offset_term));
            if let Some(bias) = ops.bias {
                sums = _mm256_add_epi32(sums, channel_vec_avx2(&bias[oc..oc + 8], 0));
            }
            let v = requant_single_avx2(
                sums,
                channel_vec_avx2(ops.multipliers, oc),
                channel_vec_avx2(ops.shifts, oc),
            );
            let v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, out_offset), lo), hi);
            store8_avx2(&mut out_row[oc..], v);
            oc += FC_ROWS;
        }
        for oc in oc..dims.output_depth {
            let [acc] =
                dot_block_avx2::<1, 1, false>(patch.as_ptr(), 0, [rows.row(oc)], kp, unused);
            let sum = hsum1_avx2(acc[0]).wrapping_add(offset_term);
            out_row[oc] = fc_finish(p, ops, oc, sum);
        }
    }
}

/// Arithmetic right shift of 4 int64 lanes by per-lane counts in `0..64` (AVX2 has only the
/// logical one): shifting the one's complement of a negative value and complementing back
/// rounds toward minus infinity, as `>>` on `i64` does.
#[inline(always)]
unsafe fn srav_epi64_avx2(v: __m256i, count: __m256i) -> __m256i {
    let negative = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    _mm256_xor_si256(
        _mm256_srlv_epi64(_mm256_xor_si256(v, negative), count),
        negative,
    )
}

/// TFLite's single-rounding `MultiplyByQuantizedMultiplier` on 8 lanes:
/// `(acc * mult + 2^(t-1)) >> t` in int64 with `t = 31 - shift` (1..=62), truncated to int32.
#[inline(always)]
unsafe fn requant_single_avx2(acc: __m256i, mult: __m256i, shift: __m256i) -> __m256i {
    let one = _mm256_set1_epi64x(1);
    let total = _mm256_sub_epi32(_mm256_set1_epi32(31), shift);
    let low32 = _mm256_set1_epi64x(0xFFFF_FFFF);
    // Even lanes use the low half of each 64-bit slot, odd lanes the high half.
    let t_even = _mm256_and_si256(total, low32);
    let t_odd = _mm256_srli_epi64(total, 32);
    let p_even = _mm256_mul_epi32(acc, mult);
    let p_odd = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), _mm256_srli_epi64(mult, 32));
    let round_even = _mm256_sllv_epi64(one, _mm256_sub_epi64(t_even, one));
    let round_odd = _mm256_sllv_epi64(one, _mm256_sub_epi64(t_odd, one));
    let r_even = srav_epi64_avx2(_mm256_add_epi64(p_even, round_even), t_even);
    let r_odd = srav_epi64_avx2(_mm256_add_epi64(p_odd, round_odd), t_odd);
    _mm256_blend_epi32(r_even, _mm256_slli_epi64(r_odd, 32), 0b1010_1010)
}

/// FC bias, single-rounding requantization, offset and clamp (as the reference).
#[inline(always)]
fn fc_finish(p: &FullyConnectedS8, ops: &S8Operands<'_>, oc: usize, mut acc: i32) -> i8 {
    if let Some(bias) = ops.bias {
        acc = acc.wrapping_add(bias[oc]);
    }
    let v = multiply_by_quantized_multiplier_single_rounding(
        acc,
        per_channel(ops.multipliers, oc),
        per_channel(ops.shifts, oc),
    );
    v.wrapping_add(p.output_offset).clamp(p.act_min, p.act_max) as i8
}

// ---------------------------------------------------------------------------------------------
// SSE4.1

/// Dot products of `patch[..k]` with 4 filter rows from `row0` (`w + fo`), 8-wide steps.
///
/// Safety: SSE4.1; `patch.len() >= k`, `filter.len() >= (row0 + 4) * k`.
#[inline(always)]
unsafe fn dot4_sse41(patch: &[i16], filter: &[i8], k: usize, row0: usize, fo: i16) -> [i32; 4] {
    let mut acc = [_mm_setzero_si128(); 4];
    let fo16 = _mm_set1_epi16(fo);
    let k8 = k & !7;
    let px = patch.as_ptr();
    let fp = filter.as_ptr().add(row0 * k);
    let mut i = 0;
    while i < k8 {
        let x = _mm_loadu_si128(px.add(i) as *const __m128i);
        for (r, a) in acc.iter_mut().enumerate() {
            let w8 = _mm_loadl_epi64(fp.add(r * k + i) as *const __m128i);
            let w = _mm_add_epi16(_mm_cvtepi8_epi16(w8), fo16);
            *a = _mm_add_epi32(*a, _mm_madd_epi16(x, w));
        }
        i += 8;
    }
    let h01 = _mm_hadd_epi32(acc[0], acc[1]);
    let h23 = _mm_hadd_epi32(acc[2], acc[3]);
    let mut sums = [0i32; 4];
    _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, _mm_hadd_epi32(h01, h23));
    for (r, s) in sums.iter_mut().enumerate() {
        let row = &filter[(row0 + r) * k..(row0 + r + 1) * k];
        *s = s.wrapping_add(dot_scalar(&patch[k8..k], &row[k8..], fo as i32));
    }
    sums
}

#[target_feature(enable = "sse4.1")]
unsafe fn conv2d_s8_sse41(
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
                for oc0 in (0..d.out_c).step_by(4) {
                    let sums = if oc0 < oc4 {
                        dot4_sse41(patch, ops.filter, k, oc0, 0)
                    } else {
                        [0; 4]
                    };
                    for r in 0..4.min(d.out_c - oc0) {
                        let oc = oc0 + r;
                        let mut acc = if oc0 < oc4 {
                            sums[r]
                        } else {
                            dot_scalar(patch, &ops.filter[oc * k..(oc + 1) * k], 0)
                        };
                        if let Some(bias) = ops.bias {
                            acc = acc.wrapping_add(bias[oc]);
                        }
                        out_pixel[oc] = requant_conv_scalar(
                            acc,
                            per_channel(ops.multipliers, oc),
                            per_channel(ops.shifts, oc),
                            p.output_offset,
                            p.act_min,
                            p.act_max,
                        );
                    }
                }
            }
        }
    }
}

#[target_feature(enable = "sse4.1")]
unsafe fn depthwise_s8_sse41(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) {
    let w = p.window;
    let c8 = d.out_c & !7;
    let offset = _mm_set1_epi16(p.input_offset as i16);
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                let out_at = d.output_index(b, out_y, out_x, 0);
                let mut c = 0;
                while c < c8 {
                    let mut acc = [_mm_setzero_si128(); 2];
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
                            let x8 = &ops.input[x_at..x_at + 8];
                            let f8 = &ops.filter[f_at..f_at + 8];
                            let x = _mm_add_epi16(
                                _mm_cvtepi8_epi16(_mm_loadl_epi64(x8.as_ptr() as *const __m128i)),
                                offset,
                            );
                            let f =
                                _mm_cvtepi8_epi16(_mm_loadl_epi64(f8.as_ptr() as *const __m128i));
                            let product = _mm_mullo_epi16(x, f);
                            acc[0] = _mm_add_epi32(acc[0], _mm_cvtepi16_epi32(product));
                            acc[1] = _mm_add_epi32(
                                acc[1],
                                _mm_cvtepi16_epi32(_mm_unpackhi_epi64(product, product)),
                            );
                        }
                    }
                    let mut sums = [0i32; 8];
                    _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, acc[0]);
                    _mm_storeu_si128(sums.as_mut_ptr().add(4) as *mut __m128i, acc[1]);
                    for (r, &s) in sums.iter().enumerate() {
                        let ch = c + r;
                        let mut a = s;
                        if let Some(bias) = ops.bias {
                            a = a.wrapping_add(bias[ch]);
                        }
                        output[out_at + ch] = requant_conv_scalar(
                            a,
                            per_channel(ops.multipliers, ch),
                            per_channel(ops.shifts, ch),
                            p.output_offset,
                            p.act_min,
                            p.act_max,
                        );
                    }
                    c += 8;
                }
                for c in c8..d.out_c {
                    output[out_at + c] = depthwise_channel_scalar(p, d, ops, b, out_y, out_x, c);
                }
            }
        }
    }
}

#[target_feature(enable = "sse4.1")]
unsafe fn fully_connected_s8_sse41(
    p: &FullyConnectedS8,
    dims: &FcDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) {
    let k = dims.accum_depth;
    let mut patch = [0i16; MAX_PATCH];
    let o4 = dims.output_depth & !3;
    let fo = p.filter_offset as i16;
    for b in 0..dims.batches {
        let row = &ops.input[b * k..(b + 1) * k];
        for (v, &x) in patch.iter_mut().zip(row) {
            *v = x as i16 + p.input_offset as i16;
        }
        let patch = &patch[..k];
        let out_row = &mut output[b * dims.output_depth..(b + 1) * dims.output_depth];
        let mut oc = 0;
        while oc < o4 {
            let sums = dot4_sse41(patch, ops.filter, k, oc, fo);
            for (r, &a) in sums.iter().enumerate() {
                out_row[oc + r] = fc_finish(p, ops, oc + r, a);
            }
            oc += 4;
        }
        for oc in o4..dims.output_depth {
            let a = dot_scalar(patch, &ops.filter[oc * k..(oc + 1) * k], p.filter_offset);
            out_row[oc] = fc_finish(p, ops, oc, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::host_simd::testing::*;

    fn run_conv(case: &ConvCase, isa: Isa) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        if supported(isa) {
            assert!(conv2d_s8(&case.p, case.d, case.ops(), &mut out, isa));
            out
        } else {
            conv_reference(case)
        }
    }

    /// The dot-product AVX2 convolution, which the dispatcher keeps for filters too large to
    /// repack (larger than these random cases).
    fn run_conv_dot(case: &ConvCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        let ops = case.ops();
        match conv_patch_len(&case.d, &ops, &out) {
            Some(k) if supported(Isa::Avx2) => {
                // SAFETY: AVX2 checked; `conv_patch_len` checked the slice lengths.
                unsafe { conv2d_s8_avx2_dot(&case.p, &case.d, &ops, &mut out, k) };
                out
            }
            _ => conv_reference(case),
        }
    }

    fn run_depthwise(case: &DepthwiseCase, isa: Isa) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        if supported(isa) && depthwise_conv2d_s8(&case.p, case.d, case.ops(), &mut out, isa) {
            out
        } else {
            depthwise_reference(case)
        }
    }

    /// The row-based AVX2 depthwise kernel alone (the dispatcher falls back to the other one
    /// when it declines, which would hide a kernel that never runs).
    fn run_depthwise_rows(case: &DepthwiseCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        let ops = case.ops();
        if !supported(Isa::Avx2) || !depthwise_ok(&case.d, &ops, &out) {
            return depthwise_reference(case);
        }
        // SAFETY: AVX2 checked; `depthwise_ok` checked the slice lengths.
        let ran = unsafe { depthwise_s8_avx2_rows(&case.p, &case.d, &ops, &mut out) };
        // It declines only channel counts that are not multiples of 16 and geometries its
        // buffers cannot hold (large dilations).
        assert_eq!(ran, depthwise_rows_fit(&case.p, &case.d), "{:?}", case.d);
        if ran {
            out
        } else {
            depthwise_reference(case)
        }
    }

    /// The AVX-512 depthwise kernel alone (the dispatcher falls back to the AVX2 kernels when
    /// it declines, which would hide a kernel that never runs).
    fn run_depthwise512(case: &DepthwiseCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        let ops = case.ops();
        if !supported(Isa::Avx512) || !depthwise_ok(&case.d, &ops, &out) {
            return depthwise_reference(case);
        }
        // SAFETY: AVX-512 checked; `depthwise_ok` checked the slice lengths.
        let ran = unsafe { depthwise512::depthwise_s8_avx512(&case.p, &case.d, &ops, &mut out) };
        // It declines only input offsets outside -127..=128 and filters or spans too large
        // for its buffers, none of which these cases have.
        assert!(ran, "{:?}", case.d);
        assert!(depthwise512::fits(&case.p, &case.d));
        out
    }

    /// Depthwise cases around the KWS DS-CNN layers (25x5x64, 3x3, stride 1, SAME padding,
    /// per-channel requantization with a fused ReLU), and odd paddings, strides, dilations,
    /// wide filters (several quads per row), wide images (column tiles), channel counts that
    /// are not multiples of 64, and every requantization mode.
    fn depthwise_kws_case(rng: &mut crate::kernels::testing::Rng) -> DepthwiseCase {
        use crate::kernels::Window;
        use crate::quant::quantize_multiplier;
        let mut case = DepthwiseCase::random(rng);
        let kws = rng.range(0, 2) == 0;
        let channels = if kws {
            64
        } else {
            [1, 16, 33, 64, 65, 96, 128, 200][rng.range(0, 7) as usize]
        };
        let (k_h, k_w) = if kws {
            (3, 3)
        } else {
            (rng.range(1, 5) as usize, rng.range(1, 9) as usize)
        };
        let (in_h, in_w) = if kws {
            (25, 5)
        } else {
            (rng.range(1, 12) as usize, rng.range(1, 40) as usize)
        };
        let pick = |rng: &mut crate::kernels::testing::Rng, lo: i64, hi: i64| {
            if kws {
                lo as u16
            } else {
                rng.range(lo, hi) as u16
            }
        };
        let (stride_h, stride_w) = (pick(rng, 1, 3), pick(rng, 1, 3));
        let (dilation_h, dilation_w) = (pick(rng, 1, 2), pick(rng, 1, 2));
        let span_h = (k_h - 1) * dilation_h as usize + 1;
        let span_w = (k_w - 1) * dilation_w as usize + 1;
        let (pad_top, pad_left) = if kws {
            (1, 1)
        } else {
            (
                rng.range(0, span_h as i64) as u16,
                rng.range(0, span_w as i64) as u16,
            )
        };
        let out = |size: usize, pad: u16, span: usize, stride: u16| {
            (size + 2 * pad as usize).saturating_sub(span) / stride as usize + 1
        };
        let batches = if kws { 1 } else { rng.range(1, 2) as usize };
        case.p.window = Window {
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
        };
        case.p.depth_multiplier = 1;
        case.d = SpatialDims {
            batches,
            in_h,
            in_w,
            in_c: channels,
            out_h: out(in_h, pad_top, span_h, stride_h),
            out_w: out(in_w, pad_left, span_w, stride_w),
            out_c: channels,
            filter_h: k_h,
            filter_w: k_w,
            filter_in_c: 1,
        };
        case.input = rng.vec_i8(batches * in_h * in_w * channels);
        case.filter = rng.vec_i8(k_h * k_w * channels);
        if case.bias.is_some() || kws {
            case.bias = Some(
                (0..channels)
                    .map(|_| match rng.range(0, 9) {
                        0 => rng.next_u64() as i32,
                        1 => i32::MIN,
                        _ => rng.range(-30000, 30000) as i32,
                    })
                    .collect(),
            );
        }
        let per_tensor = !kws && rng.range(0, 3) == 0;
        let n = if per_tensor { 1 } else { channels };
        let (multipliers, shifts) = (0..n)
            .map(|_| match rng.range(0, 8) {
                0 => (rng.next_u64() as i32, rng.range(-31, 30) as i32),
                1 => quantize_multiplier(rng.f32(0.5, 40.0) as f64),
                2 => (i32::MIN, rng.range(-31, 30) as i32),
                _ => quantize_multiplier(rng.f32(1e-5, 0.05) as f64),
            })
            .unzip();
        case.multipliers = multipliers;
        case.shifts = shifts;
        if kws || rng.range(0, 1) == 0 {
            // A fused ReLU: the lower clamp at the output offset.
            case.p.act_min = case.p.output_offset;
            case.p.act_max = 127;
        }
        case
    }

    crate::kernel_variants_match_reference!(
        depthwise_conv2d_s8_avx512_kws,
        cases = 400,
        setup = depthwise_kws_case,
        reference = depthwise_reference,
        variants = [run_depthwise512, |c| run_depthwise(c, Isa::Avx512)]
    );

    fn run_fc(case: &FcCase, isa: Isa) -> Vec<i8> {
        let mut out = vec![0i8; case.dims.batches * case.dims.output_depth];
        if supported(isa) {
            assert!(fully_connected_s8(
                &case.p,
                case.dims,
                case.ops(),
                &mut out,
                isa
            ));
            out
        } else {
            fc_reference(case)
        }
    }

    crate::kernel_variants_match_reference!(
        conv2d_s8_x86_variants,
        cases = 300,
        setup = ConvCase::random,
        reference = conv_reference,
        variants = [
            |c| run_conv(c, Isa::Avx2),
            run_conv_dot,
            |c| run_conv(c, Isa::Sse41)
        ]
    );

    crate::kernel_variants_match_reference!(
        depthwise_conv2d_s8_x86_variants,
        cases = 300,
        setup = DepthwiseCase::random,
        reference = depthwise_reference,
        variants = [
            |c| run_depthwise(c, Isa::Avx512),
            run_depthwise512,
            |c| run_depthwise(c, Isa::Avx2),
            run_depthwise_rows,
            |c| run_depthwise(c, Isa::Sse41)
        ]
    );

    crate::kernel_variants_match_reference!(
        fully_connected_s8_x86_variants,
        cases = 300,
        setup = FcCase::random,
        reference = fc_reference,
        variants = [|c| run_fc(c, Isa::Avx2), |c| run_fc(c, Isa::Sse41)]
    );

    #[derive(Debug)]
    struct PoolCase {
        p: Pool2dS8,
        d: SpatialDims,
        input: Vec<i8>,
    }

    fn random_pool(rng: &mut crate::kernels::testing::Rng) -> PoolCase {
        use crate::tensor::{DType, Location, Shape, TensorDef};
        let unused = TensorDef {
            dtype: DType::I8,
            shape: Shape::new(&[1]).expect("rank 1"),
            location: Location::Arena(0),
            quant: None,
        };
        let c = [1, 5, 8, 13, 32, 33, 64, 70][rng.range(0, 7) as usize];
        let (k_h, k_w) = (rng.range(1, 6) as usize, rng.range(1, 6) as usize);
        let (in_h, in_w) = (
            rng.range(k_h as i64, 12) as usize,
            rng.range(k_w as i64, 12) as usize,
        );
        let (stride_h, stride_w) = (rng.range(1, 3) as u16, rng.range(1, 3) as u16);
        // SAME-style padding (at most filter - 1), so every window holds an input element.
        let (pad_top, pad_left) = (
            rng.range(0, k_h as i64 - 1) as u16,
            rng.range(0, k_w as i64 - 1) as u16,
        );
        let out = |size: usize, pad: u16, k: usize, stride: u16| {
            (size + pad as usize).saturating_sub(k) / stride as usize + 1
        };
        let batches = rng.range(1, 2) as usize;
        let d = SpatialDims {
            batches,
            in_h,
            in_w,
            in_c: c,
            out_h: out(in_h, pad_top, k_h, stride_h),
            out_w: out(in_w, pad_left, k_w, stride_w),
            out_c: c,
            filter_h: k_h,
            filter_w: k_w,
            filter_in_c: 1,
        };
        let act_min = if rng.range(0, 3) == 0 {
            rng.range(-128, 0) as i32
        } else {
            -128
        };
        let act_max = if rng.range(0, 3) == 0 {
            rng.range(act_min as i64, 127) as i32
        } else {
            127
        };
        PoolCase {
            p: Pool2dS8 {
                kind: if rng.range(0, 1) == 0 {
                    PoolKind::Average
                } else {
                    PoolKind::Max
                },
                input: unused.clone(),
                output: unused,
                filter_h: k_h as u16,
                filter_w: k_w as u16,
                window: crate::kernels::Window {
                    stride_h,
                    stride_w,
                    dilation_h: 1,
                    dilation_w: 1,
                    pad_top,
                    pad_left,
                },
                act_min,
                act_max,
            },
            d,
            input: rng.vec_i8(batches * in_h * in_w * c),
        }
    }

    fn pool_reference(case: &PoolCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        crate::kernels::pooling::pool2d_s8_reference(&case.p, case.d, &case.input, &mut out)
            .expect("windows are not empty");
        out
    }

    fn run_pool(case: &PoolCase) -> Vec<i8> {
        let mut out = vec![0i8; case.d.output_elements()];
        if !supported(Isa::Avx2) {
            return pool_reference(case);
        }
        assert!(pool2d_s8(&case.p, case.d, &case.input, &mut out, Isa::Avx2));
        out
    }

    crate::kernel_variants_match_reference!(
        pool2d_s8_x86_variants,
        cases = 300,
        setup = random_pool,
        reference = pool_reference,
        variants = [run_pool]
    );

    #[test]
    fn avx2_single_rounding_matches_scalar() {
        if !supported(Isa::Avx2) {
            return;
        }
        let mut rng = crate::kernels::testing::Rng(11);
        let special = [0, 1, -1, i32::MIN, i32::MAX, 1 << 30, -(1 << 30), 777];
        for round in 0..20_000 {
            let mut acc = [0i32; 8];
            let mut mult = [0i32; 8];
            let mut shift = [0i32; 8];
            for l in 0..8 {
                acc[l] = if round % 3 == 0 {
                    special[rng.range(0, 7) as usize]
                } else {
                    rng.next_u64() as i32
                };
                mult[l] = if round % 5 == 0 {
                    special[rng.range(0, 7) as usize]
                } else {
                    rng.next_u64() as i32
                };
                shift[l] = rng.range(-31, 30) as i32;
            }
            let mut got = [0i32; 8];
            // SAFETY: AVX2 checked above; arrays hold 8 lanes.
            unsafe {
                let load = |a: &[i32; 8]| _mm256_loadu_si256(a.as_ptr() as *const __m256i);
                let v = requant_single_avx2(load(&acc), load(&mult), load(&shift));
                _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, v);
            }
            for l in 0..8 {
                assert_eq!(
                    got[l],
                    multiply_by_quantized_multiplier_single_rounding(acc[l], mult[l], shift[l]),
                    "acc {} mult {} shift {}",
                    acc[l],
                    mult[l],
                    shift[l]
                );
            }
        }
    }

    #[test]
    fn avx2_clamped_requant_matches_scalar() {
        if !supported(Isa::Avx2) {
            return;
        }
        let mut rng = crate::kernels::testing::Rng(19);
        let special = [
            0,
            1,
            -1,
            i32::MIN,
            i32::MAX,
            1 << 30,
            -(1 << 30),
            4095,
            -4096,
        ];
        for round in 0..40_000 {
            let mut acc = [0i32; 8];
            let mut mult = [0i32; 8];
            let mut shift = [0i32; 8];
            for l in 0..8 {
                acc[l] = match round % 3 {
                    0 => special[rng.range(0, 8) as usize],
                    1 => rng.range(-100_000, 100_000) as i32,
                    _ => rng.next_u64() as i32,
                };
                mult[l] = if round % 4 == 0 {
                    (rng.next_u64() as i32).max(i32::MIN + 1)
                } else {
                    rng.range(1 << 30, i32::MAX as i64) as i32
                };
                shift[l] = rng.range(-31, -1) as i32;
            }
            let out_offset = rng.range(-128, 127) as i32;
            let lo = rng.range(out_offset as i64, 127) as i32;
            let hi = rng.range(lo as i64, 127) as i32;
            let ops = S8Operands {
                input: &[],
                filter: &[],
                bias: None,
                multipliers: &mult,
                shifts: &shift,
            };
            assert_eq!(
                requant_mode(&ops, out_offset, lo, i64::MAX),
                REQUANT_CLAMPED
            );
            let mut got = [0i32; 8];
            // SAFETY: AVX2 checked above; arrays hold 8 lanes.
            unsafe {
                let rq = Requant8::new(&ops, 0, out_offset, lo, hi);
                let v =
                    rq.apply::<REQUANT_CLAMPED>(_mm256_loadu_si256(acc.as_ptr() as *const __m256i));
                _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, v);
            }
            for l in 0..8 {
                let want = multiply_by_quantized_multiplier(acc[l], mult[l], shift[l])
                    .wrapping_add(out_offset)
                    .clamp(lo, hi);
                assert_eq!(
                    got[l], want,
                    "acc {} mult {} shift {}",
                    acc[l], mult[l], shift[l]
                );
            }
        }
    }

    #[test]
    fn avx2_folded_requant_matches_scalar() {
        if !supported(Isa::Avx2) {
            return;
        }
        let mut rng = crate::kernels::testing::Rng(23);
        for round in 0..40_000 {
            let taps = rng.range(1, 2000) as usize;
            let bound = conv_acc_bound(taps);
            let mut acc = [0i32; 16];
            let mut bias = [0i32; 16];
            let mut mult = [0i32; 16];
            let mut shift = [0i32; 16];
            let bias_room = i64::from(i32::MAX) - bound;
            for l in 0..16 {
                acc[l] = match round % 3 {
                    0 => [0, bound, -bound, 1, -1][rng.range(0, 4) as usize] as i32,
                    _ => rng.range(-bound, bound) as i32,
                };
                bias[l] = match round % 4 {
                    0 => [bias_room, -bias_room, 0][rng.range(0, 2) as usize] as i32,
                    _ => rng.range(-bias_room.min(1 << 20), bias_room.min(1 << 20)) as i32,
                };
                mult[l] = if round % 4 == 0 {
                    (rng.next_u64() as i32).max(i32::MIN + 1)
                } else {
                    rng.range(1 << 30, i32::MAX as i64) as i32
                };
                shift[l] = rng.range(-i64::from(FOLDED_MAX_RIGHT), -1) as i32;
            }
            let out_offset = rng.range(-128, 127) as i32;
            let lo = rng.range(out_offset as i64, 127) as i32;
            let hi = rng.range(lo as i64, 127) as i32;
            let ops = S8Operands {
                input: &[],
                filter: &[],
                bias: Some(&bias),
                multipliers: &mult,
                shifts: &shift,
            };
            assert_eq!(requant_mode(&ops, out_offset, lo, bound), REQUANT_FOLDED);
            let mut got = [0i8; 16];
            // SAFETY: AVX2 checked above; arrays hold 16 lanes.
            unsafe {
                let rq = [
                    Requant8::new(&ops, 0, out_offset, lo, hi),
                    Requant8::new(&ops, 8, out_offset, lo, hi),
                ];
                let load = |at: usize| _mm256_loadu_si256(acc[at..].as_ptr() as *const __m256i);
                let bytes = requant16::<REQUANT_FOLDED>(&rq, load(0), load(8));
                _mm_storeu_si128(got.as_mut_ptr() as *mut __m128i, bytes);
            }
            for l in 0..16 {
                let want = requant_conv_scalar(
                    acc[l].wrapping_add(bias[l]),
                    mult[l],
                    shift[l],
                    out_offset,
                    lo,
                    hi,
                );
                assert_eq!(
                    got[l], want,
                    "acc {} bias {} mult {} shift {}",
                    acc[l], bias[l], mult[l], shift[l]
                );
            }
        }
    }

    #[test]
    fn avx2_requant_matches_scalar_on_edge_values() {
        if !supported(Isa::Avx2) {
            return;
        }
        let mut rng = crate::kernels::testing::Rng(7);
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
            let mut acc = [0i32; 8];
            let mut mult = [0i32; 8];
            let mut shift = [0i32; 8];
            for l in 0..8 {
                acc[l] = if round % 3 == 0 {
                    special[rng.range(0, 8) as usize]
                } else {
                    rng.next_u64() as i32
                };
                mult[l] = if round % 5 == 0 {
                    special[rng.range(0, 8) as usize]
                } else {
                    rng.next_u64() as i32
                };
                shift[l] = rng.range(-31, 30) as i32;
            }
            let mut got = [0i32; 8];
            // SAFETY: AVX2 checked above; arrays hold 8 lanes.
            unsafe {
                let load = |a: &[i32; 8]| _mm256_loadu_si256(a.as_ptr() as *const __m256i);
                let v = requant_double_avx2(load(&acc), load(&mult), load(&shift));
                _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, v);
                // The hoisted form, with no bias and the clamp opened to all of int32.
                let ops = S8Operands {
                    input: &[],
                    filter: &[],
                    bias: None,
                    multipliers: &mult,
                    shifts: &shift,
                };
                let rq = Requant8::new(&ops, 0, 0, i32::MIN, i32::MAX);
                let mut hoisted = [0i32; 8];
                _mm256_storeu_si256(
                    hoisted.as_mut_ptr() as *mut __m256i,
                    rq.apply::<REQUANT_GENERAL>(load(&acc)),
                );
                assert_eq!(hoisted, got);
                if requant_mode(&ops, 0, i32::MIN, i64::MAX) == REQUANT_PLAIN {
                    _mm256_storeu_si256(
                        hoisted.as_mut_ptr() as *mut __m256i,
                        rq.apply::<REQUANT_PLAIN>(load(&acc)),
                    );
                    assert_eq!(hoisted, got);
                }
            }
            for l in 0..8 {
                assert_eq!(
                    got[l],
                    multiply_by_quantized_multiplier(acc[l], mult[l], shift[l]),
                    "acc {} mult {} shift {}",
                    acc[l],
                    mult[l],
                    shift[l]
                );
            }
        }
    }
}

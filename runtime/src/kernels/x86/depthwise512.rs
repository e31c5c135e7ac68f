//! AVX-512 (F/BW/VL/VNNI) DEPTHWISE_CONV_2D int8, depth multiplier 1.
//!
//! Four filter taps of one channel go through one `vpdpbusd` lane (unsigned input bytes times
//! signed weights, four products summed into int32): the input is offset to unsigned with
//! `u = x + 128` (`x ^ 0x80`), and `sum(w * (x + input_offset)) = sum(w * u) +
//! (input_offset - 128) * sum(w)`, whose last term is a per-channel constant folded into the
//! bias. Padding reads `u = 128 - input_offset` (the value whose `x + input_offset` is zero),
//! in `0..=255` because the input offset is in `-127..=128` (checked), so every window sums
//! all of its taps and the correction is the same for every pixel.
//!
//! Layout: channels are processed 64 at a time (a chunk; the last one masked, so any channel
//! count is taken). For each input row a window row reaches, the four taps `4g..4g + 4` of
//! filter row `fy` starting at each output column are interleaved once into "quads" (for 64
//! channels, four 64-byte vectors of 16 channels x 4 taps) with `unpack{lo,hi}_epi8` then
//! `unpack{lo,hi}_epi16`, which leaves vector `j` holding channels `16k + 4j..16k + 4j + 4` in
//! its 128-bit lane `k`. The weights are interleaved the same way and stay in registers, as do
//! the requantization constants (regrouped into that order once per chunk). After the
//! requantization, `packs_epi32` of vectors 0 and 1 (and 2 and 3) then `packs_epi16` put the
//! 64 bytes back in channel order, with no cross-lane shuffle: the two permutations cancel.
//!
//! Loops: per chunk, the quads of the input rows a window reaches are kept in a ring of
//! `span_h` rows plus a padding row, column tile by column tile (wide images). With stride 1,
//! no dilation and filters at most 4 wide (the KWS DS-CNN layers), the quads of a band of
//! output rows are built first and its pixels run as one flat loop (no per-row work), and a
//! quad row is built from byte pairs of neighbouring columns (6 shuffles instead of 8).
//!
//! Exactness: `w * u` products are exact and the four-product sums wrap as the reference's
//! int32 sums do (equal modulo 2^32). Requantization is TFLite's double rounding (see
//! [`Slot::apply`]); the fast modes fold bias, rounding, the rounding divide and the output
//! offset into one 64-bit add and an arithmetic shift, which is exact when the accumulators
//! are bounded and the shifts are right shifts of 1 to 22 (checked once per call,
//! [`requant_mode`]); the int8 packing saturates, so it clamps as the reference's clamp does
//! where the bounds are -128 and 127.
//!
//! Declines (returns `false`, the AVX2 kernels then run): input offsets outside `-127..=128`,
//! filters of more than [`MAX_QUADS`] quads (`filter_h * ceil(filter_w / 4)`), windows
//! spanning more than [`MAX_SPAN`] rows or [`ROW_COLS`] columns, empty outputs. Stack: about
//! 28 KiB.

#![allow(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use crate::kernels::conv::{tap, SpatialDims};
use crate::kernels::depthwise::DepthwiseConv2dS8;
use crate::kernels::host_simd::S8Operands;

/// Channels per chunk (one 64-byte vector of input bytes).
const CHUNK: usize = 64;
/// Bytes of one quad: 64 channels x 4 taps.
const QUAD: usize = 4 * CHUNK;
/// Quads per output pixel (`filter_h * ceil(filter_w / 4)`) the kernel takes at most (their
/// interleaved weights take 4 KiB; a 3x3 filter's 768 bytes).
const MAX_QUADS: usize = 16;
/// Input rows a window spans (`(filter_h - 1) * dilation_h + 1`) the row ring keeps at most.
const MAX_SPAN: usize = 32;
/// Bytes of the quad row ring (`span_h` input rows plus one padding row, each `tile_w`
/// output columns of `ceil(filter_w / 4)` quads); wider images are done in column tiles.
const RING_BYTES: usize = 12 * 1024;
/// Input columns (64 bytes each) one column tile's windows span at most.
const ROW_COLS: usize = 40;

/// Requantization modes. [`FAST_RELU`]: right shifts of 1 to [`FAST_MAX_RIGHT`] and bounded
/// accumulators (see [`requant_mode`]) with a lower clamp at or above the output offset, so
/// negative ties need no care; [`FAST`]: the same without the clamp condition; [`GENERAL`]:
/// TFLite's arithmetic step by step (left shifts, wrapping sums, the saturating multiplier).
const FAST_RELU: u8 = 0;
const FAST: u8 = 1;
const GENERAL: u8 = 2;

/// The largest `|acc + bias|` (as exact integers) the fast modes take: no int32 sum of the
/// reference wraps, the requantized value is within `±2^30`, so adding the output offset
/// cannot wrap either, and every 64-bit sum stays below `2^63`.
const FAST_BOUND: i64 = 1 << 30;
/// Largest right shift `r` the fast modes take (see [`requant_mode`]).
const FAST_MAX_RIGHT: i32 = 22;

/// Geometry worked out once per call.
struct Geometry {
    /// Stride 1, no dilation and at most 4 taps per filter row (see [`build_row`]).
    dense: bool,
    /// Dense with vertical stride 1 and whole rows in a tile: the pixels of `band` output
    /// rows run as one flat loop over quad rows built beforehand (see [`chunk`]).
    flat: bool,
    band: usize,
    /// Quads per filter row (`ceil(filter_w / 4)`) and per pixel.
    groups: usize,
    quads: usize,
    /// Input rows and columns one window spans.
    span_h: usize,
    span_w: usize,
    /// Output columns per tile, and the bytes of one ring row (`tile_w * groups` quads).
    tile_w: usize,
    ring_row: usize,
}

impl Geometry {
    fn new(p: &DepthwiseConv2dS8, d: &SpatialDims) -> Option<Geometry> {
        if d.filter_h == 0 || d.filter_w == 0 || d.out_h == 0 || d.out_w == 0 || d.in_c == 0 {
            return None;
        }
        if !(-127..=128).contains(&p.input_offset) {
            return None;
        }
        let groups = d.filter_w.div_ceil(4);
        let quads = d.filter_h * groups;
        let span_h = (d.filter_h - 1) * p.window.dilation_h as usize + 1;
        if quads > MAX_QUADS || span_h > MAX_SPAN {
            return None;
        }
        let span_w = (d.filter_w - 1) * p.window.dilation_w as usize + 1;
        let stride_w = p.window.stride_w as usize;
        if span_w > ROW_COLS || stride_w == 0 {
            return None;
        }
        let tile_w = (RING_BYTES / ((span_h + 1) * groups * QUAD))
            .min((ROW_COLS - span_w) / stride_w + 1)
            .min(d.out_w);
        if tile_w == 0 {
            return None;
        }
        let dense = stride_w == 1 && span_w == d.filter_w && groups == 1;
        // Output rows per band of the flat path: its quad rows (`band + span_h - 1`, whole
        // image rows) fill the ring.
        let band = (RING_BYTES / (d.out_w * QUAD)).saturating_sub(span_h - 1);
        // Each band rebuilds `span_h - 1` rows of the previous one: worth it for bands of 4 rows
        // or more (or the whole image).
        let flat = dense
            && p.window.stride_h == 1
            && tile_w == d.out_w
            && band > 0
            && (band >= 4 || band >= d.out_h);
        Some(Geometry {
            dense,
            flat,
            band: band.min(d.out_h),
            groups,
            quads,
            span_h,
            span_w,
            tile_w,
            ring_row: tile_w * groups * QUAD,
        })
    }
}

/// `true` when [`depthwise_s8_avx512`] takes this geometry (the slice checks aside).
#[cfg(test)]
pub(super) fn fits(p: &DepthwiseConv2dS8, d: &SpatialDims) -> bool {
    Geometry::new(p, d).is_some()
}

/// The fastest exact mode for these operands (see the `FAST*` constants).
fn requant_mode(p: &DepthwiseConv2dS8, d: &SpatialDims, ops: &S8Operands<'_>) -> u8 {
    // The fast modes shift the odd lanes right by `r - 1` and fold the output offset into
    // their 64-bit rounding constant (`|offset| * 2^(31 + r) <= 2^61`).
    // (A fold rather than `any`: no early exit, so it vectorizes; it runs on every call.)
    let (min_shift, max_shift) = ops
        .shifts
        .iter()
        .fold((i32::MAX, i32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    if min_shift < -FAST_MAX_RIGHT || max_shift > -1 {
        return GENERAL;
    }
    let taps = (d.filter_h * d.filter_w) as i64;
    // |sum(w * u)| and |(input_offset - 128) * sum(w)| are each at most 255 * 128 per tap.
    let products = 2 * taps * 255 * 128;
    let max_bias = ops.bias.map_or(0, |bias| {
        bias.iter().map(|&b| i64::from(b).abs()).max().unwrap_or(0)
    });
    if products + max_bias > FAST_BOUND {
        GENERAL
    } else if p.act_min >= p.output_offset {
        FAST_RELU
    } else {
        FAST
    }
}

/// The per-channel requantization constants of one quad vector `j` of a chunk (16 channels
/// `16k + 4j + i`, in that lane order; 64-bit fields hold even or odd lanes).
#[derive(Clone, Copy)]
struct Slot {
    /// Multiplier (its even lanes are what `mul_epi32` reads) and the odd lanes moved down.
    mult: __m512i,
    mult_odd: __m512i,
    /// Fast modes: `(bias + correction) * m + 2^30` (plus `half` in [`FAST_RELU`]), per even
    /// / odd lane.
    add_even: __m512i,
    add_odd: __m512i,
    /// `2^(30 + r) + out_offset * 2^(31 + r)`, and [`FAST`]'s `2^31` (the rounding constant
    /// of negative values is smaller by that).
    half_even: __m512i,
    half_odd: __m512i,
    tie_even: __m512i,
    tie_odd: __m512i,
    /// Fast modes: `r - 1`, the right shift after the high halves (`floor(x / 2^32)`).
    shift: __m512i,
    /// [`GENERAL`]: bias plus correction (wrapping), left and right shifts, the rounding
    /// divide's mask and half mask, and the lanes whose multiplier is `i32::MIN`.
    bias: __m512i,
    left: __m512i,
    right: __m512i,
    mask: __m512i,
    half_mask: __m512i,
    mult_min: __mmask16,
}

/// Lane `2i` from `a`'s dword `2i`, lane `2i + 1` from `b`'s dword `2i`: the low halves of
/// the even and odd 64-bit results back in lane order.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn low_halves(a: __m512i, b: __m512i) -> __m512i {
    let idx = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    _mm512_permutex2var_epi32(a, idx, b)
}

/// The high halves of the 64-bit lanes of `even` and `odd` (`floor(x / 2^32)`), in lane order:
/// lane `2i` from `even`'s lane `i`, lane `2i + 1` from `odd`'s.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn high_halves(even: __m512i, odd: __m512i) -> __m512i {
    let idx = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    _mm512_permutex2var_epi32(even, idx, odd)
}

impl Slot {
    /// Requantization of 16 accumulators `sum(w * u)`, with the output offset added (before
    /// the clamp). [`GENERAL`] adds the offset last (wrapping, as the reference).
    ///
    /// Fast modes: with `x = acc + bias` and `a = x*m + 2^30`, TFLite's doubling high multiply
    /// is `h = floor(a / 2^31)` (no saturation: `|x| < 2^31`), and its rounding divide by
    /// `2^r` (`r >= 1`) is `floor((h + 2^(r-1)) / 2^r)` for `h >= 0` and
    /// `floor((h + 2^(r-1) - 1) / 2^r)` for `h < 0`, that is `floor((a + c) / 2^(31 + r))`
    /// with `c = 2^(30+r)`, less `2^31` when `a < 0`; adding `out_offset * 2^(31 + r)` to `c`
    /// adds the offset to the result. [`FAST_RELU`] drops the `a < 0` correction: it changes
    /// only results `<= 0` before the offset, which the clamp (lower bound at or above the
    /// output offset) maps to the same value.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn apply<const MODE: u8>(&self, offset: __m512i, acc: __m512i) -> __m512i {
        let acc_odd = _mm512_srli_epi64(acc, 32);
        if MODE == FAST_RELU {
            let even = _mm512_add_epi64(_mm512_mul_epi32(acc, self.mult), self.add_even);
            let odd = _mm512_add_epi64(_mm512_mul_epi32(acc_odd, self.mult_odd), self.add_odd);
            return _mm512_srav_epi32(high_halves(even, odd), self.shift);
        }
        if MODE == FAST {
            let zero = _mm512_setzero_si512();
            let even = _mm512_add_epi64(_mm512_mul_epi32(acc, self.mult), self.add_even);
            let odd = _mm512_add_epi64(_mm512_mul_epi32(acc_odd, self.mult_odd), self.add_odd);
            let neg_even = _mm512_cmplt_epi64_mask(even, zero);
            let neg_odd = _mm512_cmplt_epi64_mask(odd, zero);
            let even = _mm512_add_epi64(even, self.half_even);
            let odd = _mm512_add_epi64(odd, self.half_odd);
            let even = _mm512_mask_sub_epi64(even, neg_even, even, self.tie_even);
            let odd = _mm512_mask_sub_epi64(odd, neg_odd, odd, self.tie_odd);
            return _mm512_srav_epi32(high_halves(even, odd), self.shift);
        }
        let one = _mm512_set1_epi32(1);
        let zero = _mm512_setzero_si512();
        let x = _mm512_sllv_epi32(_mm512_add_epi32(acc, self.bias), self.left);
        let round = _mm512_set1_epi64(1 << 30);
        let even = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, self.mult), round), 31);
        let odd = _mm512_srai_epi64(
            _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_srli_epi64(x, 32), self.mult_odd),
                round,
            ),
            31,
        );
        // floor((x*m + 2^30) / 2^31) fits in int32 except for x = m = i32::MIN (2^31), which
        // TFLite saturates to i32::MAX.
        let saturated = _mm512_mask_cmpeq_epi32_mask(self.mult_min, x, _mm512_set1_epi32(i32::MIN));
        let high = _mm512_mask_mov_epi32(
            low_halves(even, odd),
            saturated,
            _mm512_set1_epi32(i32::MAX),
        );
        // RoundingDivideByPOT: (high >> r) + (remainder > half_mask + (high < 0)).
        let remainder = _mm512_and_si512(high, self.mask);
        let negative = _mm512_cmplt_epi32_mask(high, zero);
        let threshold = _mm512_mask_add_epi32(self.half_mask, negative, self.half_mask, one);
        let shifted = _mm512_srav_epi32(high, self.right);
        let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
        _mm512_add_epi32(_mm512_mask_add_epi32(shifted, up, shifted, one), offset)
    }
}

/// Mask of the channels of the chunk at `base` that exist (`channels - base`, at most 64).
#[inline(always)]
fn chunk_mask(channels: usize, base: usize) -> __mmask64 {
    let n = (channels - base).min(CHUNK);
    if n == CHUNK {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Interleaves four 64-byte vectors (taps) into the quad order (see the module docs).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave(t: [__m512i; 4]) -> [__m512i; 4] {
    let lo01 = _mm512_unpacklo_epi8(t[0], t[1]);
    let hi01 = _mm512_unpackhi_epi8(t[0], t[1]);
    let lo23 = _mm512_unpacklo_epi8(t[2], t[3]);
    let hi23 = _mm512_unpackhi_epi8(t[2], t[3]);
    [
        _mm512_unpacklo_epi16(lo01, lo23),
        _mm512_unpackhi_epi16(lo01, lo23),
        _mm512_unpacklo_epi16(hi01, hi23),
        _mm512_unpackhi_epi16(hi01, hi23),
    ]
}

/// 64 per-channel int32 values from `base` (per-tensor values broadcast; channels past
/// `channels` zero) regrouped into the quad order: vector `j`, lane `4k + i` holds channel
/// `base + 16k + 4j + i` (a 4x4 transpose of 128-bit blocks).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn to_slots(values: &[i32], base: usize, channels: usize) -> [__m512i; 4] {
    if values.len() == 1 {
        return [_mm512_set1_epi32(values[0]); 4];
    }
    let mut z = [_mm512_setzero_si512(); 4];
    for (k, zk) in z.iter_mut().enumerate() {
        let at = base + 16 * k;
        if at < channels {
            let n = (channels - at).min(16);
            let mask = ((1u32 << n) - 1) as __mmask16;
            // Only the `n` lanes inside the slice are read.
            *zk = _mm512_maskz_loadu_epi32(mask, values.as_ptr().add(at));
        }
    }
    let a = _mm512_shuffle_i32x4(z[0], z[1], 0x44);
    let b = _mm512_shuffle_i32x4(z[2], z[3], 0x44);
    let c = _mm512_shuffle_i32x4(z[0], z[1], 0xEE);
    let e = _mm512_shuffle_i32x4(z[2], z[3], 0xEE);
    [
        _mm512_shuffle_i32x4(a, b, 0x88),
        _mm512_shuffle_i32x4(a, b, 0xDD),
        _mm512_shuffle_i32x4(c, e, 0x88),
        _mm512_shuffle_i32x4(c, e, 0xDD),
    ]
}

/// Interleaved weights of the chunk at `base` (`quads` entries of 4 vectors; taps past the
/// filter width and channels past `channels` are zero) and the requantization constants.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn prepare_chunk<const MODE: u8>(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    base: usize,
    geo: &Geometry,
    weights: &mut [[__m512i; 4]; MAX_QUADS],
) -> [Slot; 4] {
    let channels = d.in_c;
    let mask = chunk_mask(channels, base);
    let ones = _mm512_set1_epi8(1);
    let mut sums = [_mm512_setzero_si512(); 4];
    for fy in 0..d.filter_h {
        for g in 0..geo.groups {
            let mut t = [_mm512_setzero_si512(); 4];
            for (j, tj) in t.iter_mut().enumerate() {
                let fx = 4 * g + j;
                if fx < d.filter_w {
                    let at = (fy * d.filter_w + fx) * channels + base;
                    *tj = _mm512_maskz_loadu_epi8(mask, ops.filter.as_ptr().add(at));
                }
            }
            let w = interleave(t);
            weights[fy * geo.groups + g] = w;
            for j in 0..4 {
                sums[j] = _mm512_dpbusd_epi32(sums[j], ones, w[j]);
            }
        }
    }
    let mult = to_slots(ops.multipliers, base, channels);
    let shift = to_slots(ops.shifts, base, channels);
    let bias = match ops.bias {
        Some(bias) => to_slots(bias, base, channels),
        None => [_mm512_setzero_si512(); 4],
    };
    let correction = _mm512_set1_epi32(p.input_offset - 128);
    let zero = _mm512_setzero_si512();
    let low32 = _mm512_set1_epi64(0xFFFF_FFFF);
    let mut slots = [MaybeUninit::<Slot>::uninit(); 4];
    for j in 0..4 {
        // bias + (input_offset - 128) * sum(w): exact in the fast modes (bounded), wrapping
        // as the reference's sums otherwise.
        let b = _mm512_add_epi32(bias[j], _mm512_mullo_epi32(sums[j], correction));
        let m = mult[j];
        let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift[j]), zero);
        let left = _mm512_max_epi32(shift[j], zero);
        let mask = _mm512_sub_epi32(
            _mm512_sllv_epi32(_mm512_set1_epi32(1), right),
            _mm512_set1_epi32(1),
        );
        let m_odd = _mm512_srli_epi64(m, 32);
        let (right_even, right_odd) =
            (_mm512_and_si512(right, low32), _mm512_srli_epi64(right, 32));
        let round = _mm512_set1_epi64(1 << 30);
        let base_even = _mm512_add_epi64(_mm512_mul_epi32(b, m), round);
        let base_odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(b, 32), m_odd), round);
        // 2^(30 + r) and 2^31 where r >= 1 (always in the fast modes).
        let half = |r: __m512i| {
            let k = _mm512_cmpgt_epi64_mask(r, _mm512_setzero_si512());
            (
                _mm512_maskz_sllv_epi64(k, round, r),
                _mm512_maskz_mov_epi64(k, _mm512_set1_epi64(1 << 31)),
            )
        };
        let (half_even, tie_even) = half(right_even);
        let (half_odd, tie_odd) = half(right_odd);
        // out_offset * 2^(31 + r): the output offset added to the shifted result.
        let offset = _mm512_set1_epi64(i64::from(p.output_offset));
        let half_even = _mm512_add_epi64(
            half_even,
            _mm512_sllv_epi64(offset, _mm512_add_epi64(right_even, _mm512_set1_epi64(31))),
        );
        let half_odd = _mm512_add_epi64(
            half_odd,
            _mm512_sllv_epi64(offset, _mm512_add_epi64(right_odd, _mm512_set1_epi64(31))),
        );
        let (add_even, add_odd) = if MODE == FAST_RELU {
            (
                _mm512_add_epi64(base_even, half_even),
                _mm512_add_epi64(base_odd, half_odd),
            )
        } else {
            (base_even, base_odd)
        };
        slots[j].write(Slot {
            mult: m,
            mult_odd: m_odd,
            add_even,
            add_odd,
            half_even,
            half_odd,
            tie_even,
            tie_odd,
            shift: _mm512_sub_epi32(right, _mm512_set1_epi32(1)),
            bias: b,
            left,
            right,
            mask,
            half_mask: _mm512_srai_epi32(mask, 1),
            mult_min: _mm512_cmpeq_epi32_mask(m, _mm512_set1_epi32(i32::MIN)),
        });
    }
    // SAFETY: all four written above.
    slots.map(|s| s.assume_init())
}

/// Writes the quads of input row `in_y` (batch `b`), output columns `ox0..ox0 + cols`, into
/// `dst` (`cols * groups` quads), through `row`: the columns those windows reach, offset to
/// unsigned, padding included.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
unsafe fn build_row(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    input: &[i8],
    geo: &Geometry,
    (b, in_y, base): (usize, usize, usize),
    (ox0, cols): (usize, usize),
    pad: __m512i,
    row: *mut __m512i,
    dst: *mut __m512i,
) {
    let w = p.window;
    let (stride, dilation) = (w.stride_w as usize, w.dilation_w as usize);
    let pad_left = w.pad_left as usize;
    let mask = chunk_mask(d.in_c, base);
    let flip = _mm512_set1_epi8(-128);
    let src = input.as_ptr().add(d.input_index(b, in_y, 0, base));
    // Padded column of `row[0]`.
    let first = ox0 * stride;
    let column = |i: usize| match (first + i).checked_sub(pad_left) {
        Some(in_x) if in_x < d.in_w => {
            _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, src.add(in_x * d.in_c)), flip)
        }
        _ => pad,
    };
    if geo.dense {
        // Stride 1, no dilation, one quad per filter row: quad `c` interleaves columns
        // `c..c + 4`, so the byte pairs of neighbouring columns are interleaved once per column
        // and each quad takes the pairs at `c` and `c + 2` (a fourth tap past a narrower
        // filter reads a real column, times zero weights).
        let pair =
            |a: __m512i, b: __m512i| (_mm512_unpacklo_epi8(a, b), _mm512_unpackhi_epi8(a, b));
        let (c0, c1, c2) = (column(0), column(1), column(2));
        let mut p0 = pair(c0, c1);
        let mut next = column(3);
        let mut p1 = pair(c1, c2);
        let mut p2 = pair(c2, next);
        for c in 0..cols {
            let q = [
                _mm512_unpacklo_epi16(p0.0, p2.0),
                _mm512_unpackhi_epi16(p0.0, p2.0),
                _mm512_unpacklo_epi16(p0.1, p2.1),
                _mm512_unpackhi_epi16(p0.1, p2.1),
            ];
            let out = dst.add(c * 4);
            for (j, qj) in q.iter().enumerate() {
                _mm512_storeu_si512(out.add(j), *qj);
            }
            if c + 1 < cols {
                let last = next;
                next = column(c + 4);
                p0 = p1;
                p1 = p2;
                p2 = pair(last, next);
            }
        }
        return;
    }
    for i in 0..(cols - 1) * stride + geo.span_w {
        _mm512_storeu_si512(row.add(i), column(i));
    }
    for c in 0..cols {
        for g in 0..geo.groups {
            let fx = 4 * g;
            let at = row.add(c * stride + fx * dilation);
            let t0 = _mm512_loadu_si512(at);
            // Taps past the filter width have zero weights: any data will do.
            let t1 = if fx + 1 < d.filter_w {
                _mm512_loadu_si512(at.add(dilation))
            } else {
                t0
            };
            let t2 = if fx + 2 < d.filter_w {
                _mm512_loadu_si512(at.add(2 * dilation))
            } else {
                t1
            };
            let t3 = if fx + 3 < d.filter_w {
                _mm512_loadu_si512(at.add(3 * dilation))
            } else {
                t2
            };
            let q = interleave([t0, t1, t2, t3]);
            let out = dst.add((c * geo.groups + g) * 4);
            for (j, qj) in q.iter().enumerate() {
                _mm512_storeu_si512(out.add(j), *qj);
            }
        }
    }
}

/// AVX-512 DEPTHWISE_CONV_2D (multiplier 1); `false` (nothing written) when it declines the
/// geometry (see the module docs).
///
/// Safety: AVX-512 F/BW/VL/VNNI; slice lengths as `depthwise_ok` checks them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn depthwise_s8_avx512(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
) -> bool {
    let Some(geo) = Geometry::new(p, d) else {
        return false;
    };
    match requant_mode(p, d, ops) {
        FAST_RELU => run::<FAST_RELU>(p, d, ops, output, &geo),
        FAST => run::<FAST>(p, d, ops, output, &geo),
        _ => run::<GENERAL>(p, d, ops, output, &geo),
    }
    true
}

/// Scratch of one call: the quad row ring and the widened input row.
struct Scratch {
    ring: *mut __m512i,
    row: *mut __m512i,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn run<const MODE: u8>(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    geo: &Geometry,
) {
    let pad = _mm512_set1_epi8((128 - p.input_offset) as u8 as i8);
    let mut ring_buf = MaybeUninit::<[__m512i; RING_BYTES / CHUNK]>::uninit();
    let mut row_buf = MaybeUninit::<[__m512i; ROW_COLS]>::uninit();
    let scratch = Scratch {
        ring: ring_buf.as_mut_ptr() as *mut __m512i,
        row: row_buf.as_mut_ptr() as *mut __m512i,
    };
    // The last ring row is the padding row: every tap above or below the image reads it.
    let pad_row = scratch.ring.add(geo.span_h * geo.ring_row / CHUNK);
    for i in 0..geo.ring_row / CHUNK {
        _mm512_storeu_si512(pad_row.add(i), pad);
    }
    let mut weights = MaybeUninit::<[[__m512i; 4]; MAX_QUADS]>::uninit();
    let weights = &mut *weights.as_mut_ptr();
    for base in (0..d.in_c).step_by(CHUNK) {
        let slots = prepare_chunk::<MODE>(p, d, ops, base, geo, weights);
        match geo.quads {
            1 => chunk::<1, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
            2 => chunk::<2, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
            3 => chunk::<3, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
            4 => chunk::<4, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
            5 => chunk::<5, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
            _ => chunk::<0, MODE>(p, d, ops, output, geo, &scratch, base, weights, &slots),
        }
    }
}

/// All output pixels of the channels `base..base + 64` (`Q` quads per pixel, unrolled; 0:
/// `geo.quads`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk<const Q: usize, const MODE: u8>(
    p: &DepthwiseConv2dS8,
    d: &SpatialDims,
    ops: &S8Operands<'_>,
    output: &mut [i8],
    geo: &Geometry,
    scratch: &Scratch,
    base: usize,
    weights: &[[__m512i; 4]; MAX_QUADS],
    slots: &[Slot; 4],
) {
    let w = p.window;
    let channels = d.in_c;
    let mask = chunk_mask(channels, base);
    let pad = _mm512_set1_epi8((128 - p.input_offset) as u8 as i8);
    let ring = scratch.ring;
    // In 64-byte vectors.
    let ring_row = geo.ring_row / CHUNK;
    let pad_row = geo.span_h * ring_row;
    let offset32 = _mm512_set1_epi32(p.output_offset);
    // The int8 packing saturates to [-128, 127] already.
    let clamps = p.act_min > -128 || p.act_max < 127;
    let lo = _mm512_set1_epi8(p.act_min.clamp(-128, 127) as i8);
    let hi = _mm512_set1_epi8(p.act_max.clamp(-128, 127) as i8);
    let step = geo.groups * 4;
    let slots = *slots;
    // One row of output pixels, `$n` quads per pixel with weights `$w`.
    macro_rules! pixels {
        ($quad_at:expr, $out:expr, $cols:expr, $w:expr, $n:expr) => {
            for c in 0..$cols {
                let mut acc = [_mm512_setzero_si512(); 4];
                for q in 0..$n {
                    let src = $quad_at[q].add(c * step);
                    for j in 0..4 {
                        acc[j] =
                            _mm512_dpbusd_epi32(acc[j], _mm512_loadu_si512(src.add(j)), $w[q][j]);
                    }
                }
                let v: [__m512i; 4] =
                    core::array::from_fn(|j| slots[j].apply::<MODE>(offset32, acc[j]));
                // Saturating packs keep the order, and the clamp bounds are int8 values.
                let w01 = _mm512_packs_epi32(v[0], v[1]);
                let w23 = _mm512_packs_epi32(v[2], v[3]);
                let mut bytes = _mm512_packs_epi16(w01, w23);
                if clamps {
                    bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, lo), hi);
                }
                let dst = $out.add(c * channels);
                if mask == u64::MAX {
                    _mm512_storeu_si512(dst as *mut __m512i, bytes);
                } else {
                    _mm512_mask_storeu_epi8(dst, mask, bytes);
                }
            }
        };
    }
    // Copied to locals so that they can stay in registers across the pixels.
    let wq: [[__m512i; 4]; Q] = core::array::from_fn(|q| weights[q]);
    if geo.flat {
        // Quad row `r` of a band starting at output row `y0` holds input row
        // `y0 + r - pad_top` (padding rows outside the image); output row `y0 + i` reads
        // rows `i + fy * dilation_h`, so pixel `k` of the band reads quad `k` past each
        // filter row's first quad: no per-row work between the pixels.
        let row_quads = d.out_w * 4;
        let dilation_h = w.dilation_h as usize;
        let mut quad_at = [ring as *const __m512i; MAX_QUADS];
        for (fy, at) in quad_at.iter_mut().enumerate().take(d.filter_h) {
            *at = ring.add(fy * dilation_h * row_quads);
        }
        for b in 0..d.batches {
            for y0 in (0..d.out_h).step_by(geo.band) {
                let rows = geo.band.min(d.out_h - y0);
                for r in 0..rows + geo.span_h - 1 {
                    let dst = ring.add(r * row_quads);
                    match (y0 + r).checked_sub(w.pad_top as usize) {
                        Some(in_y) if in_y < d.in_h => build_row(
                            p,
                            d,
                            ops.input,
                            geo,
                            (b, in_y, base),
                            (0, d.out_w),
                            pad,
                            scratch.row,
                            dst,
                        ),
                        _ => {
                            for i in 0..row_quads {
                                _mm512_storeu_si512(dst.add(i), pad);
                            }
                        }
                    }
                }
                let out = output.as_mut_ptr().add(d.output_index(b, y0, 0, base));
                if Q > 0 {
                    pixels!(quad_at, out, rows * d.out_w, wq, Q);
                } else {
                    pixels!(quad_at, out, rows * d.out_w, weights, geo.quads);
                }
            }
        }
        return;
    }
    for b in 0..d.batches {
        for ox0 in (0..d.out_w).step_by(geo.tile_w) {
            let cols = geo.tile_w.min(d.out_w - ox0);
            // Input row held by each ring slot (`usize::MAX`: none).
            let mut slot_row = [usize::MAX; MAX_SPAN];
            for out_y in 0..d.out_h {
                let mut quad_at = [ring as *const __m512i; MAX_QUADS];
                for fy in 0..d.filter_h {
                    let row_at = match tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h) {
                        None => pad_row,
                        Some(in_y) => {
                            let slots = &mut slot_row[..geo.span_h];
                            let slot = match slots.iter().position(|&r| r == in_y) {
                                Some(slot) => slot,
                                None => {
                                    // A slot whose row no tap of this window reads: the
                                    // window's rows lie in `top..top + span_h`, one slot
                                    // each at most, and `in_y` is not loaded yet.
                                    let top = (out_y * w.stride_h as usize)
                                        .saturating_sub(w.pad_top as usize);
                                    let slot = slots
                                        .iter()
                                        .position(|&r| r < top || r >= top + geo.span_h)
                                        .unwrap_or(0);
                                    slots[slot] = in_y;
                                    build_row(
                                        p,
                                        d,
                                        ops.input,
                                        geo,
                                        (b, in_y, base),
                                        (ox0, cols),
                                        pad,
                                        scratch.row,
                                        ring.add(slot * ring_row),
                                    );
                                    slot
                                }
                            };
                            slot * ring_row
                        }
                    };
                    for g in 0..geo.groups {
                        quad_at[fy * geo.groups + g] = ring.add(row_at + g * 4);
                    }
                }
                let out = output.as_mut_ptr().add(d.output_index(b, out_y, ox0, base));
                if Q > 0 {
                    pixels!(quad_at, out, cols, wq, Q);
                } else {
                    pixels!(quad_at, out, cols, weights, geo.quads);
                }
            }
        }
    }
}

//! AVX-512 VNNI int8 kernels for FULLY_CONNECTED and CONV_2D, over weights packed once per
//! model by `PreparedModel` (see [`VnniWeights`]).
//!
//! `vpdpbusd` multiplies unsigned bytes by signed bytes and adds each group of four products
//! into an int32 lane, without saturation. The activations are made unsigned by flipping their
//! sign bit (`x + 128`), so for output channel `c`
//!
//! `sum((x + input_offset) * w) + bias = dot(x + 128, w) + (input_offset - 128) * sum(w) + bias`
//!
//! in wrapping int32, which is the reference's accumulator exactly; the last two terms are one
//! constant per channel, worked out when the weights are packed. A padded convolution tap
//! contributes nothing to the reference, so the im2col row holds `-input_offset` there (the
//! input zero point), whose `x + input_offset` is 0. Requantization is TFLite's integer
//! arithmetic on 16 lanes: single rounding for FULLY_CONNECTED, double rounding for CONV_2D,
//! with every per-channel constant prepared with the weights.

extern crate alloc;
extern crate std;

use alloc::vec::Vec;
use core::arch::x86_64::*;
use core::cell::RefCell;
use core::fmt;
use core::mem::MaybeUninit;

use super::super::conv::{tap, Conv2dS8, SpatialDims};
use super::super::fully_connected::{FcDims, FullyConnectedS8};
use super::super::host_simd::{S8Operands, MAX_PATCH};

/// 16 output channels x 4 input bytes: the signed operand of one `vpdpbusd`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Tile([i8; 64]);

/// One 512-bit vector of per-channel constants.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Lanes([i32; 16]);

/// How the accumulators are requantized (TFLite's two `MultiplyByQuantizedMultiplier`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// FULLY_CONNECTED: `(acc * m + 2^(t-1)) >> t` in int64, `t = 31 - shift`.
    Single,
    /// CONV_2D: rounding doubling high multiply, then rounding divide by a power of two.
    Double,
}

/// The per-channel constants of 16 output channels.
///
/// Both roundings end as one int64 step per lane, `(acc * m + round - [negative] * neg) >> t`:
/// even lanes' terms sit in the 64-bit slots of the `*_even` vectors, odd lanes' in `*_odd`.
/// Single rounding: `t = 31 - shift`, `round = 2^(t-1)`, `neg = 0`. Double rounding, with
/// `e` the right shift: `SaturatingRoundingDoublingHighMul` is `floor((P + 2^30) / 2^31)`
/// for the product `P` (see `requant_double_avx2`), and `RoundingDivideByPOT` by `2^e` (e >= 1)
/// is `floor((h + 2^(e-1) - [h < 0]) / 2^e)`; nested floors of divisions compose, so the two
/// are `floor((P + 2^30 + 2^(30+e) - [P < -2^30] * 2^31) / 2^(31+e))`, and `h` alone for
/// `e = 0`. The one saturating case (`m = i32::MIN`) is not packed.
#[derive(Clone, Copy, Default)]
struct BlockConsts {
    /// `bias + (input_offset - 128) * sum(w)` (wrapping), 0 in lanes past the last channel.
    offset: Lanes,
    /// Multipliers: as they are (even lanes read the low halves) and moved to the low halves.
    multiplier: Lanes,
    multiplier_odd: Lanes,
    /// Double rounding's left shift (`shift > 0`).
    left: Lanes,
    shift_even: Lanes,
    shift_odd: Lanes,
    round_even: Lanes,
    round_odd: Lanes,
    neg_even: Lanes,
    neg_odd: Lanes,
    /// Double rounding: `P` below this is a negative high half (`-2^30`, or `-2^30 - offset * m`
    /// when the offset is folded into `round`).
    limit_even: Lanes,
    limit_odd: Lanes,
}

impl BlockConsts {
    /// Sets lane `lane`'s int64 term in the even or odd vector of a pair.
    fn set64(even: &mut Lanes, odd: &mut Lanes, lane: usize, value: i64) {
        let target = if lane.is_multiple_of(2) { even } else { odd };
        let slot = lane / 2 * 2;
        target.0[slot] = value as i32;
        target.0[slot + 1] = (value >> 32) as i32;
    }

    fn set_lane(&mut self, lane: usize, multiplier: i32, shift: i32, rounding: Rounding) {
        self.multiplier.0[lane] = multiplier;
        if lane % 2 == 1 {
            self.multiplier_odd.0[lane - 1] = multiplier;
        }
        let (t, round, neg) = match rounding {
            Rounding::Single => {
                let t = 31 - shift as i64;
                (t, 1i64 << (t - 1), 0)
            }
            Rounding::Double => {
                self.left.0[lane] = shift.max(0);
                let e = (-shift).max(0) as i64;
                if e == 0 {
                    (31, 1i64 << 30, 0)
                } else {
                    (31 + e, (1i64 << 30) + (1i64 << (30 + e)), 1i64 << 31)
                }
            }
        };
        Self::set64(&mut self.shift_even, &mut self.shift_odd, lane, t);
        Self::set64(&mut self.round_even, &mut self.round_odd, lane, round);
        Self::set64(&mut self.neg_even, &mut self.neg_odd, lane, neg);
        Self::set64(
            &mut self.limit_even,
            &mut self.limit_odd,
            lane,
            -(1i64 << 30),
        );
    }

    /// Reads lane `lane`'s int64 term of a pair.
    fn get64(even: &Lanes, odd: &Lanes, lane: usize) -> i64 {
        let source = if lane.is_multiple_of(2) { even } else { odd };
        let slot = lane / 2 * 2;
        (source.0[slot] as u32 as i64) | ((source.0[slot + 1] as i64) << 32)
    }

    /// Double rounding with the accumulator offset and the output offset folded into the
    /// int64 constants: `(acc + offset) * m = acc * m + offset * m` and `+ out_offset` after the
    /// shift is `+ out_offset * 2^t` before it. Exact when `acc + offset` cannot wrap (checked
    /// by the caller) and nothing overflows int64 (`t <= 54`).
    fn fold_lane(&mut self, lane: usize, output_offset: i32) {
        let m = self.multiplier.0[lane] as i64;
        let offset_term = self.offset.0[lane] as i64 * m;
        let t = Self::get64(&self.shift_even, &self.shift_odd, lane);
        let round = Self::get64(&self.round_even, &self.round_odd, lane);
        let folded = round + offset_term + ((output_offset as i64) << t);
        Self::set64(&mut self.round_even, &mut self.round_odd, lane, folded);
        let limit = -(1i64 << 30) - offset_term;
        Self::set64(&mut self.limit_even, &mut self.limit_odd, lane, limit);
        self.offset.0[lane] = 0;
    }
}

/// Single rounding's constants of 16 channels: the accumulator offset, the multipliers and
/// `t = 31 - shift` (the rounding term `2^(t-1)` is derived when it is used).
#[derive(Clone, Copy, Default)]
struct SingleConsts {
    offset: Lanes,
    multiplier: Lanes,
    total_shift: Lanes,
}

/// [`SingleConsts`] with the accumulator offset and the output offset folded into the int64
/// rounding terms (see [`BlockConsts::fold_lane`]).
#[derive(Clone, Copy, Default)]
struct FoldedSingleConsts {
    multiplier: Lanes,
    total_shift: Lanes,
    round_even: Lanes,
    round_odd: Lanes,
}

/// The requantization of a FULLY_CONNECTED whose channels share one multiplier and shift.
#[derive(Debug, Clone, Copy)]
struct UniformRequant {
    multiplier: i32,
    /// `t = 31 - shift`, at most 54.
    total_shift: i32,
    output_offset: i32,
}

/// Channels per register block and per [`Tile`].
const LANES: usize = 16;
/// How far ahead (in tiles of 64 bytes) the kernels prefetch weights.
const PREFETCH_TILES: usize = 16;
/// Output pixels per register block of the convolution.
const CONV_PIXELS: usize = 4;

/// Weights of a FULLY_CONNECTED or ungrouped CONV_2D operator laid out for `vpdpbusd`, with
/// every per-channel constant of the epilogue.
///
/// Layout: output channels in blocks of 16, blocks in panels of `panel_blocks`; within a panel
/// the tiles (16 channels x 4 bytes) go depth group (4 input bytes) by depth group, each group holding one tile per
/// block, so a kernel streams a panel front to back.
#[derive(Clone)]
pub struct VnniWeights {
    channels: usize,
    depth: usize,
    input_offset: i32,
    rounding: Rounding,
    panel_blocks: usize,
    tiles: Vec<Tile>,
    /// Double rounding's constants, per block.
    consts: Vec<BlockConsts>,
    /// Single rounding's constants, per block.
    single: Vec<SingleConsts>,
    /// Single rounding's constants with the offsets folded in, per block.
    single_folded: Vec<FoldedSingleConsts>,
    /// Single rounding with one multiplier and shift: those, and the offsets per block.
    uniform: Option<UniformRequant>,
    uniform_offsets: Vec<Lanes>,
    /// The offsets are folded into the constants (see [`BlockConsts::fold_lane`]), for this
    /// output offset.
    folded: bool,
    output_offset: i32,
    /// Some shift is positive (double rounding then shifts the accumulator left first).
    any_left_shift: bool,
}

impl fmt::Debug for VnniWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VnniWeights")
            .field("channels", &self.channels)
            .field("depth", &self.depth)
            .field("rounding", &self.rounding)
            .field("panel_blocks", &self.panel_blocks)
            .finish_non_exhaustive()
    }
}

impl VnniWeights {
    /// Packs `filter` (`channels` rows of `depth` int8 values). `None` when the kernels cannot
    /// take it (arrays of the wrong length, a shift outside TFLite's range, an input zero point
    /// outside int8, or a depth beyond `MAX_PATCH`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        filter: &[i8],
        channels: usize,
        depth: usize,
        bias: Option<&[i32]>,
        multipliers: &[i32],
        shifts: &[i32],
        input_offset: i32,
        output_offset: i32,
        rounding: Rounding,
    ) -> Option<VnniWeights> {
        let per_tensor = multipliers.len() == 1;
        if channels == 0
            || depth == 0
            || depth > MAX_PATCH
            || filter.len() != channels.checked_mul(depth)?
            || !(per_tensor || multipliers.len() == channels)
            || shifts.len() != multipliers.len()
            || bias.is_some_and(|b| b.len() != channels)
            || !shifts.iter().all(|s| (-31..=30).contains(s))
            // The convolution writes the input zero point (`-input_offset`) into its padding.
            || (rounding == Rounding::Double
                && (!(-127..=128).contains(&input_offset) || multipliers.contains(&i32::MIN)))
        {
            return None;
        }
        let panel_blocks = match rounding {
            // One input row: wide panels keep many independent accumulators in flight.
            Rounding::Single => 8,
            // Four pixels x four blocks fill 16 of the 32 registers.
            Rounding::Double => 4,
        };
        let blocks = channels.div_ceil(LANES);
        let groups = depth.div_ceil(4);
        let mut tiles = Vec::with_capacity(blocks * groups);
        for panel_start in (0..blocks).step_by(panel_blocks) {
            let panel_end = (panel_start + panel_blocks).min(blocks);
            for g in 0..groups {
                for block in panel_start..panel_end {
                    let mut tile = Tile([0; 64]);
                    for lane in 0..LANES {
                        let c = block * LANES + lane;
                        for j in 0..4 {
                            let d = g * 4 + j;
                            if c < channels && d < depth {
                                tile.0[lane * 4 + j] = filter[c * depth + d];
                            }
                        }
                    }
                    tiles.push(tile);
                }
            }
        }
        let mut consts = Vec::with_capacity(blocks);
        for block in 0..blocks {
            let mut k = BlockConsts::default();
            for lane in 0..LANES {
                let c = block * LANES + lane;
                if c >= channels {
                    // Padding lanes are computed and never stored; keep their shifts legal.
                    k.set_lane(lane, 0, 0, rounding);
                    continue;
                }
                let row = &filter[c * depth..(c + 1) * depth];
                let sum = row.iter().fold(0i32, |s, &w| s.wrapping_add(w as i32));
                let b = bias.map_or(0, |b| b[c]);
                k.offset.0[lane] = b.wrapping_add((input_offset - 128).wrapping_mul(sum));
                let i = if per_tensor { 0 } else { c };
                k.set_lane(lane, multipliers[i], shifts[i], rounding);
            }
            consts.push(k);
        }
        // Folding the offsets into the int64 constants saves vector operations per 16 outputs;
        // it needs accumulators that cannot wrap (|dot| <= depth * 255 * 128), no left shift of
        // the accumulator (double rounding) and room in int64 for `out_offset * 2^t` (t <= 54).
        let dot_bound = depth as i64 * 255 * 128;
        let most_left = match rounding {
            Rounding::Single => 30,
            Rounding::Double => 0,
        };
        // One multiplier and shift for every channel (per-tensor weights, as ad01_int8 has):
        // single rounding then needs only the offsets per block, and the rounding term with the
        // output offset in it is one broadcast constant (t <= 54 keeps it in int64).
        let uniform = (rounding == Rounding::Single
            && (-128..=127).contains(&output_offset)
            && multipliers.iter().all(|&m| m == multipliers[0])
            && shifts.iter().all(|&s| s == shifts[0])
            && shifts[0] >= -23)
            .then_some(UniformRequant {
                multiplier: multipliers[0],
                total_shift: 31 - shifts[0],
                output_offset,
            });
        let uniform_offsets: Vec<Lanes> = match uniform {
            Some(_) => consts.iter().map(|k| k.offset).collect(),
            None => Vec::new(),
        };
        let folded = uniform.is_none()
            && (-128..=127).contains(&output_offset)
            && shifts.iter().all(|&s| (-23..=most_left).contains(&s))
            && consts.iter().all(|k| {
                k.offset
                    .0
                    .iter()
                    .all(|&o| dot_bound + (o as i64).abs() < i32::MAX as i64)
            });
        if folded {
            for k in consts.iter_mut() {
                for lane in 0..LANES {
                    k.fold_lane(lane, output_offset);
                }
            }
        }
        // Single rounding streams its constants with the weights (a FULLY_CONNECTED row
        // touches each once), so it keeps three or four vectors per block and derives the rest.
        let total_shift = |k: &BlockConsts| {
            let mut total_shift = Lanes::default();
            for (lane, t) in total_shift.0.iter_mut().enumerate() {
                let slot = lane / 2 * 2;
                let v = if lane % 2 == 0 {
                    &k.shift_even
                } else {
                    &k.shift_odd
                };
                *t = v.0[slot];
            }
            total_shift
        };
        let single_folded = match (rounding, folded) {
            (Rounding::Single, true) if uniform.is_none() => consts
                .iter()
                .map(|k| FoldedSingleConsts {
                    multiplier: k.multiplier,
                    total_shift: total_shift(k),
                    round_even: k.round_even,
                    round_odd: k.round_odd,
                })
                .collect(),
            _ => Vec::new(),
        };
        let single = match (rounding, folded) {
            (Rounding::Single, false) if uniform.is_none() => {
                let single = consts
                    .iter()
                    .map(|k| SingleConsts {
                        offset: k.offset,
                        multiplier: k.multiplier,
                        total_shift: total_shift(k),
                    })
                    .collect();
                single
            }
            _ => Vec::new(),
        };
        if rounding == Rounding::Single {
            consts.clear();
        }
        Some(VnniWeights {
            channels,
            depth,
            input_offset,
            rounding,
            panel_blocks,
            tiles,
            consts,
            single,
            single_folded,
            uniform,
            uniform_offsets,
            folded,
            output_offset,
            any_left_shift: rounding == Rounding::Double && shifts.iter().any(|&s| s > 0),
        })
    }

    /// Packs a FULLY_CONNECTED operator's weights (`None` for a filter offset, which the
    /// kernel does not fold).
    pub fn for_fully_connected(
        p: &FullyConnectedS8,
        dims: &FcDims,
        ops: &S8Operands<'_>,
    ) -> Option<VnniWeights> {
        if p.filter_offset != 0 {
            return None;
        }
        let filter = ops.filter.get(..dims.output_depth * dims.accum_depth)?;
        VnniWeights::new(
            filter,
            dims.output_depth,
            dims.accum_depth,
            ops.bias,
            ops.multipliers,
            ops.shifts,
            p.input_offset,
            p.output_offset,
            Rounding::Single,
        )
    }

    /// Packs an ungrouped CONV_2D operator's weights.
    pub fn for_conv(p: &Conv2dS8, d: &SpatialDims, ops: &S8Operands<'_>) -> Option<VnniWeights> {
        if d.filter_in_c != d.in_c {
            return None;
        }
        let depth = d.filter_h.checked_mul(d.filter_w)?.checked_mul(d.in_c)?;
        let filter = ops.filter.get(..d.out_c.checked_mul(depth)?)?;
        VnniWeights::new(
            filter,
            d.out_c,
            depth,
            ops.bias,
            ops.multipliers,
            ops.shifts,
            p.input_offset,
            p.output_offset,
            Rounding::Double,
        )
    }

    fn fits(
        &self,
        channels: usize,
        depth: usize,
        input_offset: i32,
        output_offset: i32,
        rounding: Rounding,
    ) -> bool {
        self.channels == channels
            && self.depth == depth
            && self.input_offset == input_offset
            && self.output_offset == output_offset
            && self.rounding == rounding
    }

    /// Bytes held (packed weights and constants), for reports.
    pub fn bytes(&self) -> usize {
        self.tiles.len() * size_of::<Tile>()
            + self.consts.len() * size_of::<BlockConsts>()
            + self.single.len() * size_of::<SingleConsts>()
            + self.single_folded.len() * size_of::<FoldedSingleConsts>()
            + self.uniform_offsets.len() * size_of::<Lanes>()
    }
}

#[inline(always)]
unsafe fn load(lanes: &Lanes) -> __m512i {
    _mm512_load_si512(lanes.0.as_ptr() as *const _)
}

/// Where the depth of one input row lies: `offsets.len()` runs of `4 * groups` unsigned
/// bytes, at `row + offset` (one run for an FC row or an im2col row, one per filter row when a
/// convolution reads its input image directly).
#[derive(Clone, Copy)]
struct Runs<'r> {
    offsets: &'r [usize],
    groups: usize,
}

/// Accumulators of `M` input rows (see [`Runs`]) against one panel of `NB` blocks starting at
/// `tiles`.
#[inline(always)]
unsafe fn dot_panel<const M: usize, const NB: usize>(
    rows: [*const u8; M],
    runs: Runs<'_>,
    tiles: *const Tile,
) -> [[__m512i; NB]; M] {
    let mut acc = [[_mm512_setzero_si512(); NB]; M];
    let mut group = tiles;
    for &offset in runs.offsets {
        let run_rows: [*const u8; M] = core::array::from_fn(|m| rows[m].add(offset));
        for g in 0..runs.groups {
            dot_group::<M, NB>(&run_rows, g, group, &mut acc);
            group = group.add(NB);
        }
    }
    acc
}

/// One depth group (4 bytes of each row at `4 * g`) against the `NB` tiles at `group`.
#[inline(always)]
unsafe fn dot_group<const M: usize, const NB: usize>(
    rows: &[*const u8; M],
    g: usize,
    group: *const Tile,
    acc: &mut [[__m512i; NB]; M],
) {
    // The weights stream from L2 (a model's weights rarely fit L1): ask for them early. A
    // prefetch past the end is harmless (no fault), hence `wrapping_add`.
    // A block of several pixels reuses each tile while it is in L1, and a convolution's
    // filter is usually small: only single-row (FULLY_CONNECTED) panels prefetch.
    for b in 0..if M == 1 { NB } else { 0 } {
        _mm_prefetch::<_MM_HINT_T0>(group.wrapping_add(PREFETCH_TILES + b) as *const i8);
    }
    let w: [__m512i; NB] = core::array::from_fn(|b| _mm512_load_si512(group.add(b) as *const _));
    for (row, acc_row) in rows.iter().zip(acc.iter_mut()) {
        let x = _mm512_set1_epi32((row.add(4 * g) as *const i32).read_unaligned());
        for (a, &wb) in acc_row.iter_mut().zip(&w) {
            *a = _mm512_dpbusd_epi32(*a, x, wb);
        }
    }
}

/// Double-rounding requantization, output offset and clamp of 16 accumulators; int8 results
/// in the low lanes (see [`BlockConsts`] for the arithmetic).
#[inline(always)]
unsafe fn finish(acc: __m512i, k: &BlockConsts, e: &Epilogue) -> __m128i {
    let mut x = acc;
    if !e.folded {
        x = _mm512_add_epi32(x, load(&k.offset));
    }
    if e.any_left_shift {
        x = _mm512_sllv_epi32(x, load(&k.left));
    }
    let even = _mm512_mul_epi32(x, load(&k.multiplier));
    let odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), load(&k.multiplier_odd));
    let even_negative = _mm512_cmplt_epi64_mask(even, load(&k.limit_even));
    let odd_negative = _mm512_cmplt_epi64_mask(odd, load(&k.limit_odd));
    let even = _mm512_add_epi64(even, load(&k.round_even));
    let odd = _mm512_add_epi64(odd, load(&k.round_odd));
    let even = _mm512_mask_sub_epi64(even, even_negative, even, load(&k.neg_even));
    let odd = _mm512_mask_sub_epi64(odd, odd_negative, odd, load(&k.neg_odd));
    let even = _mm512_srav_epi64(even, load(&k.shift_even));
    let odd = _mm512_srav_epi64(odd, load(&k.shift_odd));
    let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    if e.folded {
        // The output offset is in already; saturating to int8 then clamping equals clamping.
        let bytes = _mm512_cvtsepi32_epi8(v);
        return _mm_min_epi8(_mm_max_epi8(bytes, e.lo8), e.hi8);
    }
    let v = _mm512_add_epi32(v, e.out_offset);
    _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(v, e.lo), e.hi))
}

/// [`finish`] for single rounding over [`SingleConsts`].
#[inline(always)]
unsafe fn finish_single(acc: __m512i, k: &SingleConsts, e: &Epilogue) -> __m128i {
    let x = _mm512_add_epi32(acc, load(&k.offset));
    let mult = load(&k.multiplier);
    let shift = load(&k.total_shift);
    let shift_even = _mm512_maskz_mov_epi32(0x5555, shift);
    let shift_odd = _mm512_srli_epi64(shift, 32);
    let one = _mm512_set1_epi64(1);
    let round_even = _mm512_sllv_epi64(one, _mm512_sub_epi64(shift_even, one));
    let round_odd = _mm512_sllv_epi64(one, _mm512_sub_epi64(shift_odd, one));
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, mult), round_even);
    let odd_product = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32));
    let odd = _mm512_add_epi64(odd_product, round_odd);
    let even = _mm512_srav_epi64(even, shift_even);
    let odd = _mm512_srav_epi64(odd, shift_odd);
    let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    let v = _mm512_add_epi32(v, e.out_offset);
    _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(v, e.lo), e.hi))
}

/// [`finish_single`] over [`FoldedSingleConsts`].
#[inline(always)]
unsafe fn finish_single_folded(acc: __m512i, k: &FoldedSingleConsts, e: &Epilogue) -> __m128i {
    let mult = load(&k.multiplier);
    let shift = load(&k.total_shift);
    let shift_even = _mm512_maskz_mov_epi32(0x5555, shift);
    let shift_odd = _mm512_srli_epi64(shift, 32);
    let even = _mm512_add_epi64(_mm512_mul_epi32(acc, mult), load(&k.round_even));
    let odd_product = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(mult, 32));
    let odd = _mm512_add_epi64(odd_product, load(&k.round_odd));
    let even = _mm512_srav_epi64(even, shift_even);
    let odd = _mm512_srav_epi64(odd, shift_odd);
    let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    // The output offset is in already; saturating to int8 then clamping equals clamping.
    let bytes = _mm512_cvtsepi32_epi8(v);
    _mm_min_epi8(_mm_max_epi8(bytes, e.lo8), e.hi8)
}

/// [`finish_single`] with one multiplier and shift for all channels: `x = acc + offset` (wrapping,
/// as the reference), then `(x * m + 2^(t-1) + out_offset * 2^t) >> t` with a broadcast constant.
#[inline(always)]
unsafe fn finish_single_uniform(acc: __m512i, offset: &Lanes, e: &Epilogue) -> __m128i {
    let x = _mm512_add_epi32(acc, load(offset));
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, e.uniform_multiplier), e.uniform_round);
    let odd_product = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), e.uniform_multiplier);
    let odd = _mm512_add_epi64(odd_product, e.uniform_round);
    let even = _mm512_sra_epi64(even, e.uniform_shift);
    let odd = _mm512_sra_epi64(odd, e.uniform_shift);
    let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    // The output offset is in already; saturating to int8 then clamping equals clamping.
    let bytes = _mm512_cvtsepi32_epi8(v);
    _mm_min_epi8(_mm_max_epi8(bytes, e.lo8), e.hi8)
}

/// Stores the first `count` (1..=16) bytes of `v` at `dst`.
#[inline(always)]
unsafe fn store_lanes(dst: *mut i8, v: __m128i, count: usize) {
    if count >= LANES {
        _mm_storeu_si128(dst as *mut __m128i, v);
    } else {
        _mm_mask_storeu_epi8(dst, (1u16 << count) - 1, v);
    }
}

/// Copies `len` int8 values to `dst` as unsigned bytes (`x + 128`, a flipped sign bit).
#[inline(always)]
unsafe fn copy_flipped(dst: *mut u8, src: *const i8, len: usize) {
    let flip = _mm512_set1_epi8(-128);
    let mut i = 0;
    while i + 64 <= len {
        let v = _mm512_loadu_si512(src.add(i) as *const _);
        _mm512_storeu_si512(dst.add(i) as *mut _, _mm512_xor_si512(v, flip));
        i += 64;
    }
    if i < len {
        let mask = u64::MAX >> (64 - (len - i));
        let v = _mm512_maskz_loadu_epi8(mask, src.add(i));
        _mm512_mask_storeu_epi8(dst.add(i) as *mut i8, mask, _mm512_xor_si512(v, flip));
    }
}

/// Fills `len` bytes at `dst` with `value`.
#[inline(always)]
unsafe fn fill(dst: *mut u8, value: u8, len: usize) {
    core::ptr::write_bytes(dst, value, len);
}

/// Epilogue constants shared by every block of one call.
#[derive(Clone, Copy)]
struct Epilogue {
    rounding: Rounding,
    folded: bool,
    uniform: bool,
    uniform_multiplier: __m512i,
    uniform_round: __m512i,
    uniform_shift: __m128i,
    any_left_shift: bool,
    lo8: __m128i,
    hi8: __m128i,
    out_offset: __m512i,
    lo: __m512i,
    hi: __m512i,
}

/// Runs the panel of `NB` blocks starting at block `first` for `M` rows and writes the outputs
/// (`out[m]` points at channel 0 of row `m`).
#[inline(always)]
unsafe fn panel_rows<const M: usize, const NB: usize>(
    w: &VnniWeights,
    rows: [*const u8; M],
    runs: Runs<'_>,
    first: usize,
    out: [*mut i8; M],
    e: &Epilogue,
) {
    let groups = w.depth.div_ceil(4);
    let tiles = w.tiles.as_ptr().add(first * groups);
    let acc = dot_panel::<M, NB>(rows, runs, tiles);
    for (acc_row, &dst) in acc.iter().zip(&out) {
        for (b, &a) in acc_row.iter().enumerate() {
            let block = first + b;
            let v = match e.rounding {
                Rounding::Single if e.uniform => {
                    finish_single_uniform(a, &w.uniform_offsets[block], e)
                }
                Rounding::Single if e.folded => finish_single_folded(a, &w.single_folded[block], e),
                Rounding::Single => finish_single(a, &w.single[block], e),
                Rounding::Double => finish(a, &w.consts[block], e),
            };
            let c = block * LANES;
            store_lanes(dst.add(c), v, w.channels - c);
        }
    }
}

/// Every panel for `M` rows.
#[inline(always)]
unsafe fn all_panels<const M: usize>(
    w: &VnniWeights,
    rows: [*const u8; M],
    runs: Runs<'_>,
    out: [*mut i8; M],
    e: &Epilogue,
) {
    let blocks = w.channels.div_ceil(LANES);
    let mut first = 0;
    while first < blocks {
        let nb = (blocks - first).min(w.panel_blocks);
        match nb {
            1 => panel_rows::<M, 1>(w, rows, runs, first, out, e),
            2 => panel_rows::<M, 2>(w, rows, runs, first, out, e),
            3 => panel_rows::<M, 3>(w, rows, runs, first, out, e),
            4 => panel_rows::<M, 4>(w, rows, runs, first, out, e),
            5 => panel_rows::<M, 5>(w, rows, runs, first, out, e),
            6 => panel_rows::<M, 6>(w, rows, runs, first, out, e),
            7 => panel_rows::<M, 7>(w, rows, runs, first, out, e),
            _ => panel_rows::<M, 8>(w, rows, runs, first, out, e),
        }
        first += nb;
    }
}

#[inline(always)]
unsafe fn epilogue(w: &VnniWeights, output_offset: i32, act_min: i32, act_max: i32) -> Epilogue {
    Epilogue {
        rounding: w.rounding,
        folded: w.folded,
        uniform: w.uniform.is_some(),
        uniform_multiplier: _mm512_set1_epi32(w.uniform.map_or(0, |u| u.multiplier)),
        uniform_round: _mm512_set1_epi64(w.uniform.map_or(0, |u| {
            (1i64 << (u.total_shift - 1)) + ((u.output_offset as i64) << u.total_shift)
        })),
        uniform_shift: _mm_cvtsi64_si128(w.uniform.map_or(0, |u| u.total_shift as i64)),
        any_left_shift: w.any_left_shift,
        lo8: _mm_set1_epi8(act_min.clamp(-128, 127) as i8),
        hi8: _mm_set1_epi8(act_max.clamp(-128, 127) as i8),
        out_offset: _mm512_set1_epi32(output_offset),
        lo: _mm512_set1_epi32(act_min),
        hi: _mm512_set1_epi32(act_max),
    }
}

/// FULLY_CONNECTED int8 over weights packed by [`VnniWeights::for_fully_connected`]; `false`
/// (nothing written) when `w` was packed for another shape.
///
/// Safety: the CPU has AVX-512 F/BW/VL/VNNI; `input` holds `batches * accum_depth` values
/// and `output` `batches * output_depth`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn fully_connected_s8(
    p: &FullyConnectedS8,
    dims: &FcDims,
    input: &[i8],
    output: &mut [i8],
    w: &VnniWeights,
) -> bool {
    if p.filter_offset != 0
        || !w.fits(
            dims.output_depth,
            dims.accum_depth,
            p.input_offset,
            p.output_offset,
            Rounding::Single,
        )
    {
        return false;
    }
    let k = dims.accum_depth;
    let mut row = MaybeUninit::<[u8; MAX_PATCH + 4]>::uninit();
    let row = row.as_mut_ptr() as *mut u8;
    // The last group's bytes past `k` meet zero weights; they only need to be initialized.
    fill(row.add(k & !3), 0, 4);
    let e = epilogue(w, p.output_offset, p.act_min, p.act_max);
    for b in 0..dims.batches {
        copy_flipped(row, input.as_ptr().add(b * k), k);
        let out = output.as_mut_ptr().add(b * dims.output_depth);
        let runs = Runs {
            offsets: &[0],
            groups: k.div_ceil(4),
        };
        all_panels::<1>(w, [row], runs, [out], &e);
    }
    true
}

/// Filter rows the direct convolution keeps offsets for on the stack.
const MAX_FILTER_ROWS: usize = 64;

std::thread_local! {
    /// The padded, sign-flipped input image of the direct convolution, kept per thread so a
    /// call does not allocate.
    static IMAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// CONV_2D int8 (ungrouped) over weights packed by [`VnniWeights::for_conv`]; `false`
/// (nothing written) when `w` was packed for another shape.
///
/// When a filter row is a whole number of depth groups (`filter_w * in_c` a multiple of 4,
/// no horizontal dilation), the kernel reads its input straight from a sign-flipped copy of the
/// image with the padding written out; otherwise it gathers im2col rows.
///
/// Safety: the CPU has AVX-512 F/BW/VL/VNNI; `input` and `output` are as long as `d` says, and
/// a filter patch is at most [`MAX_PATCH`] values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn conv2d_s8(
    p: &Conv2dS8,
    d: &SpatialDims,
    input: &[i8],
    output: &mut [i8],
    w: &VnniWeights,
) -> bool {
    let k = d.filter_h * d.filter_w * d.in_c;
    if d.filter_in_c != d.in_c
        || !w.fits(
            d.out_c,
            k,
            p.input_offset,
            p.output_offset,
            Rounding::Double,
        )
    {
        return false;
    }
    let run = d.filter_w * d.in_c;
    if p.window.dilation_w == 1
        && run.is_multiple_of(4)
        && d.filter_h <= MAX_FILTER_ROWS
        && direct_image_fits(p, d)
    {
        IMAGE.with(|image| conv2d_direct(p, d, input, output, w, &mut image.borrow_mut()));
    } else {
        conv2d_im2col(p, d, input, output, w);
    }
    true
}

/// Rows and columns of the padded image the direct convolution reads (see [`conv2d_direct`]);
/// `None` for an empty output or a size that overflows.
fn direct_image_size(p: &Conv2dS8, d: &SpatialDims) -> Option<(usize, usize)> {
    let win = p.window;
    let tall = (d.out_h.checked_sub(1)?)
        .checked_mul(win.stride_h as usize)?
        .checked_add((d.filter_h - 1).checked_mul(win.dilation_h as usize)? + 1)?;
    let wide = (d.out_w.checked_sub(1)?)
        .checked_mul(win.stride_w as usize)?
        .checked_add(d.filter_w)?;
    let height = (win.pad_top as usize + d.in_h).max(tall);
    let width = (win.pad_left as usize + d.in_w).max(wide);
    Some((height, width))
}

/// Whether the padded image stays within a few times the input: a model's strides and
/// paddings are not tied to its tensor shapes by the loader, so odd geometry (a huge stride
/// over a small output) takes the im2col path instead of allocating an image for it.
fn direct_image_fits(p: &Conv2dS8, d: &SpatialDims) -> bool {
    let input = d.in_h.saturating_mul(d.in_w).saturating_mul(d.in_c);
    direct_image_size(p, d)
        .and_then(|(h, w)| h.checked_mul(w)?.checked_mul(d.in_c))
        .is_some_and(|bytes| bytes <= input.saturating_mul(4).max(1 << 16))
}

/// The convolution reading filter rows straight from a padded, sign-flipped input image.
#[inline(always)]
unsafe fn conv2d_direct(
    p: &Conv2dS8,
    d: &SpatialDims,
    input: &[i8],
    output: &mut [i8],
    w: &VnniWeights,
    image: &mut Vec<u8>,
) {
    let win = p.window;
    let (sh, sw, dh) = (
        win.stride_h as usize,
        win.stride_w as usize,
        win.dilation_h as usize,
    );
    let (top, left) = (win.pad_top as usize, win.pad_left as usize);
    let c = d.in_c;
    if d.out_h == 0 || d.out_w == 0 {
        return;
    }
    // Tall and wide enough for every tap of every output pixel, in padded coordinates
    // (input row `y` is image row `y + top`).
    let Some((height, width)) = direct_image_size(p, d) else {
        return;
    };
    let line = width * c;
    image.clear();
    image.reserve(height * line);
    let img = image.as_mut_ptr();
    // `x + 128` of the input zero point, whose `x + input_offset` is 0.
    let pad = (128 - p.input_offset) as u8;
    let run = d.filter_w * c;
    let mut offsets = [0usize; MAX_FILTER_ROWS];
    for (fy, o) in offsets[..d.filter_h].iter_mut().enumerate() {
        *o = fy * dh * line;
    }
    let runs = Runs {
        offsets: &offsets[..d.filter_h],
        groups: run / 4,
    };
    let e = epilogue(w, p.output_offset, p.act_min, p.act_max);
    let pixels = d.out_h * d.out_w;
    for b in 0..d.batches {
        for y in 0..height {
            let dst = img.add(y * line);
            if y < top || y >= top + d.in_h {
                fill(dst, pad, line);
                continue;
            }
            fill(dst, pad, left * c);
            copy_flipped(
                dst.add(left * c),
                input.as_ptr().add(d.input_index(b, y - top, 0, 0)),
                d.in_w * c,
            );
            fill(
                dst.add((left + d.in_w) * c),
                pad,
                line - (left + d.in_w) * c,
            );
        }
        let base =
            |q: usize| img.add(((q / d.out_w) * sh * width + (q % d.out_w) * sw) * c) as *const u8;
        let out_base = output.as_mut_ptr();
        let out_at = |q: usize| out_base.add((b * pixels + q) * d.out_c);
        let mut q = 0;
        while q + CONV_PIXELS <= pixels {
            let rows: [*const u8; CONV_PIXELS] = core::array::from_fn(|m| base(q + m));
            let out: [*mut i8; CONV_PIXELS] = core::array::from_fn(|m| out_at(q + m));
            all_panels::<CONV_PIXELS>(w, rows, runs, out, &e);
            q += CONV_PIXELS;
        }
        for q in q..pixels {
            all_panels::<1>(w, [base(q)], runs, [out_at(q)], &e);
        }
    }
}

/// The convolution over gathered im2col rows.
#[inline(always)]
unsafe fn conv2d_im2col(
    p: &Conv2dS8,
    d: &SpatialDims,
    input: &[i8],
    output: &mut [i8],
    w: &VnniWeights,
) {
    let k = d.filter_h * d.filter_w * d.in_c;
    let kp = k.div_ceil(4) * 4;
    let mut rows_buf = MaybeUninit::<[u8; CONV_PIXELS * (MAX_PATCH + 4)]>::uninit();
    let rows_base = rows_buf.as_mut_ptr() as *mut u8;
    let row_ptr = |m: usize| rows_base.add(m * kp);
    for m in 0..CONV_PIXELS {
        fill(row_ptr(m).add(k), 0, kp - k);
    }
    // `x + 128` of the input zero point, whose `x + input_offset` is 0.
    let pad = (128 - p.input_offset) as u8;
    let e = epilogue(w, p.output_offset, p.act_min, p.act_max);
    let runs = Runs {
        offsets: &[0],
        groups: kp / 4,
    };
    let win = p.window;
    let pixels = d.out_h * d.out_w;
    let run = d.filter_w * d.in_c;
    for b in 0..d.batches {
        let gather = |q: usize, dst: *mut u8| {
            let (out_y, out_x) = (q / d.out_w, q % d.out_w);
            for fy in 0..d.filter_h {
                let line = dst.add(fy * run);
                let Some(iy) = tap(out_y, win.stride_h, win.pad_top, fy, win.dilation_h, d.in_h)
                else {
                    fill(line, pad, run);
                    continue;
                };
                for fx in 0..d.filter_w {
                    let at = line.add(fx * d.in_c);
                    match tap(
                        out_x,
                        win.stride_w,
                        win.pad_left,
                        fx,
                        win.dilation_w,
                        d.in_w,
                    ) {
                        Some(ix) => copy_flipped(
                            at,
                            input.as_ptr().add(d.input_index(b, iy, ix, 0)),
                            d.in_c,
                        ),
                        None => fill(at, pad, d.in_c),
                    }
                }
            }
        };
        let out_base = output.as_mut_ptr();
        let out_at = |q: usize| out_base.add((b * pixels + q) * d.out_c);
        let mut q = 0;
        while q + CONV_PIXELS <= pixels {
            for m in 0..CONV_PIXELS {
                gather(q + m, row_ptr(m));
            }
            let rows: [*const u8; CONV_PIXELS] = core::array::from_fn(|m| row_ptr(m) as *const u8);
            let out: [*mut i8; CONV_PIXELS] = core::array::from_fn(|m| out_at(q + m));
            all_panels::<CONV_PIXELS>(w, rows, runs, out, &e);
            q += CONV_PIXELS;
        }
        for q in q..pixels {
            gather(q, row_ptr(0));
            all_panels::<1>(w, [row_ptr(0) as *const u8], runs, [out_at(q)], &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::super::{supported, Isa};
    use super::*;
    use crate::kernel_variants_match_reference;
    use crate::kernels::host_simd::testing::*;
    use crate::kernels::testing::Rng;

    /// The VNNI FC over freshly packed weights; the reference where the CPU lacks AVX-512 or
    /// the weights cannot be packed (a filter offset), so a kernel that declines a shape it
    /// should take fails the assertion instead of passing quietly.
    fn run_fc(case: &FcCase) -> Vec<i8> {
        let ops = case.ops();
        let packed = VnniWeights::for_fully_connected(&case.p, &case.dims, &ops);
        assert_eq!(packed.is_some(), case.p.filter_offset == 0, "{case:?}");
        let mut out = vec![0i8; case.dims.batches * case.dims.output_depth];
        match packed {
            Some(w) if supported(Isa::Avx512) => {
                // SAFETY: AVX-512 checked; the case's slices match its dims.
                assert!(unsafe {
                    fully_connected_s8(&case.p, &case.dims, ops.input, &mut out, &w)
                });
                out
            }
            _ => fc_reference(case),
        }
    }

    fn run_conv(case: &ConvCase) -> Vec<i8> {
        let ops = case.ops();
        let packed = VnniWeights::for_conv(&case.p, &case.d, &ops);
        let packable = !case.multipliers.contains(&i32::MIN);
        assert_eq!(packed.is_some(), packable, "{case:?}");
        let mut out = vec![0i8; case.d.output_elements()];
        match packed {
            Some(w) if supported(Isa::Avx512) => {
                // SAFETY: AVX-512 checked; the case's slices match its geometry.
                assert!(unsafe { conv2d_s8(&case.p, &case.d, ops.input, &mut out, &w) });
                out
            }
            _ => conv_reference(case),
        }
    }

    kernel_variants_match_reference!(
        vnni_fully_connected_matches_reference,
        cases = 400,
        setup = |rng: &mut Rng| FcCase::random(rng),
        reference = fc_reference,
        variants = [run_fc]
    );

    kernel_variants_match_reference!(
        vnni_conv_matches_reference,
        cases = 400,
        setup = |rng: &mut Rng| ConvCase::random(rng),
        reference = conv_reference,
        variants = [run_conv]
    );

    /// The geometries of the MLPerf KWS model's convolutions (direct image reads: a 10x4
    /// stride-2 first layer over one channel, then 1x1 64 -> 64), with random values.
    #[test]
    fn vnni_conv_kws_shapes_match_reference() {
        let mut rng = Rng(0x4B57);
        for (k_h, k_w, in_c, in_h, in_w, stride, pad) in [
            (10, 4, 1, 49usize, 10usize, 2usize, (4, 1)),
            (1, 1, 64, 25, 5, 1, (0, 0)),
        ] {
            let mut case = ConvCase::random(&mut rng);
            let out_h = in_h.div_ceil(stride);
            let out_w = in_w.div_ceil(stride);
            case.d = SpatialDims {
                batches: 1,
                in_h,
                in_w,
                in_c,
                out_h,
                out_w,
                out_c: 64,
                filter_h: k_h,
                filter_w: k_w,
                filter_in_c: in_c,
            };
            case.p.window.stride_h = stride as u16;
            case.p.window.stride_w = stride as u16;
            case.p.window.dilation_h = 1;
            case.p.window.dilation_w = 1;
            case.p.window.pad_top = pad.0;
            case.p.window.pad_left = pad.1;
            case.input = rng.vec_i8(in_h * in_w * in_c);
            case.filter = rng.vec_i8(64 * k_h * k_w * in_c);
            case.bias = Some((0..64).map(|_| rng.range(-20000, 20000) as i32).collect());
            case.multipliers = (0..64)
                .map(|_| rng.range(1 << 30, i32::MAX as i64) as i32)
                .collect();
            case.shifts = (0..64).map(|_| rng.range(-12, 1) as i32).collect();
            assert_eq!(run_conv(&case), conv_reference(&case), "{:?}", case.d);
        }
    }

    /// Strides the loader accepts but no real model has (the output shape is not tied to them)
    /// must not make the direct path allocate a giant image: the kernel takes im2col rows.
    #[test]
    fn vnni_conv_with_huge_stride_matches_reference() {
        let mut rng = Rng(0x57_81DE);
        let mut case = ConvCase::random(&mut rng);
        case.d = SpatialDims {
            batches: 1,
            in_h: 3,
            in_w: 3,
            in_c: 4,
            out_h: 2,
            out_w: 2,
            out_c: 16,
            filter_h: 1,
            filter_w: 1,
            filter_in_c: 4,
        };
        case.p.window.stride_h = u16::MAX;
        case.p.window.stride_w = u16::MAX;
        case.p.window.dilation_h = 1;
        case.p.window.dilation_w = 1;
        case.p.window.pad_top = 0;
        case.p.window.pad_left = 0;
        case.input = rng.vec_i8(3 * 3 * 4);
        case.filter = rng.vec_i8(16 * 4);
        case.bias = None;
        case.multipliers = vec![1 << 30];
        case.shifts = vec![-8];
        assert!(!direct_image_fits(&case.p, &case.d));
        assert_eq!(run_conv(&case), conv_reference(&case));
    }

    /// Packed weights are used only for the shape they were packed for.
    #[test]
    fn vnni_weights_refuse_another_shape() {
        let mut rng = Rng(7);
        let mut case = FcCase::random(&mut rng);
        case.p.filter_offset = 0;
        let w = VnniWeights::for_fully_connected(&case.p, &case.dims, &case.ops()).unwrap();
        case.p.input_offset += 1;
        let mut out = vec![0i8; case.dims.batches * case.dims.output_depth];
        if supported(Isa::Avx512) {
            // SAFETY: AVX-512 checked; the case's slices match its dims.
            let ran = unsafe { fully_connected_s8(&case.p, &case.dims, &case.input, &mut out, &w) };
            assert!(!ran);
        }
    }
}

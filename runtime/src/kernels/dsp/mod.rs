//! Faster int8 kernels in the style of Cortex-M's DSP extension (SXTB16, SXTAB16, SMLAD,
//! SMMULR, SSAT).
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
//! - convolution as a GEMM over blocks of 4 output pixels x 1 output channel: each block's
//!   windows are widened once and reused by every output channel (an `asm!` loop on the
//!   device, 13 instructions per 16 MACs); a filter window that is not 1x1 is gathered per
//!   pixel into a stack buffer (padding filled with the input zero point, which contributes `0`
//!   after the offset is added, as TFLite's skipped taps do);
//! - requantization of TFLite's double rounding: [`BoundedRequantizer`] (`SMMULR` and one
//!   rounding shift, five instructions) where the accumulator provably stays below 2^28 (any
//!   realistic layer); a layer outside that bound runs the scalar reference, so the DSP build
//!   carries one kernel per op and no general-requantizer copy; `SSAT` clamps a full int8
//!   activation range.
//!
//! Every `asm!` block has a Rust twin with the same data layout and instruction semantics
//! (built on non-ARM targets), which is what the host tests run.

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

        /// `(a * b + 2^31) >> 32`: the rounded high word of the 64-bit product.
        #[inline(always)]
        pub fn smmulr(a: i32, b: i32) -> i32 {
            let r: i32;
            // SAFETY: a register-only instruction.
            unsafe {
                asm!("smmulr {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                     options(pure, nomem, nostack, preserves_flags));
            }
            r
        }

        /// `x` saturated to `-128..=127`.
        #[inline(always)]
        pub fn ssat8(x: i32) -> i32 {
            let r: i32;
            // SAFETY: a register-only instruction (it may set the sticky Q flag, which nothing
            // reads).
            unsafe {
                asm!("ssat {r}, #8, {x}", r = lateout(reg) r, x = in(reg) x,
                     options(pure, nomem, nostack));
            }
            r
        }
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

        /// `(a * b + 2^31) >> 32`: the rounded high word of the 64-bit product.
        #[inline(always)]
        pub fn smmulr(a: i32, b: i32) -> i32 {
            ((a as i64 * b as i64 + (1 << 31)) >> 32) as i32
        }

        /// `x` saturated to `-128..=127`.
        #[inline(always)]
        pub fn ssat8(x: i32) -> i32 {
            x.clamp(-128, 127)
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

/// Largest `|x + input_offset| * |filter|` of one int8 product (`255 * 128`): with the offset
/// in `-127..=128`, bounds an accumulator by `terms * MAX_PRODUCT + |bias|`.
pub const MAX_PRODUCT: u64 = 255 * 128;

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding) for accumulators known to be
/// small, in four register operations: `SMMULR` and one rounding shift.
///
/// Valid when `|acc << left_shift| < 2^28` (the caller proves it from the number of terms and
/// the bias, see [`BoundedRequantizer::new`]) and the right shift is at most 30. Then
/// - `SaturatingRoundingDoublingHighMul(a, m) = (a * m + 2^30) >> 31 = SMMULR(2a, m)`, as
///   `2a` does not overflow;
/// - its result `x` has `|x| <= 2^28`, and TFLite's `RoundingDivideByPOT(x, n)` (round half
///   away from zero) equals `(2x + 2^n - [x < 0]) >> (n + 1)` for every `n >= 0` without
///   overflow (the `- [x < 0]` turns "round half up" into "round half away from zero", the
///   reference's `remainder > threshold` test; for `n = 0` it vanishes in the shift).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct BoundedRequantizer {
    multiplier: i32,
    /// `left_shift + 1`.
    left_shift1: u32,
    /// `2^right_shift`.
    round: i32,
    /// `right_shift + 1`.
    right_shift1: u32,
}

/// Accumulator magnitude below which [`BoundedRequantizer`] is exact (after the left shift).
pub const BOUNDED_ACC_LIMIT: u64 = 1 << 28;

impl BoundedRequantizer {
    /// `None` unless `multiplier != i32::MIN`, `shift` in `-30..=30` and
    /// `acc_bound << left_shift < 2^28`, where `acc_bound` bounds `|acc|` for every input.
    #[inline]
    pub fn new(multiplier: i32, shift: i32, acc_bound: u64) -> Option<Self> {
        if multiplier == i32::MIN || !(-30..=30).contains(&shift) {
            return None;
        }
        let left_shift = shift.max(0) as u32;
        let right_shift = (-shift).max(0) as u32;
        if acc_bound.checked_shl(left_shift)? >= BOUNDED_ACC_LIMIT || acc_bound >= BOUNDED_ACC_LIMIT
        {
            return None;
        }
        Some(BoundedRequantizer {
            multiplier,
            left_shift1: left_shift + 1,
            round: 1 << right_shift,
            right_shift1: right_shift + 1,
        })
    }

    /// Equals `multiply_by_quantized_multiplier(acc, multiplier, shift)` for `acc` within the
    /// bound given to [`BoundedRequantizer::new`].
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i32 {
        let x = simd::smmulr(acc.wrapping_shl(self.left_shift1), self.multiplier);
        self.round
            .wrapping_add(x.wrapping_shl(1))
            .wrapping_add(x >> 31)
            >> self.right_shift1
    }

    /// Equals `multiply_by_quantized_multiplier(acc, multiplier, shift)` for `acc` within the
    /// bound given to [`BoundedRequantizer::new`]: the emulated version's five instructions
    /// (register shifts take the amounts as they are, which [`BoundedRequantizer::new`] keeps
    /// below 32, so no masking as Rust's shifts would add).
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: register-only instructions.
        unsafe {
            core::arch::asm!(
                "lsl {t}, {acc}, {ls1}",
                "smmulr {t}, {t}, {m}",
                "add {r}, {round}, {t}, lsl #1",
                "add {r}, {r}, {t}, asr #31",
                "asr {r}, {r}, {rs1}",
                acc = in(reg) acc,
                ls1 = in(reg) self.left_shift1,
                m = in(reg) self.multiplier,
                round = in(reg) self.round,
                rs1 = in(reg) self.right_shift1,
                t = out(reg) _,
                r = out(reg) r,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        r
    }
}

/// `v` clamped to the activation range `act_min..=act_max`; when the range is all of int8
/// (`full_range`, checked by the caller once per layer), one `SSAT` instead of two
/// compare-and-selects.
#[inline(always)]
pub fn clamp_to_int8(v: i32, full_range: bool, act_min: i32, act_max: i32) -> i8 {
    if full_range {
        simd::ssat8(v) as i8
    } else {
        v.clamp(act_min, act_max) as i8
    }
}

/// Per-channel quantization arrays of equal length, one entry or one per channel (what
/// [`per_channel`] indexes); their values are checked where the requantizers are built.
fn per_channel_counts_ok(multipliers: &[i32], shifts: &[i32], channels: usize) -> bool {
    multipliers.len() == shifts.len() && (multipliers.len() == 1 || multipliers.len() >= channels)
}

/// Output channels whose bias and requantizer are prepared at once (a stack array), so the
/// per-output work is one inline requantization.
const CHANNEL_CHUNK: usize = 64;

mod conv;
mod fc;
mod pool;

pub use conv::{conv2d_s8_dsp, depthwise_conv2d_s8_dsp};
pub use fc::fully_connected_s8_dsp;
pub use pool::average_pool2d_s8_dsp;

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::testing::Rng;
    use crate::quant::{multiply_by_quantized_multiplier, quantize_multiplier};
    use crate::tensor::{DType, Location, Shape, TensorDef};

    pub(super) fn def() -> TensorDef {
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
        assert_eq!(smmulr(1 << 30, 1 << 30), 1 << 28);
        assert_eq!(smmulr(3, 1 << 30), 1);
        assert_eq!(smmulr(-3, i32::MAX), -1);
        assert_eq!(smmulr(i32::MIN, i32::MIN), 1 << 30);
        assert_eq!(ssat8(300), 127);
        assert_eq!(ssat8(-129), -128);
        assert_eq!(ssat8(-7), -7);
    }

    #[test]
    fn bounded_requantizer_matches_double_rounding() {
        let mut rng = Rng(12);
        let mut checked = 0;
        for i in 0..300_000 {
            let multiplier = match i % 13 {
                0 => i32::MAX,
                1 => i32::MIN + 1,
                2 => 1 << 30,
                _ => rng.next_u64() as i32,
            };
            let shift = rng.range(-31, 30) as i32;
            let bound = (rng.next_u64() >> rng.range(34, 63)).max(1);
            let Some(r) = BoundedRequantizer::new(multiplier, shift, bound) else {
                assert!(
                    shift < -30 || (bound << shift.max(0)) >= BOUNDED_ACC_LIMIT,
                    "refused {multiplier} {shift} {bound}"
                );
                continue;
            };
            let magnitude = bound as i64;
            let acc = match i % 5 {
                0 => magnitude as i32,
                1 => -magnitude as i32,
                _ => ((rng.next_u64() % (2 * bound + 1)) as i64 - magnitude) as i32,
            };
            assert_eq!(
                r.apply(acc),
                multiply_by_quantized_multiplier(acc, multiplier, shift),
                "acc {acc} multiplier {multiplier} shift {shift}"
            );
            checked += 1;
        }
        assert!(checked > 100_000, "only {checked} cases in range");
        // Halfway cases of the rounding shift, both signs.
        for shift in -30..=0 {
            let r = BoundedRequantizer::new(1 << 30, shift, 1 << 27).unwrap();
            for acc in [
                -(3 << 20),
                -(1 << 20),
                -5,
                -3,
                -1,
                1,
                3,
                5,
                1 << 20,
                3 << 20,
            ] {
                assert_eq!(
                    r.apply(acc),
                    multiply_by_quantized_multiplier(acc, 1 << 30, shift)
                );
            }
        }
        assert!(BoundedRequantizer::new(i32::MIN, -1, 1).is_none());
        assert!(BoundedRequantizer::new(1 << 30, -31, 1).is_none());
        assert!(BoundedRequantizer::new(1 << 30, 0, 1 << 28).is_none());
        assert!(BoundedRequantizer::new(1 << 30, 2, 1 << 26).is_none());
    }

    /// Requantization arrays: one entry or one per channel, realistic scales and some extremes.
    pub(super) fn random_requant(rng: &mut Rng, channels: usize) -> (Vec<i32>, Vec<i32>) {
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

    pub(super) fn random_act(rng: &mut Rng) -> (i32, i32) {
        match rng.range(0, 2) {
            0 => (-128, 127),
            1 => (rng.range(-128, 0) as i32, 127),
            _ => (rng.range(-128, 0) as i32, rng.range(1, 127) as i32),
        }
    }
}

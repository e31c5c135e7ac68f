//! Average pooling with the DSP shim: 4 channels summed per `SXTAB16` pair.

use super::simd;
use crate::kernels::conv::SpatialDims;
use crate::kernels::pooling::{filter_range, Pool2dS8, PoolKind};

/// Largest window (in-image elements) whose per-channel sums fit the `i16` lanes:
/// `256 * -128 = i16::MIN` and `256 * 127 < i16::MAX`.
pub const AVERAGE_WINDOW_MAX: usize = 256;

/// [`Pool2dS8`] of kind [`PoolKind::Average`]: each output pixel sums its window 4 channels at
/// a time in two `i16`-pair accumulators (`SXTAB16` / `SXTAB16 ROR #8` per input word), then
/// divides as TFLite's reference does (round half away from zero, integer division).
/// Same arguments as [`crate::kernels::pooling::pool2d_s8_reference`]; `false` (output
/// untouched) for max pooling, a window over `AVERAGE_WINDOW_MAX` elements, an empty window
/// or inconsistent lengths, which the reference then handles (and reports).
pub fn average_pool2d_s8_dsp(
    p: &Pool2dS8,
    d: SpatialDims,
    input: &[i8],
    output: &mut [i8],
) -> bool {
    let channels = d.in_c;
    if p.kind != PoolKind::Average
        || d.out_c != channels
        || d.filter_h * d.filter_w > AVERAGE_WINDOW_MAX
        || input.len() < d.batches * d.in_h * d.in_w * channels
        || output.len() < d.batches * d.out_h * d.out_w * channels
    {
        return false;
    }
    let w = p.window;
    let vector_end = channels & !3;
    // Every window must be non-empty before anything is written (the reference reports it).
    for out_y in 0..d.out_h {
        let (y0, y1) = filter_range(out_y, w.stride_h, w.pad_top, d.filter_h, d.in_h);
        if y0 >= y1 {
            return false;
        }
    }
    for out_x in 0..d.out_w {
        let (x0, x1) = filter_range(out_x, w.stride_w, w.pad_left, d.filter_w, d.in_w);
        if x0 >= x1 {
            return false;
        }
    }
    let finish = |sum: i32, count: i32| {
        let average = if sum > 0 {
            (sum + count / 2) / count
        } else {
            (sum - count / 2) / count
        };
        average.clamp(p.act_min, p.act_max) as i8
    };
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            let (y0, y1) = filter_range(out_y, w.stride_h, w.pad_top, d.filter_h, d.in_h);
            let in_y0 = out_y * w.stride_h as usize + y0 - w.pad_top as usize;
            let rows = y1 - y0;
            for out_x in 0..d.out_w {
                let (x0, x1) = filter_range(out_x, w.stride_w, w.pad_left, d.filter_w, d.in_w);
                let in_x0 = out_x * w.stride_w as usize + x0 - w.pad_left as usize;
                let cols = x1 - x0;
                let count = (rows * cols) as i32;
                let first = d.input_index(b, in_y0, in_x0, 0);
                let row_step = d.in_w * channels;
                let out_at = d.output_index(b, out_y, out_x, 0);
                let mut c = 0;
                while c < vector_end {
                    let (mut sum02, mut sum13) = (0u32, 0u32);
                    for r in 0..rows {
                        let mut at = first + r * row_step + c;
                        for _ in 0..cols {
                            // SAFETY: `at + 4 <= ` the window's last in-image pixel's end,
                            // inside `input` (its length is checked above).
                            let x = unsafe { simd::read_u32(input.as_ptr().add(at)) };
                            sum02 = simd::sxtab16(sum02, x);
                            sum13 = simd::sxtab16_ror8(sum13, x);
                            at += channels;
                        }
                    }
                    let lanes = [
                        sum02 as u16 as i16 as i32,
                        sum13 as u16 as i16 as i32,
                        (sum02 >> 16) as u16 as i16 as i32,
                        (sum13 >> 16) as u16 as i16 as i32,
                    ];
                    for (lane, &sum) in lanes.iter().enumerate() {
                        output[out_at + c + lane] = finish(sum, count);
                    }
                    c += 4;
                }
                while c < channels {
                    let mut sum = 0i32;
                    for r in 0..rows {
                        let row = first + r * row_step + c;
                        for k in 0..cols {
                            sum += input[row + k * channels] as i32;
                        }
                    }
                    output[out_at + c] = finish(sum, count);
                    c += 1;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::dsp::tests::def;
    use crate::kernels::pooling::pool2d_s8_reference;
    use crate::kernels::testing::Rng;
    use crate::kernels::Window;

    #[derive(Debug)]
    struct PoolCase {
        p: Pool2dS8,
        d: SpatialDims,
        input: Vec<i8>,
    }

    fn pool_case(rng: &mut Rng) -> PoolCase {
        let (filter_h, filter_w) = if rng.range(0, 4) == 0 {
            // Global pooling, the classifier-head case, up to the i16 limit.
            (rng.range(1, 16) as usize, rng.range(1, 16) as usize)
        } else {
            (rng.range(1, 4) as usize, rng.range(1, 4) as usize)
        };
        let window = Window {
            stride_h: rng.range(1, 3) as u16,
            stride_w: rng.range(1, 3) as u16,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: rng.range(0, filter_h as i64 - 1) as u16,
            pad_left: rng.range(0, filter_w as i64 - 1) as u16,
        };
        let in_h = rng.range(filter_h as i64, filter_h as i64 + 5) as usize;
        let in_w = rng.range(filter_w as i64, filter_w as i64 + 5) as usize;
        let out = |input: usize, k: usize, stride: u16, pad: u16| {
            (input + 2 * pad as usize - k) / stride as usize + 1
        };
        let channels = rng.range(1, 19) as usize;
        let d = SpatialDims {
            batches: rng.range(1, 2) as usize,
            in_h,
            in_w,
            in_c: channels,
            out_h: out(in_h, filter_h, window.stride_h, window.pad_top),
            out_w: out(in_w, filter_w, window.stride_w, window.pad_left),
            out_c: channels,
            filter_h,
            filter_w,
            filter_in_c: 1,
        };
        let (act_min, act_max) = crate::kernels::dsp::tests::random_act(rng);
        PoolCase {
            p: Pool2dS8 {
                kind: PoolKind::Average,
                input: def(),
                output: def(),
                filter_h: filter_h as u16,
                filter_w: filter_w as u16,
                window,
                act_min,
                act_max,
            },
            input: if rng.range(0, 5) == 0 {
                // Extremes: the sums reach the i16 limits.
                std::vec![if rng.range(0, 1) == 0 { -128 } else { 127 }; d.batches * in_h * in_w * channels]
            } else {
                rng.vec_i8(d.batches * in_h * in_w * channels)
            },
            d,
        }
    }

    fn pool_reference(c: &PoolCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        pool2d_s8_reference(&c.p, c.d, &c.input, &mut out).unwrap();
        out
    }

    fn pool_dsp(c: &PoolCase) -> Vec<i8> {
        let mut out = std::vec![0i8; c.d.output_elements()];
        assert!(average_pool2d_s8_dsp(&c.p, c.d, &c.input, &mut out));
        out
    }

    crate::kernel_variants_match_reference!(
        average_pool2d_s8_dsp_matches_reference,
        cases = 400,
        setup = pool_case,
        reference = pool_reference,
        variants = [pool_dsp]
    );

    #[test]
    fn declines_max_pooling_and_large_windows() {
        let mut rng = Rng(9);
        let mut c = pool_case(&mut rng);
        let mut out = std::vec![0i8; c.d.output_elements()];
        c.p.kind = PoolKind::Max;
        assert!(!average_pool2d_s8_dsp(&c.p, c.d, &c.input, &mut out));
        c.p.kind = PoolKind::Average;
        c.d.filter_h = 17;
        c.d.filter_w = 16;
        assert!(!average_pool2d_s8_dsp(&c.p, c.d, &c.input, &mut out));
    }
}

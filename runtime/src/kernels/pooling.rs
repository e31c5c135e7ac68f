//! AVERAGE_POOL_2D and MAX_POOL_2D, int8 and float32.
//!
//! The scalar references follow TFLite's `reference_integer_ops::AveragePool/MaxPool` and
//! `reference_ops::AveragePool/MaxPool` (float): only in-image elements count, the int8 average
//! rounds half away from zero, and the fused activation clamps the result.

use serde::{Deserialize, Serialize};

use super::conv::{nhwc, SpatialDims};
use super::{Activation, Kernel, Window};
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::{Error, Result};
use crate::tensor::{DType, TensorDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    Average,
    Max,
}

impl PoolKind {
    fn op_name(self) -> &'static str {
        match self {
            PoolKind::Average => "AVERAGE_POOL_2D",
            PoolKind::Max => "MAX_POOL_2D",
        }
    }
}

/// Int8 pooling. Input and output share scale and zero point in TFLite, so no requantization.
///
/// Converter (TFLite `Pool2DOptions`): `filter_h/filter_w` = `filter_height/filter_width`,
/// `window.stride_*` = `stride_h/stride_w`, `window.dilation_* = 1`, `window.pad_top/pad_left` =
/// `ComputePaddingHeightWidth(stride, dilation 1, in, filter, padding)` (0 for VALID), and
/// `act_min/act_max` = `CalculateActivationRangeQuantized` of the fused activation with the
/// output's scale and zero point (as for [`super::conv::Conv2dS8`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool2dS8 {
    pub kind: PoolKind,
    pub input: TensorDef,
    pub output: TensorDef,
    pub filter_h: u16,
    pub filter_w: u16,
    /// Dilation is always 1 for pooling.
    pub window: Window,
    pub act_min: i32,
    pub act_max: i32,
}

/// Float32 pooling; fields filled as for [`Pool2dS8`], `activation` = the fused activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool2dF32 {
    pub kind: PoolKind,
    pub input: TensorDef,
    pub output: TensorDef,
    pub filter_h: u16,
    pub filter_w: u16,
    pub window: Window,
    pub activation: Activation,
}

fn pool_dims(
    input: &TensorDef,
    output: &TensorDef,
    filter_h: u16,
    filter_w: u16,
) -> Option<SpatialDims> {
    let [batches, in_h, in_w, in_c] = nhwc(input)?;
    let [out_n, out_h, out_w, out_c] = nhwc(output)?;
    if out_n != batches || out_c != in_c || filter_h == 0 || filter_w == 0 {
        return None;
    }
    Some(SpatialDims {
        batches,
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c,
        filter_h: filter_h as usize,
        filter_w: filter_w as usize,
        filter_in_c: 1,
    })
}

/// In-image filter range `[start, end)` along one axis (`filter_x_start/filter_x_end` in TFLite).
#[inline(always)]
pub(crate) fn filter_range(
    out: usize,
    stride: u16,
    pad: u16,
    filter: usize,
    size: usize,
) -> (usize, usize) {
    let origin = (out * stride as usize) as i64 - pad as i64;
    let start = (-origin).max(0) as usize;
    let end = (size as i64 - origin).clamp(0, filter as i64) as usize;
    (start, end)
}

/// Every output window must hold at least one in-image element (TFLite fails the op otherwise).
fn windows_nonempty(d: &SpatialDims, w: &Window) -> bool {
    let axis = |out: usize, stride: u16, pad: u16, filter: usize, size: usize| {
        // Origins grow with the output index, so the first and last windows are the extremes.
        let (s0, e0) = filter_range(0, stride, pad, filter, size);
        let (s1, e1) = filter_range(out - 1, stride, pad, filter, size);
        s0 < e0 && s1 < e1
    };
    axis(d.out_h, w.stride_h, w.pad_top, d.filter_h, d.in_h)
        && axis(d.out_w, w.stride_w, w.pad_left, d.filter_w, d.in_w)
}

const SHAPES: Error = Error::Malformed {
    what: "pooling shapes",
};
const EMPTY_WINDOW: Error = Error::Malformed {
    what: "pooling window outside the input",
};

/// Scalar reference for [`Pool2dS8`] (`reference_integer_ops::AveragePool` / `MaxPool`).
/// Fails like TFLite when a window holds no in-image element.
pub fn pool2d_s8_reference(
    p: &Pool2dS8,
    d: SpatialDims,
    input: &[i8],
    output: &mut [i8],
) -> Result<()> {
    let w = p.window;
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            let (y0, y1) = filter_range(out_y, w.stride_h, w.pad_top, d.filter_h, d.in_h);
            let in_y0 = (out_y * w.stride_h as usize + y0).wrapping_sub(w.pad_top as usize);
            for out_x in 0..d.out_w {
                let (x0, x1) = filter_range(out_x, w.stride_w, w.pad_left, d.filter_w, d.in_w);
                let in_x0 = (out_x * w.stride_w as usize + x0).wrapping_sub(w.pad_left as usize);
                for c in 0..d.in_c {
                    let mut sum: i32 = 0;
                    let mut count: i32 = 0;
                    let mut max = i8::MIN;
                    for in_y in in_y0..in_y0 + (y1 - y0) {
                        for in_x in in_x0..in_x0 + (x1 - x0) {
                            let v = input[d.input_index(b, in_y, in_x, c)];
                            sum = sum.wrapping_add(v as i32);
                            count = count.wrapping_add(1);
                            max = max.max(v);
                        }
                    }
                    let value = match p.kind {
                        PoolKind::Average => {
                            if count == 0 {
                                return Err(EMPTY_WINDOW);
                            }
                            // Round to nearest, ties away from zero (C++ division truncates, as Rust's does).
                            if sum > 0 {
                                sum.wrapping_add(count / 2).wrapping_div(count)
                            } else {
                                sum.wrapping_sub(count / 2).wrapping_div(count)
                            }
                        }
                        PoolKind::Max => max as i32,
                    };
                    output[d.output_index(b, out_y, out_x, c)] =
                        value.clamp(p.act_min, p.act_max) as i8;
                }
            }
        }
    }
    Ok(())
}

/// Scalar reference for [`Pool2dF32`] (`reference_ops::AveragePool` / `MaxPool`, float).
pub fn pool2d_f32_reference(
    p: &Pool2dF32,
    d: SpatialDims,
    input: &[f32],
    output: &mut [f32],
) -> Result<()> {
    let w = p.window;
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            let (y0, y1) = filter_range(out_y, w.stride_h, w.pad_top, d.filter_h, d.in_h);
            let in_y0 = (out_y * w.stride_h as usize + y0).wrapping_sub(w.pad_top as usize);
            for out_x in 0..d.out_w {
                let (x0, x1) = filter_range(out_x, w.stride_w, w.pad_left, d.filter_w, d.in_w);
                let in_x0 = (out_x * w.stride_w as usize + x0).wrapping_sub(w.pad_left as usize);
                for c in 0..d.in_c {
                    let mut total = 0.0f32;
                    let mut count = 0i32;
                    let mut max = f32::MIN;
                    for in_y in in_y0..in_y0 + (y1 - y0) {
                        for in_x in in_x0..in_x0 + (x1 - x0) {
                            let v = input[d.input_index(b, in_y, in_x, c)];
                            total += v;
                            count += 1;
                            // std::max(max, v): v only when max < v.
                            if max < v {
                                max = v;
                            }
                        }
                    }
                    let value = match p.kind {
                        PoolKind::Average => {
                            if count == 0 {
                                return Err(EMPTY_WINDOW);
                            }
                            total / count as f32
                        }
                        PoolKind::Max => max,
                    };
                    output[d.output_index(b, out_y, out_x, c)] = p.activation.apply_f32(value);
                }
            }
        }
    }
    Ok(())
}

fn validate_pool(
    v: &Validator,
    input: &TensorDef,
    output: &TensorDef,
    (filter_h, filter_w): (u16, u16),
    window: &Window,
    dtype: DType,
) -> Result<()> {
    v.activation(input, dtype)?;
    v.activation(output, dtype)?;
    v.disjoint(input, output)?;
    window.validate(v)?;
    v.check(
        window.dilation_h == 1 && window.dilation_w == 1,
        "pooling has no dilation",
    )?;
    let d = pool_dims(input, output, filter_h, filter_w).ok_or(v.fail(
        "input and output shapes do not form a pooling (NHWC, same channels, non-empty filter)",
    ))?;
    v.check(
        windows_nonempty(&d, window),
        "a pooling window lies entirely in the padding",
    )
}

impl Kernel for Pool2dS8 {
    fn name(&self) -> &'static str {
        self.kind.op_name()
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        validate_pool(
            v,
            &self.input,
            &self.output,
            (self.filter_h, self.filter_w),
            &self.window,
            DType::I8,
        )?;
        v.act_range_s8(self.act_min, self.act_max)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = pool_dims(&self.input, &self.output, self.filter_h, self.filter_w).ok_or(SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        let (input, output) = (ins.i8(&self.input)?, as_i8_mut(out));
        if super::host_simd::pool2d_s8(self, d, input, output) {
            return Ok(());
        }
        // The DSP-style average pool where the target has it (see `dsp::ENABLED`); it declines
        // max pooling and shapes it does not handle, which the reference then runs.
        if super::dsp::ENABLED && super::dsp::average_pool2d_s8_dsp(self, d, input, output) {
            return Ok(());
        }
        pool2d_s8_reference(self, d, input, output)
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
    }
}

impl Kernel for Pool2dF32 {
    fn name(&self) -> &'static str {
        self.kind.op_name()
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        validate_pool(
            v,
            &self.input,
            &self.output,
            (self.filter_h, self.filter_w),
            &self.window,
            DType::F32,
        )
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = pool_dims(&self.input, &self.output, self.filter_h, self.filter_w).ok_or(SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        pool2d_f32_reference(self, d, ins.f32(&self.input)?, as_f32_mut(out)?)
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::conv::tests::{window, Mem};

    fn run_s8(
        kind: PoolKind,
        input: (&[u32], &[i8]),
        out: &[u32],
        filter: u16,
        w: Window,
        act: (i32, i32),
    ) -> Result<Vec<i8>> {
        let mut m = Mem::default();
        let input_def = m.activation(DType::I8, input.0);
        let output = m.activation(DType::I8, out);
        let k = Pool2dS8 {
            kind,
            input: input_def.clone(),
            output,
            filter_h: filter,
            filter_w: filter,
            window: w,
            act_min: act.0,
            act_max: act.1,
        };
        m.run(&k, &input_def, input.1)
    }

    #[test]
    fn average_counts_only_in_image_elements_and_rounds_away_from_zero() {
        // SAME 2x2 pooling, stride 1, on 2x2: the bottom/right windows hang over the edge.
        let out = run_s8(
            PoolKind::Average,
            (&[1, 2, 2, 1], &[1, 2, 3, 4]),
            &[1, 2, 2, 1],
            2,
            window(1, 1, 0),
            (-128, 127),
        )
        .unwrap();
        // 10/4 = 2.5 -> 3; 6/2 = 3; 7/2 = 3.5 -> 4; 4.
        assert_eq!(out, [3, 3, 4, 4]);
        let out = run_s8(
            PoolKind::Average,
            (&[1, 1, 2, 1], &[-1, -2]),
            &[1, 1, 1, 1],
            2,
            window(1, 1, 0),
            (-128, 127),
        )
        .unwrap();
        assert_eq!(out, [-2]);
    }

    #[test]
    fn max_with_stride_two_and_clamp() {
        let input: Vec<i8> = (0..16).map(|v: i32| (v * 10 - 80) as i8).collect();
        let out = run_s8(
            PoolKind::Max,
            (&[1, 4, 4, 1], &input),
            &[1, 2, 2, 1],
            2,
            window(2, 1, 0),
            (-128, 60),
        )
        .unwrap();
        assert_eq!(out, [-30, -10, 50, 60]);
        let out = run_s8(
            PoolKind::Max,
            (&[1, 1, 1, 1], &[-128]),
            &[1, 1, 1, 1],
            1,
            window(1, 1, 0),
            (-128, 127),
        )
        .unwrap();
        assert_eq!(out, [-128]);
    }

    #[test]
    fn names_follow_the_kind() {
        let mut m = Mem::default();
        let k = Pool2dS8 {
            kind: PoolKind::Max,
            input: m.activation(DType::I8, &[1, 1, 1, 1]),
            output: m.activation(DType::I8, &[1, 1, 1, 1]),
            filter_h: 1,
            filter_w: 1,
            window: window(1, 1, 0),
            act_min: -128,
            act_max: 127,
        };
        assert_eq!(k.name(), "MAX_POOL_2D");
        assert_eq!(
            Pool2dS8 {
                kind: PoolKind::Average,
                ..k
            }
            .name(),
            "AVERAGE_POOL_2D"
        );
    }

    #[test]
    fn window_entirely_in_padding_is_rejected() {
        let err = run_s8(
            PoolKind::Average,
            (&[1, 1, 1, 1], &[1]),
            &[1, 2, 1, 1],
            1,
            window(1, 1, 0),
            (-128, 127),
        );
        assert!(matches!(err, Err(Error::InvalidOp { .. })));
    }

    #[test]
    fn float_average_and_max() {
        for (kind, expected) in [
            (PoolKind::Average, [2.5f32, 3.0, 3.5, 4.0]),
            (PoolKind::Max, [4.0, 4.0, 4.0, 4.0]),
        ] {
            let mut m = Mem::default();
            let input_def = m.activation(DType::F32, &[1, 2, 2, 1]);
            let k = Pool2dF32 {
                kind,
                input: input_def.clone(),
                output: m.activation(DType::F32, &[1, 2, 2, 1]),
                filter_h: 2,
                filter_w: 2,
                window: window(1, 1, 0),
                activation: Activation::Relu6,
            };
            let out: Vec<f32> = m.run(&k, &input_def, &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
            assert_eq!(out, expected);
        }
    }
}

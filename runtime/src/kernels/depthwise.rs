//! DEPTHWISE_CONV_2D: int8 per-channel (any depth multiplier), float32, hybrid.
//!
//! The scalar references follow TFLite's `reference_integer_ops::DepthwiseConvPerChannel`,
//! `reference_ops::DepthwiseConv` (float) and `reference_integer_ops::DepthwiseConvHybridPerChannel`
//! loop for loop. Window and padding fields are filled as for CONV_2D (see [`super::conv`]),
//! from `DepthwiseConv2DOptions`.

use serde::{Deserialize, Serialize};

use super::conv::{
    check_len, check_requant, check_scales, nhwc, per_channel, tap, validate_offsets,
    validate_scales, SpatialDims,
};
use super::hybrid::{self, InputQuantization};
use super::{Activation, Kernel, Requant, Window};
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::{Error, Result};
use crate::quant::multiply_by_quantized_multiplier;
use crate::tensor::{DType, TensorDef};

/// Int8 depthwise convolution, NHWC input, `1HWC` filter, per-channel requantization.
///
/// Converter (TFLite DEPTHWISE_CONV_2D with int8 input/filter/output, int32 bias):
/// - `input` `[N, H, W, C]`, `filter` `[1, kh, kw, C * depth_multiplier]`, `bias` `[C * depth_multiplier]`
///   or `None`, `output` `[N, oh, ow, C * depth_multiplier]`; `depth_multiplier` from the options
///   (TFLite recomputes it as `filter channels / input channels`; use that value).
/// - `input_offset = -input.zero_point`, `output_offset = output.zero_point`.
/// - `requant.multipliers[c], requant.shifts[c] = quantize_multiplier(input_scale as f64 *
///   filter_scale[c] as f64 / output_scale as f64)` per output channel `c`
///   (`PopulateConvolutionQuantizationParams`; a single entry applies to all channels).
/// - `act_min/act_max`: `CalculateActivationRangeQuantized`, as for [`super::conv::Conv2dS8`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dS8 {
    pub input: TensorDef,
    /// `[1, kh, kw, in_channels * depth_multiplier]`.
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    pub requant: Requant,
    pub act_min: i32,
    pub act_max: i32,
}

/// Float32 depthwise convolution (`reference_ops::DepthwiseConv`). Tensors as in the TFLite op;
/// `activation` = the fused activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    pub activation: Activation,
}

/// Hybrid depthwise convolution: int8 weights, float activations (`depthwise_conv.cc`
/// `EvalHybridPerChannel`). TFLite always quantizes each input batch *asymmetrically* here and
/// computes `out = clamp(acc * (filter_scale[c] * batch_factor) + bias[c])`, with dilation.
///
/// Converter:
/// - `input` f32 `[N, H, W, C]`, `filter` int8 `[1, kh, kw, C * depth_multiplier]` (symmetric),
///   `bias` f32 or `None`, `output` f32.
/// - `filter_scales`: `F32` constant, the filter's scales as in the file (one per output
///   channel; a single entry is accepted and applies to all channels).
/// - `scratch`: `I32` arena tensor of at least [`hybrid::scratch_elements`]`(N, input elements)`
///   elements, disjoint from `input` and `output` (layout in [`super::hybrid`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dHybrid {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub filter_scales: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    pub activation: Activation,
    pub scratch: TensorDef,
}

fn depthwise_dims(
    input: &TensorDef,
    filter: &TensorDef,
    output: &TensorDef,
    depth_multiplier: u16,
) -> Option<SpatialDims> {
    let [batches, in_h, in_w, in_c] = nhwc(input)?;
    let [one, filter_h, filter_w, out_c] = nhwc(filter)?;
    let [out_n, out_h, out_w, out_c2] = nhwc(output)?;
    let multiplier = depth_multiplier as usize;
    if one != 1 || out_n != batches || out_c2 != out_c || in_c.checked_mul(multiplier)? != out_c {
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
        filter_h,
        filter_w,
        filter_in_c: 1,
    })
}

const SHAPES: Error = Error::Malformed {
    what: "depthwise convolution shapes",
};

/// Calls `f(b, out_y, out_x, in_channel, out_channel, taps)` for every output in TFLite's order,
/// where `taps` yields `(input index, filter index)` of each in-image filter tap in order.
#[inline(always)]
fn for_each_output(
    d: SpatialDims,
    w: Window,
    mut f: impl FnMut(usize, usize, usize, usize, &mut dyn FnMut(&mut dyn FnMut(usize, usize))),
) {
    let multiplier = d.out_c / d.in_c;
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                for ic in 0..d.in_c {
                    for m in 0..multiplier {
                        let oc = m + ic * multiplier;
                        let mut taps = |visit: &mut dyn FnMut(usize, usize)| {
                            for fy in 0..d.filter_h {
                                for fx in 0..d.filter_w {
                                    let (Some(in_y), Some(in_x)) = (
                                        tap(out_y, w.stride_h, w.pad_top, fy, w.dilation_h, d.in_h),
                                        tap(
                                            out_x,
                                            w.stride_w,
                                            w.pad_left,
                                            fx,
                                            w.dilation_w,
                                            d.in_w,
                                        ),
                                    ) else {
                                        continue;
                                    };
                                    visit(
                                        d.input_index(b, in_y, in_x, ic),
                                        (fy * d.filter_w + fx) * d.out_c + oc,
                                    );
                                }
                            }
                        };
                        f(b, d.output_index(b, out_y, out_x, oc), oc, ic, &mut taps);
                    }
                }
            }
        }
    }
}

/// Scalar reference for [`DepthwiseConv2dS8`] (`reference_integer_ops::DepthwiseConvPerChannel`).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_s8_reference(
    p: &DepthwiseConv2dS8,
    d: SpatialDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) {
    for_each_output(d, p.window, |_, out_at, oc, _, taps| {
        let mut acc: i32 = 0;
        taps(&mut |in_at, f_at| {
            acc = acc.wrapping_add(
                (filter[f_at] as i32).wrapping_mul(input[in_at] as i32 + p.input_offset),
            );
        });
        if let Some(bias) = bias {
            acc = acc.wrapping_add(bias[oc]);
        }
        let v = multiply_by_quantized_multiplier(
            acc,
            per_channel(multipliers, oc),
            per_channel(shifts, oc),
        );
        output[out_at] = v.wrapping_add(p.output_offset).clamp(p.act_min, p.act_max) as i8;
    });
}

/// Scalar reference for [`DepthwiseConv2dF32`] (`reference_ops::DepthwiseConv`, same order).
pub fn depthwise_conv2d_f32_reference(
    window: Window,
    activation: Activation,
    d: SpatialDims,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    for_each_output(d, window, |_, out_at, oc, _, taps| {
        let mut total = 0.0f32;
        taps(&mut |in_at, f_at| total += input[in_at] * filter[f_at]);
        let bias_value = bias.map_or(0.0, |bias| bias[oc]);
        output[out_at] = activation.apply_f32(total + bias_value);
    });
}

/// Scalar reference for [`DepthwiseConv2dHybrid`] after asymmetric per-batch quantization
/// (`reference_integer_ops::DepthwiseConvHybridPerChannel`).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_hybrid_reference(
    window: Window,
    activation: Activation,
    d: SpatialDims,
    quantized: &[i8],
    scaling_factors: &[f32],
    input_offsets: &[i32],
    filter: &[i8],
    filter_scales: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    for_each_output(d, window, |b, out_at, oc, _, taps| {
        let zero_point = input_offsets[b];
        let mut acc: i32 = 0;
        taps(&mut |in_at, f_at| {
            acc = acc.wrapping_add(
                (filter[f_at] as i32).wrapping_mul(quantized[in_at] as i32 - zero_point),
            );
        });
        let mut value = acc as f32;
        value *= per_channel(filter_scales, oc) * scaling_factors[b];
        if let Some(bias) = bias {
            value += bias[oc];
        }
        output[out_at] = activation.apply_f32(value);
    });
}

fn validate_depthwise_common(
    v: &Validator,
    input: &TensorDef,
    filter: &TensorDef,
    output: &TensorDef,
    window: &Window,
    depth_multiplier: u16,
    (io, weights): (DType, DType),
) -> Result<SpatialDims> {
    v.activation(input, io)?;
    v.constant(filter, weights)?;
    v.activation(output, io)?;
    v.disjoint(input, output)?;
    window.validate(v)?;
    v.check(depth_multiplier > 0, "depth multiplier must be positive")?;
    depthwise_dims(input, filter, output, depth_multiplier).ok_or(v.fail(
        "input, filter and output shapes do not form a depthwise convolution (NHWC, 1HWC, channels = input channels * depth multiplier)",
    ))
}

fn validate_bias(
    v: &Validator,
    bias: &Option<TensorDef>,
    dtype: DType,
    channels: usize,
) -> Result<()> {
    if let Some(bias) = bias {
        v.constant(bias, dtype)?;
        v.elements(bias, channels, "bias length differs from output channels")?;
    }
    Ok(())
}

fn depthwise_macs(output: &TensorDef, filter: &TensorDef) -> u64 {
    output.elements() as u64 * (filter.shape.dim(1) * filter.shape.dim(2)) as u64
}

macro_rules! depthwise_io {
    () => {
        fn output(&self) -> &TensorDef {
            &self.output
        }

        fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
            f(&self.input);
            f(&self.filter);
            if let Some(b) = &self.bias {
                f(b);
            }
        }

        fn macs(&self) -> u64 {
            depthwise_macs(&self.output, &self.filter)
        }
    };
}

impl Kernel for DepthwiseConv2dS8 {
    fn name(&self) -> &'static str {
        "DEPTHWISE_CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_depthwise_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            self.depth_multiplier,
            (DType::I8, DType::I8),
        )?;
        validate_bias(v, &self.bias, DType::I32, d.out_c)?;
        self.requant.validate(v, d.out_c)?;
        v.act_range_s8(self.act_min, self.act_max)?;
        validate_offsets(v, self.input_offset, self.output_offset)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = depthwise_dims(
            &self.input,
            &self.filter,
            &self.output,
            self.depth_multiplier,
        )
        .ok_or(SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        let bias = ins.opt_i32(&self.bias)?;
        let multipliers = ins.i32(&self.requant.multipliers)?;
        let shifts = ins.i32(&self.requant.shifts)?;
        check_len(bias, d.out_c)?;
        check_requant(multipliers, shifts, d.out_c)?;
        let (input, filter, output) = (ins.i8(&self.input)?, ins.i8(&self.filter)?, as_i8_mut(out));
        let operands = super::host_simd::S8Operands {
            input,
            filter,
            bias,
            multipliers,
            shifts,
        };
        if super::host_simd::depthwise_conv2d_s8(self, d, operands, output) {
            return Ok(());
        }
        // The DSP-style kernel where the target has it (see `dsp::ENABLED`); it declines
        // shapes it does not handle, which the reference then runs.
        if !(super::dsp::ENABLED
            && super::dsp::depthwise_conv2d_s8_dsp(
                self,
                d,
                input,
                filter,
                bias,
                multipliers,
                shifts,
                output,
            ))
        {
            depthwise_conv2d_s8_reference(
                self,
                d,
                input,
                filter,
                bias,
                multipliers,
                shifts,
                output,
            );
        }
        Ok(())
    }

    depthwise_io!();
}

impl Kernel for DepthwiseConv2dF32 {
    fn name(&self) -> &'static str {
        "DEPTHWISE_CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_depthwise_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            self.depth_multiplier,
            (DType::F32, DType::F32),
        )?;
        validate_bias(v, &self.bias, DType::F32, d.out_c)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = depthwise_dims(
            &self.input,
            &self.filter,
            &self.output,
            self.depth_multiplier,
        )
        .ok_or(SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        let bias = ins.opt_f32(&self.bias)?;
        check_len(bias, d.out_c)?;
        depthwise_conv2d_f32_reference(
            self.window,
            self.activation,
            d,
            ins.f32(&self.input)?,
            ins.f32(&self.filter)?,
            bias,
            as_f32_mut(out)?,
        );
        Ok(())
    }

    depthwise_io!();
}

impl Kernel for DepthwiseConv2dHybrid {
    fn name(&self) -> &'static str {
        "DEPTHWISE_CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_depthwise_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            self.depth_multiplier,
            (DType::F32, DType::I8),
        )?;
        validate_bias(v, &self.bias, DType::F32, d.out_c)?;
        validate_scales(v, &self.filter_scales, d.out_c)?;
        hybrid::validate_scratch(v, &self.scratch, &self.input, &self.output, d.batches)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = depthwise_dims(
            &self.input,
            &self.filter,
            &self.output,
            self.depth_multiplier,
        )
        .ok_or(SHAPES)?;
        let input_elements = self.input.elements();
        {
            let (ins, scratch) = t.split(&self.scratch)?;
            let mut s = hybrid::split_scratch_mut(scratch, d.batches, input_elements)?;
            hybrid::quantize_batches(
                ins.f32(&self.input)?,
                d.batches,
                InputQuantization::Asymmetric,
                &mut s,
            );
        }
        let (ins, out) = t.split(&self.output)?;
        let s = hybrid::split_scratch(ins.get(&self.scratch)?, d.batches, input_elements)?;
        let bias = ins.opt_f32(&self.bias)?;
        let scales = ins.f32(&self.filter_scales)?;
        check_len(bias, d.out_c)?;
        check_scales(scales, d.out_c)?;
        depthwise_conv2d_hybrid_reference(
            self.window,
            self.activation,
            d,
            s.quantized,
            s.scaling_factors,
            s.input_offsets,
            ins.i8(&self.filter)?,
            scales,
            bias,
            as_f32_mut(out)?,
        );
        Ok(())
    }

    depthwise_io!();
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::conv::tests::{random_geometry, window, Mem};

    fn run_s8(
        input: (&[u32], &[i8]),
        filter: (&[u32], &[i8]),
        out: &[u32],
        w: Window,
        mult: u16,
        reals: &[f64],
    ) -> Result<Vec<i8>> {
        let mut m = Mem::default();
        let input_def = m.activation(DType::I8, input.0);
        let output = m.activation(DType::I8, out);
        let k = DepthwiseConv2dS8 {
            input: input_def.clone(),
            filter: m.constant(DType::I8, filter.0, filter.1),
            bias: None,
            output,
            window: w,
            depth_multiplier: mult,
            input_offset: 0,
            output_offset: 0,
            requant: m.requant(reals),
            act_min: -128,
            act_max: 127,
        };
        m.run(&k, &input_def, input.1)
    }

    #[test]
    fn depth_multiplier_two_orders_channels_by_input() {
        let out = run_s8(
            (&[1, 1, 1, 2], &[3, 5]),
            (&[1, 1, 1, 4], &[1, 2, 3, 4]),
            &[1, 1, 1, 4],
            window(1, 1, 0),
            2,
            &[1.0],
        )
        .unwrap();
        assert_eq!(out, [3, 6, 15, 20]);
    }

    #[test]
    fn stride_two_padding_and_per_channel_requant() {
        // 3x3 input of ones per channel, 3x3 ones filter, stride 2, pad 1: 4 taps in image.
        let out = run_s8(
            (&[1, 3, 3, 2], &[1; 18]),
            (&[1, 3, 3, 2], &[1; 18]),
            &[1, 2, 2, 2],
            window(2, 1, 1),
            1,
            &[1.0, 0.25],
        )
        .unwrap();
        assert_eq!(out, [4, 1, 4, 1, 4, 1, 4, 1]);
    }

    #[test]
    fn float_matches_int8_on_integer_data() {
        let mut rng = crate::kernels::testing::Rng(11);
        for _ in 0..50 {
            let (i_dims, f_dims, o_dims, w) = random_geometry(&mut rng, true);
            let mult = (f_dims[3] / i_dims[3]) as u16;
            let input: Vec<i8> = (0..i_dims.iter().product::<u32>())
                .map(|_| rng.range(-8, 8) as i8)
                .collect();
            let filter: Vec<i8> = (0..f_dims.iter().product::<u32>())
                .map(|_| rng.range(-8, 8) as i8)
                .collect();
            let s8 = run_s8(
                (&i_dims, &input),
                (&f_dims, &filter),
                &o_dims,
                w,
                mult,
                &[1.0],
            )
            .unwrap();
            let mut m = Mem::default();
            let input_def = m.activation(DType::F32, &i_dims);
            let output = m.activation(DType::F32, &o_dims);
            let filter_f: Vec<f32> = filter.iter().map(|&v| v as f32).collect();
            let k = DepthwiseConv2dF32 {
                input: input_def.clone(),
                filter: m.constant(DType::F32, &f_dims, &filter_f),
                bias: None,
                output,
                window: w,
                depth_multiplier: mult,
                activation: Activation::None,
            };
            let input_f: Vec<f32> = input.iter().map(|&v| v as f32).collect();
            let f: Vec<f32> = m.run(&k, &input_def, &input_f).unwrap();
            let expected: Vec<i8> = f
                .iter()
                .map(|&v| (v as i32).clamp(-128, 127) as i8)
                .collect();
            assert_eq!(s8, expected);
        }
    }

    #[test]
    fn hybrid_uses_asymmetric_quantization_and_bias() {
        let mut m = Mem::default();
        let input_def = m.activation(DType::F32, &[1, 1, 1, 2]);
        let output = m.activation(DType::F32, &[1, 1, 1, 2]);
        let scratch = m.activation(DType::I32, &[hybrid::scratch_elements(1, 2) as u32]);
        let k = DepthwiseConv2dHybrid {
            input: input_def.clone(),
            filter: m.constant(DType::I8, &[1, 1, 1, 2], &[2i8, -3]),
            filter_scales: m.constant(DType::F32, &[2], &[0.5f32, 0.25]),
            bias: Some(m.constant(DType::F32, &[2], &[0.0f32, 1.0])),
            output,
            window: window(1, 1, 0),
            depth_multiplier: 1,
            activation: Activation::Relu,
            scratch,
        };
        let out: Vec<f32> = m.run(&k, &input_def, &[1.0f32, -1.0]).unwrap();
        // Codes [126, -128], zero point -1 (see the hybrid module tests).
        let factor = (2.0f64 / 255.0) as f32;
        let acc0 = 2 * (126 + 1);
        let acc1 = -3 * (-128 + 1);
        assert_eq!(
            out,
            [
                acc0 as f32 * (0.5 * factor),
                acc1 as f32 * (0.25 * factor) + 1.0
            ]
        );
    }
}

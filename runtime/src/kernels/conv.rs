//! CONV_2D: int8 per-channel, float32, hybrid (int8 weights, float activations).
//!
//! The scalar references follow TFLite's `reference_integer_ops::ConvPerChannel`,
//! `reference_ops::Conv` (float) and the two hybrid paths of `conv.cc` loop for loop, so the
//! integer results are bit-exact and the float results accumulate in the same order.
//!
//! Converter notes shared by all three structs:
//! - `window.stride_*` = `stride_h/stride_w`, `window.dilation_*` = `dilation_h_factor/dilation_w_factor`
//!   of `Conv2DOptions`; `window.pad_top/pad_left` = TFLite's `ComputePaddingHeightWidth` result
//!   (`padding.height/width`): 0 for VALID; for SAME,
//!   `max(0, ((out - 1) * stride + (k - 1) * dilation + 1 - in) / 2)` with integer division
//!   (the extra odd pixel goes to the bottom/right and needs no field: out-of-image taps are skipped).
//! - `output` shape = TFLite's output `[N, out_h, out_w, out_channels]`.

use serde::{Deserialize, Serialize};

use super::hybrid::{self, InputQuantization};
use super::{Activation, Kernel, Requant, Window};
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::{Error, Result};
use crate::quant::multiply_by_quantized_multiplier;
use crate::tensor::{DType, TensorDef};

/// Int8 convolution, NHWC input, OHWI filter, per-channel requantization
/// (`reference_integer_ops::ConvPerChannel`).
///
/// How the converter fills each field from the TFLite CONV_2D (input int8, filter int8
/// symmetric, bias int32, output int8):
/// - `input`: `[N, H, W, C_in]`; `filter`: `[C_out, kh, kw, C_in / groups]` (grouped convolution when
///   the filter's last dimension divides `C_in`); `bias`: `[C_out]` int32 or `None`; `output`: `[N, oh, ow, C_out]`.
/// - `input_offset = -input.zero_point`, `output_offset = output.zero_point`.
/// - `requant.multipliers[c], requant.shifts[c] = quantize_multiplier(input_scale as f64 *
///   filter_scale[c] as f64 / output_scale as f64)` for every output channel `c`
///   (`PopulateConvolutionQuantizationParams`: the scales are `f32` in the file, widened to
///   `f64` before multiplying; a per-tensor filter scale is broadcast to all channels; a single
///   entry is also accepted and then applies to every channel).
/// - `act_min/act_max` = `CalculateActivationRangeQuantized` for the fused activation:
///   with `q(x) = output_zp + round_half_away(x / output_scale)` (f32 division):
///   NONE → `[-128, 127]`; RELU → `[max(-128, zp), 127]`; RELU6 → `[max(-128, zp), min(127, q(6))]`;
///   RELU_N1_TO_1 → `[max(-128, q(-1)), min(127, q(1))]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dS8 {
    pub input: TensorDef,
    /// `[out_channels, kh, kw, in_channels / groups]`.
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    pub requant: Requant,
    pub act_min: i32,
    pub act_max: i32,
}

/// Float32 convolution (`reference_ops::Conv`).
///
/// Converter: `input`, `filter` (`[C_out, kh, kw, C_in / groups]`), `bias` (`[C_out]` f32 or
/// `None`) and `output` as in the TFLite op; `activation` = the fused activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub activation: Activation,
}

/// Hybrid convolution: int8 weights, float input/bias/output (TFLite dynamic-range
/// quantization, `conv.cc` `EvalHybrid` / `EvalHybridPerChannel`).
///
/// TFLite picks the arithmetic from the filter scales, and so does this kernel at run time:
/// - all scales equal (or one scale): `EvalHybrid` — each batch of the input is quantized
///   *symmetrically*, the scale is `batch_factor * filter_scale`, padding and dilation as
///   given, `out = clamp((0 + acc * scale) + bias)`;
/// - scales differ: `EvalHybridPerChannel` — each batch is quantized *asymmetrically*,
///   `out = clamp(acc * filter_scale[c] * batch_factor + bias)`, and TFLite runs this path with
///   dilation forced to 1 (whatever the options say); this kernel does the same.
///
/// Converter:
/// - `input` f32 `[N, H, W, C_in]`, `filter` int8 `[C_out, kh, kw, C_in / groups]` (symmetric;
///   its zero point is ignored, as TFLite does), `bias` f32 `[C_out]` or `None`, `output` f32.
/// - `filter_scales`: `F32` constant with the filter's quantization scales exactly as in the
///   file (1 entry, or `C_out` entries).
/// - `scratch`: an `I32` arena tensor of at least
///   [`hybrid::scratch_elements`]`(N, input elements)` elements, not overlapping `input` or
///   `output` (see [`super::hybrid`] for its layout); it is dead after this op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dHybrid {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub filter_scales: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub activation: Activation,
    pub scratch: TensorDef,
}

/// NHWC geometry of a windowed operator, read from its tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpatialDims {
    pub batches: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    /// Input channels each filter reads (`in_c / groups` for CONV_2D, 1 for depthwise/pooling).
    pub filter_in_c: usize,
}

impl SpatialDims {
    pub fn groups(&self) -> usize {
        self.in_c / self.filter_in_c
    }

    pub fn filters_per_group(&self) -> usize {
        self.out_c / self.groups()
    }

    #[inline(always)]
    pub fn input_index(&self, b: usize, y: usize, x: usize, c: usize) -> usize {
        ((b * self.in_h + y) * self.in_w + x) * self.in_c + c
    }

    #[inline(always)]
    pub fn output_index(&self, b: usize, y: usize, x: usize, c: usize) -> usize {
        ((b * self.out_h + y) * self.out_w + x) * self.out_c + c
    }

    pub fn output_elements(&self) -> usize {
        self.batches * self.out_h * self.out_w * self.out_c
    }
}

/// A 4-D shape (TFLite requires rank 4 for these ops) with no zero dimension.
pub(crate) fn nhwc(t: &TensorDef) -> Option<[usize; 4]> {
    if t.shape.rank() != 4 {
        return None;
    }
    let dims = t.shape.as_4d()?;
    dims.iter().all(|&d| d > 0).then_some(dims)
}

/// Input coordinate of a filter tap, `None` when it falls in the padding.
#[inline(always)]
pub(crate) fn tap(
    out: usize,
    stride: u16,
    pad: u16,
    k: usize,
    dilation: u16,
    size: usize,
) -> Option<usize> {
    let pos = (out * stride as usize + k * dilation as usize) as i64 - pad as i64;
    (pos >= 0 && (pos as usize) < size).then_some(pos as usize)
}

pub(crate) fn conv_dims(
    input: &TensorDef,
    filter: &TensorDef,
    output: &TensorDef,
) -> Option<SpatialDims> {
    let [batches, in_h, in_w, in_c] = nhwc(input)?;
    let [out_c, filter_h, filter_w, filter_in_c] = nhwc(filter)?;
    let [out_n, out_h, out_w, out_c2] = nhwc(output)?;
    if out_n != batches || out_c2 != out_c || in_c % filter_in_c != 0 {
        return None;
    }
    let groups = in_c / filter_in_c;
    if out_c % groups != 0 {
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
        filter_in_c,
    })
}

const SHAPES: Error = Error::Malformed {
    what: "convolution shapes",
};
const PER_CHANNEL: Error = Error::Malformed {
    what: "per-channel array length",
};

/// Checks an optional per-channel array (bias) against the channel count.
pub(crate) fn check_len<T>(data: Option<&[T]>, channels: usize) -> Result<()> {
    match data {
        Some(d) if d.len() != channels => Err(PER_CHANNEL),
        _ => Ok(()),
    }
}

/// Checks the requantization arrays at run time: one or `channels` entries, shifts in TFLite's range.
pub(crate) fn check_requant(multipliers: &[i32], shifts: &[i32], channels: usize) -> Result<()> {
    let n = multipliers.len();
    if (n != 1 && n != channels) || shifts.len() != n {
        return Err(PER_CHANNEL);
    }
    if shifts.iter().any(|s| !(-31..=30).contains(s)) {
        return Err(Error::Malformed {
            what: "requantization shift out of range",
        });
    }
    Ok(())
}

/// Checks a scale array: one or `channels` entries.
pub(crate) fn check_scales(scales: &[f32], channels: usize) -> Result<()> {
    if scales.len() == 1 || scales.len() == channels {
        Ok(())
    } else {
        Err(PER_CHANNEL)
    }
}

/// Entry `c` of an array that holds either one value for all channels or one per channel.
#[inline(always)]
pub(crate) fn per_channel<T: Copy>(values: &[T], c: usize) -> T {
    if values.len() == 1 {
        values[0]
    } else {
        values[c]
    }
}

/// Scalar reference for [`Conv2dS8`] (`reference_integer_ops::ConvPerChannel`).
///
/// `bias` has `out_c` entries; `multipliers`/`shifts` one or `out_c` (checked by the caller).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s8_reference(
    p: &Conv2dS8,
    d: SpatialDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) {
    let w = p.window;
    let filters_per_group = d.filters_per_group();
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                for oc in 0..d.out_c {
                    let in_c_base = (oc / filters_per_group) * d.filter_in_c;
                    let mut acc: i32 = 0;
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
                            let in_at = d.input_index(b, in_y, in_x, in_c_base);
                            let f_at = ((oc * d.filter_h + fy) * d.filter_w + fx) * d.filter_in_c;
                            let pixel = &input[in_at..in_at + d.filter_in_c];
                            let taps = &filter[f_at..f_at + d.filter_in_c];
                            for (&x, &f) in pixel.iter().zip(taps) {
                                acc = acc.wrapping_add(
                                    (f as i32).wrapping_mul(x as i32 + p.input_offset),
                                );
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(bias[oc]);
                    }
                    let mut v = multiply_by_quantized_multiplier(
                        acc,
                        per_channel(multipliers, oc),
                        per_channel(shifts, oc),
                    );
                    v = v.wrapping_add(p.output_offset).clamp(p.act_min, p.act_max);
                    output[d.output_index(b, out_y, out_x, oc)] = v as i8;
                }
            }
        }
    }
}

/// Scalar reference for [`Conv2dF32`] (`reference_ops::Conv`, same summation order).
pub fn conv2d_f32_reference(
    window: Window,
    activation: Activation,
    d: SpatialDims,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let w = window;
    let filters_per_group = d.filters_per_group();
    for b in 0..d.batches {
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                for oc in 0..d.out_c {
                    let in_c_base = (oc / filters_per_group) * d.filter_in_c;
                    let mut total = 0.0f32;
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
                            let in_at = d.input_index(b, in_y, in_x, in_c_base);
                            let f_at = ((oc * d.filter_h + fy) * d.filter_w + fx) * d.filter_in_c;
                            let pixel = &input[in_at..in_at + d.filter_in_c];
                            let taps = &filter[f_at..f_at + d.filter_in_c];
                            for (&x, &f) in pixel.iter().zip(taps) {
                                total += x * f;
                            }
                        }
                    }
                    let bias_value = bias.map_or(0.0, |bias| bias[oc]);
                    output[d.output_index(b, out_y, out_x, oc)] =
                        activation.apply_f32(total + bias_value);
                }
            }
        }
    }
}

/// Which of TFLite's two hybrid convolution paths applies to these filter scales.
pub fn hybrid_conv_quantization(filter_scales: &[f32]) -> InputQuantization {
    let first = filter_scales.first().copied().unwrap_or(0.0);
    if filter_scales.iter().any(|&s| s != first) {
        InputQuantization::Asymmetric
    } else {
        InputQuantization::Symmetric
    }
}

/// Scalar reference for [`Conv2dHybrid`], after the input was quantized per batch:
/// `quantized`, `scaling_factors` and `input_offsets` as [`hybrid::quantize_batches`] left them
/// with the mode from [`hybrid_conv_quantization`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_hybrid_reference(
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
    let mode = hybrid_conv_quantization(filter_scales);
    let mut w = window;
    if mode == InputQuantization::Asymmetric {
        // EvalHybridPerChannel sets dilation to 1 before calling HybridConvPerChannel.
        w.dilation_h = 1;
        w.dilation_w = 1;
    }
    let filters_per_group = d.filters_per_group();
    for b in 0..d.batches {
        let batch_factor = scaling_factors[b];
        let zero_point = input_offsets[b];
        // EvalHybrid folds the filter scale into the batch factor (`scaling_factors_ptr[b] *= filter->params.scale`).
        let symmetric_scale = batch_factor * filter_scales[0];
        for out_y in 0..d.out_h {
            for out_x in 0..d.out_w {
                for oc in 0..d.out_c {
                    let in_c_base = (oc / filters_per_group) * d.filter_in_c;
                    let mut acc: i32 = 0;
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
                            let in_at = d.input_index(b, in_y, in_x, in_c_base);
                            let f_at = ((oc * d.filter_h + fy) * d.filter_w + fx) * d.filter_in_c;
                            let pixel = &quantized[in_at..in_at + d.filter_in_c];
                            let taps = &filter[f_at..f_at + d.filter_in_c];
                            for (&x, &f) in pixel.iter().zip(taps) {
                                acc = acc
                                    .wrapping_add((f as i32).wrapping_mul(x as i32 - zero_point));
                            }
                        }
                    }
                    let bias_value = bias.map(|bias| bias[oc]);
                    let value = match mode {
                        InputQuantization::Symmetric => {
                            // Output starts at 0, the GEMM adds acc * scale, then the bias is added.
                            let v = 0.0f32 + acc as f32 * symmetric_scale;
                            bias_value.map_or(v, |bias| v + bias)
                        }
                        InputQuantization::Asymmetric => {
                            let v = acc as f32 * per_channel(filter_scales, oc) * batch_factor;
                            bias_value.map_or(v, |bias| v + bias)
                        }
                    };
                    output[d.output_index(b, out_y, out_x, oc)] = activation.apply_f32(value);
                }
            }
        }
    }
}

fn validate_conv_common(
    v: &Validator,
    input: &TensorDef,
    filter: &TensorDef,
    output: &TensorDef,
    window: &Window,
    io: DType,
    weights: DType,
) -> Result<SpatialDims> {
    v.activation(input, io)?;
    v.constant(filter, weights)?;
    v.activation(output, io)?;
    v.disjoint(input, output)?;
    window.validate(v)?;
    conv_dims(input, filter, output).ok_or(v.fail(
        "input, filter and output shapes do not form a convolution (NHWC, OHWI, channels divisible by groups)",
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

/// Checks the zero-point offsets of an int8 op.
pub(crate) fn validate_offsets(v: &Validator, input_offset: i32, output_offset: i32) -> Result<()> {
    v.check(
        (-127..=128).contains(&input_offset),
        "input zero point out of range",
    )?;
    v.check(
        (-128..=127).contains(&output_offset),
        "output zero point out of range",
    )
}

/// Checks a float filter-scale constant: one entry or one per channel.
pub(crate) fn validate_scales(v: &Validator, scales: &TensorDef, channels: usize) -> Result<()> {
    v.constant(scales, DType::F32)?;
    let n = scales.elements();
    v.check(
        n == 1 || n == channels,
        "filter scales need one entry or one per output channel",
    )
}

impl Kernel for Conv2dS8 {
    fn name(&self) -> &'static str {
        "CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_conv_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            DType::I8,
            DType::I8,
        )?;
        validate_bias(v, &self.bias, DType::I32, d.out_c)?;
        self.requant.validate(v, d.out_c)?;
        v.act_range_s8(self.act_min, self.act_max)?;
        validate_offsets(v, self.input_offset, self.output_offset)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = conv_dims(&self.input, &self.filter, &self.output).ok_or(SHAPES)?;
        let packed = t.packed();
        let (ins, out) = t.split(&self.output)?;
        // Packed weights carry their own checked bias and requantization constants.
        if let Some(packed) = packed {
            let input = ins.i8(&self.input)?;
            if super::host_simd::conv2d_s8_packed(self, d, input, as_i8_mut(out), packed) {
                return Ok(());
            }
        }
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
        if super::host_simd::conv2d_s8(self, d, operands, output) {
            return Ok(());
        }
        // The DSP-style kernel where the target has it (see `dsp::ENABLED`); it declines
        // shapes it does not handle, which the reference then runs.
        if !(super::dsp::ENABLED
            && super::dsp::conv2d_s8_dsp(self, d, input, filter, bias, multipliers, shifts, output))
        {
            conv2d_s8_reference(self, d, input, filter, bias, multipliers, shifts, output);
        }
        Ok(())
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        super::visit_weighted(&self.input, &self.filter, &self.bias, f);
    }

    fn macs(&self) -> u64 {
        conv_macs(&self.output, &self.filter)
    }
}

fn conv_macs(output: &TensorDef, filter: &TensorDef) -> u64 {
    let per_output = filter.shape.dim(1) * filter.shape.dim(2) * filter.shape.dim(3);
    output.elements() as u64 * per_output as u64
}

impl Kernel for Conv2dF32 {
    fn name(&self) -> &'static str {
        "CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_conv_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            DType::F32,
            DType::F32,
        )?;
        validate_bias(v, &self.bias, DType::F32, d.out_c)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = conv_dims(&self.input, &self.filter, &self.output).ok_or(SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        let bias = ins.opt_f32(&self.bias)?;
        check_len(bias, d.out_c)?;
        conv2d_f32_reference(
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

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        super::visit_weighted(&self.input, &self.filter, &self.bias, f);
    }

    fn macs(&self) -> u64 {
        conv_macs(&self.output, &self.filter)
    }
}

impl Kernel for Conv2dHybrid {
    fn name(&self) -> &'static str {
        "CONV_2D"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let d = validate_conv_common(
            v,
            &self.input,
            &self.filter,
            &self.output,
            &self.window,
            DType::F32,
            DType::I8,
        )?;
        validate_bias(v, &self.bias, DType::F32, d.out_c)?;
        validate_scales(v, &self.filter_scales, d.out_c)?;
        hybrid::validate_scratch(v, &self.scratch, &self.input, &self.output, d.batches)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let d = conv_dims(&self.input, &self.filter, &self.output).ok_or(SHAPES)?;
        let input_elements = self.input.elements();
        // Phase 1: quantize the input into the scratch tensor.
        {
            let (ins, scratch) = t.split(&self.scratch)?;
            let scales = ins.f32(&self.filter_scales)?;
            check_scales(scales, d.out_c)?;
            let mode = hybrid_conv_quantization(scales);
            let mut s = hybrid::split_scratch_mut(scratch, d.batches, input_elements)?;
            hybrid::quantize_batches(ins.f32(&self.input)?, d.batches, mode, &mut s);
        }
        // Phase 2: integer accumulation and float rescale into the output.
        let (ins, out) = t.split(&self.output)?;
        let s = hybrid::split_scratch(ins.get(&self.scratch)?, d.batches, input_elements)?;
        let bias = ins.opt_f32(&self.bias)?;
        check_len(bias, d.out_c)?;
        conv2d_hybrid_reference(
            self.window,
            self.activation,
            d,
            s.quantized,
            s.scaling_factors,
            s.input_offsets,
            ins.i8(&self.filter)?,
            ins.f32(&self.filter_scales)?,
            bias,
            as_f32_mut(out)?,
        );
        Ok(())
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        super::visit_weighted(&self.input, &self.filter, &self.bias, f);
    }

    fn macs(&self) -> u64 {
        conv_macs(&self.output, &self.filter)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::quant::quantize_multiplier;
    use crate::tensor::{Location, Shape};

    /// Arena and constant memory for running one kernel through `validate` + `eval`.
    #[derive(Default)]
    pub(crate) struct Mem {
        consts: Vec<u32>,
        arena_words: usize,
    }

    fn place(words: &mut usize, bytes: usize) -> u32 {
        let offset = *words * 4;
        *words += bytes.div_ceil(16) * 4;
        offset as u32
    }

    impl Mem {
        pub fn constant<T: bytemuck::Pod>(
            &mut self,
            dtype: DType,
            dims: &[u32],
            data: &[T],
        ) -> TensorDef {
            let mut words = self.consts.len();
            let bytes: &[u8] = bytemuck::cast_slice(data);
            let offset = place(&mut words, bytes.len());
            self.consts.resize(words, 0);
            let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut self.consts[..]);
            dst[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
            TensorDef {
                dtype,
                shape: Shape::new(dims).unwrap(),
                location: Location::Const(offset),
                quant: None,
            }
        }

        pub fn activation(&mut self, dtype: DType, dims: &[u32]) -> TensorDef {
            let shape = Shape::new(dims).unwrap();
            let bytes = shape.elements().unwrap() * dtype.size();
            let offset = place(&mut self.arena_words, bytes);
            TensorDef {
                dtype,
                shape,
                location: Location::Arena(offset),
                quant: None,
            }
        }

        /// Validates and runs `k` with `input` written to `input_def`; returns the output bytes.
        pub fn run<T: bytemuck::Pod, O: bytemuck::Pod>(
            &self,
            k: &dyn Kernel,
            input_def: &TensorDef,
            input: &[T],
        ) -> Result<Vec<O>> {
            let v = Validator {
                arena_size: self.arena_words * 4,
                consts: bytemuck::cast_slice(&self.consts[..]),
                op_index: 0,
                op_name: k.name(),
            };
            k.validate(&v)?;
            let mut arena = std::vec![0u32; self.arena_words];
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut arena[..]);
            let Location::Arena(at) = input_def.location else {
                panic!()
            };
            let src: &[u8] = bytemuck::cast_slice(input);
            bytes[at as usize..at as usize + src.len()].copy_from_slice(src);
            let mut t = Tensors {
                consts: bytemuck::cast_slice(&self.consts[..]),
                arena: bytes,
                packed: None,
            };
            k.eval(&mut t)?;
            let out = t.bytes(k.output())?;
            let mut values = std::vec![O::zeroed(); out.len() / core::mem::size_of::<O>()];
            bytemuck::cast_slice_mut::<O, u8>(&mut values).copy_from_slice(out);
            Ok(values)
        }

        pub fn requant(&mut self, reals: &[f64]) -> Requant {
            let (m, s): (Vec<i32>, Vec<i32>) =
                reals.iter().map(|&r| quantize_multiplier(r)).unzip();
            Requant {
                multipliers: self.constant(DType::I32, &[m.len() as u32], &m),
                shifts: self.constant(DType::I32, &[s.len() as u32], &s),
            }
        }
    }

    pub(crate) fn window(stride: u16, dilation: u16, pad: u16) -> Window {
        Window {
            stride_h: stride,
            stride_w: stride,
            dilation_h: dilation,
            dilation_w: dilation,
            pad_top: pad,
            pad_left: pad,
        }
    }

    struct S8Case<'a> {
        input: (&'a [u32], &'a [i8]),
        filter: (&'a [u32], &'a [i8]),
        bias: Option<&'a [i32]>,
        out: &'a [u32],
        window: Window,
        input_offset: i32,
        reals: &'a [f64],
        act: (i32, i32),
    }

    fn run_s8(c: S8Case<'_>) -> Result<Vec<i8>> {
        let mut m = Mem::default();
        let input = m.activation(DType::I8, c.input.0);
        let output = m.activation(DType::I8, c.out);
        let filter = m.constant(DType::I8, c.filter.0, c.filter.1);
        let bias = c.bias.map(|b| m.constant(DType::I32, &[b.len() as u32], b));
        let requant = m.requant(c.reals);
        let k = Conv2dS8 {
            input: input.clone(),
            filter,
            bias,
            output,
            window: c.window,
            input_offset: c.input_offset,
            output_offset: 0,
            requant,
            act_min: c.act.0,
            act_max: c.act.1,
        };
        m.run(&k, &input, c.input.1)
    }

    #[test]
    fn s8_one_by_one_with_bias_and_per_channel_scale() {
        let out = run_s8(S8Case {
            input: (&[1, 1, 2, 2], &[1, 2, 3, 5]),
            filter: (&[2, 1, 1, 2], &[1, -1, 2, 2]),
            bias: Some(&[10, 1]),
            out: &[1, 1, 2, 2],
            window: window(1, 1, 0),
            input_offset: 0,
            reals: &[1.0, 0.5],
            act: (-128, 127),
        })
        .unwrap();
        // ch0: x0 - x1 + 10; ch1: (2x0 + 2x1 + 1) / 2 rounded half away from zero.
        assert_eq!(out, [9, 4, 8, 9]);
    }

    #[test]
    fn s8_padding_skips_out_of_image_taps_even_with_input_offset() {
        // 3x3 zeros with zero point -1 read as ones; 3x3 ones filter, stride 2, pad 1.
        let out = run_s8(S8Case {
            input: (&[1, 3, 3, 1], &[0; 9]),
            filter: (&[1, 3, 3, 1], &[1; 9]),
            bias: None,
            out: &[1, 2, 2, 1],
            window: window(2, 1, 1),
            input_offset: 1,
            reals: &[1.0],
            act: (-128, 127),
        })
        .unwrap();
        assert_eq!(out, [4, 4, 4, 4]);
    }

    #[test]
    fn s8_dilation_two_reads_corners() {
        let input: Vec<i8> = (0..25).collect();
        let mut filter = [0i8; 9];
        for corner in [0, 2, 6, 8] {
            filter[corner] = 1;
        }
        let out = run_s8(S8Case {
            input: (&[1, 5, 5, 1], &input),
            filter: (&[1, 3, 3, 1], &filter),
            bias: None,
            out: &[1, 1, 1, 1],
            window: window(1, 2, 0),
            input_offset: 0,
            reals: &[1.0],
            act: (-128, 127),
        })
        .unwrap();
        assert_eq!(out, [4 + 20 + 24]);
    }

    #[test]
    fn s8_saturates_and_clamps_activation() {
        let case = |bias: i32, act: (i32, i32)| {
            run_s8(S8Case {
                input: (&[1, 1, 1, 1], &[1]),
                filter: (&[1, 1, 1, 1], &[1]),
                bias: Some(&[bias]),
                out: &[1, 1, 1, 1],
                window: window(1, 1, 0),
                input_offset: 0,
                reals: &[1.0],
                act,
            })
            .unwrap()[0]
        };
        assert_eq!(case(1000, (-128, 127)), 127);
        assert_eq!(case(-1000, (-128, 127)), -128);
        assert_eq!(case(-10, (0, 127)), 0);
        assert_eq!(case(10, (-128, 6)), 6);
    }

    #[test]
    fn s8_grouped_convolution_reads_its_group() {
        // 4 input channels, filters of 2 channels: 2 groups, one filter each.
        let out = run_s8(S8Case {
            input: (&[1, 1, 1, 4], &[1, 2, 3, 4]),
            filter: (&[2, 1, 1, 2], &[1, 1, 1, -1]),
            bias: None,
            out: &[1, 1, 1, 2],
            window: window(1, 1, 0),
            input_offset: 0,
            reals: &[1.0],
            act: (-128, 127),
        })
        .unwrap();
        assert_eq!(out, [3, -1]);
    }

    #[test]
    fn s8_rejects_mismatched_shapes() {
        let err = run_s8(S8Case {
            input: (&[1, 1, 1, 3], &[1, 2, 3]),
            filter: (&[2, 1, 1, 2], &[1, 1, 1, -1]),
            bias: None,
            out: &[1, 1, 1, 2],
            window: window(1, 1, 0),
            input_offset: 0,
            reals: &[1.0],
            act: (-128, 127),
        });
        assert!(matches!(err, Err(Error::InvalidOp { .. })));
    }

    /// Random geometry for cross-checks: (input dims, filter dims, output dims, window).
    pub(crate) fn random_geometry(
        rng: &mut crate::kernels::testing::Rng,
        depthwise: bool,
    ) -> ([u32; 4], [u32; 4], [u32; 4], Window) {
        let in_h = rng.range(1, 7) as u32;
        let in_w = rng.range(1, 7) as u32;
        let in_c = rng.range(1, 4) as u32;
        let k_h = rng.range(1, 3) as u32;
        let k_w = rng.range(1, 3) as u32;
        let stride = rng.range(1, 2) as u16;
        let dilation = rng.range(1, 2) as u16;
        let pad = rng.range(0, 1) as u16;
        let out_h = ((in_h + 2 * pad as u32).saturating_sub((k_h - 1) * dilation as u32 + 1))
            / stride as u32
            + 1;
        let out_w = ((in_w + 2 * pad as u32).saturating_sub((k_w - 1) * dilation as u32 + 1))
            / stride as u32
            + 1;
        let (filter, out_c) = if depthwise {
            let mult = rng.range(1, 2) as u32;
            ([1, k_h, k_w, in_c * mult], in_c * mult)
        } else {
            let out_c = rng.range(1, 4) as u32;
            ([out_c, k_h, k_w, in_c], out_c)
        };
        (
            [2, in_h, in_w, in_c],
            filter,
            [2, out_h, out_w, out_c],
            window(stride, dilation, pad),
        )
    }

    #[test]
    fn float_conv_matches_int8_conv_on_integer_data() {
        // With small integers every float sum is exact, so float and int8 kernels must agree.
        let mut rng = crate::kernels::testing::Rng(7);
        for _ in 0..50 {
            let (i_dims, f_dims, o_dims, w) = random_geometry(&mut rng, false);
            let input: Vec<i8> = (0..i_dims.iter().product::<u32>())
                .map(|_| rng.range(-8, 8) as i8)
                .collect();
            let filter: Vec<i8> = (0..f_dims.iter().product::<u32>())
                .map(|_| rng.range(-8, 8) as i8)
                .collect();
            let s8 = run_s8(S8Case {
                input: (&i_dims, &input),
                filter: (&f_dims, &filter),
                bias: None,
                out: &o_dims,
                window: w,
                input_offset: 0,
                reals: &[1.0],
                act: (-128, 127),
            })
            .unwrap();
            let mut m = Mem::default();
            let input_def = m.activation(DType::F32, &i_dims);
            let output = m.activation(DType::F32, &o_dims);
            let filter_f: Vec<f32> = filter.iter().map(|&v| v as f32).collect();
            let k = Conv2dF32 {
                input: input_def.clone(),
                filter: m.constant(DType::F32, &f_dims, &filter_f),
                bias: None,
                output,
                window: w,
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

    fn run_hybrid(
        input: &[f32],
        filter: &[i8],
        scales: &[f32],
        bias: &[f32],
        dims: ([u32; 4], [u32; 4], [u32; 4]),
        w: Window,
    ) -> Vec<f32> {
        let mut m = Mem::default();
        let input_def = m.activation(DType::F32, &dims.0);
        let output = m.activation(DType::F32, &dims.2);
        let scratch = m.activation(
            DType::I32,
            &[hybrid::scratch_elements(dims.0[0] as usize, input.len()) as u32],
        );
        let k = Conv2dHybrid {
            input: input_def.clone(),
            filter: m.constant(DType::I8, &dims.1, filter),
            filter_scales: m.constant(DType::F32, &[scales.len() as u32], scales),
            bias: Some(m.constant(DType::F32, &[bias.len() as u32], bias)),
            output,
            window: w,
            activation: Activation::None,
            scratch,
        };
        m.run(&k, &input_def, input).unwrap()
    }

    #[test]
    fn hybrid_per_tensor_quantizes_symmetrically() {
        let out = run_hybrid(
            &[1.0, 0.5],
            &[2, -1],
            &[0.1],
            &[0.25],
            ([1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1]),
            window(1, 1, 0),
        );
        // Inputs quantize to [127, 64] (0.5 * 127 = 63.5 rounds up), factor 1/127.
        let expected = (0.0f32 + 190.0 * ((1.0f32 / 127.0) * 0.1)) + 0.25;
        assert_eq!(out, [expected]);
    }

    #[test]
    fn hybrid_per_channel_quantizes_asymmetrically() {
        let out = run_hybrid(
            &[1.0, -1.0],
            &[1, 1, 1, -1],
            &[0.5, 0.25],
            &[0.0, 1.0],
            ([1, 1, 1, 2], [2, 1, 1, 2], [1, 1, 1, 2]),
            window(1, 1, 0),
        );
        // Range [-1, 1]: zero point -1, codes [126, -128] (see the hybrid module tests).
        let factor = (2.0f64 / 255.0) as f32;
        let acc0 = (126 + 1) + (-128 + 1);
        let acc1 = (126 + 1) - (-128 + 1);
        assert_eq!(
            out,
            [
                acc0 as f32 * 0.5 * factor,
                acc1 as f32 * 0.25 * factor + 1.0
            ]
        );
    }

    #[test]
    fn hybrid_all_zero_input_gives_bias() {
        let out = run_hybrid(
            &[0.0; 4],
            &[5, -7],
            &[0.3],
            &[-1.5],
            ([1, 2, 1, 2], [1, 1, 1, 2], [1, 2, 1, 1]),
            window(1, 1, 0),
        );
        assert_eq!(out, [-1.5, -1.5]);
    }
}

//! FULLY_CONNECTED: int8 (per-tensor or per-channel), float32, and hybrid (int8 weights,
//! float activations).

use serde::{Deserialize, Serialize};

use super::conv::{check_len, check_scales, validate_scales};
use super::hybrid::{self, InputQuantization};
use super::{Activation, Kernel, Requant};
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::Result;
use crate::quant::multiply_by_quantized_multiplier_single_rounding;
use crate::tensor::{DType, TensorDef};

/// Int8 fully connected: `out = requant(sum((w + filter_offset) * (x + input_offset)) + bias)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullyConnectedS8 {
    /// `[batches.., accum_depth]` (flattened to rows of `accum_depth`).
    pub input: TensorDef,
    /// `[output_depth, accum_depth]`, int8.
    pub filter: TensorDef,
    /// `[output_depth]`, int32.
    pub bias: Option<TensorDef>,
    /// `[batches.., output_depth]`.
    pub output: TensorDef,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `-filter_zero_point` (0 for symmetric weights).
    pub filter_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    pub requant: Requant,
    pub act_min: i32,
    pub act_max: i32,
}

/// Shape numbers the FC kernels loop over.
#[derive(Debug, Clone, Copy)]
pub struct FcDims {
    pub batches: usize,
    pub accum_depth: usize,
    pub output_depth: usize,
}

pub(crate) fn fc_dims(input: &TensorDef, filter: &TensorDef, output: &TensorDef) -> Option<FcDims> {
    if filter.shape.rank() != 2 {
        return None;
    }
    let output_depth = filter.shape.dim(0);
    let accum_depth = filter.shape.dim(1);
    if accum_depth == 0 || output_depth == 0 {
        return None;
    }
    let in_elems = input.shape.elements()?;
    if in_elems % accum_depth != 0 {
        return None;
    }
    let batches = in_elems / accum_depth;
    if output.shape.elements()? != batches.checked_mul(output_depth)?
        || output.shape.last() != output_depth
    {
        return None;
    }
    Some(FcDims {
        batches,
        accum_depth,
        output_depth,
    })
}

/// Scalar reference for the int8 fully connected kernel (TFLite `reference_integer_ops::FullyConnected`).
pub fn fully_connected_s8_reference(
    p: &FullyConnectedS8,
    dims: FcDims,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) {
    let per_channel = multipliers.len() > 1;
    for b in 0..dims.batches {
        let row = &input[b * dims.accum_depth..(b + 1) * dims.accum_depth];
        for oc in 0..dims.output_depth {
            let weights = &filter[oc * dims.accum_depth..(oc + 1) * dims.accum_depth];
            let mut acc: i32 = 0;
            for d in 0..dims.accum_depth {
                acc += (weights[d] as i32 + p.filter_offset) * (row[d] as i32 + p.input_offset);
            }
            if let Some(bias) = bias {
                acc += bias[oc];
            }
            let ch = if per_channel { oc } else { 0 };
            // TFLite's int8 FC requantizes with single rounding, unlike CONV_2D (checked against the
            // reference interpreter: double rounding differs by one on ~10% of outputs).
            let mut v =
                multiply_by_quantized_multiplier_single_rounding(acc, multipliers[ch], shifts[ch]);
            v += p.output_offset;
            v = v.clamp(p.act_min, p.act_max);
            output[b * dims.output_depth + oc] = v as i8;
        }
    }
}

impl Kernel for FullyConnectedS8 {
    fn name(&self) -> &'static str {
        "FULLY_CONNECTED"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        v.activation(&self.input, DType::I8)?;
        v.constant(&self.filter, DType::I8)?;
        v.activation(&self.output, DType::I8)?;
        v.disjoint(&self.input, &self.output)?;
        let dims = fc_dims(&self.input, &self.filter, &self.output)
            .ok_or(v.fail("input, weights and output shapes do not match"))?;
        if let Some(bias) = &self.bias {
            v.constant(bias, DType::I32)?;
            v.elements(
                bias,
                dims.output_depth,
                "bias length differs from output depth",
            )?;
        }
        self.requant.validate(v, dims.output_depth)?;
        v.act_range_s8(self.act_min, self.act_max)?;
        v.check(
            (-255..=255).contains(&self.input_offset) && (-255..=255).contains(&self.filter_offset),
            "zero point out of range",
        )?;
        v.check(
            (-128..=127).contains(&self.output_offset),
            "output zero point out of range",
        )
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let dims =
            fc_dims(&self.input, &self.filter, &self.output).ok_or(crate::Error::Malformed {
                what: "fully connected shapes",
            })?;
        let packed = t.packed();
        let (ins, out) = t.split(&self.output)?;
        // Packed weights carry their own checked bias and requantization constants.
        if let Some(packed) = packed {
            let input = ins.i8(&self.input)?;
            if super::host_simd::fully_connected_s8_packed(
                self,
                dims,
                input,
                as_i8_mut(out),
                packed,
            ) {
                return Ok(());
            }
        }
        let (input, filter, bias) = (
            ins.i8(&self.input)?,
            ins.i8(&self.filter)?,
            ins.opt_i32(&self.bias)?,
        );
        let (multipliers, shifts) = (
            ins.i32(&self.requant.multipliers)?,
            ins.i32(&self.requant.shifts)?,
        );
        let output = as_i8_mut(out);
        let operands = super::host_simd::S8Operands {
            input,
            filter,
            bias,
            multipliers,
            shifts,
        };
        if super::host_simd::fully_connected_s8(self, dims, operands, output) {
            return Ok(());
        }
        // The DSP-style kernel where the target has it; it declines what it does not handle.
        if !(super::dsp::ENABLED
            && super::dsp::fully_connected_s8_dsp(
                self,
                dims,
                input,
                filter,
                bias,
                multipliers,
                shifts,
                output,
            ))
        {
            fully_connected_s8_reference(
                self,
                dims,
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

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        super::visit_weighted(&self.input, &self.filter, &self.bias, f);
    }

    fn macs(&self) -> u64 {
        (self.output.elements() as u64) * (self.filter.shape.dim(1) as u64)
    }
}

/// Float32 fully connected (`reference_ops::FullyConnected`, float).
///
/// Converter: `input` (`[batches.., accum_depth]`), `filter` (`[output_depth, accum_depth]`),
/// `bias` (`[output_depth]` or `None`) and `output` as in the TFLite op; `activation` = the fused
/// activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullyConnectedF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub activation: Activation,
}

/// Hybrid fully connected: int8 weights with per-channel (or per-tensor) float scales, float
/// activations quantized on the fly (TFLite's dynamic-range quantization, `fully_connected.cc`
/// `EvalHybrid`, which TFLite runs the same way for every kernel type).
///
/// Arithmetic: the output starts as the bias (or 0); an all-zero input leaves it there. Otherwise
/// each row of `accum_depth` inputs is quantized (symmetric, or asymmetric with a zero point
/// when `asymmetric_quantize_inputs`), and `out += (sum(w * (q - zero_point))) as f32 * scale`
/// with `scale = batch_factor * filter_scale` (per tensor) or `batch_factor * filter_scale[row]`.
/// The fused activation comes last.
///
/// Converter:
/// - `input` f32, `filter` int8 `[output_depth, accum_depth]` (symmetric), `bias` f32 or `None`, `output` f32.
/// - `filter_scales`: `F32` constant with the filter's scales as in the file (1 or `output_depth` entries).
/// - `asymmetric_quantize_inputs`: `FullyConnectedOptions.asymmetric_quantize_inputs`.
/// - `scratch`: `I32` arena tensor of at least [`hybrid::scratch_elements`]`(batches, input elements)`
///   elements with `batches = input elements / accum_depth`, disjoint from `input` and `output`
///   (layout in [`super::hybrid`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullyConnectedHybrid {
    pub input: TensorDef,
    pub filter: TensorDef,
    /// Float scales of the int8 weights: 1 or `output_depth` entries (`F32` constant).
    pub filter_scales: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub activation: Activation,
    /// TFLite's `asymmetric_quantize_inputs` option.
    pub asymmetric_quantize_inputs: bool,
    pub scratch: TensorDef,
}

/// Scalar reference for [`FullyConnectedF32`] (`reference_ops::FullyConnected`, same summation order).
pub fn fully_connected_f32_reference(
    activation: Activation,
    dims: FcDims,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let rows = input.chunks_exact(dims.accum_depth).take(dims.batches);
    for (row, out_row) in rows.zip(output.chunks_exact_mut(dims.output_depth)) {
        let weight_rows = filter.chunks_exact(dims.accum_depth);
        for (oc, (weights, out)) in weight_rows.zip(out_row.iter_mut()).enumerate() {
            let mut total = 0.0f32;
            for (&x, &w) in row.iter().zip(weights) {
                total += x * w;
            }
            let bias_value = bias.map_or(0.0, |bias| bias[oc]);
            *out = activation.apply_f32(total + bias_value);
        }
    }
}

/// Scalar reference for [`FullyConnectedHybrid`] after per-row quantization of the input.
/// `input_is_zero` is TFLite's `IsZeroVector` shortcut over the whole float input.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_hybrid_reference(
    activation: Activation,
    dims: FcDims,
    input_is_zero: bool,
    quantized: &[i8],
    scaling_factors: &[f32],
    input_offsets: &[i32],
    filter: &[i8],
    filter_scales: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let per_channel = filter_scales.len() > 1;
    let rows = quantized.chunks_exact(dims.accum_depth).take(dims.batches);
    for (b, (row, out_row)) in rows
        .zip(output.chunks_exact_mut(dims.output_depth))
        .enumerate()
    {
        // Per tensor, TFLite folds the filter scale into the batch factor first.
        let batch_factor = if per_channel {
            scaling_factors[b]
        } else {
            scaling_factors[b] * filter_scales[0]
        };
        let zero_point = input_offsets[b];
        let weight_rows = filter.chunks_exact(dims.accum_depth);
        for (oc, (weights, out)) in weight_rows.zip(out_row.iter_mut()).enumerate() {
            let start = bias.map_or(0.0, |bias| bias[oc]);
            if input_is_zero {
                *out = activation.apply_f32(start);
                continue;
            }
            let mut dot: i32 = 0;
            for (&q, &w) in row.iter().zip(weights) {
                dot = dot.wrapping_add((w as i32).wrapping_mul(q as i32 - zero_point));
            }
            let scale = if per_channel {
                batch_factor * filter_scales[oc]
            } else {
                batch_factor
            };
            *out = activation.apply_f32(start + dot as f32 * scale);
        }
    }
}

fn validate_fc_float_io(
    v: &Validator,
    input: &TensorDef,
    filter: &TensorDef,
    bias: &Option<TensorDef>,
    output: &TensorDef,
    weights: DType,
) -> Result<FcDims> {
    v.activation(input, DType::F32)?;
    v.constant(filter, weights)?;
    v.activation(output, DType::F32)?;
    v.disjoint(input, output)?;
    let dims = fc_dims(input, filter, output)
        .ok_or(v.fail("input, weights and output shapes do not match"))?;
    if let Some(bias) = bias {
        v.constant(bias, DType::F32)?;
        v.elements(
            bias,
            dims.output_depth,
            "bias length differs from output depth",
        )?;
    }
    Ok(dims)
}

const FC_SHAPES: crate::Error = crate::Error::Malformed {
    what: "fully connected shapes",
};

impl Kernel for FullyConnectedF32 {
    fn name(&self) -> &'static str {
        "FULLY_CONNECTED"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        validate_fc_float_io(
            v,
            &self.input,
            &self.filter,
            &self.bias,
            &self.output,
            DType::F32,
        )
        .map(|_| ())
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let dims = fc_dims(&self.input, &self.filter, &self.output).ok_or(FC_SHAPES)?;
        let (ins, out) = t.split(&self.output)?;
        let bias = ins.opt_f32(&self.bias)?;
        check_len(bias, dims.output_depth)?;
        fully_connected_f32_reference(
            self.activation,
            dims,
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
        (self.output.elements() as u64) * (self.filter.shape.dim(1) as u64)
    }
}

impl Kernel for FullyConnectedHybrid {
    fn name(&self) -> &'static str {
        "FULLY_CONNECTED"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let dims = validate_fc_float_io(
            v,
            &self.input,
            &self.filter,
            &self.bias,
            &self.output,
            DType::I8,
        )?;
        validate_scales(v, &self.filter_scales, dims.output_depth)?;
        hybrid::validate_scratch(v, &self.scratch, &self.input, &self.output, dims.batches)
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let dims = fc_dims(&self.input, &self.filter, &self.output).ok_or(FC_SHAPES)?;
        let input_elements = self.input.elements();
        let mode = if self.asymmetric_quantize_inputs {
            InputQuantization::Asymmetric
        } else {
            InputQuantization::Symmetric
        };
        let input_is_zero = {
            let (ins, scratch) = t.split(&self.scratch)?;
            let input = ins.f32(&self.input)?;
            let mut s = hybrid::split_scratch_mut(scratch, dims.batches, input_elements)?;
            hybrid::quantize_batches(input, dims.batches, mode, &mut s);
            input.iter().all(|&x| x == 0.0)
        };
        let (ins, out) = t.split(&self.output)?;
        let s = hybrid::split_scratch(ins.get(&self.scratch)?, dims.batches, input_elements)?;
        let bias = ins.opt_f32(&self.bias)?;
        let scales = ins.f32(&self.filter_scales)?;
        check_len(bias, dims.output_depth)?;
        check_scales(scales, dims.output_depth)?;
        fully_connected_hybrid_reference(
            self.activation,
            dims,
            input_is_zero,
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

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        super::visit_weighted(&self.input, &self.filter, &self.bias, f);
    }

    fn macs(&self) -> u64 {
        (self.output.elements() as u64) * (self.filter.shape.dim(1) as u64)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::conv::tests::Mem;

    fn run_hybrid(input: &[f32], asymmetric: bool, scales: &[f32], act: Activation) -> Vec<f32> {
        let mut m = Mem::default();
        let input_def = m.activation(DType::F32, &[2, 2]);
        let k = FullyConnectedHybrid {
            input: input_def.clone(),
            filter: m.constant(DType::I8, &[2, 2], &[1i8, 2, -3, 4]),
            filter_scales: m.constant(DType::F32, &[scales.len() as u32], scales),
            bias: Some(m.constant(DType::F32, &[2], &[0.5f32, -0.5])),
            output: m.activation(DType::F32, &[2, 2]),
            activation: act,
            asymmetric_quantize_inputs: asymmetric,
            scratch: m.activation(DType::I32, &[hybrid::scratch_elements(2, 4) as u32]),
        };
        m.run(&k, &input_def, input).unwrap()
    }

    #[test]
    fn hybrid_zero_input_gives_activated_bias() {
        assert_eq!(
            run_hybrid(&[0.0; 4], false, &[0.1], Activation::Relu),
            [0.5, 0.0, 0.5, 0.0]
        );
    }

    #[test]
    fn hybrid_symmetric_per_tensor_and_per_channel() {
        // Row 0 quantizes to [127, -127] (factor 1/127), row 1 to [64, 127] (factor 2/127).
        let out = run_hybrid(&[1.0, -1.0, 1.0, 2.0], false, &[0.1], Activation::None);
        let f0 = (1.0f32 / 127.0) * 0.1;
        let f1 = (2.0f32 / 127.0) * 0.1;
        assert_eq!(
            out,
            [
                0.5 + (127 - 254) as f32 * f0,
                -0.5 + (-381 - 508) as f32 * f0,
                0.5 + (64 + 254) as f32 * f1,
                -0.5 + (-192 + 508) as f32 * f1
            ]
        );
        let out = run_hybrid(&[1.0, -1.0, 1.0, 2.0], false, &[0.1, 0.2], Activation::None);
        let (g0, g1) = (1.0f32 / 127.0, 2.0f32 / 127.0);
        assert_eq!(
            out,
            [
                0.5 + (127 - 254) as f32 * (g0 * 0.1),
                -0.5 + (-381 - 508) as f32 * (g0 * 0.2),
                0.5 + (64 + 254) as f32 * (g1 * 0.1),
                -0.5 + (-192 + 508) as f32 * (g1 * 0.2)
            ]
        );
    }

    #[test]
    fn hybrid_asymmetric_subtracts_zero_point() {
        // Row [1, -1]: codes [126, -128], zero point -1, factor 2/255 (see the hybrid tests).
        let out = run_hybrid(&[1.0, -1.0, 0.0, 0.0], true, &[1.0], Activation::None);
        let f = (2.0f64 / 255.0) as f32;
        assert_eq!(
            out[..2],
            [
                0.5 + (127 - 2 * 127) as f32 * f,
                -0.5 + (-3 * 127 - 4 * 127) as f32 * f
            ]
        );
        // A zero row in a non-zero input still goes through quantization: codes 0, zero point 0.
        assert_eq!(out[2..], [0.5, -0.5]);
    }

    #[test]
    fn float_matches_hand_computed() {
        let mut m = Mem::default();
        let input_def = m.activation(DType::F32, &[1, 3]);
        let k = FullyConnectedF32 {
            input: input_def.clone(),
            filter: m.constant(DType::F32, &[2, 3], &[1.0f32, 2.0, 3.0, -1.0, 0.5, 0.25]),
            bias: Some(m.constant(DType::F32, &[2], &[0.5f32, 1.0])),
            output: m.activation(DType::F32, &[1, 2]),
            activation: Activation::ReluN1To1,
        };
        let out: Vec<f32> = m.run(&k, &input_def, &[0.5f32, -1.0, 0.25]).unwrap();
        // 0.5 - 2 + 0.75 + 0.5 and -0.5 - 0.5 + 0.0625 + 1, inside [-1, 1].
        assert_eq!(out, [-0.25, 0.0625]);
    }
}

//! FULLY_CONNECTED: int8 (per-tensor or per-channel), float32, and hybrid (int8 weights,
//! float activations).

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel, Requant};
use crate::arena::{as_i8_mut, Tensors, Validator};
use crate::error::Result;
use crate::quant::multiply_by_quantized_multiplier;
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

fn fc_dims(input: &TensorDef, filter: &TensorDef, output: &TensorDef) -> Option<FcDims> {
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
            let mut v = multiply_by_quantized_multiplier(acc, multipliers[ch], shifts[ch]);
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
        let (ins, out) = t.split(&self.output)?;
        fully_connected_s8_reference(
            self,
            dims,
            ins.i8(&self.input)?,
            ins.i8(&self.filter)?,
            ins.opt_i32(&self.bias)?,
            ins.i32(&self.requant.multipliers)?,
            ins.i32(&self.requant.shifts)?,
            as_i8_mut(out),
        );
        Ok(())
    }

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
        (self.output.elements() as u64) * (self.filter.shape.dim(1) as u64)
    }
}

/// Float32 fully connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullyConnectedF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub activation: Activation,
}

/// Hybrid fully connected: int8 weights with per-channel (or per-tensor) float scales, float
/// activations quantized on the fly (TFLite's dynamic-range quantization).
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
}

pending_kernel!(FullyConnectedF32, "FULLY_CONNECTED");
pending_kernel!(FullyConnectedHybrid, "FULLY_CONNECTED");

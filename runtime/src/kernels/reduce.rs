//! MEAN over any set of axes, int8 and float32.
//!
//! Int8 follows TFLite's integer `reference_ops::QuantizedMeanOrSum` (LiteRT 2.x routes every
//! int8 MEAN through it in reference mode, including the 4-D `{1, 2}` and equal-quantization
//! cases; checked with `scripts/opcheck`): sum the raw values per output, subtract
//! `zp_in * count`, one `MultiplyByQuantizedMultiplier` with `1/count` folded into the
//! multiplier, add `zp_out`, clamp. Float sums in input order and divides by the count.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::{Error, Result};
use crate::quant::{multiply_by_quantized_multiplier, quantize_multiplier};
use crate::tensor::{DType, TensorDef, MAX_RANK};

/// Int8 MEAN with the requantization and the division by the reduced count precomputed.
///
/// Converter: `axes_mask` has bit `i` set for every input dimension `i` in the axis tensor
/// (negative axes plus the rank; duplicates collapse). With `count` the product of the reduced
/// input dims, [`mean_s8_multiplier`] (TFLite's `PrepareMeanOrSum` `QuantizeMultiplier(s_in as
/// f64 / s_out as f64)` followed by `QuantizedMeanOrSum`'s folding) gives `multiplier, shift`;
/// `input_sum_offset = zp_in * count`; `output_zero_point = zp_out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    /// Bit `i` set: dimension `i` is reduced.
    pub axes_mask: u8,
    /// `input_zero_point * reduced_count`, subtracted from each raw sum.
    pub input_sum_offset: i32,
    pub output_zero_point: i32,
    pub multiplier: i32,
    pub shift: i32,
}

/// TFLite's int8 mean requantization: `QuantizeMultiplier(s_in / s_out)` (in f64), then the
/// `1/count` fold of `QuantizedMeanOrSum`. Host-side helper for the converter.
pub fn mean_s8_multiplier(input_scale: f32, output_scale: f32, count: usize) -> (i32, i32) {
    let (multiplier, shift) = quantize_multiplier(input_scale as f64 / output_scale as f64);
    if count == 0 {
        return (multiplier, shift);
    }
    // 63 - CountLeadingZeros(count) = floor(log2(count)), limited so the product stays in i64
    // and the final shift stays >= -31.
    let log2 = (usize::BITS - 1 - count.leading_zeros()) as i32;
    let fold = log2.min(32).min(31 + shift);
    let folded = ((multiplier as i64) << fold) / count as i64;
    (folded as i32, shift - fold)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub axes_mask: u8,
}

/// How input elements map to outputs: input dims (left-padded to [`MAX_RANK`]), the output
/// stride of each input dimension (0 when reduced) and the reduced element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducePlan {
    pub input_dims: [usize; MAX_RANK],
    pub output_strides: [usize; MAX_RANK],
    pub count: usize,
    pub outputs: usize,
}

impl ReducePlan {
    /// `None` unless `output` holds exactly the non-reduced dims (with or without kept 1s).
    pub fn new(input: &TensorDef, output: &TensorDef, axes_mask: u8) -> Option<ReducePlan> {
        let rank = input.shape.rank();
        if rank > MAX_RANK || (axes_mask as u32) >> rank != 0 {
            return None;
        }
        let mut plan = ReducePlan {
            input_dims: [1; MAX_RANK],
            output_strides: [0; MAX_RANK],
            count: 1,
            outputs: 1,
        };
        let mut kept: heapless::Vec<usize, MAX_RANK> = heapless::Vec::new();
        for i in 0..rank {
            let d = input.shape.dim(i);
            plan.input_dims[MAX_RANK - rank + i] = d;
            if axes_mask & (1 << i) != 0 {
                plan.count = plan.count.checked_mul(d)?;
            } else {
                plan.outputs = plan.outputs.checked_mul(d)?;
                kept.push(d).ok()?;
            }
        }
        // The output lists the kept dims in order; reduced dims may stay as 1s (keep_dims).
        let out_dims: heapless::Vec<usize, MAX_RANK> =
            output.shape.dims.iter().map(|&d| d as usize).collect();
        let keep_dims_shape = (0..rank).all(|i| {
            let expected = if axes_mask & (1 << i) != 0 {
                1
            } else {
                input.shape.dim(i)
            };
            out_dims.get(i) == Some(&expected)
        }) && out_dims.len() == rank;
        if !(keep_dims_shape || out_dims == kept) {
            return None;
        }
        let mut stride = 1usize;
        for i in (0..rank).rev() {
            if axes_mask & (1 << i) == 0 {
                plan.output_strides[MAX_RANK - rank + i] = stride;
                stride *= input.shape.dim(i);
            }
        }
        Some(plan)
    }

    /// Calls `f(input_index, output_index)` over the input in row-major order.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let [d0, d1, d2, d3, d4] = self.input_dims;
        let s = self.output_strides;
        let mut input = 0usize;
        for i0 in 0..d0 {
            for i1 in 0..d1 {
                for i2 in 0..d2 {
                    for i3 in 0..d3 {
                        let base = i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3];
                        for i4 in 0..d4 {
                            f(input, base + i4 * s[4]);
                            input += 1;
                        }
                    }
                }
            }
        }
    }
}

/// Scalar reference for int8 MEAN. `sums` is scratch of `plan.outputs` entries.
pub fn mean_s8_reference(
    p: &MeanS8,
    plan: &ReducePlan,
    input: &[i8],
    sums: &mut [i32],
    output: &mut [i8],
) {
    sums.fill(0);
    plan.for_each(|i, o| sums[o] += input[i] as i32);
    for (out, &sum) in output.iter_mut().zip(sums.iter()) {
        let v = multiply_by_quantized_multiplier(sum - p.input_sum_offset, p.multiplier, p.shift)
            + p.output_zero_point;
        *out = v.clamp(-128, 127) as i8;
    }
}

/// Scalar reference for float MEAN: per-output f32 sums in input order, then `/ count`.
pub fn mean_f32_reference(plan: &ReducePlan, input: &[f32], output: &mut [f32]) {
    output.fill(0.0);
    plan.for_each(|i, o| output[o] += input[i]);
    let count = plan.count as f32;
    for v in output.iter_mut() {
        *v /= count;
    }
}

/// Int32 scratch for the int8 sums, on the stack: the kernel sums one block of outputs at a
/// time so no arena scratch is needed.
const SUM_BLOCK: usize = 64;

impl Kernel for MeanS8 {
    fn name(&self) -> &'static str {
        "MEAN"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        v.tensor(&self.input, DType::I8)?;
        v.activation(&self.output, DType::I8)?;
        v.disjoint(&self.input, &self.output)?;
        let plan = ReducePlan::new(&self.input, &self.output, self.axes_mask)
            .ok_or(v.fail("axes and output shape do not match the input"))?;
        // Sums of up to 2^23 int8 values (and zp * count) stay inside i32.
        v.check(
            plan.count > 0 && plan.count <= 1 << 23,
            "reduced element count out of range",
        )?;
        v.check(
            (-128..=127).contains(&self.output_zero_point),
            "output zero point out of range",
        )?;
        v.check(
            (self.input_sum_offset as i64).abs() <= 128 * plan.count as i64,
            "input sum offset out of range",
        )?;
        v.check(
            (-31..=30).contains(&self.shift),
            "requantization shift out of range",
        )
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let plan =
            ReducePlan::new(&self.input, &self.output, self.axes_mask).ok_or(Error::Malformed {
                what: "mean shapes",
            })?;
        let (ins, out) = t.split(&self.output)?;
        let input = ins.i8(&self.input)?;
        let output = as_i8_mut(out);
        if plan.outputs <= SUM_BLOCK {
            let mut sums = [0i32; SUM_BLOCK];
            mean_s8_reference(self, &plan, input, &mut sums[..plan.outputs], output);
            return Ok(());
        }
        // Many outputs: accumulate block by block, re-walking the input for each block.
        let mut sums = [0i32; SUM_BLOCK];
        let mut start = 0;
        while start < plan.outputs {
            let end = (start + SUM_BLOCK).min(plan.outputs);
            sums.fill(0);
            plan.for_each(|i, o| {
                if (start..end).contains(&o) {
                    sums[o - start] += input[i] as i32;
                }
            });
            for (out, &sum) in output[start..end].iter_mut().zip(sums.iter()) {
                let v = multiply_by_quantized_multiplier(
                    sum - self.input_sum_offset,
                    self.multiplier,
                    self.shift,
                ) + self.output_zero_point;
                *out = v.clamp(-128, 127) as i8;
            }
            start = end;
        }
        Ok(())
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
    }
}

impl Kernel for MeanF32 {
    fn name(&self) -> &'static str {
        "MEAN"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        v.tensor(&self.input, DType::F32)?;
        v.activation(&self.output, DType::F32)?;
        v.disjoint(&self.input, &self.output)?;
        let plan = ReducePlan::new(&self.input, &self.output, self.axes_mask)
            .ok_or(v.fail("axes and output shape do not match the input"))?;
        v.check(plan.count > 0, "reduced element count is zero")
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let plan =
            ReducePlan::new(&self.input, &self.output, self.axes_mask).ok_or(Error::Malformed {
                what: "mean shapes",
            })?;
        let (ins, out) = t.split(&self.output)?;
        mean_f32_reference(&plan, ins.f32(&self.input)?, as_f32_mut(out)?);
        Ok(())
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
    use super::*;
    use crate::tensor::{Location, Shape};

    fn def(dtype: DType, dims: &[u32]) -> TensorDef {
        TensorDef {
            dtype,
            shape: Shape::new(dims).unwrap(),
            location: Location::Arena(0),
            quant: None,
        }
    }

    #[test]
    fn plan_accepts_keep_dims_and_squeezed_outputs() {
        let input = def(DType::I8, &[2, 3, 4]);
        assert!(ReducePlan::new(&input, &def(DType::I8, &[2, 1, 4]), 0b010).is_some());
        assert!(ReducePlan::new(&input, &def(DType::I8, &[2, 4]), 0b010).is_some());
        assert!(ReducePlan::new(&input, &def(DType::I8, &[]), 0b111).is_some());
        assert!(ReducePlan::new(&input, &def(DType::I8, &[4, 2]), 0b010).is_none());
        assert!(ReducePlan::new(&input, &def(DType::I8, &[2, 4]), 0b1000).is_none());
    }

    #[test]
    fn mean_s8_same_quantization_rounds_to_nearest() {
        let input = def(DType::I8, &[1, 2, 2, 1]);
        let output = def(DType::I8, &[1, 1, 1, 1]);
        let plan = ReducePlan::new(&input, &output, 0b0110).unwrap();
        let (multiplier, shift) = mean_s8_multiplier(0.1, 0.1, plan.count);
        let p = MeanS8 {
            input,
            output,
            axes_mask: 0b0110,
            input_sum_offset: 5 * 4,
            output_zero_point: 5,
            multiplier,
            shift,
        };
        let mut sums = [0i32; 1];
        let mut out = [0i8; 1];
        // Real mean of (q - 5): (1 + 2 + 3 + 4) / 4 = 2.5 -> rounds away from zero to 3.
        mean_s8_reference(&p, &plan, &[6, 7, 8, 9], &mut sums, &mut out);
        assert_eq!(out[0], 5 + 3);
        mean_s8_reference(&p, &plan, &[127; 4], &mut sums, &mut out);
        assert_eq!(out[0], 127);
        mean_s8_reference(&p, &plan, &[-128; 4], &mut sums, &mut out);
        assert_eq!(out[0], -128);
    }

    #[test]
    fn mean_multiplier_folds_the_count() {
        // scale ratio 1 over 8 elements is exactly 1/8.
        let (m, s) = mean_s8_multiplier(1.0, 1.0, 8);
        assert_eq!((m, s), (1 << 30, 1 - 3));
        // Odd counts keep 31 bits of the reciprocal.
        let (m, s) = mean_s8_multiplier(1.0, 1.0, 3);
        assert_eq!(s, 0);
        assert_eq!(m, ((1i64 << 31) / 3) as i32);
    }

    #[test]
    fn mean_f32_over_middle_axis() {
        let input = def(DType::F32, &[2, 2, 2]);
        let output = def(DType::F32, &[2, 2]);
        let plan = ReducePlan::new(&input, &output, 0b010).unwrap();
        let mut out = [0f32; 4];
        mean_f32_reference(&plan, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &mut out);
        assert_eq!(out, [2.0, 3.0, 6.0, 7.0]);
    }
}

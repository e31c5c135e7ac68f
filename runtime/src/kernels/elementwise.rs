//! ADD and MUL with numpy-style broadcasting (up to 5-D), int8 and float32.
//!
//! Bit-exact with TFLite's `reference_integer_ops::Add/Mul` and `reference_ops::Add/Mul` (and
//! their `BroadcastAdd6DSlow`/`BroadcastMul6DSlow` forms, which do the same per-element math).

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel};
use crate::arena::{as_f32, as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::{Error, Result};
use crate::quant::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_smaller_than_one,
};
use crate::tensor::{DType, Shape, TensorDef, MAX_RANK};

/// How two input shapes broadcast to the output: the output dims (left-padded with 1 to
/// [`MAX_RANK`]) and each input's element strides, 0 along broadcast dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastPlan {
    pub dims: [usize; MAX_RANK],
    pub strides1: [usize; MAX_RANK],
    pub strides2: [usize; MAX_RANK],
}

fn extended(shape: &Shape) -> Option<[usize; MAX_RANK]> {
    let rank = shape.rank();
    if rank > MAX_RANK {
        return None;
    }
    let mut dims = [1usize; MAX_RANK];
    for (i, &d) in shape.dims.iter().enumerate() {
        dims[MAX_RANK - rank + i] = d as usize;
    }
    Some(dims)
}

fn strides_for(dims: &[usize; MAX_RANK], out: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
    let mut strides = [0usize; MAX_RANK];
    let mut stride = 1usize;
    for i in (0..MAX_RANK).rev() {
        strides[i] = if dims[i] == 1 && out[i] != 1 {
            0
        } else {
            stride
        };
        stride *= dims[i];
    }
    strides
}

impl BroadcastPlan {
    /// Numpy broadcasting of `a` and `b`; `None` unless `out` is exactly the broadcast shape.
    pub fn new(a: &Shape, b: &Shape, out: &Shape) -> Option<BroadcastPlan> {
        let (da, db, dout) = (extended(a)?, extended(b)?, extended(out)?);
        if out.rank() != a.rank().max(b.rank()) {
            return None;
        }
        for i in 0..MAX_RANK {
            let compatible = da[i] == db[i] || da[i] == 1 || db[i] == 1;
            if !compatible || dout[i] != da[i].max(db[i]) {
                return None;
            }
        }
        // Element counts must fit in usize for the strides to be meaningful.
        a.elements()?;
        b.elements()?;
        out.elements()?;
        Some(BroadcastPlan {
            dims: dout,
            strides1: strides_for(&da, &dout),
            strides2: strides_for(&db, &dout),
        })
    }

    /// Calls `f(output_index, input1_index, input2_index)` for every output element in order.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [d0, d1, d2, d3, d4] = self.dims;
        let (s, t) = (self.strides1, self.strides2);
        let mut out = 0;
        for i0 in 0..d0 {
            for i1 in 0..d1 {
                for i2 in 0..d2 {
                    let base1 = i0 * s[0] + i1 * s[1] + i2 * s[2];
                    let base2 = i0 * t[0] + i1 * t[1] + i2 * t[2];
                    for i3 in 0..d3 {
                        for i4 in 0..d4 {
                            f(
                                out,
                                base1 + i3 * s[3] + i4 * s[4],
                                base2 + i3 * t[3] + i4 * t[4],
                            );
                            out += 1;
                        }
                    }
                }
            }
        }
    }
}

fn plan_for(a: &TensorDef, b: &TensorDef, out: &TensorDef) -> Result<BroadcastPlan> {
    BroadcastPlan::new(&a.shape, &b.shape, &out.shape).ok_or(Error::Malformed {
        what: "broadcast shapes",
    })
}

fn validate_binary(
    v: &Validator,
    a: &TensorDef,
    b: &TensorDef,
    out: &TensorDef,
    dtype: DType,
) -> Result<()> {
    v.tensor(a, dtype)?;
    v.tensor(b, dtype)?;
    v.activation(out, dtype)?;
    v.disjoint(a, out)?;
    v.disjoint(b, out)?;
    v.check(
        BroadcastPlan::new(&a.shape, &b.shape, &out.shape).is_some(),
        "input shapes do not broadcast to the output shape",
    )
}

fn check_offsets(v: &Validator, in1: i32, in2: i32, out: i32) -> Result<()> {
    v.check(
        (-127..=128).contains(&in1) && (-127..=128).contains(&in2) && (-128..=127).contains(&out),
        "zero point out of range",
    )
}

/// Int8 ADD (TFLite `reference_integer_ops::Add`): inputs rescaled to a common scale with
/// `left_shift` headroom, summed, rescaled to the output.
///
/// The converter computes the fields as TFLite's `add.cc` Prepare (`PrepareGeneralSubOp` path
/// for int8) does, with `s1, s2, so` the tensors' float scales:
/// - `left_shift = 20`; `input1_offset = -zp1`, `input2_offset = -zp2`, `output_offset = zp_out`;
/// - `twice_max = 2.0 * max(s1, s2) as f64` (max and doubling in f32, exact), then
///   `QuantizeMultiplierSmallerThanOneExp` (= [`crate::quant::quantize_multiplier`]) of
///   `s1 as f64 / twice_max` -> `input1_multiplier/shift`, `s2 as f64 / twice_max` ->
///   `input2_multiplier/shift`, and `twice_max / ((1 << 20) as f32 * so) as f64` ->
///   `output_multiplier/shift` (the denominator is an f32 product, exact since it is a power of two);
/// - `act_min/act_max` from `CalculateActivationRangeQuantized` (int8 limits intersected with
///   the fused activation's range quantized with `zp + round(x / so)` in f32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddS8 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub left_shift: i32,
    pub input1_offset: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_offset: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_offset: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

impl AddS8 {
    /// One output element, exactly as TFLite's `AddElementwise` computes it.
    #[inline(always)]
    pub fn element(&self, a: i8, b: i8) -> i8 {
        let shifted1 = (self.input1_offset + a as i32) * (1 << self.left_shift);
        let shifted2 = (self.input2_offset + b as i32) * (1 << self.left_shift);
        let scaled1 = multiply_by_quantized_multiplier_smaller_than_one(
            shifted1,
            self.input1_multiplier,
            self.input1_shift,
        );
        let scaled2 = multiply_by_quantized_multiplier_smaller_than_one(
            shifted2,
            self.input2_multiplier,
            self.input2_shift,
        );
        let raw = multiply_by_quantized_multiplier_smaller_than_one(
            scaled1 + scaled2,
            self.output_multiplier,
            self.output_shift,
        ) + self.output_offset;
        raw.clamp(self.act_min, self.act_max) as i8
    }
}

/// Scalar reference for int8 ADD with broadcasting.
pub fn add_s8_reference(p: &AddS8, plan: &BroadcastPlan, a: &[i8], b: &[i8], out: &mut [i8]) {
    plan.for_each(|o, i, j| out[o] = p.element(a[i], b[j]));
}

/// Int8 MUL (TFLite `reference_integer_ops::Mul`).
///
/// Converter (TFLite `mul.cc` Prepare): `input1_offset = -zp1`, `input2_offset = -zp2`,
/// `output_offset = zp_out`; `real = (s1 * s2 / so)` evaluated **in f32** (left to right) and
/// widened to f64, then `QuantizeMultiplier(real)` -> `output_multiplier/shift`;
/// `act_min/act_max` as for [`AddS8`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulS8 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub input1_offset: i32,
    pub input2_offset: i32,
    pub output_offset: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

impl MulS8 {
    #[inline(always)]
    pub fn element(&self, a: i8, b: i8) -> i8 {
        let product = (self.input1_offset + a as i32) * (self.input2_offset + b as i32);
        let raw = self.output_offset
            + multiply_by_quantized_multiplier(product, self.output_multiplier, self.output_shift);
        raw.clamp(self.act_min, self.act_max) as i8
    }
}

/// Scalar reference for int8 MUL with broadcasting.
pub fn mul_s8_reference(p: &MulS8, plan: &BroadcastPlan, a: &[i8], b: &[i8], out: &mut [i8]) {
    plan.for_each(|o, i, j| out[o] = p.element(a[i], b[j]));
}

/// Float32 binary op operands; `activation` is the fused activation (clamp after the op).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryF32 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddF32(pub BinaryF32);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulF32(pub BinaryF32);

/// Scalar reference for float ADD/MUL: `activation(op(a, b))` per broadcast element.
pub fn binary_f32_reference(
    activation: Activation,
    plan: &BroadcastPlan,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    op: impl Fn(f32, f32) -> f32,
) {
    plan.for_each(|o, i, j| out[o] = activation.apply_f32(op(a[i], b[j])));
}

macro_rules! float_binary {
    ($ty:ty, $name:expr, $op:expr) => {
        impl Kernel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&self, v: &Validator) -> Result<()> {
                validate_binary(
                    v,
                    &self.0.input1,
                    &self.0.input2,
                    &self.0.output,
                    DType::F32,
                )
            }
            fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
                let p = &self.0;
                let plan = plan_for(&p.input1, &p.input2, &p.output)?;
                let (ins, out) = t.split(&p.output)?;
                let a = as_f32(ins.get(&p.input1)?)?;
                let b = as_f32(ins.get(&p.input2)?)?;
                binary_f32_reference(p.activation, &plan, a, b, as_f32_mut(out)?, $op);
                Ok(())
            }
            fn output(&self) -> &TensorDef {
                &self.0.output
            }
            fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
                f(&self.0.input1);
                f(&self.0.input2);
            }
        }
    };
}
float_binary!(AddF32, "ADD", |a, b| a + b);
float_binary!(MulF32, "MUL", |a, b| a * b);

impl Kernel for AddS8 {
    fn name(&self) -> &'static str {
        "ADD"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_binary(v, &self.input1, &self.input2, &self.output, DType::I8)?;
        check_offsets(
            v,
            self.input1_offset,
            self.input2_offset,
            self.output_offset,
        )?;
        v.check(
            (0..=20).contains(&self.left_shift),
            "left shift out of range",
        )?;
        // SmallerThanOne multipliers: right shifts only.
        for shift in [self.input1_shift, self.input2_shift, self.output_shift] {
            v.check(
                (-31..=0).contains(&shift),
                "requantization shift out of range",
            )?;
        }
        v.act_range_s8(self.act_min, self.act_max)
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let plan = plan_for(&self.input1, &self.input2, &self.output)?;
        let (ins, out) = t.split(&self.output)?;
        add_s8_reference(
            self,
            &plan,
            ins.i8(&self.input1)?,
            ins.i8(&self.input2)?,
            as_i8_mut(out),
        );
        Ok(())
    }
    fn output(&self) -> &TensorDef {
        &self.output
    }
    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input1);
        f(&self.input2);
    }
}

impl Kernel for MulS8 {
    fn name(&self) -> &'static str {
        "MUL"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_binary(v, &self.input1, &self.input2, &self.output, DType::I8)?;
        check_offsets(
            v,
            self.input1_offset,
            self.input2_offset,
            self.output_offset,
        )?;
        v.shift(self.output_shift)?;
        v.act_range_s8(self.act_min, self.act_max)
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let plan = plan_for(&self.input1, &self.input2, &self.output)?;
        let (ins, out) = t.split(&self.output)?;
        mul_s8_reference(
            self,
            &plan,
            ins.i8(&self.input1)?,
            ins.i8(&self.input2)?,
            as_i8_mut(out),
        );
        Ok(())
    }
    fn output(&self) -> &TensorDef {
        &self.output
    }
    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input1);
        f(&self.input2);
    }
    fn macs(&self) -> u64 {
        self.output.elements() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_multiplier;
    use crate::tensor::Location;

    fn def(dims: &[u32]) -> TensorDef {
        TensorDef {
            dtype: DType::I8,
            shape: Shape::new(dims).unwrap(),
            location: Location::Arena(0),
            quant: None,
        }
    }

    fn plan(a: &[u32], b: &[u32], out: &[u32]) -> Option<BroadcastPlan> {
        BroadcastPlan::new(&def(a).shape, &def(b).shape, &def(out).shape)
    }

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert!(plan(&[2, 1, 3], &[4, 1], &[2, 4, 3]).is_some());
        assert!(plan(&[3], &[2, 3], &[2, 3]).is_some());
        assert!(plan(&[2, 3], &[3, 2], &[3, 3]).is_none());
        // The output must be exactly the broadcast shape.
        assert!(plan(&[2, 3], &[2, 3], &[1, 2, 3]).is_none());
        assert!(plan(&[2, 3], &[1], &[2, 1]).is_none());
    }

    #[test]
    fn broadcast_indices_walk_both_inputs() {
        let p = plan(&[2, 1], &[3], &[2, 3]).unwrap();
        let mut seen = std::vec::Vec::new();
        p.for_each(|o, i, j| seen.push((o, i, j)));
        assert_eq!(
            seen,
            [
                (0, 0, 0),
                (1, 0, 1),
                (2, 0, 2),
                (3, 1, 0),
                (4, 1, 1),
                (5, 1, 2)
            ]
        );
    }

    fn add_params(s1: f32, z1: i32, s2: f32, z2: i32, so: f32, zo: i32) -> AddS8 {
        let twice_max = (2.0 * s1.max(s2)) as f64;
        let (m1, sh1) = quantize_multiplier(s1 as f64 / twice_max);
        let (m2, sh2) = quantize_multiplier(s2 as f64 / twice_max);
        let (mo, sho) = quantize_multiplier(twice_max / ((1 << 20) as f32 * so) as f64);
        AddS8 {
            input1: def(&[1]),
            input2: def(&[1]),
            output: def(&[1]),
            left_shift: 20,
            input1_offset: -z1,
            input1_multiplier: m1,
            input1_shift: sh1,
            input2_offset: -z2,
            input2_multiplier: m2,
            input2_shift: sh2,
            output_offset: zo,
            output_multiplier: mo,
            output_shift: sho,
            act_min: -128,
            act_max: 127,
        }
    }

    #[test]
    fn add_s8_equal_scales_adds_real_values() {
        // Same scale everywhere: (a - 3) + (b + 5) + 1 in quantized units.
        let p = add_params(0.5, 3, 0.5, -5, 0.5, 1);
        assert_eq!(p.element(10, 20), (10 - 3 + 20 + 5 + 1) as i8);
        assert_eq!(p.element(-60, -50), (-60 - 3 - 50 + 5 + 1) as i8);
        // Saturation at both ends.
        assert_eq!(p.element(127, 127), 127);
        assert_eq!(p.element(-128, -128), -128);
    }

    #[test]
    fn add_s8_respects_the_activation_clamp() {
        let mut p = add_params(0.1, 0, 0.1, 0, 0.1, -128);
        p.act_min = -128;
        p.act_max = -68; // RELU6-like upper bound
        assert_eq!(p.element(100, 100), -68);
        assert_eq!(p.element(-128, 0), -128);
    }

    #[test]
    fn mul_s8_hand_computed() {
        // 0.5 * 0.25 / 0.125 = 1.0: output = (a - za) * (b - zb) + zo.
        let (m, s) = quantize_multiplier((0.5f32 * 0.25 / 0.125) as f64);
        let p = MulS8 {
            input1: def(&[1]),
            input2: def(&[1]),
            output: def(&[1]),
            input1_offset: 2,
            input2_offset: -1,
            output_offset: -10,
            output_multiplier: m,
            output_shift: s,
            act_min: -128,
            act_max: 127,
        };
        assert_eq!(p.element(3, 4), ((3 + 2) * (4 - 1) - 10) as i8);
        assert_eq!(p.element(127, 127), 127);
        assert_eq!(p.element(-128, 127), -128);
    }

    #[test]
    fn float_add_broadcasts_and_clamps() {
        let p = plan(&[2, 1], &[2], &[2, 2]).unwrap();
        let mut out = [0f32; 4];
        binary_f32_reference(
            Activation::Relu6,
            &p,
            &[1.0, -3.0],
            &[0.5, 9.0],
            &mut out,
            |a, b| a + b,
        );
        assert_eq!(out, [1.5, 6.0, 0.0, 6.0]);
    }
}

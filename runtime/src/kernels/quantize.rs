//! QUANTIZE (float32 -> int8, int8 -> int8 requantize) and DEQUANTIZE (int8 -> float32),
//! bit-exact with TFLite's `reference_ops::AffineQuantize`, `Requantize` and `Dequantize`.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::Result;
use crate::quant::multiply_by_quantized_multiplier;
use crate::tensor::{DType, TensorDef};

/// Float32 to int8: `q = clamp(round(x / scale) + zero_point)`.
///
/// Converter: `scale` and `zero_point` are the **output** tensor's (f32 scale as stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeF32ToS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub scale: f32,
    pub zero_point: i32,
}

/// C++ `static_cast<int32_t>(float)` as x86 executes it (`cvttss2si`): out-of-range and NaN
/// give `i32::MIN` (TFLite's reference has no guard, so the host result is this).
#[inline(always)]
fn float_to_i32_x86(x: f32) -> i32 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

impl QuantizeF32ToS8 {
    #[inline(always)]
    pub fn element(&self, x: f32) -> i8 {
        // TfLiteRound(val / scale): f32 division, round half away from zero.
        let rounded = float_to_i32_x86(libm::roundf(x / self.scale));
        rounded.wrapping_add(self.zero_point).clamp(-128, 127) as i8
    }
}

/// Int8 to int8 with a new scale/zero point (`reference_ops::Requantize`).
///
/// Converter (TFLite `quantize.cc` Prepare): `QuantizeMultiplier(s_in as f64 / s_out as f64)`
/// -> `multiplier/shift`; zero points as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequantizeS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub input_zero_point: i32,
    pub output_zero_point: i32,
    pub multiplier: i32,
    pub shift: i32,
}

impl RequantizeS8 {
    #[inline(always)]
    pub fn element(&self, q: i8) -> i8 {
        let v = multiply_by_quantized_multiplier(
            q as i32 - self.input_zero_point,
            self.multiplier,
            self.shift,
        ) + self.output_zero_point;
        v.clamp(-128, 127) as i8
    }
}

/// Int8 to float32: `x = scale * (q - zero_point)`.
///
/// Converter: the **input** tensor's scale and zero point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DequantizeS8ToF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub scale: f32,
    pub zero_point: i32,
}

impl DequantizeS8ToF32 {
    #[inline(always)]
    pub fn element(&self, q: i8) -> f32 {
        // TFLite computes `(float)((double)scale * (q - zp))`. The f64 product of an f32 and an
        // integer below 2^9 is exact, so one f32 multiply rounds to the same value.
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

fn validate_unary(
    v: &Validator,
    input: &TensorDef,
    output: &TensorDef,
    from: DType,
    to: DType,
) -> Result<()> {
    v.tensor(input, from)?;
    v.activation(output, to)?;
    v.disjoint(input, output)?;
    v.check(
        input.shape.elements() == output.shape.elements(),
        "input and output element counts differ",
    )
}

impl Kernel for QuantizeF32ToS8 {
    fn name(&self) -> &'static str {
        "QUANTIZE"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_unary(v, &self.input, &self.output, DType::F32, DType::I8)?;
        v.check(
            self.scale.is_finite() && self.scale > 0.0,
            "scale must be positive",
        )?;
        v.check(
            (-128..=127).contains(&self.zero_point),
            "zero point out of range",
        )
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let (ins, out) = t.split(&self.output)?;
        let input = ins.f32(&self.input)?;
        for (o, &x) in as_i8_mut(out).iter_mut().zip(input) {
            *o = self.element(x);
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

impl Kernel for RequantizeS8 {
    fn name(&self) -> &'static str {
        "QUANTIZE"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_unary(v, &self.input, &self.output, DType::I8, DType::I8)?;
        v.shift(self.shift)?;
        v.check(
            (-128..=127).contains(&self.input_zero_point)
                && (-128..=127).contains(&self.output_zero_point),
            "zero point out of range",
        )
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let (ins, out) = t.split(&self.output)?;
        let input = ins.i8(&self.input)?;
        for (o, &q) in as_i8_mut(out).iter_mut().zip(input) {
            *o = self.element(q);
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

impl Kernel for DequantizeS8ToF32 {
    fn name(&self) -> &'static str {
        "DEQUANTIZE"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_unary(v, &self.input, &self.output, DType::I8, DType::F32)?;
        v.check(
            (-128..=127).contains(&self.zero_point),
            "zero point out of range",
        )
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let (ins, out) = t.split(&self.output)?;
        let input = ins.i8(&self.input)?;
        for (o, &q) in as_f32_mut(out)?.iter_mut().zip(input) {
            *o = self.element(q);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_multiplier;
    use crate::tensor::{Location, Shape};

    fn def(dtype: DType) -> TensorDef {
        TensorDef {
            dtype,
            shape: Shape::new(&[1]).unwrap(),
            location: Location::Arena(0),
            quant: None,
        }
    }

    #[test]
    fn quantize_rounds_half_away_and_saturates() {
        let p = QuantizeF32ToS8 {
            input: def(DType::F32),
            output: def(DType::I8),
            scale: 0.5,
            zero_point: -1,
        };
        assert_eq!(p.element(0.25), 0); // 0.5 -> 1, -1
        assert_eq!(p.element(-0.25), -2); // -0.5 -> -1, -1
        assert_eq!(p.element(1000.0), 127);
        assert_eq!(p.element(-1000.0), -128);
        // C++ cast of an out-of-range float on x86 is INT_MIN; with zero point 0 that clamps low.
        let p = QuantizeF32ToS8 { zero_point: 0, ..p };
        assert_eq!(p.element(f32::INFINITY), -128);
        assert_eq!(p.element(f32::NAN), -128);
    }

    #[test]
    fn requantize_halving_scale_doubles_values() {
        let (multiplier, shift) = quantize_multiplier(0.2f32 as f64 / 0.1f32 as f64);
        let p = RequantizeS8 {
            input: def(DType::I8),
            output: def(DType::I8),
            input_zero_point: 10,
            output_zero_point: -3,
            multiplier,
            shift,
        };
        assert_eq!(p.element(15), 2 * 5 - 3);
        assert_eq!(p.element(127), 127);
        assert_eq!(p.element(-128), -128);
    }

    #[test]
    fn dequantize_matches_double_product() {
        let p = DequantizeS8ToF32 {
            input: def(DType::I8),
            output: def(DType::F32),
            scale: 0.037,
            zero_point: 127,
        };
        for q in -128..=127i8 {
            let expected = (0.037f32 as f64 * (q as i32 - 127) as f64) as f32;
            assert_eq!(p.element(q), expected);
        }
    }
}

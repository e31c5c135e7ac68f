//! SOFTMAX, LOGISTIC and TANH, int8 and float32.
//!
//! What TFLite (LiteRT 2.x, `activations.cc`) runs under the reference op resolver, checked
//! with `scripts/opcheck`:
//! - int8 LOGISTIC/TANH: a 256-entry lookup table built at Prepare with float math
//!   (`LUTPopulate`); at run time one table load per element. The converter builds the table
//!   with [`lut_s8`] and stores it as an `I8` constant, so the device does no float math.
//! - int8 SOFTMAX: `PopulateSoftmaxLookupTable` (256 `expf` values, built at Prepare) and the
//!   table-driven `Softmax` that sums and normalizes in **f32 at run time**; the table is an
//!   `F32` constant built with [`softmax_exp_table`], the run-time float math is replicated.
//! - float32: `reference_ops` formulas with `expf`/`tanhf` (here from `libm`).

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{as_f32_mut, as_i8_mut, Tensors, Validator};
use crate::error::Result;
use crate::tensor::{DType, QuantParams, TensorDef};

/// TFLite's `LUTPopulate<int8_t>`: `table[q as u8]` is the int8 output for input `q`.
///
/// `transform` must be the exact float function TFLite uses, evaluated with the host's C
/// library (glibc on Linux, as in the TFLite Python wheel): logistic
/// `|x| 1.0 / (1.0 + (-x).exp())`, tanh `|x| x.tanh()` (Rust std's `f32::exp/tanh` call glibc).
pub fn lut_s8(
    input: QuantParams,
    output: QuantParams,
    transform: impl Fn(f32) -> f32,
) -> [i8; 256] {
    let inverse_scale = 1.0f32 / output.scale;
    let mut table = [0i8; 256];
    for q in -128i32..=127 {
        let dequantized = input.scale * (q - input.zero_point) as f32;
        let rescaled = libm::roundf(transform(dequantized) * inverse_scale);
        // `static_cast<int32_t>(rescaled + zero_point)`, the sum taken in f32.
        let quantized = (rescaled + output.zero_point as f32) as i32;
        table[(q as i8 as u8) as usize] = quantized.clamp(-128, 127) as i8;
    }
    table
}

/// TFLite's `PopulateSoftmaxLookupTable`: `table[255 - v] = expf(-input_scale * beta * v)`
/// for `v` in `0..=255` (the scale product in f32). Pass the host C library's `expf`
/// (`f32::exp` on Linux) so the table matches TFLite's.
pub fn softmax_exp_table(input_scale: f32, beta: f32, exp: impl Fn(f32) -> f32) -> [f32; 256] {
    let scale = -input_scale * beta;
    let mut table = [0f32; 256];
    for v in 0..=255usize {
        table[255 - v] = exp(scale * v as f32);
    }
    table
}

/// Int8 softmax over the last dimension (TFLite's table-driven quantized `Softmax`).
///
/// Converter: `table` = [`softmax_exp_table`]`(s_in, beta)` stored as an `F32` constant of 256
/// elements; `output_scale`/`output_zero_point` are the output tensor's (TFLite requires
/// `1/256` and `-128` for int8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub table: TensorDef,
    pub output_scale: f32,
    pub output_zero_point: i32,
}

/// Scalar reference for int8 softmax; `depth` is the last dimension.
pub fn softmax_s8_reference(
    p: &SoftmaxS8,
    table: &[f32],
    depth: usize,
    input: &[i8],
    output: &mut [i8],
) {
    for (row, out_row) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = row.iter().copied().max().unwrap_or(0) as i32;
        // table[255 - max + q] = exp(-scale * beta * (max - q)); the index lies in 0..=255.
        let base = (255 - max) as usize;
        let exp_of = |q: i8| table[(base as i32 + q as i32) as usize];
        let mut sum = 0.0f32;
        for &q in row {
            sum += exp_of(q);
        }
        let inv_sum = 1.0f32 / (sum * p.output_scale);
        for (o, &q) in out_row.iter_mut().zip(row) {
            let prob = exp_of(q) * inv_sum;
            // QuantizeSoftmaxOutput<int8_t>: std::round, then + zero point, then clamp.
            let rounded = libm::roundf(prob) as i32;
            *o = (rounded + p.output_zero_point).clamp(-128, 127) as i8;
        }
    }
}

/// Float softmax over the last dimension (`reference_ops::Softmax`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub beta: f32,
}

pub fn softmax_f32_reference(beta: f32, depth: usize, input: &[f32], output: &mut [f32]) {
    for (row, out_row) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let mut max = f32::MIN;
        for &x in row {
            max = if max < x { x } else { max };
        }
        let mut sum = 0.0f32;
        for (o, &x) in out_row.iter_mut().zip(row) {
            *o = expf((x - max) * beta);
            sum += *o;
        }
        for o in out_row.iter_mut() {
            *o /= sum;
        }
    }
}

macro_rules! lut_kernel {
    ($ty:ident, $name:expr, $doc:expr) => {
        #[doc = $doc]
        ///
        /// Converter: `table` is an `I8` constant of 256 entries from [`lut_s8`] with the input
        /// and output tensors' quantization, indexed by the input byte (`q as u8`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $ty {
            pub input: TensorDef,
            pub output: TensorDef,
            pub table: TensorDef,
        }

        impl Kernel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&self, v: &Validator) -> Result<()> {
                v.tensor(&self.input, DType::I8)?;
                v.activation(&self.output, DType::I8)?;
                v.disjoint(&self.input, &self.output)?;
                v.constant(&self.table, DType::I8)?;
                v.elements(&self.table, 256, "lookup table must have 256 entries")?;
                v.check(
                    self.input.shape.elements() == self.output.shape.elements(),
                    "input and output element counts differ",
                )
            }
            fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
                let (ins, out) = t.split(&self.output)?;
                lookup_s8_reference(ins.i8(&self.table)?, ins.i8(&self.input)?, as_i8_mut(out));
                Ok(())
            }
            fn output(&self) -> &TensorDef {
                &self.output
            }
            fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
                f(&self.input);
                f(&self.table);
            }
        }
    };
}

lut_kernel!(
    LogisticS8,
    "LOGISTIC",
    "Int8 LOGISTIC through TFLite's Prepare-time lookup table."
);
lut_kernel!(
    TanhS8,
    "TANH",
    "Int8 TANH through TFLite's Prepare-time lookup table."
);

/// `output[i] = table[input[i] as u8]` (TFLite `EvalUsingLookupTable`).
pub fn lookup_s8_reference(table: &[i8], input: &[i8], output: &mut [i8]) {
    for (o, &q) in output.iter_mut().zip(input) {
        *o = table[(q as u8) as usize];
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticF32 {
    pub input: TensorDef,
    pub output: TensorDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TanhF32 {
    pub input: TensorDef,
    pub output: TensorDef,
}

/// `expf` as TFLite calls it: the host C library's with the `std` feature (bit-exact with the
/// TFLite wheel on Linux/glibc), `libm`'s on the device (may differ in the last bit).
#[inline]
pub fn expf(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        extern crate std;
        x.exp()
    }
    #[cfg(not(feature = "std"))]
    {
        libm::expf(x)
    }
}

/// `tanhf`, chosen like [`expf`].
#[inline]
pub fn tanhf(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        extern crate std;
        x.tanh()
    }
    #[cfg(not(feature = "std"))]
    {
        libm::tanhf(x)
    }
}

/// `reference_ops::Logistic` for float, with its cutoffs.
#[inline]
pub fn logistic_f32(x: f32) -> f32 {
    const CUTOFF_UPPER: f32 = 16.619_047;
    const CUTOFF_LOWER: f32 = -9.0;
    if x > CUTOFF_UPPER {
        1.0
    } else if x < CUTOFF_LOWER {
        expf(x)
    } else {
        1.0 / (1.0 + expf(-x))
    }
}

fn validate_same_f32(v: &Validator, input: &TensorDef, output: &TensorDef) -> Result<()> {
    v.tensor(input, DType::F32)?;
    v.activation(output, DType::F32)?;
    v.disjoint(input, output)?;
    v.check(
        input.shape.elements() == output.shape.elements(),
        "input and output element counts differ",
    )
}

macro_rules! float_unary {
    ($ty:ident, $name:expr, $f:expr) => {
        impl Kernel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&self, v: &Validator) -> Result<()> {
                validate_same_f32(v, &self.input, &self.output)
            }
            fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
                let (ins, out) = t.split(&self.output)?;
                let input = ins.f32(&self.input)?;
                for (o, &x) in as_f32_mut(out)?.iter_mut().zip(input) {
                    *o = $f(x);
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
    };
}
float_unary!(LogisticF32, "LOGISTIC", logistic_f32);
float_unary!(TanhF32, "TANH", tanhf);

fn softmax_depth(input: &TensorDef, output: &TensorDef) -> Option<usize> {
    let depth = input.shape.last();
    (input.shape.rank() >= 1 && depth > 0 && input.shape == output.shape).then_some(depth)
}

impl Kernel for SoftmaxS8 {
    fn name(&self) -> &'static str {
        "SOFTMAX"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        v.tensor(&self.input, DType::I8)?;
        v.activation(&self.output, DType::I8)?;
        v.disjoint(&self.input, &self.output)?;
        v.constant(&self.table, DType::F32)?;
        v.elements(&self.table, 256, "softmax table must have 256 entries")?;
        v.check(
            softmax_depth(&self.input, &self.output).is_some(),
            "input and output shapes differ",
        )?;
        v.check(
            self.output_scale.is_finite() && self.output_scale > 0.0,
            "output scale must be positive",
        )?;
        v.check(
            (-128..=127).contains(&self.output_zero_point),
            "output zero point out of range",
        )
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let depth = softmax_depth(&self.input, &self.output).ok_or(crate::Error::Malformed {
            what: "softmax shapes",
        })?;
        let (ins, out) = t.split(&self.output)?;
        let table = ins.f32(&self.table)?;
        softmax_s8_reference(self, table, depth, ins.i8(&self.input)?, as_i8_mut(out));
        Ok(())
    }
    fn output(&self) -> &TensorDef {
        &self.output
    }
    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
        f(&self.table);
    }
}

impl Kernel for SoftmaxF32 {
    fn name(&self) -> &'static str {
        "SOFTMAX"
    }
    fn validate(&self, v: &Validator) -> Result<()> {
        validate_same_f32(v, &self.input, &self.output)?;
        v.check(
            softmax_depth(&self.input, &self.output).is_some(),
            "input and output shapes differ",
        )
    }
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let depth = softmax_depth(&self.input, &self.output).ok_or(crate::Error::Malformed {
            what: "softmax shapes",
        })?;
        let (ins, out) = t.split(&self.output)?;
        softmax_f32_reference(self.beta, depth, ins.f32(&self.input)?, as_f32_mut(out)?);
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

    fn softmax_params() -> SoftmaxS8 {
        let def = TensorDef {
            dtype: DType::I8,
            shape: Shape::new(&[1, 4]).unwrap(),
            location: Location::Arena(0),
            quant: None,
        };
        SoftmaxS8 {
            input: def.clone(),
            output: def.clone(),
            table: def,
            output_scale: 1.0 / 256.0,
            output_zero_point: -128,
        }
    }

    #[test]
    fn softmax_of_equal_inputs_is_uniform() {
        let table = softmax_exp_table(0.1, 1.0, f32::exp);
        for q in [-128i8, 0, 127] {
            let mut out = [0i8; 4];
            softmax_s8_reference(&softmax_params(), &table, 4, &[q; 4], &mut out);
            // 1/4 of 256 steps above -128.
            assert_eq!(out, [-64; 4]);
        }
    }

    #[test]
    fn softmax_saturates_a_dominant_input() {
        let table = softmax_exp_table(1.0, 1.0, f32::exp);
        let mut out = [0i8; 4];
        softmax_s8_reference(
            &softmax_params(),
            &table,
            4,
            &[127, -128, -128, -128],
            &mut out,
        );
        // p = 1.0 quantizes to 256 - 128 = 128, clamped to 127; exp(-255) is 0.
        assert_eq!(out, [127, -128, -128, -128]);
    }

    #[test]
    fn logistic_table_hits_known_points() {
        let q_in = QuantParams {
            scale: 0.1,
            zero_point: 0,
        };
        let q_out = QuantParams {
            scale: 1.0 / 256.0,
            zero_point: -128,
        };
        let table = lut_s8(q_in, q_out, |x| 1.0 / (1.0 + (-x).exp()));
        assert_eq!(table[0], 0); // sigmoid(0) = 0.5 -> 128 - 128
        assert_eq!(table[127], 127); // sigmoid(12.7) rounds to 256, clamped
        assert_eq!(table[(-128i8) as u8 as usize], -128);
        let mut out = [0i8; 3];
        lookup_s8_reference(&table, &[0, 127, -128], &mut out);
        assert_eq!(out, [0, 127, -128]);
    }

    #[test]
    fn tanh_table_is_odd_around_zero_point() {
        let q_in = QuantParams {
            scale: 0.01,
            zero_point: 0,
        };
        let q_out = QuantParams {
            scale: 1.0 / 128.0,
            zero_point: 0,
        };
        let table = lut_s8(q_in, q_out, f32::tanh);
        // Odd below saturation (at the top, +128 clamps to 127 but -128 does not).
        for q in 1..=100i8 {
            assert_eq!(
                table[q as u8 as usize] as i32,
                -(table[(-q) as u8 as usize] as i32)
            );
        }
    }

    #[test]
    fn float_logistic_cutoffs() {
        assert_eq!(logistic_f32(20.0), 1.0);
        assert_eq!(logistic_f32(-10.0), expf(-10.0));
        assert_eq!(logistic_f32(0.0), 0.5);
    }
}

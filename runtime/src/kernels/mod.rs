//! Operator kernels, one file per op family.
//!
//! Every op has a plain scalar reference that mirrors TFLite's reference kernel arithmetic.
//! Faster variants (Cortex-M DSP, SIMD) live beside it and are checked against it by
//! `kernel_variants_match_reference!` (`kernels/testing.rs`, test builds only).

use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Placeholder `Kernel` impl for an op whose kernel has not landed: it refuses to load.
#[allow(unused_macros)]
macro_rules! pending_kernel {
    ($ty:ty, $name:expr) => {
        impl Kernel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&self, v: &Validator) -> Result<()> {
                Err(v.fail("kernel not implemented in this build"))
            }
            fn eval(&self, _t: &mut Tensors<'_>) -> Result<()> {
                Err(crate::Error::Malformed {
                    what: "kernel not implemented",
                })
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

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod activations;
pub mod concat;
pub mod conv;
pub mod depthwise;
pub mod dsp;
pub mod elementwise;
pub mod fully_connected;
pub mod host_simd;
pub mod hybrid;
pub mod packed;
pub mod pad;
pub mod pooling;
pub mod quantize;
pub mod reduce;
pub mod reshape;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// What every operator's parameter struct provides to the loader and interpreter.
pub trait Kernel {
    /// The TFLite builtin name (`CONV_2D`, ...), for errors, `ember inspect` and profiles.
    fn name(&self) -> &'static str;
    /// Load-time checks: after this passes, `eval` cannot go out of bounds.
    fn validate(&self, v: &Validator) -> Result<()>;
    /// Runs the operator.
    fn eval(&self, t: &mut Tensors<'_>) -> Result<()>;
    /// The tensor the operator writes.
    fn output(&self) -> &TensorDef;
    /// Calls `f` for every input tensor (activations and constants), in TFLite's input order.
    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef));
    /// Multiply-accumulates per inference (0 for data movement ops).
    fn macs(&self) -> u64 {
        0
    }
}

/// `for_each_input` of the weighted ops (conv, depthwise, FC): input, weights, optional bias.
pub(crate) fn visit_weighted(
    input: &TensorDef,
    filter: &TensorDef,
    bias: &Option<TensorDef>,
    f: &mut dyn FnMut(&TensorDef),
) {
    f(input);
    f(filter);
    if let Some(b) = bias {
        f(b);
    }
}

/// Fused activation for float kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    None,
    Relu,
    ReluN1To1,
    Relu6,
}

impl Activation {
    /// The clamp range of the activation.
    pub fn range_f32(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::MIN, f32::MAX),
            Activation::Relu => (0.0, f32::MAX),
            Activation::ReluN1To1 => (-1.0, 1.0),
            Activation::Relu6 => (0.0, 6.0),
        }
    }

    #[inline(always)]
    pub fn apply_f32(self, x: f32) -> f32 {
        let (lo, hi) = self.range_f32();
        // TFLite's ActivationFunctionWithMinMax: min(max(x, lo), hi).
        let x = if x < lo { lo } else { x };
        if x > hi {
            hi
        } else {
            x
        }
    }
}

/// Spatial geometry shared by convolutions and pooling: strides, dilation, and the padding
/// before the first row/column (the converter resolves SAME/VALID into these numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub stride_h: u16,
    pub stride_w: u16,
    pub dilation_h: u16,
    pub dilation_w: u16,
    pub pad_top: u16,
    pub pad_left: u16,
}

impl Window {
    pub fn validate(&self, v: &Validator) -> Result<()> {
        v.check(
            self.stride_h > 0 && self.stride_w > 0,
            "stride must be positive",
        )?;
        v.check(
            self.dilation_h > 0 && self.dilation_w > 0,
            "dilation must be positive",
        )
    }
}

/// Int8 requantization of an accumulator: per-tensor (one entry) or per output channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Requant {
    /// Q31 multipliers, `I32` constant of 1 or `channels` elements.
    pub multipliers: TensorDef,
    /// Power-of-two exponents, same count as `multipliers`.
    pub shifts: TensorDef,
}

impl Requant {
    pub fn validate(&self, v: &Validator, channels: usize) -> Result<()> {
        use crate::tensor::DType;
        v.constant(&self.multipliers, DType::I32)?;
        v.constant(&self.shifts, DType::I32)?;
        let n = self.multipliers.elements();
        v.check(
            n == 1 || n == channels,
            "requantization needs one multiplier or one per channel",
        )?;
        v.check(
            self.shifts.elements() == n,
            "requantization multiplier and shift counts differ",
        )?;
        for &shift in v.const_i32(&self.shifts)? {
            v.shift(shift)?;
        }
        Ok(())
    }
}

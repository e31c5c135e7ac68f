//! QUANTIZE (float32 -> int8, int8 -> int8 requantize) and DEQUANTIZE (int8 -> float32).

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Float32 to int8: `q = clamp(round(x / scale) + zero_point)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeF32ToS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub scale: f32,
    pub zero_point: i32,
}

/// Int8 to int8 with a new scale/zero point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequantizeS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub input_zero_point: i32,
    pub output_zero_point: i32,
    pub multiplier: i32,
    pub shift: i32,
}

/// Int8 to float32: `x = scale * (q - zero_point)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DequantizeS8ToF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub scale: f32,
    pub zero_point: i32,
}

pending_kernel!(QuantizeF32ToS8, "QUANTIZE");
pending_kernel!(RequantizeS8, "QUANTIZE");
pending_kernel!(DequantizeS8ToF32, "DEQUANTIZE");

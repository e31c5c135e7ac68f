//! SOFTMAX, LOGISTIC and TANH, int8 (TFLite fixed-point reference arithmetic) and float32.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Int8 softmax over the last dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub input_multiplier: i32,
    pub input_left_shift: i32,
    pub diff_min: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub beta: f32,
}

/// Int8 LOGISTIC or TANH (fixed-point, `reference_integer_ops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub input_zero_point: i32,
    pub input_range_radius: i32,
    pub input_multiplier: i32,
    pub input_left_shift: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TanhS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub input_zero_point: i32,
    pub input_range_radius: i32,
    pub input_multiplier: i32,
    pub input_left_shift: i32,
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

pending_kernel!(SoftmaxS8, "SOFTMAX");
pending_kernel!(SoftmaxF32, "SOFTMAX");
pending_kernel!(LogisticS8, "LOGISTIC");
pending_kernel!(LogisticF32, "LOGISTIC");
pending_kernel!(TanhS8, "TANH");
pending_kernel!(TanhF32, "TANH");

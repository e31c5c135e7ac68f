//! MEAN over any set of axes, int8 and float32.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Int8 MEAN; the requantization from input to output scale (including the division by the
/// number of reduced elements where TFLite folds it in) is precomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanS8 {
    pub input: TensorDef,
    pub output: TensorDef,
    /// Bit `i` set: dimension `i` is reduced.
    pub axes_mask: u8,
    pub input_zero_point: i32,
    pub output_zero_point: i32,
    pub multiplier: i32,
    pub shift: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanF32 {
    pub input: TensorDef,
    pub output: TensorDef,
    pub axes_mask: u8,
}

pending_kernel!(MeanS8, "MEAN");
pending_kernel!(MeanF32, "MEAN");

//! CONV_2D: int8 per-channel, float32, hybrid.

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel, Requant, Window};
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Int8 convolution, NHWC input, OHWI filter, per-channel requantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dS8 {
    pub input: TensorDef,
    /// `[out_channels, kh, kw, in_channels / groups]`.
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    pub requant: Requant,
    pub act_min: i32,
    pub act_max: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub activation: Activation,
}

/// Int8 weights, float activations (dynamic-range quantization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dHybrid {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub filter_scales: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub activation: Activation,
    pub asymmetric_quantize_inputs: bool,
}

pending_kernel!(Conv2dS8, "CONV_2D");
pending_kernel!(Conv2dF32, "CONV_2D");
pending_kernel!(Conv2dHybrid, "CONV_2D");

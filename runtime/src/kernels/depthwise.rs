//! DEPTHWISE_CONV_2D: int8 per-channel (any depth multiplier), float32, hybrid.

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel, Requant, Window};
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Int8 depthwise convolution, NHWC input, 1HWC filter, per-channel requantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dS8 {
    pub input: TensorDef,
    /// `[1, kh, kw, in_channels * depth_multiplier]`.
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    pub requant: Requant,
    pub act_min: i32,
    pub act_max: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dF32 {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    pub activation: Activation,
}

/// Int8 weights, float activations (dynamic-range quantization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2dHybrid {
    pub input: TensorDef,
    pub filter: TensorDef,
    pub filter_scales: TensorDef,
    pub bias: Option<TensorDef>,
    pub output: TensorDef,
    pub window: Window,
    pub depth_multiplier: u16,
    pub activation: Activation,
    pub asymmetric_quantize_inputs: bool,
}

pending_kernel!(DepthwiseConv2dS8, "DEPTHWISE_CONV_2D");
pending_kernel!(DepthwiseConv2dF32, "DEPTHWISE_CONV_2D");
pending_kernel!(DepthwiseConv2dHybrid, "DEPTHWISE_CONV_2D");

//! AVERAGE_POOL_2D and MAX_POOL_2D, int8 and float32.

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel, Window};
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    Average,
    Max,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool2dS8 {
    pub kind: PoolKind,
    pub input: TensorDef,
    pub output: TensorDef,
    pub filter_h: u16,
    pub filter_w: u16,
    /// Dilation is always 1 for pooling.
    pub window: Window,
    pub act_min: i32,
    pub act_max: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool2dF32 {
    pub kind: PoolKind,
    pub input: TensorDef,
    pub output: TensorDef,
    pub filter_h: u16,
    pub filter_w: u16,
    pub window: Window,
    pub activation: Activation,
}

pending_kernel!(Pool2dS8, "AVERAGE_POOL_2D");
pending_kernel!(Pool2dF32, "AVERAGE_POOL_2D");

//! PAD (and PADV2 with a constant): any element type, up to 5-D.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::{TensorDef, MAX_RANK};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pad {
    pub input: TensorDef,
    pub output: TensorDef,
    /// `(before, after)` per dimension, same rank as the input.
    pub paddings: heapless::Vec<(u32, u32), MAX_RANK>,
    /// Fill value as the element's little-endian bytes (the zero point for int8, `0.0` for float).
    pub pad_value: [u8; 4],
}

pending_kernel!(Pad, "PAD");

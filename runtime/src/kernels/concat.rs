//! CONCATENATION along any axis, any element type (int8 requires equal quantization, which
//! the converter checks; otherwise it inserts a requantize first).

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel};
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Most inputs one CONCATENATION may have.
pub const MAX_CONCAT_INPUTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concatenation {
    pub inputs: heapless::Vec<TensorDef, MAX_CONCAT_INPUTS>,
    pub output: TensorDef,
    pub axis: u8,
    /// Fused activation, float only (TFLite allows it; int8 models carry None).
    pub activation: Activation,
}

impl Kernel for Concatenation {
    fn name(&self) -> &'static str {
        "CONCATENATION"
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
        for t in &self.inputs {
            f(t);
        }
    }
}

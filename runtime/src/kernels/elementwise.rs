//! ADD and MUL with numpy-style broadcasting, int8 and float32.

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel};
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// Int8 ADD (TFLite `reference_integer_ops::Add`): inputs rescaled to a common scale with
/// `left_shift` headroom, summed, rescaled to the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddS8 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub left_shift: i32,
    pub input1_offset: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_offset: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_offset: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// Int8 MUL (TFLite `reference_integer_ops::Mul`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulS8 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub input1_offset: i32,
    pub input2_offset: i32,
    pub output_offset: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryF32 {
    pub input1: TensorDef,
    pub input2: TensorDef,
    pub output: TensorDef,
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddF32(pub BinaryF32);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulF32(pub BinaryF32);

macro_rules! pending_binary {
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
                &self.0.output
            }
            fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
                f(&self.0.input1);
                f(&self.0.input2);
            }
        }
    };
}
pending_binary!(AddF32, "ADD");
pending_binary!(MulF32, "MUL");

impl Kernel for AddS8 {
    fn name(&self) -> &'static str {
        "ADD"
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
        f(&self.input1);
        f(&self.input2);
    }
}

impl Kernel for MulS8 {
    fn name(&self) -> &'static str {
        "MUL"
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
        f(&self.input1);
        f(&self.input2);
    }
}

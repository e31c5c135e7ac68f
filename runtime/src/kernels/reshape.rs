//! RESHAPE (and SQUEEZE/EXPAND_DIMS): the bytes do not change, only the shape.

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::tensor::TensorDef;

/// The planner places the output on the input when it can, making this a no-op; otherwise
/// it copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    pub input: TensorDef,
    pub output: TensorDef,
}

impl Kernel for Reshape {
    fn name(&self) -> &'static str {
        "RESHAPE"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        v.tensor(&self.input, self.input.dtype)?;
        v.activation(&self.output, self.input.dtype)?;
        v.check(
            self.input.byte_len() == self.output.byte_len(),
            "input and output sizes differ",
        )?;
        if self.input.location != self.output.location {
            v.disjoint(&self.input, &self.output)?;
        }
        Ok(())
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        if self.input.location == self.output.location {
            return Ok(());
        }
        let (ins, out) = t.split(&self.output)?;
        out.copy_from_slice(ins.get(&self.input)?);
        Ok(())
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
    }
}

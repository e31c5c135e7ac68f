//! CONCATENATION along any axis, any element type.
//!
//! TFLite's `concatenation.cc` Prepare rejects int8 inputs whose scale or zero point differ
//! from the output's, and any fused activation, so the kernel is a pure copy; the converter
//! must refuse (or insert a QUANTIZE before) inputs with other quantization.

use serde::{Deserialize, Serialize};

use super::{Activation, Kernel};
use crate::arena::{Tensors, Validator};
use crate::error::{Error, Result};
use crate::tensor::TensorDef;

/// Most inputs one CONCATENATION may have.
pub const MAX_CONCAT_INPUTS: usize = 8;

/// Converter: `axis` is TFLite's `ConcatenationOptions.axis` resolved to `0..rank` (negative
/// axes plus the rank). `activation` must be `None` (TFLite refuses others at Prepare).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concatenation {
    pub inputs: heapless::Vec<TensorDef, MAX_CONCAT_INPUTS>,
    pub output: TensorDef,
    pub axis: u8,
    /// Fused activation; TFLite only accepts `None`.
    pub activation: Activation,
}

impl Concatenation {
    /// `(outer, inner)`: elements before the axis and elements after it.
    fn outer_inner(&self) -> (usize, usize) {
        let dims = &self.output.shape.dims;
        let axis = self.axis as usize;
        let outer = dims.iter().take(axis).map(|&d| d as usize).product();
        let inner = dims.iter().skip(axis + 1).map(|&d| d as usize).product();
        (outer, inner)
    }
}

/// Scalar reference: for each outer index, each input's `axis_dim * inner` block in order.
/// `blocks[k]` is input k's bytes per outer step.
pub fn concatenation_reference(inputs: &[(&[u8], usize)], outer: usize, output: &mut [u8]) {
    let mut out = 0usize;
    for o in 0..outer {
        for &(data, block) in inputs {
            output[out..out + block].copy_from_slice(&data[o * block..(o + 1) * block]);
            out += block;
        }
    }
}

impl Kernel for Concatenation {
    fn name(&self) -> &'static str {
        "CONCATENATION"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        let dtype = self.output.dtype;
        v.activation(&self.output, dtype)?;
        v.check(!self.inputs.is_empty(), "no inputs")?;
        v.check(
            self.activation == Activation::None,
            "fused activation is not supported",
        )?;
        let rank = self.output.shape.rank();
        let axis = self.axis as usize;
        v.check(axis < rank, "axis out of range")?;
        let mut axis_total = 0usize;
        for input in &self.inputs {
            v.tensor(input, dtype)?;
            v.disjoint(input, &self.output)?;
            v.check(
                input.shape.rank() == rank,
                "input rank differs from the output's",
            )?;
            for d in 0..rank {
                if d != axis {
                    v.check(
                        input.shape.dim(d) == self.output.shape.dim(d),
                        "input shape differs off the axis",
                    )?;
                }
            }
            axis_total += input.shape.dim(axis);
            if let (Some(a), Some(b)) = (input.quant, self.output.quant) {
                v.check(a == b, "input quantization differs from the output's")?;
            }
        }
        v.check(
            axis_total == self.output.shape.dim(axis),
            "axis sizes do not add up to the output's",
        )
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let (outer, inner) = self.outer_inner();
        let elem = self.output.dtype.size();
        let axis = self.axis as usize;
        let (ins, out) = t.split(&self.output)?;
        let mut blocks: heapless::Vec<(&[u8], usize), MAX_CONCAT_INPUTS> = heapless::Vec::new();
        for input in &self.inputs {
            let block = input.shape.dim(axis) * inner * elem;
            blocks
                .push((ins.get(input)?, block))
                .map_err(|_| Error::Malformed {
                    what: "concatenation inputs",
                })?;
        }
        concatenation_reference(&blocks, outer, out);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_blocks_per_outer_index() {
        // [2, 1] ++ [2, 2] along axis 1.
        let mut out = [0u8; 6];
        concatenation_reference(&[(&[1, 2], 1), (&[3, 4, 5, 6], 2)], 2, &mut out);
        assert_eq!(out, [1, 3, 4, 2, 5, 6]);
    }
}

//! PAD (and PADV2 with a constant): any element type, up to 5-D (TFLite `reference_ops::Pad`).

use serde::{Deserialize, Serialize};

use super::Kernel;
use crate::arena::{Tensors, Validator};
use crate::error::{Error, Result};
use crate::tensor::{TensorDef, MAX_RANK};

/// Converter: `paddings` from the (constant) paddings tensor, one `(before, after)` per input
/// dimension (TFLite rejects negative paddings). `pad_value` holds the fill element's
/// little-endian bytes (first `dtype.size()` bytes used):
/// - PAD: int8 -> the **output** zero point (TFLite `pad.cc`); float32 -> `0.0`;
/// - PADV2: the constant-values tensor's single element copied raw (int8: its stored `q`,
///   not requantized; float32: its bits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pad {
    pub input: TensorDef,
    pub output: TensorDef,
    /// `(before, after)` per dimension, same rank as the input.
    pub paddings: heapless::Vec<(u32, u32), MAX_RANK>,
    /// Fill value as the element's little-endian bytes (the zero point for int8, `0.0` for float).
    pub pad_value: [u8; 4],
}

/// Input dims, output dims and per-dimension `before` padding, left-padded to [`MAX_RANK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadPlan {
    pub input_dims: [usize; MAX_RANK],
    pub output_dims: [usize; MAX_RANK],
    pub before: [usize; MAX_RANK],
}

impl Pad {
    pub fn plan(&self) -> Option<PadPlan> {
        let rank = self.input.shape.rank();
        if self.output.shape.rank() != rank || self.paddings.len() != rank || rank > MAX_RANK {
            return None;
        }
        let mut plan = PadPlan {
            input_dims: [1; MAX_RANK],
            output_dims: [1; MAX_RANK],
            before: [0; MAX_RANK],
        };
        for (i, &(before, after)) in self.paddings.iter().enumerate() {
            let k = MAX_RANK - rank + i;
            let in_dim = self.input.shape.dim(i);
            let out_dim = self.output.shape.dim(i);
            let expected = in_dim
                .checked_add(before as usize)?
                .checked_add(after as usize)?;
            if expected != out_dim {
                return None;
            }
            plan.input_dims[k] = in_dim;
            plan.output_dims[k] = out_dim;
            plan.before[k] = before as usize;
        }
        Some(plan)
    }
}

/// Scalar reference over raw elements of `elem` bytes: every output element is the input
/// element it maps to, or `pad_value` outside the input.
pub fn pad_reference(
    plan: &PadPlan,
    elem: usize,
    pad_value: &[u8],
    input: &[u8],
    output: &mut [u8],
) {
    let [o0, o1, o2, o3, o4] = plan.output_dims;
    let d = plan.input_dims;
    let b = plan.before;
    let inside = |i: usize, k: usize| i >= b[k] && i - b[k] < d[k];
    let mut out = 0usize;
    for i0 in 0..o0 {
        for i1 in 0..o1 {
            for i2 in 0..o2 {
                for i3 in 0..o3 {
                    for i4 in 0..o4 {
                        let dst = &mut output[out * elem..(out + 1) * elem];
                        if inside(i0, 0)
                            && inside(i1, 1)
                            && inside(i2, 2)
                            && inside(i3, 3)
                            && inside(i4, 4)
                        {
                            let src = (((((i0 - b[0]) * d[1] + (i1 - b[1])) * d[2] + (i2 - b[2]))
                                * d[3]
                                + (i3 - b[3]))
                                * d[4])
                                + (i4 - b[4]);
                            dst.copy_from_slice(&input[src * elem..(src + 1) * elem]);
                        } else {
                            dst.copy_from_slice(pad_value);
                        }
                        out += 1;
                    }
                }
            }
        }
    }
}

impl Kernel for Pad {
    fn name(&self) -> &'static str {
        "PAD"
    }

    fn validate(&self, v: &Validator) -> Result<()> {
        v.tensor(&self.input, self.input.dtype)?;
        v.activation(&self.output, self.input.dtype)?;
        v.disjoint(&self.input, &self.output)?;
        v.check(
            self.input.dtype.size() <= self.pad_value.len(),
            "element type too wide for the pad value",
        )?;
        v.check(
            self.plan().is_some(),
            "paddings do not turn the input shape into the output shape",
        )
    }

    fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        let plan = self.plan().ok_or(Error::Malformed { what: "pad shapes" })?;
        let elem = self.input.dtype.size();
        let pad_value = self
            .pad_value
            .get(..elem)
            .ok_or(Error::Malformed { what: "pad value" })?;
        let (ins, out) = t.split(&self.output)?;
        pad_reference(&plan, elem, pad_value, ins.get(&self.input)?, out);
        Ok(())
    }

    fn output(&self) -> &TensorDef {
        &self.output
    }

    fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
        f(&self.input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_2d_with_the_fill_value() {
        let plan = PadPlan {
            input_dims: [1, 1, 1, 2, 2],
            output_dims: [1, 1, 1, 3, 4],
            before: [0, 0, 0, 1, 1],
        };
        let mut out = [0u8; 12];
        pad_reference(&plan, 1, &[9], &[1, 2, 3, 4], &mut out);
        assert_eq!(out, [9, 9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9]);
    }
}

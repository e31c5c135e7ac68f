//! Tensor descriptions as stored in a model: element type, shape, where the bytes live.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Highest tensor rank a model may use.
pub const MAX_RANK: usize = 5;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DType {
    I8,
    I16,
    I32,
    F32,
}

impl DType {
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 | DType::F32 => 4,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F32 => "float32",
        }
    }
}

/// Dimensions, outermost first (NHWC for images).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Shape {
    pub dims: heapless::Vec<u32, MAX_RANK>,
}

impl Shape {
    /// Builds a shape; fails when `dims` has more than [`MAX_RANK`] entries.
    pub fn new(dims: &[u32]) -> Result<Shape> {
        let dims = heapless::Vec::from_slice(dims).map_err(|_| Error::LimitExceeded {
            what: "tensor dimensions",
            limit: MAX_RANK,
        })?;
        Ok(Shape { dims })
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Number of elements, `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }

    /// Dimension `i` counted from the outermost; dimensions past the rank read as 1.
    pub fn dim(&self, i: usize) -> usize {
        self.dims.get(i).map_or(1, |&d| d as usize)
    }

    /// The shape as 4-D NHWC, padding leading dimensions with 1 (TFLite's `RuntimeShape::ExtendedShape`).
    pub fn as_4d(&self) -> Option<[usize; 4]> {
        let rank = self.rank();
        if rank > 4 {
            return None;
        }
        let mut out = [1usize; 4];
        for (i, &d) in self.dims.iter().enumerate() {
            out[4 - rank + i] = d as usize;
        }
        Some(out)
    }

    /// The last dimension (channels for NHWC, features for FC), 1 for scalars.
    pub fn last(&self) -> usize {
        self.dims.last().map_or(1, |&d| d as usize)
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// Byte offset into the activation arena (planned by the converter).
    Arena(u32),
    /// Byte offset into the model's constant-data section (read in place, e.g. from flash).
    Const(u32),
}

/// Affine quantization of a whole tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// A tensor as an operator or the graph sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDef {
    pub dtype: DType,
    pub shape: Shape,
    pub location: Location,
    /// Per-tensor quantization for I/O and activations; `None` for float tensors and
    /// for constants whose kernel-ready parameters live in the operator instead.
    pub quant: Option<QuantParams>,
}

impl TensorDef {
    /// Bytes occupied, `None` on overflow.
    pub fn byte_len(&self) -> Option<usize> {
        self.shape.elements()?.checked_mul(self.dtype.size())
    }

    pub fn elements(&self) -> usize {
        self.shape.elements().unwrap_or(0)
    }

    pub fn is_const(&self) -> bool {
        matches!(self.location, Location::Const(_))
    }
}

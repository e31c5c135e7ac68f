//! Host conveniences (feature `std`): owned, aligned buffers and one-call inference.

extern crate alloc;
use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::model::{Model, PreparedModel, ARENA_ALIGN};

/// A byte buffer whose start is 16-byte aligned, for models and arenas on the host.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes {
            words: alloc::vec![0u128; len.div_ceil(16)],
            len,
        }
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

const _: () = assert!(core::mem::align_of::<u128>() >= ARENA_ALIGN || ARENA_ALIGN == 16);

/// Runs `model` once on `inputs` (raw little-endian tensor bytes, one slice per graph input)
/// and returns the raw bytes of every output.
pub fn run_once(model: &Model<'_>, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    run_once_with(model, inputs, |arena| model.run(arena))
}

/// [`run_once`] through a [`PreparedModel`] (operators decoded once): same bytes out.
pub fn run_prepared_once(prepared: &PreparedModel<'_>, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    run_once_with(prepared.model(), inputs, |arena| prepared.run(arena))
}

fn run_once_with(
    model: &Model<'_>,
    inputs: &[&[u8]],
    run: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<Vec<Vec<u8>>> {
    if inputs.len() != model.inputs().len() {
        return Err(Error::NoSuchTensor {
            index: inputs.len(),
            count: model.inputs().len(),
        });
    }
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    for (i, data) in inputs.iter().enumerate() {
        let dst = model.input_mut(arena.as_mut_slice(), i)?;
        if dst.len() != data.len() {
            return Err(Error::SizeMismatch {
                expected: dst.len(),
                actual: data.len(),
            });
        }
        dst.copy_from_slice(data);
    }
    run(arena.as_mut_slice())?;
    (0..model.outputs().len())
        .map(|i| Ok(model.output(arena.as_slice(), i)?.to_vec()))
        .collect()
}

//! ember's inference engine: load a `.emb` model from RAM or flash and run it on a static
//! arena, with integer arithmetic identical to TensorFlow Lite's reference kernels.
//!
//! `no_std`, and no allocator is needed to load or run a model. The `alloc` feature adds the
//! model writer used by the converter.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arena;
pub mod crc32;
pub mod error;
pub mod format;
pub mod frontend;
#[cfg(feature = "std")]
pub mod host;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod quant;
pub mod tensor;

pub use error::{Error, Result};
pub use model::{Model, Observer, ARENA_ALIGN};
pub use ops::Op;
pub use tensor::{DType, Location, QuantParams, Shape, TensorDef};

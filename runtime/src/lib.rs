//! ember's inference engine: load a `.emb` model from RAM or flash and run it on a static
//! arena, with integer arithmetic identical to TensorFlow Lite's reference kernels.
//!
//! `no_std`, and no allocator is needed to load or run a model. The `alloc` feature adds the
//! model writer used by the converter and `PreparedModel`, which decodes the operators once
//! for hosts that run a model many times ([`Model::run`] decodes each record as it runs it, so a
//! microcontroller's RAM never holds a decoded graph).
//!
//! # Choosing kernels
//!
//! Every kernel is compiled in by default (feature `all-kernels`). A firmware that knows its
//! models turns the defaults off and names what it needs: an operator's kernel is in the build
//! when its op feature (`conv2d`, `depthwise-conv2d`, `fully-connected`, `pool2d`, `add`, `mul`,
//! `pad`, `mean`, `reshape`, `concatenation`, `softmax`, `logistic`, `tanh`, `quantize`) and its
//! element-type feature (`int8`, `float`, `hybrid`; none for `pad`, `reshape`,
//! `concatenation`) are both on, e.g. the MLPerf Tiny keyword-spotting model needs
//! `conv2d, depthwise-conv2d, pool2d, reshape, fully-connected, softmax, int8`. The format is
//! the same in every build; a model that uses a left-out kernel fails in [`Model::load`] with
//! [`Error::OpNotEnabled`], which names the operator and the features that add it.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arena;
pub mod crc32;
pub mod decode;
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
#[cfg(feature = "alloc")]
pub use model::PreparedModel;
pub use model::{Model, Observer, ARENA_ALIGN};
pub use ops::Op;
pub use tensor::{DType, Location, QuantParams, Shape, TensorDef};

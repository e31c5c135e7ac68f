//! Device logic for ember boards, with no hardware in it: the board hands over a serial port,
//! a flash and some RAM, and calls [`Device::poll`] (or [`Device::receive`]) in its main loop.
//!
//! - Protocol: `ember-protocol` frames; every request gets exactly one reply; a retried request
//!   (same id, same bytes) gets the cached reply without running again.
//! - Models live in two flash slots. An upload writes the slot that is not running (erasing
//!   sector by sector as chunks arrive), and `UploadCommit` verifies the CRC-32 of the whole
//!   model as it sits in flash, loads it with `ember_runtime::Model::load`, and only then
//!   appends a boot record pointing at it ([`slots`]). Power lost at any point leaves either
//!   the old or the new model running (tested at every single flash operation).
//! - Inference runs from flash in place on the board's arena; streaming keeps a sliding window
//!   and runs the model every hop.
//!
//! # Panic policy for boards
//!
//! A board's `#[panic_handler]` should (1) write the panic message, truncated, with a magic
//! word and a consecutive-panic counter into a `.uninit` (no-init) RAM section, (2) log it
//! through defmt if present, and (3) reset the core (`SCB::sys_reset`). On the next boot the
//! board passes the message as [`BootOptions::last_panic`], so `Info` reports it to the host,
//! and clears the counter after the first request is served. If the counter reaches 2 the
//! board sets [`BootOptions::distrust_active`], which boots the other slot's model (the last
//! good one) without rewriting the boot record. Models never become active without passing
//! `Model::load`, so a panic points at a firmware bug, not at bad input.
#![cfg_attr(not(test), no_std)]

mod audio;
mod device;
pub mod flash;
mod log;
pub mod slots;

pub use audio::AudioFrontend;
pub use device::{
    BootOptions, Buffers, Clock, Device, DeviceConfig, Event, NoClock, SetupError, StreamFrontend,
};
pub use flash::{ModelFlash, SimFlash, SimFlashError};
pub use slots::{FlashLayout, LayoutError, Region};

/// TFLite names of the operators in the runtime's op table (a model using one whose kernel is
/// not finished is refused at upload, with the runtime's message).
pub const RUNTIME_OPS: &[&str] = &[
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "ADD",
    "MUL",
    "PAD",
    "MEAN",
    "RESHAPE",
    "CONCATENATION",
    "SOFTMAX",
    "LOGISTIC",
    "TANH",
    "QUANTIZE",
    "DEQUANTIZE",
];

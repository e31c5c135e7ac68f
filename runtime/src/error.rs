//! The one error type of the runtime: loading, validating and running a model.

use core::fmt;

/// Everything that can go wrong when a model is loaded or run.
///
/// Loading validates the whole model up front, so a model that loaded cleanly only fails at run
/// time on caller mistakes (an arena that is too small or misaligned, a wrong input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes end before the structure they describe does.
    Truncated { needed: usize, available: usize },
    /// The file does not start with the `.emb` magic: it is not an ember model.
    BadMagic,
    /// The file was written by a format version this runtime cannot read.
    UnsupportedVersion { found: u16, supported: u16 },
    /// The payload's CRC-32 does not match the header: the file is corrupted.
    ChecksumMismatch { expected: u32, actual: u32 },
    /// The header's lengths disagree with the file's length.
    LengthMismatch { header: usize, actual: usize },
    /// A section could not be decoded (postcard); `what` names it.
    Malformed { what: &'static str },
    /// The model buffer must start on a 4-byte boundary so constants can be read in place.
    MisalignedModel,
    /// An operator failed validation; `op_index` is its position in the graph.
    InvalidOp {
        op_index: u16,
        op: &'static str,
        reason: &'static str,
    },
    /// A graph input or output is invalid.
    InvalidIo { index: u16, reason: &'static str },
    /// The model needs more tensors, ranks or operators than this build supports.
    LimitExceeded { what: &'static str, limit: usize },
    /// The arena handed to `run` is smaller than the model's planned arena.
    ArenaTooSmall { needed: usize, available: usize },
    /// The arena must start on a 16-byte boundary.
    MisalignedArena,
    /// An input or output index past the model's inputs or outputs.
    NoSuchTensor { index: usize, count: usize },
    /// Caller data has the wrong number of bytes for the tensor.
    SizeMismatch { expected: usize, actual: usize },
    /// A metadata entry is malformed (labels, front-end configuration).
    BadMetadata { key: &'static str },
    /// The model uses an operator whose kernel this build leaves out: `op` names it
    /// (`"CONV_2D float32"`), `features` the `ember-runtime` cargo features that add it.
    OpNotEnabled {
        op: &'static str,
        features: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, available } => write!(
                f,
                "model truncated: needs {needed} bytes, only {available} present (incomplete copy or upload?)"
            ),
            Error::BadMagic => f.write_str("not an ember model (bad magic); convert .tflite files with `ember convert` first"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found} is not supported by this runtime (reads version {supported}); re-convert the model with a matching `ember`"
            ),
            Error::ChecksumMismatch { expected, actual } => write!(
                f,
                "model corrupted: CRC-32 is {actual:#010x}, header says {expected:#010x}"
            ),
            Error::LengthMismatch { header, actual } => {
                write!(f, "model length {actual} differs from the {header} bytes its header declares")
            }
            Error::Malformed { what } => write!(f, "malformed model: cannot decode {what}"),
            Error::MisalignedModel => f.write_str("model buffer must be 4-byte aligned"),
            Error::InvalidOp { op_index, op, reason } => {
                write!(f, "operator #{op_index} ({op}) is invalid: {reason}")
            }
            Error::InvalidIo { index, reason } => write!(f, "graph input/output #{index} is invalid: {reason}"),
            Error::LimitExceeded { what, limit } => {
                write!(f, "model exceeds this build's limit of {limit} {what}")
            }
            Error::ArenaTooSmall { needed, available } => {
                write!(f, "arena too small: model needs {needed} bytes, got {available}")
            }
            Error::MisalignedArena => f.write_str("arena must be 16-byte aligned"),
            Error::NoSuchTensor { index, count } => {
                write!(f, "tensor index {index} out of range (model has {count})")
            }
            Error::SizeMismatch { expected, actual } => {
                write!(f, "expected {expected} bytes of tensor data, got {actual}")
            }
            Error::BadMetadata { key } => write!(f, "model metadata entry `{key}` is malformed"),
            Error::OpNotEnabled { op, features } => write!(
                f,
                "model uses {op}, whose kernel this build leaves out; build ember-runtime with the cargo features {features}"
            ),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        // Keep the device-side format compact: the variant name and its numbers.
        match *self {
            Error::InvalidOp {
                op_index,
                op,
                reason,
            } => {
                defmt::write!(f, "InvalidOp(#{=u16} {=str}: {=str})", op_index, op, reason)
            }
            Error::ChecksumMismatch { expected, actual } => {
                defmt::write!(
                    f,
                    "ChecksumMismatch({=u32:#x} != {=u32:#x})",
                    actual,
                    expected
                )
            }
            Error::OpNotEnabled { op, features } => {
                defmt::write!(f, "OpNotEnabled({=str}, features {=str})", op, features)
            }
            _ => defmt::write!(f, "ember error"),
        }
    }
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

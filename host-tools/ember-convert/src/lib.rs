//! Converts TFLite flatbuffers into ember `.emb` models.
//!
//! The pipeline: read the FlatBuffer as untrusted input ([`flatbuffer`], [`tflite`]), fold
//! constant DEQUANTIZE ops into float weights, plan the activation arena ([`plan`]), compute
//! every kernel-ready parameter on the host exactly as TFLite's `Prepare` functions do
//! (`lower`), write the `.emb` with `ModelWriter`, and load the result as a self-check.

pub mod flatbuffer;
mod lower;
pub mod plan;
pub mod tflite;

use thiserror::Error;

pub use lower::Report;

/// Options for [`convert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Class labels stored in the model, in output order.
    pub labels: Vec<String>,
    /// Extra metadata records (key, value), e.g. the audio front-end configuration.
    pub metadata: Vec<(String, Vec<u8>)>,
}

/// Why a conversion failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The file is not a readable TFLite model (truncated, corrupted, or not a .tflite file).
    #[error(transparent)]
    Read(#[from] tflite::ReadError),
    /// An operator (or its data type / option) is not supported.
    #[error("operator #{index} ({op}): {reason}")]
    Unsupported {
        index: usize,
        op: String,
        reason: String,
    },
    /// The model is internally inconsistent (shapes, quantization, indices).
    #[error("invalid model: {0}")]
    Invalid(String),
    /// The model exceeds a limit of the `.emb` format or this converter.
    #[error("model too large: {0}")]
    TooLarge(String),
    /// Writing the `.emb` failed.
    #[error("cannot write the .emb model: {0}")]
    Write(ember_runtime::Error),
    /// The written model did not pass the runtime's own load-time validation (a converter bug).
    #[error("the converted model failed the runtime's load check: {0}")]
    SelfCheck(ember_runtime::Error),
}

/// The converted model and what the conversion did.
#[derive(Debug, Clone)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub report: Report,
}

/// Converts the bytes of a `.tflite` file into the bytes of a `.emb` model.
pub fn convert(tflite: &[u8], options: &ConvertOptions) -> Result<Vec<u8>, ConvertError> {
    convert_with_report(tflite, options).map(|c| c.bytes)
}

/// Like [`convert`], also returning a [`Report`] (arena size, folded ops, warnings).
pub fn convert_with_report(
    tflite: &[u8],
    options: &ConvertOptions,
) -> Result<Converted, ConvertError> {
    let model = tflite::read(tflite)?;
    let (bytes, mut report) = lower::lower(&model, options)?;
    self_check(&bytes, &mut report)?;
    Ok(Converted { bytes, report })
}

/// Loads the written model with the runtime. A kernel that has not landed in this build is
/// reported as a warning (the model itself is complete); anything else is a converter bug.
fn self_check(bytes: &[u8], report: &mut Report) -> Result<(), ConvertError> {
    let aligned = ember_runtime::host::AlignedBytes::from_slice(bytes);
    match ember_runtime::Model::load(aligned.as_slice()) {
        Ok(_) => Ok(()),
        Err(ember_runtime::Error::InvalidOp {
            op_index,
            op,
            reason: "kernel not implemented in this build",
        }) => {
            report.warnings.push(format!(
                "operator #{op_index} ({op}): this build of ember-runtime has no kernel for it yet; the model was written but cannot run here"
            ));
            Ok(())
        }
        Err(e) => Err(ConvertError::SelfCheck(e)),
    }
}

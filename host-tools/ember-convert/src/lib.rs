//! Converts TFLite flatbuffers into ember `.emb` models.

use thiserror::Error;

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
    #[error("not implemented yet")]
    NotImplemented,
}

/// Converts the bytes of a `.tflite` file into the bytes of a `.emb` model.
pub fn convert(_tflite: &[u8], _options: &ConvertOptions) -> Result<Vec<u8>, ConvertError> {
    Err(ConvertError::NotImplemented)
}

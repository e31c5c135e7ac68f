//! The audio front end for streaming: 16-bit PCM windows in, the model's int8 features out,
//! configured by the `frontend` record the converter stored in the running model.

use ember_runtime::format::meta_keys;
use ember_runtime::frontend::{Frontend, FrontendConfig};
use ember_runtime::{DType, Model};

use crate::device::StreamFrontend;

/// Runs `ember_runtime::frontend` on each stream window. Applies to every model that carries
/// a front-end configuration; the tables are rebuilt per window from the model's own
/// configuration, so a newly flashed model with other settings works without a reboot.
pub struct AudioFrontend<'w> {
    /// At least `FrontendConfig::workspace_len()` floats for the largest configuration served.
    workspace: &'w mut [f32],
    /// At least `FrontendConfig::feature_len()` floats.
    features: &'w mut [f32],
}

impl core::fmt::Debug for AudioFrontend<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AudioFrontend")
            .field("workspace", &self.workspace.len())
            .field("features", &self.features.len())
            .finish()
    }
}

impl<'w> AudioFrontend<'w> {
    pub fn new(workspace: &'w mut [f32], features: &'w mut [f32]) -> Self {
        AudioFrontend {
            workspace,
            features,
        }
    }
}

fn config_of(model: &Model<'_>) -> Option<FrontendConfig> {
    FrontendConfig::from_metadata(model.metadata(meta_keys::FRONTEND)?).ok()
}

impl StreamFrontend for AudioFrontend<'_> {
    fn sample_bytes(&self, model: &Model<'_>) -> Option<usize> {
        config_of(model).map(|_| 2)
    }

    fn prepare(
        &mut self,
        model: &Model<'_>,
        window: &[u8],
        input: &mut [u8],
    ) -> Result<(), &'static str> {
        let config = config_of(model).ok_or("model has no front-end configuration")?;
        let input_def = model.inputs().first().ok_or("model has no input")?;
        let quant = match (input_def.dtype, input_def.quant) {
            (DType::I8, Some(q)) => q,
            _ => return Err("front end needs a quantized int8 model input"),
        };
        let feature_len = config.feature_len();
        if input.len() != feature_len {
            return Err("front-end feature count differs from the model input");
        }
        let features = self
            .features
            .get_mut(..feature_len)
            .ok_or("front-end feature buffer too small")?;
        let mut frontend =
            Frontend::new(&config, self.workspace).map_err(|_| "front-end workspace too small")?;
        let samples = window.len() / 2;
        let sample = |i: usize| i16::from_le_bytes([window[2 * i], window[2 * i + 1]]);
        frontend
            .process_samples_quantized(samples, sample, quant, features, bytemuck_i8(input))
            .map_err(|_| "front end failed")
    }
}

fn bytemuck_i8(bytes: &mut [u8]) -> &mut [i8] {
    ember_runtime::arena::as_i8_mut(bytes)
}

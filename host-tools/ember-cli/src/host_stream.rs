//! `ember stream --host`: the board's sliding-window stream, run by the runtime on this machine.
//!
//! It mirrors the firmware's `stream_data` (firmware/src/device.rs) step for step: samples fill a
//! window; each full window becomes the model's input (through the model's audio front end when
//! it has one, else byte for byte), the model runs, and the window slides by the hop. So a demo
//! without a board predicts what the board would, window for window.

use std::time::Instant;

use anyhow::{bail, Context};
use ember_runtime::format::meta_keys;
use ember_runtime::frontend::{Frontend, FrontendConfig};
use ember_runtime::host::AlignedBytes;
use ember_runtime::{DType, Model, PreparedModel, QuantParams};

/// One inference of a host stream.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInference {
    pub output: Vec<u8>,
    /// Samples received when the window completed.
    pub end_sample: u64,
    /// Front end plus model, on this machine.
    pub micros: f64,
}

/// The audio front end's configuration and buffers, for models that carry one.
struct AudioPath {
    config: FrontendConfig,
    quant: QuantParams,
    workspace: Vec<f32>,
    features: Vec<f32>,
}

/// A stream into a model held in memory.
pub struct HostStream<'m> {
    model: &'m Model<'m>,
    /// The model with its operators decoded (and weights packed) once: a stream runs it for
    /// every window.
    prepared: PreparedModel<'m>,
    arena: AlignedBytes,
    audio: Option<AudioPath>,
    window: Vec<u8>,
    filled: usize,
    hop_bytes: usize,
    sample_bytes: usize,
    /// Samples consumed so far.
    samples: u64,
}

impl<'m> HostStream<'m> {
    /// A stream of `window` samples sliding by `hop`, with the board's rules: audio models take
    /// 16-bit PCM through their front end; any other model takes windows that are exactly its
    /// single input.
    pub fn new(model: &'m Model<'m>, window: u32, hop: u32) -> anyhow::Result<Self> {
        let input = model.inputs().first().context("the model has no input")?;
        let audio = match model.metadata(meta_keys::FRONTEND) {
            Some(meta) => {
                let config = FrontendConfig::from_metadata(meta)
                    .map_err(|e| anyhow::anyhow!("bad front-end record: {e}"))?;
                let quant = match (input.dtype, input.quant) {
                    (DType::I8, Some(q)) => q,
                    _ => bail!("the model's front end needs a quantized int8 model input"),
                };
                if input.elements() != config.feature_len() {
                    bail!(
                        "the front end makes {} features but the model input holds {}",
                        config.feature_len(),
                        input.elements()
                    );
                }
                Some(AudioPath {
                    workspace: vec![0.0; config.workspace_len()],
                    features: vec![0.0; config.feature_len()],
                    config,
                    quant,
                })
            }
            None => None,
        };
        let sample_bytes = if audio.is_some() {
            2
        } else {
            input.dtype.size()
        };
        if hop == 0 || hop > window {
            bail!("the hop must be between 1 and the window length ({window} samples)");
        }
        let window_bytes = (window as usize)
            .checked_mul(sample_bytes)
            .context("window too large")?;
        if audio.is_none() && (model.inputs().len() != 1 || input.byte_len() != Some(window_bytes))
        {
            bail!(
                "without a front end the window must equal the model's single input ({} samples), not {window}",
                input.elements()
            );
        }
        Ok(HostStream {
            model,
            prepared: PreparedModel::new(model.clone())
                .map_err(|e| anyhow::anyhow!("cannot prepare the model: {e}"))?,
            arena: AlignedBytes::zeroed(model.arena_size()),
            audio,
            window: vec![0; window_bytes],
            filled: 0,
            hop_bytes: hop as usize * sample_bytes,
            sample_bytes,
            samples: 0,
        })
    }

    /// Bytes per sample this stream expects.
    pub fn sample_bytes(&self) -> usize {
        self.sample_bytes
    }

    /// Feeds whole samples; returns the inferences whose windows completed.
    pub fn push(&mut self, samples: &[u8]) -> anyhow::Result<Vec<HostInference>> {
        if !samples.len().is_multiple_of(self.sample_bytes) {
            bail!(
                "data is not a whole number of {}-byte samples",
                self.sample_bytes
            );
        }
        let mut inferences = Vec::new();
        let mut consumed = 0;
        while consumed < samples.len() {
            let n = (self.window.len() - self.filled).min(samples.len() - consumed);
            self.window[self.filled..self.filled + n]
                .copy_from_slice(&samples[consumed..consumed + n]);
            self.filled += n;
            consumed += n;
            if self.filled < self.window.len() {
                continue;
            }
            let started = Instant::now();
            self.prepare_input()?;
            self.prepared
                .run(self.arena.as_mut_slice())
                .map_err(|e| anyhow::anyhow!("inference failed: {e}"))?;
            let micros = started.elapsed().as_secs_f64() * 1e6;
            let output = self
                .model
                .output(self.arena.as_slice(), 0)
                .map_err(|e| anyhow::anyhow!("cannot read the output: {e}"))?
                .to_vec();
            inferences.push(HostInference {
                output,
                end_sample: self.samples + (consumed / self.sample_bytes) as u64,
                micros,
            });
            self.window.copy_within(self.hop_bytes.., 0);
            self.filled -= self.hop_bytes;
        }
        self.samples += (samples.len() / self.sample_bytes) as u64;
        Ok(inferences)
    }

    fn prepare_input(&mut self) -> anyhow::Result<()> {
        let input = self
            .model
            .input_mut(self.arena.as_mut_slice(), 0)
            .map_err(|e| anyhow::anyhow!("cannot place the input: {e}"))?;
        match &mut self.audio {
            Some(audio) => {
                let window = &self.window;
                let sample = |i: usize| i16::from_le_bytes([window[2 * i], window[2 * i + 1]]);
                let mut frontend = Frontend::new(&audio.config, &mut audio.workspace)
                    .map_err(|e| anyhow::anyhow!("cannot set up the front end: {e}"))?;
                frontend
                    .process_samples_quantized(
                        window.len() / 2,
                        sample,
                        audio.quant,
                        &mut audio.features,
                        ember_runtime::arena::as_i8_mut(input),
                    )
                    .map_err(|e| anyhow::anyhow!("the front end rejected the window: {e}"))
            }
            None => {
                input.copy_from_slice(&self.window);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_runtime::format::ModelWriter;
    use ember_runtime::kernels::reshape::Reshape;
    use ember_runtime::{Location, Op, Shape, TensorDef};

    /// A model whose output is its 4-element int8 input (RESHAPE [4] -> [1, 4]), so the
    /// stream's windows can be read back from the outputs.
    fn echo_model() -> AlignedBytes {
        let tensor = |dims: &[u32], at| TensorDef {
            dtype: DType::I8,
            shape: Shape::new(dims).unwrap(),
            location: Location::Arena(at),
            quant: None,
        };
        let mut w = ModelWriter::new();
        w.arena_size = 32;
        w.inputs.push(tensor(&[4], 0));
        w.outputs.push(tensor(&[1, 4], 16));
        w.ops.push(Op::Reshape(Reshape {
            input: tensor(&[4], 0),
            output: tensor(&[1, 4], 16),
        }));
        AlignedBytes::from_slice(&w.finish().unwrap())
    }

    #[test]
    fn windows_slide_by_the_hop_like_the_board() {
        let bytes = echo_model();
        let model = Model::load(bytes.as_slice()).unwrap();
        let mut stream = HostStream::new(&model, 4, 2).unwrap();
        let mut outputs = Vec::new();
        for chunk in [&[1u8, 2, 3][..], &[4, 5], &[6, 7, 8, 9]] {
            outputs.extend(stream.push(chunk).unwrap());
        }
        let got: Vec<(Vec<u8>, u64)> = outputs
            .into_iter()
            .map(|i| (i.output, i.end_sample))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![1, 2, 3, 4], 4),
                (vec![3, 4, 5, 6], 6),
                (vec![5, 6, 7, 8], 8)
            ]
        );
    }

    #[test]
    fn wrong_window_for_a_model_without_front_end_is_an_error() {
        let bytes = echo_model();
        let model = Model::load(bytes.as_slice()).unwrap();
        let err = HostStream::new(&model, 5, 5).err().unwrap().to_string();
        assert!(err.contains("must equal the model's single input"), "{err}");
        assert!(HostStream::new(&model, 4, 0).is_err());
        assert!(HostStream::new(&model, 4, 5).is_err());
    }
}

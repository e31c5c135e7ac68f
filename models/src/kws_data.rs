//! Keyword-spotting features: places each synthesized word at a random offset in a 1 s clip,
//! mixes background noise at a random SNR, and runs ember's own audio front end
//! (`FrontendConfig::mlperf_kws`), so training sees exactly the features the device computes.

use std::path::Path;

use ember_runtime::frontend::{Frontend, FrontendConfig, Wav};

use crate::rng::Rng;
use crate::table::{Example, Table};

/// Output order of the MLPerf Tiny KWS model (and of the `labels` metadata).
pub const LABELS: [&str; 12] = [
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
];
pub const CLIP_SAMPLES: usize = 16000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KwsDataError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadInput { path: String, reason: String },
    #[error("front end: {0:?}")]
    Frontend(ember_runtime::frontend::FrontendError),
}

/// Reads a 16-bit mono WAV into samples.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, KwsDataError> {
    let bytes = std::fs::read(path).map_err(|source| KwsDataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let wav = Wav::parse(&bytes).map_err(|e| KwsDataError::BadInput {
        path: path.display().to_string(),
        reason: format!("{e:?}"),
    })?;
    Ok(wav.samples().collect())
}

/// Runs the MLPerf KWS front end over one clip (float features, 49 x 10, frame-major).
#[derive(Debug)]
pub struct Features {
    config: FrontendConfig,
    workspace: Vec<f32>,
}

impl Default for Features {
    fn default() -> Self {
        let config = FrontendConfig::mlperf_kws();
        Features {
            workspace: vec![0.0; config.workspace_len()],
            config,
        }
    }
}

impl Features {
    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    pub fn compute(&mut self, clip: &[i16]) -> Result<Vec<f32>, KwsDataError> {
        let mut frontend =
            Frontend::new(&self.config, &mut self.workspace).map_err(KwsDataError::Frontend)?;
        let mut out = vec![0.0; self.config.feature_len()];
        frontend
            .process_clip(clip, &mut out)
            .map_err(KwsDataError::Frontend)?;
        Ok(out)
    }
}

fn rms(samples: &[f32]) -> f32 {
    let energy: f32 = samples.iter().map(|s| s * s).sum();
    (energy / samples.len().max(1) as f32).sqrt()
}

/// Word placed at `offset`, plus noise at `snr_db` (None: clean), as 16-bit samples.
fn mix(word: &[i16], offset: usize, noise: Option<(&[f32], f32)>, gain: f32) -> Vec<i16> {
    let mut clip = vec![0f32; CLIP_SAMPLES];
    let word: Vec<f32> = word.iter().map(|&s| s as f32).collect();
    for (i, &s) in word.iter().enumerate() {
        if let Some(slot) = clip.get_mut(offset + i) {
            *slot = s * gain;
        }
    }
    if let Some((noise, snr_db)) = noise {
        let speech_rms = rms(&word) * gain;
        let noise_rms = rms(noise).max(1e-3);
        let scale = speech_rms / noise_rms / 10f32.powf(snr_db / 20.0);
        for (slot, n) in clip.iter_mut().zip(noise) {
            *slot += n * scale;
        }
    }
    clip.iter()
        .map(|&s| s.clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn noise_segment(bank: &[Vec<f32>], rng: &mut Rng) -> Vec<f32> {
    let source = &bank[rng.below(bank.len())];
    let start = rng.below(source.len().saturating_sub(CLIP_SAMPLES) + 1);
    let mut segment: Vec<f32> = source
        .iter()
        .skip(start)
        .take(CLIP_SAMPLES)
        .copied()
        .collect();
    segment.resize(CLIP_SAMPLES, 0.0);
    segment
}

/// Settings of one `kws-data` run.
#[derive(Debug, Clone)]
pub struct KwsDataOptions {
    pub seed: u64,
    /// Augmented copies of each training clip.
    pub train_copies: usize,
}

/// Builds the feature table from `<dir>/manifest.csv`, `<dir>/clips`, `<dir>/noise`.
pub fn build(dir: &Path, options: &KwsDataOptions) -> Result<Table, KwsDataError> {
    let mut rng = Rng::new(options.seed);
    let manifest_path = dir.join("manifest.csv");
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|source| KwsDataError::Io {
        path: manifest_path.display().to_string(),
        source,
    })?;
    let mut noise_files: Vec<_> = std::fs::read_dir(dir.join("noise"))
        .map_err(|source| KwsDataError::Io {
            path: dir.join("noise").display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    noise_files.sort();
    let mut bank = Vec::new();
    for path in &noise_files {
        bank.push(
            read_wav(path)?
                .iter()
                .map(|&s| s as f32)
                .collect::<Vec<f32>>(),
        );
    }
    if bank.is_empty() {
        return Err(KwsDataError::BadInput {
            path: dir.display().to_string(),
            reason: "no noise files".into(),
        });
    }
    let mut features = Features::default();
    let mut table = Table {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        shape: vec![49, 10],
        examples: Vec::new(),
    };
    let rows: Vec<&str> = manifest.lines().skip(1).collect();
    let progress = indicatif::ProgressBar::new(rows.len() as u64);
    let mut per_split: std::collections::BTreeMap<String, usize> = Default::default();
    for row in rows {
        progress.inc(1);
        let fields: Vec<&str> = row.split(',').collect();
        let [path, label, split, voice] = fields[..] else {
            continue;
        };
        let Some(label) = LABELS.iter().position(|l| *l == label) else {
            continue;
        };
        // A clip the synthesizer failed on (or left half-written) is skipped, not fatal.
        let Ok(mut word) = read_wav(&dir.join(path)) else {
            continue;
        };
        if word.len() < 800 {
            continue;
        }
        if word.len() > CLIP_SAMPLES {
            let start = (word.len() - CLIP_SAMPLES) / 2;
            word = word[start..start + CLIP_SAMPLES].to_vec();
        }
        let slack = CLIP_SAMPLES - word.len();
        let copies = match split {
            "train" => options.train_copies,
            "val" => 1,
            _ => 2,
        };
        *per_split.entry(split.to_owned()).or_default() += copies;
        for copy in 0..copies {
            let (offset, noise, gain) = if split.starts_with("test") && copy == 0 {
                // First test copy: clean and centred.
                (slack / 2, None, 1.0)
            } else {
                let offset = rng.below(slack + 1);
                let snr = [None, Some(20.0), Some(10.0), Some(5.0)][rng.below(4)];
                let segment = noise_segment(&bank, &mut rng);
                let gain = rng.uniform(0.3, 1.0);
                (offset, snr.map(|s| (segment, s)), gain)
            };
            let clip = mix(
                &word,
                offset,
                noise.as_ref().map(|(seg, snr)| (seg.as_slice(), *snr)),
                gain,
            );
            table.examples.push(Example {
                label,
                split: split.to_owned(),
                source: voice.to_owned(),
                features: features.compute(&clip)?,
            });
        }
    }
    progress.finish_and_clear();
    // Silence: noise alone at random levels (some near digital silence), as many per split as
    // an average keyword gets.
    let silence = LABELS.len() - 2;
    for (split, count) in per_split {
        for _ in 0..count / 11 {
            let segment = noise_segment(&bank, &mut rng);
            let level = 10f32.powf(rng.uniform(-3.5, 0.0));
            let clip: Vec<i16> = segment.iter().map(|&s| (s * level) as i16).collect();
            table.examples.push(Example {
                label: silence,
                split: split.clone(),
                source: "noise".into(),
                features: features.compute(&clip)?,
            });
        }
    }
    Ok(table)
}

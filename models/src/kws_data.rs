//! Keyword-spotting features: turns each synthesized word into one-second clips that sound
//! recorded (speed/pitch, channel EQ, reverberation, random placement, background noise from 3
//! to 50 dB SNR, faint unrelated events, level, clipping, DC; see [`augment`]) and runs ember's
//! own audio front end (`FrontendConfig::mlperf_kws`), so training sees exactly the features
//! the device computes. Held-out test clips keep the original simple augmentation.

use std::path::Path;

use ember_runtime::frontend::{Frontend, FrontendConfig, Wav};

use crate::rng::Rng;
use crate::table::{Example, Table};

pub mod augment;
use augment::rms;

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

/// Word placed at `offset` (scaled by `gain`), plus noise at `snr_db` (None: clean).
fn mix(word: &[f32], offset: usize, noise: Option<(&[f32], f32)>, gain: f32) -> Vec<f32> {
    let mut clip = vec![0f32; CLIP_SAMPLES];
    for (slot, &s) in clip.iter_mut().skip(offset).zip(word) {
        *slot = s * gain;
    }
    if let Some((noise, snr_db)) = noise {
        let speech_rms = rms(word) * gain;
        let noise_rms = rms(noise).max(1e-3);
        let scale = speech_rms / noise_rms / 10f32.powf(snr_db / 20.0);
        for (slot, n) in clip.iter_mut().zip(noise) {
            *slot += n * scale;
        }
    }
    clip
}

fn to_i16(clip: &[f32]) -> Vec<i16> {
    clip.iter()
        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
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

/// Keeps the middle `CLIP_SAMPLES` of a word that grew past one second.
fn fit(mut word: Vec<f32>) -> Vec<f32> {
    if word.len() > CLIP_SAMPLES {
        let start = (word.len() - CLIP_SAMPLES) / 2;
        word = word[start..start + CLIP_SAMPLES].to_vec();
    }
    word
}

/// The held-out splits' augmented copy (unchanged since the first model, so test numbers stay
/// comparable): random offset and gain, bank noise at 20/10/5 dB SNR or none.
fn basic_clip(word: &[f32], bank: &[Vec<f32>], rng: &mut Rng) -> Vec<i16> {
    let offset = rng.below(CLIP_SAMPLES - word.len() + 1);
    let snr = [None, Some(20.0), Some(10.0), Some(5.0)][rng.below(4)];
    let segment = noise_segment(bank, rng);
    let gain = rng.uniform(0.3, 1.0);
    to_i16(&mix(
        word,
        offset,
        snr.map(|s| (segment.as_slice(), s)),
        gain,
    ))
}

/// Training copy: the word as a microphone in a room would hear it. Speed/pitch, channel EQ,
/// reverberation, a random place in the second, background noise from 3 to 50 dB SNR (real
/// recordings are never digitally silent around the word), a faint unrelated event (click,
/// breath), level, clipping and DC offset.
fn training_clip(word: &[f32], bank: &[Vec<f32>], rng: &mut Rng) -> Vec<i16> {
    let mut word = if rng.unit() < 0.8 {
        augment::change_speed(word, rng.uniform(0.85, 1.15))
    } else {
        word.to_vec()
    };
    if rng.unit() < 0.3 {
        let rt60 = rng.uniform(0.1, 0.6);
        let wet = rng.uniform(0.1, 0.5);
        word = augment::reverb(&word, rng, rt60, wet, 200);
    }
    augment::random_eq(&mut word, rng);
    let word = fit(word);
    let offset = rng.below(CLIP_SAMPLES - word.len() + 1);
    let background = if rng.unit() < 0.1 {
        None
    } else {
        let mut segment = noise_segment(bank, rng);
        if rng.unit() < 0.5 {
            augment::random_eq(&mut segment, rng);
        }
        Some((segment, rng.uniform(3.0, 50.0)))
    };
    let mut clip = mix(
        &word,
        offset,
        background.as_ref().map(|(seg, snr)| (seg.as_slice(), *snr)),
        1.0,
    );
    if rng.unit() < 0.25 {
        add_event(&mut clip, rms(&word), rng);
    }
    // Level relative to full scale; sometimes overdriven into clipping.
    let peak = clip.iter().fold(1f32, |m, s| m.max(s.abs()));
    let mut level = 10f32.powf(rng.uniform(-1.5, 0.0)) * 32767.0 / peak;
    if rng.unit() < 0.1 {
        level *= rng.uniform(1.2, 3.0);
    }
    let dc = if rng.unit() < 0.3 {
        rng.uniform(-150.0, 150.0)
    } else {
        0.0
    };
    let dither = rng.uniform(0.5, 4.0);
    for s in &mut clip {
        // Analog floor: a microphone always hears a little hiss.
        *s = *s * level + dc + dither * (rng.unit() - 0.5);
    }
    to_i16(&clip)
}

/// A short burst of coloured noise (a click, a breath, a knock) 10 to 35 dB below the word.
fn add_event(clip: &mut [f32], word_rms: f32, rng: &mut Rng) {
    let len = 320 + rng.below(1600);
    let mut burst: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
    augment::random_eq(&mut burst, rng);
    let fade = |i: usize| (std::f32::consts::PI * i as f32 / len as f32).sin();
    let gain =
        word_rms / augment::rms(&burst).max(1e-6) / 10f32.powf(rng.uniform(10.0, 35.0) / 20.0);
    let start = rng.below(CLIP_SAMPLES - len);
    for (i, (slot, b)) in clip.iter_mut().skip(start).zip(&burst).enumerate() {
        *slot += b * gain * fade(i);
    }
}

/// Training silence: coloured (randomly equalized) noise at a random level, or a nearly
/// digital-silent input of a few LSB of hiss.
fn training_silence(bank: &[Vec<f32>], rng: &mut Rng) -> Vec<i16> {
    let mut segment = if rng.unit() < 0.2 {
        (0..CLIP_SAMPLES)
            .map(|_| rng.uniform(-1.0, 1.0) * 4000.0)
            .collect()
    } else {
        noise_segment(bank, rng)
    };
    if rng.unit() < 0.7 {
        augment::random_eq(&mut segment, rng);
    }
    let peak = segment.iter().fold(1f32, |m, s| m.max(s.abs()));
    let level = 10f32.powf(rng.uniform(-3.8, 0.0)) * 32767.0 / peak;
    let dc = if rng.unit() < 0.3 {
        rng.uniform(-100.0, 100.0)
    } else {
        0.0
    };
    segment.iter_mut().for_each(|s| *s = *s * level + dc);
    to_i16(&segment)
}

/// SpecAugment-style masking of one frame-major MFCC example (`coeffs` values per frame), for
/// training: up to two runs of up to 6 frames become the clip's quietest frame (a word heard
/// with a gap, or shorter), and half the time one of coefficients 1..coeffs is zeroed (a
/// spectral shape the network must not rely on alone). Values stay on the int8 input grid.
pub fn spec_augment(features: &mut [f32], coeffs: usize, rng: &mut Rng) {
    let frames = features.len() / coeffs.max(1);
    if frames == 0 || coeffs < 2 {
        return;
    }
    let quietest = (0..frames)
        .min_by(|&a, &b| features[a * coeffs].total_cmp(&features[b * coeffs]))
        .unwrap_or(0);
    let floor: Vec<f32> = features[quietest * coeffs..(quietest + 1) * coeffs].to_vec();
    for _ in 0..rng.below(3) {
        let width = 1 + rng.below(6);
        let start = rng.below(frames.saturating_sub(width) + 1);
        for frame in start..(start + width).min(frames) {
            features[frame * coeffs..(frame + 1) * coeffs].copy_from_slice(&floor);
        }
    }
    if rng.unit() < 0.5 {
        let coefficient = 1 + rng.below(coeffs - 1);
        for frame in 0..frames {
            features[frame * coeffs + coefficient] = 0.0;
        }
    }
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
        let Ok(word) = read_wav(&dir.join(path)) else {
            continue;
        };
        if word.len() < 800 {
            continue;
        }
        let word = fit(word.iter().map(|&s| s as f32).collect());
        let copies = match split {
            "train" => options.train_copies,
            "val" => 1,
            _ => 2,
        };
        *per_split.entry(split.to_owned()).or_default() += copies;
        let held_out = split.starts_with("test");
        for copy in 0..copies {
            let clip = match (held_out, copy) {
                // First test copy: clean and centred.
                (true, 0) => to_i16(&mix(&word, (CLIP_SAMPLES - word.len()) / 2, None, 1.0)),
                (true, _) => basic_clip(&word, &bank, &mut rng),
                (false, _) => training_clip(&word, &bank, &mut rng),
            };
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
            let clip = if split.starts_with("test") {
                let segment = noise_segment(&bank, &mut rng);
                let level = 10f32.powf(rng.uniform(-3.5, 0.0));
                segment.iter().map(|&s| (s * level) as i16).collect()
            } else {
                training_silence(&bank, &mut rng)
            };
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

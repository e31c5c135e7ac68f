//! Audio front end: framing, window, real FFT, mel filter bank, log, DCT-II (MFCC) and
//! quantization to a model's int8 input — float32, no heap, the same code on the host and on
//! the device.
//!
//! The default arithmetic reproduces TensorFlow's `tf.signal` pipeline as used by the MLPerf
//! Tiny keyword-spotting benchmark ([`FrontendConfig::mlperf_kws`]); see `docs/FRONTEND.md`.
//!
//! Memory: a [`Frontend`] borrows one caller-provided `f32` workspace of
//! [`FrontendConfig::workspace_len`] floats (window, twiddles, mel weights, DCT table and
//! per-frame scratch); [`FrontendBuffers`] sizes it statically with a const generic.

pub mod fft;
pub mod mel;
mod stream;
pub mod wav;

use core::fmt;

use libm::{cos, log10f, logf, sqrt, sqrtf};
use serde::{Deserialize, Serialize};

use crate::tensor::QuantParams;
pub use mel::{MelBand, MAX_MEL_BINS};
pub use stream::StreamingFrontend;
pub use wav::{Wav, WavError};

/// Version byte written before the postcard-encoded config in the `frontend` metadata entry.
pub const CONFIG_VERSION: u8 = 1;

/// Window applied to each frame before the FFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WindowKind {
    /// `0.5 - 0.5 cos(2 pi n / L)`: TensorFlow's `tf.signal.hann_window` default (periodic).
    HannPeriodic,
    /// `0.5 - 0.5 cos(2 pi n / (L - 1))`.
    HannSymmetric,
    /// `0.54 - 0.46 cos(2 pi n / L)`.
    HammingPeriodic,
    Rectangular,
}

/// What the mel bank integrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SpectrumKind {
    /// `|X[k]|` (`tf.abs(stft)`), as MLPerf Tiny KWS does.
    Magnitude,
    /// `|X[k]|^2`.
    Power,
}

/// Logarithm applied to `mel + log_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LogKind {
    Natural,
    Log10,
    /// `10 log10`.
    Decibel,
}

/// How 16-bit samples become floats before framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SampleScale {
    /// `s / 32768` (what `tf.audio.decode_wav` returns).
    FullScale,
    /// `s / max(s)` over the clip, the signed maximum (MLPerf Tiny KWS: `wav / tf.reduce_max(wav)`).
    /// A clip whose maximum is not positive (digital silence) falls back to `FullScale`.
    PeakMax,
}

/// How a float feature becomes the model's int8 input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QuantRounding {
    /// `round_half_away(x / scale) + zero_point`, saturated: TFLite's QUANTIZE op.
    Nearest,
    /// `trunc(x / scale + zero_point)`, saturated: MLPerf Tiny's evaluation scripts
    /// (`np.array(x / scale + zp, dtype=np.int8)`; they wrap instead of saturating, which only
    /// differs for values outside the int8 range).
    TruncateTowardZero,
}

/// The whole front end, stored in a model's metadata under `meta_keys::FRONTEND`.
///
/// Postcard encoding is positional: new fields are only ever appended, with a new
/// [`CONFIG_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrontendConfig {
    pub sample_rate_hz: u32,
    /// Samples per analysis window.
    pub window_len: u16,
    /// Samples between the starts of consecutive windows.
    pub hop_len: u16,
    /// FFT size: a power of two in `window_len..=1024`; the window is zero-padded to it.
    pub fft_len: u16,
    pub window: WindowKind,
    pub spectrum: SpectrumKind,
    pub mel_bins: u16,
    pub lower_hz: f32,
    pub upper_hz: f32,
    pub log: LogKind,
    /// Added before the logarithm so silence stays finite.
    pub log_offset: f32,
    /// MFCC coefficients kept (the first ones of the DCT-II); 0 outputs the log-mel bands.
    pub mfcc_count: u16,
    /// Frames per model input.
    pub frames: u16,
    pub sample_scale: SampleScale,
    pub quant_rounding: QuantRounding,
}

/// Everything that can go wrong building or running a front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontendError {
    /// A configuration field is out of range; `reason` says what is allowed.
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The caller's workspace holds fewer floats than [`FrontendConfig::workspace_len`].
    WorkspaceTooSmall { needed: usize, available: usize },
    /// A caller buffer has the wrong length; `what` names it.
    BufferSize {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A streaming front end has not yet seen enough audio for a full input.
    NotReady { frames: usize, needed: usize },
    /// The `frontend` metadata entry could not be decoded (or has an unknown version).
    BadMetadata,
    /// The model's input does not match the front end's output.
    ModelMismatch { reason: &'static str },
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrontendError::InvalidConfig { field, reason } => {
                write!(f, "invalid front-end config: `{field}` {reason}")
            }
            FrontendError::WorkspaceTooSmall { needed, available } => write!(
                f,
                "front-end workspace too small: needs {needed} floats, got {available} (size it with FrontendConfig::workspace_len)"
            ),
            FrontendError::BufferSize {
                what,
                expected,
                actual,
            } => write!(f, "{what} has {actual} elements, expected {expected}"),
            FrontendError::NotReady { frames, needed } => write!(
                f,
                "front end has {frames} of the {needed} frames a model input needs; push more audio"
            ),
            FrontendError::BadMetadata => f.write_str(
                "the model's `frontend` metadata is malformed or from a newer ember; re-convert the model",
            ),
            FrontendError::ModelMismatch { reason } => {
                write!(f, "front end does not fit the model input: {reason}")
            }
        }
    }
}

impl core::error::Error for FrontendError {}

impl FrontendConfig {
    /// The MLPerf Tiny keyword-spotting features (mlcommons/tiny `get_dataset.py`): 1 s at
    /// 16 kHz scaled by its maximum, 480-sample periodic-Hann windows every 320 samples, 512-point
    /// FFT magnitude, 40 HTK mel bands over 20..4000 Hz, `ln(mel + 1e-6)`, 10 MFCCs, 49 frames.
    pub const fn mlperf_kws() -> FrontendConfig {
        FrontendConfig {
            sample_rate_hz: 16000,
            window_len: 480,
            hop_len: 320,
            fft_len: 512,
            window: WindowKind::HannPeriodic,
            spectrum: SpectrumKind::Magnitude,
            mel_bins: 40,
            lower_hz: 20.0,
            upper_hz: 4000.0,
            log: LogKind::Natural,
            log_offset: 1e-6,
            mfcc_count: 10,
            frames: 49,
            sample_scale: SampleScale::PeakMax,
            quant_rounding: QuantRounding::TruncateTowardZero,
        }
    }

    /// Values per frame: MFCCs, or mel bands when `mfcc_count == 0`.
    pub const fn coeffs_per_frame(&self) -> usize {
        if self.mfcc_count == 0 {
            self.mel_bins as usize
        } else {
            self.mfcc_count as usize
        }
    }

    /// Features per model input (`frames * coeffs_per_frame`), frame-major.
    pub const fn feature_len(&self) -> usize {
        self.frames as usize * self.coeffs_per_frame()
    }

    /// Samples the frames span: `(frames - 1) * hop + window`.
    pub const fn span_samples(&self) -> usize {
        if self.frames == 0 {
            return 0;
        }
        (self.frames as usize - 1) * self.hop_len as usize + self.window_len as usize
    }

    /// Spectrum bins: `fft_len / 2 + 1`.
    pub const fn spectrum_bins(&self) -> usize {
        self.fft_len as usize / 2 + 1
    }

    /// Floats a [`Frontend`] needs in its workspace.
    pub const fn workspace_len(&self) -> usize {
        let n = self.fft_len as usize;
        let dct = if self.mfcc_count == 0 {
            0
        } else {
            self.mfcc_count as usize * self.mel_bins as usize
        };
        self.window_len as usize // window
            + n // twiddles
            + mel::max_weights(n) // mel weights
            + dct // DCT-II table
            + n // FFT buffer
            + n / 2 + 1 // spectrum
            + self.mel_bins as usize // mel energies
    }

    /// Checks every field; a config that passes cannot make the front end index out of bounds.
    pub fn validate(&self) -> Result<(), FrontendError> {
        let bad = |field, reason| Err(FrontendError::InvalidConfig { field, reason });
        if self.sample_rate_hz == 0 {
            return bad("sample_rate_hz", "must be positive");
        }
        if !fft::is_supported_len(self.fft_len as usize) {
            return bad("fft_len", "must be a power of two from 4 to 1024");
        }
        if self.window_len == 0 || self.window_len > self.fft_len {
            return bad("window_len", "must be in 1..=fft_len");
        }
        if self.hop_len == 0 {
            return bad("hop_len", "must be positive");
        }
        if self.mel_bins == 0 || self.mel_bins as usize > MAX_MEL_BINS {
            return bad("mel_bins", "must be in 1..=128");
        }
        let nyquist = self.sample_rate_hz as f32 / 2.0;
        if !(self.lower_hz >= 0.0 && self.lower_hz < self.upper_hz && self.upper_hz <= nyquist) {
            return bad(
                "lower_hz/upper_hz",
                "need 0 <= lower < upper <= sample_rate / 2",
            );
        }
        if !(self.log_offset.is_finite() && self.log_offset >= 0.0) {
            return bad("log_offset", "must be finite and >= 0");
        }
        if self.mfcc_count > self.mel_bins {
            return bad("mfcc_count", "must be <= mel_bins (0 = log-mel output)");
        }
        if self.frames == 0 {
            return bad("frames", "must be positive");
        }
        Ok(())
    }

    /// Writes `[CONFIG_VERSION, postcard(config)]` into `buf`; returns the used prefix.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], FrontendError> {
        let (first, rest) = buf.split_first_mut().ok_or(FrontendError::BadMetadata)?;
        *first = CONFIG_VERSION;
        let used = postcard::to_slice(self, rest)
            .map_err(|_| FrontendError::BadMetadata)?
            .len();
        Ok(&buf[..1 + used])
    }

    /// The metadata value (version byte + postcard), for the converter.
    #[cfg(feature = "alloc")]
    pub fn to_metadata(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![CONFIG_VERSION];
        // A config always fits postcard; an error here would be a bug, so fall back to empty.
        if let Ok(bytes) = postcard::to_allocvec(self) {
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Decodes and validates a `frontend` metadata value.
    pub fn from_metadata(bytes: &[u8]) -> Result<FrontendConfig, FrontendError> {
        match bytes.split_first() {
            Some((&CONFIG_VERSION, rest)) => {
                let config: FrontendConfig =
                    postcard::from_bytes(rest).map_err(|_| FrontendError::BadMetadata)?;
                config.validate()?;
                Ok(config)
            }
            _ => Err(FrontendError::BadMetadata),
        }
    }
}

/// A statically sized workspace: `N` from [`FrontendConfig::workspace_len`] (a `const fn`),
/// e.g. `static BUF: FrontendBuffers<{ FrontendConfig::mlperf_kws().workspace_len() }>`.
#[derive(Debug, Clone)]
pub struct FrontendBuffers<const N: usize> {
    pub floats: [f32; N],
}

impl<const N: usize> FrontendBuffers<N> {
    pub const fn new() -> Self {
        FrontendBuffers { floats: [0.0; N] }
    }
}

impl<const N: usize> Default for FrontendBuffers<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills `out` with the window coefficients (computed in f64, rounded once to f32).
pub fn fill_window(kind: WindowKind, out: &mut [f32]) {
    let len = out.len() as f64;
    let two_pi = 2.0 * core::f64::consts::PI;
    for (n, w) in out.iter_mut().enumerate() {
        let n = n as f64;
        *w = match kind {
            WindowKind::HannPeriodic => 0.5 - 0.5 * cos(two_pi * n / len),
            WindowKind::HannSymmetric if len > 1.0 => 0.5 - 0.5 * cos(two_pi * n / (len - 1.0)),
            WindowKind::HammingPeriodic => 0.54 - 0.46 * cos(two_pi * n / len),
            WindowKind::HannSymmetric | WindowKind::Rectangular => 1.0,
        } as f32;
    }
}

/// Fills `table` (`count * mel_bins`, row per coefficient) with TensorFlow's MFCC DCT-II:
/// `mfcc[k] = sum_n x[n] * 2 cos(pi k (2n + 1) / (2N)) / sqrt(2N)` — the unnormalized DCT-II of
/// `tf.signal.dct(type=2)` times `rsqrt(2 N)` from `mfccs_from_log_mel_spectrograms`.
pub fn fill_dct(mel_bins: usize, count: usize, table: &mut [f32]) {
    let n = mel_bins as f64;
    let scale = 2.0 / sqrt(2.0 * n);
    for k in 0..count {
        for i in 0..mel_bins {
            let angle = core::f64::consts::PI * k as f64 * (2.0 * i as f64 + 1.0) / (2.0 * n);
            if let Some(slot) = table.get_mut(k * mel_bins + i) {
                *slot = (scale * cos(angle)) as f32;
            }
        }
    }
}

/// Quantizes one feature to int8 with the model's input parameters.
pub fn quantize(x: f32, quant: QuantParams, rounding: QuantRounding) -> i8 {
    let scaled = x / quant.scale;
    let q = match rounding {
        // f32 `round` is half away from zero, like TFLite's `TfLiteRound`.
        QuantRounding::Nearest => libm::roundf(scaled) + quant.zero_point as f32,
        QuantRounding::TruncateTowardZero => libm::truncf(scaled + quant.zero_point as f32),
    };
    // NaN (never produced by a valid front end) maps to the zero point's clamp of 0.
    if q.is_nan() {
        return quant.zero_point.clamp(-128, 127) as i8;
    }
    q.clamp(-128.0, 127.0) as i8
}

/// Quantizes a feature slice into `out` (same length).
pub fn quantize_features(
    features: &[f32],
    quant: QuantParams,
    rounding: QuantRounding,
    out: &mut [i8],
) -> Result<(), FrontendError> {
    if features.len() != out.len() {
        return Err(FrontendError::BufferSize {
            what: "quantized output",
            expected: features.len(),
            actual: out.len(),
        });
    }
    for (o, &x) in out.iter_mut().zip(features) {
        *o = quantize(x, quant, rounding);
    }
    Ok(())
}

/// The front end: precomputed tables plus per-frame scratch, all in one borrowed workspace.
#[derive(Debug)]
pub struct Frontend<'a> {
    config: FrontendConfig,
    window: &'a [f32],
    twiddles: &'a [f32],
    mel_weights: &'a [f32],
    mel_bands: heapless::Vec<MelBand, MAX_MEL_BINS>,
    dct: &'a [f32],
    fft_buf: &'a mut [f32],
    spectrum: &'a mut [f32],
    mel: &'a mut [f32],
}

impl<'a> Frontend<'a> {
    /// Validates `config` and builds every table in `workspace`
    /// (at least [`FrontendConfig::workspace_len`] floats).
    pub fn new(config: &FrontendConfig, workspace: &'a mut [f32]) -> Result<Self, FrontendError> {
        config.validate()?;
        let needed = config.workspace_len();
        if workspace.len() < needed {
            return Err(FrontendError::WorkspaceTooSmall {
                needed,
                available: workspace.len(),
            });
        }
        let n = config.fft_len as usize;
        let mel_bins = config.mel_bins as usize;
        let (window, rest) = workspace.split_at_mut(config.window_len as usize);
        let (twiddles, rest) = rest.split_at_mut(n);
        let (mel_weights, rest) = rest.split_at_mut(mel::max_weights(n));
        let dct_len = if config.mfcc_count == 0 {
            0
        } else {
            config.mfcc_count as usize * mel_bins
        };
        let (dct, rest) = rest.split_at_mut(dct_len);
        let (fft_buf, rest) = rest.split_at_mut(n);
        let (spectrum, rest) = rest.split_at_mut(n / 2 + 1);
        let (mel, _) = rest.split_at_mut(mel_bins);

        fill_window(config.window, window);
        fft::fill_twiddles(n, twiddles);
        fill_dct(mel_bins, config.mfcc_count as usize, dct);
        let mut mel_bands = heapless::Vec::new();
        mel_bands
            .resize(mel_bins, MelBand::default())
            .map_err(|_| FrontendError::InvalidConfig {
                field: "mel_bins",
                reason: "must be in 1..=128",
            })?;
        mel::build(
            config.sample_rate_hz as f32,
            n / 2 + 1,
            config.lower_hz,
            config.upper_hz,
            &mut mel_bands,
            mel_weights,
        )
        .ok_or(FrontendError::InvalidConfig {
            field: "mel_bins",
            reason: "mel bank does not fit its table",
        })?;
        Ok(Frontend {
            config: *config,
            window,
            twiddles,
            mel_weights,
            mel_bands,
            dct,
            fft_buf,
            spectrum,
            mel,
        })
    }

    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// Windows one frame (`sample(i)` for `i < window_len`, already scaled), zero-pads it to
    /// the FFT size, and leaves its linear mel energies in the internal buffer.
    fn analyze_frame(&mut self, mut sample: impl FnMut(usize) -> f32) {
        let wl = self.window.len();
        for (i, (dst, w)) in self.fft_buf.iter_mut().zip(self.window.iter()).enumerate() {
            *dst = sample(i) * w;
        }
        self.fft_buf[wl..].fill(0.0);
        let spectrum = &mut *self.spectrum;
        let power = self.config.spectrum == SpectrumKind::Power;
        fft::real_fft(self.fft_buf, self.twiddles, |k, re, im| {
            let p = re * re + im * im;
            spectrum[k] = if power { p } else { sqrtf(p) };
        });
        mel::apply(&self.mel_bands, self.mel_weights, self.spectrum, self.mel);
    }

    /// Log (after multiplying the mel energies by `gain`) and DCT of the analyzed frame,
    /// written to `out` (`coeffs_per_frame` values).
    fn finish_frame(
        mel: &mut [f32],
        dct: &[f32],
        config: &FrontendConfig,
        gain: f32,
        out: &mut [f32],
    ) {
        for m in mel.iter_mut() {
            let x = *m * gain + config.log_offset;
            *m = match config.log {
                LogKind::Natural => logf(x),
                LogKind::Log10 => log10f(x),
                LogKind::Decibel => 10.0 * log10f(x),
            };
        }
        if config.mfcc_count == 0 {
            out.copy_from_slice(mel);
            return;
        }
        for (o, row) in out.iter_mut().zip(dct.chunks_exact(mel.len())) {
            *o = row.iter().zip(mel.iter()).map(|(c, x)| c * x).sum();
        }
    }

    /// Features of one frame of already-scaled float samples (`window_len` of them) into `out`
    /// (`coeffs_per_frame` values). The building block for callers with their own framing.
    pub fn process_frame(&mut self, frame: &[f32], out: &mut [f32]) -> Result<(), FrontendError> {
        self.check_len("frame", frame.len(), self.window.len())?;
        self.check_len("frame output", out.len(), self.config.coeffs_per_frame())?;
        self.analyze_frame(|i| frame[i]);
        Self::finish_frame(self.mel, self.dct, &self.config, 1.0, out);
        Ok(())
    }

    /// Features of a whole clip of 16-bit samples into `out` (`feature_len` values,
    /// frame-major). Frame `f` starts at sample `f * hop`; samples past the end of the clip are
    /// zero (MLPerf pads short clips to 1 s). `PeakMax` scaling uses the maximum of `clip`.
    pub fn process_clip(&mut self, clip: &[i16], out: &mut [f32]) -> Result<(), FrontendError> {
        self.process_samples(clip.len(), |i| clip[i], out)
    }

    /// Like [`Frontend::process_clip`] for `len` samples read through `sample(i)`, so callers
    /// can feed samples from any buffer (e.g. little-endian bytes received over a serial link)
    /// without copying them into an `i16` slice first.
    pub fn process_samples(
        &mut self,
        len: usize,
        sample: impl Fn(usize) -> i16,
        out: &mut [f32],
    ) -> Result<(), FrontendError> {
        self.check_len("feature output", out.len(), self.config.feature_len())?;
        let divisor = match self.config.sample_scale {
            SampleScale::PeakMax => match (0..len).map(&sample).max() {
                Some(peak) if peak > 0 => peak as f32,
                _ => 32768.0,
            },
            SampleScale::FullScale => 32768.0,
        };
        let hop = self.config.hop_len as usize;
        let coeffs = self.config.coeffs_per_frame();
        for (f, frame_out) in out.chunks_exact_mut(coeffs).enumerate() {
            let start = f * hop;
            self.analyze_frame(|i| {
                let at = start + i;
                if at < len {
                    sample(at) as f32 / divisor
                } else {
                    0.0
                }
            });
            Self::finish_frame(self.mel, self.dct, &self.config, 1.0, frame_out);
        }
        Ok(())
    }

    /// Like [`Frontend::process_clip`], then quantized with the model input's parameters.
    pub fn process_clip_quantized(
        &mut self,
        clip: &[i16],
        quant: QuantParams,
        features: &mut [f32],
        out: &mut [i8],
    ) -> Result<(), FrontendError> {
        self.process_clip(clip, features)?;
        quantize_features(features, quant, self.config.quant_rounding, out)
    }

    /// Like [`Frontend::process_samples`], then quantized with the model input's parameters.
    pub fn process_samples_quantized(
        &mut self,
        len: usize,
        sample: impl Fn(usize) -> i16,
        quant: QuantParams,
        features: &mut [f32],
        out: &mut [i8],
    ) -> Result<(), FrontendError> {
        self.process_samples(len, sample, features)?;
        quantize_features(features, quant, self.config.quant_rounding, out)
    }

    /// The linear mel energies of the last analyzed frame (for streaming).
    fn mel_energies(&self) -> &[f32] {
        self.mel
    }

    fn check_len(
        &self,
        what: &'static str,
        actual: usize,
        expected: usize,
    ) -> Result<(), FrontendError> {
        if actual == expected {
            Ok(())
        } else {
            Err(FrontendError::BufferSize {
                what,
                expected,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests;

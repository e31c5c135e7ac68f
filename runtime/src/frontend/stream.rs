//! Streaming: push audio as it arrives, read a model input whenever one is wanted.
//!
//! Each completed window is analyzed once, and only its linear mel energies (plus the frame's
//! peak sample) are kept in a ring of `frames` rows. Reading features applies the log and DCT
//! to the ring, oldest frame first. Because the spectrum is linear in the samples, `PeakMax`
//! scaling is applied then as a gain on the mel energies (`peak^-1` for magnitude, `peak^-2`
//! for power), which equals scaling the samples up to float rounding. The peak is the maximum
//! over the samples the ring's frames cover (offline, it is over the whole clip).

use super::{Frontend, FrontendConfig, FrontendError, SampleScale, SpectrumKind};

/// A [`Frontend`] fed with sample chunks of any size.
#[derive(Debug)]
pub struct StreamingFrontend<'a> {
    frontend: Frontend<'a>,
    /// The current window being filled.
    window_samples: &'a mut [i16],
    filled: usize,
    /// Samples still to drop when the hop is longer than the window.
    skip: usize,
    /// `frames` rows of `mel_bins` linear mel energies (samples scaled by 1/32768).
    mel_ring: &'a mut [f32],
    /// Peak (signed maximum) sample of each ring frame.
    peaks: &'a mut [f32],
    next_slot: usize,
    frames_seen: usize,
}

impl FrontendConfig {
    /// Floats a [`StreamingFrontend`] needs: the front end plus the mel ring and frame peaks.
    pub const fn streaming_workspace_len(&self) -> usize {
        self.workspace_len() + self.frames as usize * (self.mel_bins as usize + 1)
    }
}

impl<'a> StreamingFrontend<'a> {
    /// `workspace`: at least [`FrontendConfig::streaming_workspace_len`] floats;
    /// `window_samples`: exactly `window_len` samples of storage.
    pub fn new(
        config: &FrontendConfig,
        workspace: &'a mut [f32],
        window_samples: &'a mut [i16],
    ) -> Result<Self, FrontendError> {
        config.validate()?;
        let needed = config.streaming_workspace_len();
        if workspace.len() < needed {
            return Err(FrontendError::WorkspaceTooSmall {
                needed,
                available: workspace.len(),
            });
        }
        if window_samples.len() != config.window_len as usize {
            return Err(FrontendError::BufferSize {
                what: "window sample buffer",
                expected: config.window_len as usize,
                actual: window_samples.len(),
            });
        }
        let frames = config.frames as usize;
        let (base, rest) = workspace.split_at_mut(config.workspace_len());
        let (mel_ring, rest) = rest.split_at_mut(frames * config.mel_bins as usize);
        let (peaks, _) = rest.split_at_mut(frames);
        Ok(StreamingFrontend {
            frontend: Frontend::new(config, base)?,
            window_samples,
            filled: 0,
            skip: 0,
            mel_ring,
            peaks,
            next_slot: 0,
            frames_seen: 0,
        })
    }

    pub fn config(&self) -> &FrontendConfig {
        self.frontend.config()
    }

    /// Forgets all audio.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.skip = 0;
        self.next_slot = 0;
        self.frames_seen = 0;
    }

    /// Frames analyzed since the start (or the last reset).
    pub fn frames_seen(&self) -> usize {
        self.frames_seen
    }

    /// Whether a full model input is available.
    pub fn is_ready(&self) -> bool {
        self.frames_seen >= self.mel_ring_frames()
    }

    fn mel_ring_frames(&self) -> usize {
        self.peaks.len()
    }

    /// Feeds samples; returns how many new frames were completed.
    pub fn push(&mut self, input: &[i16]) -> usize {
        let window_len = self.window_samples.len();
        let hop = self.frontend.config.hop_len as usize;
        let mel_bins = self.frontend.config.mel_bins as usize;
        let mut completed = 0;
        for &s in input {
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            self.window_samples[self.filled] = s;
            self.filled += 1;
            if self.filled < window_len {
                continue;
            }
            let samples = &*self.window_samples;
            self.frontend
                .analyze_frame(|i| samples[i] as f32 * (1.0 / 32768.0));
            let row = self.next_slot * mel_bins;
            self.mel_ring[row..row + mel_bins].copy_from_slice(self.frontend.mel_energies());
            self.peaks[self.next_slot] = samples.iter().copied().max().unwrap_or(0) as f32;
            self.next_slot = (self.next_slot + 1) % self.peaks.len();
            self.frames_seen += 1;
            completed += 1;
            if hop < window_len {
                self.window_samples.copy_within(hop.., 0);
                self.filled = window_len - hop;
            } else {
                self.filled = 0;
                self.skip = hop - window_len;
            }
        }
        completed
    }

    /// The features of the last `frames` frames, oldest first, into `out` (`feature_len`).
    pub fn features(&mut self, out: &mut [f32]) -> Result<(), FrontendError> {
        let config = self.frontend.config;
        let frames = self.mel_ring_frames();
        if !self.is_ready() {
            return Err(FrontendError::NotReady {
                frames: self.frames_seen,
                needed: frames,
            });
        }
        self.frontend
            .check_len("feature output", out.len(), config.feature_len())?;
        let gain = match config.sample_scale {
            SampleScale::FullScale => 1.0,
            SampleScale::PeakMax => {
                let peak = self.peaks.iter().copied().fold(f32::MIN, f32::max);
                if peak > 0.0 {
                    let amplitude = 32768.0 / peak;
                    match config.spectrum {
                        SpectrumKind::Magnitude => amplitude,
                        SpectrumKind::Power => amplitude * amplitude,
                    }
                } else {
                    1.0
                }
            }
        };
        let mel_bins = config.mel_bins as usize;
        let coeffs = config.coeffs_per_frame();
        for (i, frame_out) in out.chunks_exact_mut(coeffs).enumerate() {
            let slot = (self.next_slot + i) % frames;
            let row = &self.mel_ring[slot * mel_bins..(slot + 1) * mel_bins];
            self.frontend.mel.copy_from_slice(row);
            Frontend::finish_frame(
                self.frontend.mel,
                self.frontend.dct,
                &config,
                gain,
                frame_out,
            );
        }
        Ok(())
    }
}

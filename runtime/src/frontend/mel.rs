//! Mel filter bank with the arithmetic of TensorFlow's `tf.signal.linear_to_mel_weight_matrix`.
//!
//! - mel scale: HTK, `mel(f) = 1127 * ln(1 + f / 700)`;
//! - spectrum bin `k` of `n_bins` sits at `k * (sample_rate / 2) / (n_bins - 1)` Hz;
//! - the DC bin (k = 0) always gets weight 0 (HTK excludes it);
//! - band edges are `n_mel + 2` points evenly spaced in mel between the lower and upper edge;
//!   band `m` is the triangle (edge m, edge m+1, edge m+2), weight
//!   `max(0, min((mel_k - lo) / (c - lo), (hi - mel_k) / (hi - c)))` — no area normalization.
//!
//! Everything is computed in f32 like TensorFlow does, so the weights agree to rounding.

use libm::logf;

/// Most mel bands a front end may use.
pub const MAX_MEL_BINS: usize = 128;

/// HTK mel of a frequency in Hz.
pub fn hz_to_mel(hz: f32) -> f32 {
    1127.0 * logf(1.0 + hz / 700.0)
}

/// The non-zero stretch of one band's weights: spectrum bins `first..first + len`, weights at
/// `weights[offset..offset + len]` of the bank's weight table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MelBand {
    pub first_bin: u16,
    pub len: u16,
    pub offset: u16,
}

/// `(lower_mel, center_mel, upper_mel)` of band `band` (TensorFlow's float32 linspace:
/// `start + i * (stop - start) / (count - 1)`, the last point exactly `stop`).
fn band_edges(mel_bins: usize, lower_hz: f32, upper_hz: f32, band: usize) -> (f32, f32, f32) {
    let start = hz_to_mel(lower_hz);
    let stop = hz_to_mel(upper_hz);
    let count = mel_bins + 2;
    let delta = (stop - start) / (count - 1) as f32;
    let point = |i: usize| {
        if i == count - 1 {
            stop
        } else {
            start + i as f32 * delta
        }
    };
    (point(band), point(band + 1), point(band + 2))
}

/// Weight of spectrum bin `bin` (of `n_bins`) in band `band`, exactly as TensorFlow computes it.
pub fn weight(
    sample_rate: f32,
    n_bins: usize,
    mel_bins: usize,
    lower_hz: f32,
    upper_hz: f32,
    bin: usize,
    band: usize,
) -> f32 {
    if bin == 0 || n_bins < 2 {
        return 0.0;
    }
    let nyquist = sample_rate / 2.0;
    let hz = bin as f32 * (nyquist / (n_bins - 1) as f32);
    let mel = hz_to_mel(hz);
    let (lo, c, hi) = band_edges(mel_bins, lower_hz, upper_hz, band);
    let lower_slope = (mel - lo) / (c - lo);
    let upper_slope = (hi - mel) / (hi - c);
    let w = lower_slope.min(upper_slope);
    if w > 0.0 {
        w
    } else {
        0.0
    }
}

/// Builds the sparse bank: one [`MelBand`] per band and their weights packed in `weights`.
/// Returns the number of weights used, or `None` if `weights` is too short or a range does not
/// fit in `u16` (never for sizes up to 1024 points).
pub fn build(
    sample_rate: f32,
    n_bins: usize,
    lower_hz: f32,
    upper_hz: f32,
    bands: &mut [MelBand],
    weights: &mut [f32],
) -> Option<usize> {
    let mel_bins = bands.len();
    let mut used = 0usize;
    for (band, slot) in bands.iter_mut().enumerate() {
        let mut first = None;
        let mut last = 0;
        for bin in 1..n_bins {
            if weight(sample_rate, n_bins, mel_bins, lower_hz, upper_hz, bin, band) > 0.0 {
                first.get_or_insert(bin);
                last = bin;
            }
        }
        *slot = match first {
            None => MelBand {
                first_bin: 0,
                len: 0,
                offset: u16::try_from(used).ok()?,
            },
            Some(first) => {
                let len = last - first + 1;
                let dst = weights.get_mut(used..used + len)?;
                for (i, w) in dst.iter_mut().enumerate() {
                    *w = weight(
                        sample_rate,
                        n_bins,
                        mel_bins,
                        lower_hz,
                        upper_hz,
                        first + i,
                        band,
                    );
                }
                let band = MelBand {
                    first_bin: u16::try_from(first).ok()?,
                    len: u16::try_from(len).ok()?,
                    offset: u16::try_from(used).ok()?,
                };
                used += len;
                band
            }
        };
    }
    Some(used)
}

/// Upper bound on the weights [`build`] stores: a bin lies in at most two adjacent triangles.
pub const fn max_weights(fft_len: usize) -> usize {
    fft_len
}

/// `out[m] = sum_k spectrum[k] * weight[k][m]` over the sparse bank.
pub fn apply(bands: &[MelBand], weights: &[f32], spectrum: &[f32], out: &mut [f32]) {
    for (band, o) in bands.iter().zip(out.iter_mut()) {
        let first = band.first_bin as usize;
        let len = band.len as usize;
        let offset = band.offset as usize;
        let mut acc = 0.0f32;
        for (s, w) in spectrum[first..first + len]
            .iter()
            .zip(&weights[offset..offset + len])
        {
            acc += s * w;
        }
        *o = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htk_mel_scale_known_values() {
        assert_eq!(hz_to_mel(0.0), 0.0);
        // 1000 Hz is ~1000 mel on the HTK scale: 1127 ln(1 + 10/7) = 999.9907.
        assert!((hz_to_mel(1000.0) - 999.9907).abs() < 1e-3);
        assert!((hz_to_mel(4000.0) - 2146.0756).abs() < 1e-3);
    }

    #[test]
    fn kws_bank_dc_is_zero_and_triangles_peak_near_one() {
        let n_bins = 257;
        let mut bands = [MelBand::default(); 40];
        let mut weights = [0.0f32; 512];
        let used = build(16000.0, n_bins, 20.0, 4000.0, &mut bands, &mut weights).unwrap();
        assert!(used > 0 && used <= max_weights(512));
        for (m, band) in bands.iter().enumerate() {
            // No band may touch the DC bin, and nothing reaches above 4000 Hz (bin 128).
            assert!(band.first_bin >= 1, "band {m}");
            assert!((band.first_bin + band.len) as usize <= 129, "band {m}");
            for i in 0..band.len as usize {
                let w = weights[band.offset as usize + i];
                assert!(w > 0.0 && w <= 1.0, "band {m} weight {w}");
            }
        }
        // Low bands are narrower than one bin spacing (31.25 Hz), so some are empty, exactly as
        // in TensorFlow; the high bands are wide and overlap their neighbours.
        assert!(bands[39].len >= 5);
        // Sparse and dense agree everywhere.
        let mut spectrum = [0.0f32; 257];
        for (k, s) in spectrum.iter_mut().enumerate() {
            *s = (k as f32 * 0.37).sin().abs() + 0.1;
        }
        let mut sparse = [0.0f32; 40];
        apply(&bands, &weights, &spectrum, &mut sparse);
        for m in 0..40 {
            let dense: f32 = (0..n_bins)
                .map(|k| spectrum[k] * weight(16000.0, n_bins, 40, 20.0, 4000.0, k, m))
                .sum();
            assert!((dense - sparse[m]).abs() <= 1e-5 * dense.abs().max(1.0));
        }
    }

    #[test]
    fn triangle_known_values() {
        // 4 bands over 0..8 kHz on 9 bins (1 kHz apart): edges are evenly spaced in mel, and a
        // bin sitting exactly between edges gets the linear interpolation in mel.
        let (lo, c, hi) = band_edges(4, 0.0, 8000.0, 1);
        let mel_8k = hz_to_mel(8000.0);
        assert!((lo - mel_8k / 5.0).abs() < 1e-3);
        assert!((c - 2.0 * mel_8k / 5.0).abs() < 1e-3);
        assert!((hi - 3.0 * mel_8k / 5.0).abs() < 1e-3);
        let w = weight(16000.0, 9, 4, 0.0, 8000.0, 2, 1);
        let mel = hz_to_mel(2000.0);
        let want = ((mel - lo) / (c - lo)).min((hi - mel) / (hi - c)).max(0.0);
        assert!((w - want).abs() < 1e-6 && w > 0.0);
        assert_eq!(weight(16000.0, 9, 4, 0.0, 8000.0, 0, 0), 0.0);
    }
}

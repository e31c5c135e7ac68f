//! Radix-2 FFT of a real frame, in place, with a caller-owned twiddle table.
//!
//! A real frame of `n` samples is read as `n / 2` complex numbers (even samples real, odd
//! samples imaginary), transformed with an iterative radix-2 complex FFT, and split into the
//! `n / 2 + 1` bins of the real spectrum. This halves the work of a plain complex FFT.

use libm::{cos, sin};

/// Largest FFT size the front end supports (1024 points: 64 ms at 16 kHz).
pub const MAX_FFT_LEN: usize = 1024;

/// Whether `n` is a transform size this module accepts: a power of two in `4..=MAX_FFT_LEN`.
pub const fn is_supported_len(n: usize) -> bool {
    n.is_power_of_two() && n >= 4 && n <= MAX_FFT_LEN
}

/// Fills `twiddles` (length `n`) with `e^{-2 pi i k / n}` for `k < n / 2`, interleaved
/// `[re, im, re, im, ...]`. Computed in f64 so every entry is the correctly rounded f32.
pub fn fill_twiddles(n: usize, twiddles: &mut [f32]) {
    for (k, pair) in twiddles.chunks_exact_mut(2).take(n / 2).enumerate() {
        let angle = -2.0 * core::f64::consts::PI * k as f64 / n as f64;
        pair[0] = cos(angle) as f32;
        pair[1] = sin(angle) as f32;
    }
}

/// In-place forward complex FFT of `data.len() / 2` interleaved complex values.
///
/// `twiddles` must come from [`fill_twiddles`] for a size `n_table` that is a multiple of the
/// transform size times two (the real FFT passes its own table, twice the complex size).
/// The caller guarantees the sizes (checked once when the front end is built).
pub fn complex_fft_in_place(data: &mut [f32], twiddles: &[f32], n_table: usize) {
    let m = data.len() / 2;
    if m < 2 {
        return;
    }
    // Bit-reversal permutation.
    let bits = m.trailing_zeros();
    for i in 0..m {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            data.swap(2 * i, 2 * j);
            data.swap(2 * i + 1, 2 * j + 1);
        }
    }
    // Butterflies, stage by stage.
    let mut len = 2;
    while len <= m {
        let half = len / 2;
        let stride = n_table / len;
        let mut start = 0;
        while start < m {
            for j in 0..half {
                let t = j * stride;
                let (wr, wi) = (twiddles[2 * t], twiddles[2 * t + 1]);
                let a = 2 * (start + j);
                let b = 2 * (start + j + half);
                let (br, bi) = (data[b], data[b + 1]);
                let tr = br * wr - bi * wi;
                let ti = br * wi + bi * wr;
                let (ar, ai) = (data[a], data[a + 1]);
                data[a] = ar + tr;
                data[a + 1] = ai + ti;
                data[b] = ar - tr;
                data[b + 1] = ai - ti;
            }
            start += len;
        }
        len *= 2;
    }
}

/// Real FFT of `frame` (length `n`, a supported size), overwriting `frame` with scratch
/// values, and calling `bin(k, re, im)` for each output bin `k` in `0..=n / 2`.
///
/// `twiddles` is the table from [`fill_twiddles`] for size `n`.
pub fn real_fft(frame: &mut [f32], twiddles: &[f32], mut bin: impl FnMut(usize, f32, f32)) {
    let n = frame.len();
    let m = n / 2;
    complex_fft_in_place(frame, twiddles, n);
    // Split the packed transform Z into the spectrum X of the real input:
    // X[k] = E[k] + W^k O[k], with E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2i.
    let (z0r, z0i) = (frame[0], frame[1]);
    bin(0, z0r + z0i, 0.0);
    for k in 1..m {
        let (zr, zi) = (frame[2 * k], frame[2 * k + 1]);
        let (cr, ci) = (frame[2 * (m - k)], -frame[2 * (m - k) + 1]);
        let er = 0.5 * (zr + cr);
        let ei = 0.5 * (zi + ci);
        // (Z - conj Z') / 2i = (di - i dr) / 2 with d = Z - conj Z'.
        let or = 0.5 * (zi - ci);
        let oi = -0.5 * (zr - cr);
        let (wr, wi) = (twiddles[2 * k], twiddles[2 * k + 1]);
        bin(k, er + wr * or - wi * oi, ei + wr * oi + wi * or);
    }
    bin(m, z0r - z0i, 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::Rng;

    fn naive_dft(x: &[f32]) -> std::vec::Vec<(f64, f64)> {
        let n = x.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (t, &v) in x.iter().enumerate() {
                    let a = -2.0 * std::f64::consts::PI * (k * t % n) as f64 / n as f64;
                    re += v as f64 * a.cos();
                    im += v as f64 * a.sin();
                }
                (re, im)
            })
            .collect()
    }

    fn fft_bins(x: &[f32]) -> std::vec::Vec<(f32, f32)> {
        let n = x.len();
        let mut tw = std::vec![0.0f32; n];
        fill_twiddles(n, &mut tw);
        let mut buf = x.to_vec();
        let mut out = std::vec![(f32::NAN, f32::NAN); n / 2 + 1];
        real_fft(&mut buf, &tw, |k, re, im| out[k] = (re, im));
        out
    }

    #[test]
    fn matches_naive_dft_on_random_frames_of_every_size() {
        let mut rng = Rng(7);
        let mut n = 4;
        while n <= MAX_FFT_LEN {
            let x: std::vec::Vec<f32> = (0..n).map(|_| rng.f32(-1.0, 1.0)).collect();
            let want = naive_dft(&x);
            let got = fft_bins(&x);
            // Float32 radix-2 error grows like log2(n) * eps * sqrt(n) * |x|.
            let tol = 2e-6 * (n as f64).sqrt() * (n.trailing_zeros() as f64);
            for (k, ((wr, wi), (gr, gi))) in want.iter().zip(got.iter()).enumerate() {
                assert!(
                    (wr - *gr as f64).abs() <= tol && (wi - *gi as f64).abs() <= tol,
                    "n={n} bin {k}: want ({wr}, {wi}) got ({gr}, {gi})"
                );
            }
            n *= 2;
        }
    }

    #[test]
    fn known_values_impulse_constant_and_cosine() {
        // Impulse at 0: flat spectrum of ones.
        let mut x = [0.0f32; 16];
        x[0] = 1.0;
        for (re, im) in fft_bins(&x) {
            assert!((re - 1.0).abs() < 1e-6 && im.abs() < 1e-6);
        }
        // Constant 1: DC = n, everything else 0.
        let bins = fft_bins(&[1.0f32; 32]);
        assert!((bins[0].0 - 32.0).abs() < 1e-5);
        assert!(bins[1..]
            .iter()
            .all(|(r, i)| r.abs() < 1e-5 && i.abs() < 1e-5));
        // cos(2 pi 3 t / 64): bin 3 = 32, others 0; the Nyquist bin is real.
        let x: std::vec::Vec<f32> = (0..64)
            .map(|t| (2.0 * std::f64::consts::PI * 3.0 * t as f64 / 64.0).cos() as f32)
            .collect();
        let bins = fft_bins(&x);
        for (k, (re, im)) in bins.iter().enumerate() {
            let want = if k == 3 { 32.0 } else { 0.0 };
            assert!(
                (re - want).abs() < 1e-4 && im.abs() < 1e-4,
                "bin {k}: {re} {im}"
            );
        }
        // Alternating signs: all energy at Nyquist.
        let x: std::vec::Vec<f32> = (0..8)
            .map(|t| if t % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let bins = fft_bins(&x);
        assert!((bins[4].0 - 8.0).abs() < 1e-6 && bins[0].0.abs() < 1e-6);
    }

    #[test]
    fn supported_sizes() {
        assert!(is_supported_len(4) && is_supported_len(512) && is_supported_len(1024));
        assert!(!is_supported_len(2) && !is_supported_len(480) && !is_supported_len(2048));
    }
}

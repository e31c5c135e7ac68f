#!/usr/bin/env python3
"""NumPy reference of the MLPerf Tiny keyword-spotting features.

Re-implements, with NumPy only, what mlcommons/tiny
benchmark/training/keyword_spotting/get_dataset.py computes at evaluation time (no augmentation):

    wav = int16 samples as float32 / tf.reduce_max(wav)          # signed maximum, not abs
    pad with zeros to 16000 samples                              # (the [2,2] shift is a no-op)
    stfts = tf.signal.stft(wav, 480, 320, fft_length=None -> 512, window_fn=tf.signal.hann_window)
    spectrograms = tf.abs(stfts)                                 # magnitude, 257 bins
    mel = spectrograms @ tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 4000.0)
    log_mel = tf.math.log(mel + 1e-6)
    mfccs = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10]   # 49 x 10

and MLPerf's input quantization `np.array(x / scale + zero_point, dtype=np.int8)` (truncation).
TensorFlow is not needed; each tf.signal op is written out from its definition:
- hann_window(periodic=True): 0.5 - 0.5 cos(2 pi n / N);
- linear_to_mel_weight_matrix: HTK mel 1127 ln(1 + f/700), bins at linspace(0, sr/2, 257) with
  the DC row forced to 0, band edges linspace(mel(lo), mel(hi), 42), triangles
  max(0, min((m - l)/(c - l), (u - m)/(u - c))), all in float32;
- mfccs_from_log_mel_spectrograms: unnormalized DCT-II (2 sum x cos(pi k (2n+1) / 2N)) times
  rsqrt(2N).

This file deliberately shares no code with the Rust implementation (dense matrices, NumPy FFT).
"""
import wave

import numpy as np

SAMPLE_RATE = 16000
CLIP = 16000
WINDOW = 480
HOP = 320
FFT = 512
MEL_BINS = 40
LOWER_HZ = 20.0
UPPER_HZ = 4000.0
LOG_OFFSET = 1e-6
MFCC = 10


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: need 16-bit mono PCM")
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def hertz_to_mel(f):
    f = np.asarray(f, dtype=np.float32)
    return np.float32(1127.0) * np.log(np.float32(1.0) + f / np.float32(700.0))


def tf_linspace(start, stop, num):
    start, stop = np.float32(start), np.float32(stop)
    delta = (stop - start) / np.float32(num - 1)
    out = start + np.arange(num, dtype=np.float32) * delta
    out[-1] = stop
    return out.astype(np.float32)


def linear_to_mel_weight_matrix(num_mel_bins, num_spectrogram_bins, sample_rate, lo, hi):
    nyquist = np.float32(sample_rate) / np.float32(2.0)
    freqs = tf_linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    spec_mel = hertz_to_mel(freqs)[:, None]
    edges = tf_linspace(hertz_to_mel(lo), hertz_to_mel(hi), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slopes = (spec_mel - lower) / (center - lower)
    upper_slopes = (upper - spec_mel) / (upper - center)
    weights = np.maximum(np.float32(0.0), np.minimum(lower_slopes, upper_slopes))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


def periodic_hann(n):
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def mfcc_dct_matrix(num_mel_bins):
    n = np.arange(num_mel_bins)
    k = n[:, None]
    dct2 = 2.0 * np.cos(np.pi * k * (2 * n[None, :] + 1) / (2.0 * num_mel_bins))
    return (dct2 / np.sqrt(2.0 * num_mel_bins)).astype(np.float32)  # [k, n]


def log_mel(samples):
    """float32 [frames, 40] log-mel spectrogram of int16 `samples` (MLPerf scaling)."""
    wav = samples.astype(np.float32)
    wav = wav / wav.max()
    wav = np.pad(wav, (0, max(0, CLIP - len(wav))))
    frames = 1 + (len(wav) - WINDOW) // HOP
    idx = np.arange(frames)[:, None] * HOP + np.arange(WINDOW)[None, :]
    framed = wav[idx] * periodic_hann(WINDOW)
    spec = np.abs(np.fft.rfft(framed, n=FFT)).astype(np.float32)
    mel = spec @ linear_to_mel_weight_matrix(MEL_BINS, FFT // 2 + 1, SAMPLE_RATE, LOWER_HZ, UPPER_HZ)
    return np.log(mel + np.float32(LOG_OFFSET)).astype(np.float32)


def mfcc(samples):
    """float32 [49, 10] MFCCs of int16 `samples`."""
    lm = log_mel(samples)
    return (lm @ mfcc_dct_matrix(MEL_BINS).T)[:, :MFCC].astype(np.float32)


def quantize_mlperf(x, scale, zero_point):
    """MLPerf's `np.array(x / scale + zp, dtype=np.int8)`, but saturating instead of wrapping."""
    v = np.trunc(np.asarray(x, np.float32) / np.float32(scale) + np.float32(zero_point))
    return np.clip(v, -128, 127).astype(np.int8)


if __name__ == "__main__":
    import sys

    for path in sys.argv[1:]:
        _, s = read_wav(path)
        print(path, np.array2string(mfcc(s)[:3], precision=3))

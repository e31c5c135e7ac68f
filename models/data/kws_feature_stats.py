#!/usr/bin/env python3
"""Compares MFCC statistics of the recorded WAVs in ../shared/audio with synthesized clips:
mean MFCC over speech frames (within 4 nats of the loudest frame) and over the other frames.
A numpy copy of ember's FrontendConfig::mlperf_kws (Hann 480/320, FFT 512 magnitude, 40 HTK
mel bands 20-4000 Hz, ln(x + 1e-6), DCT-II * rsqrt(2N), peak scaling), for diagnosis only.

Usage: python3 data/kws_feature_stats.py data-cache/kws2/clips
"""
import glob
import random
import sys
import wave

import numpy as np


def read(path):
    w = wave.open(path)
    return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)


def mel_weights():
    mel = lambda f: 1127 * np.log(1 + f / 700)
    edges = np.linspace(mel(20), mel(4000), 42)
    m = mel(np.arange(257) * 16000 / 512)
    w = np.zeros((257, 40))
    for b in range(40):
        lo, mid, hi = edges[b:b + 3]
        w[:, b] = np.clip(np.minimum((m - lo) / (mid - lo), (hi - m) / (hi - mid)), 0, None)
    w[0] = 0
    return w


W = mel_weights()
DCT = 2 * np.cos(np.pi * np.arange(10)[:, None] * (2 * np.arange(40)[None, :] + 1) / 80) / np.sqrt(80)


def mfcc(x):
    x = np.pad(x, (0, max(0, 16000 - len(x))))[:16000]
    x = x / (x.max() if x.max() > 0 else 32768)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(480) / 480)
    frames = np.stack([x[i * 320:i * 320 + 480] * win for i in range(49)])
    log_mel = np.log(np.abs(np.fft.rfft(frames, 512)) @ W + 1e-6)
    return log_mel @ DCT.T, log_mel.mean(1)


def split_stats(x):
    f, energy = mfcc(x)
    speech = energy > energy.max() - 4
    rest = f[~speech].mean(0) if (~speech).any() else np.full(10, np.nan)
    return f[speech].mean(0), rest


def main():
    np.set_printoptions(precision=1, suppress=True, linewidth=150)
    clips = sys.argv[1] if len(sys.argv) > 1 else "data-cache/kws2/clips"
    for name in ["yes", "no", "silence", "noise"]:
        speech, rest = split_stats(read(f"../../shared/audio/{name}_1000ms.wav"))
        print(f"recorded {name:8} speech {speech}  other {rest}")
    rng = random.Random(1)
    for word in ["yes", "no"]:
        stats = []
        for path in rng.sample(sorted(glob.glob(f"{clips}/*_{word}_*.wav")), 60):
            x = read(path)[:16000]
            clip = np.zeros(16000)
            start = (16000 - len(x)) // 2
            clip[start:start + len(x)] = x
            stats.append(split_stats(clip))
        speech = np.array([s for s, _ in stats])
        rest = np.array([r for _, r in stats])
        print(f"synthetic {word:7} speech {speech.mean(0)} +- {speech.std(0)}")
        print(f"synthetic {word:7} other  {np.nanmean(rest, 0)} (clean, centred)")


if __name__ == "__main__":
    main()

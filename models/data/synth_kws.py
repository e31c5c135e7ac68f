#!/usr/bin/env python3
"""Synthesizes the keyword-spotting corpus: spoken words from espeak-ng and flite, trimmed
of leading/trailing silence and resampled to 16 kHz mono 16-bit with sox, plus the noise bank.

Deterministic for a given --seed (the synthesizers themselves are deterministic). Writes
<out>/clips/*.wav, <out>/noise/*.wav and <out>/manifest.csv (path,label,split,voice); the
Rust command `ember-models kws-data` then mixes noise, runs ember's front end and writes Parquet.

Splits: `train` and `val` share voices (val is a random 10% of the training voices' clips);
`test_espeak` and `test_flite` use voices that never appear in training.
"""
import argparse
import concurrent.futures
import csv
import os
import random
import subprocess
import sys

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN_WORDS = [
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "learn", "follow", "forward", "backward", "visual", "yellow", "nose", "dawn", "upper", "lift",
]
# Five accents and 36 variants: the recorded test words showed that voice variety, more than
# clip count, is what carries synthetic training over to human speech.
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"]
ESPEAK_TRAIN_VARIANTS = ["m1", "m2", "m4", "m5", "m6", "f1", "f3", "f5", "croak", "klatt",
                         "Alex", "Andy", "annie", "david", "edward", "grandma",
                         "m8", "adam", "aunty", "caleb", "gene", "jacky", "john", "klatt2",
                         "klatt3", "lee", "linda", "mike", "norbert", "paul", "rob", "steph",
                         "travis", "victor", "zac", "quincy"]
# Variants held out of training: every accent spoken by these is a test voice.
ESPEAK_TEST_VARIANTS = ["m3", "m7", "f2", "f4", "benjamin", "belinda"]
FLITE_TRAIN_VOICES = ["kal", "awb", "slt"]
FLITE_TEST_VOICES = ["rms"]


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def to_16k_trimmed(raw, out):
    # Trim silence at both ends so the Rust stage can place the word anywhere in the 1 s clip.
    run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", out,
         "silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%", "reverse"])
    os.remove(raw)


def synth(job):
    kind, voice, word, params, out = job
    if os.path.exists(out):
        return out  # resumable: clip names are deterministic for a seed
    raw = out + ".raw.wav"
    if kind == "espeak":
        speed, pitch, ending = params
        # The ending punctuation changes the intonation (falling, rising, emphatic).
        run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", raw,
             word + ending])
    else:
        stretch, f0 = params
        run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
             "--setf", f"int_f0_target_mean={f0}", "-t", word, "-o", raw])
    to_16k_trimmed(raw, out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--takes", type=int, default=2, help="espeak-ng takes per word and voice")
    ap.add_argument("--flite-takes", type=int, default=8, help="flite takes per word and voice")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    clips = os.path.join(args.out, "clips")
    noise = os.path.join(args.out, "noise")
    os.makedirs(clips, exist_ok=True)
    os.makedirs(noise, exist_ok=True)

    jobs, rows = [], []

    def add(kind, voice, word, label, split, params):
        name = f"{kind}_{voice.replace('+', '_')}_{word}_{len(jobs)}.wav"
        path = os.path.join(clips, name)
        jobs.append((kind, voice, word, params, path))
        rows.append([os.path.join("clips", name), label, split, f"{kind}:{voice}"])

    def words_for(takes):
        for word in KEYWORDS:
            for _ in range(takes):
                yield word, word
        # Unknown words: as many clips in total as one keyword gets, spread over the words.
        for _ in range(takes):
            yield rng.choice(UNKNOWN_WORDS), "unknown"

    for accent in ESPEAK_ACCENTS:
        for variant in ESPEAK_TRAIN_VARIANTS + ESPEAK_TEST_VARIANTS:
            voice = f"{accent}+{variant}"
            held_out = variant in ESPEAK_TEST_VARIANTS
            for word, label in words_for(args.takes):
                params = (rng.randint(100, 230), rng.randint(15, 85),
                          rng.choice(["", ".", "?", "!"]))
                split = "test_espeak" if held_out else ("val" if rng.random() < 0.1 else "train")
                add("espeak", voice, word, label, split, params)
    for voice in FLITE_TRAIN_VOICES + FLITE_TEST_VOICES:
        held_out = voice in FLITE_TEST_VOICES
        for word, label in words_for(args.flite_takes):
            params = (round(rng.uniform(0.8, 1.3), 2), rng.randint(80, 220))
            split = "test_flite" if held_out else ("val" if rng.random() < 0.1 else "train")
            add("flite", voice, word, label, split, params)

    # Noise bank: sox's coloured noises (seeded via -R is not available; sox noise with a fixed
    # seed uses `-R` to make it repeatable) and the real recording from shared/.
    for colour in ["whitenoise", "pinknoise", "brownnoise"]:
        run(["sox", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16",
             os.path.join(noise, f"{colour}.wav"), "synth", "10", colour, "vol", "0.5"])
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "audio",
                          "noise_1000ms.wav")
    if os.path.exists(shared):
        run(["sox", shared, os.path.join(noise, "recorded.wav")])

    done = 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for _ in pool.map(synth, jobs):
            done += 1
            if done % 500 == 0:
                print(f"{done}/{len(jobs)} clips", file=sys.stderr)
    with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "voice"])
        w.writerows(rows)
    print(f"{len(rows)} clips in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

//! Thousands of truncated and corrupted .tflite files: every one must give a typed error or a
//! valid model, never a panic.

use std::path::PathBuf;

use ember_convert::{convert, ConvertOptions};

fn model(name: &str) -> Vec<u8> {
    let dir = match std::env::var_os("EMBER_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    std::fs::read(dir.join("models").join(name)).unwrap()
}

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check(bytes: &[u8], what: &str) {
    let result = std::panic::catch_unwind(|| convert(bytes, &ConvertOptions::default()));
    match result {
        Ok(Ok(emb)) => {
            // Anything accepted must load in the runtime.
            let aligned = ember_runtime::host::AlignedBytes::from_slice(&emb);
            assert!(
                ember_runtime::Model::load(aligned.as_slice()).is_ok(),
                "{what}: converted model does not load"
            );
        }
        Ok(Err(e)) => assert!(!e.to_string().is_empty()),
        Err(_) => panic!("{what}: the converter panicked"),
    }
}

#[test]
fn truncations_never_panic() {
    for name in ["hello_world_int8.tflite", "micro_speech_quantized.tflite"] {
        let bytes = model(name);
        let mut rng = Rng(0x1234_5678);
        let mut lengths: Vec<usize> = (0..bytes.len().min(600)).collect();
        lengths.extend((0..400).map(|_| rng.below(bytes.len())));
        for len in lengths {
            check(&bytes[..len], &format!("{name} cut at {len}"));
        }
    }
}

#[test]
fn bit_flips_and_word_overwrites_never_panic() {
    let models = [
        model("hello_world_int8.tflite"),
        model("micro_speech_quantized.tflite"),
        model("kws_ref_model.tflite"),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    for round in 0..3000 {
        let source = &models[round % models.len()];
        let mut bytes = source.clone();
        // Most structure (vtables, offsets, shapes) sits outside the big weight buffers:
        // aim half the mutations at the first and last 2 KiB.
        let pick = |rng: &mut Rng, len: usize| {
            if rng.below(2) == 0 {
                let edge = rng.below(2048.min(len));
                if rng.below(2) == 0 {
                    edge
                } else {
                    len - 1 - edge
                }
            } else {
                rng.below(len)
            }
        };
        match rng.below(3) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = pick(&mut rng, bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = pick(&mut rng, bytes.len() - 4);
                let word = match rng.below(4) {
                    0 => u32::MAX,
                    1 => 0,
                    2 => 0x8000_0000,
                    _ => rng.next() as u32,
                };
                bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
            }
            _ => {
                let at = pick(&mut rng, bytes.len());
                bytes[at] = rng.next() as u8;
            }
        }
        let outcome = convert(&bytes, &ConvertOptions::default());
        if outcome.is_err() {
            errors += 1;
        }
        check(&bytes, &format!("mutation round {round}"));
    }
    // The mutations must actually reach the parser's error paths.
    assert!(errors > 100, "only {errors} mutants were rejected");
}

#[test]
fn garbage_is_rejected_with_a_typed_error() {
    assert!(convert(b"", &ConvertOptions::default()).is_err());
    assert!(convert(b"EMBR\x01\x00\x20\x00", &ConvertOptions::default()).is_err());
    let mut not_tflite = model("hello_world_int8.tflite");
    not_tflite[4..8].copy_from_slice(b"XXXX");
    let err = convert(&not_tflite, &ConvertOptions::default()).unwrap_err();
    assert!(err.to_string().contains("TFL3"), "{err}");
}

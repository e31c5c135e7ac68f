//! Front-end tests: tables against their defining formulas, invariants of the pipeline, and
//! streaming against offline on the shared recordings.

use std::vec;
use std::vec::Vec;

use super::*;

const AUDIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/audio/");

fn read_clip(name: &str) -> Vec<i16> {
    let bytes = std::fs::read(std::format!("{AUDIO}{name}"))
        .expect("shared/audio must be present next to the repository");
    Wav::parse(&bytes).expect("valid WAV").samples().collect()
}

fn kws_features(clip: &[i16]) -> Vec<f32> {
    let config = FrontendConfig::mlperf_kws();
    let mut ws = vec![0.0f32; config.workspace_len()];
    let mut fe = Frontend::new(&config, &mut ws).unwrap();
    let mut out = vec![0.0f32; config.feature_len()];
    fe.process_clip(clip, &mut out).unwrap();
    out
}

#[test]
fn config_round_trips_through_metadata_and_rejects_garbage() {
    let config = FrontendConfig::mlperf_kws();
    let mut buf = [0u8; 64];
    let bytes = config.encode(&mut buf).unwrap().to_vec();
    assert_eq!(bytes[0], CONFIG_VERSION);
    assert_eq!(FrontendConfig::from_metadata(&bytes), Ok(config));
    assert_eq!(config.to_metadata(), bytes);
    assert_eq!(
        FrontendConfig::from_metadata(&bytes[..bytes.len() - 3]),
        Err(FrontendError::BadMetadata)
    );
    let mut newer = bytes.clone();
    newer[0] = CONFIG_VERSION + 1;
    assert_eq!(
        FrontendConfig::from_metadata(&newer),
        Err(FrontendError::BadMetadata)
    );
    assert_eq!(
        FrontendConfig::from_metadata(&[]),
        Err(FrontendError::BadMetadata)
    );
}

#[test]
fn validate_names_the_bad_field() {
    let ok = FrontendConfig::mlperf_kws();
    assert_eq!(ok.validate(), Ok(()));
    let field_of = |c: FrontendConfig| match c.validate() {
        Err(FrontendError::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(field_of(FrontendConfig { fft_len: 480, ..ok }), "fft_len");
    assert_eq!(
        field_of(FrontendConfig {
            fft_len: 2048,
            ..ok
        }),
        "fft_len"
    );
    assert_eq!(
        field_of(FrontendConfig {
            window_len: 600,
            ..ok
        }),
        "window_len"
    );
    assert_eq!(field_of(FrontendConfig { hop_len: 0, ..ok }), "hop_len");
    assert_eq!(
        field_of(FrontendConfig {
            mel_bins: 129,
            ..ok
        }),
        "mel_bins"
    );
    assert_eq!(
        field_of(FrontendConfig {
            upper_hz: 9000.0,
            ..ok
        }),
        "lower_hz/upper_hz"
    );
    assert_eq!(
        field_of(FrontendConfig {
            lower_hz: f32::NAN,
            ..ok
        }),
        "lower_hz/upper_hz"
    );
    assert_eq!(
        field_of(FrontendConfig {
            mfcc_count: 41,
            ..ok
        }),
        "mfcc_count"
    );
    assert_eq!(field_of(FrontendConfig { frames: 0, ..ok }), "frames");
    let mut small = vec![0.0f32; ok.workspace_len() - 1];
    assert!(matches!(
        Frontend::new(&ok, &mut small),
        Err(FrontendError::WorkspaceTooSmall { .. })
    ));
}

#[test]
fn kws_geometry() {
    let c = FrontendConfig::mlperf_kws();
    assert_eq!(
        (c.frames, c.coeffs_per_frame(), c.feature_len()),
        (49, 10, 490)
    );
    assert_eq!(c.span_samples(), 15840);
    assert_eq!(c.spectrum_bins(), 257);
    // Statically sized buffers compile from the const fn.
    let buffers = FrontendBuffers::<{ FrontendConfig::mlperf_kws().workspace_len() }>::new();
    assert_eq!(buffers.floats.len(), c.workspace_len());
}

#[test]
fn periodic_hann_known_values() {
    let mut w = [0.0f32; 8];
    fill_window(WindowKind::HannPeriodic, &mut w);
    // 0.5 - 0.5 cos(2 pi n / 8): 0, 0.1464, 0.5, 0.8536, 1, 0.8536, 0.5, 0.1464.
    let want = [
        0.0,
        0.146_446_6,
        0.5,
        0.853_553_4,
        1.0,
        0.853_553_4,
        0.5,
        0.146_446_6,
    ];
    for (g, w) in w.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    let mut s = [0.0f32; 5];
    fill_window(WindowKind::HannSymmetric, &mut s);
    assert!(s[0].abs() < 1e-7 && (s[2] - 1.0).abs() < 1e-7 && s[4].abs() < 1e-7);
}

#[test]
fn dct_matches_tensorflow_mfcc_scaling() {
    let n = 40;
    let mut table = vec![0.0f32; 10 * n];
    fill_dct(n, 10, &mut table);
    // Row 0 is 2 / sqrt(2N) = sqrt(2 / N) (HTK scaling, not the orthonormal 1 / sqrt(N)).
    for v in &table[..n] {
        assert!((v - (2.0f32 / n as f32).sqrt()).abs() < 1e-6);
    }
    // Row k, column i: sqrt(2/N) cos(pi k (2i + 1) / 2N).
    let (k, i) = (3, 7);
    let want = (2.0f64 / n as f64).sqrt()
        * (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2 * n) as f64).cos();
    assert!((table[k * n + i] as f64 - want).abs() < 1e-6);
    // Rows k >= 1 have norm 1 and are orthogonal to each other and to row 0.
    for a in 0..10 {
        for b in 0..10 {
            let dot: f32 = (0..n).map(|i| table[a * n + i] * table[b * n + i]).sum();
            let want = match (a, b) {
                (0, 0) => 2.0,
                _ if a == b => 1.0,
                _ => 0.0,
            };
            assert!((dot - want).abs() < 1e-5, "rows {a},{b}: {dot}");
        }
    }
}

#[test]
fn quantize_rounding_modes() {
    let q = QuantParams {
        scale: 0.5,
        zero_point: 10,
    };
    use QuantRounding::*;
    assert_eq!(quantize(1.25, q, Nearest), 13); // 2.5 rounds away from zero
    assert_eq!(quantize(-1.25, q, Nearest), 7);
    assert_eq!(quantize(1.25, q, TruncateTowardZero), 12); // trunc(12.5)
    assert_eq!(quantize(-6.2, q, TruncateTowardZero), -2); // trunc(-2.4)
    assert_eq!(quantize(1000.0, q, Nearest), 127);
    assert_eq!(quantize(-1000.0, q, TruncateTowardZero), -128);
    assert_eq!(quantize(f32::NAN, q, Nearest), 10);
    let mut out = [0i8; 2];
    assert!(quantize_features(&[0.0; 3], q, Nearest, &mut out).is_err());
}

#[test]
fn sine_lands_in_the_mel_band_that_covers_its_frequency() {
    // Log-mel output of a 1 kHz tone: the largest band is the one whose center is nearest.
    let config = FrontendConfig {
        mfcc_count: 0,
        sample_scale: SampleScale::FullScale,
        frames: 1,
        ..FrontendConfig::mlperf_kws()
    };
    let mut ws = vec![0.0f32; config.workspace_len()];
    let mut fe = Frontend::new(&config, &mut ws).unwrap();
    let frame: Vec<f32> = (0..480)
        .map(|t| (2.0 * std::f32::consts::PI * 1000.0 * t as f32 / 16000.0).sin() * 0.5)
        .collect();
    let mut out = vec![0.0f32; 40];
    fe.process_frame(&frame, &mut out).unwrap();
    let best = (0..40).max_by(|&a, &b| out[a].total_cmp(&out[b])).unwrap();
    let lo = mel::hz_to_mel(20.0);
    let step = (mel::hz_to_mel(4000.0) - lo) / 41.0;
    let centers: Vec<f32> = (0..40).map(|m| lo + (m as f32 + 1.0) * step).collect();
    let nearest = (0..40)
        .min_by(|&a, &b| {
            (centers[a] - mel::hz_to_mel(1000.0))
                .abs()
                .total_cmp(&(centers[b] - mel::hz_to_mel(1000.0)).abs())
        })
        .unwrap();
    assert!(
        best.abs_diff(nearest) <= 1,
        "peak band {best}, expected ~{nearest}"
    );
    // Bands far from 1 kHz only see window leakage: far below the peak.
    assert!(out[39] < out[best] - 5.0);
}

#[test]
fn silence_gives_log_offset_everywhere() {
    let config = FrontendConfig::mlperf_kws();
    let clip = vec![0i16; 16000];
    let f = kws_features(&clip);
    // ln(1e-6) in every band -> c0 = sqrt(2/40) * 40 * ln(1e-6), other coefficients 0.
    let c0 = (2.0f32 / 40.0).sqrt() * 40.0 * (1e-6f32).ln();
    for frame in f.chunks_exact(config.coeffs_per_frame()) {
        assert!((frame[0] - c0).abs() < 1e-3, "{} vs {c0}", frame[0]);
        assert!(frame[1..].iter().all(|v| v.abs() < 1e-3));
    }
}

#[test]
fn peak_scaling_makes_features_independent_of_volume() {
    // Doubling is exact in i16 (peak 8245) and in f32, so s / peak is bit-identical.
    let clip = read_clip("no_1000ms.wav");
    let louder: Vec<i16> = clip.iter().map(|&s| s * 2).collect();
    assert_eq!(kws_features(&clip), kws_features(&louder));
    // Without peak scaling the same change moves every frame (a test that can fail).
    let config = FrontendConfig {
        sample_scale: SampleScale::FullScale,
        ..FrontendConfig::mlperf_kws()
    };
    let mut ws = vec![0.0f32; config.workspace_len()];
    let mut fe = Frontend::new(&config, &mut ws).unwrap();
    let (mut a, mut b) = (vec![0.0f32; 490], vec![0.0f32; 490]);
    fe.process_clip(&clip, &mut a).unwrap();
    fe.process_clip(&louder, &mut b).unwrap();
    assert!(a.chunks(10).zip(b.chunks(10)).all(|(x, y)| y[0] > x[0]));
}

#[test]
fn streaming_matches_offline_on_real_audio_in_odd_chunks() {
    let config = FrontendConfig::mlperf_kws();
    for name in ["yes_1000ms.wav", "no_1000ms.wav", "noise_1000ms.wav"] {
        let clip = read_clip(name);
        // Offline uses the whole clip's peak; streaming uses the frames' span, so compare on
        // a clip cut to the span (same peak by construction).
        let span = &clip[..config.span_samples()];
        let offline = kws_features(span);
        let mut ws = vec![0.0f32; config.streaming_workspace_len()];
        let mut window = vec![0i16; config.window_len as usize];
        let mut stream = StreamingFrontend::new(&config, &mut ws, &mut window).unwrap();
        let mut out = vec![0.0f32; config.feature_len()];
        assert!(matches!(
            stream.features(&mut out),
            Err(FrontendError::NotReady { .. })
        ));
        // Lead-in of other audio that must scroll out of the ring, then the clip in odd chunks.
        let lead_in: Vec<i16> = (0..5000)
            .map(|i| ((i * 7919) % 20000 - 10000) as i16)
            .collect();
        stream.push(&lead_in);
        let mut frames = 0;
        for chunk in span.chunks(123) {
            frames += stream.push(chunk);
        }
        assert!(frames >= 49);
        // Realign: the lead-in leaves a partial window; restart cleanly instead.
        stream.reset();
        for chunk in span.chunks(123) {
            stream.push(chunk);
        }
        assert_eq!(stream.frames_seen(), 49);
        stream.features(&mut out).unwrap();
        for (i, (s, o)) in out.iter().zip(&offline).enumerate() {
            assert!(
                (s - o).abs() <= 1e-3 * o.abs().max(1.0),
                "{name} feature {i}: stream {s} offline {o}"
            );
        }
    }
}

#[test]
fn streaming_ring_keeps_the_latest_frames() {
    // Push 2 s; the features must equal those of the last span of it, computed offline.
    let config = FrontendConfig {
        sample_scale: SampleScale::FullScale,
        ..FrontendConfig::mlperf_kws()
    };
    let mut audio = read_clip("noise_1000ms.wav");
    audio.extend(read_clip("yes_1000ms.wav"));
    let mut ws = vec![0.0f32; config.streaming_workspace_len()];
    let mut window = vec![0i16; config.window_len as usize];
    let mut stream = StreamingFrontend::new(&config, &mut ws, &mut window).unwrap();
    let frames = stream.push(&audio);
    let hop = config.hop_len as usize;
    let last_start = (frames - 49) * hop;
    let mut out = vec![0.0f32; config.feature_len()];
    stream.features(&mut out).unwrap();
    let mut ws2 = vec![0.0f32; config.workspace_len()];
    let mut fe = Frontend::new(&config, &mut ws2).unwrap();
    let mut offline = vec![0.0f32; config.feature_len()];
    fe.process_clip(&audio[last_start..], &mut offline).unwrap();
    for (s, o) in out.iter().zip(&offline) {
        assert!((s - o).abs() <= 1e-4 * o.abs().max(1.0), "{s} vs {o}");
    }
}

/// Writes the KWS features of the shared recordings for `scripts/frontend/check_kws.py`
/// (little-endian f32, 49 x 10, plus the streaming result). Run by the script, not by CI:
/// `EMBER_FRONTEND_DUMP_DIR=dir cargo test -p ember-runtime --lib frontend::tests::dump -- --ignored`
#[test]
#[ignore = "tool for scripts/frontend/check_kws.py"]
fn dump_kws_features_for_python_check() {
    let dir = std::env::var("EMBER_FRONTEND_DUMP_DIR").expect("set EMBER_FRONTEND_DUMP_DIR");
    let config = FrontendConfig::mlperf_kws();
    for name in ["yes", "no", "silence", "noise"] {
        let clip = read_clip(&std::format!("{name}_1000ms.wav"));
        let features = kws_features(&clip);
        let bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(std::format!("{dir}/{name}.f32"), bytes).unwrap();
        let mut ws = vec![0.0f32; config.streaming_workspace_len()];
        let mut window = vec![0i16; config.window_len as usize];
        let mut stream = StreamingFrontend::new(&config, &mut ws, &mut window).unwrap();
        stream.push(&clip[..config.span_samples()]);
        let mut out = vec![0.0f32; config.feature_len()];
        stream.features(&mut out).unwrap();
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(std::format!("{dir}/{name}.stream.f32"), bytes).unwrap();
    }
}

/// Host timing of one KWS frame (window + FFT + mel + log + DCT); prints, asserts nothing.
/// `cargo test -p ember-runtime --release --lib frontend::tests::time_per_frame -- --ignored --nocapture`
#[test]
#[ignore = "timing report, not a check"]
fn time_per_frame() {
    let config = FrontendConfig::mlperf_kws();
    let clip = read_clip("yes_1000ms.wav");
    let mut ws = vec![0.0f32; config.workspace_len()];
    let mut fe = Frontend::new(&config, &mut ws).unwrap();
    let mut out = vec![0.0f32; config.feature_len()];
    let runs = 200;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        fe.process_clip(&clip, &mut out).unwrap();
    }
    let per_frame = start.elapsed().as_secs_f64() / (runs * 49) as f64;
    std::println!("{:.2} us per frame", per_frame * 1e6);
}

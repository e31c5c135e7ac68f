//! End to end: WAV -> ember front end (MLPerf Tiny KWS features) -> int8 -> the MLPerf KWS
//! model converted by `ember_convert::convert` and run by ember -> label.
//!
//! Fails until the converter handles the KWS model: that is a real requirement, not a skip.
//! The features themselves are checked against a NumPy reference and TFLite's reference
//! interpreter by `python3 scripts/frontend/check_kws.py`.

use ember_convert::{convert, ConvertOptions};
use ember_runtime::format::meta_keys;
use ember_runtime::frontend::{Frontend, FrontendConfig, StreamingFrontend, Wav};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/");
const LABELS: [&str; 12] = [
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
];

/// The converted KWS model with its labels and front-end config in the metadata.
fn kws_model_bytes() -> AlignedBytes {
    let tflite = std::fs::read(format!("{SHARED}models/kws_ref_model.tflite"))
        .expect("shared/models must be present next to the repository");
    let options = ConvertOptions {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata: vec![(
            meta_keys::FRONTEND.to_string(),
            FrontendConfig::mlperf_kws().to_metadata(),
        )],
    };
    let emb = convert(&tflite, &options)
        .unwrap_or_else(|e| panic!("ember_convert::convert failed on the KWS model: {e}"));
    AlignedBytes::from_slice(&emb)
}

fn clip(name: &str) -> Vec<i16> {
    let bytes = std::fs::read(format!("{SHARED}audio/{name}_1000ms.wav")).expect("shared audio");
    Wav::parse(&bytes)
        .expect("16-bit mono WAV")
        .samples()
        .collect()
}

/// Labels one clip, offline and streaming; both paths must agree on the label.
fn classify(model: &Model<'_>, samples: &[i16]) -> (String, Vec<i8>) {
    let config = FrontendConfig::from_metadata(
        model
            .metadata(meta_keys::FRONTEND)
            .expect("model carries its front-end config"),
    )
    .expect("valid front-end metadata");
    let input = &model.inputs()[0];
    assert_eq!(
        input.elements(),
        config.feature_len(),
        "model input vs front end"
    );
    let quant = input.quant.expect("int8 input has quantization parameters");

    let mut workspace = vec![0.0f32; config.workspace_len()];
    let mut frontend = Frontend::new(&config, &mut workspace).expect("front end");
    let mut features = vec![0.0f32; config.feature_len()];
    let mut quantized = vec![0i8; config.feature_len()];
    frontend
        .process_clip_quantized(samples, quant, &mut features, &mut quantized)
        .expect("features");
    let run = |q: &[i8]| -> Vec<i8> {
        let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        let outputs = run_once(model, &[&bytes]).expect("model runs");
        outputs[0].iter().map(|&b| b as i8).collect()
    };
    let scores = run(&quantized);

    // Streaming over the frames' span gives the same label.
    let mut stream_ws = vec![0.0f32; config.streaming_workspace_len()];
    let mut window = vec![0i16; config.window_len as usize];
    let mut stream = StreamingFrontend::new(&config, &mut stream_ws, &mut window).unwrap();
    for chunk in samples[..config.span_samples()].chunks(160) {
        stream.push(chunk);
    }
    stream.features(&mut features).expect("a full input");
    let mut streamed = vec![0i8; config.feature_len()];
    ember_runtime::frontend::quantize_features(
        &features,
        quant,
        config.quant_rounding,
        &mut streamed,
    )
    .unwrap();
    let stream_scores = run(&streamed);

    let labels: Vec<&str> = model.labels().collect();
    let top = |s: &[i8]| {
        labels[(0..s.len())
            .max_by_key(|&i| (s[i], usize::MAX - i))
            .unwrap()]
    };
    assert_eq!(
        top(&scores),
        top(&stream_scores),
        "offline vs streaming label"
    );
    eprintln!("ember scores: {scores:?}");
    (top(&scores).to_string(), scores)
}

#[test]
fn kws_labels_the_shared_recordings() {
    let bytes = kws_model_bytes();
    let model = Model::load(bytes.as_slice()).expect("converted model loads");
    assert_eq!(model.labels().collect::<Vec<_>>(), LABELS);
    let cases: [(&str, &[&str]); 3] = [
        ("yes", &["yes"]),
        ("silence", &["silence"]),
        ("noise", &["silence", "unknown"]),
    ];
    for (name, allowed) in cases {
        let (label, scores) = classify(&model, &clip(name));
        assert!(
            allowed.contains(&label.as_str()),
            "{name}_1000ms.wav labelled {label}, expected one of {allowed:?}; scores {scores:?}"
        );
    }
}

/// `no_1000ms.wav`: with features that match the MLPerf pipeline (NumPy reference agrees to
/// 5e-5), TFLite's own reference interpreter labels this clip "go" (int8: go 106, no -108; the
/// float32 model: go 0.94, no 0.05). See docs/FRONTEND.md. This pins that ember agrees with
/// TFLite: "go" first, "no" second.
#[test]
fn kws_no_recording_matches_tflite_go_no_confusion() {
    let bytes = kws_model_bytes();
    let model = Model::load(bytes.as_slice()).expect("converted model loads");
    let (label, scores) = classify(&model, &clip("no"));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(scores[i]));
    assert_eq!(label, "go", "scores {scores:?}");
    assert_eq!(LABELS[order[1]], "no", "scores {scores:?}");
}

/// The brief's requirement, kept visible: fails with the reference model (see above).
#[test]
#[ignore = "the MLPerf reference model itself labels this clip 'go' (TFLite BUILTIN_REF agrees); see docs/FRONTEND.md"]
fn kws_labels_no_recording_as_no() {
    let bytes = kws_model_bytes();
    let model = Model::load(bytes.as_slice()).expect("converted model loads");
    let (label, scores) = classify(&model, &clip("no"));
    assert_eq!(label, "no", "scores {scores:?}");
}

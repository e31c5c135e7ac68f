//! The committed burn models, checked on ember alone (no burn build): see the crate docs.

use ember_models_check::{
    argmax, committed_models, goldens, models_dir, mse, number, point_scores, read_series,
    read_text, recording_expectations, roc_auc, shared_dir, table_row, LoadedModel, StepHistogram,
};
use ember_runtime::frontend::{Frontend, Wav};
use ember_runtime::DType;

/// ember's float32 path may differ from burn by this share of `max(1, output range)`.
const FLOAT_TOLERANCE: f64 = 1e-4;
/// At least this share of int8 output elements lies within one quantization step of burn's.
const MIN_WITHIN_ONE_STEP: f64 = 0.85;
/// Accuracy on the test split must reproduce results.md within this many points.
const ACCURACY_POINTS: f64 = 0.5;
/// ROC AUC must reproduce results.md within this.
const AUC_TOLERANCE: f64 = 0.005;

#[test]
fn every_committed_model_loads_with_its_metadata() {
    let models = committed_models().unwrap();
    assert!(
        models.len() >= 8,
        "expected int8 + float32 .emb for kws, two IMU models and the autoencoder, found {models:?}"
    );
    for path in &models {
        let loaded = LoadedModel::open(path).unwrap_or_else(|e| panic!("{e}"));
        let model = loaded.model().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let labels: Vec<&str> = model.labels().collect();
        let outputs = model.outputs()[0].shape.last();
        let folder = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        if folder == "anomaly" {
            // A reconstruction: the labels name the classes of its test windows.
            assert_eq!(labels, ["normal", "anomaly"], "{name}");
        } else {
            assert_eq!(labels.len(), outputs, "{name}: one label per output");
        }
        let float = name.ends_with("_f32.emb");
        let dtype = if float { DType::F32 } else { DType::I8 };
        assert_eq!(model.inputs()[0].dtype, dtype, "{name} input");
        assert_eq!(model.outputs()[0].dtype, dtype, "{name} output");
        if !float {
            loaded.input_quant().unwrap();
            loaded.output_quant().unwrap();
        }
        let frontend = loaded.frontend().unwrap();
        if folder == "kws" {
            let frontend = frontend.unwrap_or_else(|| panic!("{name}: no front end"));
            let input = model.inputs()[0].elements();
            assert_eq!(
                frontend.feature_len(),
                input,
                "{name}: front end feeds the input"
            );
            assert_eq!(
                labels,
                [
                    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
                    "silence", "unknown"
                ],
                "{name}"
            );
        } else {
            assert!(frontend.is_none(), "{name}: unexpected front end");
        }
    }
}

#[test]
fn ember_float_path_matches_burn() {
    let goldens = goldens().unwrap();
    assert!(goldens.len() >= 4, "golden files: {}", goldens.len());
    for (path, golden) in &goldens {
        let dir = path.parent().unwrap();
        let float = LoadedModel::open(&dir.join(&golden.float_emb)).unwrap();
        let limit = FLOAT_TOLERANCE * (golden.output_range() as f64).max(1.0);
        let mut worst = 0f64;
        for (input, expected) in golden.inputs.iter().zip(&golden.burn_outputs) {
            let ours = float.run_f32(input).unwrap();
            assert_eq!(ours.len(), expected.len(), "{}", golden.model);
            for (a, b) in ours.iter().zip(expected) {
                worst = worst.max((a - b).abs() as f64);
            }
        }
        println!(
            "{}: ember float32 vs burn max abs diff {worst:.3e} (limit {limit:.1e}, {} inputs)",
            golden.model,
            golden.inputs.len()
        );
        assert!(
            worst <= limit,
            "{}: ember float32 differs from burn by {worst} > {limit}; regenerate with `ember-models reference` after retraining",
            golden.model
        );
    }
}

#[test]
fn int8_outputs_stay_within_one_step_of_burn() {
    for (path, golden) in &goldens().unwrap() {
        let dir = path.parent().unwrap();
        let int8 = LoadedModel::open(&dir.join(&golden.int8_emb)).unwrap();
        let scale = int8.output_quant().unwrap().scale;
        let mut histogram = StepHistogram::default();
        for (input, expected) in golden.inputs.iter().zip(&golden.burn_outputs) {
            for (q, f) in int8.run_int8(input).unwrap().iter().zip(expected) {
                histogram.add(*q, *f, scale);
            }
        }
        println!(
            "{}: int8 vs burn in output steps: {histogram:?} ({:.1}% within one)",
            golden.model,
            100.0 * histogram.within_one()
        );
        assert!(
            histogram.within_one() >= MIN_WITHIN_ONE_STEP,
            "{}: only {:.1}% of int8 outputs within one step of burn: {histogram:?}",
            golden.model,
            100.0 * histogram.within_one()
        );
    }
}

#[test]
fn imu_test_accuracy_matches_results() {
    for folder in ["imu-basicmotions", "imu-pickup"] {
        let dir = models_dir().join(folder);
        let golden = ember_models_check::Golden::load(&dir.join("float_golden.json")).unwrap();
        let results = read_text(&dir.join("results.md")).unwrap();
        let row = table_row(&results, "test").unwrap_or_else(|| panic!("{folder}: no test row"));
        let examples: usize = row[1].parse().unwrap();
        let stated = number(row.last().unwrap()).unwrap();
        assert_eq!(golden.split, "test");
        assert_eq!(
            golden.inputs.len(),
            examples,
            "{folder}: the golden file must hold the whole test split"
        );
        let int8 = LoadedModel::open(&dir.join(&golden.int8_emb)).unwrap();
        let correct = golden
            .inputs
            .iter()
            .zip(&golden.labels)
            .filter(|(input, &label)| argmax(&int8.run_int8(input).unwrap()) == label)
            .count();
        let accuracy = 100.0 * correct as f64 / examples as f64;
        println!("{folder}: int8 test accuracy {accuracy:.2}% (results.md {stated:.2}%)");
        assert!(
            (accuracy - stated).abs() <= ACCURACY_POINTS,
            "{folder}: int8 test accuracy {accuracy:.2}% vs {stated:.2}% in results.md"
        );
    }
}

#[test]
fn anomaly_auc_matches_results() {
    let dir = models_dir().join("anomaly");
    let results = read_text(&dir.join("results.md")).unwrap();
    let series = read_series(&dir.join("test_series.csv")).unwrap();
    let model = LoadedModel::open(&dir.join("anomaly.emb")).unwrap();
    let input_len = model.model().unwrap().inputs()[0].elements();
    let channels = series.values.first().map(Vec::len).unwrap();
    let window = input_len / channels;
    let starts = series.values.len() - window + 1;
    let mut scores = Vec::with_capacity(starts);
    let mut window_labels = Vec::with_capacity(starts);
    for start in 0..starts {
        let input: Vec<f32> = series.values[start..start + window]
            .iter()
            .flatten()
            .copied()
            .collect();
        scores.push(mse(&model.run_int8(&input).unwrap(), &input));
        window_labels.push(series.anomalous[start..start + window].iter().any(|&a| a));
    }
    let window_auc = roc_auc(&scores, &window_labels).unwrap();
    let points = point_scores(&scores, window, series.values.len());
    let point_auc = roc_auc(&points, &series.anomalous).unwrap();
    let row = table_row(&results, "int8 (ember)").expect("int8 row in anomaly/results.md");
    let (stated_window, stated_point) = (number(&row[1]).unwrap(), number(&row[2]).unwrap());
    println!(
        "anomaly: int8 window AUC {window_auc:.4} (stated {stated_window}), point AUC {point_auc:.4} (stated {stated_point})"
    );
    assert!((window_auc - stated_window).abs() <= AUC_TOLERANCE);
    assert!((point_auc - stated_point).abs() <= AUC_TOLERANCE);
}

#[test]
fn kws_recordings_match_results() {
    let dir = models_dir().join("kws");
    let results = read_text(&dir.join("results.md")).unwrap();
    let expectations = recording_expectations(&results);
    assert!(
        !expectations.is_empty(),
        "kws/results.md names no recordings"
    );
    let model = LoadedModel::open(&dir.join("kws.emb")).unwrap();
    let config = model
        .frontend()
        .unwrap()
        .expect("kws.emb carries its front end");
    let labels: Vec<String> = model.model().unwrap().labels().map(str::to_owned).collect();
    for (file, expected) in expectations {
        let path = shared_dir().join("audio").join(&file);
        let bytes = ember_models_check::read(&path).unwrap();
        let wav = Wav::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let clip: Vec<i16> = wav.samples().collect();
        let mut workspace = vec![0f32; config.workspace_len()];
        let mut frontend = Frontend::new(&config, &mut workspace).unwrap();
        let mut features = vec![0f32; config.feature_len()];
        frontend.process_clip(&clip, &mut features).unwrap();
        let scores = model.run_int8(&features).unwrap();
        let got = &labels[argmax(&scores)];
        println!("{file}: {got} (results.md: {expected})");
        assert_eq!(got, &expected, "{file}");
    }
}

/// Issue bars for the committed keyword model (int8, ember): held-out espeak-ng and flite voices,
/// and the most accuracy quantization may cost against burn's float model.
const KWS_MIN_ESPEAK: f64 = 95.0;
const KWS_MIN_FLITE: f64 = 80.0;
const KWS_MAX_QUANTIZATION_LOSS: f64 = 1.0;

/// The held-out test splits, committed as int8 model inputs by `models/data/kws_test_set.py`:
/// `EMBKWSTS`, u32 count, then per example split (0 espeak, 1 flite), label, 490 int8 features.
fn kws_test_set() -> Vec<(u8, u8, Vec<u8>)> {
    let bytes = ember_models_check::read(&models_dir().join("kws/test_set.bin")).unwrap();
    assert_eq!(&bytes[..8], b"EMBKWSTS", "kws/test_set.bin: bad magic");
    let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let records: Vec<_> = bytes[12..]
        .chunks(2 + 490)
        .map(|r| (r[0], r[1], r[2..].to_vec()))
        .collect();
    assert_eq!(records.len(), count, "kws/test_set.bin: truncated");
    assert!(records.iter().all(|r| r.2.len() == 490));
    records
}

#[test]
fn kws_held_out_accuracy_matches_results_and_meets_the_bars() {
    let dir = models_dir().join("kws");
    let results = read_text(&dir.join("results.md")).unwrap();
    let loaded = LoadedModel::open(&dir.join("kws.emb")).unwrap();
    let model = loaded.model().unwrap();
    let mut correct = [0usize; 2];
    let mut total = [0usize; 2];
    for (split, label, input) in kws_test_set() {
        let out = ember_runtime::host::run_once(&model, &[&input]).unwrap();
        let scores: Vec<f32> = out[0].iter().map(|&b| b as i8 as f32).collect();
        total[split as usize] += 1;
        correct[split as usize] += usize::from(argmax(&scores) == label as usize);
    }
    for (index, split, bar) in [
        (0, "test_espeak", KWS_MIN_ESPEAK),
        (1, "test_flite", KWS_MIN_FLITE),
    ] {
        let accuracy = 100.0 * correct[index] as f64 / total[index] as f64;
        let row = table_row(&results, split).unwrap_or_else(|| panic!("no {split} row"));
        let stated = number(row.last().unwrap()).unwrap();
        let float = number(&row[2]).unwrap();
        println!(
            "{split}: int8 {accuracy:.2}% over {} (results.md {stated}%, float burn {float}%)",
            total[index]
        );
        assert_eq!(
            row[1].trim().parse::<usize>().unwrap(),
            total[index],
            "{split} count"
        );
        assert!(
            (accuracy - stated).abs() <= ACCURACY_POINTS,
            "{split}: measured {accuracy:.2}%, results.md says {stated}%"
        );
        assert!(accuracy >= bar, "{split}: {accuracy:.2}% is under {bar}%");
        assert!(
            float - accuracy <= KWS_MAX_QUANTIZATION_LOSS,
            "{split}: int8 loses {:.2} points to float",
            float - accuracy
        );
    }
}

/// Whatever results.md says, the real recordings must be named (issue #4).
#[test]
fn kws_names_the_real_yes_and_no() {
    let results = read_text(&models_dir().join("kws/results.md")).unwrap();
    let expectations = recording_expectations(&results);
    for (file, word) in [("yes_1000ms.wav", "yes"), ("no_1000ms.wav", "no")] {
        assert!(
            expectations.contains(&(file.to_string(), word.to_string())),
            "kws/results.md must list {file} -> {word}: {expectations:?}"
        );
    }
}

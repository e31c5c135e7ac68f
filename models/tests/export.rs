//! The exporter's pieces checked against burn itself and against ember's runtime.

use burn::module::Module;
use burn::tensor::Device;
use ember_models::export::{self, Calibration, FoldedNet};
use ember_models::model::{DsCnn, DsCnnShape};
use ember_models::rng::Rng;
use ember_models::table::{Example, Table};
use ember_models::train;
use ember_runtime::frontend::{quantize, QuantRounding};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

fn small_shape() -> DsCnnShape {
    DsCnnShape {
        channels: 8,
        ..DsCnnShape::kws(8)
    }
}

fn random_examples(count: usize, len: usize, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| Example {
            label: i % 12,
            split: "train".into(),
            source: "random".into(),
            features: (0..len).map(|_| rng.uniform(-20.0, 20.0)).collect(),
        })
        .collect()
}

/// A model whose batch norms hold non-trivial statistics: one training step on random data.
fn trained_model(shape: &DsCnnShape, examples: &[Example]) -> DsCnn {
    let refs: Vec<&Example> = examples.iter().collect();
    let options = train::TrainOptions {
        epochs: 1,
        batch: 16,
        learning_rate: 1e-2,
        seed: 3,
    };
    train::train(shape, &refs, &refs[..4], &options)
}

#[test]
fn same_padding_matches_tensorflow() {
    assert_eq!(DsCnnShape::same(49, 10, 2), (4, 5, 25));
    assert_eq!(DsCnnShape::same(10, 4, 2), (1, 1, 5));
    assert_eq!(DsCnnShape::same(25, 3, 1), (1, 1, 25));
    assert_eq!(DsCnnShape::same(100, 5, 2), (1, 2, 50));
}

#[test]
fn shape_text_round_trips() {
    for shape in [DsCnnShape::kws(64), DsCnnShape::imu(100, 6, 4)] {
        assert_eq!(DsCnnShape::from_text(&shape.to_text()), Some(shape));
    }
    assert_eq!(DsCnnShape::from_text("channels=x"), None);
}

#[test]
fn table_round_trips_through_parquet() {
    let table = Table {
        labels: vec!["a".into(), "b".into()],
        shape: vec![3, 2],
        examples: vec![
            Example {
                label: 1,
                split: "train".into(),
                source: "v1".into(),
                features: vec![0.5, -1.0, 2.0, 3.0, 4.0, 5.0],
            },
            Example {
                label: 0,
                split: "test".into(),
                source: "v2".into(),
                features: vec![9.0; 6],
            },
        ],
    };
    let path =
        std::env::temp_dir().join(format!("ember-models-table-{}.parquet", std::process::id()));
    table.write(&path).unwrap();
    let read = Table::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(read, table);
}

#[test]
fn folded_network_matches_burn_and_int8_tracks_float() {
    let shape = small_shape();
    let examples = random_examples(48, 490, 11);
    let model = trained_model(&shape, &examples);
    let folded = FoldedNet::from_burn(&model, &shape);
    let refs: Vec<&Example> = examples.iter().collect();

    // Batch-norm folding and the NCHW -> NHWC weight layout: the folded float network gives
    // burn's logits.
    let device = Device::flex();
    let burn_logits: Vec<f32> = model
        .valid()
        .forward(train::batch_tensor(&refs[..4], &shape, &device))
        .into_data()
        .iter::<f32>()
        .collect();
    for (i, e) in refs[..4].iter().enumerate() {
        let ours = folded.forward(&e.features, |_, _| {});
        for (a, b) in ours.iter().zip(&burn_logits[i * 12..(i + 1) * 12]) {
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "folded {a} vs burn {b}"
            );
        }
    }

    // The int8 model loads, and its argmax mostly agrees with the float network's.
    let inputs: Vec<&[f32]> = refs.iter().map(|e| e.features.as_slice()).collect();
    let ranges = export::calibrate(&folded, &inputs, Calibration::MinMax).unwrap();
    let labels: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    let exported = export::export(&folded, &ranges, None, &labels, None).unwrap();
    let bytes = AlignedBytes::from_slice(&exported.bytes);
    let device_model = Model::load(bytes.as_slice()).unwrap();
    assert_eq!(device_model.arena_size(), exported.arena_bytes);
    let mut agree = 0;
    for e in &refs {
        let input: Vec<u8> = e
            .features
            .iter()
            .map(|&x| quantize(x, exported.input_quant, QuantRounding::Nearest) as u8)
            .collect();
        let out = run_once(&device_model, &[&input]).unwrap();
        let scores: Vec<f32> = out[0].iter().map(|&b| b as i8 as f32).collect();
        let float = folded.forward(&e.features, |_, _| {});
        // Softmax saturates ties at the top; count agreement on the float argmax's score.
        let top = train::argmax(&float);
        if scores[top] >= scores.iter().cloned().fold(f32::MIN, f32::max) {
            agree += 1;
        }
    }
    assert!(
        agree * 10 >= refs.len() * 8,
        "int8 agrees with float on {agree}/{}",
        refs.len()
    );
}

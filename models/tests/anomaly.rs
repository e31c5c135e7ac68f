//! The autoencoder's folding, exports and AUC, checked against burn and ember's runtime.

use ember_models::anomaly::{self, AeShape, FoldedDense};
use ember_models::chain;
use ember_models::rng::Rng;
use ember_models::table::Example;
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

fn windows(count: usize, len: usize, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| Example {
            label: 0,
            split: "train".into(),
            source: format!("train:{i}"),
            features: (0..len)
                .map(|t| ((t + i) as f32 * 0.3).sin() + rng.uniform(-0.1, 0.1))
                .collect(),
        })
        .collect()
}

#[test]
fn roc_auc_counts_ranks_and_ties() {
    assert_eq!(
        anomaly::roc_auc(&[0.1, 0.2, 0.9], &[false, false, true]),
        Some(1.0)
    );
    assert_eq!(
        anomaly::roc_auc(&[0.9, 0.2, 0.1], &[false, false, true]),
        Some(0.0)
    );
    assert_eq!(anomaly::roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
    assert_eq!(anomaly::roc_auc(&[0.5, 0.5], &[false, false]), None);
    assert_eq!(
        anomaly::point_scores(&[1.0, 3.0], 2, 3),
        vec![1.0, 2.0, 3.0]
    );
}

#[test]
fn folded_autoencoder_matches_burn_and_ember_float() {
    let shape = AeShape {
        input: 16,
        hidden: vec![12],
        bottleneck: 4,
    };
    let examples = windows(64, 16, 5);
    let refs: Vec<&Example> = examples.iter().collect();
    let options = anomaly::AeTrainOptions {
        epochs: 2,
        batch: 16,
        learning_rate: 1e-2,
        seed: 3,
    };
    let model = anomaly::train(&shape, &refs, &refs[..8], &options);
    let folded = FoldedDense::from_burn(&model);
    let burn = anomaly::reconstruct(&model, &refs[..8]);
    let labels = vec!["normal".to_owned(), "anomaly".to_owned()];
    let bytes = chain::export_dense_f32(&folded, &labels, "test").unwrap();
    let bytes = AlignedBytes::from_slice(&bytes);
    let float = Model::load(bytes.as_slice()).unwrap();
    for (e, expected) in refs[..8].iter().zip(&burn) {
        let ours = folded.forward(&e.features, |_, _| {});
        let input: Vec<u8> = e.features.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = run_once(&float, &[&input]).unwrap();
        let ember: Vec<f32> = out[0]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for ((a, b), c) in ours.iter().zip(expected).zip(&ember) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "folded {a} vs burn {b}"
            );
            assert!(
                (c - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "ember {c} vs burn {b}"
            );
        }
    }
}

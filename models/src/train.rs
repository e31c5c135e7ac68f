//! Training on burn's autodiff over the CPU backend (burn-flex): Adam, cosine learning-rate
//! decay, fixed seeds, a progress bar per epoch and a metrics line after each epoch.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::{DsCnn, DsCnnShape};
use crate::rng::Rng;
use crate::table::Example;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// Examples as a burn NCHW batch; features are stored NHWC (`[h, w, c]` row-major).
pub fn batch_tensor(examples: &[&Example], shape: &DsCnnShape, device: &Device) -> Tensor<4> {
    let [h, w, c] = shape.input;
    let values: Vec<f32> = examples
        .iter()
        .flat_map(|e| e.features.iter().copied())
        .collect();
    Tensor::<4>::from_data(TensorData::new(values, [examples.len(), h, w, c]), device)
        .permute([0, 3, 1, 2])
}

fn targets(examples: &[&Example], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(labels, [examples.len()]), device)
}

/// Predicted class of every example (inference mode, plain CPU device).
pub fn predict(model: &DsCnn, examples: &[&Example], shape: &DsCnnShape) -> Vec<usize> {
    let device = Device::flex();
    let model = model.valid();
    let mut predictions = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(256) {
        let logits = model.forward(batch_tensor(chunk, shape, &device));
        let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
        for row in values.chunks(shape.classes) {
            predictions.push(argmax(row));
        }
    }
    predictions
}

pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

pub fn accuracy(predictions: &[usize], examples: &[&Example]) -> f64 {
    let correct = predictions
        .iter()
        .zip(examples)
        .filter(|(p, e)| **p == e.label)
        .count();
    correct as f64 / examples.len().max(1) as f64
}

/// Changes one training example's features in place (e.g. SpecAugment masking); drawn anew
/// for every batch.
pub type FeatureAugment = dyn Fn(&mut [f32], &mut Rng);

pub fn train(
    shape: &DsCnnShape,
    train_set: &[&Example],
    val_set: &[&Example],
    options: &TrainOptions,
) -> DsCnn {
    train_with(shape, train_set, val_set, options, None)
}

/// [`train`] with an optional per-batch feature augmentation (its own seeded stream, so the
/// batch order is the same with or without it).
pub fn train_with(
    shape: &DsCnnShape,
    train_set: &[&Example],
    val_set: &[&Example],
    options: &TrainOptions,
    augment: Option<&FeatureAugment>,
) -> DsCnn {
    let device = Device::flex().autodiff();
    device.seed(options.seed);
    let mut model = DsCnn::new(shape, &device);
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = Rng::new(options.seed);
    let mut augment_rng = Rng::new(options.seed.wrapping_add(1));
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let steps_per_epoch = train_set.len().div_ceil(options.batch);
    let total_steps = (steps_per_epoch * options.epochs).max(1);
    let mut step = 0;
    for epoch in 1..=options.epochs {
        rng.shuffle(&mut order);
        let bar = indicatif::ProgressBar::new(steps_per_epoch as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "epoch {msg} [{bar:30}] {pos}/{len} batches ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{epoch}/{}", options.epochs));
        let started = std::time::Instant::now();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for indices in order.chunks(options.batch) {
            let batch: Vec<&Example> = indices.iter().map(|&i| train_set[i]).collect();
            // Cosine decay to 5% of the initial rate.
            let progress = step as f64 / total_steps as f64;
            let lr = options.learning_rate
                * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            let input = match augment {
                Some(augment) => {
                    let changed: Vec<Example> = batch
                        .iter()
                        .map(|&e| {
                            let mut e = e.clone();
                            augment(&mut e.features, &mut augment_rng);
                            e
                        })
                        .collect();
                    let refs: Vec<&Example> = changed.iter().collect();
                    batch_tensor(&refs, shape, &device)
                }
                None => batch_tensor(&batch, shape, &device),
            };
            let logits = model.forward(input);
            let values: Vec<f32> = logits.to_data().iter::<f32>().collect();
            correct += values
                .chunks(shape.classes)
                .zip(&batch)
                .filter(|(row, e)| argmax(row) == e.label)
                .count();
            let loss = loss_fn.forward(logits, targets(&batch, &device));
            loss_sum +=
                loss.to_data().iter::<f32>().next().unwrap_or(0.0) as f64 * batch.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let val_accuracy = accuracy(&predict(&model, val_set, shape), val_set);
        println!(
            "epoch {epoch:>2}/{}: loss {:.4}  train acc {:.2}%  val acc {:.2}%  ({:.0} s)",
            options.epochs,
            loss_sum / train_set.len().max(1) as f64,
            100.0 * correct as f64 / train_set.len().max(1) as f64,
            100.0 * val_accuracy,
            started.elapsed().as_secs_f64()
        );
    }
    model.valid()
}

//! Anomaly detection: a dense autoencoder (the MLPerf Tiny AD shape, Linear + BatchNorm + ReLU
//! layers around a small bottleneck, scaled to the window) trained on normal windows of a real
//! sensor series from the aeon wheel; the anomaly score is the reconstruction MSE.
//!
//! - [`build`]: reads a series out of the wheel (a zip), z-normalizes it with the training
//!   part's statistics and cuts it into labelled windows (a window is anomalous when any of its
//!   points is).
//! - [`DenseAutoencoder`] / [`train`]: the burn network and its MSE training loop.
//! - [`FoldedDense`]: the network after batch-norm folding, as plain float layers; it is
//!   what both the int8 and the float `.emb` are written from.
//! - [`roc_auc`], [`point_scores`]: the evaluation (TimeEval scores points, not windows).

use std::io::Read;
use std::path::Path;

use burn::module::Module;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::Rng;
use crate::table::{Example, Table};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnomalyError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a readable wheel: {source}")]
    Zip {
        path: String,
        source: zip::result::ZipError,
    },
    #[error("{member}: {reason}")]
    Csv { member: String, reason: String },
    #[error("unknown series {0:?} (internal-bleeding16 or daphnet-s06r02e0)")]
    UnknownSeries(String),
    #[error("series too short for window {window}: {points} points")]
    TooShort { window: usize, points: usize },
}

/// The series this module knows how to find inside the aeon 1.6.0 wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// UCR anomaly archive 135 (KDD Cup 2021), univariate: the `_TRAIN` file is the normal
    /// prefix (1,200 points), the `_TEST` file the whole series with the labelled anomaly.
    InternalBleeding16,
    /// Daphnet freezing-of-gait, 9 accelerometer channels at 64 Hz; the first half trains.
    DaphnetS06R02E0,
}

impl Series {
    pub fn parse(name: &str) -> Result<Series, AnomalyError> {
        match name.to_ascii_lowercase().as_str() {
            "internal-bleeding16" | "internalbleeding16" => Ok(Series::InternalBleeding16),
            "daphnet-s06r02e0" | "s06r02e0" => Ok(Series::DaphnetS06R02E0),
            _ => Err(AnomalyError::UnknownSeries(name.to_owned())),
        }
    }
}

const UCR_DIR: &str = "aeon/datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16";
const DAPHNET: &str = "aeon/datasets/data/Daphnet_S06R02E0/S06R02E0.csv";

/// One CSV of the wheel: rows of channel values (every column but `timestamp` and
/// `is_anomaly`) and the anomaly flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    pub channels: Vec<String>,
    pub values: Vec<Vec<f32>>,
    pub anomalous: Vec<bool>,
}

impl Points {
    fn slice(&self, from: usize, to: usize) -> Points {
        let to = to.min(self.values.len());
        let from = from.min(to);
        Points {
            channels: self.channels.clone(),
            values: self.values[from..to].to_vec(),
            anomalous: self.anomalous[from..to].to_vec(),
        }
    }
}

fn read_member(wheel: &Path, member: &str) -> Result<String, AnomalyError> {
    let path = wheel.display().to_string();
    let file = std::fs::File::open(wheel).map_err(|source| AnomalyError::Io {
        path: path.clone(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| AnomalyError::Zip {
        path: path.clone(),
        source,
    })?;
    let mut entry = archive
        .by_name(member)
        .map_err(|source| AnomalyError::Zip {
            path: format!("{path}:{member}"),
            source,
        })?;
    let mut text = String::new();
    entry
        .read_to_string(&mut text)
        .map_err(|source| AnomalyError::Io {
            path: format!("{path}:{member}"),
            source,
        })?;
    Ok(text)
}

/// Parses a TimeEval-style CSV (`timestamp,<channels..>,is_anomaly`).
pub fn parse_csv(member: &str, text: &str) -> Result<Points, AnomalyError> {
    let fail = |reason: String| AnomalyError::Csv {
        member: member.to_owned(),
        reason,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| fail("empty".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let label_column = header
        .iter()
        .position(|h| *h == "is_anomaly")
        .ok_or_else(|| fail("no is_anomaly column".into()))?;
    let channel_columns: Vec<usize> = (0..header.len())
        .filter(|&i| i != label_column && header[i] != "timestamp")
        .collect();
    let mut points = Points {
        channels: channel_columns
            .iter()
            .map(|&i| header[i].to_owned())
            .collect(),
        ..Points::default()
    };
    for (number, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(fail(format!("row {}: {} cells", number + 2, cells.len())));
        }
        let parse = |i: usize| {
            cells[i]
                .parse::<f32>()
                .map_err(|e| fail(format!("row {}: {e}", number + 2)))
        };
        let row = channel_columns
            .iter()
            .map(|&i| parse(i))
            .collect::<Result<Vec<f32>, _>>()?;
        points.values.push(row);
        points.anomalous.push(parse(label_column)? != 0.0);
    }
    Ok(points)
}

/// The training part (normal) and the test part of a series, before normalization.
pub fn load_series(wheel: &Path, series: Series) -> Result<(Points, Points), AnomalyError> {
    match series {
        Series::InternalBleeding16 => {
            let train_name = format!("{UCR_DIR}_TRAIN.csv");
            let test_name = format!("{UCR_DIR}_TEST.csv");
            let train = parse_csv(&train_name, &read_member(wheel, &train_name)?)?;
            let whole = parse_csv(&test_name, &read_member(wheel, &test_name)?)?;
            // The test file repeats the training prefix; score only what follows it.
            let test = whole.slice(train.values.len(), whole.values.len());
            Ok((train, test))
        }
        Series::DaphnetS06R02E0 => {
            let whole = parse_csv(DAPHNET, &read_member(wheel, DAPHNET)?)?;
            let half = whole.values.len() / 2;
            Ok((whole.slice(0, half), whole.slice(half, whole.values.len())))
        }
    }
}

/// Per-channel mean and standard deviation of the training part.
pub fn normalization(train: &Points) -> Vec<(f32, f32)> {
    let channels = train.channels.len();
    let count = train.values.len().max(1) as f64;
    (0..channels)
        .map(|c| {
            let mean = train.values.iter().map(|r| r[c] as f64).sum::<f64>() / count;
            let var = train
                .values
                .iter()
                .map(|r| (r[c] as f64 - mean).powi(2))
                .sum::<f64>()
                / count;
            (mean as f32, (var.sqrt() as f32).max(1e-6))
        })
        .collect()
}

pub fn normalize(points: &Points, stats: &[(f32, f32)]) -> Points {
    let mut out = points.clone();
    for row in &mut out.values {
        for (v, (mean, std)) in row.iter_mut().zip(stats) {
            *v = (*v - mean) / std;
        }
    }
    out
}

/// Windows of `window` points every `stride` points, flattened time-major
/// (`[window, channels]`); `source` is `<prefix>:<first point>`.
pub fn windows(points: &Points, window: usize, stride: usize, prefix: &str) -> Vec<Example> {
    let count = points.values.len();
    if count < window {
        return Vec::new();
    }
    (0..=count - window)
        .step_by(stride.max(1))
        .map(|start| Example {
            label: usize::from(points.anomalous[start..start + window].iter().any(|&a| a)),
            split: String::new(),
            source: format!("{prefix}:{start}"),
            features: points.values[start..start + window]
                .iter()
                .flatten()
                .copied()
                .collect(),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct AdDataOptions {
    pub window: usize,
    pub train_stride: usize,
    /// Share of the training windows held out as `val` (picked with `seed`).
    pub val_share: f64,
    pub seed: u64,
}

/// The window table (splits `train`, `val`: normal windows; `test`: every window of the test
/// part, stride 1) and the normalized test part (for point-wise scoring).
pub fn build(
    wheel: &Path,
    series: Series,
    options: &AdDataOptions,
) -> Result<(Table, Points, Vec<(f32, f32)>), AnomalyError> {
    let (train, test) = load_series(wheel, series)?;
    let stats = normalization(&train);
    let train = normalize(&train, &stats);
    let test = normalize(&test, &stats);
    for part in [&train, &test] {
        if part.values.len() < options.window {
            return Err(AnomalyError::TooShort {
                window: options.window,
                points: part.values.len(),
            });
        }
    }
    let mut train_windows: Vec<Example> =
        windows(&train, options.window, options.train_stride, "train")
            .into_iter()
            .filter(|e| e.label == 0)
            .collect();
    let mut order: Vec<usize> = (0..train_windows.len()).collect();
    Rng::new(options.seed).shuffle(&mut order);
    let val_count = (train_windows.len() as f64 * options.val_share).round() as usize;
    for (rank, &index) in order.iter().enumerate() {
        train_windows[index].split = if rank < val_count { "val" } else { "train" }.into();
    }
    let mut test_windows = windows(&test, options.window, 1, "test");
    for e in &mut test_windows {
        e.split = "test".into();
    }
    let table = Table {
        labels: vec!["normal".into(), "anomaly".into()],
        shape: vec![options.window, train.channels.len()],
        examples: train_windows.into_iter().chain(test_windows).collect(),
    };
    Ok((table, test, stats))
}

/// Writes the normalized test part as CSV (`<channels..>,is_anomaly`).
pub fn write_points_csv(points: &Points, path: &Path) -> std::io::Result<()> {
    let mut text = points.channels.join(",") + ",is_anomaly\n";
    for (row, anomalous) in points.values.iter().zip(&points.anomalous) {
        for v in row {
            text += &format!("{v},");
        }
        text += if *anomalous { "1\n" } else { "0\n" };
    }
    std::fs::write(path, text)
}

pub fn read_points_csv(path: &Path) -> Result<Points, AnomalyError> {
    let text = std::fs::read_to_string(path).map_err(|source| AnomalyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    // Same format as the wheel's CSVs minus the timestamp column.
    parse_csv(&path.display().to_string(), &text)
}

/// Architecture numbers, saved as `shape.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AeShape {
    /// Values per input window (points x channels).
    pub input: usize,
    /// Encoder widths before the bottleneck; the decoder mirrors them.
    pub hidden: Vec<usize>,
    pub bottleneck: usize,
}

impl AeShape {
    /// Every layer's `(inputs, outputs)`; all but the last are Linear + BN + ReLU.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut widths = vec![self.input];
        widths.extend(&self.hidden);
        widths.push(self.bottleneck);
        widths.extend(self.hidden.iter().rev());
        widths.push(self.input);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    pub fn to_text(&self) -> String {
        let hidden: Vec<String> = self.hidden.iter().map(|h| h.to_string()).collect();
        format!(
            "autoencoder input={} hidden={} bottleneck={}",
            self.input,
            hidden.join("x"),
            self.bottleneck
        )
    }

    pub fn from_text(text: &str) -> Option<AeShape> {
        let mut fields = text.split_whitespace();
        if fields.next()? != "autoencoder" {
            return None;
        }
        let mut shape = AeShape {
            input: 0,
            hidden: Vec::new(),
            bottleneck: 0,
        };
        for field in fields {
            let (key, value) = field.split_once('=')?;
            match key {
                "input" => shape.input = value.parse().ok()?,
                "bottleneck" => shape.bottleneck = value.parse().ok()?,
                "hidden" => {
                    shape.hidden = value
                        .split('x')
                        .map(|d| d.parse().ok())
                        .collect::<Option<_>>()?
                }
                _ => return None,
            }
        }
        (shape.input > 0 && shape.bottleneck > 0).then_some(shape)
    }
}

/// Linear (no bias: the batch norm provides one) + batch norm; ReLU in forward.
#[derive(Module, Debug)]
pub struct LinearBn {
    pub linear: Linear,
    pub norm: BatchNorm,
}

#[derive(Module, Debug)]
pub struct DenseAutoencoder {
    pub layers: Vec<LinearBn>,
    /// The reconstruction: a plain linear layer (normalized values are signed).
    pub output: Linear,
}

impl DenseAutoencoder {
    pub fn new(shape: &AeShape, device: &Device) -> Self {
        let sizes = shape.layers();
        let (last_in, last_out) = sizes[sizes.len() - 1];
        DenseAutoencoder {
            layers: sizes[..sizes.len() - 1]
                .iter()
                .map(|&(i, o)| LinearBn {
                    linear: LinearConfig::new(i, o).with_bias(false).init(device),
                    norm: BatchNormConfig::new(o).init(device),
                })
                .collect(),
            output: LinearConfig::new(last_in, last_out).init(device),
        }
    }

    /// `[batch, input]` -> reconstruction `[batch, input]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let mut x = input;
        for layer in &self.layers {
            x = relu(layer.norm.forward(layer.linear.forward(x)));
        }
        self.output.forward(x)
    }
}

pub fn batch_tensor(examples: &[&Example], device: &Device) -> Tensor<2> {
    let width = examples.first().map(|e| e.features.len()).unwrap_or(0);
    let values: Vec<f32> = examples
        .iter()
        .flat_map(|e| e.features.iter().copied())
        .collect();
    Tensor::<2>::from_data(TensorData::new(values, [examples.len(), width]), device)
}

/// burn's reconstruction of every example (inference mode, plain CPU device).
pub fn reconstruct(model: &DenseAutoencoder, examples: &[&Example]) -> Vec<Vec<f32>> {
    let device = Device::flex();
    let model = model.valid();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(512) {
        let values: Vec<f32> = model
            .forward(batch_tensor(chunk, &device))
            .into_data()
            .iter::<f32>()
            .collect();
        let width = values.len() / chunk.len().max(1);
        out.extend(values.chunks(width.max(1)).map(<[f32]>::to_vec));
    }
    out
}

pub fn mse(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().max(1) as f32;
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / n
}

#[derive(Debug, Clone)]
pub struct AeTrainOptions {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// Adam on the reconstruction MSE, cosine decay to 5%; prints train/val loss per epoch.
pub fn train(
    shape: &AeShape,
    train_set: &[&Example],
    val_set: &[&Example],
    options: &AeTrainOptions,
) -> DenseAutoencoder {
    let device = Device::flex().autodiff();
    device.seed(options.seed);
    let mut model = DenseAutoencoder::new(shape, &device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = Rng::new(options.seed);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let steps_per_epoch = train_set.len().div_ceil(options.batch.max(1));
    let total_steps = (steps_per_epoch * options.epochs).max(1);
    let mut step = 0;
    for epoch in 1..=options.epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0f64;
        for indices in order.chunks(options.batch.max(1)) {
            let batch: Vec<&Example> = indices.iter().map(|&i| train_set[i]).collect();
            let progress = step as f64 / total_steps as f64;
            let lr = options.learning_rate
                * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            let x = batch_tensor(&batch, &device);
            let loss = MseLoss::new().forward(model.forward(x.clone()), x, Reduction::Mean);
            loss_sum +=
                loss.to_data().iter::<f32>().next().unwrap_or(0.0) as f64 * batch.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            step += 1;
        }
        let val: f64 = reconstruct(&model, val_set)
            .iter()
            .zip(val_set)
            .map(|(r, e)| mse(r, &e.features) as f64)
            .sum::<f64>()
            / val_set.len().max(1) as f64;
        println!(
            "epoch {epoch:>3}/{}: train mse {:.5}  val mse {val:.5}",
            options.epochs,
            loss_sum / train_set.len().max(1) as f64
        );
    }
    model.valid()
}

/// One fully connected layer after folding: `[out, in]` weights (ember's FC layout).
#[derive(Debug, Clone)]
pub struct DenseLayer {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
    pub relu: bool,
}

impl DenseLayer {
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        (0..self.outputs)
            .map(|o| {
                let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
                let acc = self.bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
                if self.relu {
                    acc.max(0.0)
                } else {
                    acc
                }
            })
            .collect()
    }
}

/// The autoencoder with every batch norm folded into the linear layer before it.
#[derive(Debug, Clone)]
pub struct FoldedDense {
    pub layers: Vec<DenseLayer>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// burn's `[in, out]` weight as `[out, in]`, each output row scaled by `factor[o]`.
fn transpose_scaled(w: &[f32], inputs: usize, outputs: usize, factor: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for i in 0..inputs {
        for o in 0..outputs {
            out[o * inputs + i] = w[i * outputs + o] * factor[o];
        }
    }
    out
}

impl FoldedDense {
    pub fn from_burn(model: &DenseAutoencoder) -> Self {
        let mut layers = Vec::new();
        for layer in &model.layers {
            let [inputs, outputs] = layer.linear.weight.val().dims();
            let gamma = values(layer.norm.gamma.val());
            let beta = values(layer.norm.beta.val());
            let mean = values(layer.norm.running_mean.value());
            let var = values(layer.norm.running_var.value());
            let eps = layer.norm.epsilon as f32;
            let factor: Vec<f32> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| g / (v + eps).sqrt())
                .collect();
            let linear_bias = layer
                .linear
                .bias
                .as_ref()
                .map(|b| values(b.val()))
                .unwrap_or_else(|| vec![0.0; outputs]);
            let bias = (0..outputs)
                .map(|o| beta[o] + (linear_bias[o] - mean[o]) * factor[o])
                .collect();
            layers.push(DenseLayer {
                weight: transpose_scaled(
                    &values(layer.linear.weight.val()),
                    inputs,
                    outputs,
                    &factor,
                ),
                bias,
                inputs,
                outputs,
                relu: true,
            });
        }
        let [inputs, outputs] = model.output.weight.val().dims();
        layers.push(DenseLayer {
            weight: transpose_scaled(
                &values(model.output.weight.val()),
                inputs,
                outputs,
                &vec![1.0; outputs],
            ),
            bias: model
                .output
                .bias
                .as_ref()
                .map(|b| values(b.val()))
                .unwrap_or_else(|| vec![0.0; outputs]),
            inputs,
            outputs,
            relu: false,
        });
        FoldedDense { layers }
    }

    /// `observe(point, values)` sees the input (0) and every layer's output.
    pub fn forward(&self, input: &[f32], mut observe: impl FnMut(usize, &[f32])) -> Vec<f32> {
        let mut x = input.to_vec();
        observe(0, &x);
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x);
            observe(index + 1, &x);
        }
        x
    }

    pub fn macs(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| (l.inputs * l.outputs) as u64)
            .sum()
    }
}

/// Area under the ROC curve of `scores` for binary `labels` (ties count one half); None when
/// one class is absent.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann-Whitney U with average ranks over ties.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Point scores from stride-1 window scores: each point gets the mean score of the windows
/// that cover it (TimeEval's reverse windowing for window-based detectors).
pub fn point_scores(window_scores: &[f32], window: usize, points: usize) -> Vec<f32> {
    let mut sum = vec![0f64; points];
    let mut count = vec![0u32; points];
    for (start, &score) in window_scores.iter().enumerate() {
        for p in start..(start + window).min(points) {
            sum[p] += score as f64;
            count[p] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| (s / c.max(1) as f64) as f32)
        .collect()
}

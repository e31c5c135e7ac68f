//! `ad-data`, `ad-train`, `ad-export`: the anomaly-detection autoencoder's commands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use ember_models::anomaly::{self, AeShape, DenseAutoencoder, FoldedDense, Series};
use ember_models::chain;
use ember_models::export::Calibration;
use ember_models::table::{Example, Table};
use ember_runtime::frontend::{quantize, QuantRounding};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::{Model, QuantParams};

#[derive(clap::Args, Debug)]
pub struct AdDataArgs {
    /// The aeon 1.6.0 wheel (`pip download --no-deps aeon==1.6.0`).
    #[arg(long, default_value = "data-cache/aeon-1.6.0-py3-none-any.whl")]
    wheel: PathBuf,
    /// `internal-bleeding16` (UCR anomaly archive 135) or `daphnet-s06r02e0`.
    #[arg(long, default_value = "internal-bleeding16")]
    series: String,
    /// Points per window.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value_t = 1)]
    train_stride: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "data-cache/anomaly.parquet")]
    out: PathBuf,
    /// The normalized test part (`<channels..>,is_anomaly`), for point-wise scoring.
    #[arg(long, default_value = "anomaly/test_series.csv")]
    series_out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct AdTrainArgs {
    #[arg(long, default_value = "data-cache/anomaly.parquet")]
    data: PathBuf,
    /// Output folder: model.bpk and shape.txt.
    #[arg(long, default_value = "anomaly")]
    out: PathBuf,
    /// Encoder widths before the bottleneck (the decoder mirrors them).
    #[arg(long, value_delimiter = ',', default_value = "64,32")]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = 8)]
    bottleneck: usize,
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct AdExportArgs {
    #[arg(long, default_value = "data-cache/anomaly.parquet")]
    data: PathBuf,
    #[arg(long, default_value = "anomaly")]
    model: PathBuf,
    #[arg(long, default_value = "anomaly/anomaly.emb")]
    out: PathBuf,
    #[arg(long, default_value = "anomaly/test_series.csv")]
    series: PathBuf,
    /// `minmax` or a percentile such as `99.99`, over the training windows.
    #[arg(long, default_value = "minmax")]
    calibration: String,
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn load_autoencoder(dir: &Path) -> Result<(DenseAutoencoder, AeShape)> {
    let text = std::fs::read_to_string(dir.join("shape.txt")).context("shape.txt")?;
    let shape = AeShape::from_text(text.trim()).context("bad shape.txt")?;
    let model = DenseAutoencoder::new(&shape, &Device::flex())
        .try_load_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("loading record: {e:?}"))?;
    Ok((model, shape))
}

pub fn ad_data(args: AdDataArgs) -> Result<()> {
    let series = Series::parse(&args.series)?;
    let options = anomaly::AdDataOptions {
        window: args.window,
        train_stride: args.train_stride,
        val_share: 0.1,
        seed: args.seed,
    };
    let (table, test, stats) = anomaly::build(&args.wheel, series, &options)?;
    table.write(&args.out)?;
    if let Some(dir) = args.series_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    anomaly::write_points_csv(&test, &args.series_out)?;
    println!("channels {:?}", test.channels);
    for (channel, (mean, std)) in test.channels.iter().zip(&stats) {
        println!("normalization {channel}: mean {mean} std {std}");
    }
    for split in table.split_names() {
        let examples = table.split(&split);
        let anomalous = examples.iter().filter(|e| e.label == 1).count();
        println!(
            "{split}: {} windows, {anomalous} containing anomalous points",
            examples.len()
        );
    }
    let points = test.anomalous.iter().filter(|&&a| a).count();
    println!(
        "test part: {} points, {points} labelled anomalous",
        test.values.len()
    );
    if points == 0 {
        println!("no labelled anomalies in the test part: ROC AUC is undefined for this series");
    }
    Ok(())
}

pub fn ad_train(args: AdTrainArgs) -> Result<()> {
    let table = Table::read(&args.data)?;
    let shape = AeShape {
        input: table.feature_len(),
        hidden: args.hidden.clone(),
        bottleneck: args.bottleneck,
    };
    let train_set = table.split("train");
    let val_set = table.split("val");
    if train_set.is_empty() {
        bail!("no training windows in {}", args.data.display());
    }
    println!(
        "{} train / {} val windows; {}",
        train_set.len(),
        val_set.len(),
        shape.to_text()
    );
    let options = anomaly::AeTrainOptions {
        epochs: args.epochs,
        batch: args.batch,
        learning_rate: args.lr,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let model = anomaly::train(&shape, &train_set, &val_set, &options);
    println!("trained in {:.0} s", started.elapsed().as_secs_f64());
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("shape.txt"), shape.to_text() + "\n")?;
    model
        .save_file(args.out.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("saving record: {e:?}"))?;
    Ok(())
}

/// Start point of a test window (its `source` is `test:<start>`), in order.
fn window_starts(examples: &[&Example]) -> Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| {
            e.source
                .strip_prefix("test:")
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("test window source {:?}", e.source))
        })
        .collect()
}

/// Window-level and point-level ROC AUC of per-window scores.
fn aucs(scores: &[f32], examples: &[&Example], window: usize, labels: &[bool]) -> (f64, f64) {
    let window_labels: Vec<bool> = examples.iter().map(|e| e.label == 1).collect();
    let points = anomaly::point_scores(scores, window, labels.len());
    (
        anomaly::roc_auc(scores, &window_labels).unwrap_or(f64::NAN),
        anomaly::roc_auc(&points, labels).unwrap_or(f64::NAN),
    )
}

pub fn int8_reconstruction(
    model: &Model,
    features: &[f32],
    quant: QuantParams,
) -> Result<Vec<f32>> {
    let input: Vec<u8> = features
        .iter()
        .map(|&x| quantize(x, quant, QuantRounding::Nearest) as u8)
        .collect();
    let out = run_once(model, &[&input]).map_err(|e| anyhow::anyhow!("run: {e:?}"))?;
    let q = model
        .outputs()
        .first()
        .and_then(|t| t.quant)
        .context("int8 output without quantization")?;
    Ok(out
        .first()
        .context("no output")?
        .iter()
        .map(|&b| (b as i8 as i32 - q.zero_point) as f32 * q.scale)
        .collect())
}

pub fn f32_outputs(model: &Model, features: &[f32]) -> Result<Vec<f32>> {
    let input: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = run_once(model, &[&input]).map_err(|e| anyhow::anyhow!("run: {e:?}"))?;
    Ok(out
        .first()
        .context("no output")?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

pub fn ad_export(args: AdExportArgs) -> Result<()> {
    let table = Table::read(&args.data)?;
    let (burn_model, shape) = load_autoencoder(&args.model)?;
    let folded = FoldedDense::from_burn(&burn_model);
    let train_set = table.split("train");
    let inputs: Vec<&[f32]> = train_set.iter().map(|e| e.features.as_slice()).collect();
    let method = match args.calibration.as_str() {
        "minmax" => Calibration::MinMax,
        p => Calibration::Percentile(p.parse().context("calibration: minmax or a percentile")?),
    };
    let ranges = dense_ranges(&folded, &inputs, method)?;
    let description = format!("dense autoencoder ({})", shape.to_text());
    let exported = chain::export_dense_int8(&folded, &ranges, &table.labels, &description)?;
    std::fs::write(&args.out, &exported.bytes)?;
    let float_path = args.out.with_file_name(format!(
        "{}_f32.emb",
        args.out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let float_bytes = chain::export_dense_f32(&folded, &table.labels, &description)?;
    std::fs::write(&float_path, &float_bytes)?;

    let int8_bytes = AlignedBytes::from_slice(&exported.bytes);
    let int8_model =
        Model::load(int8_bytes.as_slice()).map_err(|e| anyhow::anyhow!("load: {e:?}"))?;
    let float_bytes = AlignedBytes::from_slice(&float_bytes);
    let float_model =
        Model::load(float_bytes.as_slice()).map_err(|e| anyhow::anyhow!("load: {e:?}"))?;

    let test = table.split("test");
    let starts = window_starts(&test)?;
    if starts.iter().enumerate().any(|(i, &s)| i != s) {
        bail!("test windows are not every point in order");
    }
    let series = anomaly::read_points_csv(&args.series)?;
    let window = table.shape.first().copied().unwrap_or(1);
    let burn_scores: Vec<f32> = anomaly::reconstruct(&burn_model, &test)
        .iter()
        .zip(&test)
        .map(|(r, e)| anomaly::mse(r, &e.features))
        .collect();
    let mut folded_scores = Vec::new();
    let mut float_scores = Vec::new();
    let mut int8_scores = Vec::new();
    for e in &test {
        folded_scores.push(anomaly::mse(
            &folded.forward(&e.features, |_, _| {}),
            &e.features,
        ));
        float_scores.push(anomaly::mse(
            &f32_outputs(&float_model, &e.features)?,
            &e.features,
        ));
        int8_scores.push(anomaly::mse(
            &int8_reconstruction(&int8_model, &e.features, exported.input_quant)?,
            &e.features,
        ));
    }
    let anomalous_points = series.anomalous.iter().filter(|&&a| a).count();
    let anomalous_windows = test.iter().filter(|e| e.label == 1).count();
    let mut lines = vec![
        format!(
            "- file: `{}`, {} bytes (float32 reference `{}`, {} bytes)",
            args.out.display(),
            exported.bytes.len(),
            float_path.display(),
            float_bytes.len()
        ),
        format!("- MACs per inference: {}", exported.macs),
        format!("- arena: {} bytes", int8_model.arena_size()),
        format!(
            "- calibration: {} over {} normal training windows",
            args.calibration,
            inputs.len()
        ),
        format!(
            "- input quantization: scale {:.6}, zero point {}",
            exported.input_quant.scale, exported.input_quant.zero_point
        ),
        format!(
            "- test part: {} points ({anomalous_points} labelled anomalous), {} windows of {window} ({anomalous_windows} touch the anomaly)",
            series.values.len(),
            test.len()
        ),
        "- score: reconstruction MSE per window; point score = mean over the windows covering the point".into(),
        String::new(),
        "| scorer | window ROC AUC | point ROC AUC |".into(),
        "|---|---|---|".into(),
    ];
    for (name, scores) in [
        ("float (burn)", &burn_scores),
        ("float (folded)", &folded_scores),
        ("float32 (ember)", &float_scores),
        ("int8 (ember)", &int8_scores),
    ] {
        let (window_auc, point_auc) = aucs(scores, &test, window, &series.anomalous);
        lines.push(format!("| {name} | {window_auc:.4} | {point_auc:.4} |"));
    }
    let text = lines.join("\n");
    println!("{text}");
    if let Some(report) = args.report {
        std::fs::write(report, text + "\n")?;
    }
    Ok(())
}

/// Activation ranges of the folded autoencoder (input and every layer output).
pub fn dense_ranges(
    net: &FoldedDense,
    inputs: &[&[f32]],
    method: Calibration,
) -> Result<Vec<(f32, f32)>> {
    if inputs.is_empty() {
        bail!("no calibration windows");
    }
    let mut samples: Vec<Vec<f32>> = vec![Vec::new(); net.layers.len() + 1];
    for input in inputs {
        net.forward(input, |i, x| samples[i].extend_from_slice(x));
    }
    Ok(samples.into_iter().map(|v| range_of(v, method)).collect())
}

/// `[min, max]` (or percentiles) of the observed values, widened to contain 0 (the rule of
/// `export::calibrate`).
fn range_of(mut v: Vec<f32>, method: Calibration) -> (f32, f32) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = match method {
        Calibration::MinMax => (v[0], v[v.len() - 1]),
        Calibration::Percentile(p) => (at(1.0 - p / 100.0), at(p / 100.0)),
    };
    (lo.min(0.0), hi.max(0.0))
}

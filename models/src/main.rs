//! `ember-models`: data, training and int8 export for the burn models.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use ember_models::export::{self, Calibration, FoldedNet};
use ember_models::model::{DsCnn, DsCnnShape};
use ember_models::table::{Example, Table};
use ember_models::{imu_data, kws_data, rng::Rng, train};
use ember_runtime::frontend::{quantize, QuantRounding};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::{Model, QuantParams};

mod ad_cli;
mod reference_cli;

#[derive(Parser, Debug)]
#[command(about = "Data, training and int8 export for ember's burn models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Keyword features (ember's MLPerf front end) from clips made by data/synth_kws.py.
    KwsData {
        #[arg(long, default_value = "data-cache/kws")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Augmented copies (offset, gain, noise at 5/10/20 dB or clean) per training clip.
        #[arg(long, default_value_t = 4)]
        copies: usize,
        #[arg(long, default_value = "data-cache/kws.parquet")]
        out: PathBuf,
    },
    /// IMU series from the aeon wheel's .ts files.
    ImuData {
        #[arg(long, default_value = "data-cache/imu")]
        dir: PathBuf,
        #[arg(long, default_value = "BasicMotions")]
        name: String,
        #[arg(long)]
        steps: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Trains a DS-CNN on a feature table and saves the burn record.
    Train {
        #[arg(long)]
        data: PathBuf,
        /// Output folder: model.bpk (burn record) and shape.txt.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 64)]
        channels: usize,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Split to report after each epoch ("val", or "test" where no val split exists).
        #[arg(long, default_value = "val")]
        val: String,
        /// Train on features snapped to the int8 input grid the device will use (scale and
        /// zero point from the training set's min/max; saved as input_quant.txt for export).
        #[arg(long)]
        quantized_input: bool,
        /// SpecAugment-style masking of KWS features in every batch (`kws_data::spec_augment`).
        #[arg(long)]
        spec_augment: bool,
    },
    /// Folds, calibrates, quantizes and writes the .emb; evaluates float and int8 per split.
    Export {
        #[arg(long)]
        data: PathBuf,
        /// Folder written by `train`.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// `minmax` or a percentile such as `99.99`.
        #[arg(long, default_value = "minmax")]
        calibration: String,
        #[arg(long, default_value_t = 500)]
        calibration_count: usize,
        /// Store the MLPerf KWS front end in the model's metadata.
        #[arg(long)]
        kws_frontend: bool,
        /// Writes the results as markdown here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// WAV files to classify with the int8 model (KWS).
        #[arg(long)]
        wav: Vec<PathBuf>,
    },
    /// Anomaly windows (normal training windows, labelled test windows) from the aeon wheel.
    AdData(ad_cli::AdDataArgs),
    /// Trains the dense autoencoder on normal windows.
    AdTrain(ad_cli::AdTrainArgs),
    /// Folds, quantizes and writes the autoencoder's int8 and float32 .emb; reports ROC AUC.
    AdExport(ad_cli::AdExportArgs),
    /// Float32 .emb + golden file (burn's outputs) and burn-vs-ember agreement numbers.
    Reference(reference_cli::ReferenceArgs),
}

fn load_model(dir: &Path) -> Result<(DsCnn, DsCnnShape)> {
    let text = std::fs::read_to_string(dir.join("shape.txt")).context("shape.txt")?;
    let shape = DsCnnShape::from_text(text.trim()).context("bad shape.txt")?;
    let model = DsCnn::new(&shape, &Device::flex())
        .try_load_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("loading record: {e:?}"))?;
    Ok((model, shape))
}

fn quantize_input(features: &[f32], quant: QuantParams, rounding: QuantRounding) -> Vec<u8> {
    features
        .iter()
        .map(|&x| quantize(x, quant, rounding) as u8)
        .collect()
}

fn int8_predict(
    model: &Model,
    examples: &[&Example],
    quant: QuantParams,
    rounding: QuantRounding,
) -> Result<Vec<usize>> {
    let mut predictions = Vec::with_capacity(examples.len());
    for e in examples {
        let input = quantize_input(&e.features, quant, rounding);
        let outputs = run_once(model, &[&input]).map_err(|e| anyhow::anyhow!("run: {e:?}"))?;
        let scores: Vec<f32> = outputs
            .first()
            .context("no output")?
            .iter()
            .map(|&b| b as i8 as f32)
            .collect();
        predictions.push(train::argmax(&scores));
    }
    Ok(predictions)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::AdData(args) => ad_cli::ad_data(args)?,
        Command::AdTrain(args) => ad_cli::ad_train(args)?,
        Command::AdExport(args) => ad_cli::ad_export(args)?,
        Command::Reference(args) => reference_cli::reference(args)?,
        Command::KwsData {
            dir,
            seed,
            copies,
            out,
        } => {
            let options = kws_data::KwsDataOptions {
                seed,
                train_copies: copies,
            };
            let table = kws_data::build(&dir, &options)?;
            table.write(&out)?;
            for split in table.split_names() {
                println!("{split}: {} examples", table.split(&split).len());
            }
        }
        Command::ImuData {
            dir,
            name,
            steps,
            out,
        } => {
            let table = imu_data::build(&dir, &name, steps)?;
            table.write(&out)?;
            println!(
                "{name}: shape {:?}, classes {:?}",
                table.shape, table.labels
            );
            for split in table.split_names() {
                println!("{split}: {} examples", table.split(&split).len());
            }
        }
        Command::Train {
            data,
            out,
            channels,
            epochs,
            batch,
            lr,
            seed,
            val,
            quantized_input,
            spec_augment,
        } => {
            let mut table = Table::read(&data)?;
            let mut input_quant = None;
            if quantized_input {
                let train_values = table
                    .examples
                    .iter()
                    .filter(|e| e.split == "train")
                    .flat_map(|e| e.features.iter().copied());
                let (lo, hi) =
                    train_values.fold((0f32, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
                let q = export::activation_quant(lo, hi);
                let rounding = if table.shape == [49, 10] {
                    ember_runtime::frontend::FrontendConfig::mlperf_kws().quant_rounding
                } else {
                    QuantRounding::Nearest
                };
                for e in &mut table.examples {
                    for v in &mut e.features {
                        *v = (quantize(*v, q, rounding) as i32 - q.zero_point) as f32 * q.scale;
                    }
                }
                println!(
                    "training on int8 input grid: scale {}, zero point {}",
                    q.scale, q.zero_point
                );
                input_quant = Some(q);
            }
            let shape = if table.shape == [49, 10] {
                DsCnnShape::kws(channels)
            } else if let [steps, 1, axes] = table.shape[..] {
                DsCnnShape {
                    channels,
                    ..DsCnnShape::imu(steps, axes, table.labels.len())
                }
            } else {
                bail!("unsupported feature shape {:?}", table.shape);
            };
            let train_set = table.split("train");
            let val_set = table.split(&val);
            println!(
                "{} train / {} {val} examples; {}",
                train_set.len(),
                val_set.len(),
                shape.to_text()
            );
            let options = train::TrainOptions {
                epochs,
                batch,
                learning_rate: lr,
                seed,
            };
            let started = std::time::Instant::now();
            let coeffs = shape.input[1];
            let masking =
                move |f: &mut [f32], rng: &mut Rng| kws_data::spec_augment(f, coeffs, rng);
            let augment: Option<&train::FeatureAugment> = spec_augment.then_some(&masking);
            let model = train::train_with(&shape, &train_set, &val_set, &options, augment);
            println!("trained in {:.0} s", started.elapsed().as_secs_f64());
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("shape.txt"), shape.to_text() + "\n")?;
            let quant_path = out.join("input_quant.txt");
            match input_quant {
                Some(q) => std::fs::write(&quant_path, format!("{} {}\n", q.scale, q.zero_point))?,
                None if quant_path.exists() => std::fs::remove_file(&quant_path)?,
                None => {}
            }
            model
                .save_file(out.join("model.bpk"))
                .map_err(|e| anyhow::anyhow!("saving record: {e:?}"))?;
        }
        Command::Export {
            data,
            model,
            out,
            calibration,
            calibration_count,
            kws_frontend,
            report,
            wav,
        } => {
            let table = Table::read(&data)?;
            let (burn_model, shape) = load_model(&model)?;
            let folded = FoldedNet::from_burn(&burn_model, &shape);
            let method = match calibration.as_str() {
                "minmax" => Calibration::MinMax,
                p => Calibration::Percentile(
                    p.parse().context("calibration: minmax or a percentile")?,
                ),
            };
            // Calibration draws from the training split only, shuffled with a fixed seed.
            let mut pool = table.split("train");
            Rng::new(7).shuffle(&mut pool);
            let inputs: Vec<&[f32]> = pool
                .iter()
                .take(calibration_count)
                .map(|e| e.features.as_slice())
                .collect();
            let ranges = export::calibrate(&folded, &inputs, method)?;
            let frontend = kws_frontend.then(ember_runtime::frontend::FrontendConfig::mlperf_kws);
            let trained_grid = match std::fs::read_to_string(model.join("input_quant.txt")) {
                Ok(text) => {
                    let mut parts = text.split_whitespace();
                    let scale: f32 = parts.next().context("input_quant.txt")?.parse()?;
                    let zero_point: i32 = parts.next().context("input_quant.txt")?.parse()?;
                    Some(QuantParams { scale, zero_point })
                }
                Err(_) => None,
            };
            let exported = export::export(
                &folded,
                &ranges,
                trained_grid,
                &table.labels,
                frontend.as_ref(),
            )?;
            std::fs::write(&out, &exported.bytes)?;
            let bytes = AlignedBytes::from_slice(&exported.bytes);
            let device_model =
                Model::load(bytes.as_slice()).map_err(|e| anyhow::anyhow!("load: {e:?}"))?;
            let rounding = frontend
                .map(|f| f.quant_rounding)
                .unwrap_or(QuantRounding::Nearest);
            let mut lines = vec![
                format!(
                    "- file: `{}`, {} bytes",
                    out.display(),
                    exported.bytes.len()
                ),
                format!("- MACs per inference: {}", exported.macs),
                format!("- arena: {} bytes", device_model.arena_size()),
                format!(
                    "- calibration: {calibration} over {} training examples",
                    inputs.len()
                ),
                format!(
                    "- input quantization: scale {:.6}, zero point {}",
                    exported.input_quant.scale, exported.input_quant.zero_point
                ),
                String::new(),
                "| split | examples | float (burn) | float (folded) | float, int8 input | int8 (ember) |".into(),
                "|---|---|---|---|---|---|".into(),
            ];
            for split in table.split_names() {
                let examples = table.split(&split);
                let float =
                    train::accuracy(&train::predict(&burn_model, &examples, &shape), &examples);
                let folded_predictions: Vec<usize> = examples
                    .iter()
                    .map(|e| train::argmax(&folded.forward(&e.features, |_, _| {})))
                    .collect();
                let folded_accuracy = train::accuracy(&folded_predictions, &examples);
                // The folded float network on quantized-then-dequantized input: how much of the
                // int8 loss is the input quantization alone.
                let q = exported.input_quant;
                let input_only: Vec<usize> = examples
                    .iter()
                    .map(|e| {
                        let x: Vec<f32> = e
                            .features
                            .iter()
                            .map(|&v| {
                                (quantize(v, q, rounding) as i32 - q.zero_point) as f32 * q.scale
                            })
                            .collect();
                        train::argmax(&folded.forward(&x, |_, _| {}))
                    })
                    .collect();
                let input_only_accuracy = train::accuracy(&input_only, &examples);
                let int8 = train::accuracy(
                    &int8_predict(&device_model, &examples, exported.input_quant, rounding)?,
                    &examples,
                );
                lines.push(format!(
                    "| {split} | {} | {:.2}% | {:.2}% | {:.2}% | {:.2}% |",
                    examples.len(),
                    100.0 * float,
                    100.0 * folded_accuracy,
                    100.0 * input_only_accuracy,
                    100.0 * int8
                ));
            }
            if !wav.is_empty() {
                lines.push(String::new());
                let mut features = kws_data::Features::default();
                for path in &wav {
                    let clip = kws_data::read_wav(path)?;
                    let f = features.compute(&clip)?;
                    let input = quantize_input(&f, exported.input_quant, rounding);
                    let outputs = run_once(&device_model, &[&input])
                        .map_err(|e| anyhow::anyhow!("run: {e:?}"))?;
                    let scores: Vec<f32> = outputs[0]
                        .iter()
                        .map(|&b| (b as i8 as f32 + 128.0) / 256.0)
                        .collect();
                    let top = train::argmax(&scores);
                    lines.push(format!(
                        "- `{}` -> **{}** ({:.2})",
                        path.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        table.labels.get(top).map(String::as_str).unwrap_or("?"),
                        scores[top]
                    ));
                }
            }
            let text = lines.join("\n");
            println!("{text}");
            if let Some(report) = report {
                std::fs::write(report, text + "\n")?;
            }
        }
    }
    Ok(())
}

//! `reference`: the float32 `.emb` of a trained model and its golden file (inputs and burn's
//! outputs) for the main workspace's `ember-models-check`, plus the agreement numbers: ember
//! float32 vs burn (max abs difference) and ember int8 vs burn in output quantization steps.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::Device;
use ember_models::anomaly::{self, FoldedDense};
use ember_models::chain;
use ember_models::export::FoldedNet;
use ember_models::table::{Example, Table};
use ember_models::train;
use ember_runtime::frontend::{quantize, FrontendConfig, QuantRounding};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

use crate::ad_cli::{f32_outputs, load_autoencoder};

/// ember float32 must match burn within this share of the golden outputs' range.
pub const FLOAT_TOLERANCE: f64 = 1e-4;

#[derive(clap::Args, Debug)]
pub struct ReferenceArgs {
    /// Folder with model.bpk and shape.txt (DS-CNN or autoencoder).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// The committed int8 model, compared in output steps.
    #[arg(long)]
    int8: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Examples taken evenly across the split (0: all).
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// Replaces the "Float reference" section of this markdown file.
    #[arg(long)]
    report: Option<PathBuf>,
}

const SECTION: &str = "## Float reference (burn vs ember)";

pub fn reference(args: ReferenceArgs) -> Result<()> {
    let table = Table::read(&args.data)?;
    let split = table.split(&args.split);
    if split.is_empty() {
        bail!("no {:?} examples in {}", args.split, args.data.display());
    }
    let count = if args.count == 0 {
        split.len()
    } else {
        args.count.min(split.len())
    };
    let examples: Vec<&Example> = (0..count).map(|i| split[i * split.len() / count]).collect();

    let int8_bytes = std::fs::read(&args.int8).with_context(|| args.int8.display().to_string())?;
    let int8_bytes = AlignedBytes::from_slice(&int8_bytes);
    let int8_model =
        Model::load(int8_bytes.as_slice()).map_err(|e| anyhow::anyhow!("load int8: {e:?}"))?;
    let frontend = int8_model
        .metadata(ember_runtime::format::meta_keys::FRONTEND)
        .map(FrontendConfig::from_metadata)
        .transpose()
        .map_err(|e| anyhow::anyhow!("frontend metadata: {e:?}"))?;

    let shape_text = std::fs::read_to_string(args.model.join("shape.txt")).context("shape.txt")?;
    let (float_bytes, burn_outputs) = if shape_text.starts_with("autoencoder") {
        let (model, shape) = load_autoencoder(&args.model)?;
        let folded = FoldedDense::from_burn(&model);
        let bytes = chain::export_dense_f32(
            &folded,
            &table.labels,
            &format!("dense autoencoder ({})", shape.to_text()),
        )?;
        (bytes, anomaly::reconstruct(&model, &examples))
    } else {
        let (model, shape) = crate::load_model(&args.model)?;
        let folded = FoldedNet::from_burn(&model, &shape);
        let bytes = chain::export_dscnn_f32(&folded, &table.labels, frontend.as_ref())?;
        let device = Device::flex();
        let probs = softmax(
            model
                .valid()
                .forward(train::batch_tensor(&examples, &shape, &device)),
            1,
        );
        let values: Vec<f32> = probs.into_data().iter::<f32>().collect();
        let outputs = values.chunks(shape.classes).map(<[f32]>::to_vec).collect();
        (bytes, outputs)
    };
    let stem = args
        .int8
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let float_path = args.int8.with_file_name(format!("{stem}_f32.emb"));
    std::fs::write(&float_path, &float_bytes)?;
    let float_aligned = AlignedBytes::from_slice(&float_bytes);
    let float_model =
        Model::load(float_aligned.as_slice()).map_err(|e| anyhow::anyhow!("load float: {e:?}"))?;

    // ember float32 vs burn.
    let (lo, hi) = burn_outputs
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = (hi - lo) as f64;
    let mut max_diff = 0f64;
    for (e, expected) in examples.iter().zip(&burn_outputs) {
        for (a, b) in f32_outputs(&float_model, &e.features)?.iter().zip(expected) {
            max_diff = max_diff.max((a - b).abs() as f64);
        }
    }

    // ember int8 vs burn, in output steps.
    let input_quant = int8_model
        .inputs()
        .first()
        .and_then(|t| t.quant)
        .context("int8 input without quantization")?;
    let output_quant = int8_model
        .outputs()
        .first()
        .and_then(|t| t.quant)
        .context("int8 output without quantization")?;
    let rounding = frontend
        .as_ref()
        .map(|f| f.quant_rounding)
        .unwrap_or(QuantRounding::Nearest);
    let mut histogram = [0usize; 3];
    for (e, expected) in examples.iter().zip(&burn_outputs) {
        let input: Vec<u8> = e
            .features
            .iter()
            .map(|&x| quantize(x, input_quant, rounding) as u8)
            .collect();
        let out = run_once(&int8_model, &[&input]).map_err(|e| anyhow::anyhow!("run: {e:?}"))?;
        for (&q, &f) in out.first().context("no output")?.iter().zip(expected) {
            let value = (q as i8 as i32 - output_quant.zero_point) as f32 * output_quant.scale;
            let steps = ((value - f).abs() / output_quant.scale).round() as usize;
            histogram[steps.min(2)] += 1;
        }
    }
    let total = histogram.iter().sum::<usize>().max(1) as f64;

    let golden = args.model.join("float_golden.json");
    let json = serde_json::json!({
        "model": args.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "int8_emb": args.int8.file_name().map(|n| n.to_string_lossy().into_owned()),
        "float_emb": float_path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "split": args.split,
        "float_tolerance_of_range": FLOAT_TOLERANCE,
        "labels": examples.iter().map(|e| e.label).collect::<Vec<_>>(),
        "inputs": examples.iter().map(|e| &e.features).collect::<Vec<_>>(),
        "burn_outputs": burn_outputs,
    });
    std::fs::write(&golden, serde_json::to_string(&json)? + "\n")?;

    let lines = [
        SECTION.to_owned(),
        String::new(),
        format!(
            "Written by `ember-models reference` ({} {} examples; golden file `{}`; float32 model `{}`, {} bytes, ember's float kernels).",
            examples.len(),
            args.split,
            golden.display(),
            float_path.display(),
            float_bytes.len()
        ),
        String::new(),
        format!(
            "- ember float32 vs burn: max abs difference {max_diff:.3e} over outputs spanning {range:.4} ({:.2e} of the range; tolerance {FLOAT_TOLERANCE:.0e})",
            max_diff / range.max(f64::MIN_POSITIVE)
        ),
        format!(
            "- ember int8 vs burn, in output steps (scale {:.6}): 0 steps {:.1}%, 1 step {:.1}%, more {:.1}% ({} elements)",
            output_quant.scale,
            100.0 * histogram[0] as f64 / total,
            100.0 * histogram[1] as f64 / total,
            100.0 * histogram[2] as f64 / total,
            total
        ),
    ];
    let section = lines.join("\n");
    println!("{section}");
    if max_diff > FLOAT_TOLERANCE * range.max(1.0) {
        bail!("ember float32 differs from burn by {max_diff} (range {range})");
    }
    if let Some(report) = args.report {
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        let kept = match text.find(SECTION) {
            Some(at) => text[..at].trim_end().to_owned(),
            None => text.trim_end().to_owned(),
        };
        std::fs::write(&report, format!("{kept}\n\n{section}\n"))?;
    }
    Ok(())
}

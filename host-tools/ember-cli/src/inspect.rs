//! `ember inspect`: what a `.emb` model contains and costs.

use std::path::PathBuf;

use anyhow::Context;
use ember_runtime::host::AlignedBytes;
use ember_runtime::{Model, TensorDef};
use serde_json::json;

/// Show a model's operators, shapes, MACs, weight and memory sizes.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Show what an ember model (.emb) contains: per operator its TFLite type, the \
kernel variant ember runs, input and output shapes, multiply-accumulates and weight bytes; \
then totals (MACs, weight bytes, arena bytes, model bytes), graph inputs/outputs and labels.

Examples:
  ember inspect kws.emb
  ember inspect kws.emb --json | jq '.totals.arena_bytes'"
)]
pub struct Args {
    /// The .emb model (convert .tflite files with `ember convert` first).
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Reads and loads a `.emb`, with errors that say what to do.
pub fn load_file(path: &std::path::Path) -> anyhow::Result<AlignedBytes> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() >= 8 && &bytes[4..8] == b"TFL3" {
        anyhow::bail!(
            "{} is a TFLite model; convert it first: ember convert {} -o model.emb",
            path.display(),
            path.display()
        );
    }
    let aligned = AlignedBytes::from_slice(&bytes);
    Model::load(aligned.as_slice()).with_context(|| format!("cannot load {}", path.display()))?;
    Ok(aligned)
}

pub fn shape_text(t: &TensorDef) -> String {
    let dims: Vec<String> = t.shape.dims.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype.name(), dims.join(","))
}

fn shape_json(t: &TensorDef) -> serde_json::Value {
    json!({
        "dtype": t.dtype.name(),
        "shape": t.shape.dims.iter().collect::<Vec<_>>(),
        "quant": t.quant.map(|q| json!({"scale": q.scale, "zero_point": q.zero_point})),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = load_file(&args.model)?;
    let model = Model::load(bytes.as_slice())?;
    let mut rows = Vec::new();
    let (mut total_macs, mut total_weights) = (0u64, 0usize);
    for (index, op) in model.ops().enumerate() {
        let op = op?;
        let mut inputs = Vec::new();
        let mut weight_bytes = 0usize;
        op.for_each_input(&mut |t| {
            if t.is_const() {
                weight_bytes += t.byte_len().unwrap_or(0);
            } else {
                inputs.push(t.clone());
            }
        });
        total_macs += op.macs();
        total_weights += weight_bytes;
        rows.push((
            index,
            op.name(),
            op.variant_name(),
            inputs,
            op.output().clone(),
            op.macs(),
            weight_bytes,
        ));
    }
    let labels: Vec<&str> = model.labels().collect();
    if args.json {
        let ops: Vec<_> = rows
            .iter()
            .map(|(index, name, variant, inputs, output, macs, weights)| {
                json!({
                    "index": index, "op": name, "kernel": variant,
                    "inputs": inputs.iter().map(shape_json).collect::<Vec<_>>(),
                    "output": shape_json(output), "macs": macs, "weight_bytes": weights,
                })
            })
            .collect();
        let doc = json!({
            "format_version": model.header().version,
            "ops": ops,
            "inputs": model.inputs().iter().map(shape_json).collect::<Vec<_>>(),
            "outputs": model.outputs().iter().map(shape_json).collect::<Vec<_>>(),
            "labels": labels,
            "totals": {
                "ops": rows.len(), "macs": total_macs, "weight_bytes": total_weights,
                "const_bytes": model.consts().len(),
                "arena_bytes": model.arena_size(), "model_bytes": bytes.len(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{}: format v{}, {} ops",
        args.model.display(),
        model.header().version,
        rows.len()
    );
    for t in model.inputs() {
        println!("  input  {}", shape_text(t));
    }
    for t in model.outputs() {
        println!("  output {}", shape_text(t));
    }
    if !labels.is_empty() {
        println!("  labels {}", labels.join(", "));
    }
    println!();
    println!(
        "{:>3}  {:<18} {:<24} {:<32} {:<22} {:>12} {:>10}",
        "#", "op", "kernel", "inputs", "output", "MACs", "weights"
    );
    for (index, name, variant, inputs, output, macs, weights) in &rows {
        let ins: Vec<String> = inputs.iter().map(shape_text).collect();
        println!(
            "{index:>3}  {name:<18} {variant:<24} {:<32} {:<22} {macs:>12} {weights:>10}",
            ins.join(" "),
            shape_text(output)
        );
    }
    println!();
    println!("total MACs     {total_macs}");
    println!(
        "weight bytes   {total_weights} (constant section {} bytes)",
        model.consts().len()
    );
    println!("arena bytes    {}", model.arena_size());
    println!("model bytes    {}", bytes.len());
    Ok(())
}

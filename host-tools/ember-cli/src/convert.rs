//! `ember convert`: TFLite flatbuffer to `.emb`.

use std::path::PathBuf;

use anyhow::Context;

/// Convert a TensorFlow Lite model (.tflite) into an ember model (.emb).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Convert a TensorFlow Lite model (.tflite) into an ember model (.emb).

The converter reads the .tflite file, folds constant DEQUANTIZE ops into float weights, plans \
the activation arena (reusing memory across tensor lifetimes), precomputes every kernel \
parameter on the host, writes the .emb and loads it back as a check.

Supported ops: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, ADD, \
MUL, PAD, PADV2, MEAN, RESHAPE, SQUEEZE, EXPAND_DIMS, SOFTMAX, LOGISTIC, TANH, CONCATENATION, \
QUANTIZE, DEQUANTIZE; int8, float32 and hybrid (float activations, int8 weights).

Examples:
  ember convert kws_ref_model.tflite -o kws.emb
  ember convert kws_ref_model.tflite -o kws.emb \\
      --labels down,go,left,no,off,on,right,stop,up,yes,silence,unknown
  ember convert micro_speech.tflite --labels labels.txt   # writes micro_speech.emb"
)]
pub struct Args {
    /// The .tflite model to convert.
    pub model: PathBuf,
    /// Output path [default: the model path with a .emb extension].
    #[arg(short, long, value_name = "OUT.emb")]
    pub output: Option<PathBuf>,
    /// Class labels in output order: a file with one label per line, or a comma-separated list.
    #[arg(long, value_name = "FILE_OR_LIST")]
    pub labels: Option<String>,
}

/// Labels from a file (one per line) if `spec` names one, else from a comma-separated list.
pub fn parse_labels(spec: &str) -> anyhow::Result<Vec<String>> {
    let path = std::path::Path::new(spec);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read labels file {}", path.display()))?
    } else {
        spec.replace(',', "\n")
    };
    let labels: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if labels.is_empty() {
        anyhow::bail!("--labels {spec:?} holds no labels; pass a file with one label per line or a list like `yes,no`");
    }
    Ok(labels)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let mut options = ember_convert::ConvertOptions::default();
    if let Some(spec) = &args.labels {
        options.labels = parse_labels(spec)?;
    }
    let converted = ember_convert::convert_with_report(&bytes, &options).with_context(|| {
        format!(
            "cannot convert {} (see the supported ops in `ember convert --help`)",
            args.model.display()
        )
    })?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("emb"));
    std::fs::write(&output, &converted.bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let r = &converted.report;
    println!(
        "wrote {} ({} bytes): {} ops ({} in the TFLite graph), arena {} bytes (lower bound {}), constants {} bytes",
        output.display(),
        converted.bytes.len(),
        r.op_count,
        r.tflite_op_count,
        r.arena_size,
        r.arena_lower_bound,
        r.const_size
    );
    if r.folded_dequantize > 0 {
        println!(
            "folded {} constant DEQUANTIZE op(s) into float weights",
            r.folded_dequantize
        );
    }
    if r.aliased_reshapes > 0 {
        println!(
            "{} reshape(s) share their input's memory (no copy)",
            r.aliased_reshapes
        );
    }
    if !options.labels.is_empty() {
        println!("labels: {}", options.labels.join(", "));
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

//! `ember convert`: TFLite flatbuffer to `.emb`.

use std::path::PathBuf;

use anyhow::Context;
use ember_runtime::format::meta_keys;
use ember_runtime::frontend::FrontendConfig;

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
  ember convert micro_speech.tflite --labels labels.txt   # writes micro_speech.emb
  ember convert kws_ref_model.tflite -o kws.emb --frontend mlperf-kws \\
      --labels down,go,left,no,off,on,right,stop,up,yes,silence,unknown
      # then: ember run kws.emb --input yes_1000ms.wav

--frontend stores the audio front end (framing, window, FFT, mel, log, DCT; see docs/FRONTEND.md) \
in the model, so `ember run`, `ember stream` and the firmware turn audio into the model's input \
themselves. Presets: mlperf-kws (49 frames x 10 MFCC from 1 s of 16 kHz audio, as MLPerf Tiny's \
keyword spotting). A JSON file with the fields of FrontendConfig is accepted too."
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
    /// Audio front end to store in the model: a preset (`mlperf-kws`) or a JSON file.
    #[arg(long, value_name = "PRESET_OR_JSON")]
    pub frontend: Option<String>,
}

/// The front-end configuration named by `spec`: a preset name or a JSON file.
pub fn parse_frontend(spec: &str) -> anyhow::Result<FrontendConfig> {
    let config = match spec {
        "mlperf-kws" => FrontendConfig::mlperf_kws(),
        path => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "--frontend {path:?} is neither a preset (mlperf-kws) nor a readable JSON file"
                )
            })?;
            serde_json::from_str(&text).with_context(|| {
                format!("{path} is not a valid front-end configuration (see docs/FRONTEND.md)")
            })?
        }
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid front-end configuration: {e}"))?;
    Ok(config)
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
    if let Some(spec) = &args.frontend {
        let config = parse_frontend(spec)?;
        options
            .metadata
            .push((meta_keys::FRONTEND.to_string(), config.to_metadata()));
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

//! `ember run`: one inference on the host from a .bin or .npy input.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ember_runtime::format::meta_keys;
use ember_runtime::frontend::wav::Wav;
use ember_runtime::frontend::{Frontend, FrontendConfig};
use ember_runtime::host::AlignedBytes;
use ember_runtime::{DType, Model, TensorDef};
use serde_json::json;

use crate::inspect::{load_file, shape_text};

/// Run a model once on the host.
#[derive(Debug, clap::Args)]
#[command(long_about = "Run an ember model (.emb) once on the host.

The input is a raw little-endian .bin file (exactly the input tensor's bytes) or a .npy file \
whose dtype and element count must match the model's input (see `ember inspect`). Without \
--output the result is printed (with labels: the top classes and their scores); with --output \
it is written as .npy (if the name ends in .npy) or raw little-endian bytes.

Examples:
  ember run kws.emb --input mfcc.npy
  ember run kws.emb --input mfcc.bin --output scores.npy
  ember run kws.emb --input mfcc.npy --json
  ember run kws.emb --input yes_1000ms.wav     # models converted with --frontend take audio

A .wav input (16-bit PCM mono at the front end's sample rate) needs a model that carries a front \
end (`ember convert --frontend ...`): the audio is turned into features and quantized to the \
model's input exactly as the firmware does.")]
pub struct Args {
    /// The .emb model.
    pub model: PathBuf,
    /// Input tensor: raw little-endian .bin or .npy; or audio (.wav) for models with a front end.
    #[arg(short, long, value_name = "IN")]
    pub input: PathBuf,
    /// Write the output tensor here (.npy or raw .bin) instead of printing it.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn npy_descr(dtype: DType) -> &'static str {
    match dtype {
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::F32 => "<f4",
    }
}

/// The data bytes of a .npy file, checked against `expected`.
fn read_npy(bytes: &[u8], expected: &TensorDef, path: &Path) -> anyhow::Result<Vec<u8>> {
    let bad = |why: &str| anyhow::anyhow!("{} is not a valid .npy file: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("no descr"))?;
    let want = npy_descr(expected.dtype);
    let same = descr == want || (expected.dtype == DType::I8 && descr == "<i1");
    if !same {
        anyhow::bail!(
            "{} holds dtype {descr}, the model input is {} ({want}); convert it, e.g. np.save(path, x.astype(np.{}))",
            path.display(),
            expected.dtype.name(),
            expected.dtype.name()
        );
    }
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        anyhow::bail!(
            "{} is Fortran-ordered; save it C-ordered (np.ascontiguousarray)",
            path.display()
        );
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let mut elements = 1usize;
    for d in shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        elements = elements
            .checked_mul(d.parse::<usize>().map_err(|_| bad("bad shape"))?)
            .ok_or_else(|| bad("shape overflows"))?;
    }
    if elements != expected.elements() {
        anyhow::bail!(
            "{} has shape ({shape_text}) = {elements} elements; the model input {} needs {}",
            path.display(),
            crate::inspect::shape_text(expected),
            expected.elements()
        );
    }
    let data = &bytes[start + header_len..];
    let need = expected.byte_len().unwrap_or(0);
    if data.len() != need {
        return Err(bad("data length differs from its shape"));
    }
    Ok(data.to_vec())
}

fn write_npy(t: &TensorDef, data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = t.shape.dims.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        npy_descr(t.dtype)
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads an input file (.npy or raw) for tensor `t`.
pub fn read_input(path: &Path, t: &TensorDef) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "npy") || bytes.starts_with(b"\x93NUMPY") {
        return read_npy(&bytes, t, path);
    }
    let need = t.byte_len().unwrap_or(0);
    if bytes.len() != need {
        anyhow::bail!(
            "{} has {} bytes; the model input {} needs exactly {need} (raw little-endian), or pass a .npy file",
            path.display(),
            bytes.len(),
            shape_text(t)
        );
    }
    Ok(bytes)
}

/// Element values as f64, dequantized when the tensor is quantized.
pub fn values(t: &TensorDef, data: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let raw: Vec<f64> = match t.dtype {
        DType::I8 => data.iter().map(|&b| b as i8 as f64).collect(),
        DType::I16 => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        DType::I32 => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        DType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
    };
    let real = match t.quant {
        Some(q) if t.dtype != DType::F32 => raw
            .iter()
            .map(|&v| q.scale as f64 * (v - q.zero_point as f64))
            .collect(),
        _ => raw.clone(),
    };
    (raw, real)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = load_file(&args.model)?;
    let model = Model::load(bytes.as_slice())?;
    if model.inputs().len() != 1 {
        anyhow::bail!(
            "the model has {} inputs; `ember run` supports single-input models",
            model.inputs().len()
        );
    }
    let input = if args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
    {
        audio_input(&model, &args.input)?
    } else {
        read_input(&args.input, &model.inputs()[0])?
    };
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    model
        .input_mut(arena.as_mut_slice(), 0)?
        .copy_from_slice(&input);
    model
        .run(arena.as_mut_slice())
        .context("inference failed")?;
    let out_def = &model.outputs()[0];
    let out = model.output(arena.as_slice(), 0)?;
    if let Some(path) = &args.output {
        let data = if path.extension().is_some_and(|e| e == "npy") {
            write_npy(out_def, out)
        } else {
            out.to_vec()
        };
        std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            println!("wrote {} ({})", path.display(), shape_text(out_def));
            return Ok(());
        }
    }
    let (raw, real) = values(out_def, out);
    let labels: Vec<&str> = model.labels().collect();
    let mut ranked: Vec<usize> = (0..real.len()).collect();
    ranked.sort_by(|&a, &b| real[b].total_cmp(&real[a]));
    let top: Vec<usize> = ranked.into_iter().take(5).collect();
    if args.json {
        let doc = json!({
            "output": {"dtype": out_def.dtype.name(), "shape": out_def.shape.dims.iter().collect::<Vec<_>>(),
                       "values": raw, "dequantized": real},
            "top": top.iter().map(|&i| json!({"index": i, "label": labels.get(i), "score": real[i]})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("output {}", shape_text(out_def));
    if !labels.is_empty() && labels.len() == real.len() {
        for &i in &top {
            println!("  {:<12} {:.4}", labels[i], real[i]);
        }
    } else {
        let text: Vec<String> = raw.iter().map(|v| format!("{v}")).collect();
        println!("  {}", text.join(" "));
    }
    Ok(())
}

/// The model's input computed from a WAV file by the model's own front end.
pub fn audio_input(model: &Model<'_>, path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = model.metadata(meta_keys::FRONTEND).with_context(|| {
        format!(
            "{} is audio, but the model carries no front end; convert it with `ember convert --frontend mlperf-kws ...` or pass features as .npy",
            path.display()
        )
    })?;
    let config = FrontendConfig::from_metadata(meta)
        .map_err(|e| anyhow::anyhow!("the model's front-end configuration is invalid: {e}"))?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let wav = Wav::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if wav.sample_rate != config.sample_rate_hz {
        anyhow::bail!(
            "{} is sampled at {} Hz; the model's front end expects {} Hz (resample with `sox IN.wav -r {} OUT.wav`)",
            path.display(),
            wav.sample_rate,
            config.sample_rate_hz,
            config.sample_rate_hz
        );
    }
    let input = &model.inputs()[0];
    let quant = match (input.dtype, input.quant) {
        (DType::I8, Some(q)) => q,
        _ => anyhow::bail!(
            "audio input needs a model with a quantized int8 input; this one takes {}",
            shape_text(input)
        ),
    };
    if input.elements() != config.feature_len() {
        anyhow::bail!(
            "the front end makes {} features but the model input {} holds {}",
            config.feature_len(),
            shape_text(input),
            input.elements()
        );
    }
    // MLPerf's features see one clip padded or cut to a second; the peak scaling looks at all of it.
    let clip_len = config.span_samples().max(config.sample_rate_hz as usize);
    let clip: Vec<i16> = wav.samples().take(clip_len).collect();
    let mut workspace = vec![0f32; config.workspace_len()];
    let mut frontend = Frontend::new(&config, &mut workspace)
        .map_err(|e| anyhow::anyhow!("cannot set up the front end: {e}"))?;
    let mut features = vec![0f32; config.feature_len()];
    let mut out = vec![0i8; config.feature_len()];
    frontend
        .process_clip_quantized(&clip, quant, &mut features, &mut out)
        .map_err(|e| anyhow::anyhow!("front end failed on {}: {e}", path.display()))?;
    Ok(out.into_iter().map(|v| v as u8).collect())
}

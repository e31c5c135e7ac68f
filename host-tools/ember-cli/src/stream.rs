//! `ember stream`: send audio or sensor data to a board and print its predictions live.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ember_runtime::format::meta_keys;
use ember_runtime::frontend::wav::Wav;
use ember_runtime::frontend::FrontendConfig;
use ember_runtime::host::AlignedBytes;
use ember_runtime::{DType, Model, TensorDef};

use crate::device::{connect, PortArgs};

/// Stream data to the board's running model and print predictions as they come.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Stream audio or sensor data to the board's running model and print \
its predictions as they come.

The board keeps a sliding window of --window samples and runs the model every --hop samples. \
For models converted with `--frontend` (audio), samples are 16-bit PCM and the board computes \
the features itself; for other models each sample is one element of the model's input.

Input forms:
  FILE.wav   16-bit PCM mono (its sample rate paces the stream)
  FILE.csv   one sample per line, comma-separated channels, real values; quantized with the
             model input's scale/zero point when --model is given, else taken as raw integers
  -          raw little-endian samples on stdin (s16le for audio), e.g. from `arecord` or `sox`

Data is paced at its sample rate, like a live sensor, unless --as-fast-as-possible.
Pass --model with the .emb you flashed to see labels and scores instead of raw bytes.

Examples:
  ember stream --port /dev/pts/3 --input words.wav --model kws.emb
  ember stream --port /dev/pts/3 --input words.wav --model kws.emb --json --as-fast-as-possible
  arecord -f S16_LE -r 16000 -c 1 -t raw | ember stream --port /dev/ttyACM0 --input - --model kws.emb"
)]
pub struct StreamArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Data to stream: .wav, .csv, or - for raw samples on stdin.
    #[arg(long, short)]
    pub input: PathBuf,
    /// The .emb running on the board, for labels, output scales and the front end's defaults.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Window length in samples [default: 1 s for audio models, the model input otherwise].
    #[arg(long)]
    pub window: Option<u32>,
    /// Samples between inferences [default: the window length, i.e. back-to-back windows].
    #[arg(long)]
    pub hop: Option<u32>,
    /// Sample rate in Hz for CSV and stdin input [default: the board's stream rate].
    #[arg(long)]
    pub rate: Option<u32>,
    /// Send data as fast as the link allows instead of at its sample rate.
    #[arg(long)]
    pub as_fast_as_possible: bool,
}

/// What the host knows about the model on the board.
struct ModelView {
    labels: Vec<String>,
    output: Option<TensorDef>,
    input: Option<TensorDef>,
    frontend: Option<FrontendConfig>,
}

fn model_view(path: &Option<PathBuf>) -> anyhow::Result<ModelView> {
    let Some(path) = path else {
        return Ok(ModelView {
            labels: Vec::new(),
            output: None,
            input: None,
            frontend: None,
        });
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::load(aligned.as_slice())
        .with_context(|| format!("{} is not a valid .emb", path.display()))?;
    let frontend = match model.metadata(meta_keys::FRONTEND) {
        Some(meta) => Some(
            FrontendConfig::from_metadata(meta)
                .map_err(|e| anyhow::anyhow!("bad front-end record: {e}"))?,
        ),
        None => None,
    };
    Ok(ModelView {
        labels: model.labels().map(str::to_string).collect(),
        output: model.outputs().first().cloned(),
        input: model.inputs().first().cloned(),
        frontend,
    })
}

/// Encodes CSV values as the stream's sample bytes.
fn csv_samples(text: &str, view: &ModelView) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for field in line.split(',') {
            let field = field.trim();
            let Ok(value) = field.parse::<f64>() else {
                if line_no == 0 {
                    break; // a header row
                }
                bail!("line {}: `{field}` is not a number", line_no + 1);
            };
            match (&view.frontend, &view.input) {
                (Some(_), _) => out.extend_from_slice(
                    &(value.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes(),
                ),
                (None, Some(t)) if t.dtype == DType::F32 => {
                    out.extend_from_slice(&(value as f32).to_le_bytes())
                }
                (None, Some(t)) if t.dtype == DType::I8 => {
                    let q = match t.quant {
                        Some(q) => (value / q.scale as f64).round() + q.zero_point as f64,
                        None => value,
                    };
                    out.push(q.clamp(-128.0, 127.0) as i8 as u8);
                }
                (None, Some(t)) => {
                    bail!("streaming into a {} input is not supported", t.dtype.name())
                }
                (None, None) => out.push(value.clamp(-128.0, 127.0) as i8 as u8),
            }
        }
    }
    Ok(out)
}

fn print_inference(
    view: &ModelView,
    inference: &ember_link::Inference,
    rate: u32,
    json: bool,
) -> std::io::Result<()> {
    let seconds = inference.end_sample as f64 / rate.max(1) as f64;
    let scores: Vec<f64> = match &view.output {
        Some(t) => crate::run::values(t, &inference.output).1,
        None => inference.output.iter().map(|&b| b as i8 as f64).collect(),
    };
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let name = |i: usize| {
        view.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"))
    };
    if json {
        let top: Vec<_> = ranked
            .iter()
            .take(3)
            .map(|&i| serde_json::json!({"index": i, "label": view.labels.get(i), "score": scores[i]}))
            .collect();
        let line = serde_json::json!({
            "time_s": seconds, "end_sample": inference.end_sample, "top": top,
            "cycles": inference.cycles, "instructions": inference.instructions,
        });
        writeln!(std::io::stdout().lock(), "{line}")?;
    } else {
        let first = ranked.first().copied().unwrap_or(0);
        let second = ranked.get(1).copied().unwrap_or(0);
        let cost = match inference.instructions {
            Some(n) => format!("{:.2} M instructions", n as f64 / 1e6),
            None => format!("{} cycles", inference.cycles),
        };
        writeln!(
            std::io::stdout().lock(),
            "{seconds:>8.2} s   {:<10} {:>6.3}   (next: {} {:.3})   {cost}",
            name(first),
            scores.get(first).copied().unwrap_or(0.0),
            name(second),
            scores.get(second).copied().unwrap_or(0.0),
        )?;
    }
    Ok(())
}

pub fn stream(args: StreamArgs) -> anyhow::Result<()> {
    let view = model_view(&args.model)?;
    let stdin = args.input.as_os_str() == "-";
    let ext = args
        .input
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (data, file_rate): (Vec<u8>, Option<u32>) = match ext.as_deref() {
        _ if stdin => (Vec::new(), None),
        Some("wav") => {
            let bytes = std::fs::read(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
            let wav = Wav::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
            (wav.samples().flat_map(i16::to_le_bytes).collect(), Some(wav.sample_rate))
        }
        Some("csv") => {
            let text = std::fs::read_to_string(&args.input)
                .with_context(|| format!("cannot read {}", args.input.display()))?;
            (csv_samples(&text, &view)?, None)
        }
        Some("parquet") => bail!(
            "Parquet input is not supported by `ember stream` yet; export the column to CSV (one sample per line)"
        ),
        _ => bail!("{}: use a .wav or .csv file, or - for raw samples on stdin", args.input.display()),
    };

    let mut link = connect(&args.port.port)?;
    let info = link.info().context("the board did not answer Info")?;
    let caps = info
        .stream
        .context("the board does not support streaming (its firmware has no stream input)")?;
    let rate = args.rate.or(file_rate).unwrap_or(caps.sample_rate_hz);
    if let (Some(file_rate), Some(frontend)) = (file_rate, &view.frontend) {
        if file_rate != frontend.sample_rate_hz {
            bail!(
                "{} is sampled at {file_rate} Hz but the model's front end expects {} Hz (resample: sox IN.wav -r {} OUT.wav)",
                args.input.display(),
                frontend.sample_rate_hz,
                frontend.sample_rate_hz
            );
        }
    }
    let sample_bytes = if view.frontend.is_some() || stdin {
        2
    } else {
        view.input.as_ref().map_or(1, |t| t.dtype.size())
    };
    let window = match (args.window, &view.frontend, &view.input) {
        (Some(w), _, _) => w,
        (None, Some(f), _) => f.sample_rate_hz,
        (None, None, Some(t)) => t.elements() as u32,
        (None, None, None) => {
            bail!("pass --window (samples), or --model with the .emb on the board")
        }
    };
    let hop = args.hop.unwrap_or(window);
    link.stream_begin(window, hop)
        .context("the board refused the stream")?;
    if !args.port.json {
        println!(
            "streaming {} at {rate} Hz to {} (window {window}, hop {hop} samples){}",
            args.input.display(),
            info.board,
            if args.as_fast_as_possible {
                ", as fast as possible"
            } else {
                ""
            }
        );
    }

    // Chunks of a quarter hop keep latency low while pacing at the data's rate.
    let chunk_samples = (hop as usize / 4).clamp(64, 4096);
    let chunk_bytes = chunk_samples * sample_bytes;
    let start = Instant::now();
    let mut sent_samples = 0u64;
    let mut count = 0usize;
    let mut send = |link: &mut ember_link::Link<_>,
                    chunk: &[u8],
                    sent_samples: &mut u64|
     -> anyhow::Result<()> {
        if !args.as_fast_as_possible {
            let due = Duration::from_secs_f64(*sent_samples as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        for inference in link.stream_push(chunk).context("streaming failed")? {
            match print_inference(&view, &inference, rate, args.port.json) {
                // The reader went away (`| head`): stop quietly, as Unix tools do.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Err(BrokenPipe.into())
                }
                other => other?,
            }
            count += 1;
        }
        *sent_samples += (chunk.len() / sample_bytes) as u64;
        Ok(())
    };
    if stdin {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; chunk_bytes];
        loop {
            let n = read_full(&mut input, &mut buf)?;
            let whole = n - n % sample_bytes;
            if whole > 0 {
                match send(&mut link, &buf[..whole], &mut sent_samples) {
                    Err(e) if e.is::<BrokenPipe>() => break,
                    other => other?,
                }
            }
            if n < buf.len() {
                break;
            }
        }
    } else {
        for chunk in data.chunks(chunk_bytes) {
            match send(&mut link, chunk, &mut sent_samples) {
                Err(e) if e.is::<BrokenPipe>() => {
                    let _ = link.stream_end();
                    return Ok(());
                }
                other => other?,
            }
        }
    }
    link.stream_end().context("closing the stream failed")?;
    if !args.port.json {
        println!("{count} predictions from {sent_samples} samples");
    }
    Ok(())
}

/// Stdout was closed by its reader.
#[derive(Debug)]
struct BrokenPipe;

impl std::fmt::Display for BrokenPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output closed")
    }
}

impl std::error::Error for BrokenPipe {}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot read stdin"),
        }
    }
    Ok(filled)
}

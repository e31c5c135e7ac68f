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

use crate::device::{bad_input, connect, refused, PortArgs};
use crate::host_stream::{HostInference, HostStream};

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
  FILE.parquet  one sample per row, numeric columns as channels (all, or those named with
             --column in that order), converted like CSV; Snappy-compressed or uncompressed
  -          raw little-endian samples on stdin (s16le for audio), e.g. from `arecord` or `sox`

Data is paced at its sample rate, like a live sensor, unless --as-fast-as-possible.
Pass --model with the .emb you flashed to see labels and scores instead of raw bytes.
With --host there is no board: the model given with --model runs on this machine, window for
window as the board would run it (same front end, same hop), so a demo needs no hardware.

Examples:
  ember stream --port /dev/pts/3 --input words.wav --model kws.emb
  ember stream --port /dev/pts/3 --input imu.parquet --column ax --column ay --model gesture.emb
  ember stream --port /dev/pts/3 --input words.wav --model kws.emb --json --as-fast-as-possible
  arecord -f S16_LE -r 16000 -c 1 -t raw | ember stream --port /dev/ttyACM0 --input - --model kws.emb
  ember stream --host --input words.wav --model kws.emb --as-fast-as-possible
  ember stream --host --input imu.csv --model basicmotions.emb --rate 10 --hop 40"
)]
pub struct StreamArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Data to stream: .wav, .csv, .parquet, or - for raw samples on stdin.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Parquet column to stream as a channel; repeat for several [default: all columns].
    #[arg(long = "column", value_name = "NAME")]
    pub column: Vec<String>,
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
    /// No board: run the model (--model) on this machine with the board's windowing and front
    /// end, e.g. to try a model before flashing it.
    #[arg(long)]
    pub host: bool,
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

/// How one real value becomes the bytes of one stream sample.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SampleEncoding {
    /// 16-bit PCM for models whose front end runs on the board.
    Pcm16,
    /// The model input's own float elements.
    F32,
    /// Quantized with the model input's scale and zero point.
    Int8 { scale: f64, zero_point: f64 },
    /// Already-quantized integers (int8 input without parameters, or no --model).
    RawInt8,
}

impl SampleEncoding {
    fn for_model(view: &ModelView) -> anyhow::Result<Self> {
        Ok(match (&view.frontend, &view.input) {
            (Some(_), _) => SampleEncoding::Pcm16,
            (None, Some(t)) if t.dtype == DType::F32 => SampleEncoding::F32,
            (None, Some(t)) if t.dtype == DType::I8 => match t.quant {
                Some(q) => SampleEncoding::Int8 {
                    scale: q.scale as f64,
                    zero_point: q.zero_point as f64,
                },
                None => SampleEncoding::RawInt8,
            },
            (None, Some(t)) => {
                bail!("streaming into a {} input is not supported", t.dtype.name())
            }
            (None, None) => SampleEncoding::RawInt8,
        })
    }

    fn push(self, value: f64, out: &mut Vec<u8>) {
        match self {
            SampleEncoding::Pcm16 => out
                .extend_from_slice(&(value.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes()),
            SampleEncoding::F32 => out.extend_from_slice(&(value as f32).to_le_bytes()),
            SampleEncoding::Int8 { scale, zero_point } => {
                let q = (value / scale).round() + zero_point;
                out.push(q.clamp(-128.0, 127.0) as i8 as u8)
            }
            SampleEncoding::RawInt8 => out.push(value.clamp(-128.0, 127.0) as i8 as u8),
        }
    }
}

/// Encodes CSV values (one sample per line, comma-separated channels) as the stream's bytes.
fn csv_samples(text: &str, encoding: SampleEncoding) -> anyhow::Result<Vec<u8>> {
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
            encoding.push(value, &mut out);
        }
    }
    Ok(out)
}

/// Encodes a Parquet file's rows as the stream's bytes: one sample per row, its channels
/// the chosen columns in the order given (all columns, in file order, when none are named).
fn parquet_samples(
    file: std::fs::File,
    columns: &[String],
    encoding: SampleEncoding,
) -> anyhow::Result<Vec<u8>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let reader = SerializedFileReader::new(file).context("not a readable Parquet file")?;
    let schema = reader.metadata().file_metadata().schema();
    let available: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    if let Some(missing) = columns.iter().find(|c| !available.contains(&c.as_str())) {
        bail!(
            "no column `{missing}`; the file has: {}",
            available.join(", ")
        );
    }
    let mut out = Vec::new();
    let rows = reader
        .get_row_iter(None)
        .context("cannot read the Parquet rows")?;
    for (row_no, row) in rows.enumerate() {
        let row = row.with_context(|| format!("row {row_no}: cannot decode"))?;
        let mut push = |name: &str, field: &Field| -> anyhow::Result<()> {
            let value = match *field {
                Field::Byte(v) => v as f64,
                Field::Short(v) => v as f64,
                Field::Int(v) => v as f64,
                Field::Long(v) => v as f64,
                Field::UByte(v) => v as f64,
                Field::UShort(v) => v as f64,
                Field::UInt(v) => v as f64,
                Field::ULong(v) => v as f64,
                Field::Float16(v) => f64::from(v),
                Field::Float(v) => v as f64,
                Field::Double(v) => v,
                Field::Null => bail!("row {row_no}, column `{name}`: missing value"),
                _ => bail!(
                    "column `{name}` is not numeric ({field}); pick numeric columns with --column"
                ),
            };
            encoding.push(value, &mut out);
            Ok(())
        };
        if columns.is_empty() {
            for (name, field) in row.get_column_iter() {
                push(name, field)?;
            }
        } else {
            for wanted in columns {
                let field = row
                    .get_column_iter()
                    .find(|(name, _)| *name == wanted)
                    .map(|(_, field)| field)
                    .unwrap_or(&Field::Null);
                push(wanted, field)?;
            }
        }
    }
    Ok(out)
}

/// What one inference cost, where it ran.
#[derive(Debug, Clone, Copy)]
enum Cost {
    Board {
        cycles: u64,
        instructions: Option<u64>,
    },
    Host {
        micros: f64,
    },
}

/// One prediction of a stream, from the board or from `--host`.
#[derive(Debug, Clone)]
struct Prediction {
    output: Vec<u8>,
    end_sample: u64,
    cost: Cost,
}

impl From<ember_link::Inference> for Prediction {
    fn from(inference: ember_link::Inference) -> Self {
        Prediction {
            output: inference.output,
            end_sample: inference.end_sample,
            cost: Cost::Board {
                cycles: inference.cycles,
                instructions: inference.instructions,
            },
        }
    }
}

impl From<HostInference> for Prediction {
    fn from(inference: HostInference) -> Self {
        Prediction {
            output: inference.output,
            end_sample: inference.end_sample,
            cost: Cost::Host {
                micros: inference.micros,
            },
        }
    }
}

fn print_prediction(
    view: &ModelView,
    prediction: &Prediction,
    rate: u32,
    json: bool,
) -> std::io::Result<()> {
    let seconds = prediction.end_sample as f64 / rate.max(1) as f64;
    let scores: Vec<f64> = match &view.output {
        Some(t) => crate::run::values(t, &prediction.output).1,
        None => prediction.output.iter().map(|&b| b as i8 as f64).collect(),
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
        let mut line = serde_json::json!({
            "time_s": seconds, "end_sample": prediction.end_sample, "top": top,
        });
        match prediction.cost {
            Cost::Board {
                cycles,
                instructions,
            } => {
                line["cycles"] = cycles.into();
                line["instructions"] = instructions.into();
            }
            Cost::Host { micros } => line["host_us"] = micros.into(),
        }
        writeln!(std::io::stdout().lock(), "{line}")?;
    } else {
        let first = ranked.first().copied().unwrap_or(0);
        let second = ranked.get(1).copied().unwrap_or(0);
        let cost = match prediction.cost {
            Cost::Board {
                instructions: Some(n),
                ..
            } => format!("{:.2} M instructions", n as f64 / 1e6),
            Cost::Board { cycles, .. } => format!("{cycles} cycles"),
            Cost::Host { micros } => format!("{micros:.0} µs on this machine"),
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

/// The samples of a file input (nothing for stdin, which is read while streaming) and the
/// file's own sample rate, if it has one.
fn read_input(
    args: &StreamArgs,
    view: &ModelView,
    stdin: bool,
) -> anyhow::Result<(Vec<u8>, Option<u32>)> {
    let ext = args
        .input
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match ext.as_deref() {
        _ if stdin => (Vec::new(), None),
        Some("wav") => {
            let bytes = std::fs::read(&args.input)
                .with_context(|| format!("cannot read {}", args.input.display()))?;
            let wav =
                Wav::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
            (
                wav.samples().flat_map(i16::to_le_bytes).collect(),
                Some(wav.sample_rate),
            )
        }
        Some("csv") => {
            let text = std::fs::read_to_string(&args.input)
                .with_context(|| format!("cannot read {}", args.input.display()))?;
            (csv_samples(&text, SampleEncoding::for_model(view)?)?, None)
        }
        Some("parquet") => {
            let file = std::fs::File::open(&args.input)
                .with_context(|| format!("cannot read {}", args.input.display()))?;
            let samples = parquet_samples(file, &args.column, SampleEncoding::for_model(view)?)
                .with_context(|| args.input.display().to_string())?;
            (samples, None)
        }
        _ => bail!(
            "{}: use a .wav, .csv or .parquet file, or - for raw samples on stdin",
            args.input.display()
        ),
    })
}

pub fn stream(args: StreamArgs) -> anyhow::Result<()> {
    let view = model_view(&args.model).map_err(bad_input)?;
    let stdin = args.input.as_os_str() == "-";
    let (data, file_rate) = read_input(&args, &view, stdin).map_err(bad_input)?;
    if let (Some(file_rate), Some(frontend)) = (file_rate, &view.frontend) {
        if file_rate != frontend.sample_rate_hz {
            return Err(bad_input(anyhow::anyhow!(
                "{} is sampled at {file_rate} Hz but the model's front end expects {} Hz (resample: sox IN.wav -r {} OUT.wav)",
                args.input.display(),
                frontend.sample_rate_hz,
                frontend.sample_rate_hz
            )));
        }
    }
    let window = match (args.window, &view.frontend, &view.input) {
        (Some(w), _, _) => w,
        (None, Some(f), _) => f.sample_rate_hz,
        (None, None, Some(t)) => t.elements() as u32,
        (None, None, None) => {
            return Err(bad_input(anyhow::anyhow!(
                "pass --window (samples), or --model with the .emb on the board"
            )))
        }
    };
    let hop = args.hop.unwrap_or(window);
    let source = Source {
        data,
        stdin,
        file_rate,
    };
    if args.host {
        stream_on_host(&args, &view, source, window, hop)
    } else {
        stream_to_board(&args, &view, source, window, hop)
    }
}

/// The samples to stream: a file's, already encoded, or stdin read as it comes.
struct Source {
    data: Vec<u8>,
    stdin: bool,
    file_rate: Option<u32>,
}

fn stream_to_board(
    args: &StreamArgs,
    view: &ModelView,
    source: Source,
    window: u32,
    hop: u32,
) -> anyhow::Result<()> {
    let mut link = connect(&args.port.port)?;
    let info = link.info().context("the board did not answer Info")?;
    let caps = info
        .stream
        .context("the board does not support streaming (its firmware has no stream input)")
        .map_err(refused)?;
    let rate = args
        .rate
        .or(source.file_rate)
        .unwrap_or(caps.sample_rate_hz);
    let sample_bytes = if view.frontend.is_some() || source.stdin {
        2
    } else {
        view.input.as_ref().map_or(1, |t| t.dtype.size())
    };
    link.stream_begin(window, hop)
        .context("the board refused the stream")?;
    let target = info.board.clone();
    let outcome = pump(
        args,
        view,
        &source,
        Pacing {
            rate,
            sample_bytes,
            hop,
            window,
            target: &target,
        },
        |chunk| {
            Ok(link
                .stream_push(chunk)
                .context("streaming failed")?
                .into_iter()
                .map(Prediction::from)
                .collect())
        },
    );
    match outcome {
        Ok(()) => link.stream_end().context("closing the stream failed"),
        Err(e) if e.is::<BrokenPipe>() => {
            let _ = link.stream_end();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn stream_on_host(
    args: &StreamArgs,
    view: &ModelView,
    source: Source,
    window: u32,
    hop: u32,
) -> anyhow::Result<()> {
    let path = args
        .model
        .as_ref()
        .context("--host runs the model on this machine: pass it with --model")
        .map_err(bad_input)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::load(aligned.as_slice())
        .with_context(|| format!("{} is not a valid .emb", path.display()))
        .map_err(bad_input)?;
    let rate = match (args.rate, source.file_rate, &view.frontend) {
        (Some(rate), _, _) | (None, Some(rate), _) => rate,
        (None, None, Some(frontend)) => frontend.sample_rate_hz,
        (None, None, None) => {
            return Err(bad_input(anyhow::anyhow!(
                "pass --rate: the sensor's sample rate in Hz paces the stream and times the predictions"
            )))
        }
    };
    let mut host = HostStream::new(&model, window, hop).map_err(bad_input)?;
    let sample_bytes = host.sample_bytes();
    let outcome = pump(
        args,
        view,
        &source,
        Pacing {
            rate,
            sample_bytes,
            hop,
            window,
            target: "this machine (--host)",
        },
        |chunk| {
            Ok(host
                .push(chunk)?
                .into_iter()
                .map(Prediction::from)
                .collect())
        },
    );
    match outcome {
        Err(e) if e.is::<BrokenPipe>() => Ok(()),
        other => other,
    }
}

/// How the samples are sent and reported.
struct Pacing<'t> {
    rate: u32,
    sample_bytes: usize,
    hop: u32,
    window: u32,
    target: &'t str,
}

/// Sends the source in chunks (paced at its sample rate unless `--as-fast-as-possible`) through
/// `push` and prints each prediction that comes back. Ends with [`BrokenPipe`] when stdout's
/// reader went away.
fn pump(
    args: &StreamArgs,
    view: &ModelView,
    source: &Source,
    pacing: Pacing<'_>,
    mut push: impl FnMut(&[u8]) -> anyhow::Result<Vec<Prediction>>,
) -> anyhow::Result<()> {
    let Pacing {
        rate,
        sample_bytes,
        hop,
        window,
        target,
    } = pacing;
    if !args.port.json {
        println!(
            "streaming {} at {rate} Hz to {target} (window {window}, hop {hop} samples){}",
            args.input.display(),
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
    let mut send = |chunk: &[u8]| -> anyhow::Result<()> {
        if !args.as_fast_as_possible {
            let due = Duration::from_secs_f64(sent_samples as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        for prediction in push(chunk)? {
            match print_prediction(view, &prediction, rate, args.port.json) {
                // The reader went away (`| head`): stop quietly, as Unix tools do.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Err(BrokenPipe.into())
                }
                other => other?,
            }
            count += 1;
        }
        sent_samples += (chunk.len() / sample_bytes) as u64;
        Ok(())
    };
    if source.stdin {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; chunk_bytes];
        loop {
            let n = read_full(&mut input, &mut buf)?;
            let whole = n - n % sample_bytes;
            if whole > 0 {
                send(&buf[..whole])?;
            }
            if n < buf.len() {
                break;
            }
        }
    } else {
        for chunk in source.data.chunks(chunk_bytes) {
            send(chunk)?;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::{Repetition, Type as PhysicalType};
    use parquet::data_type::{DoubleType, FloatType, Int32Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use std::sync::Arc;

    /// Rows of (a: f64, b: f32, c: i32, label: utf8) with values that exercise rounding,
    /// negative numbers and clamping for every encoding.
    const A: [f64; 5] = [0.0, -1.26, 3.5, 1000.0, -40000.0];
    const B: [f32; 5] = [0.25, 7.0, -0.5, 2.75, 127.9];
    const C: [i32; 5] = [1, -2, 300, -128, 40000];

    fn write_parquet(path: &std::path::Path) {
        let column = |name: &str, physical| {
            Arc::new(
                Type::primitive_type_builder(name, physical)
                    .with_repetition(Repetition::REQUIRED)
                    .build()
                    .unwrap(),
            )
        };
        let schema = Type::group_type_builder("sensor")
            .with_fields(vec![
                column("a", PhysicalType::DOUBLE),
                column("b", PhysicalType::FLOAT),
                column("c", PhysicalType::INT32),
            ])
            .build()
            .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer =
            SerializedFileWriter::new(file, Arc::new(schema), Default::default()).unwrap();
        let mut group = writer.next_row_group().unwrap();
        for index in 0..3 {
            let mut column = group.next_column().unwrap().unwrap();
            match index {
                0 => column.typed::<DoubleType>().write_batch(&A, None, None),
                1 => column.typed::<FloatType>().write_batch(&B, None, None),
                _ => column.typed::<Int32Type>().write_batch(&C, None, None),
            }
            .unwrap();
            column.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
    }

    fn temp_parquet(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ember-stream-{name}-{}.parquet",
            std::process::id()
        ));
        write_parquet(&path);
        path
    }

    const ENCODINGS: [SampleEncoding; 4] = [
        SampleEncoding::Pcm16,
        SampleEncoding::F32,
        SampleEncoding::Int8 {
            scale: 0.05,
            zero_point: -3.0,
        },
        SampleEncoding::RawInt8,
    ];

    #[test]
    fn parquet_all_columns_match_csv() {
        let path = temp_parquet("all");
        let csv: String = (0..A.len())
            .map(|i| format!("{},{},{}\n", A[i], B[i], C[i]))
            .collect();
        for encoding in ENCODINGS {
            let from_csv = csv_samples(&format!("a,b,c\n{csv}"), encoding).unwrap();
            let from_parquet =
                parquet_samples(std::fs::File::open(&path).unwrap(), &[], encoding).unwrap();
            assert_eq!(from_parquet, from_csv, "{encoding:?}");
            let bytes_per_sample = if encoding == SampleEncoding::Pcm16 {
                2
            } else if encoding == SampleEncoding::F32 {
                4
            } else {
                1
            };
            assert_eq!(from_parquet.len(), A.len() * 3 * bytes_per_sample);
        }
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn parquet_named_columns_in_the_order_given() {
        let path = temp_parquet("named");
        let csv: String = (0..A.len())
            .map(|i| format!("{},{}\n", C[i], A[i]))
            .collect();
        let columns = ["c".to_string(), "a".to_string()];
        for encoding in ENCODINGS {
            let from_parquet =
                parquet_samples(std::fs::File::open(&path).unwrap(), &columns, encoding).unwrap();
            assert_eq!(
                from_parquet,
                csv_samples(&csv, encoding).unwrap(),
                "{encoding:?}"
            );
        }
        let err = parquet_samples(
            std::fs::File::open(&path).unwrap(),
            &["z".into()],
            SampleEncoding::F32,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("a, b, c"), "{err:#}");
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn int8_quantization_rounds_and_clamps() {
        let mut out = Vec::new();
        let encoding = SampleEncoding::Int8 {
            scale: 0.5,
            zero_point: 10.0,
        };
        for value in [0.0, 1.2, -3.0, 100.0, -100.0] {
            encoding.push(value, &mut out);
        }
        assert_eq!(
            out.iter().map(|&b| b as i8).collect::<Vec<_>>(),
            [10, 12, 4, 127, -128]
        );
    }

    #[test]
    fn not_parquet_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("ember-stream-bad-{}.parquet", std::process::id()));
        std::fs::write(&path, b"a,b\n1,2\n").unwrap();
        assert!(parquet_samples(
            std::fs::File::open(&path).unwrap(),
            &[],
            SampleEncoding::F32
        )
        .is_err());
        std::fs::remove_file(path).ok();
    }
}

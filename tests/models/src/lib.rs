//! Checks of the committed burn models (`models/*/*.emb`) that need no burn build: each model's
//! metadata, ember's float32 path against burn's outputs (the golden file written by
//! `ember-models reference`), the int8 model's distance from float in output steps, and the
//! accuracy / ROC AUC / recording predictions stated in each model's `results.md`.
//!
//! The expectations come from the committed files, never from this crate: retrain a model
//! without regenerating its golden file or results and these checks fail.

use std::path::{Path, PathBuf};

use ember_runtime::frontend::{quantize, FrontendConfig, QuantRounding};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::{DType, Model, QuantParams};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: ember: {error:?}")]
    Ember {
        path: PathBuf,
        error: ember_runtime::Error,
    },
}

/// The `models/` folder of this repository.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The shared data directory: `$EMBER_SHARED_DIR`, or `shared/` next to the repository.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("EMBER_SHARED_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>, CheckError> {
    std::fs::read(path).map_err(|source| CheckError::Io {
        path: path.to_owned(),
        source,
    })
}

pub fn read_text(path: &Path) -> Result<String, CheckError> {
    std::fs::read_to_string(path).map_err(|source| CheckError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Every `.emb` under `models/<model>/`, sorted.
pub fn committed_models() -> Result<Vec<PathBuf>, CheckError> {
    let dir = models_dir();
    let io = |source| CheckError::Io {
        path: dir.clone(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let folder = entry.map_err(io)?.path();
        if !folder.is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&folder) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "emb") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A loaded `.emb` (the bytes stay aligned for the runtime).
#[derive(Debug)]
pub struct LoadedModel {
    pub path: PathBuf,
    bytes: AlignedBytes,
}

impl LoadedModel {
    pub fn open(path: &Path) -> Result<LoadedModel, CheckError> {
        let bytes = AlignedBytes::from_slice(&read(path)?);
        let loaded = LoadedModel {
            path: path.to_owned(),
            bytes,
        };
        loaded.model()?;
        Ok(loaded)
    }

    /// Loads (and so validates) the model.
    pub fn model(&self) -> Result<Model<'_>, CheckError> {
        Model::load(self.bytes.as_slice()).map_err(|error| self.ember(error))
    }

    fn ember(&self, error: ember_runtime::Error) -> CheckError {
        CheckError::Ember {
            path: self.path.clone(),
            error,
        }
    }

    fn malformed(&self, reason: String) -> CheckError {
        CheckError::Malformed {
            path: self.path.clone(),
            reason,
        }
    }

    pub fn frontend(&self) -> Result<Option<FrontendConfig>, CheckError> {
        let model = self.model()?;
        model
            .metadata(ember_runtime::format::meta_keys::FRONTEND)
            .map(|bytes| {
                FrontendConfig::from_metadata(bytes)
                    .map_err(|e| self.malformed(format!("frontend metadata: {e:?}")))
            })
            .transpose()
    }

    /// Float32 model: output of one float input.
    pub fn run_f32(&self, input: &[f32]) -> Result<Vec<f32>, CheckError> {
        let model = self.model()?;
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = run_once(&model, &[&bytes]).map_err(|e| self.ember(e))?;
        let first = out
            .first()
            .ok_or_else(|| self.malformed("no output".into()))?;
        Ok(first
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Int8 model: quantizes a float input on the model's input grid (with the front end's
    /// rounding when the model carries one), runs it and dequantizes the output.
    pub fn run_int8(&self, input: &[f32]) -> Result<Vec<f32>, CheckError> {
        let model = self.model()?;
        let input_quant = self.input_quant()?;
        let rounding = self
            .frontend()?
            .map(|f| f.quant_rounding)
            .unwrap_or(QuantRounding::Nearest);
        let output_quant = self.output_quant()?;
        let bytes: Vec<u8> = input
            .iter()
            .map(|&x| quantize(x, input_quant, rounding) as u8)
            .collect();
        let out = run_once(&model, &[&bytes]).map_err(|e| self.ember(e))?;
        let first = out
            .first()
            .ok_or_else(|| self.malformed("no output".into()))?;
        Ok(first
            .iter()
            .map(|&q| (q as i8 as i32 - output_quant.zero_point) as f32 * output_quant.scale)
            .collect())
    }

    pub fn input_quant(&self) -> Result<QuantParams, CheckError> {
        let model = self.model()?;
        model
            .inputs()
            .first()
            .filter(|t| t.dtype == DType::I8)
            .and_then(|t| t.quant)
            .ok_or_else(|| self.malformed("input is not quantized int8".into()))
    }

    pub fn output_quant(&self) -> Result<QuantParams, CheckError> {
        let model = self.model()?;
        model
            .outputs()
            .first()
            .filter(|t| t.dtype == DType::I8)
            .and_then(|t| t.quant)
            .ok_or_else(|| self.malformed("output is not quantized int8".into()))
    }
}

/// `models/<m>/float_golden.json`, written by `ember-models reference`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Golden {
    pub model: String,
    pub int8_emb: String,
    pub float_emb: String,
    pub split: String,
    /// ember float32 may differ from burn by this times `max(1, output range)`.
    pub float_tolerance_of_range: f64,
    pub labels: Vec<usize>,
    pub inputs: Vec<Vec<f32>>,
    pub burn_outputs: Vec<Vec<f32>>,
}

impl Golden {
    pub fn load(path: &Path) -> Result<Golden, CheckError> {
        let golden: Golden =
            serde_json::from_str(&read_text(path)?).map_err(|e| CheckError::Malformed {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if golden.inputs.len() != golden.burn_outputs.len()
            || golden.inputs.len() != golden.labels.len()
            || golden.inputs.is_empty()
        {
            return Err(CheckError::Malformed {
                path: path.to_owned(),
                reason: "inputs, labels and outputs differ in count".into(),
            });
        }
        Ok(golden)
    }

    /// `max - min` over every burn output value.
    pub fn output_range(&self) -> f32 {
        let (lo, hi) = self
            .burn_outputs
            .iter()
            .flatten()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        hi - lo
    }
}

/// Every committed golden file.
pub fn goldens() -> Result<Vec<(PathBuf, Golden)>, CheckError> {
    let mut found = Vec::new();
    let dir = models_dir();
    for entry in std::fs::read_dir(&dir)
        .map_err(|source| CheckError::Io {
            path: dir.clone(),
            source,
        })?
        .flatten()
    {
        let path = entry.path().join("float_golden.json");
        if path.is_file() {
            let golden = Golden::load(&path)?;
            found.push((path, golden));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// How far int8 outputs are from float ones, in output quantization steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepHistogram {
    pub zero: usize,
    pub one: usize,
    pub more: usize,
}

impl StepHistogram {
    pub fn add(&mut self, int8: f32, float: f32, scale: f32) {
        match ((int8 - float).abs() / scale).round() as u64 {
            0 => self.zero += 1,
            1 => self.one += 1,
            _ => self.more += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.zero + self.one + self.more
    }

    /// Share of elements within one step.
    pub fn within_one(&self) -> f64 {
        (self.zero + self.one) as f64 / self.total().max(1) as f64
    }
}

pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// A table row of a results.md: the cells of the first `| first | ... |` line.
pub fn table_row(markdown: &str, first: &str) -> Option<Vec<String>> {
    markdown.lines().find_map(|line| {
        let cells: Vec<String> = line
            .trim()
            .strip_prefix('|')?
            .strip_suffix('|')?
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        (cells.first().map(String::as_str) == Some(first)).then_some(cells)
    })
}

/// `"96.53%"` or `"0.9876"` as a number.
pub fn number(cell: &str) -> Option<f64> {
    cell.trim().trim_end_matches('%').parse().ok()
}

/// `- \`file.wav\` -> **label**` lines of a results.md.
pub fn recording_expectations(markdown: &str) -> Vec<(String, String)> {
    markdown
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("- `")?;
            let (file, rest) = rest.split_once('`')?;
            let rest = rest.trim().strip_prefix("-> **")?;
            let (label, _) = rest.split_once("**")?;
            Some((file.to_owned(), label.to_owned()))
        })
        .collect()
}

/// One CSV of the normalized anomaly test series: rows of channel values and the flag.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub values: Vec<Vec<f32>>,
    pub anomalous: Vec<bool>,
}

pub fn read_series(path: &Path) -> Result<Series, CheckError> {
    let text = read_text(path)?;
    let malformed = |reason: String| CheckError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut series = Series::default();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(format!("line {}: {e}", number + 1)))?;
        let (flag, values) = cells
            .split_last()
            .ok_or_else(|| malformed(format!("line {}: empty", number + 1)))?;
        series.values.push(values.to_vec());
        series.anomalous.push(*flag != 0.0);
    }
    Ok(series)
}

/// ROC AUC (Mann-Whitney, ties count one half); None when a class is absent.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let positives = labels[..n].iter().filter(|&&l| l).count();
    let negatives = n - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Point scores from stride-1 window scores: the mean over the windows covering each point.
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

pub fn mse(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().max(1) as f32;
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / n
}

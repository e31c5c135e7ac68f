//! IMU/gesture data from the UEA/UCR `.ts` files shipped inside the aeon wheel (BasicMotions:
//! 6 axes x 100 steps, 4 classes; PickupGestureWiimoteZ: 1 axis, 10 classes, unequal lengths,
//! linearly resampled to a fixed length). Features are stored NHWC: `[steps, 1, axes]`.

use std::path::Path;

use crate::table::{Example, Table};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// One parsed `.ts` file: class names (from `@classLabel`) and `(axes x values, class)` rows.
#[derive(Debug, Clone, Default)]
pub struct TsFile {
    pub classes: Vec<String>,
    pub series: Vec<(Vec<Vec<f32>>, usize)>,
}

pub fn parse_ts(path: &Path) -> Result<TsFile, TsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let fail = |line: usize, reason: String| TsError::Parse {
        path: path.display().to_string(),
        line,
        reason,
    };
    let mut file = TsFile::default();
    let mut in_data = false;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !in_data {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("@classlabel") {
                file.classes = line.split_whitespace().skip(2).map(str::to_owned).collect();
            } else if lower.starts_with("@data") {
                in_data = true;
            }
            continue;
        }
        let mut parts: Vec<&str> = line.split(':').collect();
        let label = parts
            .pop()
            .ok_or_else(|| fail(number + 1, "empty row".into()))?
            .trim();
        let class = file
            .classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| fail(number + 1, format!("unknown class {label:?}")))?;
        let axes = parts
            .iter()
            .map(|axis| {
                axis.split(',')
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| {
                        v.trim()
                            .parse::<f32>()
                            .map(|x| if x.is_finite() { x } else { 0.0 })
                    })
                    .collect::<Result<Vec<f32>, _>>()
                    .map_err(|e| fail(number + 1, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if axes.is_empty() || axes.iter().any(|a| a.is_empty()) {
            return Err(fail(number + 1, "empty series".into()));
        }
        file.series.push((axes, class));
    }
    Ok(file)
}

fn resample(values: &[f32], steps: usize) -> Vec<f32> {
    if values.len() == steps {
        return values.to_vec();
    }
    (0..steps)
        .map(|i| {
            let position = i as f32 * (values.len() - 1) as f32 / (steps - 1).max(1) as f32;
            let low = position.floor() as usize;
            let high = (low + 1).min(values.len() - 1);
            let t = position - low as f32;
            values[low] * (1.0 - t) + values[high] * t
        })
        .collect()
}

/// Reads `<dir>/<name>_TRAIN.ts` and `_TEST.ts` into one table; `steps` fixes the length
/// (None: the training file's first series length).
pub fn build(dir: &Path, name: &str, steps: Option<usize>) -> Result<Table, TsError> {
    let train = parse_ts(&dir.join(format!("{name}_TRAIN.ts")))?;
    let test = parse_ts(&dir.join(format!("{name}_TEST.ts")))?;
    let axes = train.series.first().map(|s| s.0.len()).unwrap_or(1);
    let steps = steps.unwrap_or_else(|| train.series.first().map(|s| s.0[0].len()).unwrap_or(1));
    let mut table = Table {
        labels: train.classes.clone(),
        shape: vec![steps, 1, axes],
        examples: Vec::new(),
    };
    for (split, file) in [("train", &train), ("test", &test)] {
        for (index, (series, class)) in file.series.iter().enumerate() {
            let resampled: Vec<Vec<f32>> = series.iter().map(|a| resample(a, steps)).collect();
            let mut features = vec![0f32; steps * axes];
            for (axis, values) in resampled.iter().enumerate().take(axes) {
                for (step, v) in values.iter().enumerate() {
                    features[step * axes + axis] = *v;
                }
            }
            table.examples.push(Example {
                label: *class,
                split: split.to_owned(),
                source: format!("{name}:{split}:{index}"),
                features,
            });
        }
    }
    Ok(table)
}

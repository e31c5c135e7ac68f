//! Feature tables cached as Parquet: one row per example with its label index, split,
//! source (voice or recording) and float32 features (little-endian bytes, row-major in the
//! model's input layout). File metadata keeps the label names and the feature shape.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{ConvertedType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use parquet::schema::types::Type;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("table is malformed: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub label: usize,
    pub split: String,
    pub source: String,
    pub features: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub labels: Vec<String>,
    /// Feature shape of one example, e.g. `[49, 10]` frames x coefficients.
    pub shape: Vec<usize>,
    pub examples: Vec<Example>,
}

impl Table {
    pub fn feature_len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn split(&self, name: &str) -> Vec<&Example> {
        self.examples.iter().filter(|e| e.split == name).collect()
    }

    pub fn split_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.examples {
            if !names.contains(&e.split) {
                names.push(e.split.clone());
            }
        }
        names
    }

    pub fn write(&self, path: &Path) -> Result<(), TableError> {
        let utf8 = |name: &str| {
            Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                .with_repetition(Repetition::REQUIRED)
                .with_converted_type(ConvertedType::UTF8)
                .build()
        };
        let fields = vec![
            Arc::new(
                Type::primitive_type_builder("label", PhysicalType::INT32)
                    .with_repetition(Repetition::REQUIRED)
                    .build()?,
            ),
            Arc::new(utf8("split")?),
            Arc::new(utf8("source")?),
            Arc::new(
                Type::primitive_type_builder("features_f32le", PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::REQUIRED)
                    .build()?,
            ),
        ];
        let schema = Arc::new(
            Type::group_type_builder("examples")
                .with_fields(fields)
                .build()?,
        );
        let shape = self
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new("labels".into(), self.labels.join("\n")),
                KeyValue::new("shape".into(), shape),
            ]))
            .build();
        let mut writer = SerializedFileWriter::new(File::create(path)?, schema, Arc::new(props))?;
        let labels: Vec<i32> = self.examples.iter().map(|e| e.label as i32).collect();
        let text = |f: &dyn Fn(&Example) -> &str| -> Vec<ByteArray> {
            self.examples
                .iter()
                .map(|e| ByteArray::from(f(e)))
                .collect()
        };
        let splits = text(&|e| &e.split);
        let sources = text(&|e| &e.source);
        let features: Vec<ByteArray> = self
            .examples
            .iter()
            .map(|e| {
                let bytes: Vec<u8> = e.features.iter().flat_map(|v| v.to_le_bytes()).collect();
                ByteArray::from(bytes)
            })
            .collect();
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => {
                    column
                        .typed::<Int32Type>()
                        .write_batch(&labels, None, None)?;
                }
                1 => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&splits, None, None)?;
                }
                2 => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&sources, None, None)?;
                }
                _ => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&features, None, None)?;
                }
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
        writer.close()?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Table, TableError> {
        let reader = SerializedFileReader::new(File::open(path)?)?;
        let mut table = Table::default();
        let metadata = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        for kv in metadata.unwrap_or_default() {
            let value = kv.value.unwrap_or_default();
            match kv.key.as_str() {
                "labels" => table.labels = value.lines().map(str::to_owned).collect(),
                "shape" => {
                    table.shape = value
                        .split(',')
                        .map(|d| d.parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| TableError::Malformed(format!("shape {value:?}")))?
                }
                _ => {}
            }
        }
        let feature_len = table.feature_len();
        for row in reader.get_row_iter(None)? {
            let row = row?;
            let label = usize::try_from(row.get_int(0)?)
                .ok()
                .filter(|&l| l < table.labels.len())
                .ok_or_else(|| TableError::Malformed("label out of range".into()))?;
            let bytes = row.get_bytes(3)?.data();
            if bytes.len() != feature_len * 4 {
                return Err(TableError::Malformed(format!(
                    "{} feature bytes, expected {}",
                    bytes.len(),
                    feature_len * 4
                )));
            }
            let features = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            table.examples.push(Example {
                label,
                split: row.get_string(1)?.clone(),
                source: row.get_string(2)?.clone(),
                features,
            });
        }
        Ok(table)
    }
}

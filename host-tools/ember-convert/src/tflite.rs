//! The parts of a `.tflite` model the converter uses, read from the FlatBuffer into plain
//! structs (schema: `shared/schemas/tflite_schema.fbs`). Field ids below are schema order;
//! a union takes two ids (its type byte, then its value).

use crate::flatbuffer::{FbError, Table};

/// Builtin operator codes the converter knows by name (from `enum BuiltinOperator`).
pub mod builtin {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const TANH: i32 = 28;
    pub const CUSTOM: i32 = 32;
    pub const PAD: i32 = 34;
    pub const MEAN: i32 = 40;
    pub const SQUEEZE: i32 = 43;
    pub const PADV2: i32 = 60;
    pub const EXPAND_DIMS: i32 = 70;
    /// `deprecated_builtin_code` is a byte; codes at or above this live in `builtin_code` only.
    pub const PLACEHOLDER_FOR_GREATER_OP_CODES: i32 = 127;
    pub const QUANTIZE: i32 = 114;

    /// Name of a builtin code for messages.
    pub fn name(code: i32) -> &'static str {
        match code {
            ADD => "ADD",
            AVERAGE_POOL_2D => "AVERAGE_POOL_2D",
            CONCATENATION => "CONCATENATION",
            CONV_2D => "CONV_2D",
            DEPTHWISE_CONV_2D => "DEPTHWISE_CONV_2D",
            DEQUANTIZE => "DEQUANTIZE",
            FULLY_CONNECTED => "FULLY_CONNECTED",
            LOGISTIC => "LOGISTIC",
            MAX_POOL_2D => "MAX_POOL_2D",
            MUL => "MUL",
            RESHAPE => "RESHAPE",
            SOFTMAX => "SOFTMAX",
            TANH => "TANH",
            CUSTOM => "CUSTOM",
            PAD => "PAD",
            MEAN => "MEAN",
            SQUEEZE => "SQUEEZE",
            PADV2 => "PADV2",
            EXPAND_DIMS => "EXPAND_DIMS",
            QUANTIZE => "QUANTIZE",
            5 => "DEPTH_TO_SPACE",
            19 => "RELU",
            21 => "RELU6",
            23 => "RESIZE_BILINEAR",
            39 => "TRANSPOSE",
            41 => "SUB",
            42 => "DIV",
            45 => "STRIDED_SLICE",
            49 => "SPLIT",
            53 => "CAST",
            _ => "an unknown builtin",
        }
    }
}

/// Union type ids of `BuiltinOptions` used by supported ops.
pub mod options_type {
    pub const NONE: u8 = 0;
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const CONCATENATION: u8 = 10;
    pub const ADD: u8 = 11;
    pub const RESHAPE: u8 = 17;
    pub const MUL: u8 = 21;
    pub const REDUCER: u8 = 27;
}

/// `TensorType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    Uint8,
    Int64,
    Int16,
    Int8,
    Other(i8),
}

impl TensorType {
    fn from_raw(raw: i8) -> TensorType {
        match raw {
            0 => TensorType::Float32,
            1 => TensorType::Float16,
            2 => TensorType::Int32,
            3 => TensorType::Uint8,
            4 => TensorType::Int64,
            7 => TensorType::Int16,
            9 => TensorType::Int8,
            other => TensorType::Other(other),
        }
    }

    pub fn name(self) -> String {
        match self {
            TensorType::Float32 => "float32".into(),
            TensorType::Float16 => "float16".into(),
            TensorType::Int32 => "int32".into(),
            TensorType::Uint8 => "uint8".into(),
            TensorType::Int64 => "int64".into(),
            TensorType::Int16 => "int16".into(),
            TensorType::Int8 => "int8".into(),
            TensorType::Other(n) => format!("TensorType {n}"),
        }
    }

    /// Bytes per element, `None` for types the converter cannot size.
    pub fn size(self) -> Option<usize> {
        match self {
            TensorType::Int8 | TensorType::Uint8 => Some(1),
            TensorType::Float16 | TensorType::Int16 => Some(2),
            TensorType::Float32 | TensorType::Int32 => Some(4),
            TensorType::Int64 => Some(8),
            TensorType::Other(_) => None,
        }
    }
}

/// Affine quantization of a tensor (per-tensor when `scale` has one entry).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quantization {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub quantized_dimension: i32,
}

#[derive(Debug, Clone)]
pub struct Tensor<'a> {
    pub name: String,
    pub dtype: TensorType,
    pub shape: Vec<i32>,
    /// The constant bytes, when the tensor's buffer holds data.
    pub data: Option<&'a [u8]>,
    pub quant: Option<Quantization>,
    pub is_variable: bool,
}

/// What an operator code resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpCode {
    Builtin(i32),
    Custom(String),
}

#[derive(Debug, Clone)]
pub struct Operator<'a> {
    pub code: OpCode,
    pub version: i32,
    /// Tensor indices; -1 marks an omitted optional input.
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options_type: u8,
    pub options: Option<Table<'a>>,
}

#[derive(Debug, Clone)]
pub struct Model<'a> {
    pub version: u32,
    pub description: Option<String>,
    pub tensors: Vec<Tensor<'a>>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator<'a>>,
    pub subgraph_count: usize,
}

/// Why a `.tflite` file could not be read (before any op is looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("not a TFLite model: {0}")]
    FlatBuffer(#[from] FbError),
    #[error("file identifier is {found:?}, expected \"TFL3\" (is this a .tflite file?)")]
    BadIdentifier { found: [u8; 4] },
    #[error("unsupported TFLite schema version {0} (expected 3)")]
    UnsupportedVersion(u32),
    #[error("the model has no subgraph")]
    NoSubgraph,
    #[error("{what} index {index} is out of range (there are {count})")]
    BadIndex {
        what: &'static str,
        index: i64,
        count: usize,
    },
    #[error("buffer {index} stores its data outside the file (offset {offset}, size {size}) beyond the file's {file_len} bytes")]
    ExternalBufferOutOfFile {
        index: usize,
        offset: u64,
        size: u64,
        file_len: usize,
    },
    #[error("tensor {tensor} uses an external buffer (external_buffer = {id}); only weights inside the .tflite file are supported")]
    ExternalBuffer { tensor: usize, id: u32 },
    #[error("tensor {tensor} has sparse weights; densify the model before converting")]
    Sparse { tensor: usize },
    #[error("tensor {tensor} uses non-affine quantization details; only affine (scale/zero point) is supported")]
    QuantizationDetails { tensor: usize },
}

/// Reads the buffer of index `index`: inline `data`, or `offset`/`size` into the file (the
/// layout TFLite uses for models over 2 GB).
fn buffer_bytes<'a>(
    file: &'a [u8],
    buffer: &Table<'a>,
    index: usize,
) -> Result<Option<&'a [u8]>, ReadError> {
    if let Some(data) = buffer.bytes(0)? {
        if !data.is_empty() {
            return Ok(Some(data));
        }
    }
    let offset = buffer.u64(1, 0)?;
    let size = buffer.u64(2, 0)?;
    // offset 0 means no data and 1 is the writer's placeholder.
    if offset > 1 {
        let end = offset.checked_add(size);
        match end {
            Some(end) if end <= file.len() as u64 => {
                return Ok(Some(&file[offset as usize..end as usize]));
            }
            _ => {
                return Err(ReadError::ExternalBufferOutOfFile {
                    index,
                    offset,
                    size,
                    file_len: file.len(),
                })
            }
        }
    }
    Ok(None)
}

fn index(what: &'static str, index: i64, count: usize) -> Result<usize, ReadError> {
    if index >= 0 && (index as u64) < count as u64 {
        Ok(index as usize)
    } else {
        Err(ReadError::BadIndex { what, index, count })
    }
}

/// Parses the first subgraph of a `.tflite` file.
pub fn read(file: &[u8]) -> Result<Model<'_>, ReadError> {
    if file.len() >= 8 && &file[4..8] != b"TFL3" {
        let mut found = [0u8; 4];
        found.copy_from_slice(&file[4..8]);
        return Err(ReadError::BadIdentifier { found });
    }
    let root = Table::root(file)?;
    let version = root.u32(0, 0)?;
    if version != 3 {
        return Err(ReadError::UnsupportedVersion(version));
    }
    let description = root.str(3)?.map(str::to_owned);

    let buffers = root.vector(4, 4)?;
    let buffer_count = buffers.map_or(0, |b| b.len());

    let mut codes = Vec::new();
    if let Some(list) = root.vector(1, 4)? {
        for i in 0..list.len() {
            let c = list.table(i)?;
            let deprecated = c.i8(0, 0)? as i32;
            let builtin = c.i32(3, 0)?;
            // Old files only set the byte field; new ones set both (deprecated saturates at 127).
            let code = builtin.max(deprecated);
            let op = if code == builtin::CUSTOM {
                OpCode::Custom(c.str(1)?.unwrap_or("").to_owned())
            } else {
                OpCode::Builtin(code)
            };
            codes.push((op, c.i32(2, 1)?));
        }
    }

    let subgraphs = root.vector(2, 4)?.ok_or(ReadError::NoSubgraph)?;
    if subgraphs.is_empty() {
        return Err(ReadError::NoSubgraph);
    }
    let graph = subgraphs.table(0)?;

    let mut tensors = Vec::new();
    if let Some(list) = graph.vector(0, 4)? {
        for i in 0..list.len() {
            let t = list.table(i)?;
            let buffer_index = t.u32(2, 0)? as usize;
            let data = if buffer_index == 0 {
                None
            } else {
                let buffers = buffers.ok_or(ReadError::BadIndex {
                    what: "buffer",
                    index: buffer_index as i64,
                    count: 0,
                })?;
                let b = index("buffer", buffer_index as i64, buffer_count)?;
                buffer_bytes(file, &buffers.table(b)?, b)?
            };
            let external = t.u32(10, 0)?;
            if external != 0 {
                return Err(ReadError::ExternalBuffer {
                    tensor: i,
                    id: external,
                });
            }
            if t.table(6)?.is_some() {
                return Err(ReadError::Sparse { tensor: i });
            }
            let quant = match t.table(4)? {
                Some(q) => {
                    if q.u8(4, 0)? != 0 {
                        return Err(ReadError::QuantizationDetails { tensor: i });
                    }
                    let scale = q.f32s(2)?;
                    if scale.is_empty() {
                        None
                    } else {
                        Some(Quantization {
                            scale,
                            zero_point: q.i64s(3)?,
                            quantized_dimension: q.i32(6, 0)?,
                        })
                    }
                }
                None => None,
            };
            tensors.push(Tensor {
                name: t.str(3)?.unwrap_or("").to_owned(),
                dtype: TensorType::from_raw(t.i8(1, 0)?),
                shape: t.i32s(0)?,
                data,
                quant,
                is_variable: t.bool(5, false)?,
            });
        }
    }

    let check_tensor_list = |list: &[i32]| -> Result<(), ReadError> {
        for &i in list {
            if i != -1 {
                index("tensor", i as i64, tensors.len())?;
            }
        }
        Ok(())
    };

    let inputs = graph.i32s(1)?;
    let outputs = graph.i32s(2)?;
    for list in [&inputs, &outputs] {
        for &i in list.iter() {
            index("graph input/output tensor", i as i64, tensors.len())?;
        }
    }

    let mut operators = Vec::new();
    if let Some(list) = graph.vector(3, 4)? {
        for i in 0..list.len() {
            let op = list.table(i)?;
            let code_index = index("operator code", op.u32(0, 0)? as i64, codes.len())?;
            let (code, version) = codes[code_index].clone();
            let op_inputs = op.i32s(1)?;
            let op_outputs = op.i32s(2)?;
            check_tensor_list(&op_inputs)?;
            check_tensor_list(&op_outputs)?;
            let options_type = op.u8(3, 0)?;
            let options = if options_type == 0 {
                None
            } else {
                op.table(4)?
            };
            operators.push(Operator {
                code,
                version,
                inputs: op_inputs,
                outputs: op_outputs,
                options_type,
                options,
            });
        }
    }

    Ok(Model {
        version,
        description,
        tensors,
        inputs,
        outputs,
        operators,
        subgraph_count: subgraphs.len(),
    })
}

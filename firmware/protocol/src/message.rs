//! The messages: one [`Request`] from the host, one [`Response`] from the device.
//!
//! Enum variants are encoded by position (postcard varint), so variants are only ever
//! appended; see `docs/PROTOCOL.md` for the stability rules.

use serde::{Deserialize, Serialize};

/// Most model slots a device reports.
pub const MAX_SLOTS: usize = 2;
/// Most graph inputs or outputs described in [`ModelInfo`] (the `.emb` format's limit).
pub const MAX_IO: usize = 4;
/// Highest tensor rank described in [`TensorInfo`].
pub const MAX_RANK: usize = 5;
/// Most operator names in [`DeviceInfo::ops`].
pub const MAX_OPS: usize = 40;
/// Most inferences reported by one [`StreamResult`].
pub const MAX_STREAM_INFERENCES: usize = 8;

/// A request from the host. `id` is chosen by the host and echoed in the response; a request
/// repeated with the same id and the same bytes is answered from the device's reply cache
/// without being executed again, which makes every retry safe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<'a> {
    pub id: u16,
    #[serde(borrow)]
    pub body: RequestBody<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestBody<'a> {
    /// Who are you, what runs on you: answered with [`ResponseBody::Info`].
    Info,
    /// Start writing a model of `size` bytes whose CRC-32 is `hash` into the inactive slot.
    UploadBegin {
        size: u32,
        hash: u32,
    },
    /// Model bytes at `offset`; chunks must arrive in order, and every chunk but the last must
    /// be a multiple of the device's flash write size (any power of two up to [`crate::MAX_CHUNK`]).
    UploadChunk {
        offset: u32,
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// Verify the written model (hash, `Model::load`) and make it the running model.
    UploadCommit,
    /// Drop the upload in progress; the running model is untouched.
    UploadAbort,
    /// Run the model that ran before the last commit (or revert).
    Revert,
    /// Input bytes (all graph inputs concatenated, raw little-endian) at `offset`; the chunk
    /// with `last` runs the model and is answered with [`ResponseBody::Prediction`].
    Infer {
        offset: u32,
        #[serde(borrow)]
        data: &'a [u8],
        last: bool,
    },
    /// Output bytes of the last inference from `offset`, when they did not fit one reply.
    ReadOutput {
        offset: u32,
    },
    /// Start a streaming session: a sliding window of `window` samples advancing by `hop`.
    /// A sample is one element of the model's first input (raw little-endian bytes).
    StreamBegin {
        window: u32,
        hop: u32,
    },
    /// Samples appended to the stream; every completed hop runs the model.
    StreamData {
        #[serde(borrow)]
        samples: &'a [u8],
    },
    StreamEnd,
    /// Reply, then restart the device.
    Reset,
}

/// The device's answer to the request with the same `id`. Frames the device could not decode
/// are answered with id 0 and an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<'a> {
    pub id: u16,
    #[serde(borrow)]
    pub body: ResponseBody<'a>,
}

// No heap on the device to box `Info`; one reply at a time lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResponseBody<'a> {
    #[serde(borrow)]
    Info(DeviceInfo<'a>),
    /// `UploadBegin` accepted: send chunks to `slot`, at most `max_chunk` bytes each.
    UploadReady {
        slot: u8,
        max_chunk: u16,
    },
    /// Bytes up to `next_offset` are written.
    ChunkAck {
        next_offset: u32,
    },
    /// The uploaded model verified and now runs from `slot`.
    Committed {
        slot: u8,
        hash: u32,
    },
    /// The upload was dropped.
    Aborted,
    /// The previous model now runs from `slot`.
    Reverted {
        slot: u8,
        hash: u32,
    },
    /// Input bytes up to `next_offset` are stored; send more.
    InputAck {
        next_offset: u32,
    },
    #[serde(borrow)]
    Prediction(Prediction<'a>),
    /// Output bytes of the last inference from `offset`.
    OutputChunk {
        offset: u32,
        #[serde(borrow)]
        data: &'a [u8],
    },
    StreamStarted {
        window: u32,
        hop: u32,
    },
    #[serde(borrow)]
    StreamResult(StreamResult<'a>),
    StreamEnded {
        samples: u64,
        inferences: u32,
    },
    /// The device will restart after this reply.
    Resetting,
    #[serde(borrow)]
    Error(DeviceError<'a>),
}

/// The `Info` reply. New fields are only appended at the end (see `docs/PROTOCOL.md`); a host
/// decoding an older or newer device reads `protocol_version` first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo<'a> {
    pub protocol_version: u16,
    pub board: &'a str,
    pub firmware_version: &'a str,
    /// Largest request payload the device accepts ([`crate::MAX_PAYLOAD`] or less).
    pub max_payload: u16,
    /// Largest `data` in `UploadChunk`/`Infer`.
    pub max_chunk: u16,
    /// Bytes of activation arena available to models.
    pub arena_size: u32,
    pub slots: heapless::Vec<SlotInfo, MAX_SLOTS>,
    /// The running model, if any.
    pub model: Option<ModelInfo>,
    /// Operators this firmware's runtime can run (TFLite names).
    #[serde(borrow)]
    pub ops: heapless::Vec<&'a str, MAX_OPS>,
    pub stream: Option<StreamCaps>,
    /// The boot record's model failed validation and the device fell back to another slot.
    pub fell_back: bool,
    /// What the previous run reported when it panicked, if the board kept it.
    pub last_panic: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotInfo {
    pub capacity: u32,
    /// What the boot record says the slot holds (`None`: empty or being written).
    pub contents: Option<SlotContents>,
    pub running: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotContents {
    pub size: u32,
    /// CRC-32 of the whole model file.
    pub hash: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub slot: u8,
    pub size: u32,
    /// CRC-32 of the whole model file, as `UploadBegin` sent it.
    pub hash: u32,
    /// Arena bytes the model needs.
    pub arena_needed: u32,
    pub op_count: u32,
    pub inputs: heapless::Vec<TensorInfo, MAX_IO>,
    pub outputs: heapless::Vec<TensorInfo, MAX_IO>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: heapless::Vec<u32, MAX_RANK>,
    pub quant: Option<Quant>,
}

impl TensorInfo {
    /// Bytes of one tensor of this shape and type (saturating).
    pub fn byte_len(&self) -> usize {
        self.shape
            .iter()
            .fold(self.dtype.size(), |acc, &d| acc.saturating_mul(d as usize))
    }
}

/// Element type on the wire (independent of the runtime's own enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DType {
    I8,
    I16,
    I32,
    F32,
}

impl DType {
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 | DType::F32 => 4,
        }
    }
}

/// `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quant {
    pub scale: f32,
    pub zero_point: i32,
}

/// The board's sensor stream, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamCaps {
    pub sample_rate_hz: u32,
    pub channels: u8,
    /// Largest window, in bytes, the device can hold.
    pub max_window_bytes: u32,
}

/// One inference: cycle counts measured on the device around the model run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction<'a> {
    pub cycles: u64,
    /// Retired instructions, where the board can count them (e.g. QEMU `-icount`).
    pub instructions: Option<u64>,
    /// Bytes of all outputs concatenated; `output` holds the first of them.
    pub output_len: u32,
    #[serde(borrow)]
    pub output: &'a [u8],
}

/// Inferences triggered by one `StreamData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamResult<'a> {
    /// Sample bytes taken from the request; the host resends the rest when this is short
    /// (the reply filled up).
    pub consumed: u32,
    /// Output bytes of one inference.
    pub output_len: u32,
    pub inferences: heapless::Vec<StreamInference, MAX_STREAM_INFERENCES>,
    /// `inferences.len() * output_len` bytes: each inference's outputs, in order.
    #[serde(borrow)]
    pub outputs: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamInference {
    /// Samples received since `StreamBegin` when this window completed.
    pub end_sample: u64,
    pub cycles: u64,
    pub instructions: Option<u64>,
}

/// Why the device refused a request. Each variant says what to do about it in
/// `docs/PROTOCOL.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DeviceError<'a> {
    /// A frame was not valid COBS, too short or too long (answered with id 0).
    BadFrame,
    /// A frame's CRC did not match (answered with id 0).
    BadCrc,
    /// The frame was fine but its payload is not a request this firmware knows.
    UnknownRequest,
    /// An upload request arrived with no upload in progress.
    NoUpload,
    /// A chunk's offset is not where the device expects the next one.
    OutOfOrderChunk { expected: u32, got: u32 },
    /// A chunk's length breaks the flash write alignment or runs past the declared size.
    BadChunk { offset: u32, len: u32 },
    /// The model does not fit the slot.
    TooBigForSlot { size: u32, capacity: u32 },
    /// Commit before every byte arrived.
    UploadIncomplete { received: u32, size: u32 },
    /// The bytes in flash do not hash to what `UploadBegin` promised.
    HashMismatch { expected: u32, actual: u32 },
    /// `Model::load` rejected the model; `reason` is the runtime's message.
    InvalidModel { reason: &'a str },
    /// The model needs a bigger arena than the device has.
    ArenaTooSmall { needed: u32, available: u32 },
    /// The flash driver failed; the running model is untouched.
    Flash,
    /// No model is installed.
    NoModel,
    /// The other slot holds no valid model to revert to.
    NoPreviousModel,
    /// Infer input does not match the model's inputs.
    InputSize { expected: u32, got: u32 },
    /// The runtime failed while running; `reason` is its message.
    Inference { reason: &'a str },
    /// `ReadOutput` with no finished inference, or past its end.
    NoOutput,
    /// The request conflicts with what the device is doing (a stream runs).
    Busy,
    /// The stream parameters do not fit the model or the device.
    BadStreamConfig { reason: &'a str },
    /// `StreamData`/`StreamEnd` without `StreamBegin`.
    NotStreaming,
}

impl core::fmt::Display for DeviceError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceError::BadFrame => f.write_str("device received a malformed frame"),
            DeviceError::BadCrc => f.write_str("device received a frame with a bad CRC"),
            DeviceError::UnknownRequest => {
                f.write_str("device does not understand the request (protocol version mismatch?)")
            }
            DeviceError::NoUpload => f.write_str("no upload in progress"),
            DeviceError::OutOfOrderChunk { expected, got } => {
                write!(f, "chunk at offset {got} out of order, device expects {expected}")
            }
            DeviceError::BadChunk { offset, len } => write!(
                f,
                "chunk of {len} bytes at {offset} is misaligned for flash or runs past the model size"
            ),
            DeviceError::TooBigForSlot { size, capacity } => {
                write!(f, "model of {size} bytes does not fit the {capacity}-byte slot")
            }
            DeviceError::UploadIncomplete { received, size } => {
                write!(f, "upload incomplete: {received} of {size} bytes received")
            }
            DeviceError::HashMismatch { expected, actual } => write!(
                f,
                "uploaded model hash {actual:#010x} differs from the announced {expected:#010x}"
            ),
            DeviceError::InvalidModel { reason } => write!(f, "device rejected the model: {reason}"),
            DeviceError::ArenaTooSmall { needed, available } => write!(
                f,
                "model needs {needed} bytes of arena, the device has {available}"
            ),
            DeviceError::Flash => f.write_str("flash write or erase failed on the device"),
            DeviceError::NoModel => f.write_str("no model installed; flash one first"),
            DeviceError::NoPreviousModel => f.write_str("no previous model to revert to"),
            DeviceError::InputSize { expected, got } => {
                write!(f, "model input is {expected} bytes, got {got}")
            }
            DeviceError::Inference { reason } => write!(f, "inference failed: {reason}"),
            DeviceError::NoOutput => f.write_str("no inference output to read"),
            DeviceError::Busy => f.write_str("device is busy streaming; end the stream first"),
            DeviceError::BadStreamConfig { reason } => write!(f, "bad stream parameters: {reason}"),
            DeviceError::NotStreaming => f.write_str("no stream in progress"),
        }
    }
}

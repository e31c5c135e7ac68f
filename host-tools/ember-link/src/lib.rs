//! Host client for ember devices: talks `ember-protocol` over any byte stream with timeouts
//! (a serial port, or [`mem::pipe`] to a device running in a test thread).
//!
//! Every request is retried on timeout or on a corrupted exchange with the same id and bytes;
//! the device answers a repeat from its reply cache without running it again, so retries are
//! safe even for uploads and stream data.

pub mod mem;

use std::io::{self, Read, Write};
use std::time::Duration;

use ember_protocol::{
    decode_response, encode_request, DeviceError, FrameDecoder, ModelInfo, Request, RequestBody,
    ResponseBody, SlotInfo, StreamCaps, MAX_CHUNK, MAX_FRAME, PROTOCOL_VERSION,
};
use ember_runtime::crc32::crc32;

/// A byte stream with a read timeout. A read that times out returns an error of kind
/// `TimedOut` or `WouldBlock` (what the `serialport` crate does).
pub trait Transport: Read + Write {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

/// How patient the link is.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Line speed, to scale timeouts with frame size; `None` for in-memory links.
    pub baud: Option<u32>,
    /// Time the device may take to start answering a short request.
    pub base_timeout: Duration,
    /// Extra time per KiB of model for steps that touch the whole model (commit, revert).
    pub per_kib_timeout: Duration,
    /// Attempts per request before giving up.
    pub attempts: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            baud: Some(115_200),
            base_timeout: Duration::from_millis(500),
            per_kib_timeout: Duration::from_millis(20),
            attempts: 6,
        }
    }
}

/// A device error reply, kept as received so it can be matched on as a [`DeviceError`].
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceErrorReply {
    payload: Vec<u8>,
}

impl DeviceErrorReply {
    /// The error as the device sent it.
    pub fn error(&self) -> DeviceError<'_> {
        match decode_response(&self.payload).map(|r| r.body) {
            Ok(ResponseBody::Error(e)) => e,
            _ => DeviceError::UnknownRequest,
        }
    }
}

impl std::fmt::Debug for DeviceErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.error())
    }
}

impl std::fmt::Display for DeviceErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error())
    }
}

/// What went wrong talking to a device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("no valid reply to {request} after {attempts} attempts ({timeout:?} each); is the device connected and running ember firmware?")]
    Timeout {
        request: &'static str,
        attempts: u32,
        timeout: Duration,
    },
    #[error("replies to {request} kept arriving corrupted ({attempts} attempts); check the cable and baud rate")]
    Corrupted {
        request: &'static str,
        attempts: u32,
    },
    #[error("device refused {request}: {error}")]
    Device {
        request: &'static str,
        error: DeviceErrorReply,
    },
    #[error("unexpected reply to {request}: {reply}")]
    UnexpectedReply {
        request: &'static str,
        reply: String,
    },
    #[error(
        "device speaks protocol version {device}, this host speaks {host}; update one of them"
    )]
    ProtocolVersion { device: u16, host: u16 },
    #[error(
        "verification failed: device runs model {device:x?}, the uploaded one is {local:#010x}"
    )]
    VerifyMismatch { local: u32, device: Option<u32> },
    #[error("input of {0} bytes is too large for the protocol")]
    InputTooLarge(usize),
    #[error("serial I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl LinkError {
    /// The device's error, when the device refused the request.
    pub fn device_error(&self) -> Option<DeviceError<'_>> {
        match self {
            LinkError::Device { error, .. } => Some(error.error()),
            _ => None,
        }
    }
}

/// The `Info` reply, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardInfo {
    pub protocol_version: u16,
    pub board: String,
    pub firmware_version: String,
    pub max_chunk: u16,
    pub arena_size: u32,
    pub slots: Vec<SlotInfo>,
    pub model: Option<ModelInfo>,
    pub ops: Vec<String>,
    pub stream: Option<StreamCaps>,
    pub fell_back: bool,
    pub last_panic: Option<String>,
}

/// One inference's outputs (all graph outputs concatenated) and its on-device cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    pub output: Vec<u8>,
    pub cycles: u64,
    pub instructions: Option<u64>,
    /// For streams: samples received when the window completed.
    pub end_sample: u64,
}

/// Upload progress, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub sent: usize,
    pub total: usize,
}

/// What `flash` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashReport {
    pub slot: u8,
    pub hash: u32,
    /// Requests that had to be sent more than once.
    pub retries: u32,
}

/// A connection to one device.
#[derive(Debug)]
pub struct Link<T> {
    transport: T,
    config: LinkConfig,
    next_id: u16,
    decoder: FrameDecoder<MAX_FRAME>,
    retries: u32,
}

fn request_name(body: &RequestBody<'_>) -> &'static str {
    match body {
        RequestBody::Info => "Info",
        RequestBody::UploadBegin { .. } => "UploadBegin",
        RequestBody::UploadChunk { .. } => "UploadChunk",
        RequestBody::UploadCommit => "UploadCommit",
        RequestBody::UploadAbort => "UploadAbort",
        RequestBody::Revert => "Revert",
        RequestBody::Infer { .. } => "Infer",
        RequestBody::ReadOutput { .. } => "ReadOutput",
        RequestBody::StreamBegin { .. } => "StreamBegin",
        RequestBody::StreamData { .. } => "StreamData",
        RequestBody::StreamEnd => "StreamEnd",
        RequestBody::Reset => "Reset",
        _ => "request",
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl<T: Transport> Link<T> {
    pub fn new(transport: T, config: LinkConfig) -> Self {
        // Start ids away from 1 so a restarted host is unlikely to repeat the device's last id.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Link {
            transport,
            config,
            next_id: (seed % 60_000) as u16 + 1,
            decoder: FrameDecoder::new(),
            retries: 0,
        }
    }

    pub fn into_inner(self) -> T {
        self.transport
    }

    /// Requests sent more than once so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Time to move `bytes` over the line, doubled for slack.
    fn line_time(&self, bytes: usize) -> Duration {
        match self.config.baud {
            Some(baud) if baud > 0 => {
                Duration::from_secs_f64(bytes as f64 * 10.0 * 2.0 / baud as f64)
            }
            _ => Duration::ZERO,
        }
    }

    /// Sends `body` and waits for its reply payload, retrying as configured.
    fn call(&mut self, body: RequestBody<'_>, extra: Duration) -> Result<Vec<u8>, LinkError> {
        let name = request_name(&body);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let mut frame = vec![0u8; MAX_FRAME + 1];
        // A leading 0x00 ends any garbage the device may have buffered.
        let len = 1 + encode_request(&Request { id, body }, &mut frame[1..])
            .map_err(|_| LinkError::InputTooLarge(MAX_FRAME))?;
        let timeout = self.config.base_timeout + extra + self.line_time(len + MAX_FRAME);
        self.transport.set_timeout(timeout)?;
        let mut corrupted = 0u32;
        for attempt in 0..self.config.attempts {
            if attempt > 0 {
                self.retries += 1;
            }
            self.transport.write_all(&frame[..len])?;
            self.transport.flush()?;
            match self.wait_reply(id)? {
                Some(payload) => {
                    let (is_valid, is_error) = {
                        let decoded = decode_response(&payload).map(|r| r.body);
                        (
                            decoded.is_ok(),
                            matches!(decoded, Ok(ResponseBody::Error(_))),
                        )
                    };
                    return match (is_valid, is_error) {
                        (true, true) => Err(LinkError::Device {
                            request: name,
                            error: DeviceErrorReply { payload },
                        }),
                        (true, false) => Ok(payload),
                        _ => Err(LinkError::UnexpectedReply {
                            request: name,
                            reply: "undecodable payload".into(),
                        }),
                    };
                }
                None => corrupted += 1,
            }
        }
        if corrupted == self.config.attempts {
            // Every attempt ended with a timeout or a broken frame.
            return Err(LinkError::Timeout {
                request: name,
                attempts: self.config.attempts,
                timeout,
            });
        }
        Err(LinkError::Corrupted {
            request: name,
            attempts: self.config.attempts,
        })
    }

    /// Reads until the reply with `id` arrives (`Some`), or a reason to resend appears: a
    /// timeout, a broken frame, or the device saying our frame arrived broken (`None`).
    fn wait_reply(&mut self, id: u16) -> Result<Option<Vec<u8>>, LinkError> {
        let mut buffer = [0u8; 256];
        loop {
            let n = match self.transport.read(&mut buffer) {
                Ok(0) => return Err(LinkError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            for &byte in &buffer[..n] {
                match self.decoder.push(byte) {
                    None => {}
                    Some(Err(_)) => return Ok(None),
                    Some(Ok(payload)) => {
                        let Ok(response) = decode_response(payload) else {
                            return Ok(None);
                        };
                        if response.id == id {
                            return Ok(Some(payload.to_vec()));
                        }
                        // The device got a broken frame: if it was ours, resend now.
                        if response.id == 0
                            && matches!(
                                response.body,
                                ResponseBody::Error(DeviceError::BadCrc | DeviceError::BadFrame)
                            )
                        {
                            return Ok(None);
                        }
                        // Anything else is a stale reply to an earlier attempt: skip it.
                    }
                }
            }
        }
    }

    fn unexpected(request: &'static str, payload: &[u8]) -> LinkError {
        LinkError::UnexpectedReply {
            request,
            reply: format!("{:?}", decode_response(payload).map(|r| r.body)),
        }
    }

    /// Asks the device who it is and what it runs.
    pub fn info(&mut self) -> Result<BoardInfo, LinkError> {
        let payload = self.call(RequestBody::Info, Duration::ZERO)?;
        let decoded = decode_response(&payload).map(|r| r.body);
        match decoded {
            Ok(ResponseBody::Info(info)) => {
                if info.protocol_version != PROTOCOL_VERSION {
                    return Err(LinkError::ProtocolVersion {
                        device: info.protocol_version,
                        host: PROTOCOL_VERSION,
                    });
                }
                Ok(BoardInfo {
                    protocol_version: info.protocol_version,
                    board: info.board.into(),
                    firmware_version: info.firmware_version.into(),
                    max_chunk: info.max_chunk,
                    arena_size: info.arena_size,
                    slots: info.slots.to_vec(),
                    model: info.model,
                    ops: info.ops.iter().map(|s| s.to_string()).collect(),
                    stream: info.stream,
                    fell_back: info.fell_back,
                    last_panic: info.last_panic.map(str::to_string),
                })
            }
            _ => Err(Self::unexpected("Info", &payload)),
        }
    }

    /// Uploads `model` (a `.emb` file), commits it and checks that the device now runs it.
    /// On failure the device keeps running its previous model.
    pub fn flash(
        &mut self,
        model: &[u8],
        mut progress: impl FnMut(Progress),
    ) -> Result<FlashReport, LinkError> {
        let retries_before = self.retries;
        let hash = crc32(model);
        let size = u32::try_from(model.len()).map_err(|_| LinkError::InputTooLarge(model.len()))?;
        let payload = self.call(RequestBody::UploadBegin { size, hash }, Duration::ZERO)?;
        let (slot, max_chunk) = match decode_response(&payload).map(|r| r.body) {
            Ok(ResponseBody::UploadReady { slot, max_chunk }) => (slot, usize::from(max_chunk)),
            _ => return Err(Self::unexpected("UploadBegin", &payload)),
        };
        let chunk = max_chunk.clamp(1, MAX_CHUNK);
        let result = self.upload_chunks(model, chunk, &mut progress);
        if let Err(e) = result {
            // Best effort: the device drops a half-written upload anyway when the next begins.
            let _ = self.call(RequestBody::UploadAbort, Duration::ZERO);
            return Err(e);
        }
        let kib = (model.len() as u32).div_ceil(1024);
        let payload = self.call(RequestBody::UploadCommit, self.config.per_kib_timeout * kib)?;
        let decoded = decode_response(&payload).map(|r| r.body);
        match decoded {
            Ok(ResponseBody::Committed { hash: h, .. }) if h == hash => {}
            _ => return Err(Self::unexpected("UploadCommit", &payload)),
        }
        let info = self.info()?;
        let device = info.model.map(|m| m.hash);
        if device != Some(hash) {
            return Err(LinkError::VerifyMismatch {
                local: hash,
                device,
            });
        }
        Ok(FlashReport {
            slot,
            hash,
            retries: self.retries - retries_before,
        })
    }

    fn upload_chunks(
        &mut self,
        model: &[u8],
        chunk: usize,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(), LinkError> {
        let mut offset = 0usize;
        // A chunk may also erase a flash sector on the device.
        let erase_allowance = self.config.per_kib_timeout * 4;
        while offset < model.len() {
            let end = (offset + chunk).min(model.len());
            let body = RequestBody::UploadChunk {
                offset: offset as u32,
                data: &model[offset..end],
            };
            let payload = self.call(body, erase_allowance)?;
            let decoded = decode_response(&payload).map(|r| r.body);
            match decoded {
                Ok(ResponseBody::ChunkAck { next_offset }) if next_offset as usize == end => {}
                _ => return Err(Self::unexpected("UploadChunk", &payload)),
            }
            offset = end;
            progress(Progress {
                sent: offset,
                total: model.len(),
            });
        }
        Ok(())
    }

    /// Switches the device back to the model it ran before the last flash or revert.
    pub fn revert(&mut self) -> Result<u32, LinkError> {
        let payload = self.call(RequestBody::Revert, self.config.per_kib_timeout * 64)?;
        let decoded = decode_response(&payload).map(|r| r.body);
        match decoded {
            Ok(ResponseBody::Reverted { hash, .. }) => Ok(hash),
            _ => Err(Self::unexpected("Revert", &payload)),
        }
    }

    /// Runs the device's model once on `input` (all graph inputs concatenated, raw bytes).
    pub fn infer(&mut self, input: &[u8]) -> Result<Inference, LinkError> {
        let mut offset = 0usize;
        loop {
            let end = (offset + MAX_CHUNK).min(input.len());
            let last = end == input.len();
            let body = RequestBody::Infer {
                offset: offset as u32,
                data: &input[offset..end],
                last,
            };
            let payload = self.call(body, self.config.per_kib_timeout * 64)?;
            let decoded = decode_response(&payload).map(|r| r.body);
            match decoded {
                Ok(ResponseBody::InputAck { .. }) if !last => offset = end,
                Ok(ResponseBody::Prediction(p)) if last => {
                    let mut inference = Inference {
                        output: p.output.to_vec(),
                        cycles: p.cycles,
                        instructions: p.instructions,
                        end_sample: 0,
                    };
                    let total = p.output_len as usize;
                    while inference.output.len() < total {
                        let at = inference.output.len() as u32;
                        let payload =
                            self.call(RequestBody::ReadOutput { offset: at }, Duration::ZERO)?;
                        let decoded = decode_response(&payload).map(|r| r.body);
                        match decoded {
                            Ok(ResponseBody::OutputChunk { offset, data })
                                if offset == at && !data.is_empty() =>
                            {
                                inference.output.extend_from_slice(data)
                            }
                            _ => return Err(Self::unexpected("ReadOutput", &payload)),
                        }
                    }
                    return Ok(inference);
                }
                _ => return Err(Self::unexpected("Infer", &payload)),
            }
        }
    }

    /// Streams `samples` (raw bytes of the model's first input type) through a sliding window
    /// of `window` samples advancing by `hop`, and returns every inference the device ran.
    pub fn stream(
        &mut self,
        samples: &[u8],
        window: u32,
        hop: u32,
    ) -> Result<Vec<Inference>, LinkError> {
        self.stream_begin(window, hop)?;
        let inferences = self.stream_push(samples)?;
        self.stream_end()?;
        Ok(inferences)
    }

    /// Opens a streaming session: a sliding window of `window` samples advancing by `hop`.
    /// Feed it with [`Link::stream_push`] as data arrives; close it with [`Link::stream_end`].
    pub fn stream_begin(&mut self, window: u32, hop: u32) -> Result<(), LinkError> {
        let payload = self.call(RequestBody::StreamBegin { window, hop }, Duration::ZERO)?;
        let started = matches!(
            decode_response(&payload).map(|r| r.body),
            Ok(ResponseBody::StreamStarted { .. })
        );
        if started {
            Ok(())
        } else {
            Err(Self::unexpected("StreamBegin", &payload))
        }
    }

    /// Sends samples to the open stream and returns the inferences they completed.
    pub fn stream_push(&mut self, samples: &[u8]) -> Result<Vec<Inference>, LinkError> {
        let mut inferences = Vec::new();
        let mut sent = 0usize;
        while sent < samples.len() {
            let end = (sent + MAX_CHUNK).min(samples.len());
            let body = RequestBody::StreamData {
                samples: &samples[sent..end],
            };
            let payload = self.call(body, self.config.per_kib_timeout * 256)?;
            let decoded = decode_response(&payload).map(|r| r.body);
            match decoded {
                Ok(ResponseBody::StreamResult(result)) => {
                    let len = result.output_len as usize;
                    for (i, inference) in result.inferences.iter().enumerate() {
                        let output = result
                            .outputs
                            .get(i * len..(i + 1) * len)
                            .ok_or_else(|| Self::unexpected("StreamData", &payload))?;
                        inferences.push(Inference {
                            output: output.to_vec(),
                            cycles: inference.cycles,
                            instructions: inference.instructions,
                            end_sample: inference.end_sample,
                        });
                    }
                    if result.consumed == 0 && result.inferences.is_empty() {
                        return Err(Self::unexpected("StreamData", &payload));
                    }
                    sent += result.consumed as usize;
                }
                _ => return Err(Self::unexpected("StreamData", &payload)),
            }
        }
        Ok(inferences)
    }

    /// Closes the stream.
    pub fn stream_end(&mut self) -> Result<(), LinkError> {
        self.call(RequestBody::StreamEnd, Duration::ZERO)
            .map(|_| ())
    }

    /// Asks the device to restart.
    pub fn reset(&mut self) -> Result<(), LinkError> {
        self.call(RequestBody::Reset, Duration::ZERO).map(|_| ())
    }

    /// Writes raw bytes to the line (tests: garbage before hello).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.transport.write_all(bytes)?;
        Ok(())
    }
}

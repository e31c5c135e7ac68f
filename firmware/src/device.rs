//! The device state machine: frames in, replies out; model slots, inference and streaming.

use core::fmt::Write as _;

use ember_protocol::{
    decode_request, encode_response, DeviceError, DeviceInfo, FrameDecoder, FrameError, ModelInfo,
    Prediction, Quant, RequestBody, Response, ResponseBody, SlotContents, SlotInfo, StreamCaps,
    StreamInference, StreamResult, TensorInfo, MAX_CHUNK, MAX_FRAME, MAX_PAYLOAD,
    MAX_STREAM_INFERENCES, PROTOCOL_VERSION,
};
use ember_runtime::crc32::crc32;
use ember_runtime::{Model, ARENA_ALIGN};

use crate::flash::ModelFlash;
use crate::log::fw_log;
use crate::slots::{BootRecord, FlashLayout, Journal, LayoutError};

/// Cycle (and, where available, instruction) counter the board provides, e.g. DWT CYCCNT
/// extended to 64 bits, or SysTick under QEMU `-icount`.
pub trait Clock {
    fn cycles(&mut self) -> u64;
    /// Retired instructions, if the board can count them.
    fn instructions(&mut self) -> Option<u64> {
        None
    }
}

/// A clock that always reads 0, for boards without a counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn cycles(&mut self) -> u64 {
        0
    }
}

/// Turns a stream window into the model's input (e.g. audio samples into MFCC features).
/// Without one, or when it does not apply to the running model, the window must be exactly
/// the model's only input.
pub trait StreamFrontend {
    /// Bytes per streamed sample when this front end applies to `model`, `None` otherwise.
    fn sample_bytes(&self, model: &Model<'_>) -> Option<usize>;
    /// Fills the model's input from a complete window of `window_samples` samples.
    fn prepare(
        &mut self,
        model: &Model<'_>,
        window: &[u8],
        input: &mut [u8],
    ) -> Result<(), &'static str>;
}

/// Fixed facts about the board, reported by `Info`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    pub board: &'static str,
    pub firmware_version: &'static str,
    /// TFLite names of the operators this build can run.
    pub supported_ops: &'static [&'static str],
    /// The board's sensor stream; `max_window_bytes` is filled in from the window buffer.
    pub stream: Option<StreamCaps>,
}

/// RAM the device works in, provided by the board (statics).
pub struct Buffers<'a> {
    /// Activation arena; the device uses the 16-byte-aligned part of it.
    pub arena: &'a mut [u8],
    /// Sliding-window buffer for streaming (may be empty on boards that do not stream).
    pub window: &'a mut [u8],
    pub frontend: Option<&'a mut dyn StreamFrontend>,
}

impl core::fmt::Debug for Buffers<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buffers")
            .field("arena", &self.arena.len())
            .field("window", &self.window.len())
            .field("frontend", &self.frontend.is_some())
            .finish()
    }
}

/// What the board knows about the previous run (see the panic policy in the crate docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct BootOptions<'a> {
    /// The message the previous run's panic handler kept in no-init RAM.
    pub last_panic: Option<&'a str>,
    /// The active model crashed the board repeatedly: boot the other slot's model instead
    /// (without writing a record, so the choice is not permanent).
    pub distrust_active: bool,
}

/// Something the board must do after [`Device::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The host asked for a restart; the reply has been handed to `send`.
    Reset,
}

/// Why [`Device::new`] failed: the board's configuration is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SetupError {
    Layout(LayoutError),
    /// The arena has no 16-byte-aligned byte in it.
    ArenaTooSmall,
}

impl From<LayoutError> for SetupError {
    fn from(e: LayoutError) -> Self {
        SetupError::Layout(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    slot: u8,
    contents: SlotContents,
}

#[derive(Debug, Clone, Copy)]
struct Upload {
    slot: u8,
    size: u32,
    hash: u32,
    /// Bytes written so far (the next chunk's offset).
    next: u32,
    /// Bytes of the slot erased so far.
    erased: u32,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    /// The board's front end turns windows into inputs (else windows are inputs).
    uses_frontend: bool,
    window_bytes: usize,
    hop_bytes: usize,
    sample_bytes: usize,
    filled: usize,
    samples: u64,
    inferences: u32,
    per_reply: usize,
}

/// The last reply, kept so a retried request (same id, same bytes) gets it again unexecuted.
#[derive(Debug, Clone, Copy)]
struct CachedReply {
    id: u16,
    request_crc: u32,
    len: usize,
}

type Reply<'r> = Result<ResponseBody<'r>, DeviceError<'r>>;

/// Everything but the serial buffers, so replies can borrow it while a frame is encoded.
struct Core<'a, F, C> {
    flash: F,
    layout: FlashLayout,
    clock: C,
    config: DeviceConfig,
    arena: &'a mut [u8],
    window: &'a mut [u8],
    frontend: Option<&'a mut dyn StreamFrontend>,
    journal: Journal,
    running: Option<Running>,
    fell_back: bool,
    last_panic: Option<&'a str>,
    upload: Option<Upload>,
    input_received: u32,
    output_ready: bool,
    stream: Option<Stream>,
    text: heapless::String<160>,
    scratch: [u8; MAX_PAYLOAD],
}

/// The device: feed it received bytes, send what it hands back.
pub struct Device<'a, F, C> {
    core: Core<'a, F, C>,
    rx: FrameDecoder<MAX_FRAME>,
    tx: [u8; MAX_FRAME],
    /// Small buffer for id-0 errors, so they never clobber the cached reply in `tx`.
    tx_error: [u8; 32],
    cached: Option<CachedReply>,
}

impl<F, C> core::fmt::Debug for Device<'_, F, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("board", &self.core.config.board)
            .field("running", &self.core.running)
            .field("upload", &self.core.upload)
            .field("stream", &self.core.stream)
            .finish_non_exhaustive()
    }
}

/// Checks that `slot` holds `contents`, a model that loads and fits the arena.
fn verify_slot<'f>(
    mapped: &'f [u8],
    layout: &FlashLayout,
    slot: u8,
    contents: SlotContents,
    arena_len: usize,
    text: &mut heapless::String<160>,
) -> Result<Model<'f>, DeviceError<'static>> {
    let region = layout.slots[usize::from(slot & 1)];
    if contents.size > region.len {
        return Err(DeviceError::TooBigForSlot {
            size: contents.size,
            capacity: region.len,
        });
    }
    let start = region.start as usize;
    let bytes = mapped
        .get(start..start + contents.size as usize)
        .ok_or(DeviceError::Flash)?;
    let actual = crc32(bytes);
    if actual != contents.hash {
        return Err(DeviceError::HashMismatch {
            expected: contents.hash,
            actual,
        });
    }
    let model = Model::load(bytes).map_err(|e| {
        text.clear();
        let _ = write!(text, "{e}");
        DeviceError::InvalidModel { reason: "" }
    })?;
    if model.arena_size() > arena_len {
        return Err(DeviceError::ArenaTooSmall {
            needed: model.arena_size() as u32,
            available: arena_len as u32,
        });
    }
    Ok(model)
}

/// Loads the running model from flash. It was verified when it became the running model;
/// loading again re-checks its CRC, which also catches flash that decayed since.
fn load_running<'f, F: ModelFlash>(
    flash: &'f F,
    layout: &FlashLayout,
    running: Option<Running>,
) -> Result<Model<'f>, DeviceError<'static>> {
    let running = running.ok_or(DeviceError::NoModel)?;
    let region = layout.slots[usize::from(running.slot)];
    let start = region.start as usize;
    let bytes = flash
        .mapped()
        .get(start..start + running.contents.size as usize)
        .ok_or(DeviceError::Flash)?;
    Model::load(bytes).map_err(|_| DeviceError::NoModel)
}

/// Re-attaches the runtime's message (kept in `text`) to an `InvalidModel` error.
fn with_text<'t>(e: DeviceError<'static>, text: &'t str) -> DeviceError<'t> {
    match e {
        DeviceError::InvalidModel { .. } => DeviceError::InvalidModel { reason: text },
        other => other,
    }
}

fn tensor_info(t: &ember_runtime::TensorDef) -> TensorInfo {
    use ember_runtime::DType as R;
    TensorInfo {
        dtype: match t.dtype {
            R::I8 => ember_protocol::DType::I8,
            R::I16 => ember_protocol::DType::I16,
            R::I32 => ember_protocol::DType::I32,
            R::F32 => ember_protocol::DType::F32,
        },
        shape: t.shape.dims.iter().copied().collect(),
        quant: t.quant.map(|q| Quant {
            scale: q.scale,
            zero_point: q.zero_point,
        }),
    }
}

fn total_bytes(tensors: &[ember_runtime::TensorDef]) -> usize {
    tensors.iter().map(|t| t.byte_len().unwrap_or(0)).sum()
}

/// Writes `data` at `offset` into the graph inputs, concatenated in order.
fn write_inputs(model: &Model<'_>, arena: &mut [u8], offset: usize, data: &[u8]) -> Option<()> {
    let mut base = 0usize;
    let mut rest = data;
    let mut at = offset;
    for index in 0..model.inputs().len() {
        let dst = model.input_mut(arena, index).ok()?;
        let len = dst.len();
        if at < base + len && !rest.is_empty() {
            let from = at - base;
            let n = (len - from).min(rest.len());
            dst[from..from + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            at += n;
        }
        base += len;
    }
    rest.is_empty().then_some(())
}

/// Copies the graph outputs, concatenated, from `offset` into `dst`; returns the bytes copied.
fn read_outputs(model: &Model<'_>, arena: &[u8], offset: usize, dst: &mut [u8]) -> usize {
    let mut base = 0usize;
    let mut copied = 0usize;
    for index in 0..model.outputs().len() {
        let Ok(src) = model.output(arena, index) else {
            break;
        };
        let at = offset + copied;
        if at < base + src.len() && copied < dst.len() {
            let from = at - base;
            let n = (src.len() - from).min(dst.len() - copied);
            dst[copied..copied + n].copy_from_slice(&src[from..from + n]);
            copied += n;
        }
        base += src.len();
    }
    copied
}

impl<'a, F: ModelFlash, C: Clock> Device<'a, F, C> {
    /// Boots: finds the newest valid boot record and runs its model, falling back to the other
    /// slot when that model fails verification, or runs no model.
    pub fn new(
        flash: F,
        layout: FlashLayout,
        clock: C,
        config: DeviceConfig,
        buffers: Buffers<'a>,
        boot: BootOptions<'a>,
    ) -> Result<Self, SetupError> {
        layout.check(&flash)?;
        let skip = buffers.arena.as_ptr().align_offset(ARENA_ALIGN);
        let arena = buffers
            .arena
            .get_mut(skip..)
            .filter(|a| !a.is_empty())
            .ok_or(SetupError::ArenaTooSmall)?;
        let journal = Journal::scan(&flash, &layout);
        let mut core = Core {
            flash,
            layout,
            clock,
            config,
            arena,
            window: buffers.window,
            frontend: buffers.frontend,
            journal,
            running: None,
            fell_back: false,
            last_panic: boot.last_panic,
            upload: None,
            input_received: 0,
            output_ready: false,
            stream: None,
            text: heapless::String::new(),
            scratch: [0; MAX_PAYLOAD],
        };
        core.boot(boot.distrust_active);
        Ok(Device {
            core,
            rx: FrameDecoder::new(),
            tx: [0; MAX_FRAME],
            tx_error: [0; 32],
            cached: None,
        })
    }

    /// The flash, for a simulated reboot in tests.
    pub fn into_flash(self) -> F {
        self.core.flash
    }

    /// The running model's slot and contents, if any.
    pub fn running_model(&self) -> Option<(u8, SlotContents)> {
        self.core.running.map(|r| (r.slot, r.contents))
    }

    /// Whether boot fell back from the boot record's model.
    pub fn fell_back(&self) -> bool {
        self.core.fell_back
    }

    /// Feeds received bytes. Each complete reply frame is handed to `send` (one call per
    /// frame). Returns [`Event::Reset`] if the host asked for a restart; bytes after that
    /// request are ignored.
    pub fn receive(&mut self, bytes: &[u8], mut send: impl FnMut(&[u8])) -> Option<Event> {
        for &byte in bytes {
            let payload = match self.rx.push(byte) {
                None => continue,
                Some(Ok(payload)) => payload,
                Some(Err(e)) => {
                    let error = match e {
                        FrameError::BadCrc { .. } => DeviceError::BadCrc,
                        _ => DeviceError::BadFrame,
                    };
                    fw_log!(warn, "dropped a bad frame");
                    let reply = Response {
                        id: 0,
                        body: ResponseBody::Error(error),
                    };
                    if let Ok(n) = encode_response(&reply, &mut self.tx_error) {
                        send(&self.tx_error[..n]);
                    }
                    continue;
                }
            };
            let request_crc = crc32(payload);
            let request = match decode_request(payload) {
                Ok(request) => request,
                Err(_) => {
                    // Answer with the id if at least that much decodes.
                    let id = postcard_id(payload);
                    let reply = Response {
                        id,
                        body: ResponseBody::Error(DeviceError::UnknownRequest),
                    };
                    if let Ok(n) = encode_response(&reply, &mut self.tx_error) {
                        send(&self.tx_error[..n]);
                    }
                    continue;
                }
            };
            if let Some(c) = self.cached {
                if c.id == request.id && c.request_crc == request_crc {
                    send(&self.tx[..c.len]);
                    continue;
                }
            }
            let (body, event) = self.core.handle(request.body);
            let response = Response {
                id: request.id,
                body,
            };
            let len = match encode_response(&response, &mut self.tx) {
                Ok(n) => n,
                Err(_) => {
                    // Every reply is sized to fit; this would be a firmware bug.
                    let fallback = Response {
                        id: request.id,
                        body: ResponseBody::Error(DeviceError::Inference {
                            reason: "reply too large",
                        }),
                    };
                    encode_response(&fallback, &mut self.tx).unwrap_or(0)
                }
            };
            self.cached = Some(CachedReply {
                id: request.id,
                request_crc,
                len,
            });
            send(&self.tx[..len]);
            if let Some(event) = event {
                self.rx.reset();
                return Some(event);
            }
        }
        None
    }

    /// Reads what the serial port has (blocking for at least one byte), handles it and writes
    /// the replies.
    pub fn poll<S: embedded_io::Read + embedded_io::Write>(
        &mut self,
        serial: &mut S,
    ) -> Result<Option<Event>, S::Error> {
        let mut buffer = [0u8; 64];
        let n = serial.read(&mut buffer)?;
        let mut write_error = None;
        let event = self.receive(&buffer[..n], |frame| {
            if write_error.is_none() {
                if let Err(e) = serial.write_all(frame) {
                    write_error = Some(e);
                }
            }
        });
        if let Some(e) = write_error {
            return Err(e);
        }
        serial.flush()?;
        Ok(event)
    }
}

/// The request id (the first postcard field) of a payload whose body did not decode.
fn postcard_id(payload: &[u8]) -> u16 {
    let mut value = 0u32;
    for (i, &b) in payload.iter().take(3).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return u16::try_from(value).unwrap_or(0);
        }
    }
    0
}

impl<'a, F: ModelFlash, C: Clock> Core<'a, F, C> {
    fn boot(&mut self, distrust_active: bool) {
        let Some(record) = self.journal.newest else {
            fw_log!(info, "no boot record: no model");
            return;
        };
        let active = record.active & 1;
        let order = [active, 1 - active];
        let arena_len = self.arena.len();
        for (rank, &slot) in order.iter().enumerate() {
            if rank == 0 && distrust_active {
                continue;
            }
            let Some(contents) = record.slots[usize::from(slot)] else {
                continue;
            };
            let mapped = self.flash.mapped();
            match verify_slot(
                mapped,
                &self.layout,
                slot,
                contents,
                arena_len,
                &mut self.text,
            ) {
                Ok(_) => {
                    self.running = Some(Running { slot, contents });
                    self.fell_back = rank > 0;
                    fw_log!(info, "booted model in slot {=u8}", slot);
                    return;
                }
                Err(_) => fw_log!(warn, "slot {=u8} failed verification", slot),
            }
        }
    }

    fn handle(&mut self, body: RequestBody<'_>) -> (ResponseBody<'_>, Option<Event>) {
        let mut event = None;
        let reply: Reply<'_> = match body {
            RequestBody::Info => Ok(ResponseBody::Info(self.info())),
            RequestBody::UploadBegin { size, hash } => self.upload_begin(size, hash),
            RequestBody::UploadChunk { offset, data } => self.upload_chunk(offset, data),
            RequestBody::UploadCommit => self.upload_commit(),
            RequestBody::UploadAbort => {
                self.upload = None;
                Ok(ResponseBody::Aborted)
            }
            RequestBody::Revert => self.revert(),
            RequestBody::Infer { offset, data, last } => self.infer(offset, data, last),
            RequestBody::ReadOutput { offset } => self.read_output(offset),
            RequestBody::StreamBegin { window, hop } => self.stream_begin(window, hop),
            RequestBody::StreamData { samples } => self.stream_data(samples),
            RequestBody::StreamEnd => match self.stream.take() {
                Some(s) => Ok(ResponseBody::StreamEnded {
                    samples: s.samples,
                    inferences: s.inferences,
                }),
                None => Err(DeviceError::NotStreaming),
            },
            RequestBody::Reset => {
                event = Some(Event::Reset);
                Ok(ResponseBody::Resetting)
            }
            _ => Err(DeviceError::UnknownRequest),
        };
        (reply.unwrap_or_else(ResponseBody::Error), event)
    }

    fn info(&self) -> DeviceInfo<'_> {
        let record = self.journal.newest;
        let mut slots = heapless::Vec::new();
        for (i, region) in self.layout.slots.iter().enumerate() {
            let being_written = self.upload.is_some_and(|u| usize::from(u.slot) == i);
            let running = self.running.is_some_and(|r| usize::from(r.slot) == i);
            let contents = if running {
                self.running.map(|r| r.contents)
            } else if being_written {
                None
            } else {
                record.and_then(|r| r.slots[i])
            };
            let _ = slots.push(SlotInfo {
                capacity: region.len,
                contents,
                running,
            });
        }
        let model = self.running.and_then(|running| {
            let model = load_running(&self.flash, &self.layout, self.running).ok()?;
            Some(ModelInfo {
                slot: running.slot,
                size: running.contents.size,
                hash: running.contents.hash,
                arena_needed: model.arena_size() as u32,
                op_count: model.op_count() as u32,
                inputs: model.inputs().iter().map(tensor_info).collect(),
                outputs: model.outputs().iter().map(tensor_info).collect(),
            })
        });
        DeviceInfo {
            protocol_version: PROTOCOL_VERSION,
            board: self.config.board,
            firmware_version: self.config.firmware_version,
            max_payload: MAX_PAYLOAD as u16,
            max_chunk: MAX_CHUNK as u16,
            arena_size: self.arena.len() as u32,
            slots,
            model,
            ops: self
                .config
                .supported_ops
                .iter()
                .copied()
                .take(ember_protocol::MAX_OPS)
                .collect(),
            stream: self.config.stream.map(|caps| StreamCaps {
                max_window_bytes: self.window.len() as u32,
                ..caps
            }),
            fell_back: self.fell_back,
            last_panic: self.last_panic,
        }
    }

    fn upload_begin(&mut self, size: u32, hash: u32) -> Reply<'_> {
        let slot = self.running.map_or(0, |r| 1 - r.slot);
        let capacity = self.layout.slots[usize::from(slot)].len;
        if size == 0 || size > capacity {
            return Err(DeviceError::TooBigForSlot { size, capacity });
        }
        fw_log!(info, "upload of {=u32} bytes into slot {=u8}", size, slot);
        self.upload = Some(Upload {
            slot,
            size,
            hash,
            next: 0,
            erased: 0,
        });
        Ok(ResponseBody::UploadReady {
            slot,
            max_chunk: MAX_CHUNK as u16,
        })
    }

    fn upload_chunk(&mut self, offset: u32, data: &[u8]) -> Reply<'_> {
        let mut upload = self.upload.ok_or(DeviceError::NoUpload)?;
        let region = self.layout.slots[usize::from(upload.slot)];
        let len = data.len() as u32;
        if offset < upload.next {
            // A repeat of a chunk already written (its ack was lost): fine if identical.
            let start = (region.start + offset) as usize;
            let same = self.flash.mapped().get(start..start + data.len()) == Some(data);
            if same && offset + len <= upload.next {
                return Ok(ResponseBody::ChunkAck {
                    next_offset: upload.next,
                });
            }
            return Err(DeviceError::OutOfOrderChunk {
                expected: upload.next,
                got: offset,
            });
        }
        if offset > upload.next {
            return Err(DeviceError::OutOfOrderChunk {
                expected: upload.next,
                got: offset,
            });
        }
        let end = offset.checked_add(len).filter(|&e| e <= upload.size);
        let write = F::WRITE_SIZE as u32;
        let Some(end) = end.filter(|&e| len > 0 && (e == upload.size || len.is_multiple_of(write)))
        else {
            return Err(DeviceError::BadChunk { offset, len });
        };
        let padded_end = end.next_multiple_of(write);
        let erase = F::ERASE_SIZE as u32;
        let result = (|| {
            while upload.erased < padded_end {
                let from = region.start + upload.erased;
                self.flash.erase(from, from + erase)?;
                upload.erased += erase;
            }
            let whole = data.len() - data.len() % F::WRITE_SIZE;
            if whole > 0 {
                self.flash.write(region.start + offset, &data[..whole])?;
            }
            if whole < data.len() {
                let mut tail = [0xFFu8; crate::slots::MAX_WRITE_SIZE];
                tail[..data.len() - whole].copy_from_slice(&data[whole..]);
                self.flash
                    .write(region.start + offset + whole as u32, &tail[..F::WRITE_SIZE])?;
            }
            Ok::<(), F::Error>(())
        })();
        if result.is_err() {
            fw_log!(warn, "flash failed during upload; upload dropped");
            self.upload = None;
            return Err(DeviceError::Flash);
        }
        upload.next = end;
        self.upload = Some(upload);
        Ok(ResponseBody::ChunkAck { next_offset: end })
    }

    fn upload_commit(&mut self) -> Reply<'_> {
        let upload = self.upload.ok_or(DeviceError::NoUpload)?;
        if upload.next < upload.size {
            return Err(DeviceError::UploadIncomplete {
                received: upload.next,
                size: upload.size,
            });
        }
        // Any other command ends a stream: its host may have died without sending StreamEnd,
        // and the board must stay usable.
        self.stream = None;
        self.upload = None;
        let contents = SlotContents {
            size: upload.size,
            hash: upload.hash,
        };
        let arena_len = self.arena.len();
        let verified = verify_slot(
            self.flash.mapped(),
            &self.layout,
            upload.slot,
            contents,
            arena_len,
            &mut self.text,
        )
        .map(|_| ());
        if let Err(e) = verified {
            fw_log!(warn, "uploaded model rejected");
            return Err(with_text(e, &self.text));
        }
        let other = 1 - upload.slot;
        let mut slots = self.journal.newest.map_or([None; 2], |r| r.slots);
        slots[usize::from(upload.slot)] = Some(contents);
        slots[usize::from(other)] = self.running.map(|r| r.contents);
        self.switch_to(upload.slot, contents, slots)?;
        Ok(ResponseBody::Committed {
            slot: upload.slot,
            hash: upload.hash,
        })
    }

    /// Writes a boot record making `slot` active; the switch happens only if it lands.
    fn switch_to(
        &mut self,
        slot: u8,
        contents: SlotContents,
        slots: [Option<SlotContents>; 2],
    ) -> Result<(), DeviceError<'static>> {
        let record = BootRecord {
            seq: self.journal.next_seq(),
            active: slot,
            slots,
        };
        self.journal
            .append(&mut self.flash, &self.layout, record)
            .map_err(|_| DeviceError::Flash)?;
        self.running = Some(Running { slot, contents });
        self.fell_back = false;
        self.output_ready = false;
        self.input_received = 0;
        fw_log!(info, "running slot {=u8}", slot);
        Ok(())
    }

    fn revert(&mut self) -> Reply<'_> {
        // Any other command ends a stream: its host may have died without sending StreamEnd,
        // and the board must stay usable.
        self.stream = None;
        let running = self.running.ok_or(DeviceError::NoPreviousModel)?;
        let other = 1 - running.slot;
        let record = self.journal.newest.ok_or(DeviceError::NoPreviousModel)?;
        let contents = record.slots[usize::from(other)].ok_or(DeviceError::NoPreviousModel)?;
        if self.upload.is_some_and(|u| u.slot == other) {
            return Err(DeviceError::NoPreviousModel);
        }
        let arena_len = self.arena.len();
        let mapped = self.flash.mapped();
        if verify_slot(
            mapped,
            &self.layout,
            other,
            contents,
            arena_len,
            &mut self.text,
        )
        .is_err()
        {
            return Err(DeviceError::NoPreviousModel);
        }
        let mut slots = record.slots;
        slots[usize::from(running.slot)] = Some(running.contents);
        self.switch_to(other, contents, slots)?;
        Ok(ResponseBody::Reverted {
            slot: other,
            hash: contents.hash,
        })
    }

    fn run_model(
        model: &Model<'_>,
        arena: &mut [u8],
        clock: &mut C,
        text: &mut heapless::String<160>,
    ) -> Result<StreamInference, ()> {
        let cycles_before = clock.cycles();
        let instructions_before = clock.instructions();
        let result = model.run(arena);
        let cycles = clock.cycles().wrapping_sub(cycles_before);
        let instructions = clock
            .instructions()
            .zip(instructions_before)
            .map(|(after, before)| after.wrapping_sub(before));
        result.map_err(|e| {
            text.clear();
            let _ = write!(text, "{e}");
        })?;
        Ok(StreamInference {
            end_sample: 0,
            cycles,
            instructions,
        })
    }

    fn infer(&mut self, offset: u32, data: &[u8], last: bool) -> Reply<'_> {
        // Any other command ends a stream: its host may have died without sending StreamEnd,
        // and the board must stay usable.
        self.stream = None;
        let model = load_running(&self.flash, &self.layout, self.running)?;
        let total = total_bytes(model.inputs()) as u32;
        if offset == 0 {
            self.input_received = 0;
        }
        self.output_ready = false;
        if offset != self.input_received {
            return Err(DeviceError::OutOfOrderChunk {
                expected: self.input_received,
                got: offset,
            });
        }
        let end = offset.saturating_add(data.len() as u32);
        if end > total {
            return Err(DeviceError::InputSize {
                expected: total,
                got: end,
            });
        }
        write_inputs(&model, self.arena, offset as usize, data).ok_or(DeviceError::NoModel)?;
        self.input_received = end;
        if !last {
            return Ok(ResponseBody::InputAck { next_offset: end });
        }
        self.input_received = 0;
        if end != total {
            return Err(DeviceError::InputSize {
                expected: total,
                got: end,
            });
        }
        let Ok(run) = Self::run_model(&model, self.arena, &mut self.clock, &mut self.text) else {
            return Err(DeviceError::Inference { reason: &self.text });
        };
        self.output_ready = true;
        let output_len = total_bytes(model.outputs()) as u32;
        let n = read_outputs(&model, self.arena, 0, &mut self.scratch[..MAX_CHUNK]);
        Ok(ResponseBody::Prediction(Prediction {
            cycles: run.cycles,
            instructions: run.instructions,
            output_len,
            output: &self.scratch[..n],
        }))
    }

    fn read_output(&mut self, offset: u32) -> Reply<'_> {
        if !self.output_ready {
            return Err(DeviceError::NoOutput);
        }
        let model = load_running(&self.flash, &self.layout, self.running)?;
        if offset as usize >= total_bytes(model.outputs()) {
            return Err(DeviceError::NoOutput);
        }
        let n = read_outputs(
            &model,
            self.arena,
            offset as usize,
            &mut self.scratch[..MAX_CHUNK],
        );
        Ok(ResponseBody::OutputChunk {
            offset,
            data: &self.scratch[..n],
        })
    }

    fn stream_begin(&mut self, window: u32, hop: u32) -> Reply<'_> {
        let bad = |reason| Err(DeviceError::BadStreamConfig { reason });
        let model = load_running(&self.flash, &self.layout, self.running)?;
        let Some(first) = model.inputs().first() else {
            return bad("model has no input");
        };
        let frontend_sample_bytes = self.frontend.as_ref().and_then(|f| f.sample_bytes(&model));
        let uses_frontend = frontend_sample_bytes.is_some();
        let sample_bytes = frontend_sample_bytes.unwrap_or(first.dtype.size());
        let Some(window_bytes) = (window as usize).checked_mul(sample_bytes) else {
            return bad("window too large");
        };
        if hop == 0 || hop > window {
            return bad("hop must be between 1 and the window length");
        }
        if window_bytes > self.window.len() {
            return bad("window larger than the device's window buffer");
        }
        if !uses_frontend && (model.inputs().len() != 1 || Some(window_bytes) != first.byte_len()) {
            return bad("without a front end the window must equal the model's single input");
        }
        // Each inference in a reply costs its outputs plus at most 25 bytes of varints.
        let output_len = total_bytes(model.outputs());
        let per_reply = ((MAX_PAYLOAD - 64) / (output_len + 25)).min(MAX_STREAM_INFERENCES);
        if per_reply == 0 {
            return bad("model output too large to stream");
        }
        self.output_ready = false;
        self.stream = Some(Stream {
            uses_frontend,
            window_bytes,
            hop_bytes: hop as usize * sample_bytes,
            sample_bytes,
            filled: 0,
            samples: 0,
            inferences: 0,
            per_reply,
        });
        Ok(ResponseBody::StreamStarted { window, hop })
    }

    fn stream_data(&mut self, samples: &[u8]) -> Reply<'_> {
        let mut stream = self.stream.ok_or(DeviceError::NotStreaming)?;
        if !samples.len().is_multiple_of(stream.sample_bytes) {
            return Err(DeviceError::BadStreamConfig {
                reason: "data is not a whole number of samples",
            });
        }
        let Core {
            flash,
            layout,
            running,
            arena,
            window,
            frontend,
            clock,
            text,
            scratch,
            ..
        } = self;
        let model = load_running(flash, layout, *running)?;
        let output_len = total_bytes(model.outputs());
        let mut inferences: heapless::Vec<StreamInference, MAX_STREAM_INFERENCES> =
            heapless::Vec::new();
        let mut consumed = 0usize;
        let mut failure = false;
        while consumed < samples.len() && inferences.len() < stream.per_reply {
            let n = (stream.window_bytes - stream.filled).min(samples.len() - consumed);
            window[stream.filled..stream.filled + n]
                .copy_from_slice(&samples[consumed..consumed + n]);
            stream.filled += n;
            consumed += n;
            if stream.filled < stream.window_bytes {
                continue;
            }
            let filled_window = &window[..stream.window_bytes];
            let prepared = match frontend {
                Some(frontend) if stream.uses_frontend => match model.input_mut(arena, 0) {
                    Ok(input) => frontend.prepare(&model, filled_window, input).is_ok(),
                    Err(_) => false,
                },
                _ => write_inputs(&model, arena, 0, filled_window).is_some(),
            };
            if !prepared {
                failure = true;
                break;
            }
            let Ok(mut run) = Self::run_model(&model, arena, clock, text) else {
                failure = true;
                break;
            };
            run.end_sample = stream.samples + (consumed / stream.sample_bytes) as u64;
            let at = inferences.len() * output_len;
            read_outputs(&model, arena, 0, &mut scratch[at..at + output_len]);
            let _ = inferences.push(run);
            stream.inferences += 1;
            window.copy_within(stream.hop_bytes..stream.window_bytes, 0);
            stream.filled -= stream.hop_bytes;
        }
        stream.samples += (consumed / stream.sample_bytes) as u64;
        self.stream = Some(stream);
        if failure {
            self.stream = None;
            if self.text.is_empty() {
                let _ = self.text.push_str("front end rejected the window");
            }
            return Err(DeviceError::Inference { reason: &self.text });
        }
        let count = inferences.len();
        Ok(ResponseBody::StreamResult(StreamResult {
            consumed: consumed as u32,
            output_len: output_len as u32,
            inferences,
            outputs: &self.scratch[..count * output_len],
        }))
    }
}

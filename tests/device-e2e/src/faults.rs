//! A transport that damages the line on purpose: flipped bits, dropped, duplicated and
//! truncated frames, garbage between frames, damaged replies, a host that stops talking
//! mid-upload, and an upload announced larger than what is sent.
//!
//! `ember_link::Link` writes each request frame with one `write_all`, and this transport
//! accepts every write whole, so one `write` call here is exactly one frame.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ember_link::Transport;
use ember_protocol::MAX_FRAME;
use ember_protocol::{decode_request, encode_request, FrameDecoder, Request, RequestBody};

use crate::rng::Rng;

/// One kind of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// One bit of an outgoing frame flipped (possibly in a delimiter).
    CorruptByte,
    /// An outgoing frame never reaches the device.
    DropFrame,
    /// An outgoing frame arrives twice.
    DuplicateFrame,
    /// An outgoing frame cut short: its closing 0x00 never arrives.
    TruncateFrame,
    /// Random bytes on the line before an outgoing frame.
    Garbage,
    /// One bit of the device's reply flipped on the way back.
    CorruptReply,
    /// A piece of the device's reply lost on the way back.
    DropReplyBytes,
    /// The host stopped writing (cable pulled, host hung) — frames swallowed.
    LineCut,
    /// `UploadChunk` frames swallowed from some offset on, other requests pass.
    ChunksStopped,
    /// `UploadBegin` rewritten to announce a larger model than the chunks carry.
    UploadTruncated,
}

impl Fault {
    /// Faults that damage one outgoing frame.
    pub const FRAME_FAULTS: [Fault; 5] = [
        Fault::CorruptByte,
        Fault::DropFrame,
        Fault::DuplicateFrame,
        Fault::TruncateFrame,
        Fault::Garbage,
    ];
    /// Faults that damage the device's reply.
    pub const REPLY_FAULTS: [Fault; 2] = [Fault::CorruptReply, Fault::DropReplyBytes];

    /// Whether the link must have resent a request to get past this fault.
    pub fn forces_resend(self) -> bool {
        matches!(
            self,
            Fault::CorruptByte
                | Fault::DropFrame
                | Fault::TruncateFrame
                | Fault::CorruptReply
                | Fault::DropReplyBytes
        )
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Fault::CorruptByte => "corrupted byte",
            Fault::DropFrame => "dropped frame",
            Fault::DuplicateFrame => "duplicated frame",
            Fault::TruncateFrame => "truncated frame",
            Fault::Garbage => "garbage before frame",
            Fault::CorruptReply => "corrupted reply byte",
            Fault::DropReplyBytes => "lost reply bytes",
            Fault::LineCut => "line cut",
            Fault::ChunksStopped => "upload chunks stopped",
            Fault::UploadTruncated => "truncated upload",
        };
        f.write_str(name)
    }
}

/// What to damage next, shared by a [`FaultyTransport`] and its [`FaultControl`].
#[derive(Debug)]
struct Plan {
    rng: Rng,
    /// Frames written so far.
    writes: u64,
    /// Reads that returned data so far.
    reads: u64,
    write_faults: BTreeMap<u64, Fault>,
    read_faults: BTreeMap<u64, Fault>,
    /// Frames from this write index on are swallowed.
    cut_from_write: Option<u64>,
    /// `UploadChunk` frames at or past this offset are swallowed.
    chunks_stop_at: Option<u32>,
    /// `UploadBegin` is rewritten to announce this (size, hash).
    announce: Option<(u32, u32)>,
    injected: Vec<Fault>,
}

/// Wraps a transport and damages what passes through it, as armed through its
/// [`FaultControl`] (the transport itself disappears into an `ember_link::Link`).
#[derive(Debug)]
pub struct FaultyTransport<T> {
    inner: T,
    plan: Arc<Mutex<Plan>>,
}

/// Arms faults on a [`FaultyTransport`] from outside the link that owns it.
#[derive(Debug, Clone)]
pub struct FaultControl {
    plan: Arc<Mutex<Plan>>,
}

fn lock(plan: &Mutex<Plan>) -> MutexGuard<'_, Plan> {
    plan.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultControl {
    /// Damages the frame written `after` frames from now (0: the next one).
    pub fn arm_write(&self, after: u64, fault: Fault) {
        let mut plan = lock(&self.plan);
        let at = plan.writes + after;
        plan.write_faults.insert(at, fault);
    }

    /// Damages the data of the read `after` data-carrying reads from now (0: the next one).
    pub fn arm_read(&self, after: u64, fault: Fault) {
        let mut plan = lock(&self.plan);
        let at = plan.reads + after;
        plan.read_faults.insert(at, fault);
    }

    /// Swallows every frame from `after` frames from now on, until [`Self::disarm`].
    pub fn cut_line_after(&self, after: u64) {
        let mut plan = lock(&self.plan);
        plan.cut_from_write = Some(plan.writes + after);
    }

    /// Swallows `UploadChunk` frames at or past `offset`, until [`Self::disarm`].
    pub fn stop_chunks_at(&self, offset: u32) {
        lock(&self.plan).chunks_stop_at = Some(offset);
    }

    /// Rewrites every `UploadBegin` (a resend too, so it keeps its id and bytes) to announce
    /// `size` bytes hashing to `hash`, until [`Self::disarm`].
    pub fn announce_upload(&self, size: u32, hash: u32) {
        lock(&self.plan).announce = Some((size, hash));
    }

    /// Removes every armed fault that has not fired.
    pub fn disarm(&self) {
        let mut plan = lock(&self.plan);
        plan.write_faults.clear();
        plan.read_faults.clear();
        plan.cut_from_write = None;
        plan.chunks_stop_at = None;
        plan.announce = None;
    }

    /// Faults that fired since the last call.
    pub fn take_injected(&self) -> Vec<Fault> {
        std::mem::take(&mut lock(&self.plan).injected)
    }
}

impl<T: Transport> FaultyTransport<T> {
    /// The transport and the handle that arms its faults; `seed` drives where bits flip,
    /// how much is truncated and what garbage is sent.
    pub fn new(inner: T, seed: u64) -> (Self, FaultControl) {
        let plan = Arc::new(Mutex::new(Plan {
            rng: Rng::new(seed),
            writes: 0,
            reads: 0,
            write_faults: BTreeMap::new(),
            read_faults: BTreeMap::new(),
            cut_from_write: None,
            chunks_stop_at: None,
            announce: None,
            injected: Vec::new(),
        }));
        (
            FaultyTransport {
                inner,
                plan: plan.clone(),
            },
            FaultControl { plan },
        )
    }

    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl Plan {
    /// The damaged versions of `frame` to put on the line, in order.
    fn damage(&mut self, frame: &[u8], fault: Fault) -> Vec<Vec<u8>> {
        let mut bytes = frame.to_vec();
        match fault {
            Fault::DropFrame => vec![],
            Fault::DuplicateFrame => vec![bytes.clone(), bytes],
            Fault::CorruptByte if !bytes.is_empty() => {
                let at = self.rng.below(bytes.len());
                if let Some(byte) = bytes.get_mut(at) {
                    *byte ^= 1 << self.rng.below(8);
                }
                vec![bytes]
            }
            Fault::TruncateFrame => {
                // Keep at least the leading delimiter and one byte, never the closing 0x00.
                let keep = 2 + self.rng.below(bytes.len().saturating_sub(3).max(1));
                bytes.truncate(keep.min(bytes.len().saturating_sub(1)));
                vec![bytes]
            }
            Fault::Garbage => {
                let len = 1 + self.rng.below(64);
                let mut noise = self.rng.bytes(len);
                noise.extend_from_slice(&bytes);
                vec![noise]
            }
            _ => vec![bytes],
        }
    }

    /// Applies the request-level rewrites; `None` when the frame is to be swallowed.
    fn rewrite(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        if self.chunks_stop_at.is_none() && self.announce.is_none() {
            return Some(frame.to_vec());
        }
        let mut decoder = FrameDecoder::<MAX_FRAME>::new();
        let mut payload = Vec::new();
        for &byte in frame {
            if let Some(Ok(p)) = decoder.push(byte) {
                payload = p.to_vec();
            }
        }
        let Ok(request) = decode_request(&payload) else {
            return Some(frame.to_vec());
        };
        match request.body {
            RequestBody::UploadChunk { offset, .. }
                if self.chunks_stop_at.is_some_and(|stop| offset >= stop) =>
            {
                self.injected.push(Fault::ChunksStopped);
                None
            }
            RequestBody::UploadBegin { .. } => match self.announce {
                Some((size, hash)) => {
                    self.injected.push(Fault::UploadTruncated);
                    let rewritten = Request {
                        id: request.id,
                        body: RequestBody::UploadBegin { size, hash },
                    };
                    let mut out = vec![0u8; MAX_FRAME + 1];
                    let len = encode_request(&rewritten, &mut out[1..]).ok()?;
                    out.truncate(len + 1);
                    Some(out)
                }
                None => Some(frame.to_vec()),
            },
            _ => Some(frame.to_vec()),
        }
    }

    /// Damages `n` bytes just read into `buf` if a read fault is due; returns the new length.
    fn damage_read(&mut self, buf: &mut [u8], n: usize) -> io::Result<usize> {
        let index = self.reads;
        self.reads += 1;
        let Some(fault) = self.read_faults.remove(&index) else {
            return Ok(n);
        };
        self.injected.push(fault);
        match fault {
            Fault::DropReplyBytes if n == 1 => {
                // Nothing is left of this read: to the reader that is a read that timed out
                // (`Ok(0)` would mean the port closed).
                Err(io::Error::new(io::ErrorKind::TimedOut, "reply bytes lost"))
            }
            Fault::DropReplyBytes => {
                // Lose a piece of what arrived (never all of it), keep the rest in order.
                let start = self.rng.below(n);
                let lost = (1 + self.rng.below(n - start)).min(n - 1);
                buf.copy_within(start + lost..n, start);
                Ok(n - lost)
            }
            _ => {
                let at = self.rng.below(n);
                if let Some(byte) = buf.get_mut(at) {
                    *byte ^= 1 << self.rng.below(8);
                }
                Ok(n)
            }
        }
    }

    /// What to put on the line for one frame the link wrote.
    fn pieces(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let index = self.writes;
        self.writes += 1;
        if self.cut_from_write.is_some_and(|from| index >= from) {
            self.injected.push(Fault::LineCut);
            return vec![];
        }
        let Some(frame) = self.rewrite(frame) else {
            return vec![];
        };
        match self.write_faults.remove(&index) {
            Some(fault) => {
                self.injected.push(fault);
                self.damage(&frame, fault)
            }
            None => vec![frame],
        }
    }
}

impl<T: Transport> Read for FaultyTransport<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        lock(&self.plan).damage_read(buf, n)
    }
}

impl<T: Transport> Write for FaultyTransport<T> {
    fn write(&mut self, frame: &[u8]) -> io::Result<usize> {
        let pieces = lock(&self.plan).pieces(frame);
        for piece in pieces {
            self.inner.write_all(&piece)?;
        }
        Ok(frame.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.set_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_protocol::{decode_request, RequestBody};

    /// Records what reaches the "device".
    #[derive(Debug, Default)]
    struct Recorder {
        written: Vec<Vec<u8>>,
        to_read: Vec<u8>,
    }

    impl Read for Recorder {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.to_read.len());
            buf[..n].copy_from_slice(&self.to_read[..n]);
            self.to_read.drain(..n);
            Ok(n)
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Recorder {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(body: RequestBody<'_>) -> Vec<u8> {
        let mut out = vec![0u8; MAX_FRAME + 1];
        let len = encode_request(&Request { id: 9, body }, &mut out[1..]).unwrap();
        out.truncate(len + 1);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
        let mut decoder = FrameDecoder::<MAX_FRAME>::new();
        let mut out = None;
        for &b in bytes {
            if let Some(Ok(p)) = decoder.push(b) {
                out = Some(p.to_vec());
            }
        }
        out
    }

    #[test]
    fn each_frame_fault_changes_what_reaches_the_device() {
        let info = frame(RequestBody::Info);
        for fault in Fault::FRAME_FAULTS {
            for seed in 1..20 {
                let (mut t, control) = FaultyTransport::new(Recorder::default(), seed);
                control.arm_write(1, fault);
                t.write_all(&info).unwrap();
                t.write_all(&info).unwrap();
                assert_eq!(control.take_injected(), vec![fault]);
                let first = &t.inner.written[0];
                assert_eq!(first, &info, "only the armed write is damaged");
                let rest: Vec<u8> = t.inner.written[1..].concat();
                match fault {
                    Fault::DropFrame => assert!(rest.is_empty()),
                    Fault::DuplicateFrame => {
                        assert_eq!(rest, [info.clone(), info.clone()].concat())
                    }
                    Fault::Garbage => assert!(rest.len() > info.len() && rest.ends_with(&info)),
                    Fault::TruncateFrame => {
                        assert!(rest.len() < info.len() && decode(&rest).is_none())
                    }
                    _ => assert!(rest != info && decode(&rest).is_none(), "{rest:?}"),
                }
            }
        }
    }

    #[test]
    fn reply_faults_damage_the_read_side() {
        for fault in Fault::REPLY_FAULTS {
            let (mut t, control) = FaultyTransport::new(Recorder::default(), 3);
            let reply = frame(RequestBody::Info);
            t.inner.to_read = reply.clone();
            control.arm_read(0, fault);
            let mut buf = vec![0u8; 256];
            let n = t.read(&mut buf).unwrap();
            assert_ne!(&buf[..n], &reply[..]);
            assert_eq!(control.take_injected(), vec![fault]);
        }
    }

    #[test]
    fn truncated_upload_and_stopped_chunks_rewrite_requests() {
        let (mut t, control) = FaultyTransport::new(Recorder::default(), 5);
        control.announce_upload(4096, 0xdead_beef);
        control.stop_chunks_at(512);
        t.write_all(&frame(RequestBody::UploadBegin {
            size: 1024,
            hash: 1,
        }))
        .unwrap();
        let data = [1u8; 512];
        for offset in [0, 512] {
            t.write_all(&frame(RequestBody::UploadChunk {
                offset,
                data: &data,
            }))
            .unwrap();
        }
        t.write_all(&frame(RequestBody::UploadCommit)).unwrap();
        assert_eq!(t.inner.written.len(), 3, "the chunk at 512 is swallowed");
        let begin = decode(&t.inner.written[0]).unwrap();
        assert_eq!(
            decode_request(&begin).unwrap().body,
            RequestBody::UploadBegin {
                size: 4096,
                hash: 0xdead_beef
            }
        );
        assert_eq!(
            control.take_injected(),
            vec![Fault::UploadTruncated, Fault::ChunksStopped]
        );
    }

    #[test]
    fn a_cut_line_swallows_everything_until_disarmed() {
        let (mut t, control) = FaultyTransport::new(Recorder::default(), 5);
        let info = frame(RequestBody::Info);
        control.cut_line_after(1);
        for _ in 0..3 {
            t.write_all(&info).unwrap();
        }
        control.disarm();
        t.write_all(&info).unwrap();
        assert_eq!(t.inner.written.len(), 2);
        assert_eq!(
            control.take_injected(),
            vec![Fault::LineCut, Fault::LineCut]
        );
    }
}

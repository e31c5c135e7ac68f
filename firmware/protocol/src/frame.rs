//! Framing: `COBS(payload ++ crc32_le(payload)) ++ 0x00`.
//!
//! The decoder never panics and never gives up: garbage, truncated or over-long frames produce
//! one [`FrameError`] each and the decoder resynchronizes on the next 0x00.

use ember_runtime::crc32::crc32;

use crate::cobs;
use crate::{CRC_LEN, MAX_FRAME, MAX_PAYLOAD};

/// Why a received frame was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes between two delimiters are not valid COBS.
    BadCobs,
    /// Fewer bytes than a one-byte payload plus its CRC.
    TooShort,
    /// More bytes than [`MAX_FRAME`] before a delimiter; the rest of the frame was skipped.
    TooLong,
    /// The CRC-32 does not match the payload: bytes were corrupted on the line.
    BadCrc { expected: u32, actual: u32 },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::BadCobs => f.write_str("frame is not valid COBS"),
            FrameError::TooShort => f.write_str("frame too short to hold a payload and CRC"),
            FrameError::TooLong => write!(f, "frame longer than {MAX_FRAME} bytes"),
            FrameError::BadCrc { expected, actual } => write!(
                f,
                "frame CRC mismatch (frame says {expected:#010x}, payload has {actual:#010x})"
            ),
        }
    }
}

/// Encodes one frame (payload, CRC, COBS, trailing 0x00) into `out`; returns its length.
/// `None` when the payload exceeds [`MAX_PAYLOAD`] or `out` is too small.
pub fn encode_frame(payload: &[u8], out: &mut [u8]) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let crc = crc32(payload).to_le_bytes();
    let n = cobs::encode_parts(&[payload, &crc], out)?;
    *out.get_mut(n)? = 0;
    Some(n + 1)
}

/// Byte-at-a-time frame decoder with a fixed buffer of `N` bytes (use [`MAX_FRAME`]).
#[derive(Debug)]
pub struct FrameDecoder<const N: usize = MAX_FRAME> {
    buf: [u8; N],
    len: usize,
    /// Set when the current frame overflowed; bytes are dropped until the next delimiter.
    overflowed: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    pub const fn new() -> Self {
        FrameDecoder {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Forgets any partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Feeds one byte. Returns `Some` when the byte ends a frame: the checked payload, or why
    /// the frame was dropped. Empty frames (0x00 0x00) are silently skipped, so a sender may
    /// put a 0x00 before each frame to flush line noise.
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], FrameError>> {
        if byte != 0 {
            if self.len < N {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
            }
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        if core::mem::replace(&mut self.overflowed, false) {
            return Some(Err(FrameError::TooLong));
        }
        if len == 0 {
            return None;
        }
        Some(check_frame(&mut self.buf[..len]))
    }
}

/// Decodes a COBS frame body (delimiter removed) in place and checks its CRC.
pub fn check_frame(body: &mut [u8]) -> Result<&[u8], FrameError> {
    let decoded = cobs::decode_in_place(body).ok_or(FrameError::BadCobs)?;
    if decoded <= CRC_LEN {
        return Err(FrameError::TooShort);
    }
    let (payload, crc) = body[..decoded].split_at(decoded - CRC_LEN);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32(payload);
    if expected != actual {
        return Err(FrameError::BadCrc { expected, actual });
    }
    Ok(payload)
}

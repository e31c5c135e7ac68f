//! ember's host<->device wire protocol, shared by the firmware and the host tools so the two
//! sides cannot drift.
//!
//! A frame is `COBS(postcard(message) ++ crc32_le) ++ 0x00`. Requests carry an id that the
//! response echoes. Every buffer is fixed-size: a message is at most [`MAX_PAYLOAD`] bytes and
//! an encoded frame at most [`MAX_FRAME`]. The byte-level specification, with its stability
//! rules, is `docs/PROTOCOL.md`.
#![cfg_attr(not(test), no_std)]

pub mod cobs;
pub mod frame;
pub mod message;

pub use frame::{check_frame, encode_frame, FrameDecoder, FrameError};
pub use message::*;

/// Version of this protocol; the first field of every `Info` reply.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest postcard-encoded message, in bytes.
pub const MAX_PAYLOAD: usize = 1024;
/// Bytes of CRC-32 after the payload.
pub const CRC_LEN: usize = 4;
/// Largest encoded frame, trailing 0x00 included.
pub const MAX_FRAME: usize = cobs::max_encoded_len(MAX_PAYLOAD + CRC_LEN) + 1;
/// Largest `data` in `UploadChunk`, `Infer` and `OutputChunk` (leaves room for the envelope).
pub const MAX_CHUNK: usize = 512;

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CodecError {
    /// The message needs more than [`MAX_PAYLOAD`] bytes.
    TooLarge,
    /// The payload is not a valid message of this protocol version.
    Malformed,
}

impl core::fmt::Display for CodecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CodecError::TooLarge => write!(f, "message larger than {MAX_PAYLOAD} bytes"),
            CodecError::Malformed => f.write_str("payload is not a valid message"),
        }
    }
}

fn encode_message<T: serde::Serialize>(message: &T, out: &mut [u8]) -> Result<usize, CodecError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    let used = postcard::to_slice(message, &mut payload)
        .map_err(|_| CodecError::TooLarge)?
        .len();
    encode_frame(&payload[..used], out).ok_or(CodecError::TooLarge)
}

/// Encodes a request as a complete frame into `out` (at least [`MAX_FRAME`] bytes).
pub fn encode_request(request: &Request<'_>, out: &mut [u8]) -> Result<usize, CodecError> {
    encode_message(request, out)
}

/// Encodes a response as a complete frame into `out` (at least [`MAX_FRAME`] bytes).
pub fn encode_response(response: &Response<'_>, out: &mut [u8]) -> Result<usize, CodecError> {
    encode_message(response, out)
}

/// Decodes a checked frame payload (from [`FrameDecoder`]) as a request.
pub fn decode_request(payload: &[u8]) -> Result<Request<'_>, CodecError> {
    postcard::from_bytes(payload).map_err(|_| CodecError::Malformed)
}

/// Decodes a checked frame payload as a response.
pub fn decode_response(payload: &[u8]) -> Result<Response<'_>, CodecError> {
    postcard::from_bytes(payload).map_err(|_| CodecError::Malformed)
}

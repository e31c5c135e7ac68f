//! A `no_std` reader for 16-bit PCM mono WAV files, over a byte slice.
//!
//! Accepts `WAVE_FORMAT_PCM` (1) and `WAVE_FORMAT_EXTENSIBLE` (0xFFFE) with a PCM sub-format;
//! skips unknown chunks (LIST, fact, ...). Everything else is refused with an error that names
//! what was found and how to convert it.

use core::fmt;

/// Why a byte slice is not a WAV file this reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WavError {
    /// The file does not start with `RIFF....WAVE`.
    NotRiffWave,
    /// A chunk header or body runs past the end of the file.
    Truncated,
    /// No `fmt ` chunk before the `data` chunk.
    MissingFormat,
    /// No `data` chunk.
    MissingData,
    /// The sample encoding is not integer PCM (e.g. 3 = IEEE float, 6/7 = A-law/mu-law).
    UnsupportedEncoding { format_tag: u16 },
    /// Only 16-bit samples are supported.
    UnsupportedBitsPerSample { bits: u16 },
    /// Only mono is supported.
    UnsupportedChannels { channels: u16 },
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "convert with `sox in.wav -b 16 -c 1 -e signed-integer out.wav`";
        match *self {
            WavError::NotRiffWave => f.write_str("not a WAV file (no RIFF/WAVE header)"),
            WavError::Truncated => f.write_str("WAV file truncated: a chunk runs past the end"),
            WavError::MissingFormat => f.write_str("WAV file has no `fmt ` chunk before its data"),
            WavError::MissingData => f.write_str("WAV file has no `data` chunk"),
            WavError::UnsupportedEncoding { format_tag } => write!(
                f,
                "WAV encoding {format_tag} is not integer PCM; only 16-bit PCM mono is supported ({HINT})"
            ),
            WavError::UnsupportedBitsPerSample { bits } => write!(
                f,
                "WAV has {bits}-bit samples; only 16-bit PCM mono is supported ({HINT})"
            ),
            WavError::UnsupportedChannels { channels } => write!(
                f,
                "WAV has {channels} channels; only mono is supported ({HINT})"
            ),
        }
    }
}

impl core::error::Error for WavError {}

/// A parsed 16-bit PCM mono WAV: the sample rate and the raw little-endian sample bytes,
/// borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wav<'a> {
    pub sample_rate: u32,
    data: &'a [u8],
}

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(o)?,
        *b.get(o + 1)?,
        *b.get(o + 2)?,
        *b.get(o + 3)?,
    ]))
}

impl<'a> Wav<'a> {
    /// Parses `bytes` (a whole `.wav` file).
    pub fn parse(bytes: &'a [u8]) -> Result<Wav<'a>, WavError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(WavError::NotRiffWave);
        }
        let mut pos = 12;
        let mut sample_rate = None;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let len = u32_at(bytes, pos + 4).ok_or(WavError::Truncated)? as usize;
            let body_start = pos + 8;
            let body_end = body_start.checked_add(len).ok_or(WavError::Truncated)?;
            if id == b"data" {
                let rate = sample_rate.ok_or(WavError::MissingFormat)?;
                // Some writers leave the data length at 0 or too large when streaming: take
                // what is there, whole samples only.
                let end = body_end.min(bytes.len());
                let data = &bytes[body_start..end];
                let data = &data[..data.len() / 2 * 2];
                return Ok(Wav {
                    sample_rate: rate,
                    data,
                });
            }
            let body = bytes.get(body_start..body_end).ok_or(WavError::Truncated)?;
            if id == b"fmt " {
                sample_rate = Some(Self::check_format(body)?);
            }
            // Chunks are padded to an even length.
            pos = body_end + (len & 1);
        }
        Err(if sample_rate.is_some() {
            WavError::MissingData
        } else {
            WavError::MissingFormat
        })
    }

    /// Checks a `fmt ` chunk body; returns the sample rate.
    fn check_format(body: &[u8]) -> Result<u32, WavError> {
        let tag = u16_at(body, 0).ok_or(WavError::Truncated)?;
        let channels = u16_at(body, 2).ok_or(WavError::Truncated)?;
        let rate = u32_at(body, 4).ok_or(WavError::Truncated)?;
        let bits = u16_at(body, 14).ok_or(WavError::Truncated)?;
        let encoding = if tag == FORMAT_EXTENSIBLE {
            // The sub-format GUID starts at byte 24; its first two bytes are the real tag.
            u16_at(body, 24).ok_or(WavError::Truncated)?
        } else {
            tag
        };
        if encoding != FORMAT_PCM {
            return Err(WavError::UnsupportedEncoding {
                format_tag: encoding,
            });
        }
        if bits != 16 {
            return Err(WavError::UnsupportedBitsPerSample { bits });
        }
        if channels != 1 {
            return Err(WavError::UnsupportedChannels { channels });
        }
        Ok(rate)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The samples, decoded on the fly (no copy of the file).
    pub fn samples(&self) -> impl Iterator<Item = i16> + 'a {
        self.data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
    }

    /// Copies up to `out.len()` samples into `out`; returns how many were written.
    pub fn read_into(&self, out: &mut [i16]) -> usize {
        let mut n = 0;
        for (dst, s) in out.iter_mut().zip(self.samples()) {
            *dst = s;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(
        tag: u16,
        channels: u16,
        bits: u16,
        samples: &[i16],
        extra_chunk: bool,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        for s in samples {
            data.extend_from_slice(&s.to_le_bytes());
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&16000u32.to_le_bytes());
        out.extend_from_slice(&(16000u32 * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        if extra_chunk {
            out.extend_from_slice(b"LIST");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(b"abc\0"); // odd length + pad byte
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    use std::vec::Vec;

    #[test]
    fn reads_pcm16_mono_and_skips_unknown_chunks() {
        let samples = [0i16, 1, -1, i16::MAX, i16::MIN, 1234];
        for extra in [false, true] {
            let bytes = wav_bytes(1, 1, 16, &samples, extra);
            let wav = Wav::parse(&bytes).unwrap();
            assert_eq!(wav.sample_rate, 16000);
            assert_eq!(wav.samples().collect::<Vec<_>>(), samples);
        }
    }

    #[test]
    fn refuses_other_formats_with_a_reason() {
        let s = [0i16; 4];
        assert_eq!(
            Wav::parse(&wav_bytes(3, 1, 16, &s, false)),
            Err(WavError::UnsupportedEncoding { format_tag: 3 })
        );
        assert_eq!(
            Wav::parse(&wav_bytes(1, 2, 16, &s, false)),
            Err(WavError::UnsupportedChannels { channels: 2 })
        );
        assert_eq!(
            Wav::parse(&wav_bytes(1, 1, 8, &s, false)),
            Err(WavError::UnsupportedBitsPerSample { bits: 8 })
        );
        assert_eq!(Wav::parse(b"RIFX0000WAVE"), Err(WavError::NotRiffWave));
        let good = wav_bytes(1, 1, 16, &s, true);
        // Cut inside the LIST chunk.
        assert_eq!(Wav::parse(&good[..46]), Err(WavError::Truncated));
        // No data chunk at all.
        assert_eq!(Wav::parse(&good[..36]), Err(WavError::MissingData));
        let msg = std::format!("{}", WavError::UnsupportedChannels { channels: 2 });
        assert!(msg.contains("mono") && msg.contains("sox"));
    }

    #[test]
    fn reads_the_shared_recordings() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/audio/yes_1000ms.wav"
        );
        let bytes = std::fs::read(path).expect("shared/audio must be present next to the repo");
        let wav = Wav::parse(&bytes).unwrap();
        assert_eq!((wav.sample_rate, wav.len()), (16000, 16000));
    }
}

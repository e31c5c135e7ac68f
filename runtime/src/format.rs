//! The `.emb` container: a fixed header, a postcard-encoded graph and an aligned constant section.
//!
//! See `docs/FORMAT.md` for the byte-level specification and the stability rule.

use serde::{Deserialize, Serialize};

use crate::crc32::crc32;
use crate::error::{Error, Result};
use crate::tensor::TensorDef;

/// First four bytes of every model.
pub const MAGIC: [u8; 4] = *b"EMBR";
/// The format version this runtime reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Alignment of the constant section and of every constant in it.
pub const CONST_ALIGN: usize = 16;
/// Most graph inputs or outputs a model may have.
pub const MAX_IO: usize = 4;

/// The fixed 32-byte header, all fields little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    /// Length of the postcard graph section, which starts right after the header.
    pub graph_len: u32,
    /// Offset of the constant section from the start of the file (a multiple of 16).
    pub const_offset: u32,
    pub const_len: u32,
    /// Length of the whole file, header included.
    pub total_len: u32,
    /// CRC-32 of every byte after the header.
    pub crc32: u32,
}

impl Header {
    /// Parses and checks the header against `bytes` (the whole model), CRC included.
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        if bytes[0..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u16_at(4);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u32_at(28) != 0 {
            return Err(Error::Malformed {
                what: "header (reserved bytes must be zero)",
            });
        }
        if u16_at(6) as usize != HEADER_LEN {
            return Err(Error::Malformed {
                what: "header length",
            });
        }
        let header = Header {
            version,
            graph_len: u32_at(8),
            const_offset: u32_at(12),
            const_len: u32_at(16),
            total_len: u32_at(20),
            crc32: u32_at(24),
        };
        let total = header.total_len as usize;
        if bytes.len() < total {
            return Err(Error::Truncated {
                needed: total,
                available: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(Error::LengthMismatch {
                header: total,
                actual: bytes.len(),
            });
        }
        let graph_end = HEADER_LEN.checked_add(header.graph_len as usize);
        let const_start = header.const_offset as usize;
        let const_end = const_start.checked_add(header.const_len as usize);
        match (graph_end, const_end) {
            (Some(g), Some(c))
                if g <= const_start && c <= total && const_start.is_multiple_of(CONST_ALIGN) => {}
            _ => {
                return Err(Error::Malformed {
                    what: "section lengths",
                })
            }
        }
        let actual = crc32(&bytes[HEADER_LEN..]);
        if actual != header.crc32 {
            return Err(Error::ChecksumMismatch {
                expected: header.crc32,
                actual,
            });
        }
        Ok(header)
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out[8..12].copy_from_slice(&self.graph_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.const_offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.const_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.total_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc32.to_le_bytes());
        out
    }
}

/// The graph section. Operators and metadata stay encoded and are decoded one record at a
/// time, so neither loading nor running a model needs a heap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph<'a> {
    /// Bytes of activation memory the planner assigned; every `Location::Arena` lies inside it.
    pub arena_size: u32,
    pub inputs: heapless::Vec<TensorDef, MAX_IO>,
    pub outputs: heapless::Vec<TensorDef, MAX_IO>,
    pub op_count: u32,
    /// `op_count` postcard-encoded [`crate::ops::Op`] records, back to back, in execution order.
    #[serde(borrow)]
    pub ops: &'a [u8],
    /// Postcard-encoded [`MetaEntry`] records, back to back.
    #[serde(borrow)]
    pub metadata: &'a [u8],
}

/// A metadata record: labels, front-end configuration, provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaEntry<'a> {
    pub key: &'a str,
    #[serde(borrow)]
    pub value: &'a [u8],
}

/// Well-known metadata keys.
pub mod meta_keys {
    /// Class labels, UTF-8, one per line, in output order.
    pub const LABELS: &str = "labels";
    /// Audio/sensor front-end configuration (postcard, see `crate::frontend`).
    pub const FRONTEND: &str = "frontend";
    /// Free text: where the model came from (converter version, source file).
    pub const SOURCE: &str = "source";
}

#[cfg(feature = "alloc")]
pub use writer::ModelWriter;

#[cfg(feature = "alloc")]
mod writer {
    extern crate alloc;
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;
    use crate::ops::Op;

    /// Assembles a `.emb` file. Used by the converter; the device only reads.
    #[derive(Debug, Default)]
    pub struct ModelWriter {
        pub arena_size: u32,
        pub inputs: Vec<TensorDef>,
        pub outputs: Vec<TensorDef>,
        pub ops: Vec<Op>,
        pub metadata: Vec<(String, Vec<u8>)>,
        consts: Vec<u8>,
    }

    impl ModelWriter {
        pub fn new() -> Self {
            Self::default()
        }

        /// Appends constant bytes, 16-byte aligned, and returns their offset for `Location::Const`.
        pub fn add_const(&mut self, bytes: &[u8]) -> u32 {
            while !self.consts.len().is_multiple_of(CONST_ALIGN) {
                self.consts.push(0);
            }
            let offset = self.consts.len() as u32;
            self.consts.extend_from_slice(bytes);
            offset
        }

        pub fn const_len(&self) -> usize {
            self.consts.len()
        }

        /// Serializes the model. Fails only if a count exceeds the format's limits.
        pub fn finish(&self) -> Result<Vec<u8>> {
            let mut ops = Vec::new();
            for op in &self.ops {
                let encoded =
                    postcard::to_allocvec(op).map_err(|_| Error::Malformed { what: "operator" })?;
                ops.extend_from_slice(&encoded);
            }
            let mut metadata = Vec::new();
            for (key, value) in &self.metadata {
                let entry = MetaEntry { key, value };
                let encoded = postcard::to_allocvec(&entry)
                    .map_err(|_| Error::Malformed { what: "metadata" })?;
                metadata.extend_from_slice(&encoded);
            }
            let too_many = |_| Error::LimitExceeded {
                what: "graph inputs or outputs",
                limit: MAX_IO,
            };
            let graph = Graph {
                arena_size: self.arena_size,
                inputs: heapless::Vec::from_slice(&self.inputs).map_err(too_many)?,
                outputs: heapless::Vec::from_slice(&self.outputs).map_err(too_many)?,
                op_count: self.ops.len() as u32,
                ops: &ops,
                metadata: &metadata,
            };
            let graph_bytes =
                postcard::to_allocvec(&graph).map_err(|_| Error::Malformed { what: "graph" })?;
            let const_offset = (HEADER_LEN + graph_bytes.len()).next_multiple_of(CONST_ALIGN);
            let total_len = const_offset + self.consts.len();
            let mut out = Vec::with_capacity(total_len);
            out.extend_from_slice(&[0u8; HEADER_LEN]);
            out.extend_from_slice(&graph_bytes);
            out.resize(const_offset, 0);
            out.extend_from_slice(&self.consts);
            let header = Header {
                version: FORMAT_VERSION,
                graph_len: graph_bytes.len() as u32,
                const_offset: const_offset as u32,
                const_len: self.consts.len() as u32,
                total_len: total_len as u32,
                crc32: crc32(&out[HEADER_LEN..]),
            };
            out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
            Ok(out)
        }
    }
}

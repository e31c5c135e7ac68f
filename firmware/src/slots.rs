//! Flash layout (two boot-record sectors, two model slots) and the boot-record journal.
//!
//! A boot record says which slot runs and what each slot holds. Records are appended to one
//! of two record sectors; when a sector is full the other is erased and written. A record is
//! valid only if its magic and CRC check, and the valid record with the highest sequence number
//! wins, so power lost during any erase or write leaves the previous record in charge.

use embedded_storage::nor_flash::NorFlash;
use ember_protocol::SlotContents;
use ember_runtime::crc32::crc32;

use crate::flash::ModelFlash;

/// Bytes of a record before padding to the flash write size.
pub const RECORD_LEN: usize = 32;
/// Largest flash write size supported (records are padded to it).
pub const MAX_WRITE_SIZE: usize = 256;
const RECORD_MAGIC: [u8; 4] = *b"EMBT";

/// A byte range of the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    pub start: u32,
    pub len: u32,
}

impl Region {
    pub const fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// Where the boot records and the two model slots live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FlashLayout {
    pub records: [Region; 2],
    pub slots: [Region; 2],
}

/// Why a [`FlashLayout`] cannot be used with a flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LayoutError {
    /// A region does not start and end on an erase-sector boundary.
    NotSectorAligned,
    /// A region lies (partly) outside the flash.
    OutOfBounds,
    /// Two regions overlap.
    Overlap,
    /// A region is empty, or a record sector cannot hold a record.
    TooSmall,
    /// The flash writes in units larger than [`MAX_WRITE_SIZE`].
    WriteSizeTooLarge,
    /// The memory-mapped view is not 4-byte aligned or shorter than the flash.
    BadMapping,
}

impl FlashLayout {
    /// Two record sectors at the start, the rest split into two equal slots.
    pub fn split(capacity: u32, erase_size: u32) -> Result<FlashLayout, LayoutError> {
        if erase_size == 0 {
            return Err(LayoutError::TooSmall);
        }
        let sectors = capacity / erase_size;
        if sectors < 4 {
            return Err(LayoutError::TooSmall);
        }
        let slot_sectors = (sectors - 2) / 2;
        let slot_len = slot_sectors * erase_size;
        Ok(FlashLayout {
            records: [
                Region {
                    start: 0,
                    len: erase_size,
                },
                Region {
                    start: erase_size,
                    len: erase_size,
                },
            ],
            slots: [
                Region {
                    start: 2 * erase_size,
                    len: slot_len,
                },
                Region {
                    start: 2 * erase_size + slot_len,
                    len: slot_len,
                },
            ],
        })
    }

    /// Checks the layout against the flash geometry.
    pub fn check<F: ModelFlash>(&self, flash: &F) -> Result<(), LayoutError> {
        let erase = F::ERASE_SIZE as u32;
        if F::WRITE_SIZE > MAX_WRITE_SIZE {
            return Err(LayoutError::WriteSizeTooLarge);
        }
        let mapped = flash.mapped();
        if !(mapped.as_ptr() as usize).is_multiple_of(4) || mapped.len() < flash.capacity() {
            return Err(LayoutError::BadMapping);
        }
        let regions = [
            self.records[0],
            self.records[1],
            self.slots[0],
            self.slots[1],
        ];
        for (i, r) in regions.iter().enumerate() {
            if r.len == 0 || (i < 2 && (r.len as usize) < record_stride::<F>()) {
                return Err(LayoutError::TooSmall);
            }
            if r.start % erase != 0 || r.len % erase != 0 {
                return Err(LayoutError::NotSectorAligned);
            }
            let end = r.start.checked_add(r.len).ok_or(LayoutError::OutOfBounds)?;
            if end as usize > flash.capacity() {
                return Err(LayoutError::OutOfBounds);
            }
            for other in &regions[..i] {
                if r.start < other.end() && other.start < end {
                    return Err(LayoutError::Overlap);
                }
            }
        }
        Ok(())
    }
}

/// Bytes each record occupies: [`RECORD_LEN`] rounded up to the write size.
pub(crate) fn record_stride<F: NorFlash>() -> usize {
    RECORD_LEN.next_multiple_of(F::WRITE_SIZE.max(1))
}

/// Which slot runs and what each slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootRecord {
    pub seq: u32,
    pub active: u8,
    pub slots: [Option<SlotContents>; 2],
}

impl BootRecord {
    /// Layout: magic, seq (LE), active slot, presence bits, 2 zero bytes, then size and hash of
    /// slot 0 and slot 1 (LE), then the CRC-32 of the first 28 bytes.
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&RECORD_MAGIC);
        out[4..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8] = self.active;
        let mut present = 0u8;
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(c) = slot {
                present |= 1 << i;
                let at = 12 + 8 * i;
                out[at..at + 4].copy_from_slice(&c.size.to_le_bytes());
                out[at + 4..at + 8].copy_from_slice(&c.hash.to_le_bytes());
            }
        }
        out[9] = present;
        let crc = crc32(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<BootRecord> {
        let bytes: &[u8; RECORD_LEN] = bytes.get(..RECORD_LEN)?.try_into().ok()?;
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        if bytes[0..4] != RECORD_MAGIC || u32_at(28) != crc32(&bytes[..28]) || bytes[8] > 1 {
            return None;
        }
        let present = bytes[9];
        let slot = |i: usize| {
            (present & (1 << i) != 0).then(|| SlotContents {
                size: u32_at(12 + 8 * i),
                hash: u32_at(16 + 8 * i),
            })
        };
        Some(BootRecord {
            seq: u32_at(4),
            active: bytes[8],
            slots: [slot(0), slot(1)],
        })
    }
}

/// What a scan of the record sectors found: the newest record and where to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journal {
    pub newest: Option<BootRecord>,
    /// The sector holding `newest` (0 when there is none).
    sector: usize,
    /// Per sector: the first record position after the last non-erased one.
    append_at: [usize; 2],
}

impl Journal {
    /// Reads both record sectors.
    pub fn scan<F: ModelFlash>(flash: &F, layout: &FlashLayout) -> Journal {
        let stride = record_stride::<F>();
        let mapped = flash.mapped();
        let mut journal = Journal {
            newest: None,
            sector: 0,
            append_at: [0; 2],
        };
        for (sector, region) in layout.records.iter().enumerate() {
            let Some(bytes) = mapped.get(region.start as usize..region.end() as usize) else {
                continue;
            };
            for (index, record) in bytes.chunks_exact(stride).enumerate() {
                if record.iter().any(|&b| b != 0xFF) {
                    journal.append_at[sector] = index + 1;
                }
                if let Some(r) = BootRecord::from_bytes(record) {
                    if journal.newest.is_none_or(|n| r.seq > n.seq) {
                        journal.newest = Some(r);
                        journal.sector = sector;
                    }
                }
            }
        }
        journal
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u32 {
        self.newest.map_or(1, |r| r.seq.wrapping_add(1))
    }

    /// Appends `record`; on success it is the newest. On error (power loss, flash failure) the
    /// previous newest record is still the one a scan finds.
    pub fn append<F: ModelFlash>(
        &mut self,
        flash: &mut F,
        layout: &FlashLayout,
        record: BootRecord,
    ) -> Result<(), F::Error> {
        let stride = record_stride::<F>();
        let mut sector = self.sector;
        let capacity = layout.records[sector].len as usize / stride;
        if self.append_at[sector] >= capacity {
            // The current sector is full: start over in the other one. Until the new record is
            // written, the newest record stays in the sector we are not touching.
            sector = 1 - sector;
            let region = layout.records[sector];
            flash.erase(region.start, region.end())?;
            self.append_at[sector] = 0;
        }
        let mut buffer = [0xFFu8; MAX_WRITE_SIZE.next_multiple_of(RECORD_LEN)];
        buffer[..RECORD_LEN].copy_from_slice(&record.to_bytes());
        let offset = layout.records[sector].start as usize + self.append_at[sector] * stride;
        // Whatever happens next, this position is no longer erased.
        self.append_at[sector] += 1;
        flash.write(offset as u32, &buffer[..stride])?;
        self.newest = Some(record);
        self.sector = sector;
        Ok(())
    }
}

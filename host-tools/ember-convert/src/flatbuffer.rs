//! A minimal, bounds-checked FlatBuffers reader for untrusted input.
//!
//! Only what the TFLite schema needs: tables with vtables, scalars, offsets to tables,
//! vectors of scalars and tables, and strings. Every offset is checked against the buffer
//! before it is followed, so a truncated or hostile file yields [`FbError`], never a panic.
//! Nothing here allocates in proportion to a length read from the file.

use thiserror::Error;

/// Why a FlatBuffer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FbError {
    #[error("offset {offset} (+{len} bytes) lies outside the {size}-byte buffer")]
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("malformed vtable at offset {offset}")]
    BadVtable { offset: usize },
    #[error("string at offset {offset} is not valid UTF-8")]
    BadUtf8 { offset: usize },
}

type Result<T> = core::result::Result<T, FbError>;

fn slice(buf: &[u8], offset: usize, len: usize) -> Result<&[u8]> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or(FbError::OutOfBounds {
            offset,
            len,
            size: buf.len(),
        })
}

fn read<const N: usize>(buf: &[u8], offset: usize) -> Result<[u8; N]> {
    let bytes = slice(buf, offset, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn u16_at(buf: &[u8], offset: usize) -> Result<u16> {
    read::<2>(buf, offset).map(u16::from_le_bytes)
}

fn u32_at(buf: &[u8], offset: usize) -> Result<u32> {
    read::<4>(buf, offset).map(u32::from_le_bytes)
}

/// Follows the unsigned 32-bit offset stored at `offset` (relative to itself).
fn follow(buf: &[u8], offset: usize) -> Result<usize> {
    let rel = u32_at(buf, offset)? as usize;
    let target = offset.checked_add(rel).ok_or(FbError::OutOfBounds {
        offset,
        len: rel,
        size: buf.len(),
    })?;
    // The target must at least hold a 4-byte word (table soffset or vector/string length).
    slice(buf, target, 4)?;
    Ok(target)
}

/// A table: its position and its vtable, both checked.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    table_len: usize,
}

impl<'a> Table<'a> {
    /// The root table of a buffer.
    pub fn root(buf: &'a [u8]) -> Result<Table<'a>> {
        let pos = follow(buf, 0)?;
        Table::at(buf, pos)
    }

    fn at(buf: &'a [u8], pos: usize) -> Result<Table<'a>> {
        let soffset = i32::from_le_bytes(read::<4>(buf, pos)?) as i64;
        let vtable = pos as i64 - soffset;
        if vtable < 0 || vtable as u64 > buf.len() as u64 {
            return Err(FbError::BadVtable { offset: pos });
        }
        let vtable = vtable as usize;
        let vtable_len = u16_at(buf, vtable)? as usize;
        let table_len = u16_at(buf, vtable + 2)? as usize;
        if vtable_len < 4 || !vtable_len.is_multiple_of(2) || table_len < 4 {
            return Err(FbError::BadVtable { offset: vtable });
        }
        slice(buf, vtable, vtable_len)?;
        slice(buf, pos, table_len)?;
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
            table_len,
        })
    }

    /// Absolute position of field `id`, or `None` when it is absent (default value).
    fn field(&self, id: usize, size: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let rel = u16_at(self.buf, self.vtable + slot)? as usize;
        if rel == 0 {
            return Ok(None);
        }
        if rel + size > self.table_len {
            return Err(FbError::BadVtable {
                offset: self.vtable,
            });
        }
        Ok(Some(self.pos + rel))
    }

    fn scalar<const N: usize>(&self, id: usize) -> Result<Option<[u8; N]>> {
        match self.field(id, N)? {
            Some(at) => read::<N>(self.buf, at).map(Some),
            None => Ok(None),
        }
    }

    pub fn u8(&self, id: usize, default: u8) -> Result<u8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }

    pub fn i8(&self, id: usize, default: i8) -> Result<i8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] as i8))
    }

    pub fn bool(&self, id: usize, default: bool) -> Result<bool> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] != 0))
    }

    pub fn i32(&self, id: usize, default: i32) -> Result<i32> {
        Ok(self.scalar::<4>(id)?.map_or(default, i32::from_le_bytes))
    }

    pub fn u32(&self, id: usize, default: u32) -> Result<u32> {
        Ok(self.scalar::<4>(id)?.map_or(default, u32::from_le_bytes))
    }

    pub fn f32(&self, id: usize, default: f32) -> Result<f32> {
        Ok(self.scalar::<4>(id)?.map_or(default, f32::from_le_bytes))
    }

    pub fn u64(&self, id: usize, default: u64) -> Result<u64> {
        Ok(self.scalar::<8>(id)?.map_or(default, u64::from_le_bytes))
    }

    fn offset_field(&self, id: usize) -> Result<Option<usize>> {
        match self.field(id, 4)? {
            Some(at) => follow(self.buf, at).map(Some),
            None => Ok(None),
        }
    }

    /// A sub-table (or union value) field.
    pub fn table(&self, id: usize) -> Result<Option<Table<'a>>> {
        match self.offset_field(id)? {
            Some(pos) => Table::at(self.buf, pos).map(Some),
            None => Ok(None),
        }
    }

    /// A vector field whose elements are `elem_size` bytes (4 for offsets).
    pub fn vector(&self, id: usize, elem_size: usize) -> Result<Option<Vector<'a>>> {
        let Some(pos) = self.offset_field(id)? else {
            return Ok(None);
        };
        let len = u32_at(self.buf, pos)? as usize;
        let start = pos + 4;
        let bytes = len.checked_mul(elem_size).ok_or(FbError::OutOfBounds {
            offset: start,
            len: usize::MAX,
            size: self.buf.len(),
        })?;
        slice(self.buf, start, bytes)?;
        Ok(Some(Vector {
            buf: self.buf,
            start,
            len,
            elem_size,
        }))
    }

    /// A byte vector field as a slice.
    pub fn bytes(&self, id: usize) -> Result<Option<&'a [u8]>> {
        match self.vector(id, 1)? {
            Some(v) => slice(self.buf, v.start, v.len).map(Some),
            None => Ok(None),
        }
    }

    /// A string field.
    pub fn str(&self, id: usize) -> Result<Option<&'a str>> {
        match self.bytes(id)? {
            Some(b) => core::str::from_utf8(b)
                .map(Some)
                .map_err(|_| FbError::BadUtf8 { offset: self.pos }),
            None => Ok(None),
        }
    }

    /// Vector of `i32`.
    pub fn i32s(&self, id: usize) -> Result<Vec<i32>> {
        self.collect(id, 4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Vector of `f32`.
    pub fn f32s(&self, id: usize) -> Result<Vec<f32>> {
        self.collect(id, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Vector of `i64`.
    pub fn i64s(&self, id: usize) -> Result<Vec<i64>> {
        self.collect(id, 8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        })
    }

    fn collect<T>(&self, id: usize, size: usize, f: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
        match self.vector(id, size)? {
            // The vector's bytes were bounds-checked, so this allocation is at most the file size.
            Some(v) => Ok(slice(self.buf, v.start, v.len * size)?
                .chunks_exact(size)
                .map(f)
                .collect()),
            None => Ok(Vec::new()),
        }
    }
}

/// A bounds-checked vector.
#[derive(Debug, Clone, Copy)]
pub struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
    elem_size: usize,
}

impl<'a> Vector<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i` of a vector of tables.
    pub fn table(&self, i: usize) -> Result<Table<'a>> {
        let at = self.element(i)?;
        let pos = follow(self.buf, at)?;
        Table::at(self.buf, pos)
    }

    fn element(&self, i: usize) -> Result<usize> {
        if i >= self.len {
            return Err(FbError::OutOfBounds {
                offset: self.start,
                len: i.saturating_mul(self.elem_size),
                size: self.buf.len(),
            });
        }
        Ok(self.start + i * self.elem_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `root -> table { field0: u32 = 7, field1: offset -> [1, 2, 3] as i32 }` by hand.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&12u32.to_le_bytes()); // 0: root offset -> table at 12
                                                   // 4: vtable: len 8, table len 12, field0 at +4, field1 at +8
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        // 12: table: soffset = 12 - 4 = 8
        b.extend_from_slice(&8i32.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes()); // 16: field0
        b.extend_from_slice(&4u32.to_le_bytes()); // 20: field1 -> 24
        b.extend_from_slice(&3u32.to_le_bytes()); // 24: vector len
        for v in [1i32, 2, 3] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_hand_built_table() {
        let buf = sample();
        let root = Table::root(&buf).unwrap();
        assert_eq!(root.u32(0, 0).unwrap(), 7);
        assert_eq!(root.i32s(1).unwrap(), vec![1, 2, 3]);
        // Absent fields read as their defaults.
        assert_eq!(root.u32(5, 42).unwrap(), 42);
        assert!(root.table(6).unwrap().is_none());
    }

    #[test]
    fn vector_length_past_end_is_an_error() {
        let mut buf = sample();
        buf[24..28].copy_from_slice(&1_000_000u32.to_le_bytes());
        let root = Table::root(&buf).unwrap();
        assert!(matches!(root.i32s(1), Err(FbError::OutOfBounds { .. })));
    }

    #[test]
    fn bad_root_and_vtable_offsets_are_errors() {
        let mut buf = sample();
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Table::root(&buf).is_err());
        let mut buf = sample();
        buf[12..16].copy_from_slice(&i32::MIN.to_le_bytes());
        assert!(Table::root(&buf).is_err());
        let mut buf = sample();
        buf[6..8].copy_from_slice(&2u16.to_le_bytes()); // table shorter than its fields
        let root = Table::root(&buf);
        assert!(root.is_err() || root.unwrap().u32(0, 0).is_err());
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let buf = sample();
        for len in 0..buf.len() {
            let cut = &buf[..len];
            if let Ok(root) = Table::root(cut) {
                let _ = root.u32(0, 0);
                let _ = root.i32s(1);
            }
        }
        assert!(Table::root(&buf[..4]).is_err());
    }
}

//! NOR flash simulated in SSRAM: mps2 has no writable flash, so a region of SSRAM1 that QEMU
//! loads nothing into (MODEL_FLASH in memory.x) behaves like it: erase sets 4 KiB sectors to
//! 0xFF, programming can only clear bits, and the contents survive a SYSRESETREQ reset.

use core::ptr::{read_volatile, write_volatile};

/// Erase granularity, as on typical serial NOR.
pub const ERASE_SIZE: usize = 4096;
/// Program granularity.
pub const WRITE_SIZE: usize = 4;

/// Errors of the simulated flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlashError {
    /// The range leaves the flash region.
    OutOfBounds,
    /// Offset or length is not a multiple of the erase or program size.
    NotAligned,
}

/// The simulated flash region.
#[derive(Debug)]
pub struct SimFlash {
    base: *mut u8,
    len: usize,
}

extern "C" {
    static _model_flash_start: u8;
    static _model_flash_len: u8;
}

impl SimFlash {
    /// The MODEL_FLASH region from memory.x.
    ///
    /// # Safety
    /// Call once; nothing else may touch MODEL_FLASH.
    pub unsafe fn take() -> Self {
        // Linker symbols: only their addresses mean anything.
        let base = core::ptr::addr_of!(_model_flash_start) as *mut u8;
        let len = core::ptr::addr_of!(_model_flash_len) as usize;
        SimFlash { base, len }
    }

    pub fn capacity(&self) -> usize {
        self.len
    }

    /// The whole region, for executing models in place (XIP) like on real flash.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `take` hands out the region once; it is plain RAM in QEMU.
        unsafe { core::slice::from_raw_parts(self.base, self.len) }
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, FlashError> {
        let offset = offset as usize;
        let end = offset.checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > self.len {
            return Err(FlashError::OutOfBounds);
        }
        if offset % align != 0 || len % align != 0 {
            return Err(FlashError::NotAligned);
        }
        Ok(offset)
    }

    pub fn read(&self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let start = self.check(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.as_slice()[start..start + bytes.len()]);
        Ok(())
    }

    /// Erases `[from, to)`, which must be sector aligned.
    pub fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)? as usize;
        let start = self.check(from, len, ERASE_SIZE)?;
        for i in start..start + len {
            // SAFETY: bounds checked above.
            unsafe { write_volatile(self.base.add(i), 0xff) };
        }
        Ok(())
    }

    /// Programs bytes: like NOR, a write can only clear bits (new = old & data).
    pub fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let start = self.check(offset, bytes.len(), WRITE_SIZE)?;
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: bounds checked above.
            unsafe {
                let p = self.base.add(start + i);
                write_volatile(p, read_volatile(p) & b);
            }
        }
        Ok(())
    }
}

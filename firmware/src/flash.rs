//! Storage: the flash trait the device needs, and a simulated NOR flash for tests.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// NOR flash whose contents can also be read in place (memory-mapped, as internal MCU flash
/// is), so a model runs from flash without being copied to RAM.
///
/// `mapped()` must return the whole device (offset 0 at index 0), and its start must be
/// 4-byte aligned (`ember_runtime::Model::load` reads constants in place).
pub trait ModelFlash: NorFlash {
    fn mapped(&self) -> &[u8];
}

/// Why a simulated flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimFlashError {
    OutOfBounds,
    NotAligned,
    /// Programming a word that was not erased: real NOR (with ECC) forbids it, so it is a bug.
    NotErased,
    /// The simulated power went away during or before this operation.
    PowerLost,
}

impl NorFlashError for SimFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            SimFlashError::NotErased | SimFlashError::PowerLost => NorFlashErrorKind::Other,
        }
    }
}

/// RAM-backed NOR flash with `WRITE`-byte program units and `ERASE`-byte sectors.
///
/// It enforces NOR rules (erase sets a sector to 0xFF; a program unit is written at most once
/// per erase) and can lose power: [`SimFlash::fail_after`] makes the Nth erase or write from now
/// tear (an erase leaves the sector half erased, a write lands only its first half) and every
/// later operation fail, like MCUboot's flash simulator. Reads keep working so the test can
/// "reboot" on the same contents.
#[derive(Debug, Clone)]
pub struct SimFlash<B, const WRITE: usize = 4, const ERASE: usize = 4096> {
    data: B,
    /// Operations left before power is lost; `None`: never.
    ops_left: Option<u32>,
    powered: bool,
    /// Erases and writes performed (successful or torn).
    pub operations: u32,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const WRITE: usize, const ERASE: usize>
    SimFlash<B, WRITE, ERASE>
{
    /// A flash over `data`, which starts erased (all 0xFF).
    pub fn new(mut data: B) -> Self {
        data.as_mut().fill(0xFF);
        Self::with_contents(data)
    }

    /// A flash over existing contents (after a simulated reboot).
    pub fn with_contents(data: B) -> Self {
        SimFlash {
            data,
            ops_left: None,
            powered: true,
            operations: 0,
        }
    }

    /// Loses power during the `n`th erase or write from now (0: the very next one).
    pub fn fail_after(&mut self, n: u32) {
        self.ops_left = Some(n);
    }

    /// Restores power (a reboot) and cancels any pending failure.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.ops_left = None;
    }

    pub fn is_powered(&self) -> bool {
        self.powered
    }

    pub fn into_inner(self) -> B {
        self.data
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, SimFlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(SimFlashError::OutOfBounds)?;
        if end > self.data.as_ref().len() {
            return Err(SimFlashError::OutOfBounds);
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(SimFlashError::NotAligned);
        }
        Ok(start)
    }

    /// Counts an operation; `Ok(true)` when this one is torn by the power loss.
    fn begin_operation(&mut self) -> Result<bool, SimFlashError> {
        if !self.powered {
            return Err(SimFlashError::PowerLost);
        }
        self.operations += 1;
        match self.ops_left {
            Some(0) => {
                self.powered = false;
                Ok(true)
            }
            Some(n) => {
                self.ops_left = Some(n - 1);
                Ok(false)
            }
            None => Ok(false),
        }
    }
}

impl<B, const WRITE: usize, const ERASE: usize> ErrorType for SimFlash<B, WRITE, ERASE> {
    type Error = SimFlashError;
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const WRITE: usize, const ERASE: usize> ReadNorFlash
    for SimFlash<B, WRITE, ERASE>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimFlashError> {
        let start = self.check(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.data.as_ref()[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.as_ref().len()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const WRITE: usize, const ERASE: usize> NorFlash
    for SimFlash<B, WRITE, ERASE>
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimFlashError> {
        let len = to.checked_sub(from).ok_or(SimFlashError::OutOfBounds)? as usize;
        let start = self.check(from, len, ERASE)?;
        let torn = self.begin_operation()?;
        let erased = if torn { len / 2 } else { len };
        self.data.as_mut()[start..start + erased].fill(0xFF);
        if torn {
            return Err(SimFlashError::PowerLost);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimFlashError> {
        let start = self.check(offset, bytes.len(), WRITE)?;
        let target = &self.data.as_ref()[start..start + bytes.len()];
        if target.iter().any(|&b| b != 0xFF) {
            return Err(SimFlashError::NotErased);
        }
        let torn = self.begin_operation()?;
        // A torn write lands its first half, even mid-word: harsher than most real parts.
        let written = if torn { bytes.len() / 2 } else { bytes.len() };
        self.data.as_mut()[start..start + written].copy_from_slice(&bytes[..written]);
        if torn {
            return Err(SimFlashError::PowerLost);
        }
        Ok(())
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const WRITE: usize, const ERASE: usize> ModelFlash
    for SimFlash<B, WRITE, ERASE>
{
    fn mapped(&self) -> &[u8] {
        self.data.as_ref()
    }
}

//! Driver for the ARM CMSDK APB UART (UART0 of mps2-an386 at 0x4000_4000).
//!
//! Polled, no interrupts: QEMU holds incoming bytes in the PTY until the one-byte receive
//! buffer is read, so polling loses nothing there. On hardware the same polling works at low
//! baud rates; a real board would add an interrupt-fed ring buffer.

use core::ptr::{read_volatile, write_volatile};

/// UART0's base address on mps2-an385/an386.
pub const UART0_BASE: usize = 0x4000_4000;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;

/// One CMSDK UART. Owns its registers: create it once per base address.
#[derive(Debug)]
pub struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    /// Enables transmit and receive at `baud` for a `pclk_hz` peripheral clock.
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB UART that nothing else accesses.
    pub unsafe fn new(base: usize, pclk_hz: u32, baud: u32) -> Self {
        let uart = CmsdkUart { base };
        // The divider must be at least 16 (CMSDK TRM); QEMU ignores the rate on a PTY.
        let divider = (pclk_hz / baud.max(1)).max(16);
        uart.write_reg(BAUDDIV, divider);
        uart.write_reg(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE);
        uart
    }

    /// UART0 of mps2-an386 at 115200 baud.
    ///
    /// # Safety
    /// Call once; nothing else may use UART0.
    pub unsafe fn uart0() -> Self {
        // SAFETY: forwarded to the caller.
        unsafe { Self::new(UART0_BASE, crate::CORE_HZ, 115_200) }
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base` is a CMSDK UART owned by `self`.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Returns a received byte, if one is waiting.
    pub fn try_read_byte(&mut self) -> Option<u8> {
        if self.read_reg(STATE) & STATE_RX_FULL != 0 {
            Some(self.read_reg(DATA) as u8)
        } else {
            None
        }
    }

    /// Waits for room in the transmitter and sends one byte.
    pub fn write_byte(&mut self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
    }

    pub fn write_all_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for CmsdkUart {
    /// Blocks until at least one byte arrives, then returns what is waiting.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut filled = 0;
        while filled == 0 {
            if let Some(byte) = self.try_read_byte() {
                buf[0] = byte;
                filled = 1;
            }
        }
        while filled < buf.len() {
            match self.try_read_byte() {
                Some(byte) => {
                    buf[filled] = byte;
                    filled += 1;
                }
                None => break,
            }
        }
        Ok(filled)
    }
}

impl embedded_io::ReadReady for CmsdkUart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.read_reg(STATE) & STATE_RX_FULL != 0)
    }
}

impl embedded_io::Write for CmsdkUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.write_all_bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        Ok(())
    }
}

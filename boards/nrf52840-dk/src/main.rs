//! ember on the nRF52840 DK: ember-firmware's `Device` on UART0 (the J-Link virtual COM port,
//! P0.06/P0.08), models in the last 256 KiB of internal flash written through the NVMC.
//!
//! NOT YET TESTED ON HARDWARE: it builds in CI (scripts/firmware/build.sh); the register
//! sequences follow the nRF52840 Product Specification but have never run on a board.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

use cortex_m_rt::entry;
// The defmt global logger: frames go to an RTT buffer the debug probe reads.
use defmt_rtt as _;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ember_firmware::{BootOptions, Buffers, Device, DeviceConfig, Event, FlashLayout, NoClock};

fn reg_write(address: usize, value: u32) {
    // SAFETY: callers pass nRF52840 peripheral register addresses owned by this firmware.
    unsafe { write_volatile(address as *mut u32, value) }
}

fn reg_read(address: usize) -> u32 {
    // SAFETY: as in `reg_write`.
    unsafe { read_volatile(address as *const u32) }
}

/// The legacy UART0 (no EasyDMA), polled.
struct Uart;

mod uart_reg {
    pub const BASE: usize = 0x4000_2000;
    pub const STARTRX: usize = BASE + 0x000;
    pub const STARTTX: usize = BASE + 0x008;
    pub const RXDRDY: usize = BASE + 0x108;
    pub const TXDRDY: usize = BASE + 0x11C;
    pub const ENABLE: usize = BASE + 0x500;
    pub const PSELTXD: usize = BASE + 0x50C;
    pub const PSELRXD: usize = BASE + 0x514;
    pub const RXD: usize = BASE + 0x518;
    pub const TXD: usize = BASE + 0x51C;
    pub const BAUDRATE: usize = BASE + 0x524;
    pub const BAUD_115200: u32 = 0x01D7_E000;
}

impl Uart {
    fn init() -> Uart {
        use uart_reg::*;
        reg_write(PSELTXD, 6); // P0.06
        reg_write(PSELRXD, 8); // P0.08
        reg_write(BAUDRATE, BAUD_115200);
        reg_write(ENABLE, 4);
        reg_write(STARTTX, 1);
        reg_write(STARTRX, 1);
        Uart
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(first) = buf.first_mut() else {
            return Ok(0);
        };
        while reg_read(uart_reg::RXDRDY) == 0 {}
        reg_write(uart_reg::RXDRDY, 0);
        *first = reg_read(uart_reg::RXD) as u8;
        Ok(1)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            reg_write(uart_reg::TXDRDY, 0);
            reg_write(uart_reg::TXD, u32::from(b));
            while reg_read(uart_reg::TXDRDY) == 0 {}
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Internal flash through the NVMC (Non-Volatile Memory Controller), limited to MODEL_FLASH.
struct NvmcFlash {
    base: usize,
    len: usize,
}

mod nvmc_reg {
    pub const READY: usize = 0x4001_E400;
    pub const CONFIG: usize = 0x4001_E504;
    pub const ERASEPAGE: usize = 0x4001_E508;
    pub const READ_ONLY: u32 = 0;
    pub const WRITE_ENABLE: u32 = 1;
    pub const ERASE_ENABLE: u32 = 2;
}

#[derive(Debug, Clone, Copy)]
enum NvmcError {
    OutOfBounds,
    NotAligned,
}

impl NorFlashError for NvmcError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            NvmcError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            NvmcError::NotAligned => NorFlashErrorKind::NotAligned,
        }
    }
}

impl NvmcFlash {
    fn wait_ready() {
        while reg_read(nvmc_reg::READY) == 0 {}
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, NvmcError> {
        let offset = offset as usize;
        let end = offset.checked_add(len).ok_or(NvmcError::OutOfBounds)?;
        if end > self.len {
            return Err(NvmcError::OutOfBounds);
        }
        if offset % align != 0 || len % align != 0 {
            return Err(NvmcError::NotAligned);
        }
        Ok(offset)
    }
}

impl ErrorType for NvmcFlash {
    type Error = NvmcError;
}

impl ReadNorFlash for NvmcFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NvmcError> {
        let start = self.check(offset, bytes.len(), 1)?;
        bytes
            .copy_from_slice(&ember_firmware::ModelFlash::mapped(self)[start..start + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for NvmcFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), NvmcError> {
        let len = to.checked_sub(from).ok_or(NvmcError::OutOfBounds)? as usize;
        let start = self.check(from, len, Self::ERASE_SIZE)?;
        reg_write(nvmc_reg::CONFIG, nvmc_reg::ERASE_ENABLE);
        for page in (start..start + len).step_by(Self::ERASE_SIZE) {
            reg_write(nvmc_reg::ERASEPAGE, (self.base + page) as u32);
            Self::wait_ready();
        }
        reg_write(nvmc_reg::CONFIG, nvmc_reg::READ_ONLY);
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NvmcError> {
        let start = self.check(offset, bytes.len(), Self::WRITE_SIZE)?;
        reg_write(nvmc_reg::CONFIG, nvmc_reg::WRITE_ENABLE);
        for (i, word) in bytes.chunks_exact(4).enumerate() {
            let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            // SAFETY: inside MODEL_FLASH (checked), word aligned, NVMC in write mode.
            unsafe { write_volatile((self.base + start + 4 * i) as *mut u32, value) };
            Self::wait_ready();
        }
        reg_write(nvmc_reg::CONFIG, nvmc_reg::READ_ONLY);
        Ok(())
    }
}

impl ember_firmware::ModelFlash for NvmcFlash {
    fn mapped(&self) -> &[u8] {
        // SAFETY: internal flash is memory mapped and MODEL_FLASH belongs to this driver.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len) }
    }
}

extern "C" {
    static _model_flash_start: u8;
    static _model_flash_len: u8;
}

#[repr(C, align(16))]
struct Aligned<T>(T);

static mut ARENA: Aligned<[u8; 160 * 1024]> = Aligned([0; 160 * 1024]);

#[entry]
fn main() -> ! {
    let mut serial = Uart::init();
    let flash = NvmcFlash {
        base: core::ptr::addr_of!(_model_flash_start) as usize,
        len: core::ptr::addr_of!(_model_flash_len) as usize,
    };
    let Ok(layout) = FlashLayout::split(flash.len as u32, NvmcFlash::ERASE_SIZE as u32) else {
        panic!("flash layout")
    };
    // SAFETY: `main` runs once and is the only user of ARENA.
    let arena = unsafe { (&mut *core::ptr::addr_of_mut!(ARENA)).0.as_mut_slice() };
    let config = DeviceConfig {
        board: "nrf52840-dk",
        firmware_version: env!("CARGO_PKG_VERSION"),
        supported_ops: ember_firmware::RUNTIME_OPS,
        stream: None,
    };
    let buffers = Buffers {
        arena,
        window: &mut [],
        frontend: None,
    };
    // No panic record yet on this board (see boards/README.md): boots with default options.
    let Ok(mut device) = Device::new(
        flash,
        layout,
        NoClock,
        config,
        buffers,
        BootOptions::default(),
    ) else {
        panic!("device setup")
    };
    defmt::info!("ember: nrf52840-dk ready on UART0");
    loop {
        match device.poll(&mut serial) {
            Ok(Some(Event::Reset)) => cortex_m::peripheral::SCB::sys_reset(),
            Ok(_) => {}
            Err(never) => match never {},
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("ember: panic: {}", defmt::Display2Format(info));
    // Reset so the device comes back up on the last good model.
    cortex_m::peripheral::SCB::sys_reset()
}

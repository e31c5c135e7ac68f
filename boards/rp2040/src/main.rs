//! ember on the RP2040 (Cortex-M0+, thumbv6m: no atomic read-modify-write instructions).
//!
//! NOT YET TESTED ON HARDWARE, AND NOT YET FUNCTIONAL: it proves that ember-runtime and
//! ember-firmware build and link for thumbv6m with the real boot2 and memory map. Two pieces
//! are stubs, named as such:
//! - `StubUart`: a PL011 UART needs the clock tree (XOSC, PLL_SYS, clk_peri), RESETS and the
//!   GPIO function select set up first; until then reads block forever and writes are dropped.
//! - `ReadOnlyFlash`: programming QSPI flash needs the boot ROM's flash functions run from
//!   RAM with XIP off; until then erase/write fail, so uploads are refused (models already in
//!   MODEL_FLASH, e.g. written by a probe, still boot).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
// The defmt global logger: frames go to an RTT buffer the debug probe reads.
use defmt_rtt as _;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ember_firmware::{BootOptions, Buffers, Device, DeviceConfig, Event, FlashLayout, NoClock};

/// The second-stage bootloader for the Pico's W25Q080 flash, placed first by memory.x.
#[link_section = ".boot2"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// Stub serial port (see the crate docs).
struct StubUart;

impl embedded_io::ErrorType for StubUart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for StubUart {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Self::Error> {
        loop {
            cortex_m::asm::wfi();
        }
    }
}

impl embedded_io::Write for StubUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// MODEL_FLASH read in place through XIP; programming is not implemented (see crate docs).
struct ReadOnlyFlash {
    base: usize,
    len: usize,
}

#[derive(Debug, Clone, Copy)]
enum FlashError {
    OutOfBounds,
    WriteNotImplemented,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::WriteNotImplemented => NorFlashErrorKind::Other,
        }
    }
}

impl ErrorType for ReadOnlyFlash {
    type Error = FlashError;
}

impl ReadNorFlash for ReadOnlyFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let start = offset as usize;
        let source = ember_firmware::ModelFlash::mapped(self)
            .get(start..start.saturating_add(bytes.len()))
            .ok_or(FlashError::OutOfBounds)?;
        bytes.copy_from_slice(source);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for ReadOnlyFlash {
    const WRITE_SIZE: usize = 256;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, _from: u32, _to: u32) -> Result<(), FlashError> {
        Err(FlashError::WriteNotImplemented)
    }
    fn write(&mut self, _offset: u32, _bytes: &[u8]) -> Result<(), FlashError> {
        Err(FlashError::WriteNotImplemented)
    }
}

impl ember_firmware::ModelFlash for ReadOnlyFlash {
    fn mapped(&self) -> &[u8] {
        // SAFETY: XIP maps the whole flash; MODEL_FLASH belongs to this driver.
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
    let mut serial = StubUart;
    let flash = ReadOnlyFlash {
        base: core::ptr::addr_of!(_model_flash_start) as usize,
        len: core::ptr::addr_of!(_model_flash_len) as usize,
    };
    let Ok(layout) = FlashLayout::split(flash.len as u32, ReadOnlyFlash::ERASE_SIZE as u32) else {
        panic!("flash layout")
    };
    // SAFETY: `main` runs once and is the only user of ARENA.
    let arena = unsafe { (&mut *core::ptr::addr_of_mut!(ARENA)).0.as_mut_slice() };
    let config = DeviceConfig {
        board: "rp2040",
        firmware_version: env!("CARGO_PKG_VERSION"),
        supported_ops: ember_firmware::RUNTIME_OPS,
        stream: None,
    };
    let buffers = Buffers {
        arena,
        window: &mut [],
        frontend: None,
    };
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
    defmt::info!("ember: rp2040 ready");
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

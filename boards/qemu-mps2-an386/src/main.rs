//! The ember device on QEMU mps2-an386: ember-firmware's `Device` on UART0 (`-serial pty`),
//! models stored in the simulated flash region, SysTick as the instruction clock.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use ember_board_qemu_mps2_an386::{
    flash, instructions::SysTickClock, panic_record, uart::CmsdkUart,
};
use ember_firmware::{
    BootOptions, Buffers, Clock, Device, DeviceConfig, Event, FlashLayout, SimFlash,
};

const ERASE_SIZE: usize = 4096;
const WRITE_SIZE: usize = 4;

#[repr(C, align(16))]
struct Aligned<T>(T);

static mut ARENA: Aligned<[u8; 1024 * 1024]> = Aligned([0; 1024 * 1024]);
static mut WINDOW: [u8; 64 * 1024] = [0; 64 * 1024];

struct QemuClock(SysTickClock);

impl Clock for QemuClock {
    fn cycles(&mut self) -> u64 {
        self.0.ticks()
    }
    /// Exact under `-icount shift=0`, which `ember emulate` and the tests always pass.
    fn instructions(&mut self) -> Option<u64> {
        Some(self.0.ticks() * ember_board_qemu_mps2_an386::instructions::INSTRUCTIONS_PER_TICK)
    }
}

#[entry]
fn main() -> ! {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        panic!("peripherals taken twice")
    };
    let clock = QemuClock(SysTickClock::new(peripherals.SYST));
    // SAFETY: the only UART0 user.
    let mut serial = unsafe { CmsdkUart::uart0() };
    // SAFETY: the only MODEL_FLASH user.
    let region = unsafe { flash::take_region() };
    let capacity = region.len() as u32;
    let model_flash = SimFlash::<_, WRITE_SIZE, ERASE_SIZE>::with_contents(region);
    let layout = match FlashLayout::split(capacity, ERASE_SIZE as u32) {
        Ok(layout) => layout,
        Err(err) => panic!("flash layout: {err:?}"),
    };

    let previous = panic_record::take_previous();
    let boot = BootOptions {
        last_panic: previous.as_ref().map(|p| p.message()),
        distrust_active: previous.as_ref().is_some_and(|p| p.consecutive >= 2),
    };
    // SAFETY: `main` runs once and is the only user of these statics.
    let (arena, window) = unsafe {
        (
            (&mut *core::ptr::addr_of_mut!(ARENA)).0.as_mut_slice(),
            (&mut *core::ptr::addr_of_mut!(WINDOW)).as_mut_slice(),
        )
    };
    let config = DeviceConfig {
        board: "qemu-mps2-an386",
        firmware_version: env!("CARGO_PKG_VERSION"),
        supported_ops: ember_firmware::RUNTIME_OPS,
        stream: None,
    };
    let buffers = Buffers {
        arena,
        window,
        frontend: None,
    };
    let mut device = match Device::new(model_flash, layout, clock, config, buffers, boot) {
        Ok(device) => device,
        Err(err) => panic!("device setup: {err:?}"),
    };
    hprintln!("ember: qemu-mps2-an386 ready on UART0");

    let mut served = false;
    loop {
        match device.poll(&mut serial) {
            Ok(Some(Event::Reset)) => cortex_m::peripheral::SCB::sys_reset(),
            Ok(_) => {}
            Err(never) => match never {},
        }
        if !served && previous.is_some() {
            // The device answers again: the panic before this boot was not a crash loop.
            panic_record::clear();
            served = true;
        }
    }
}

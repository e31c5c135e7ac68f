//! The ember device on QEMU mps2-an386: ember-firmware's `Device` on UART0 (`-serial pty`),
//! models stored in the simulated flash region, SysTick as the instruction clock.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
#[cfg(not(feature = "defmt"))]
use cortex_m_semihosting::hprintln;
use ember_board_qemu_mps2_an386::{
    flash, instructions::SysTickClock, panic_record, uart::CmsdkUart,
};
use ember_firmware::{
    AudioFrontend, BootOptions, Buffers, Clock, Device, DeviceConfig, Event, FlashLayout, SimFlash,
};
use ember_protocol::StreamCaps;
use ember_runtime::frontend::FrontendConfig;

const ERASE_SIZE: usize = 4096;
const WRITE_SIZE: usize = 4;

#[repr(C, align(16))]
struct Aligned<T>(T);

static mut ARENA: Aligned<[u8; 1024 * 1024]> = Aligned([0; 1024 * 1024]);
static mut WINDOW: [u8; 64 * 1024] = [0; 64 * 1024];
/// Front-end tables and scratch: room for configurations up to twice MLPerf KWS's needs.
const FRONTEND_WORKSPACE: usize = 2 * FrontendConfig::mlperf_kws().workspace_len();
static mut FRONTEND_WS: [f32; FRONTEND_WORKSPACE] = [0.0; FRONTEND_WORKSPACE];
static mut FEATURES: [f32; 4096] = [0.0; 4096];

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
    let (arena, window, frontend_ws, features) = unsafe {
        (
            (&mut *core::ptr::addr_of_mut!(ARENA)).0.as_mut_slice(),
            (&mut *core::ptr::addr_of_mut!(WINDOW)).as_mut_slice(),
            (&mut *core::ptr::addr_of_mut!(FRONTEND_WS)).as_mut_slice(),
            (&mut *core::ptr::addr_of_mut!(FEATURES)).as_mut_slice(),
        )
    };
    // Audio models (converted with `--frontend`) stream 16-bit PCM; others stream raw inputs.
    let mut audio = AudioFrontend::new(frontend_ws, features);
    let config = DeviceConfig {
        board: "qemu-mps2-an386",
        firmware_version: env!("CARGO_PKG_VERSION"),
        supported_ops: ember_firmware::RUNTIME_OPS,
        stream: Some(StreamCaps {
            sample_rate_hz: 16_000,
            channels: 1,
            max_window_bytes: 0,
        }),
    };
    let buffers = Buffers {
        arena,
        window,
        frontend: Some(&mut audio),
    };
    let mut device = match Device::new(model_flash, layout, clock, config, buffers, boot) {
        Ok(device) => device,
        Err(err) => panic!("device setup: {err:?}"),
    };
    #[cfg(feature = "defmt")]
    defmt::info!("ember: qemu-mps2-an386 ready on UART0");
    #[cfg(not(feature = "defmt"))]
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

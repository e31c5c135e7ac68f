//! Board support for QEMU's mps2-an386 (Cortex-M4F): the CMSDK UART, simulated NOR flash in
//! SSRAM, SysTick instruction counting, stack high-water marks by painting, and a panic
//! handler that reports, keeps the message in no-init RAM for the next boot, and resets.
#![no_std]

pub mod flash;
pub mod instructions;
pub mod panic_record;
pub mod stack;
pub mod uart;

// The defmt global logger: frames go out as semihosting writes to the host's stdout.
#[cfg(feature = "defmt")]
use defmt_semihosting as _;

use core::sync::atomic::{AtomicBool, Ordering};

/// MPS2 FPGA images clock the core at 25 MHz (under `-icount` time follows instructions).
pub const CORE_HZ: u32 = 25_000_000;

static RESET_ON_PANIC: AtomicBool = AtomicBool::new(true);

/// Makes a panic end QEMU with a failing semihosting exit instead of resetting the core.
/// The benchmark wants a failed run, the device wants to come back up.
pub fn exit_on_panic() {
    RESET_ON_PANIC.store(false, Ordering::Relaxed);
}

/// Ends a QEMU run through semihosting with the given success.
pub fn exit(success: bool) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without a semihosting host (never under QEMU with semihosting enabled).
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    // One text format per stream: plain text would corrupt defmt's binary frames.
    #[cfg(feature = "defmt")]
    defmt::error!("ember: panic: {}", defmt::Display2Format(info));
    #[cfg(not(feature = "defmt"))]
    cortex_m_semihosting::hprintln!("ember: panic: {}", info);
    if RESET_ON_PANIC.load(Ordering::Relaxed) {
        panic_record::store(info);
        // SYSRESETREQ: the device boots again and loads the last good model from flash.
        cortex_m::peripheral::SCB::sys_reset();
    }
    exit(false)
}

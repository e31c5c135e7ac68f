//! Instruction counting with SysTick. Under `qemu-system-arm -icount shift=0` SysTick's clock
//! advances one tick per [`INSTRUCTIONS_PER_TICK`] executed instructions, which makes the count
//! deterministic; on real hardware the same ticks are core cycles.

use cortex_m::peripheral::{syst::SystClkSource, SYST};

/// Instructions per SysTick tick under QEMU `-icount shift=0`.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// SysTick's reload value: the counter runs from here down to 0, a 2^24-tick period.
pub const RELOAD: u32 = 0x00ff_ffff;

/// A free-running 24-bit SysTick with a software overflow count (polled, so measure spans
/// shorter than one wrap between polls: 2^24 ticks, 671 M instructions under QEMU).
pub struct TickCounter {
    // Owned so nothing else reconfigures SysTick while it counts.
    _syst: SYST,
}

impl core::fmt::Debug for TickCounter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TickCounter").finish_non_exhaustive()
    }
}

impl TickCounter {
    pub fn new(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_counter();
        TickCounter { _syst: syst }
    }

    /// Runs `f` and returns its result with the SysTick ticks it took (modulo 2^24: the
    /// counter's period, since the reload value is 2^24 - 1).
    pub fn measure<R>(&mut self, f: impl FnOnce() -> R) -> (R, u32) {
        let start = SYST::get_current();
        let result = f();
        let end = SYST::get_current();
        // SysTick counts down.
        (result, start.wrapping_sub(end) & RELOAD)
    }
}

static WRAPS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// SysTick with its wrap interrupt counting the high bits: a 64-bit tick clock for
/// `ember_firmware::Clock` (cycles = ticks; instructions = ticks * 40 under `-icount shift=0`).
pub struct SysTickClock {
    _syst: SYST,
}

impl core::fmt::Debug for SysTickClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SysTickClock").finish_non_exhaustive()
    }
}

impl SysTickClock {
    pub fn new(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        SysTickClock { _syst: syst }
    }

    /// Ticks since [`SysTickClock::new`].
    pub fn ticks(&self) -> u64 {
        use core::sync::atomic::Ordering;
        loop {
            let high = WRAPS.load(Ordering::Acquire);
            let current = SYST::get_current();
            // A wrap between the two reads would pair the old count with the new value.
            if WRAPS.load(Ordering::Acquire) == high {
                return (u64::from(high) << 24) | u64::from(RELOAD - current);
            }
        }
    }
}

#[cortex_m_rt::exception]
fn SysTick() {
    WRAPS.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
}

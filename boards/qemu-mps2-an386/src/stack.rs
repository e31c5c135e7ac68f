//! Stack high-water mark by painting: fill the unused stack with a known word, run, then find
//! the lowest word that no longer holds it. cortex-m-rt puts the stack at the top of RAM
//! (`_stack_start`) growing down to the end of the statics (`_stack_end`).

/// The paint word. Any value works; 0xCC bytes are unlikely in addresses and small integers.
const PAINT: u32 = 0xCCCC_CCCC;

/// Bytes left unpainted below the painter's own stack pointer, so the painting loop never
/// writes over a frame that is live (ARM has no red zone; this is margin, not a requirement).
/// They count as used, so a high-water mark may overstate by this much.
const GUARD_BYTES: usize = 64;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// The stack's lowest and highest addresses (`end <= sp <= start`).
fn bounds() -> (usize, usize) {
    // Linker symbols: only their addresses are used, never their contents.
    (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads SP into a register; no memory or flags touched.
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// Paints every stack word below the caller's frame. Call it again to start a new measurement:
/// words above the current frame stay as they are (the caller's frames count as used).
#[inline(never)]
pub fn paint() {
    let (end, _) = bounds();
    let limit = stack_pointer().saturating_sub(GUARD_BYTES) & !3;
    let mut address = (end + 3) & !3;
    while address < limit {
        // SAFETY: [end, sp - guard) is stack memory that no live frame uses; word-aligned.
        unsafe { core::ptr::write_volatile(address as *mut u32, PAINT) };
        address += 4;
    }
}

/// Bytes of stack used since the last `paint`: from the top of the stack down to the lowest
/// word that no longer holds the paint. Includes the frames that were live when painting.
pub fn high_water_mark() -> usize {
    let (end, start) = bounds();
    let mut address = (end + 3) & !3;
    while address < start {
        // SAFETY: inside the stack region, word-aligned; reading stale stack words is harmless.
        if unsafe { core::ptr::read_volatile(address as *const u32) } != PAINT {
            break;
        }
        address += 4;
    }
    start - address
}

//! The panic message kept across a reset in no-init RAM (`.uninit`, which cortex-m-rt neither
//! loads nor zeroes), as ember-firmware's panic policy asks: the next boot reports it through
//! `Info`, and a second panic in a row makes the device boot the other slot's model.

use core::fmt::Write;
use core::mem::MaybeUninit;

const MAGIC: u32 = 0x454d_4250; // "EMBP"
const MESSAGE_CAPACITY: usize = 160;

#[repr(C)]
struct Record {
    magic: u32,
    consecutive: u32,
    len: u32,
    message: [u8; MESSAGE_CAPACITY],
}

#[link_section = ".uninit.ember_panic_record"]
static mut RECORD: MaybeUninit<Record> = MaybeUninit::uninit();

/// What the previous run left, copied out at boot.
#[derive(Debug, Clone)]
pub struct PreviousPanic {
    message: [u8; MESSAGE_CAPACITY],
    len: usize,
    /// Panics in a row without a served request between them.
    pub consecutive: u32,
}

impl PreviousPanic {
    pub fn message(&self) -> &str {
        let bytes = self.message.get(..self.len).unwrap_or(&[]);
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            // Truncation may have cut a character: keep the valid prefix.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

fn record_ptr() -> *mut Record {
    // SAFETY of later uses: single core; written only by the panic handler (interrupts off)
    // and read/cleared at boot before interrupts run.
    unsafe { (*core::ptr::addr_of_mut!(RECORD)).as_mut_ptr() }
}

/// Reads the record the previous run left (garbage after power-on fails the magic check).
pub fn take_previous() -> Option<PreviousPanic> {
    // SAFETY: see `record_ptr`; every bit pattern is a valid `Record` (plain integers).
    let record = unsafe { core::ptr::read_volatile(record_ptr()) };
    if record.magic != MAGIC || record.len as usize > MESSAGE_CAPACITY {
        return None;
    }
    Some(PreviousPanic {
        message: record.message,
        len: record.len as usize,
        consecutive: record.consecutive,
    })
}

/// Forgets the consecutive-panic count: the device served a request, so it works.
pub fn clear() {
    // SAFETY: see `record_ptr`.
    unsafe { core::ptr::addr_of_mut!((*record_ptr()).magic).write_volatile(0) };
}

struct Truncating<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buffer.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Called by the panic handler: stores the message and counts the panic.
pub fn store(info: &core::panic::PanicInfo) {
    let previous = take_previous().map_or(0, |p| p.consecutive);
    let mut message = [0u8; MESSAGE_CAPACITY];
    let mut writer = Truncating {
        buffer: &mut message,
        len: 0,
    };
    let _ = write!(writer, "{}", info);
    let len = writer.len as u32;
    let record = Record {
        magic: MAGIC,
        consecutive: previous.saturating_add(1),
        len,
        message,
    };
    // SAFETY: see `record_ptr`.
    unsafe { core::ptr::write_volatile(record_ptr(), record) };
}

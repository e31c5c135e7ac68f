//! The simulated flash region. mps2 has no writable flash, so a region of SSRAM1 that QEMU
//! loads nothing into (MODEL_FLASH in memory.x) stands in for it: QEMU keeps RAM across a
//! SYSRESETREQ reset, so what the device stored survives a reset like on real flash. The NOR
//! rules (erase to 0xFF, program once) come from `ember_firmware::flash::SimFlash` on top.
//!
//! On the very first boot the region reads as zeros (QEMU's RAM starts zeroed), which the
//! firmware treats like any other flash without a valid boot record.

extern "C" {
    static mut _model_flash_start: u8;
    static _model_flash_len: u8;
}

/// The MODEL_FLASH region from memory.x.
///
/// # Safety
/// Call once; nothing else may touch MODEL_FLASH.
pub unsafe fn take_region() -> &'static mut [u8] {
    // Linker symbols: only their addresses mean anything.
    let base = core::ptr::addr_of_mut!(_model_flash_start);
    let len = core::ptr::addr_of!(_model_flash_len) as usize;
    // SAFETY: memory.x reserves [base, base + len) for this use only, and the caller takes it once.
    unsafe { core::slice::from_raw_parts_mut(base, len) }
}

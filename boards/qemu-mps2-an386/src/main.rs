//! placeholder until the device binary lands
#![no_std]
#![no_main]
use cortex_m_rt::entry;
use ember_board_qemu_mps2_an386 as _;
#[entry]
fn main() -> ! { loop {} }

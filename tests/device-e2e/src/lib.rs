//! End-to-end test support for ember devices: boots the real firmware in QEMU, opens its UART
//! PTY with the `serialport` crate as an `ember_link::Transport`, and wraps that transport in a
//! seeded fault injector. The scenario itself is `tests/qemu.rs`.

pub mod faults;
pub mod qemu;
pub mod rng;
pub mod serial;

pub use faults::{Fault, FaultControl, FaultyTransport};
pub use qemu::{Qemu, QemuError};
pub use rng::Rng;
pub use serial::SerialTransport;

//! Puts `memory.x` on the linker path.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    // defmt's linker script places the log string table (the defmt crate puts it on the path).
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}

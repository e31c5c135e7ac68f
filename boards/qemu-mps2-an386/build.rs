//! Puts `memory.x` on the linker path and stages the benchmark's model.
//!
//! The benchmark embeds the `.emb` named by `EMBER_BENCH_MODEL` (scripts/firmware/build.sh
//! converts one from shared/models). Without it the benchmark is built with an empty model
//! and says so when run.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    // defmt's linker script (from the defmt crate's build output) places the log string table.
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }

    println!("cargo:rerun-if-env-changed=EMBER_BENCH_MODEL");
    let staged = out.join("bench_model.emb");
    match env::var_os("EMBER_BENCH_MODEL") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            if let Err(err) = fs::copy(&path, &staged) {
                panic!("EMBER_BENCH_MODEL={}: {err}", path.display());
            }
        }
        None => fs::write(&staged, []).expect("write empty bench model"),
    }
}

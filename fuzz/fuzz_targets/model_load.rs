//! `Model::load` on arbitrary bytes must return an error or a model that runs without panicking.
#![no_main]

use ember_runtime::host::AlignedBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = AlignedBytes::from_slice(data);
    if let Ok(model) = ember_runtime::Model::load(bytes.as_slice()) {
        // Keep the arena bounded so the fuzzer explores parsing, not allocation.
        if model.arena_size() <= 1 << 20 {
            let mut arena = AlignedBytes::zeroed(model.arena_size());
            let _ = model.run(arena.as_mut_slice());
        }
    }
});

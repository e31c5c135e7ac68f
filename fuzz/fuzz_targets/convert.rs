//! `ember_convert::convert` on arbitrary bytes: a typed error or a model that loads.
#![no_main]

use ember_convert::{convert, ConvertOptions};
use ember_runtime::host::AlignedBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(emb) = convert(data, &ConvertOptions::default()) {
        let bytes = AlignedBytes::from_slice(&emb);
        assert!(ember_runtime::Model::load(bytes.as_slice()).is_ok());
    }
});

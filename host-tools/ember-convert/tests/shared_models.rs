//! Converts every model in `shared/models` and loads the result with the runtime.

use std::path::PathBuf;

use ember_convert::{convert_with_report, ConvertOptions};
use ember_runtime::host::AlignedBytes;

fn shared_dir() -> PathBuf {
    match std::env::var_os("EMBER_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn model_paths() -> Vec<PathBuf> {
    let dir = shared_dir().join("models");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 5,
        "expected the 5 shared models in {}",
        dir.display()
    );
    paths
}

#[test]
fn every_shared_model_converts_and_loads() {
    for path in model_paths() {
        let bytes = std::fs::read(&path).unwrap();
        let options = ConvertOptions {
            labels: vec!["a".into(), "b".into()],
            metadata: vec![("test".into(), b"value".to_vec())],
        };
        let converted = convert_with_report(&bytes, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = &converted.report;
        eprintln!("{}: {r:?}", path.display());
        assert!(r.arena_size >= r.arena_lower_bound);
        let aligned = AlignedBytes::from_slice(&converted.bytes);
        match ember_runtime::Model::load(aligned.as_slice()) {
            Ok(model) => {
                assert_eq!(model.arena_size(), r.arena_size);
                assert_eq!(model.labels().collect::<Vec<_>>(), ["a", "b"]);
                assert_eq!(model.metadata("test"), Some(&b"value"[..]));
                assert_eq!(model.op_count(), r.op_count);
            }
            // Allowed only while a kernel has not landed; the converter says so in its report.
            Err(e) => assert!(
                !r.warnings.is_empty(),
                "{}: load failed without a warning: {e}",
                path.display()
            ),
        }
    }
}

fn arena_of(name: &str) -> usize {
    let bytes = std::fs::read(shared_dir().join("models").join(name)).unwrap();
    convert_with_report(&bytes, &ConvertOptions::default())
        .unwrap()
        .report
        .arena_size
}

#[test]
fn kws_arena_beats_tflite_micro() {
    // TFLite Micro needs 22,820 bytes for this model.
    let arena = arena_of("kws_ref_model.tflite");
    assert!(arena <= 18_000, "kws arena {arena}");
}

#[test]
fn ad01_arena_is_small() {
    let arena = arena_of("ad01_int8.tflite");
    assert!(arena <= 2_100, "ad01 arena {arena}");
}

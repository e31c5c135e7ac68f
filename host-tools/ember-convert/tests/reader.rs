//! The reader on hand-built models (see `fixtures/README.md`).

use ember_convert::{convert_with_report, ConvertError, ConvertOptions};
use ember_runtime::host::{run_once, AlignedBytes};

const FC_FLOAT: &[u8] = include_bytes!("fixtures/fc_float.tflite");
const UNSUPPORTED: &[u8] = include_bytes!("fixtures/unsupported_op.tflite");

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn both_opcode_fields_and_dequantize_folding() {
    let converted = convert_with_report(FC_FLOAT, &ConvertOptions::default()).unwrap();
    assert_eq!(converted.report.folded_dequantize, 1);
    assert_eq!(converted.report.op_count, 1);
    let bytes = AlignedBytes::from_slice(&converted.bytes);
    let model = ember_runtime::Model::load(bytes.as_slice()).unwrap();
    let op = model.ops().next().unwrap().unwrap();
    assert_eq!(op.variant_name(), "FullyConnectedF32");
    let out = run_once(&model, &[&f32_bytes(&[1.5, -2.0])]).unwrap();
    // TFLite reference output for this input (fixtures/README.md).
    assert_eq!(out[0], f32_bytes(&[-2.5, -7.5, -8.0]));
}

#[test]
fn unsupported_op_names_op_index_and_alternatives() {
    let err = convert_with_report(UNSUPPORTED, &ConvertOptions::default()).unwrap_err();
    assert!(
        matches!(err, ConvertError::Unsupported { index: 1, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("#1") && text.contains("SUB") && text.contains("FULLY_CONNECTED"),
        "{text}"
    );
}

#[test]
fn buffer_stored_after_the_flatbuffer() {
    let mut file = include_bytes!("fixtures/fc_float_external.tflite").to_vec();
    // The weights are missing: a clear error, not a panic.
    let err = convert_with_report(&file, &ConvertOptions::default()).unwrap_err();
    assert!(err.to_string().contains("outside the file"), "{err}");
    file.resize(4096, 0);
    file.extend_from_slice(&[2u8, 4, 254, 6, 0, 8]);
    let bytes = convert_with_report(&file, &ConvertOptions::default())
        .unwrap()
        .bytes;
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = ember_runtime::Model::load(aligned.as_slice()).unwrap();
    let out = run_once(&model, &[&f32_bytes(&[1.5, -2.0])]).unwrap();
    assert_eq!(out[0], f32_bytes(&[-2.5, -7.5, -8.0]));
}

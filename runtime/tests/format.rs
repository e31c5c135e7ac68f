//! The `.emb` container: exact bytes, round trips, and hostile input.

use ember_runtime::format::{ModelWriter, HEADER_LEN};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::kernels::fully_connected::FullyConnectedS8;
use ember_runtime::kernels::Requant;
use ember_runtime::{DType, Error, Location, Model, Op, QuantParams, Shape, TensorDef};

fn tensor(dtype: DType, dims: &[u32], location: Location) -> TensorDef {
    TensorDef {
        dtype,
        shape: Shape::new(dims).unwrap(),
        location,
        quant: None,
    }
}

/// A 3-input, 2-output int8 fully connected layer with hand-picked numbers.
fn tiny_model() -> Vec<u8> {
    let mut w = ModelWriter::new();
    let filter = w.add_const(&[1u8, 2, 3, (-1i8) as u8, (-2i8) as u8, (-3i8) as u8]);
    let bias = w.add_const(bytemuck_i32(&[10, -10]));
    let (m, s) = ember_runtime::quant::quantize_multiplier(0.5);
    let mults = w.add_const(bytemuck_i32(&[m]));
    let shifts = w.add_const(bytemuck_i32(&[s]));
    let mut input = tensor(DType::I8, &[1, 3], Location::Arena(0));
    input.quant = Some(QuantParams {
        scale: 0.5,
        zero_point: -1,
    });
    let mut output = tensor(DType::I8, &[1, 2], Location::Arena(16));
    output.quant = Some(QuantParams {
        scale: 1.0,
        zero_point: 3,
    });
    w.arena_size = 32;
    w.inputs.push(input.clone());
    w.outputs.push(output.clone());
    w.ops.push(Op::FullyConnectedS8(FullyConnectedS8 {
        input,
        filter: tensor(DType::I8, &[2, 3], Location::Const(filter)),
        bias: Some(tensor(DType::I32, &[2], Location::Const(bias))),
        output,
        input_offset: 1,
        filter_offset: 0,
        output_offset: 3,
        requant: Requant {
            multipliers: tensor(DType::I32, &[1], Location::Const(mults)),
            shifts: tensor(DType::I32, &[1], Location::Const(shifts)),
        },
        act_min: -128,
        act_max: 127,
    }));
    w.metadata.push(("labels".into(), b"up\ndown\n".to_vec()));
    w.finish().unwrap()
}

fn bytemuck_i32(v: &[i32]) -> &[u8] {
    // Test helper: i32 slice as little-endian bytes (x86-64 and ARM are little-endian).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 4) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn encoding_is_pinned_byte_for_byte() {
    let bytes = tiny_model();
    // Any change here is a format change: bump FORMAT_VERSION and update docs/FORMAT.md.
    let expected_header = "454d425201002000680000009000000034000000c4000000";
    assert_eq!(hex(&bytes[..24]), expected_header, "header changed");
    let graph = &bytes[HEADER_LEN..HEADER_LEN + 0x74];
    let expected_graph = concat!(
        "20", // arena_size 32
        "01", // one input
        "00", "02", "0103", "00", "00", "01", "0000003f",
        "01", // I8 [1,3] Arena(0) Some(0.5, zigzag(-1))
        "01", // one output
        "00", "02", "0102", "00", "10", "01", "0000803f",
        "06", // I8 [1,2] Arena(16) Some(1.0, zigzag(3))
        "01", // op_count
    );
    assert_eq!(
        hex(&graph[..expected_graph.len() / 2]),
        expected_graph,
        "graph prefix changed"
    );
    assert_eq!(bytes.len(), 0xc4);
}

#[test]
fn tiny_model_runs_and_matches_hand_computation() {
    let bytes = AlignedBytes::from_slice(&tiny_model());
    let model = Model::load(bytes.as_slice()).unwrap();
    assert_eq!(model.labels().collect::<Vec<_>>(), ["up", "down"]);
    // x = [4, 0, -2] (int8), input_offset 1 -> [5, 1, -1]
    let out = run_once(&model, &[&[4u8, 0, (-2i8) as u8]]).unwrap();
    // acc0 = 5 + 2 - 3 + 10 = 14 -> *0.5 = 7 -> +3 = 10; acc1 = -5 - 2 + 3 - 10 = -14 -> -7 -> -4
    assert_eq!(out, vec![vec![10u8, (-4i8) as u8]]);
}

fn with_fixed_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= HEADER_LEN {
        let total = bytes.len() as u32;
        bytes[20..24].copy_from_slice(&total.to_le_bytes());
        let crc = ember_runtime::crc32::crc32(&bytes[HEADER_LEN..]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

fn try_load_and_run(bytes: &[u8]) -> Result<(), Error> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::load(aligned.as_slice())?;
    let inputs: Vec<Vec<u8>> = model
        .inputs()
        .iter()
        .map(|t| vec![7u8; t.byte_len().unwrap_or(0)])
        .collect();
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    run_once(&model, &refs).map(|_| ())
}

#[test]
fn truncated_and_corrupted_models_are_rejected_with_typed_errors() {
    let good = tiny_model();
    for len in 0..good.len() {
        let err = try_load_and_run(&good[..len]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated { .. } | Error::BadMagic | Error::LengthMismatch { .. }
            ),
            "len {len}: {err:?}"
        );
    }
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            try_load_and_run(&bad).is_err(),
            "bit flip {bit} went unnoticed"
        );
    }
    let mut wrong_version = good.clone();
    wrong_version[4] = 9;
    assert_eq!(
        try_load_and_run(&wrong_version),
        Err(Error::UnsupportedVersion {
            found: 9,
            supported: 1
        })
    );
    let mut oversized = good.clone();
    oversized.extend_from_slice(&[0; 64]);
    assert!(matches!(
        try_load_and_run(&oversized),
        Err(Error::LengthMismatch { .. })
    ));
}

/// Mutations behind a valid checksum reach the graph decoder and the validator: thousands of
/// them must all end in `Ok` or a typed error, never a panic or an out-of-bounds access.
#[test]
fn mutated_models_with_valid_checksums_never_panic() {
    let good = tiny_model();
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rejected = 0;
    for _ in 0..20_000 {
        let mut bad = good.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let pos = HEADER_LEN + (next() as usize % (good.len() - HEADER_LEN));
            bad[pos] = next() as u8;
        }
        if try_load_and_run(&with_fixed_crc(bad)).is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected > 1000,
        "validator rejected only {rejected} of 20000 mutants"
    );
}

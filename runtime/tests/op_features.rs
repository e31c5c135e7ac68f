//! Kernels chosen by cargo features: a model whose operator this build leaves out fails to
//! load with `Error::OpNotEnabled`, never a panic, and enabled operators still run.
//!
//! Runs with the default features (every kernel) and with a reduced set, e.g.
//! `cargo test -p ember-runtime --no-default-features --features std,softmax,int8 --test op_features`.

use ember_runtime::format::ModelWriter;
use ember_runtime::host::AlignedBytes;
use ember_runtime::kernels::activations::{softmax_exp_table, SoftmaxF32, SoftmaxS8};
use ember_runtime::{DType, Error, Location, Model, Op, QuantParams, Shape, TensorDef};

fn tensor(dtype: DType, dims: &[u32], location: Location) -> TensorDef {
    TensorDef {
        dtype,
        shape: Shape::new(dims).unwrap(),
        location,
        quant: None,
    }
}

/// One SOFTMAX over 4 int8 values with scale 1/16; output scale 1/256, zero point -128.
fn softmax_s8_model() -> Vec<u8> {
    let input_scale = 1.0 / 16.0;
    let mut w = ModelWriter::new();
    let table = softmax_exp_table(input_scale, 1.0, f32::exp);
    let table_bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
    let table_offset = w.add_const(&table_bytes);
    let mut input = tensor(DType::I8, &[1, 4], Location::Arena(0));
    input.quant = Some(QuantParams {
        scale: input_scale,
        zero_point: 0,
    });
    let mut output = tensor(DType::I8, &[1, 4], Location::Arena(16));
    output.quant = Some(QuantParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    });
    w.arena_size = 32;
    w.inputs.push(input.clone());
    w.outputs.push(output.clone());
    w.ops.push(Op::SoftmaxS8(SoftmaxS8 {
        input,
        output,
        table: tensor(DType::F32, &[256], Location::Const(table_offset)),
        output_scale: 1.0 / 256.0,
        output_zero_point: -128,
    }));
    w.finish().unwrap()
}

/// One float SOFTMAX over 4 values.
fn softmax_f32_model() -> Vec<u8> {
    let mut w = ModelWriter::new();
    let input = tensor(DType::F32, &[1, 4], Location::Arena(0));
    let output = tensor(DType::F32, &[1, 4], Location::Arena(16));
    w.arena_size = 32;
    w.inputs.push(input.clone());
    w.outputs.push(output.clone());
    w.ops.push(Op::SoftmaxF32(SoftmaxF32 {
        input,
        output,
        beta: 1.0,
    }));
    w.finish().unwrap()
}

const INT8_SOFTMAX: bool = cfg!(all(feature = "softmax", feature = "int8"));
const FLOAT_SOFTMAX: bool = cfg!(all(feature = "softmax", feature = "float"));

#[test]
fn int8_softmax_loads_and_runs_exactly_when_enabled() {
    let bytes = AlignedBytes::from_slice(&softmax_s8_model());
    let result = Model::load(bytes.as_slice());
    if !INT8_SOFTMAX {
        assert_eq!(
            result.err(),
            Some(Error::OpNotEnabled {
                op: "SOFTMAX int8",
                features: "softmax+int8"
            })
        );
        return;
    }
    let model = result.unwrap_or_else(|err| panic!("an enabled kernel was refused: {err}"));
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    // Equal logits: each probability is 1/4, i.e. 64/256, stored as 64 - 128.
    model
        .input_mut(arena.as_mut_slice(), 0)
        .unwrap()
        .copy_from_slice(&[5; 4]);
    model.run(arena.as_mut_slice()).unwrap();
    let out = model.output(arena.as_slice(), 0).unwrap();
    assert_eq!(out, &[(64 - 128) as u8; 4]);
}

#[test]
fn float_softmax_is_refused_with_a_typed_error_when_left_out() {
    let bytes = AlignedBytes::from_slice(&softmax_f32_model());
    let result = Model::load(bytes.as_slice());
    if FLOAT_SOFTMAX {
        assert!(result.is_ok(), "{:?}", result.err());
        return;
    }
    let err = result.unwrap_err();
    assert_eq!(
        err,
        Error::OpNotEnabled {
            op: "SOFTMAX float32",
            features: "softmax+float"
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("SOFTMAX float32") && message.contains("softmax+float"),
        "{message}"
    );
}

#[test]
fn op_reports_whether_its_kernel_is_compiled_in() {
    let op = Op::SoftmaxF32(SoftmaxF32 {
        input: tensor(DType::F32, &[1, 4], Location::Arena(0)),
        output: tensor(DType::F32, &[1, 4], Location::Arena(16)),
        beta: 1.0,
    });
    assert_eq!(op.is_enabled(), FLOAT_SOFTMAX);
    assert_eq!(op.kernel().is_some(), FLOAT_SOFTMAX);
    assert_eq!(op.required_features(), "softmax+float");
    assert_eq!(op.flavour(), "SOFTMAX float32");
    // Metadata works without the kernel: inspection tools list left-out ops too.
    assert_eq!(op.name(), "SOFTMAX");
    let mut inputs = 0;
    op.for_each_input(&mut |_| inputs += 1);
    assert_eq!(inputs, 1);
}

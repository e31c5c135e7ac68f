//! Shared by the firmware and ember-link tests: a deterministic int8 model builder.
#![allow(dead_code)]

use ember_runtime::format::ModelWriter;
use ember_runtime::kernels::fully_connected::FullyConnectedS8;
use ember_runtime::kernels::Requant;
use ember_runtime::{DType, Location, Op, QuantParams, Shape, TensorDef};

fn tensor(dtype: DType, dims: &[u32], location: Location, quant: Option<QuantParams>) -> TensorDef {
    TensorDef {
        dtype,
        shape: Shape::new(dims).expect("rank within limits"),
        location,
        quant,
    }
}

fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A two-layer int8 MLP `inputs -> hidden -> outputs`, weights from `seed`.
pub fn mlp_model(inputs: u32, hidden: u32, outputs: u32, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut w = ModelWriter::new();
    let q = |scale, zero_point| Some(QuantParams { scale, zero_point });
    let input = tensor(DType::I8, &[1, inputs], Location::Arena(0), q(0.05, -3));
    let hidden_at = inputs.next_multiple_of(16);
    let mid = tensor(
        DType::I8,
        &[1, hidden],
        Location::Arena(hidden_at),
        q(0.1, 2),
    );
    let out_at = (hidden_at + hidden).next_multiple_of(16);
    let output = tensor(
        DType::I8,
        &[1, outputs],
        Location::Arena(out_at),
        q(0.2, -5),
    );
    w.arena_size = (out_at + outputs).next_multiple_of(16);
    w.inputs.push(input.clone());
    w.outputs.push(output.clone());
    for (layer_in, layer_out, depth_in, depth_out) in [
        (&input, &mid, inputs, hidden),
        (&mid, &output, hidden, outputs),
    ] {
        let weights: Vec<u8> = (0..depth_in * depth_out).map(|_| next() as u8).collect();
        let filter = w.add_const(&weights);
        let biases: Vec<i32> = (0..depth_out)
            .map(|_| (next() % 2001) as i32 - 1000)
            .collect();
        let bias = w.add_const(&i32_bytes(&biases));
        let in_q = layer_in.quant.expect("quantized");
        let out_q = layer_out.quant.expect("quantized");
        let (m, s) = ember_runtime::quant::quantize_multiplier(
            f64::from(in_q.scale) * 0.01 / f64::from(out_q.scale),
        );
        let mults = w.add_const(&i32_bytes(&[m]));
        let shifts = w.add_const(&i32_bytes(&[s]));
        w.ops.push(Op::FullyConnectedS8(FullyConnectedS8 {
            input: layer_in.clone(),
            filter: tensor(
                DType::I8,
                &[depth_out, depth_in],
                Location::Const(filter),
                None,
            ),
            bias: Some(tensor(
                DType::I32,
                &[depth_out],
                Location::Const(bias),
                None,
            )),
            output: layer_out.clone(),
            input_offset: -in_q.zero_point,
            filter_offset: 0,
            output_offset: out_q.zero_point,
            requant: Requant {
                multipliers: tensor(DType::I32, &[1], Location::Const(mults), None),
                shifts: tensor(DType::I32, &[1], Location::Const(shifts), None),
            },
            act_min: -128,
            act_max: 127,
        }));
    }
    w.finish().expect("model within format limits")
}

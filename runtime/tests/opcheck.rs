//! Replays single-op cases recorded from TFLite's reference kernels by
//! `scripts/opcheck/opcheck.py` through ember's scalar references, deriving every kernel
//! parameter the way the param structs' docs tell the converter to.
//!
//! ```text
//! python3 scripts/opcheck/opcheck.py /tmp/opcheck.txt
//! EMBER_OPCHECK=/tmp/opcheck.txt cargo test -p ember-runtime --test opcheck -- --ignored --nocapture
//! ```

use ember_runtime::kernels::activations::*;
use ember_runtime::kernels::concat::concatenation_reference;
use ember_runtime::kernels::elementwise::*;
use ember_runtime::kernels::pad::*;
use ember_runtime::kernels::quantize::*;
use ember_runtime::kernels::reduce::*;
use ember_runtime::kernels::Activation;
use ember_runtime::quant::quantize_multiplier;
use ember_runtime::{DType, Location, QuantParams, Shape, TensorDef};

#[derive(Debug, Clone)]
struct Tensor {
    role: String,
    dtype: DType,
    scale: f32,
    zp: i32,
    dims: Vec<u32>,
    values: Vec<i64>,
}

impl Tensor {
    fn def(&self) -> TensorDef {
        TensorDef {
            dtype: self.dtype,
            shape: Shape::new(&self.dims).unwrap(),
            location: Location::Arena(0),
            quant: (self.dtype == DType::I8).then_some(QuantParams {
                scale: self.scale,
                zero_point: self.zp,
            }),
        }
    }
    fn i8s(&self) -> Vec<i8> {
        self.values.iter().map(|&v| v as i8).collect()
    }
    fn f32s(&self) -> Vec<f32> {
        self.values
            .iter()
            .map(|&v| f32::from_bits(v as u32))
            .collect()
    }
    fn bytes(&self) -> Vec<u8> {
        match self.dtype {
            DType::F32 => self.f32s().iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => self.i8s().iter().map(|&v| v as u8).collect(),
        }
    }
}

#[derive(Debug)]
struct Case {
    op: String,
    attrs: Vec<(String, String)>,
    tensors: Vec<Tensor>,
}

impl Case {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn output(&self) -> &Tensor {
        self.tensors.iter().find(|t| t.role == "out").unwrap()
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.tensors.iter().filter(|t| t.role != "out").collect()
    }
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut current: Option<Case> = None;
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.first().copied() {
            Some("case") => {
                current = Some(Case {
                    op: parts[1].to_string(),
                    attrs: parts[2..]
                        .iter()
                        .filter_map(|kv| {
                            kv.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                        })
                        .collect(),
                    tensors: Vec::new(),
                })
            }
            Some("end") => cases.push(current.take().unwrap()),
            Some(role) => {
                let dtype = match parts[1] {
                    "INT8" => DType::I8,
                    "FLOAT32" => DType::F32,
                    _ => DType::I32,
                };
                let rank: usize = parts[4].parse().unwrap();
                let colon = parts.iter().position(|p| *p == ":").unwrap();
                current.as_mut().unwrap().tensors.push(Tensor {
                    role: role.to_string(),
                    dtype,
                    scale: f32::from_bits(parts[2].parse().unwrap()),
                    zp: parts[3].parse().unwrap(),
                    dims: parts[5..5 + rank]
                        .iter()
                        .map(|d| d.parse().unwrap())
                        .collect(),
                    values: parts[colon + 1..]
                        .iter()
                        .map(|v| v.parse().unwrap())
                        .collect(),
                });
            }
            None => {}
        }
    }
    cases
}

fn activation(name: Option<&str>) -> Activation {
    match name {
        Some("RELU") => Activation::Relu,
        Some("RELU6") => Activation::Relu6,
        Some("RELU_N1_TO_1") => Activation::ReluN1To1,
        _ => Activation::None,
    }
}

/// TFLite `CalculateActivationRangeQuantized` for int8.
fn act_range(act: Activation, scale: f32, zp: i32) -> (i32, i32) {
    let q = |x: f32| zp + (x / scale).round() as i32;
    match act {
        Activation::None => (-128, 127),
        Activation::Relu => (q(0.0).max(-128), 127),
        Activation::Relu6 => (q(0.0).max(-128), q(6.0).min(127)),
        Activation::ReluN1To1 => (q(-1.0).max(-128), q(1.0).min(127)),
    }
}

/// Runs one case; returns the output as raw `i64`s comparable with the recorded ones.
fn run(case: &Case) -> Option<Vec<i64>> {
    let ins = case.inputs();
    let out = case.output();
    let n = out.values.len();
    let to_i64_i8 = |v: Vec<i8>| v.into_iter().map(i64::from).collect::<Vec<_>>();
    let to_i64_f32 = |v: Vec<f32>| {
        v.into_iter()
            .map(|x| x.to_bits() as i64)
            .collect::<Vec<_>>()
    };
    match (case.op.as_str(), out.dtype) {
        ("ADD" | "MUL", DType::I8) => {
            let (a, b) = (ins[0], ins[1]);
            let plan = BroadcastPlan::new(&a.def().shape, &b.def().shape, &out.def().shape)?;
            let (act_min, act_max) = act_range(activation(case.attr("act")), out.scale, out.zp);
            let mut result = vec![0i8; n];
            if case.op == "ADD" {
                let twice_max = (2.0 * a.scale.max(b.scale)) as f64;
                let (m1, s1) = quantize_multiplier(a.scale as f64 / twice_max);
                let (m2, s2) = quantize_multiplier(b.scale as f64 / twice_max);
                let (mo, so) =
                    quantize_multiplier(twice_max / ((1 << 20) as f32 * out.scale) as f64);
                let p = AddS8 {
                    input1: a.def(),
                    input2: b.def(),
                    output: out.def(),
                    left_shift: 20,
                    input1_offset: -a.zp,
                    input1_multiplier: m1,
                    input1_shift: s1,
                    input2_offset: -b.zp,
                    input2_multiplier: m2,
                    input2_shift: s2,
                    output_offset: out.zp,
                    output_multiplier: mo,
                    output_shift: so,
                    act_min,
                    act_max,
                };
                add_s8_reference(&p, &plan, &a.i8s(), &b.i8s(), &mut result);
            } else {
                let (m, s) = quantize_multiplier((a.scale * b.scale / out.scale) as f64);
                let p = MulS8 {
                    input1: a.def(),
                    input2: b.def(),
                    output: out.def(),
                    input1_offset: -a.zp,
                    input2_offset: -b.zp,
                    output_offset: out.zp,
                    output_multiplier: m,
                    output_shift: s,
                    act_min,
                    act_max,
                };
                mul_s8_reference(&p, &plan, &a.i8s(), &b.i8s(), &mut result);
            }
            Some(to_i64_i8(result))
        }
        ("ADD" | "MUL", DType::F32) => {
            let (a, b) = (ins[0], ins[1]);
            let plan = BroadcastPlan::new(&a.def().shape, &b.def().shape, &out.def().shape)?;
            let mut result = vec![0f32; n];
            let act = activation(case.attr("act"));
            if case.op == "ADD" {
                binary_f32_reference(act, &plan, &a.f32s(), &b.f32s(), &mut result, |x, y| x + y);
            } else {
                binary_f32_reference(act, &plan, &a.f32s(), &b.f32s(), &mut result, |x, y| x * y);
            }
            Some(to_i64_f32(result))
        }
        ("MEAN", dtype) => {
            let input = ins[0];
            let rank = input.dims.len() as i64;
            let mut mask = 0u8;
            for &axis in &ins[1].values {
                mask |= 1 << ((axis + rank) % rank);
            }
            let plan = ReducePlan::new(&input.def(), &out.def(), mask)?;
            if dtype == DType::I8 {
                let (multiplier, shift) = mean_s8_multiplier(input.scale, out.scale, plan.count);
                let p = MeanS8 {
                    input: input.def(),
                    output: out.def(),
                    axes_mask: mask,
                    input_sum_offset: input.zp * plan.count as i32,
                    output_zero_point: out.zp,
                    multiplier,
                    shift,
                };
                let mut sums = vec![0i32; n];
                let mut result = vec![0i8; n];
                mean_s8_reference(&p, &plan, &input.i8s(), &mut sums, &mut result);
                Some(to_i64_i8(result))
            } else {
                let mut result = vec![0f32; n];
                mean_f32_reference(&plan, &input.f32s(), &mut result);
                Some(to_i64_f32(result))
            }
        }
        ("SOFTMAX", dtype) => {
            let input = ins[0];
            let beta = f32::from_bits(case.attr("beta")?.parse().ok()?);
            let depth = *input.dims.last()? as usize;
            if dtype == DType::I8 {
                let table = softmax_exp_table(input.scale, beta, f32::exp);
                let p = SoftmaxS8 {
                    input: input.def(),
                    output: out.def(),
                    table: input.def(),
                    output_scale: out.scale,
                    output_zero_point: out.zp,
                };
                let mut result = vec![0i8; n];
                softmax_s8_reference(&p, &table, depth, &input.i8s(), &mut result);
                Some(to_i64_i8(result))
            } else {
                let mut result = vec![0f32; n];
                softmax_f32_reference(beta, depth, &input.f32s(), &mut result);
                Some(to_i64_f32(result))
            }
        }
        ("LOGISTIC" | "TANH", DType::I8) => {
            let input = ins[0];
            let q_in = QuantParams {
                scale: input.scale,
                zero_point: input.zp,
            };
            let q_out = QuantParams {
                scale: out.scale,
                zero_point: out.zp,
            };
            let table = if case.op == "LOGISTIC" {
                lut_s8(q_in, q_out, |x| 1.0 / (1.0 + (-x).exp()))
            } else {
                lut_s8(q_in, q_out, f32::tanh)
            };
            let mut result = vec![0i8; n];
            lookup_s8_reference(&table, &input.i8s(), &mut result);
            Some(to_i64_i8(result))
        }
        ("LOGISTIC" | "TANH", DType::F32) => {
            let f: fn(f32) -> f32 = if case.op == "LOGISTIC" {
                logistic_f32
            } else {
                tanhf
            };
            Some(to_i64_f32(ins[0].f32s().into_iter().map(f).collect()))
        }
        ("QUANTIZE", DType::I8) => {
            let input = ins[0];
            if input.dtype == DType::F32 {
                let p = QuantizeF32ToS8 {
                    input: input.def(),
                    output: out.def(),
                    scale: out.scale,
                    zero_point: out.zp,
                };
                Some(to_i64_i8(
                    input.f32s().into_iter().map(|x| p.element(x)).collect(),
                ))
            } else {
                let (multiplier, shift) =
                    quantize_multiplier(input.scale as f64 / out.scale as f64);
                let p = RequantizeS8 {
                    input: input.def(),
                    output: out.def(),
                    input_zero_point: input.zp,
                    output_zero_point: out.zp,
                    multiplier,
                    shift,
                };
                Some(to_i64_i8(
                    input.i8s().into_iter().map(|q| p.element(q)).collect(),
                ))
            }
        }
        ("DEQUANTIZE", DType::F32) => {
            let input = ins[0];
            let p = DequantizeS8ToF32 {
                input: input.def(),
                output: out.def(),
                scale: input.scale,
                zero_point: input.zp,
            };
            Some(to_i64_f32(
                input.i8s().into_iter().map(|q| p.element(q)).collect(),
            ))
        }
        ("PAD" | "PADV2", _) => {
            let input = ins[0];
            let pads = &ins[1].values;
            let mut pad_value = [0u8; 4];
            if case.op == "PADV2" {
                let c = ins[2].bytes();
                pad_value[..c.len()].copy_from_slice(&c);
            } else if out.dtype == DType::I8 {
                pad_value[0] = out.zp as i8 as u8;
            }
            let p = Pad {
                input: input.def(),
                output: out.def(),
                paddings: pads.chunks(2).map(|c| (c[0] as u32, c[1] as u32)).collect(),
                pad_value,
            };
            let elem = out.dtype.size();
            let mut result = vec![0u8; n * elem];
            pad_reference(
                &p.plan()?,
                elem,
                &pad_value[..elem],
                &input.bytes(),
                &mut result,
            );
            Some(bytes_to_i64(out.dtype, &result))
        }
        ("CONCATENATION", _) => {
            let rank = out.dims.len() as i64;
            let axis = ((case.attr("axis")?.parse::<i64>().ok()? + rank) % rank) as usize;
            let outer: usize = out.dims[..axis].iter().map(|&d| d as usize).product();
            let inner: usize = out.dims[axis + 1..].iter().map(|&d| d as usize).product();
            let elem = out.dtype.size();
            let data: Vec<Vec<u8>> = ins.iter().map(|t| t.bytes()).collect();
            let blocks: Vec<(&[u8], usize)> = ins
                .iter()
                .zip(&data)
                .map(|(t, d)| (d.as_slice(), t.dims[axis] as usize * inner * elem))
                .collect();
            let mut result = vec![0u8; n * elem];
            concatenation_reference(&blocks, outer, &mut result);
            Some(bytes_to_i64(out.dtype, &result))
        }
        _ => None,
    }
}

fn bytes_to_i64(dtype: DType, bytes: &[u8]) -> Vec<i64> {
    match dtype {
        DType::F32 => bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        _ => bytes.iter().map(|&b| b as i8 as i64).collect(),
    }
}

#[test]
#[ignore = "needs EMBER_OPCHECK=<file from scripts/opcheck/opcheck.py>"]
fn kernels_match_tflite_reference_cases() {
    let path = std::env::var("EMBER_OPCHECK").expect("set EMBER_OPCHECK to a case file");
    let cases = parse(&std::fs::read_to_string(path).unwrap());
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let expected = &case.output().values;
        let Some(actual) = run(case) else {
            failures.push(format!(
                "#{index} {} {:?}: not runnable",
                case.op, case.attrs
            ));
            continue;
        };
        let mismatches = actual.iter().zip(expected).filter(|(a, e)| a != e).count();
        if mismatches > 0 {
            let dims: Vec<_> = case.inputs().iter().map(|t| t.dims.clone()).collect();
            failures.push(format!(
                "#{index} {} {:?} {:?} {:?}: {mismatches}/{} differ",
                case.op,
                case.output().dtype,
                case.attrs,
                dims,
                expected.len()
            ));
        }
    }
    println!("{} cases, {} failing", cases.len(), failures.len());
    for f in &failures {
        println!("{f}");
    }
    assert!(failures.is_empty());
}

//! `.emb` writing for chain networks beside `export.rs`: the autoencoder in int8 and float32,
//! and a float32 `.emb` of the DS-CNN built from ember's float kernels (the reference the
//! int8 model is compared against, and the check that burn and ember's float path agree).

use ember_runtime::format::{meta_keys, ModelWriter};
use ember_runtime::frontend::FrontendConfig;
use ember_runtime::kernels::activations::SoftmaxF32;
use ember_runtime::kernels::conv::Conv2dF32;
use ember_runtime::kernels::depthwise::DepthwiseConv2dF32;
use ember_runtime::kernels::fully_connected::{FullyConnectedF32, FullyConnectedS8};
use ember_runtime::kernels::pooling::{Pool2dF32, PoolKind};
use ember_runtime::kernels::{Activation, Requant, Window};
use ember_runtime::ops::Op;
use ember_runtime::quant::{quantize_multiplier, round_half_away};
use ember_runtime::tensor::{DType, Location, QuantParams, Shape, TensorDef};

use crate::anomaly::FoldedDense;
use crate::export::{activation_quant, ExportError, Exported, FoldedNet};

fn shape(dims: &[usize]) -> Result<Shape, ExportError> {
    let dims: Vec<u32> = dims.iter().map(|&d| d as u32).collect();
    Ok(Shape::new(&dims)?)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A chain of ops where activation `k` is written by op `k - 1` and read by op `k`.
struct Chain {
    writer: ModelWriter,
    activations: Vec<TensorDef>,
}

impl Chain {
    fn new() -> Self {
        Chain {
            writer: ModelWriter::new(),
            activations: Vec::new(),
        }
    }

    fn constant(
        &mut self,
        dtype: DType,
        dims: &[usize],
        bytes: &[u8],
    ) -> Result<TensorDef, ExportError> {
        let offset = self.writer.add_const(bytes);
        Ok(TensorDef {
            dtype,
            shape: shape(dims)?,
            location: Location::Const(offset),
            quant: None,
        })
    }

    fn f32s(&mut self, dims: &[usize], values: &[f32]) -> Result<TensorDef, ExportError> {
        self.constant(DType::F32, dims, &f32_bytes(values))
    }

    fn i32s(&mut self, values: &[i32]) -> Result<TensorDef, ExportError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(DType::I32, &[values.len()], &bytes)
    }

    /// Until [`Chain::finish`] plans the arena, the location holds the activation's index.
    fn activation(
        &mut self,
        dtype: DType,
        dims: &[usize],
        quant: Option<QuantParams>,
    ) -> Result<TensorDef, ExportError> {
        let t = TensorDef {
            dtype,
            shape: shape(dims)?,
            location: Location::Arena(self.activations.len() as u32),
            quant,
        };
        self.activations.push(t.clone());
        Ok(t)
    }

    /// Plans the arena, fixes every activation's offset and writes the model bytes.
    fn finish(
        mut self,
        labels: &[String],
        frontend: Option<&FrontendConfig>,
        source: String,
    ) -> Result<(Vec<u8>, usize), ExportError> {
        let steps = self.writer.ops.len();
        let buffers: Vec<ember_convert::plan::Buffer> = self
            .activations
            .iter()
            .enumerate()
            .map(|(k, t)| ember_convert::plan::Buffer {
                size: t.byte_len().unwrap_or(0),
                first_use: k.saturating_sub(1),
                last_use: k.min(steps.saturating_sub(1)),
            })
            .collect();
        let plan = ember_convert::plan::plan(&buffers, 16);
        let fix = |t: &mut TensorDef| {
            if let Location::Arena(k) = t.location {
                let offset = plan.offsets.get(k as usize).copied().unwrap_or(0);
                t.location = Location::Arena(offset as u32);
            }
        };
        for op in &mut self.writer.ops {
            for t in io_tensors(op) {
                fix(t);
            }
        }
        let mut input = self
            .activations
            .first()
            .cloned()
            .ok_or(ExportError::NoCalibration)?;
        let mut output = self
            .activations
            .last()
            .cloned()
            .ok_or(ExportError::NoCalibration)?;
        fix(&mut input);
        fix(&mut output);
        self.writer.inputs = vec![input];
        self.writer.outputs = vec![output];
        self.writer.arena_size = plan.arena_size as u32;
        self.writer
            .metadata
            .push((meta_keys::LABELS.into(), labels.join("\n").into_bytes()));
        if let Some(config) = frontend {
            self.writer
                .metadata
                .push((meta_keys::FRONTEND.into(), config.to_metadata()));
        }
        self.writer
            .metadata
            .push((meta_keys::SOURCE.into(), source.into_bytes()));
        Ok((self.writer.finish()?, plan.arena_size))
    }
}

/// The arena tensors (input and output) of the ops this module writes.
fn io_tensors(op: &mut Op) -> Vec<&mut TensorDef> {
    match op {
        Op::FullyConnectedS8(p) => vec![&mut p.input, &mut p.output],
        Op::FullyConnectedF32(p) => vec![&mut p.input, &mut p.output],
        Op::Conv2dF32(p) => vec![&mut p.input, &mut p.output],
        Op::DepthwiseConv2dF32(p) => vec![&mut p.input, &mut p.output],
        Op::Pool2dF32(p) => vec![&mut p.input, &mut p.output],
        Op::SoftmaxF32(p) => vec![&mut p.input, &mut p.output],
        _ => Vec::new(),
    }
}

fn source(kind: &str, description: &str) -> String {
    format!(
        "ember-models {}: burn {description}, {kind}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Per-output-channel symmetric int8 weights of a `[out, in]` matrix, int32 bias and the
/// requantization `input_scale -> output_scale` (the same rules as `export.rs`).
fn quantize_fc(
    chain: &mut Chain,
    weight: &[f32],
    bias: &[f32],
    inputs: usize,
    input_scale: f32,
    output_scale: f32,
) -> Result<(TensorDef, TensorDef, Requant), ExportError> {
    let outputs = bias.len();
    let scales: Vec<f32> = weight
        .chunks(inputs)
        .map(|row| (row.iter().fold(0f32, |m, w| m.max(w.abs())) / 127.0).max(1e-12))
        .collect();
    let q: Vec<u8> = weight
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let s = scales[i / inputs];
            (round_half_away((w / s) as f64).clamp(-127.0, 127.0) as i8) as u8
        })
        .collect();
    let bias_q: Vec<i32> = bias
        .iter()
        .zip(&scales)
        .map(|(b, s)| round_half_away(*b as f64 / (input_scale as f64 * *s as f64)) as i32)
        .collect();
    let (multipliers, shifts): (Vec<i32>, Vec<i32>) = scales
        .iter()
        .map(|s| quantize_multiplier(input_scale as f64 * *s as f64 / output_scale as f64))
        .unzip();
    let filter = chain.constant(DType::I8, &[outputs, inputs], &q)?;
    let bias = chain.i32s(&bias_q)?;
    let requant = Requant {
        multipliers: chain.i32s(&multipliers)?,
        shifts: chain.i32s(&shifts)?,
    };
    Ok((filter, bias, requant))
}

/// Int8 autoencoder: int8 input `[1, n]` on the calibrated input grid, one FULLY_CONNECTED
/// per layer (ReLU fused into the clamp), int8 reconstruction `[1, n]`.
pub fn export_dense_int8(
    net: &FoldedDense,
    ranges: &[(f32, f32)],
    labels: &[String],
    description: &str,
) -> Result<Exported, ExportError> {
    let mut chain = Chain::new();
    let first = net.layers.first().ok_or(ExportError::NoCalibration)?;
    let &(lo, hi) = ranges.first().ok_or(ExportError::NoCalibration)?;
    let input_quant = activation_quant(lo, hi);
    let mut x = chain.activation(DType::I8, &[1, first.inputs], Some(input_quant))?;
    let mut x_quant = input_quant;
    for (index, layer) in net.layers.iter().enumerate() {
        let &(lo, hi) = ranges.get(index + 1).ok_or(ExportError::NoCalibration)?;
        let out_quant = activation_quant(lo, hi);
        let output = chain.activation(DType::I8, &[1, layer.outputs], Some(out_quant))?;
        let (filter, bias, requant) = quantize_fc(
            &mut chain,
            &layer.weight,
            &layer.bias,
            layer.inputs,
            x_quant.scale,
            out_quant.scale,
        )?;
        chain
            .writer
            .ops
            .push(Op::FullyConnectedS8(FullyConnectedS8 {
                input: x,
                filter,
                bias: Some(bias),
                output: output.clone(),
                input_offset: -x_quant.zero_point,
                filter_offset: 0,
                output_offset: out_quant.zero_point,
                requant,
                act_min: if layer.relu {
                    out_quant.zero_point.max(-128)
                } else {
                    -128
                },
                act_max: 127,
            }));
        x = output;
        x_quant = out_quant;
    }
    let (bytes, arena_bytes) =
        chain.finish(labels, None, source("post-training int8", description))?;
    Ok(Exported {
        bytes,
        input_quant,
        arena_bytes,
        macs: net.macs(),
    })
}

/// Float32 autoencoder from ember's FULLY_CONNECTED float kernel.
pub fn export_dense_f32(
    net: &FoldedDense,
    labels: &[String],
    description: &str,
) -> Result<Vec<u8>, ExportError> {
    let mut chain = Chain::new();
    let first = net.layers.first().ok_or(ExportError::NoCalibration)?;
    let mut x = chain.activation(DType::F32, &[1, first.inputs], None)?;
    for layer in &net.layers {
        let output = chain.activation(DType::F32, &[1, layer.outputs], None)?;
        let filter = chain.f32s(&[layer.outputs, layer.inputs], &layer.weight)?;
        let bias = chain.f32s(&[layer.outputs], &layer.bias)?;
        chain
            .writer
            .ops
            .push(Op::FullyConnectedF32(FullyConnectedF32 {
                input: x,
                filter,
                bias: Some(bias),
                output: output.clone(),
                activation: if layer.relu {
                    Activation::Relu
                } else {
                    Activation::None
                },
            }));
        x = output;
    }
    Ok(chain
        .finish(labels, None, source("float32", description))?
        .0)
}

/// Float32 DS-CNN (folded) from ember's float kernels, softmax output like the int8 model.
pub fn export_dscnn_f32(
    net: &FoldedNet,
    labels: &[String],
    frontend: Option<&FrontendConfig>,
) -> Result<Vec<u8>, ExportError> {
    let mut chain = Chain::new();
    let [mut h, mut w, cin] = net.shape.input;
    let mut x = chain.activation(DType::F32, &[1, h, w, cin], None)?;
    for conv in &net.convs {
        let oh = h.div_ceil(conv.stride[0]);
        let ow = w.div_ceil(conv.stride[1]);
        let oc = conv.out_channels;
        let [kh, kw] = conv.kernel;
        let output = chain.activation(DType::F32, &[1, oh, ow, oc], None)?;
        let window = Window {
            stride_h: conv.stride[0] as u16,
            stride_w: conv.stride[1] as u16,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: conv.pad[0] as u16,
            pad_left: conv.pad[1] as u16,
        };
        let bias = chain.f32s(&[oc], &conv.bias)?;
        let op = if conv.depthwise {
            let filter = chain.f32s(&[1, kh, kw, oc], &conv.weight)?;
            Op::DepthwiseConv2dF32(DepthwiseConv2dF32 {
                input: x,
                filter,
                bias: Some(bias),
                output: output.clone(),
                window,
                depth_multiplier: 1,
                activation: Activation::Relu,
            })
        } else {
            let filter = chain.f32s(&[oc, kh, kw, conv.in_channels], &conv.weight)?;
            Op::Conv2dF32(Conv2dF32 {
                input: x,
                filter,
                bias: Some(bias),
                output: output.clone(),
                window,
                activation: Activation::Relu,
            })
        };
        chain.writer.ops.push(op);
        x = output;
        h = oh;
        w = ow;
    }
    let channels = net.shape.channels;
    let pooled = chain.activation(DType::F32, &[1, 1, 1, channels], None)?;
    chain.writer.ops.push(Op::Pool2dF32(Pool2dF32 {
        kind: PoolKind::Average,
        input: x,
        output: pooled.clone(),
        filter_h: h as u16,
        filter_w: w as u16,
        window: Window {
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
        },
        activation: Activation::None,
    }));
    let classes = net.shape.classes;
    let logits = chain.activation(DType::F32, &[1, classes], None)?;
    let filter = chain.f32s(&[classes, channels], &net.fc_weight)?;
    let bias = chain.f32s(&[classes], &net.fc_bias)?;
    chain
        .writer
        .ops
        .push(Op::FullyConnectedF32(FullyConnectedF32 {
            input: pooled,
            filter,
            bias: Some(bias),
            output: logits.clone(),
            activation: Activation::None,
        }));
    let probs = chain.activation(DType::F32, &[1, classes], None)?;
    chain.writer.ops.push(Op::SoftmaxF32(SoftmaxF32 {
        input: logits,
        output: probs,
        beta: 1.0,
    }));
    let description = format!("DS-CNN ({})", net.shape.to_text());
    Ok(chain
        .finish(labels, frontend, source("float32", &description))?
        .0)
}

//! burn -> ember: fold each batch norm into the convolution before it, run the folded float
//! network (NHWC, plain Rust) over a calibration set to find activation ranges, quantize
//! (per-channel symmetric int8 weights, int32 biases, asymmetric int8 activations, ReLU fused
//! into the clamp range) and write the `.emb` with `ModelWriter`, arena planned by
//! ember-convert's planner.

use burn::tensor::Tensor;
use ember_runtime::format::{meta_keys, ModelWriter};
use ember_runtime::frontend::FrontendConfig;
use ember_runtime::kernels::activations::{softmax_exp_table, SoftmaxS8};
use ember_runtime::kernels::conv::Conv2dS8;
use ember_runtime::kernels::depthwise::DepthwiseConv2dS8;
use ember_runtime::kernels::fully_connected::FullyConnectedS8;
use ember_runtime::kernels::pooling::{Pool2dS8, PoolKind};
use ember_runtime::kernels::{Requant, Window};
use ember_runtime::ops::Op;
use ember_runtime::quant::{quantize_multiplier, round_half_away};
use ember_runtime::tensor::{DType, Location, QuantParams, Shape, TensorDef};

use crate::model::{ConvBn, DsCnn, DsCnnShape};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("ember: {0:?}")]
    Ember(ember_runtime::Error),
    #[error("empty calibration set")]
    NoCalibration,
}

impl From<ember_runtime::Error> for ExportError {
    fn from(e: ember_runtime::Error) -> Self {
        ExportError::Ember(e)
    }
}

/// A convolution with batch norm folded in, NHWC/OHWI.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    /// `[out, kh, kw, in]` (full) or `[kh, kw, channels]` (depthwise, `in` = 1).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub depthwise: bool,
}

/// The whole network after folding: convolutions (each with ReLU), global average pool, FC.
#[derive(Debug, Clone)]
pub struct FoldedNet {
    pub shape: DsCnnShape,
    pub convs: Vec<FoldedConv>,
    /// `[classes, channels]`.
    pub fc_weight: Vec<f32>,
    pub fc_bias: Vec<f32>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn fold(layer: &ConvBn, depthwise: bool, stride: [usize; 2], pad: [usize; 2]) -> FoldedConv {
    let w = values(layer.conv.weight.val());
    let [out_ch, in_per_group, kh, kw] = layer.conv.weight.val().dims();
    let gamma = values(layer.norm.gamma.val());
    let beta = values(layer.norm.beta.val());
    let mean = values(layer.norm.running_mean.value());
    let var = values(layer.norm.running_var.value());
    let eps = layer.norm.epsilon as f32;
    let mut weight = vec![0f32; w.len()];
    let mut bias = vec![0f32; out_ch];
    for o in 0..out_ch {
        let factor = gamma[o] / (var[o] + eps).sqrt();
        bias[o] = beta[o] - mean[o] * factor;
        for i in 0..in_per_group {
            for y in 0..kh {
                for x in 0..kw {
                    let src = ((o * in_per_group + i) * kh + y) * kw + x;
                    let dst = if depthwise {
                        (y * kw + x) * out_ch + o
                    } else {
                        ((o * kh + y) * kw + x) * in_per_group + i
                    };
                    weight[dst] = w[src] * factor;
                }
            }
        }
    }
    FoldedConv {
        weight,
        bias,
        out_channels: out_ch,
        in_channels: if depthwise { out_ch } else { in_per_group },
        kernel: [kh, kw],
        stride,
        pad,
        depthwise,
    }
}

impl FoldedNet {
    pub fn from_burn(model: &DsCnn, shape: &DsCnnShape) -> Self {
        let [h, w, _] = shape.input;
        let (top, _, _) = DsCnnShape::same(h, shape.first_kernel[0], shape.first_stride[0]);
        let (left, _, _) = DsCnnShape::same(w, shape.first_kernel[1], shape.first_stride[1]);
        let mut convs = vec![fold(&model.first, false, shape.first_stride, [top, left])];
        let [bh, bw] = shape.body_size();
        let (dtop, _, _) = DsCnnShape::same(bh, shape.block_kernel[0], 1);
        let (dleft, _, _) = DsCnnShape::same(bw, shape.block_kernel[1], 1);
        for (i, layer) in model.body.iter().enumerate() {
            let depthwise = i % 2 == 0;
            let pad = if depthwise { [dtop, dleft] } else { [0, 0] };
            convs.push(fold(layer, depthwise, [1, 1], pad));
        }
        // burn's Linear weight is [in, out]; FULLY_CONNECTED wants [out, in].
        let lw = values(model.classifier.weight.val());
        let (cin, cout) = (shape.channels, shape.classes);
        let mut fc_weight = vec![0f32; lw.len()];
        for i in 0..cin {
            for o in 0..cout {
                fc_weight[o * cin + i] = lw[i * cout + o];
            }
        }
        let fc_bias = model
            .classifier
            .bias
            .as_ref()
            .map(|b| values(b.val()))
            .unwrap_or_else(|| vec![0.0; cout]);
        FoldedNet {
            shape: shape.clone(),
            convs,
            fc_weight,
            fc_bias,
        }
    }

    /// Float forward over one NHWC example; `observe(layer, activations)` sees the input
    /// (layer 0), every convolution output, and the logits (last).
    pub fn forward(&self, input: &[f32], mut observe: impl FnMut(usize, &[f32])) -> Vec<f32> {
        let [mut h, mut w, _] = self.shape.input;
        let mut x = input.to_vec();
        observe(0, &x);
        for (index, conv) in self.convs.iter().enumerate() {
            let oh = h.div_ceil(conv.stride[0]);
            let ow = w.div_ceil(conv.stride[1]);
            let oc = conv.out_channels;
            let ic = conv.in_channels;
            let mut out = vec![0f32; oh * ow * oc];
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..oc {
                        let mut acc = conv.bias[o];
                        for ky in 0..conv.kernel[0] {
                            let iy = (oy * conv.stride[0] + ky) as isize - conv.pad[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..conv.kernel[1] {
                                let ix = (ox * conv.stride[1] + kx) as isize - conv.pad[1] as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let pixel = (iy as usize * w + ix as usize) * ic;
                                if conv.depthwise {
                                    acc += x[pixel + o]
                                        * conv.weight[(ky * conv.kernel[1] + kx) * oc + o];
                                } else {
                                    let base =
                                        ((o * conv.kernel[0] + ky) * conv.kernel[1] + kx) * ic;
                                    for i in 0..ic {
                                        acc += x[pixel + i] * conv.weight[base + i];
                                    }
                                }
                            }
                        }
                        out[(oy * ow + ox) * oc + o] = acc.max(0.0);
                    }
                }
            }
            x = out;
            h = oh;
            w = ow;
            observe(index + 1, &x);
        }
        let channels = self.shape.channels;
        let mut pooled = vec![0f32; channels];
        for pixel in x.chunks(channels) {
            for (p, v) in pooled.iter_mut().zip(pixel) {
                *p += v;
            }
        }
        pooled.iter_mut().for_each(|p| *p /= (h * w) as f32);
        let logits: Vec<f32> = (0..self.shape.classes)
            .map(|o| {
                self.fc_bias[o]
                    + pooled
                        .iter()
                        .zip(&self.fc_weight[o * channels..(o + 1) * channels])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
            })
            .collect();
        observe(self.convs.len() + 1, &logits);
        logits
    }

    /// Multiply-accumulates of one inference (convolutions, pool and FC).
    pub fn macs(&self) -> u64 {
        let [mut h, mut w, _] = self.shape.input;
        let mut total = 0u64;
        for conv in &self.convs {
            h = h.div_ceil(conv.stride[0]);
            w = w.div_ceil(conv.stride[1]);
            let per_output =
                conv.kernel[0] * conv.kernel[1] * if conv.depthwise { 1 } else { conv.in_channels };
            total += (h * w * conv.out_channels * per_output) as u64;
        }
        total
            + (h * w * self.shape.channels) as u64
            + (self.shape.channels * self.shape.classes) as u64
    }
}

/// How activation ranges are taken from the calibration set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    MinMax,
    /// Clip each range to this percentile of the observed values (e.g. 99.99).
    Percentile(f64),
}

/// Observed `[min, max]` per observation point of [`FoldedNet::forward`].
pub fn calibrate(
    net: &FoldedNet,
    inputs: &[&[f32]],
    method: Calibration,
) -> Result<Vec<(f32, f32)>, ExportError> {
    if inputs.is_empty() {
        return Err(ExportError::NoCalibration);
    }
    let points = net.convs.len() + 2;
    let mut samples: Vec<Vec<f32>> = vec![Vec::new(); points];
    for input in inputs {
        net.forward(input, |i, x| samples[i].extend_from_slice(x));
    }
    Ok(samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.total_cmp(b));
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            let (lo, hi) = match method {
                Calibration::MinMax => (v[0], v[v.len() - 1]),
                Calibration::Percentile(p) => (at(1.0 - p / 100.0), at(p / 100.0)),
            };
            (lo.min(0.0), hi.max(0.0))
        })
        .collect())
}

/// Asymmetric int8 parameters covering `[lo, hi]` (which contains 0).
pub fn activation_quant(lo: f32, hi: f32) -> QuantParams {
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero_point =
        (-128.0 - round_half_away((lo / scale) as f64) as f32).clamp(-128.0, 127.0) as i32;
    QuantParams { scale, zero_point }
}

fn shape(dims: &[usize]) -> Result<Shape, ExportError> {
    let dims: Vec<u32> = dims.iter().map(|&d| d as u32).collect();
    Ok(Shape::new(&dims)?)
}

struct Builder {
    writer: ModelWriter,
    /// Activation tensors in creation order (the arena planner places them).
    activations: Vec<TensorDef>,
}

impl Builder {
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

    fn activation(&mut self, dims: &[usize], quant: QuantParams) -> Result<TensorDef, ExportError> {
        // Until the arena is planned, an activation's location holds its index in `activations`.
        let t = TensorDef {
            dtype: DType::I8,
            shape: shape(dims)?,
            location: Location::Arena(self.activations.len() as u32),
            quant: Some(quant),
        };
        self.activations.push(t.clone());
        Ok(t)
    }

    fn i32s(&mut self, values: &[i32]) -> Result<TensorDef, ExportError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(DType::I32, &[values.len()], &bytes)
    }

    /// Per-channel symmetric int8 weights (`channel_of(i)` gives element i's output channel),
    /// int32 bias and requantization for `input_scale -> output_scale`.
    fn weights(
        &mut self,
        weight: &[f32],
        bias: &[f32],
        channel_of: impl Fn(usize) -> usize,
        dims: &[usize],
        input_scale: f32,
        output_scale: f32,
    ) -> Result<(TensorDef, TensorDef, Requant), ExportError> {
        let channels = bias.len();
        let mut max_abs = vec![0f32; channels];
        for (i, w) in weight.iter().enumerate() {
            let c = channel_of(i);
            max_abs[c] = max_abs[c].max(w.abs());
        }
        let scales: Vec<f32> = max_abs.iter().map(|m| (m / 127.0).max(1e-12)).collect();
        let q: Vec<u8> = weight
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (round_half_away((w / scales[channel_of(i)]) as f64).clamp(-127.0, 127.0) as i8)
                    as u8
            })
            .collect();
        let bias_q: Vec<i32> = bias
            .iter()
            .zip(&scales)
            .map(|(b, s)| round_half_away((*b as f64) / (input_scale as f64 * *s as f64)) as i32)
            .collect();
        let (multipliers, shifts): (Vec<i32>, Vec<i32>) = scales
            .iter()
            .map(|s| quantize_multiplier(input_scale as f64 * *s as f64 / output_scale as f64))
            .unzip();
        let filter = self.constant(DType::I8, dims, &q)?;
        let bias = self.i32s(&bias_q)?;
        let requant = Requant {
            multipliers: self.i32s(&multipliers)?,
            shifts: self.i32s(&shifts)?,
        };
        Ok((filter, bias, requant))
    }
}

/// Everything the model card reports about an exported model.
#[derive(Debug, Clone)]
pub struct Exported {
    pub bytes: Vec<u8>,
    pub input_quant: QuantParams,
    pub arena_bytes: usize,
    pub macs: u64,
}

/// `input_quant`: the grid the network was trained on (see `train --quantized-input`), or
/// None to take it from the calibrated input range.
pub fn export(
    net: &FoldedNet,
    ranges: &[(f32, f32)],
    input_quant: Option<QuantParams>,
    labels: &[String],
    frontend: Option<&FrontendConfig>,
) -> Result<Exported, ExportError> {
    let mut b = Builder {
        writer: ModelWriter::new(),
        activations: Vec::new(),
    };
    let [mut h, mut w, cin] = net.shape.input;
    let input_quant = input_quant.unwrap_or_else(|| activation_quant(ranges[0].0, ranges[0].1));
    let input = b.activation(&[1, h, w, cin], input_quant)?;
    let mut x = input.clone();
    for (index, conv) in net.convs.iter().enumerate() {
        let oh = h.div_ceil(conv.stride[0]);
        let ow = w.div_ceil(conv.stride[1]);
        let (lo, hi) = ranges[index + 1];
        let out_quant = activation_quant(lo, hi);
        let output = b.activation(&[1, oh, ow, conv.out_channels], out_quant)?;
        let in_quant = x.quant.unwrap_or(input_quant);
        let window = Window {
            stride_h: conv.stride[0] as u16,
            stride_w: conv.stride[1] as u16,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: conv.pad[0] as u16,
            pad_left: conv.pad[1] as u16,
        };
        // Fused ReLU: clamp at the zero point.
        let act_min = out_quant.zero_point.max(-128);
        let [kh, kw] = conv.kernel;
        let oc = conv.out_channels;
        let op = if conv.depthwise {
            let (filter, bias, requant) = b.weights(
                &conv.weight,
                &conv.bias,
                |i| i % oc,
                &[1, kh, kw, oc],
                in_quant.scale,
                out_quant.scale,
            )?;
            Op::DepthwiseConv2dS8(DepthwiseConv2dS8 {
                input: x.clone(),
                filter,
                bias: Some(bias),
                output: output.clone(),
                window,
                depth_multiplier: 1,
                input_offset: -in_quant.zero_point,
                output_offset: out_quant.zero_point,
                requant,
                act_min,
                act_max: 127,
            })
        } else {
            let per_channel = kh * kw * conv.in_channels;
            let (filter, bias, requant) = b.weights(
                &conv.weight,
                &conv.bias,
                |i| i / per_channel,
                &[oc, kh, kw, conv.in_channels],
                in_quant.scale,
                out_quant.scale,
            )?;
            Op::Conv2dS8(Conv2dS8 {
                input: x.clone(),
                filter,
                bias: Some(bias),
                output: output.clone(),
                window,
                input_offset: -in_quant.zero_point,
                output_offset: out_quant.zero_point,
                requant,
                act_min,
                act_max: 127,
            })
        };
        b.writer.ops.push(op);
        x = output;
        h = oh;
        w = ow;
    }
    let channels = net.shape.channels;
    let pool_quant = x.quant.unwrap_or(input_quant);
    let pooled = b.activation(&[1, 1, 1, channels], pool_quant)?;
    b.writer.ops.push(Op::Pool2dS8(Pool2dS8 {
        kind: PoolKind::Average,
        input: x.clone(),
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
        act_min: -128,
        act_max: 127,
    }));
    let classes = net.shape.classes;
    let (lo, hi) = ranges[net.convs.len() + 1];
    let logits_quant = activation_quant(lo, hi);
    let logits = b.activation(&[1, classes], logits_quant)?;
    let (filter, bias, requant) = b.weights(
        &net.fc_weight,
        &net.fc_bias,
        |i| i / channels,
        &[classes, channels],
        pool_quant.scale,
        logits_quant.scale,
    )?;
    b.writer.ops.push(Op::FullyConnectedS8(FullyConnectedS8 {
        input: pooled,
        filter,
        bias: Some(bias),
        output: logits.clone(),
        input_offset: -pool_quant.zero_point,
        filter_offset: 0,
        output_offset: logits_quant.zero_point,
        requant,
        act_min: -128,
        act_max: 127,
    }));
    let table = softmax_exp_table(logits_quant.scale, 1.0, f32::exp);
    let table_bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
    let table = b.constant(DType::F32, &[256], &table_bytes)?;
    let probs_quant = QuantParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };
    let probs = b.activation(&[1, classes], probs_quant)?;
    b.writer.ops.push(Op::SoftmaxS8(SoftmaxS8 {
        input: logits,
        output: probs,
        table,
        output_scale: probs_quant.scale,
        output_zero_point: probs_quant.zero_point,
    }));

    // Activation k is written by op k-1 and read by op k: a chain, so each buffer lives for
    // two steps; ember-convert's planner packs them.
    let steps = b.writer.ops.len();
    let buffers: Vec<ember_convert::plan::Buffer> = b
        .activations
        .iter()
        .enumerate()
        .map(|(k, t)| ember_convert::plan::Buffer {
            size: t.byte_len().unwrap_or(0),
            first_use: k.saturating_sub(1),
            last_use: k.min(steps - 1),
        })
        .collect();
    let plan = ember_convert::plan::plan(&buffers, 16);
    let offsets = plan.offsets.clone();
    let fix = |t: &mut TensorDef| {
        if let Location::Arena(k) = t.location {
            let offset = offsets.get(k as usize).copied().unwrap_or(0);
            t.location = Location::Arena(offset as u32);
        }
    };
    for op in &mut b.writer.ops {
        match op {
            Op::Conv2dS8(p) => {
                fix(&mut p.input);
                fix(&mut p.output);
            }
            Op::DepthwiseConv2dS8(p) => {
                fix(&mut p.input);
                fix(&mut p.output);
            }
            Op::Pool2dS8(p) => {
                fix(&mut p.input);
                fix(&mut p.output);
            }
            Op::FullyConnectedS8(p) => {
                fix(&mut p.input);
                fix(&mut p.output);
            }
            Op::SoftmaxS8(p) => {
                fix(&mut p.input);
                fix(&mut p.output);
            }
            _ => {}
        }
    }
    let mut graph_input = input;
    fix(&mut graph_input);
    let mut graph_output = b.activations[b.activations.len() - 1].clone();
    fix(&mut graph_output);
    b.writer.inputs = vec![graph_input];
    b.writer.outputs = vec![graph_output];
    b.writer.arena_size = plan.arena_size as u32;
    b.writer
        .metadata
        .push((meta_keys::LABELS.into(), labels.join("\n").into_bytes()));
    if let Some(config) = frontend {
        b.writer
            .metadata
            .push((meta_keys::FRONTEND.into(), config.to_metadata()));
    }
    b.writer.metadata.push((
        meta_keys::SOURCE.into(),
        format!(
            "ember-models {}: burn DS-CNN ({}), post-training int8",
            env!("CARGO_PKG_VERSION"),
            net.shape.to_text()
        )
        .into_bytes(),
    ));
    let bytes = b.writer.finish()?;
    Ok(Exported {
        bytes,
        input_quant,
        arena_bytes: plan.arena_size,
        macs: net.macs(),
    })
}

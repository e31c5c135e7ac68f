//! Maps TFLite operators onto ember's `Op` variants with kernel-ready parameters.

use std::collections::HashMap;

use ember_runtime::format::{meta_keys, ModelWriter};
use ember_runtime::kernels::{
    activations, concat, conv, depthwise, elementwise, fully_connected, hybrid, pad, pooling,
    quantize, reduce, reshape, Activation, Requant, Window,
};
use ember_runtime::quant::quantize_multiplier;
use ember_runtime::tensor::MAX_RANK;
use ember_runtime::{DType, Location, Op, QuantParams, Shape, TensorDef};

use crate::plan::{self, Buffer};
use crate::tflite::{builtin, options_type, Model, OpCode, Operator, Tensor, TensorType};
use crate::{ConvertError, ConvertOptions};

/// Alignment of every arena offset.
const ARENA_ALIGN: usize = 16;
/// Largest arena the converter will plan (the format stores offsets as u32).
const MAX_ARENA: usize = 1 << 30;

const SUPPORTED: &str = "CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, ADD, MUL, PAD, PADV2, MEAN, RESHAPE, SQUEEZE, EXPAND_DIMS, SOFTMAX, LOGISTIC, TANH, CONCATENATION, QUANTIZE, DEQUANTIZE";

/// What a conversion did, for `ember convert` to print.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// Operators in the written model.
    pub op_count: usize,
    /// Operators in the TFLite graph.
    pub tflite_op_count: usize,
    /// DEQUANTIZE ops of constant weights folded into float constants.
    pub folded_dequantize: usize,
    /// RESHAPE-like ops whose output shares its input's memory.
    pub aliased_reshapes: usize,
    /// Planned activation arena, bytes.
    pub arena_size: usize,
    /// The most bytes alive at one step: no plan can be smaller.
    pub arena_lower_bound: usize,
    /// Constant section, bytes.
    pub const_size: usize,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

type Result<T> = core::result::Result<T, ConvertError>;

fn invalid(msg: impl Into<String>) -> ConvertError {
    ConvertError::Invalid(msg.into())
}

fn op_display_name(op: &Operator<'_>) -> String {
    match &op.code {
        OpCode::Builtin(code) => {
            let name = builtin::name(*code);
            if name == "an unknown builtin" {
                format!("builtin op {code}")
            } else {
                name.to_owned()
            }
        }
        OpCode::Custom(name) => format!("CUSTOM '{name}'"),
    }
}

fn is_reshape_like(code: i32) -> bool {
    matches!(
        code,
        builtin::RESHAPE | builtin::SQUEEZE | builtin::EXPAND_DIMS
    )
}

fn runtime_dtype(t: TensorType) -> Option<DType> {
    match t {
        TensorType::Int8 => Some(DType::I8),
        TensorType::Int16 => Some(DType::I16),
        TensorType::Int32 => Some(DType::I32),
        TensorType::Float32 => Some(DType::F32),
        _ => None,
    }
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let mant = (bits & 0x3ff) as u32;
    let out = if exp == 0 {
        if mant == 0 {
            sign
        } else {
            // Subnormal half: value = mant * 2^-24, exact in f32.
            let v = mant as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | ((exp + 112) << 23) | (mant << 13)
    };
    f32::from_bits(out)
}

/// Operator-scoped error helpers.
struct OpCtx<'o> {
    index: usize,
    name: &'o str,
}

impl OpCtx<'_> {
    fn unsupported(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Unsupported {
            index: self.index,
            op: self.name.to_owned(),
            reason: reason.into(),
        }
    }

    fn invalid(&self, reason: impl core::fmt::Display) -> ConvertError {
        ConvertError::Invalid(format!(
            "operator #{} ({}): {reason}",
            self.index, self.name
        ))
    }
}

struct Lowering<'m, 'a> {
    model: &'m Model<'a>,
    writer: ModelWriter,
    /// Float data for tensors produced by folded DEQUANTIZE ops.
    folded: HashMap<usize, Vec<u8>>,
    /// Constant-section offsets of tensors already written.
    const_offsets: HashMap<usize, u32>,
    /// Arena offsets of activation tensors.
    arena: HashMap<usize, u32>,
    /// Arena offset and `I32` element count of hybrid ops' scratch tensors, by TFLite operator index.
    scratch: HashMap<usize, (u32, u32)>,
}

impl<'m, 'a> Lowering<'m, 'a> {
    fn tensor(&self, index: i32) -> Result<&'m Tensor<'a>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.model.tensors.get(i))
            .ok_or_else(|| invalid(format!("tensor index {index} out of range")))
    }

    fn is_const(&self, index: usize) -> bool {
        self.folded.contains_key(&index)
            || self
                .model
                .tensors
                .get(index)
                .is_some_and(|t| t.data.is_some())
    }

    fn shape(&self, index: usize) -> Result<Shape> {
        let t = &self.model.tensors[index];
        if t.shape.len() > MAX_RANK {
            return Err(invalid(format!(
                "tensor {index} ('{}') has rank {}, ember supports at most {MAX_RANK}",
                t.name,
                t.shape.len()
            )));
        }
        let mut dims = Vec::with_capacity(t.shape.len());
        for &d in &t.shape {
            let d = u32::try_from(d).map_err(|_| {
                invalid(format!(
                    "tensor {index} ('{}') has a dynamic or negative dimension {d}; re-export with fixed shapes",
                    t.name
                ))
            })?;
            dims.push(d);
        }
        Shape::new(&dims).map_err(|_| invalid(format!("tensor {index} rank too large")))
    }

    /// The runtime dtype of a tensor, as seen after folding (folded tensors are float).
    fn dtype(&self, index: usize) -> Option<DType> {
        if self.folded.contains_key(&index) {
            return Some(DType::F32);
        }
        runtime_dtype(self.model.tensors[index].dtype)
    }

    fn byte_len(&self, index: usize) -> Result<usize> {
        let t = &self.model.tensors[index];
        let dtype = self.dtype(index).ok_or_else(|| {
            invalid(format!(
                "tensor {index} ('{}') has type {}, which ember cannot store",
                t.name,
                t.dtype.name()
            ))
        })?;
        self.shape(index)?
            .elements()
            .and_then(|e| e.checked_mul(dtype.size()))
            .filter(|&n| n <= MAX_ARENA)
            .ok_or_else(|| invalid(format!("tensor {index} ('{}') is too large", t.name)))
    }

    /// Per-tensor quantization, `None` unless there is exactly one finite positive scale and
    /// a zero point inside the int8 range (kernels negate and add zero points freely).
    fn per_tensor_quant(&self, index: usize) -> Option<QuantParams> {
        let q = self.model.tensors[index].quant.as_ref()?;
        if q.scale.len() != 1 || !(q.scale[0].is_finite() && q.scale[0] > 0.0) {
            return None;
        }
        let zero_point = q.zero_point.first().copied().unwrap_or(0);
        if !(-128..=127).contains(&zero_point) {
            return None;
        }
        Some(QuantParams {
            scale: q.scale[0],
            zero_point: zero_point as i32,
        })
    }

    /// Definition of any tensor an op reads or writes (arena or constant).
    fn def(&mut self, index: i32) -> Result<TensorDef> {
        let t = self.tensor(index)?;
        let index = index as usize;
        let dtype = self.dtype(index).ok_or_else(|| {
            invalid(format!(
                "tensor {index} ('{}') has type {}; supported: int8, int16, int32, float32",
                t.name,
                t.dtype.name()
            ))
        })?;
        let shape = self.shape(index)?;
        if self.is_const(index) {
            let offset = self.const_offset(index, dtype)?;
            return Ok(TensorDef {
                dtype,
                shape,
                location: Location::Const(offset),
                quant: None,
            });
        }
        let offset = *self.arena.get(&index).ok_or_else(|| {
            invalid(format!(
                "tensor {index} ('{}') is read before any operator writes it",
                t.name
            ))
        })?;
        let quant = if dtype == DType::F32 {
            None
        } else {
            self.per_tensor_quant(index)
        };
        Ok(TensorDef {
            dtype,
            shape,
            location: Location::Arena(offset),
            quant,
        })
    }

    fn const_offset(&mut self, index: usize, dtype: DType) -> Result<u32> {
        if let Some(&o) = self.const_offsets.get(&index) {
            return Ok(o);
        }
        let expected = self.byte_len(index)?;
        let bytes: &[u8] = match self.folded.get(&index) {
            Some(b) => b,
            None => self.model.tensors[index].data.unwrap_or(&[]),
        };
        if bytes.len() != expected {
            return Err(invalid(format!(
                "tensor {index} ('{}') holds {} bytes, its shape and {} type need {expected}",
                self.model.tensors[index].name,
                bytes.len(),
                dtype.name()
            )));
        }
        let offset = self.writer.add_const(bytes);
        self.const_offsets.insert(index, offset);
        Ok(offset)
    }

    fn new_const(&mut self, dtype: DType, bytes: &[u8], len: usize) -> Result<TensorDef> {
        let offset = self.writer.add_const(bytes);
        Ok(TensorDef {
            dtype,
            shape: Shape::new(&[len as u32]).map_err(ConvertError::Write)?,
            location: Location::Const(offset),
            quant: None,
        })
    }

    fn const_i32(&mut self, values: &[i32]) -> Result<TensorDef> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.new_const(DType::I32, &bytes, values.len())
    }

    fn const_f32(&mut self, values: &[f32]) -> Result<TensorDef> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.new_const(DType::F32, &bytes, values.len())
    }

    /// The constant int32 values of a tensor (shape/axes/paddings inputs); int64 is narrowed.
    fn const_ints(&self, index: i32) -> Result<Vec<i64>> {
        let t = self.tensor(index)?;
        let data = t.data.ok_or_else(|| {
            invalid(format!(
                "tensor {index} ('{}') must be constant (axes, paddings)",
                t.name
            ))
        })?;
        match t.dtype {
            TensorType::Int32 => Ok(data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect()),
            TensorType::Int64 => Ok(data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()),
            other => Err(invalid(format!(
                "tensor {index} must be int32 or int64, found {}",
                other.name()
            ))),
        }
    }
}

/// Builds the whole `.emb` for the first subgraph.
pub fn lower(model: &Model<'_>, options: &ConvertOptions) -> Result<(Vec<u8>, Report)> {
    let mut report = Report {
        tflite_op_count: model.operators.len(),
        ..Report::default()
    };
    if model.subgraph_count > 1 {
        report.warnings.push(format!(
            "the model has {} subgraphs; only the first (main) graph is converted",
            model.subgraph_count
        ));
    }
    let mut lowering = Lowering {
        model,
        writer: ModelWriter::new(),
        folded: HashMap::new(),
        const_offsets: HashMap::new(),
        arena: HashMap::new(),
        scratch: HashMap::new(),
    };

    // 1. Fold DEQUANTIZE of constant weights; check every remaining op is supported.
    let mut kept: Vec<usize> = Vec::new();
    for (index, op) in model.operators.iter().enumerate() {
        let name = op_display_name(op);
        let ctx = OpCtx { index, name: &name };
        let code = match &op.code {
            OpCode::Builtin(c) => *c,
            OpCode::Custom(_) => {
                return Err(ctx.unsupported(format!(
                    "custom operators are not supported; supported builtin ops: {SUPPORTED}"
                )))
            }
        };
        if builtin::name(code) == "an unknown builtin"
            || matches!(code, builtin::CUSTOM)
            || !matches!(
                code,
                builtin::ADD
                    | builtin::AVERAGE_POOL_2D
                    | builtin::CONCATENATION
                    | builtin::CONV_2D
                    | builtin::DEPTHWISE_CONV_2D
                    | builtin::DEQUANTIZE
                    | builtin::FULLY_CONNECTED
                    | builtin::LOGISTIC
                    | builtin::MAX_POOL_2D
                    | builtin::MUL
                    | builtin::RESHAPE
                    | builtin::SOFTMAX
                    | builtin::TANH
                    | builtin::PAD
                    | builtin::MEAN
                    | builtin::SQUEEZE
                    | builtin::PADV2
                    | builtin::EXPAND_DIMS
                    | builtin::QUANTIZE
            )
        {
            return Err(ctx.unsupported(format!("not supported; supported ops: {SUPPORTED}")));
        }
        if op.outputs.len() != 1 {
            return Err(ctx.invalid(format!("expected one output, found {}", op.outputs.len())));
        }
        if code == builtin::DEQUANTIZE {
            let input = *op.inputs.first().ok_or_else(|| ctx.invalid("no input"))?;
            let t = lowering.tensor(input)?;
            if t.data.is_some() {
                let out = op.outputs[0];
                lowering.tensor(out)?;
                let data = fold_dequantize(t, &ctx)?;
                lowering.folded.insert(out as usize, data);
                report.folded_dequantize += 1;
                continue;
            }
        }
        kept.push(index);
    }

    // 2. Lifetimes of activation tensors, with RESHAPE outputs aliased onto their inputs.
    let mut alias: HashMap<usize, usize> = HashMap::new();
    let root = |alias: &HashMap<usize, usize>, mut t: usize| {
        while let Some(&next) = alias.get(&t) {
            t = next;
        }
        t
    };
    let mut life: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut order: Vec<usize> = Vec::new();
    let step_count = kept.len();
    let mut touch = |life: &mut HashMap<usize, (usize, usize)>, t: usize, step: usize| {
        let e = life.entry(t).or_insert_with(|| {
            order.push(t);
            (step, step)
        });
        e.0 = e.0.min(step);
        e.1 = e.1.max(step);
    };
    for &i in &model.inputs {
        let i = i as usize;
        if lowering.is_const(i) {
            return Err(invalid(format!("graph input tensor {i} is a constant")));
        }
        touch(&mut life, i, 0);
    }
    for (step, &op_index) in kept.iter().enumerate() {
        let op = &model.operators[op_index];
        let out = op.outputs[0];
        let out_index = lowering.tensor(out)? as *const _ as usize;
        let _ = out_index;
        let out = out as usize;
        if lowering.is_const(out) {
            return Err(invalid(format!(
                "operator #{op_index} writes tensor {out}, which holds constant data"
            )));
        }
        let code = match op.code {
            OpCode::Builtin(c) => c,
            OpCode::Custom(_) => unreachable_custom()?,
        };
        let data_inputs: &[i32] = if is_reshape_like(code) {
            &op.inputs[..op.inputs.len().min(1)]
        } else {
            &op.inputs
        };
        for &input in data_inputs {
            if input < 0 {
                continue;
            }
            let input = input as usize;
            if !lowering.is_const(input) {
                let r = root(&alias, input);
                if !life.contains_key(&r) {
                    return Err(invalid(format!(
                        "operator #{op_index} reads tensor {input} before anything writes it"
                    )));
                }
                touch(&mut life, r, step);
            }
        }
        let input_is_activation = data_inputs
            .first()
            .is_some_and(|&i| i >= 0 && !lowering.is_const(i as usize));
        if is_reshape_like(code)
            && input_is_activation
            && !alias.contains_key(&out)
            && !life.contains_key(&out)
        {
            let r = root(&alias, data_inputs[0] as usize);
            if r != out {
                alias.insert(out, r);
                report.aliased_reshapes += 1;
                touch(&mut life, r, step);
                continue;
            }
        }
        if life.contains_key(&out) {
            return Err(invalid(format!(
                "tensor {out} is written by more than one operator (or is a graph input)"
            )));
        }
        touch(&mut life, out, step);
    }
    for &o in &model.outputs {
        let o = o as usize;
        if lowering.is_const(o) {
            return Err(invalid(format!("graph output tensor {o} is a constant")));
        }
        let r = root(&alias, o);
        if !life.contains_key(&r) {
            return Err(invalid(format!("graph output tensor {o} is never written")));
        }
        touch(&mut life, r, step_count);
    }

    // 3. Plan the arena.
    let mut buffers = Vec::with_capacity(order.len());
    for &t in &order {
        let (first_use, last_use) = life[&t];
        buffers.push(Buffer {
            size: lowering.byte_len(t)?,
            first_use,
            last_use,
        });
    }
    // Hybrid ops (float input, int8 weights) need a scratch buffer alive only during their step.
    let mut scratch_ops: Vec<(usize, usize)> = Vec::new();
    for (step, &op_index) in kept.iter().enumerate() {
        if let Some(size) = hybrid_scratch_bytes(&lowering, &model.operators[op_index])? {
            scratch_ops.push((op_index, size));
            buffers.push(Buffer {
                size,
                first_use: step,
                last_use: step,
            });
        }
    }
    let planned = plan::plan(&buffers, ARENA_ALIGN);
    if planned.arena_size > MAX_ARENA || !plan::is_valid(&buffers, &planned) {
        return Err(ConvertError::TooLarge(format!(
            "activation arena of {} bytes",
            planned.arena_size
        )));
    }
    for (i, &t) in order.iter().enumerate() {
        lowering.arena.insert(t, planned.offsets[i] as u32);
    }
    for (i, &(op_index, size)) in scratch_ops.iter().enumerate() {
        let offset = planned.offsets[order.len() + i] as u32;
        lowering
            .scratch
            .insert(op_index, (offset, (size / 4) as u32));
    }
    let aliased: Vec<(usize, usize)> = alias.keys().map(|&t| (t, root(&alias, t))).collect();
    for (t, r) in aliased {
        let offset = lowering.arena[&r];
        lowering.arena.insert(t, offset);
        if lowering.byte_len(t)? != lowering.byte_len(r)? {
            return Err(invalid(format!(
                "reshape changes the byte size of tensor {r} ({}) to tensor {t} ({})",
                lowering.byte_len(r)?,
                lowering.byte_len(t)?
            )));
        }
    }
    report.arena_size = planned.arena_size;
    report.arena_lower_bound = plan::lower_bound(&buffers, ARENA_ALIGN);

    // 4. Lower each operator.
    for &op_index in &kept {
        let op = &model.operators[op_index];
        let name = op_display_name(op);
        let ctx = OpCtx {
            index: op_index,
            name: &name,
        };
        let lowered = lower_op(&mut lowering, op, &ctx)?;
        lowering.writer.ops.push(lowered);
    }

    // 5. Graph I/O, metadata, bytes.
    for &i in &model.inputs {
        let def = lowering.def(i)?;
        lowering.writer.inputs.push(def);
    }
    for &o in &model.outputs {
        let def = lowering.def(o)?;
        lowering.writer.outputs.push(def);
    }
    let max_io = ember_runtime::format::MAX_IO;
    if lowering.writer.inputs.len() > max_io || lowering.writer.outputs.len() > max_io {
        return Err(ConvertError::TooLarge(format!(
            "{} inputs and {} outputs; the format allows {max_io} each",
            lowering.writer.inputs.len(),
            lowering.writer.outputs.len()
        )));
    }
    lowering.writer.arena_size = planned.arena_size as u32;
    if !options.labels.is_empty() {
        let mut text = options.labels.join("\n");
        text.push('\n');
        lowering
            .writer
            .metadata
            .push((meta_keys::LABELS.to_owned(), text.into_bytes()));
    }
    let source = format!(
        "ember-convert {} from TFLite schema v{}{}",
        env!("CARGO_PKG_VERSION"),
        model.version,
        model
            .description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    lowering
        .writer
        .metadata
        .push((meta_keys::SOURCE.to_owned(), source.into_bytes()));
    for (key, value) in &options.metadata {
        lowering.writer.metadata.push((key.clone(), value.clone()));
    }
    report.op_count = lowering.writer.ops.len();
    report.const_size = lowering.writer.const_len();
    let bytes = lowering.writer.finish().map_err(ConvertError::Write)?;
    Ok((bytes, report))
}

/// Bytes of the arena scratch a hybrid CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED needs
/// (see `ember_runtime::kernels::hybrid`), `None` for other ops.
fn hybrid_scratch_bytes(l: &Lowering<'_, '_>, op: &Operator<'_>) -> Result<Option<usize>> {
    let code = match op.code {
        OpCode::Builtin(c) => c,
        OpCode::Custom(_) => return Ok(None),
    };
    if !matches!(
        code,
        builtin::CONV_2D | builtin::DEPTHWISE_CONV_2D | builtin::FULLY_CONNECTED
    ) {
        return Ok(None);
    }
    let (Some(&input), Some(&filter)) = (op.inputs.first(), op.inputs.get(1)) else {
        return Ok(None);
    };
    if input < 0 || filter < 0 {
        return Ok(None);
    }
    let (input, filter) = (input as usize, filter as usize);
    if l.dtype(input) != Some(DType::F32) || l.dtype(filter) != Some(DType::I8) {
        return Ok(None);
    }
    let input_shape = l.shape(input)?;
    let input_elements = input_shape.elements().unwrap_or(0);
    let batches = if code == builtin::FULLY_CONNECTED {
        let depth = l.shape(filter)?.last().max(1);
        input_elements / depth
    } else {
        input_shape.dim(0)
    };
    hybrid::scratch_elements(batches, input_elements)
        .checked_mul(4)
        .filter(|&b| b <= MAX_ARENA)
        .map(Some)
        .ok_or_else(|| invalid("hybrid scratch buffer too large"))
}

/// The scratch tensor planned for hybrid operator `op_index`.
fn scratch_def(l: &Lowering<'_, '_>, op_index: usize, ctx: &OpCtx<'_>) -> Result<TensorDef> {
    let (offset, elements) = *l
        .scratch
        .get(&op_index)
        .ok_or_else(|| ctx.invalid("no scratch planned for a hybrid operator"))?;
    Ok(TensorDef {
        dtype: DType::I32,
        shape: Shape::new(&[elements]).map_err(|_| ctx.invalid("scratch size"))?,
        location: Location::Arena(offset),
        quant: None,
    })
}

fn unreachable_custom() -> Result<i32> {
    Err(invalid("custom operator slipped past the support check"))
}

/// Dequantizes a constant int8 or float16 tensor (TFLite `Dequantize` / `PerChannelDequantize`).
fn fold_dequantize(t: &Tensor<'_>, ctx: &OpCtx<'_>) -> Result<Vec<u8>> {
    let data = t.data.unwrap_or(&[]);
    let mut out = Vec::new();
    match t.dtype {
        TensorType::Float16 => {
            for c in data.chunks_exact(2) {
                out.extend_from_slice(&f16_to_f32(u16::from_le_bytes([c[0], c[1]])).to_le_bytes());
            }
        }
        TensorType::Int8 => {
            let q = t
                .quant
                .as_ref()
                .ok_or_else(|| ctx.invalid("int8 weights without quantization"))?;
            if q.scale.len() == 1 {
                let scale = q.scale[0] as f64;
                let zp = q.zero_point.first().copied().unwrap_or(0) as i32;
                for &b in data {
                    let v = scale * ((b as i8) as i32 - zp) as f64;
                    out.extend_from_slice(&(v as f32).to_le_bytes());
                }
            } else {
                let dim = usize::try_from(q.quantized_dimension)
                    .ok()
                    .filter(|&d| d < t.shape.len())
                    .ok_or_else(|| ctx.invalid("bad quantized_dimension"))?;
                let channels = t.shape[dim] as usize;
                if channels != q.scale.len() || q.zero_point.len() != channels {
                    return Err(
                        ctx.invalid("per-channel scale count differs from the channel count")
                    );
                }
                let inner = t.shape[dim + 1..]
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(0) as usize))
                    .ok_or_else(|| ctx.invalid("weights too large"))?;
                for (i, &b) in data.iter().enumerate() {
                    let c = (i / inner.max(1)) % channels;
                    let v = ((b as i8) as i32 - q.zero_point[c] as i32) as f32 * q.scale[c];
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        other => {
            return Err(ctx.unsupported(format!(
                "DEQUANTIZE of constant {} data; supported: int8, float16",
                other.name()
            )))
        }
    }
    Ok(out)
}

fn activation(code: u8, ctx: &OpCtx<'_>) -> Result<Activation> {
    match code {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        2 => Ok(Activation::ReluN1To1),
        3 => Ok(Activation::Relu6),
        4 => {
            Err(ctx
                .unsupported("fused TANH activation; supported: NONE, RELU, RELU_N1_TO_1, RELU6"))
        }
        other => Err(ctx.unsupported(format!(
            "fused activation {other}; supported: NONE, RELU, RELU_N1_TO_1, RELU6"
        ))),
    }
}

/// TFLite `CalculateActivationRangeQuantized` for int8 outputs.
fn act_range_s8(act: Activation, out: &QuantParams) -> (i32, i32) {
    let quantize = |f: f32| out.zero_point + (f / out.scale).round() as i32;
    let (qmin, qmax) = (-128i32, 127i32);
    match act {
        Activation::None => (qmin, qmax),
        Activation::Relu => (qmin.max(quantize(0.0)), qmax),
        Activation::Relu6 => (qmin.max(quantize(0.0)), qmax.min(quantize(6.0))),
        Activation::ReluN1To1 => (qmin.max(quantize(-1.0)), qmax.min(quantize(1.0))),
    }
}

/// Output size and leading padding of one spatial dimension (TFLite `ComputePaddingHeightWidth`).
fn padding_1d(
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
    same: bool,
) -> Option<(usize, usize)> {
    let effective = filter.checked_sub(1)?.checked_mul(dilation)? + 1;
    let out = if same {
        input.div_ceil(stride)
    } else {
        (input + stride).checked_sub(effective)? / stride
    };
    let total = ((out.checked_sub(1)?) * stride + effective) as i64 - input as i64;
    Some((out, (total.max(0) / 2) as usize))
}

struct Spatial {
    window: Window,
}

fn spatial(
    ctx: &OpCtx<'_>,
    input: &Shape,
    output: &Shape,
    filter_hw: (usize, usize),
    stride: (i32, i32),
    dilation: (i32, i32),
    padding: u8,
) -> Result<Spatial> {
    let same = match padding {
        0 => true,
        1 => false,
        p => return Err(ctx.unsupported(format!("padding {p}; supported: SAME, VALID"))),
    };
    let pos = |v: i32, what: &str| -> Result<usize> {
        if (1..=u16::MAX as i32).contains(&v) {
            Ok(v as usize)
        } else {
            Err(ctx.invalid(format!("{what} {v} must be between 1 and 65535")))
        }
    };
    let (sh, sw) = (pos(stride.0, "stride")?, pos(stride.1, "stride")?);
    let (dh, dw) = (pos(dilation.0, "dilation")?, pos(dilation.1, "dilation")?);
    let in4 = input
        .as_4d()
        .ok_or_else(|| ctx.invalid("input must be 4-D"))?;
    let out4 = output
        .as_4d()
        .ok_or_else(|| ctx.invalid("output must be 4-D"))?;
    let (oh, pt) = padding_1d(in4[1], filter_hw.0, sh, dh, same)
        .ok_or_else(|| ctx.invalid("filter larger than input"))?;
    let (ow, pl) = padding_1d(in4[2], filter_hw.1, sw, dw, same)
        .ok_or_else(|| ctx.invalid("filter larger than input"))?;
    if oh != out4[1] || ow != out4[2] {
        return Err(ctx.invalid(format!(
            "output is {}x{}, but the input, filter, stride and padding give {oh}x{ow}",
            out4[1], out4[2]
        )));
    }
    let narrow = |v: usize| u16::try_from(v).map_err(|_| ctx.invalid("padding too large"));
    Ok(Spatial {
        window: Window {
            stride_h: sh as u16,
            stride_w: sw as u16,
            dilation_h: dh as u16,
            dilation_w: dw as u16,
            pad_top: narrow(pt)?,
            pad_left: narrow(pl)?,
        },
    })
}

/// Reads the options table, checking its union type (absent options read as defaults).
fn options<'a>(
    op: &Operator<'a>,
    expected: u8,
    ctx: &OpCtx<'_>,
) -> Result<Option<crate::flatbuffer::Table<'a>>> {
    if op.options_type != expected && op.options_type != options_type::NONE {
        return Err(ctx.invalid(format!(
            "builtin options of type {} where {expected} was expected",
            op.options_type
        )));
    }
    Ok(op.options)
}

fn read_opt<T: Default>(
    r: core::result::Result<T, crate::flatbuffer::FbError>,
    ctx: &OpCtx<'_>,
) -> Result<T> {
    r.map_err(|e| ctx.invalid(format!("options unreadable: {e}")))
}

fn input_at(op: &Operator<'_>, i: usize, ctx: &OpCtx<'_>) -> Result<i32> {
    match op.inputs.get(i) {
        Some(&t) if t >= 0 => Ok(t),
        _ => Err(ctx.invalid(format!("missing input {i}"))),
    }
}

fn optional_input(op: &Operator<'_>, i: usize) -> Option<i32> {
    op.inputs.get(i).copied().filter(|&t| t >= 0)
}

fn quant_of(def: &TensorDef, ctx: &OpCtx<'_>, what: &str) -> Result<QuantParams> {
    def.quant
        .ok_or_else(|| ctx.invalid(format!("{what} is int8 but has no per-tensor quantization")))
}

/// Requantization for int8 conv/FC: `input_scale * filter_scale[c] / output_scale` per
/// channel (TFLite `PopulateConvolutionQuantizationParams`), in double precision.
fn conv_requant(
    l: &mut Lowering<'_, '_>,
    input: &QuantParams,
    filter_index: usize,
    output: &QuantParams,
    channels: usize,
    per_channel_always: bool,
    ctx: &OpCtx<'_>,
) -> Result<Requant> {
    let q = l.model.tensors[filter_index]
        .quant
        .clone()
        .ok_or_else(|| ctx.invalid("int8 weights without quantization parameters"))?;
    if q.scale.len() != 1 && q.scale.len() != channels {
        return Err(ctx.invalid(format!(
            "weights have {} scales for {channels} output channels",
            q.scale.len()
        )));
    }
    if q.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(ctx.invalid("weight scales must be finite and positive"));
    }
    let count = if per_channel_always {
        channels
    } else {
        q.scale.len()
    };
    let mut multipliers = Vec::with_capacity(count);
    let mut shifts = Vec::with_capacity(count);
    for c in 0..count {
        let filter_scale = q.scale[if q.scale.len() == 1 { 0 } else { c }] as f64;
        let effective = input.scale as f64 * filter_scale / output.scale as f64;
        let (m, s) = quantize_multiplier(effective);
        multipliers.push(m);
        shifts.push(s);
    }
    Ok(Requant {
        multipliers: l.const_i32(&multipliers)?,
        shifts: l.const_i32(&shifts)?,
    })
}

fn filter_scales(
    l: &mut Lowering<'_, '_>,
    filter_index: usize,
    channels: usize,
    ctx: &OpCtx<'_>,
) -> Result<TensorDef> {
    let q = l.model.tensors[filter_index]
        .quant
        .clone()
        .ok_or_else(|| ctx.invalid("int8 weights without quantization parameters"))?;
    if q.scale.len() != 1 && q.scale.len() != channels {
        return Err(ctx.invalid("weight scale count differs from the output channel count"));
    }
    if q.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(ctx.invalid("weight scales must be finite and positive"));
    }
    if q.zero_point.iter().any(|&z| z != 0) {
        return Err(ctx.unsupported("hybrid weights must be symmetric (zero point 0)"));
    }
    l.const_f32(&q.scale)
}

fn check_symmetric_filter(
    l: &Lowering<'_, '_>,
    filter_index: usize,
    ctx: &OpCtx<'_>,
) -> Result<()> {
    if let Some(q) = &l.model.tensors[filter_index].quant {
        if q.zero_point.iter().any(|&z| z != 0) {
            return Err(ctx.unsupported(
                "int8 convolution weights must be symmetric (zero point 0), as TFLite requires",
            ));
        }
    }
    Ok(())
}

fn dtypes_err(ctx: &OpCtx<'_>, found: &[DType], supported: &str) -> ConvertError {
    let names: Vec<&str> = found.iter().map(|d| d.name()).collect();
    ctx.unsupported(format!(
        "unsupported type combination ({}); supported: {supported}",
        names.join(", ")
    ))
}

fn lower_op(l: &mut Lowering<'_, '_>, op: &Operator<'_>, ctx: &OpCtx<'_>) -> Result<Op> {
    let code = match op.code {
        OpCode::Builtin(c) => c,
        OpCode::Custom(_) => return Err(ctx.unsupported("custom operator")),
    };
    let output_index = op.outputs[0];
    match code {
        builtin::CONV_2D | builtin::DEPTHWISE_CONV_2D => lower_conv(l, op, code, ctx),
        builtin::FULLY_CONNECTED => lower_fc(l, op, ctx),
        builtin::AVERAGE_POOL_2D | builtin::MAX_POOL_2D => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            let o = options(op, options_type::POOL_2D, ctx)?;
            let (padding, sw, sh, fw, fh, act) = match o {
                Some(t) => (
                    read_opt(t.u8(0, 0), ctx)?,
                    read_opt(t.i32(1, 0), ctx)?,
                    read_opt(t.i32(2, 0), ctx)?,
                    read_opt(t.i32(3, 0), ctx)?,
                    read_opt(t.i32(4, 0), ctx)?,
                    read_opt(t.u8(5, 0), ctx)?,
                ),
                None => return Err(ctx.invalid("pooling without options")),
            };
            let act = activation(act, ctx)?;
            let narrow = |v: i32| {
                u16::try_from(v)
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| ctx.invalid(format!("filter size {v} out of range")))
            };
            let (filter_h, filter_w) = (narrow(fh)?, narrow(fw)?);
            let sp = spatial(
                ctx,
                &input.shape,
                &output.shape,
                (filter_h as usize, filter_w as usize),
                (sh, sw),
                (1, 1),
                padding,
            )?;
            let kind = if code == builtin::AVERAGE_POOL_2D {
                pooling::PoolKind::Average
            } else {
                pooling::PoolKind::Max
            };
            match (input.dtype, output.dtype) {
                (DType::I8, DType::I8) => {
                    let oq = quant_of(&output, ctx, "output")?;
                    let iq = quant_of(&input, ctx, "input")?;
                    if iq != oq {
                        return Err(ctx.unsupported(
                            "int8 pooling with different input and output quantization",
                        ));
                    }
                    let (act_min, act_max) = act_range_s8(act, &oq);
                    Ok(Op::Pool2dS8(pooling::Pool2dS8 {
                        kind,
                        input,
                        output,
                        filter_h,
                        filter_w,
                        window: sp.window,
                        act_min,
                        act_max,
                    }))
                }
                (DType::F32, DType::F32) => Ok(Op::Pool2dF32(pooling::Pool2dF32 {
                    kind,
                    input,
                    output,
                    filter_h,
                    filter_w,
                    window: sp.window,
                    activation: act,
                })),
                (a, b) => Err(dtypes_err(ctx, &[a, b], "int8, float32")),
            }
        }
        builtin::RESHAPE | builtin::SQUEEZE | builtin::EXPAND_DIMS => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            if input.dtype != output.dtype || input.byte_len() != output.byte_len() {
                return Err(ctx.invalid("input and output differ in type or size"));
            }
            Ok(Op::Reshape(reshape::Reshape { input, output }))
        }
        builtin::SOFTMAX => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            let beta = match options(op, options_type::SOFTMAX, ctx)? {
                Some(t) => read_opt(t.f32(0, 0.0), ctx)?,
                None => 0.0,
            };
            match (input.dtype, output.dtype) {
                (DType::I8, DType::I8) => {
                    let iq = quant_of(&input, ctx, "input")?;
                    let oq = quant_of(&output, ctx, "output")?;
                    if oq.zero_point != -128 || oq.scale != 1.0 / 256.0 {
                        return Err(ctx.invalid(
                            "int8 softmax output must have scale 1/256 and zero point -128",
                        ));
                    }
                    // TFLite `PopulateSoftmaxLookupTable`, evaluated with the host's expf.
                    let table = activations::softmax_exp_table(iq.scale, beta, f32::exp);
                    let table = l.const_f32(&table)?;
                    Ok(Op::SoftmaxS8(activations::SoftmaxS8 {
                        input,
                        output,
                        table,
                        output_scale: oq.scale,
                        output_zero_point: oq.zero_point,
                    }))
                }
                (DType::F32, DType::F32) => Ok(Op::SoftmaxF32(activations::SoftmaxF32 {
                    input,
                    output,
                    beta,
                })),
                (a, b) => Err(dtypes_err(ctx, &[a, b], "int8, float32")),
            }
        }
        builtin::LOGISTIC | builtin::TANH => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            let is_tanh = code == builtin::TANH;
            match (input.dtype, output.dtype) {
                (DType::I8, DType::I8) => {
                    let iq = quant_of(&input, ctx, "input")?;
                    let oq = quant_of(&output, ctx, "output")?;
                    let (scale, zp) = if is_tanh {
                        (1.0 / 128.0, 0)
                    } else {
                        (1.0 / 256.0, -128)
                    };
                    if oq.scale != scale || oq.zero_point != zp {
                        return Err(ctx.invalid(format!(
                            "int8 output must have scale {scale} and zero point {zp}"
                        )));
                    }
                    // TFLite `LUTPopulate` with the float function it uses (host libm).
                    let lut = if is_tanh {
                        activations::lut_s8(iq, oq, |x: f32| x.tanh())
                    } else {
                        activations::lut_s8(iq, oq, |x: f32| 1.0 / (1.0 + (-x).exp()))
                    };
                    let bytes: Vec<u8> = lut.iter().map(|&v| v as u8).collect();
                    let table = l.new_const(DType::I8, &bytes, 256)?;
                    if is_tanh {
                        Ok(Op::TanhS8(activations::TanhS8 {
                            input,
                            output,
                            table,
                        }))
                    } else {
                        Ok(Op::LogisticS8(activations::LogisticS8 {
                            input,
                            output,
                            table,
                        }))
                    }
                }
                (DType::F32, DType::F32) => Ok(if is_tanh {
                    Op::TanhF32(activations::TanhF32 { input, output })
                } else {
                    Op::LogisticF32(activations::LogisticF32 { input, output })
                }),
                (a, b) => Err(dtypes_err(ctx, &[a, b], "int8, float32")),
            }
        }
        builtin::ADD | builtin::MUL => lower_binary(l, op, code, ctx),
        builtin::PAD | builtin::PADV2 => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            if input.dtype != output.dtype {
                return Err(ctx.invalid("input and output types differ"));
            }
            let raw = l.const_ints(input_at(op, 1, ctx)?)?;
            let rank = input.shape.rank();
            if raw.len() != rank * 2 {
                return Err(ctx.invalid("paddings must be [rank, 2]"));
            }
            let mut paddings = heapless::Vec::new();
            for d in 0..rank {
                let (b, a) = (raw[2 * d], raw[2 * d + 1]);
                let (b, a) = match (u32::try_from(b), u32::try_from(a)) {
                    (Ok(b), Ok(a)) => (b, a),
                    _ => return Err(ctx.invalid("negative padding")),
                };
                if input.shape.dim(d) as u64 + b as u64 + a as u64 != output.shape.dim(d) as u64 {
                    return Err(ctx.invalid("output shape differs from input plus paddings"));
                }
                paddings
                    .push((b, a))
                    .map_err(|_| ctx.invalid("rank too large"))?;
            }
            let pad_value: [u8; 4] = if let Some(v) = optional_input(op, 2) {
                let t = l.tensor(v)?;
                let data = t
                    .data
                    .ok_or_else(|| ctx.unsupported("PADV2 with a non-constant value"))?;
                let mut bytes = [0u8; 4];
                let n = input.dtype.size().min(data.len()).min(4);
                if data.len() != input.dtype.size() {
                    return Err(ctx.invalid("pad value must be one element of the input type"));
                }
                bytes[..n].copy_from_slice(&data[..n]);
                bytes
            } else {
                match input.dtype {
                    DType::F32 | DType::I32 | DType::I16 => {
                        let zp = output.quant.map_or(0, |q| q.zero_point);
                        match input.dtype {
                            DType::I16 => (zp as i16 as u16 as u32).to_le_bytes(),
                            DType::I32 => (zp as u32).to_le_bytes(),
                            _ => [0; 4],
                        }
                    }
                    DType::I8 => {
                        let zp = quant_of(&output, ctx, "output")?.zero_point;
                        [zp as i8 as u8, 0, 0, 0]
                    }
                }
            };
            Ok(Op::Pad(pad::Pad {
                input,
                output,
                paddings,
                pad_value,
            }))
        }
        builtin::MEAN => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            let rank = input.shape.rank() as i64;
            let mut axes_mask = 0u8;
            for axis in l.const_ints(input_at(op, 1, ctx)?)? {
                let a = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&a) {
                    return Err(ctx.invalid(format!("axis {axis} out of range")));
                }
                axes_mask |= 1 << a;
            }
            let count: usize = (0..input.shape.rank())
                .filter(|d| axes_mask & (1 << d) != 0)
                .map(|d| input.shape.dim(d))
                .product();
            match (input.dtype, output.dtype) {
                (DType::I8, DType::I8) => {
                    let iq = quant_of(&input, ctx, "input")?;
                    let oq = quant_of(&output, ctx, "output")?;
                    let (multiplier, shift) = reduce::mean_s8_multiplier(iq.scale, oq.scale, count);
                    let input_sum_offset = i32::try_from(count)
                        .ok()
                        .and_then(|c| c.checked_mul(iq.zero_point))
                        .ok_or_else(|| ctx.unsupported("too many reduced elements"))?;
                    Ok(Op::MeanS8(reduce::MeanS8 {
                        input,
                        output,
                        axes_mask,
                        input_sum_offset,
                        output_zero_point: oq.zero_point,
                        multiplier,
                        shift,
                    }))
                }
                (DType::F32, DType::F32) => Ok(Op::MeanF32(reduce::MeanF32 {
                    input,
                    output,
                    axes_mask,
                })),
                (a, b) => Err(dtypes_err(ctx, &[a, b], "int8, float32")),
            }
        }
        builtin::CONCATENATION => {
            let output = l.def(output_index)?;
            let (axis, act) = match options(op, options_type::CONCATENATION, ctx)? {
                Some(t) => (read_opt(t.i32(0, 0), ctx)?, read_opt(t.u8(1, 0), ctx)?),
                None => (0, 0),
            };
            let act = activation(act, ctx)?;
            let rank = output.shape.rank() as i32;
            let axis = if axis < 0 { axis + rank } else { axis };
            if !(0..rank).contains(&axis) {
                return Err(ctx.invalid(format!("axis {axis} out of range")));
            }
            let mut inputs = heapless::Vec::new();
            for &i in &op.inputs {
                let def = l.def(i)?;
                if def.dtype != output.dtype {
                    return Err(ctx.invalid("inputs and output differ in type"));
                }
                if output.dtype == DType::I8 && def.quant != output.quant && !def.is_const() {
                    return Err(
                        ctx.unsupported("int8 inputs with quantization different from the output")
                    );
                }
                inputs.push(def).map_err(|_| {
                    ctx.unsupported(format!("more than {} inputs", concat::MAX_CONCAT_INPUTS))
                })?;
            }
            if act != Activation::None {
                return Err(
                    ctx.unsupported("fused activation on CONCATENATION (TFLite accepts only NONE)")
                );
            }
            Ok(Op::Concatenation(concat::Concatenation {
                inputs,
                output,
                axis: axis as u8,
                activation: act,
            }))
        }
        builtin::QUANTIZE => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            match (input.dtype, output.dtype) {
                (DType::F32, DType::I8) => {
                    let oq = quant_of(&output, ctx, "output")?;
                    Ok(Op::QuantizeF32ToS8(quantize::QuantizeF32ToS8 {
                        input,
                        output,
                        scale: oq.scale,
                        zero_point: oq.zero_point,
                    }))
                }
                (DType::I8, DType::I8) => {
                    let iq = quant_of(&input, ctx, "input")?;
                    let oq = quant_of(&output, ctx, "output")?;
                    let (multiplier, shift) =
                        quantize_multiplier(iq.scale as f64 / oq.scale as f64);
                    Ok(Op::RequantizeS8(quantize::RequantizeS8 {
                        input,
                        output,
                        input_zero_point: iq.zero_point,
                        output_zero_point: oq.zero_point,
                        multiplier,
                        shift,
                    }))
                }
                (a, b) => Err(dtypes_err(ctx, &[a, b], "float32 -> int8, int8 -> int8")),
            }
        }
        builtin::DEQUANTIZE => {
            let input = l.def(input_at(op, 0, ctx)?)?;
            let output = l.def(output_index)?;
            match (input.dtype, output.dtype) {
                (DType::I8, DType::F32) => {
                    let iq = quant_of(&input, ctx, "input")?;
                    Ok(Op::DequantizeS8ToF32(quantize::DequantizeS8ToF32 {
                        input,
                        output,
                        scale: iq.scale,
                        zero_point: iq.zero_point,
                    }))
                }
                (a, b) => Err(dtypes_err(ctx, &[a, b], "int8 -> float32")),
            }
        }
        _ => Err(ctx.unsupported(format!("not supported; supported ops: {SUPPORTED}"))),
    }
}

fn lower_conv(
    l: &mut Lowering<'_, '_>,
    op: &Operator<'_>,
    code: i32,
    ctx: &OpCtx<'_>,
) -> Result<Op> {
    let depthwise = code == builtin::DEPTHWISE_CONV_2D;
    let input_index = input_at(op, 0, ctx)?;
    let filter_index = input_at(op, 1, ctx)?;
    let bias_index = optional_input(op, 2);
    if !l.is_const(filter_index as usize) {
        return Err(ctx.unsupported("weights computed at run time; weights must be constant"));
    }
    let input = l.def(input_index)?;
    let filter = l.def(filter_index)?;
    let bias = match bias_index {
        Some(b) => {
            if !l.is_const(b as usize) {
                return Err(ctx.unsupported("bias computed at run time; bias must be constant"));
            }
            Some(l.def(b)?)
        }
        None => None,
    };
    let output = l.def(op.outputs[0])?;
    let expected_type = if depthwise {
        options_type::DEPTHWISE_CONV_2D
    } else {
        options_type::CONV_2D
    };
    let t = options(op, expected_type, ctx)?.ok_or_else(|| ctx.invalid("missing options"))?;
    let padding = read_opt(t.u8(0, 0), ctx)?;
    let stride_w = read_opt(t.i32(1, 0), ctx)?;
    let stride_h = read_opt(t.i32(2, 0), ctx)?;
    let (act, dil_w, dil_h) = if depthwise {
        (
            read_opt(t.u8(4, 0), ctx)?,
            read_opt(t.i32(5, 1), ctx)?,
            read_opt(t.i32(6, 1), ctx)?,
        )
    } else {
        (
            read_opt(t.u8(3, 0), ctx)?,
            read_opt(t.i32(4, 1), ctx)?,
            read_opt(t.i32(5, 1), ctx)?,
        )
    };
    let act = activation(act, ctx)?;
    if filter.shape.rank() != 4 || input.shape.rank() != 4 || output.shape.rank() != 4 {
        return Err(ctx.invalid("input, filter and output must be 4-D"));
    }
    let (kh, kw) = (filter.shape.dim(1), filter.shape.dim(2));
    let in_channels = input.shape.dim(3);
    let out_channels = output.shape.dim(3);
    let sp = spatial(
        ctx,
        &input.shape,
        &output.shape,
        (kh, kw),
        (stride_h, stride_w),
        (dil_h, dil_w),
        padding,
    )?;
    let depth_multiplier = if depthwise {
        if filter.shape.dim(0) != 1 || filter.shape.dim(3) != out_channels {
            return Err(ctx.invalid("depthwise filter must be [1, kh, kw, output channels]"));
        }
        if in_channels == 0 || out_channels % in_channels != 0 {
            return Err(ctx.invalid("output channels must be a multiple of input channels"));
        }
        u16::try_from(out_channels / in_channels)
            .map_err(|_| ctx.unsupported("depth multiplier above 65535"))?
    } else {
        if filter.shape.dim(0) != out_channels {
            return Err(ctx.invalid("filter output channels differ from the output's"));
        }
        let filter_in = filter.shape.dim(3);
        if filter_in == 0 || in_channels % filter_in != 0 {
            return Err(ctx.invalid("input channels are not a multiple of the filter's"));
        }
        1
    };
    if let Some(b) = &bias {
        if b.elements() != out_channels {
            return Err(ctx.invalid("bias length differs from output channels"));
        }
    }
    match (input.dtype, filter.dtype, output.dtype) {
        (DType::I8, DType::I8, DType::I8) => {
            check_symmetric_filter(l, filter_index as usize, ctx)?;
            if let Some(b) = &bias {
                if b.dtype != DType::I32 {
                    return Err(ctx.unsupported("int8 convolution needs an int32 bias"));
                }
            }
            let iq = quant_of(&input, ctx, "input")?;
            let oq = quant_of(&output, ctx, "output")?;
            let requant =
                conv_requant(l, &iq, filter_index as usize, &oq, out_channels, true, ctx)?;
            let (act_min, act_max) = act_range_s8(act, &oq);
            if depthwise {
                Ok(Op::DepthwiseConv2dS8(depthwise::DepthwiseConv2dS8 {
                    input,
                    filter,
                    bias,
                    output,
                    window: sp.window,
                    depth_multiplier,
                    input_offset: -iq.zero_point,
                    output_offset: oq.zero_point,
                    requant,
                    act_min,
                    act_max,
                }))
            } else {
                Ok(Op::Conv2dS8(conv::Conv2dS8 {
                    input,
                    filter,
                    bias,
                    output,
                    window: sp.window,
                    input_offset: -iq.zero_point,
                    output_offset: oq.zero_point,
                    requant,
                    act_min,
                    act_max,
                }))
            }
        }
        (DType::F32, DType::F32, DType::F32) => {
            if bias.as_ref().is_some_and(|b| b.dtype != DType::F32) {
                return Err(ctx.unsupported("float convolution needs a float32 bias"));
            }
            if depthwise {
                Ok(Op::DepthwiseConv2dF32(depthwise::DepthwiseConv2dF32 {
                    input,
                    filter,
                    bias,
                    output,
                    window: sp.window,
                    depth_multiplier,
                    activation: act,
                }))
            } else {
                Ok(Op::Conv2dF32(conv::Conv2dF32 {
                    input,
                    filter,
                    bias,
                    output,
                    window: sp.window,
                    activation: act,
                }))
            }
        }
        (DType::F32, DType::I8, DType::F32) => {
            if bias.as_ref().is_some_and(|b| b.dtype != DType::F32) {
                return Err(ctx.unsupported("hybrid convolution needs a float32 bias"));
            }
            let scales = filter_scales(l, filter_index as usize, out_channels, ctx)?;
            // The kernels pick TFLite's symmetric or asymmetric input quantization themselves.
            let scratch = scratch_def(l, ctx.index, ctx)?;
            if depthwise {
                Ok(Op::DepthwiseConv2dHybrid(
                    depthwise::DepthwiseConv2dHybrid {
                        input,
                        filter,
                        filter_scales: scales,
                        bias,
                        output,
                        window: sp.window,
                        depth_multiplier,
                        activation: act,
                        scratch,
                    },
                ))
            } else {
                Ok(Op::Conv2dHybrid(conv::Conv2dHybrid {
                    input,
                    filter,
                    filter_scales: scales,
                    bias,
                    output,
                    window: sp.window,
                    activation: act,
                    scratch,
                }))
            }
        }
        (a, b, c) => Err(dtypes_err(
            ctx,
            &[a, b, c],
            "int8 (int32 bias), float32, hybrid (float32 input/output with int8 weights)",
        )),
    }
}

fn lower_fc(l: &mut Lowering<'_, '_>, op: &Operator<'_>, ctx: &OpCtx<'_>) -> Result<Op> {
    let input_index = input_at(op, 0, ctx)?;
    let filter_index = input_at(op, 1, ctx)?;
    let bias_index = optional_input(op, 2);
    if !l.is_const(filter_index as usize) {
        return Err(ctx.unsupported("weights computed at run time; weights must be constant"));
    }
    let (act, weights_format, asymmetric) = match options(op, options_type::FULLY_CONNECTED, ctx)? {
        Some(t) => (
            read_opt(t.u8(0, 0), ctx)?,
            read_opt(t.u8(1, 0), ctx)?,
            read_opt(t.bool(3, false), ctx)?,
        ),
        None => (0, 0, false),
    };
    if weights_format != 0 {
        return Err(ctx.unsupported("shuffled weights format; only DEFAULT is supported"));
    }
    let act = activation(act, ctx)?;
    let input = l.def(input_index)?;
    let filter = l.def(filter_index)?;
    let bias = match bias_index {
        Some(b) => {
            if !l.is_const(b as usize) {
                return Err(ctx.unsupported("bias must be constant"));
            }
            Some(l.def(b)?)
        }
        None => None,
    };
    let output = l.def(op.outputs[0])?;
    if filter.shape.rank() != 2 {
        return Err(ctx.invalid("weights must be 2-D [output depth, input depth]"));
    }
    let (out_depth, accum) = (filter.shape.dim(0), filter.shape.dim(1));
    if accum == 0 || input.elements() % accum != 0 || output.shape.last() != out_depth {
        return Err(ctx.invalid("input, weights and output shapes do not match"));
    }
    if let Some(b) = &bias {
        if b.elements() != out_depth {
            return Err(ctx.invalid("bias length differs from output depth"));
        }
    }
    match (input.dtype, filter.dtype, output.dtype) {
        (DType::I8, DType::I8, DType::I8) => {
            if bias.as_ref().is_some_and(|b| b.dtype != DType::I32) {
                return Err(ctx.unsupported("int8 fully connected needs an int32 bias"));
            }
            let fq = l.model.tensors[filter_index as usize]
                .quant
                .clone()
                .ok_or_else(|| ctx.invalid("int8 weights without quantization"))?;
            let filter_zp = fq.zero_point.first().copied().unwrap_or(0);
            if fq.scale.len() > 1 && fq.zero_point.iter().any(|&z| z != 0) {
                return Err(ctx.unsupported("per-channel weights must be symmetric"));
            }
            let filter_offset = -i32::try_from(filter_zp)
                .ok()
                .filter(|z| (-128..=127).contains(z))
                .ok_or_else(|| ctx.invalid("weight zero point out of range"))?;
            let iq = quant_of(&input, ctx, "input")?;
            let oq = quant_of(&output, ctx, "output")?;
            let requant = conv_requant(l, &iq, filter_index as usize, &oq, out_depth, false, ctx)?;
            let (act_min, act_max) = act_range_s8(act, &oq);
            Ok(Op::FullyConnectedS8(fully_connected::FullyConnectedS8 {
                input,
                filter,
                bias,
                output,
                input_offset: -iq.zero_point,
                filter_offset,
                output_offset: oq.zero_point,
                requant,
                act_min,
                act_max,
            }))
        }
        (DType::F32, DType::F32, DType::F32) => {
            if bias.as_ref().is_some_and(|b| b.dtype != DType::F32) {
                return Err(ctx.unsupported("float fully connected needs a float32 bias"));
            }
            Ok(Op::FullyConnectedF32(fully_connected::FullyConnectedF32 {
                input,
                filter,
                bias,
                output,
                activation: act,
            }))
        }
        (DType::F32, DType::I8, DType::F32) => {
            if bias.as_ref().is_some_and(|b| b.dtype != DType::F32) {
                return Err(ctx.unsupported("hybrid fully connected needs a float32 bias"));
            }
            let scales = filter_scales(l, filter_index as usize, out_depth, ctx)?;
            let scratch = scratch_def(l, ctx.index, ctx)?;
            Ok(Op::FullyConnectedHybrid(
                fully_connected::FullyConnectedHybrid {
                    input,
                    filter,
                    filter_scales: scales,
                    bias,
                    output,
                    activation: act,
                    asymmetric_quantize_inputs: asymmetric,
                    scratch,
                },
            ))
        }
        (a, b, c) => Err(dtypes_err(
            ctx,
            &[a, b, c],
            "int8 (int32 bias), float32, hybrid (float32 input/output with int8 weights)",
        )),
    }
}

fn lower_binary(
    l: &mut Lowering<'_, '_>,
    op: &Operator<'_>,
    code: i32,
    ctx: &OpCtx<'_>,
) -> Result<Op> {
    let is_add = code == builtin::ADD;
    let input1 = l.def(input_at(op, 0, ctx)?)?;
    let input2 = l.def(input_at(op, 1, ctx)?)?;
    let output = l.def(op.outputs[0])?;
    let expected = if is_add {
        options_type::ADD
    } else {
        options_type::MUL
    };
    let act = match options(op, expected, ctx)? {
        Some(t) => read_opt(t.u8(0, 0), ctx)?,
        None => 0,
    };
    let act = activation(act, ctx)?;
    // Constant int8 operands keep their quantization for the kernel's parameters.
    let quant = |l: &Lowering<'_, '_>, index: i32, def: &TensorDef| -> Result<QuantParams> {
        def.quant
            .or_else(|| l.per_tensor_quant(index as usize))
            .ok_or_else(|| ctx.invalid("int8 operand without per-tensor quantization"))
    };
    match (input1.dtype, input2.dtype, output.dtype) {
        (DType::I8, DType::I8, DType::I8) => {
            let q1 = quant(l, input_at(op, 0, ctx)?, &input1)?;
            let q2 = quant(l, input_at(op, 1, ctx)?, &input2)?;
            let qo = quant_of(&output, ctx, "output")?;
            let (act_min, act_max) = act_range_s8(act, &qo);
            if is_add {
                // TFLite add.cc Prepare (int8): 20 bits of headroom, float max promoted to double.
                let left_shift = 20;
                let twice_max = (2.0f32 * q1.scale.max(q2.scale)) as f64;
                let real1 = q1.scale as f64 / twice_max;
                let real2 = q2.scale as f64 / twice_max;
                let real_out = twice_max / (((1i64 << left_shift) as f32 * qo.scale) as f64);
                let (m1, s1) = quantize_multiplier(real1);
                let (m2, s2) = quantize_multiplier(real2);
                let (mo, so) = quantize_multiplier(real_out);
                Ok(Op::AddS8(elementwise::AddS8 {
                    input1,
                    input2,
                    output,
                    left_shift,
                    input1_offset: -q1.zero_point,
                    input1_multiplier: m1,
                    input1_shift: s1,
                    input2_offset: -q2.zero_point,
                    input2_multiplier: m2,
                    input2_shift: s2,
                    output_offset: qo.zero_point,
                    output_multiplier: mo,
                    output_shift: so,
                    act_min,
                    act_max,
                }))
            } else {
                // TFLite mul.cc: the product of float scales is taken in float, then widened.
                let real = (q1.scale * q2.scale / qo.scale) as f64;
                let (m, s) = quantize_multiplier(real);
                Ok(Op::MulS8(elementwise::MulS8 {
                    input1,
                    input2,
                    output,
                    input1_offset: -q1.zero_point,
                    input2_offset: -q2.zero_point,
                    output_offset: qo.zero_point,
                    output_multiplier: m,
                    output_shift: s,
                    act_min,
                    act_max,
                }))
            }
        }
        (DType::F32, DType::F32, DType::F32) => {
            let b = elementwise::BinaryF32 {
                input1,
                input2,
                output,
                activation: act,
            };
            Ok(if is_add {
                Op::AddF32(elementwise::AddF32(b))
            } else {
                Op::MulF32(elementwise::MulF32(b))
            })
        }
        (a, b, c) => Err(dtypes_err(ctx, &[a, b, c], "int8, float32")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tflite() {
        // 49x10 input, 10x4 filter, stride 2, SAME: TFLite gives 25x5 with padding 4/1.
        assert_eq!(padding_1d(49, 10, 2, 1, true), Some((25, 4)));
        assert_eq!(padding_1d(10, 4, 2, 1, true), Some((5, 1)));
        assert_eq!(padding_1d(5, 3, 1, 1, false), Some((3, 0)));
        assert_eq!(padding_1d(2, 3, 1, 1, false), None);
    }

    #[test]
    fn relu_range_uses_zero_point() {
        let q = QuantParams {
            scale: 0.5,
            zero_point: -10,
        };
        assert_eq!(act_range_s8(Activation::Relu, &q), (-10, 127));
        assert_eq!(act_range_s8(Activation::Relu6, &q), (-10, 2));
        assert_eq!(act_range_s8(Activation::None, &q), (-128, 127));
    }

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}

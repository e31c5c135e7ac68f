//! A small reader for the postcard records of the graph section (graph, operators, metadata).
//!
//! The host writes these records with postcard + serde (see `docs/FORMAT.md`); the device
//! reads them here instead of through serde's generated visitors, which cost several kB of
//! code and ~1,900 instructions per operator on every run. The encoding, as postcard defines
//! it: `u8`/`i8` one raw byte; `u16`/`u32`/lengths a LEB128 varint; `i32` a zigzag varint;
//! `f32` 4 bytes little-endian; `bool` one byte 0 or 1; `Option` a byte 0 (none) or 1 then
//! the value; an enum its variant index (varint) then its fields; a sequence its length
//! (varint) then its elements; a struct, tuple or array its fields in order, nothing else.
//!
//! Every read is bounds-checked and returns `None` on malformed input (truncated, an overlong
//! or overflowing varint, an unknown enum index, a sequence longer than its capacity); the
//! callers turn that into a typed [`crate::Error`].

use crate::format::{Graph, MetaEntry};
use crate::kernels::pooling::PoolKind;
use crate::kernels::*;
use crate::tensor::{DType, Location, QuantParams, Shape, TensorDef};

/// A cursor over postcard-encoded bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }

    /// `len` raw bytes.
    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.rest.len() {
            return None;
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(head)
    }

    /// A LEB128 varint of at most 5 bytes whose value fits `u32` (postcard's `u32` and, on
    /// every target ember supports, `usize`).
    #[inline(always)]
    pub fn varint(&mut self) -> Option<u32> {
        // Most values (dimensions, tags, small offsets) take one byte: no call for those.
        match self.rest {
            [first, rest @ ..] if *first < 0x80 => {
                self.rest = rest;
                Some(u32::from(*first))
            }
            _ => self.varint_bounded(5, 0x0f),
        }
    }

    /// A LEB128 varint of at most `max_bytes` bytes whose last byte may be at most
    /// `last_max` (the bits that still fit the integer), as postcard checks them.
    #[inline(never)]
    fn varint_bounded(&mut self, max_bytes: u32, last_max: u8) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..max_bytes {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return (i + 1 < max_bytes || byte <= last_max).then_some(value);
            }
        }
        None
    }

    /// Postcard's `u16`: a varint of at most 3 bytes.
    #[inline(always)]
    pub fn varint_u16(&mut self) -> Option<u16> {
        match self.rest {
            [first, rest @ ..] if *first < 0x80 => {
                self.rest = rest;
                Some(u16::from(*first))
            }
            _ => self.varint_bounded(3, 0x03).map(|v| v as u16),
        }
    }

    /// A sequence length or enum index, as `usize`.
    pub fn len(&mut self) -> Option<usize> {
        self.varint().map(|v| v as usize)
    }

    /// A length-prefixed byte string, borrowed.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// A value as postcard encodes it (field by field, see the module documentation).
pub trait Decode<'a>: Sized {
    fn decode(r: &mut Reader<'a>) -> Option<Self>;
}

impl Decode<'_> for u8 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        r.byte()
    }
}

impl Decode<'_> for u16 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        r.varint_u16()
    }
}

impl Decode<'_> for u32 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        r.varint()
    }
}

impl Decode<'_> for i32 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        r.varint().map(zigzag)
    }
}

impl Decode<'_> for f32 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let b = r.take(4)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Decode<'_> for bool {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        match r.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl<'a, T: Decode<'a>> Decode<'a> for Option<T> {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        match r.byte()? {
            0 => Some(None),
            1 => T::decode(r).map(Some),
            _ => None,
        }
    }
}

impl<'a, A: Decode<'a>, B: Decode<'a>> Decode<'a> for (A, B) {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        Some((A::decode(r)?, B::decode(r)?))
    }
}

impl<'a, const N: usize> Decode<'a> for [u8; N] {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        r.take(N)?.try_into().ok()
    }
}

impl<'a, T: Decode<'a>, const N: usize> Decode<'a> for heapless::Vec<T, N> {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        let len = r.len()?;
        let mut out = heapless::Vec::new();
        for _ in 0..len {
            out.push(T::decode(r)?).ok()?;
        }
        Some(out)
    }
}

impl<'a> Decode<'a> for &'a [u8] {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        r.bytes()
    }
}

impl<'a> Decode<'a> for &'a str {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        core::str::from_utf8(r.bytes()?).ok()
    }
}

/// Decodes a unit-only enum from its variant index.
macro_rules! decode_unit_enum {
    ($($ty:ident { $($variant:ident),* $(,)? })*) => {$(
        impl Decode<'_> for $ty {
            fn decode(r: &mut Reader<'_>) -> Option<Self> {
                const VARIANTS: &[$ty] = &[$($ty::$variant),*];
                VARIANTS.get(r.len()?).copied()
            }
        }
    )*};
}

decode_unit_enum! {
    DType { I8, I16, I32, F32 }
    Activation { None, Relu, ReluN1To1, Relu6 }
    PoolKind { Average, Max }
}

/// Decodes a struct field by field. The struct literal names every field, so a field added
/// to the struct without being added here does not compile; the order must be the
/// declaration order (the round-trip tests against postcard's encoder check it).
macro_rules! decode_struct {
    ($($ty:ty { $($field:ident),* $(,)? })*) => {$(
        impl<'a> Decode<'a> for $ty {
            // Inlined into its one caller (`Op::decode`), which then builds the operator in
            // place instead of copying a few hundred bytes through each layer of `Option`.
            #[inline(always)]
            fn decode(r: &mut Reader<'a>) -> Option<Self> {
                Some(Self { $($field: Decode::decode(r)?,)* })
            }
        }
    )*};
}

impl Decode<'_> for Location {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        match r.len()? {
            0 => Some(Location::Arena(r.varint()?)),
            1 => Some(Location::Const(r.varint()?)),
            _ => None,
        }
    }
}

impl Decode<'_> for TensorDef {
    // Shared by every operator's decoder rather than inlined into each, and written out with
    // the varint's one-byte fast path inline: a record holds up to six tensors, each decoded
    // on every `Model::run`, so calls per field would cost ~300 instructions per operator.
    #[inline(never)]
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        const DTYPES: [DType; 4] = [DType::I8, DType::I16, DType::I32, DType::F32];
        let dtype = *DTYPES.get(r.varint()? as usize)?;
        let rank = r.varint()?;
        let mut dims = heapless::Vec::new();
        for _ in 0..rank {
            dims.push(r.varint()?).ok()?;
        }
        let location = match r.varint()? {
            0 => Location::Arena(r.varint()?),
            1 => Location::Const(r.varint()?),
            _ => return None,
        };
        let quant = match r.byte()? {
            0 => None,
            1 => Some(QuantParams {
                scale: f32::decode(r)?,
                zero_point: zigzag(r.varint()?),
            }),
            _ => return None,
        };
        Some(TensorDef {
            dtype,
            shape: Shape { dims },
            location,
            quant,
        })
    }
}

/// Postcard's signed integers: `(v >> 1) ^ -(v & 1)`.
#[inline(always)]
fn zigzag(v: u32) -> i32 {
    (v >> 1) as i32 ^ -((v & 1) as i32)
}

decode_struct! {
    Shape { dims }
    QuantParams { scale, zero_point }
    Graph<'a> { arena_size, inputs, outputs, op_count, ops, metadata }
    MetaEntry<'a> { key, value }
    conv::Conv2dS8 {
        input, filter, bias, output, window, input_offset, output_offset, requant, act_min,
        act_max,
    }
    conv::Conv2dF32 { input, filter, bias, output, window, activation }
    conv::Conv2dHybrid { input, filter, filter_scales, bias, output, window, activation, scratch }
    depthwise::DepthwiseConv2dS8 {
        input, filter, bias, output, window, depth_multiplier, input_offset, output_offset,
        requant, act_min, act_max,
    }
    depthwise::DepthwiseConv2dF32 {
        input, filter, bias, output, window, depth_multiplier, activation,
    }
    depthwise::DepthwiseConv2dHybrid {
        input, filter, filter_scales, bias, output, window, depth_multiplier, activation,
        scratch,
    }
    fully_connected::FullyConnectedS8 {
        input, filter, bias, output, input_offset, filter_offset, output_offset, requant,
        act_min, act_max,
    }
    fully_connected::FullyConnectedF32 { input, filter, bias, output, activation }
    fully_connected::FullyConnectedHybrid {
        input, filter, filter_scales, bias, output, activation, asymmetric_quantize_inputs,
        scratch,
    }
    pooling::Pool2dS8 { kind, input, output, filter_h, filter_w, window, act_min, act_max }
    pooling::Pool2dF32 { kind, input, output, filter_h, filter_w, window, activation }
    elementwise::AddS8 {
        input1, input2, output, left_shift, input1_offset, input1_multiplier, input1_shift,
        input2_offset, input2_multiplier, input2_shift, output_offset, output_multiplier,
        output_shift, act_min, act_max,
    }
    elementwise::MulS8 {
        input1, input2, output, input1_offset, input2_offset, output_offset, output_multiplier,
        output_shift, act_min, act_max,
    }
    elementwise::BinaryF32 { input1, input2, output, activation }
    pad::Pad { input, output, paddings, pad_value }
    reduce::MeanS8 {
        input, output, axes_mask, input_sum_offset, output_zero_point, multiplier, shift,
    }
    reduce::MeanF32 { input, output, axes_mask }
    reshape::Reshape { input, output }
    concat::Concatenation { inputs, output, axis, activation }
    activations::SoftmaxS8 { input, output, table, output_scale, output_zero_point }
    activations::SoftmaxF32 { input, output, beta }
    activations::LogisticS8 { input, output, table }
    activations::LogisticF32 { input, output }
    activations::TanhS8 { input, output, table }
    activations::TanhF32 { input, output }
    quantize::QuantizeF32ToS8 { input, output, scale, zero_point }
    quantize::RequantizeS8 {
        input, output, input_zero_point, output_zero_point, multiplier, shift,
    }
    quantize::DequantizeS8ToF32 { input, output, scale, zero_point }
}

impl Decode<'_> for Window {
    // Shared by the convolutions and pooling rather than inlined into each.
    #[inline(never)]
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Some(Window {
            stride_h: Decode::decode(r)?,
            stride_w: Decode::decode(r)?,
            dilation_h: Decode::decode(r)?,
            dilation_w: Decode::decode(r)?,
            pad_top: Decode::decode(r)?,
            pad_left: Decode::decode(r)?,
        })
    }
}

impl Decode<'_> for Requant {
    // Shared by the int8 convolutions and FULLY_CONNECTED rather than inlined into each.
    #[inline(never)]
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Some(Requant {
            multipliers: Decode::decode(r)?,
            shifts: Decode::decode(r)?,
        })
    }
}

impl Decode<'_> for elementwise::AddF32 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Decode::decode(r).map(elementwise::AddF32)
    }
}

impl Decode<'_> for elementwise::MulF32 {
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Decode::decode(r).map(elementwise::MulF32)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::error::Error;
    use crate::ops::Op;

    /// A tensor whose every field depends on `n`, so swapped fields do not decode equal.
    fn tensor(n: u32) -> TensorDef {
        let dtypes = [DType::I8, DType::I16, DType::I32, DType::F32];
        let dims: Vec<u32> = (0..(n % 6)).map(|i| n * 1000 + i * 300 + 1).collect();
        TensorDef {
            dtype: dtypes[n as usize % 4],
            shape: Shape::new(&dims).unwrap(),
            location: if n.is_multiple_of(2) {
                Location::Arena(n * 16)
            } else {
                Location::Const(n << 20)
            },
            quant: (!n.is_multiple_of(3)).then_some(QuantParams {
                scale: n as f32 * 0.03125 + 0.1,
                zero_point: -(n as i32) * 7 + 3,
            }),
        }
    }

    fn window(n: u16) -> Window {
        Window {
            stride_h: n,
            stride_w: n + 1,
            dilation_h: n + 2,
            dilation_w: n + 3,
            pad_top: 300 + n,
            pad_left: 65_535 - n,
        }
    }

    fn requant(n: u32) -> Requant {
        Requant {
            multipliers: tensor(n),
            shifts: tensor(n + 1),
        }
    }

    /// One operator of every variant, fields all different.
    fn every_op() -> Vec<Op> {
        use activations::*;
        use conv::*;
        use depthwise::*;
        use elementwise::*;
        use fully_connected::*;
        use pooling::*;
        use quantize::*;
        use reduce::*;
        let t = tensor;
        let binary = |n| BinaryF32 {
            input1: t(n),
            input2: t(n + 1),
            output: t(n + 2),
            activation: Activation::Relu6,
        };
        std::vec![
            Op::Conv2dS8(Conv2dS8 {
                input: t(1),
                filter: t(2),
                bias: Some(t(3)),
                output: t(4),
                window: window(1),
                input_offset: 128,
                output_offset: -128,
                requant: requant(5),
                act_min: -100,
                act_max: 99,
            }),
            Op::Conv2dF32(Conv2dF32 {
                input: t(2),
                filter: t(3),
                bias: None,
                output: t(5),
                window: window(2),
                activation: Activation::Relu,
            }),
            Op::Conv2dHybrid(Conv2dHybrid {
                input: t(3),
                filter: t(4),
                filter_scales: t(5),
                bias: Some(t(6)),
                output: t(7),
                window: window(3),
                activation: Activation::ReluN1To1,
                scratch: t(8),
            }),
            Op::DepthwiseConv2dS8(DepthwiseConv2dS8 {
                input: t(4),
                filter: t(5),
                bias: None,
                output: t(6),
                window: window(4),
                depth_multiplier: 2,
                input_offset: -5,
                output_offset: 6,
                requant: requant(7),
                act_min: -7,
                act_max: 8,
            }),
            Op::DepthwiseConv2dF32(DepthwiseConv2dF32 {
                input: t(5),
                filter: t(6),
                bias: Some(t(7)),
                output: t(8),
                window: window(5),
                depth_multiplier: 3,
                activation: Activation::Relu6,
            }),
            Op::DepthwiseConv2dHybrid(DepthwiseConv2dHybrid {
                input: t(6),
                filter: t(7),
                filter_scales: t(8),
                bias: None,
                output: t(9),
                window: window(6),
                depth_multiplier: 4,
                activation: Activation::None,
                scratch: t(10),
            }),
            Op::FullyConnectedS8(FullyConnectedS8 {
                input: t(7),
                filter: t(8),
                bias: Some(t(9)),
                output: t(10),
                input_offset: 1,
                filter_offset: -2,
                output_offset: 3,
                requant: requant(11),
                act_min: -4,
                act_max: 5,
            }),
            Op::FullyConnectedF32(FullyConnectedF32 {
                input: t(8),
                filter: t(9),
                bias: None,
                output: t(10),
                activation: Activation::Relu,
            }),
            Op::FullyConnectedHybrid(FullyConnectedHybrid {
                input: t(9),
                filter: t(10),
                filter_scales: t(11),
                bias: Some(t(12)),
                output: t(13),
                activation: Activation::Relu6,
                asymmetric_quantize_inputs: true,
                scratch: t(14),
            }),
            Op::Pool2dS8(Pool2dS8 {
                kind: PoolKind::Max,
                input: t(10),
                output: t(11),
                filter_h: 25,
                filter_w: 5,
                window: window(7),
                act_min: -9,
                act_max: 10,
            }),
            Op::Pool2dF32(Pool2dF32 {
                kind: PoolKind::Average,
                input: t(11),
                output: t(12),
                filter_h: 3,
                filter_w: 4,
                window: window(8),
                activation: Activation::ReluN1To1,
            }),
            Op::AddS8(AddS8 {
                input1: t(12),
                input2: t(13),
                output: t(14),
                left_shift: 20,
                input1_offset: 1,
                input1_multiplier: 2,
                input1_shift: -3,
                input2_offset: 4,
                input2_multiplier: 5,
                input2_shift: -6,
                output_offset: 7,
                output_multiplier: 8,
                output_shift: -9,
                act_min: -10,
                act_max: 11,
            }),
            Op::AddF32(AddF32(binary(13))),
            Op::MulS8(MulS8 {
                input1: t(14),
                input2: t(15),
                output: t(16),
                input1_offset: -1,
                input2_offset: 2,
                output_offset: -3,
                output_multiplier: i32::MAX,
                output_shift: i32::MIN,
                act_min: -12,
                act_max: 13,
            }),
            Op::MulF32(MulF32(binary(15))),
            Op::Pad(pad::Pad {
                input: t(16),
                output: t(17),
                paddings: heapless::Vec::from_slice(&[(1, 2), (3, 400), (u32::MAX, 0)]).unwrap(),
                pad_value: [1, 2, 3, 4],
            }),
            Op::MeanS8(MeanS8 {
                input: t(17),
                output: t(18),
                axes_mask: 0b110,
                input_sum_offset: -5,
                output_zero_point: 6,
                multiplier: 7,
                shift: -8,
            }),
            Op::MeanF32(MeanF32 {
                input: t(18),
                output: t(19),
                axes_mask: 0b1,
            }),
            Op::Reshape(reshape::Reshape {
                input: t(19),
                output: t(20),
            }),
            Op::Concatenation(concat::Concatenation {
                inputs: heapless::Vec::from_slice(&[t(20), t(21), t(22)]).unwrap(),
                output: t(23),
                axis: 3,
                activation: Activation::Relu,
            }),
            Op::SoftmaxS8(SoftmaxS8 {
                input: t(21),
                output: t(22),
                table: t(23),
                output_scale: 1.0 / 256.0,
                output_zero_point: -128,
            }),
            Op::SoftmaxF32(SoftmaxF32 {
                input: t(22),
                output: t(23),
                beta: 0.5,
            }),
            Op::LogisticS8(LogisticS8 {
                input: t(23),
                output: t(24),
                table: t(25),
            }),
            Op::LogisticF32(LogisticF32 {
                input: t(24),
                output: t(25),
            }),
            Op::TanhS8(TanhS8 {
                input: t(25),
                output: t(26),
                table: t(27),
            }),
            Op::TanhF32(TanhF32 {
                input: t(26),
                output: t(27),
            }),
            Op::QuantizeF32ToS8(QuantizeF32ToS8 {
                input: t(27),
                output: t(28),
                scale: 0.25,
                zero_point: -3,
            }),
            Op::RequantizeS8(RequantizeS8 {
                input: t(28),
                output: t(29),
                input_zero_point: 4,
                output_zero_point: -5,
                multiplier: 1 << 30,
                shift: -1,
            }),
            Op::DequantizeS8ToF32(DequantizeS8ToF32 {
                input: t(29),
                output: t(30),
                scale: 0.125,
                zero_point: 7,
            }),
        ]
    }

    fn decode_op(bytes: &[u8]) -> (crate::Result<Op>, usize) {
        let mut r = Reader::new(bytes);
        let op = Op::decode(&mut r);
        (op, r.rest().len())
    }

    #[test]
    fn every_operator_decodes_to_what_postcard_encoded() {
        let ops = every_op();
        // Every variant, in tag order: a new variant must be added here.
        let names: Vec<&str> = ops.iter().map(|op| op.variant_name()).collect();
        assert_eq!(names.len(), crate::ops::VARIANT_COUNT, "{names:?}");
        for op in &ops {
            let mut bytes = postcard::to_allocvec(op).unwrap();
            bytes.extend_from_slice(&[0xaa, 0xbb]);
            let (decoded, rest) = decode_op(&bytes);
            if op.is_enabled() {
                assert_eq!(decoded.as_ref(), Ok(op));
                assert_eq!(rest, 2, "{}", op.variant_name());
            } else {
                assert_eq!(
                    decoded.err(),
                    Some(Error::OpNotEnabled {
                        op: op.flavour(),
                        features: op.required_features(),
                    })
                );
            }
        }
    }

    #[test]
    fn truncated_operator_records_are_malformed() {
        for op in every_op().iter().filter(|op| op.is_enabled()) {
            let bytes = postcard::to_allocvec(op).unwrap();
            for len in 0..bytes.len() {
                assert_eq!(
                    decode_op(&bytes[..len]).0.err(),
                    Some(Error::Malformed {
                        what: "operator record"
                    }),
                    "{} cut at {len}",
                    op.variant_name()
                );
            }
        }
    }

    #[test]
    fn unknown_operator_tags_are_malformed() {
        for tag in [crate::ops::VARIANT_COUNT as u8, 0x7f] {
            assert_eq!(
                decode_op(&[tag, 0, 0, 0]).0.err(),
                Some(Error::Malformed {
                    what: "operator record"
                })
            );
        }
    }

    /// The reader and postcard's serde decoder agree on `bytes`: the same value and the same
    /// bytes left, or both refuse.
    fn agrees_with_postcard<'a, T>(bytes: &'a [u8]) -> bool
    where
        T: Decode<'a> + serde::Deserialize<'a> + core::fmt::Debug,
    {
        let mut r = Reader::new(bytes);
        // Compared as text: a mutated float may be NaN, which is never equal to itself.
        let ours = T::decode(&mut r).map(|v| std::format!("{v:?}, {} left", r.rest().len()));
        let theirs = postcard::take_from_bytes::<T>(bytes)
            .ok()
            .map(|(v, rest)| std::format!("{v:?}, {} left", rest.len()));
        assert_eq!(ours, theirs, "{bytes:02x?}");
        ours.is_some()
    }

    /// Random byte changes in encoded records: the reader decides exactly as postcard does.
    #[test]
    fn mutated_records_decode_exactly_as_postcard_decides() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        let mut rejected = 0;
        for op in every_op() {
            let encoded = postcard::to_allocvec(&op).unwrap();
            // The struct after the operator's one-byte tag.
            let fields = &encoded[1..];
            for _ in 0..400 {
                let mut bad = fields.to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = next() as usize % bad.len();
                    bad[at] = match next() % 4 {
                        0 => 0x80,
                        1 => 0xff,
                        2 => bad[at] ^ (1 << (next() % 8)),
                        _ => next() as u8,
                    };
                }
                if next() % 4 == 0 {
                    bad.truncate(next() as usize % bad.len());
                }
                let ok = match &op {
                    Op::Conv2dS8(_) => agrees_with_postcard::<conv::Conv2dS8>(&bad),
                    Op::DepthwiseConv2dS8(_) => {
                        agrees_with_postcard::<depthwise::DepthwiseConv2dS8>(&bad)
                    }
                    Op::FullyConnectedS8(_) => {
                        agrees_with_postcard::<fully_connected::FullyConnectedS8>(&bad)
                    }
                    Op::Pool2dS8(_) => agrees_with_postcard::<pooling::Pool2dS8>(&bad),
                    Op::Pad(_) => agrees_with_postcard::<pad::Pad>(&bad),
                    Op::Concatenation(_) => agrees_with_postcard::<concat::Concatenation>(&bad),
                    Op::SoftmaxS8(_) => agrees_with_postcard::<activations::SoftmaxS8>(&bad),
                    Op::FullyConnectedHybrid(_) => {
                        agrees_with_postcard::<fully_connected::FullyConnectedHybrid>(&bad)
                    }
                    Op::AddS8(_) => agrees_with_postcard::<elementwise::AddS8>(&bad),
                    _ => agrees_with_postcard::<TensorDef>(&bad),
                };
                if ok {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
        assert!(accepted > 500 && rejected > 500, "{accepted} {rejected}");
    }

    #[test]
    fn varints_follow_postcards_limits() {
        let u32_of = |bytes: &[u8]| Reader::new(bytes).varint();
        assert_eq!(u32_of(&[0x00]), Some(0));
        assert_eq!(u32_of(&[0x7f]), Some(127));
        assert_eq!(u32_of(&[0x80, 0x01]), Some(128));
        assert_eq!(u32_of(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some(u32::MAX));
        assert_eq!(u32_of(&[0xff, 0xff, 0xff, 0xff, 0x10]), None, "overflow");
        assert_eq!(
            u32_of(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            None,
            "6 bytes"
        );
        assert_eq!(u32_of(&[0x80]), None, "truncated");
        let u16_of = |bytes: &[u8]| Reader::new(bytes).varint_u16();
        assert_eq!(u16_of(&[0xff, 0xff, 0x03]), Some(u16::MAX));
        assert_eq!(u16_of(&[0xff, 0xff, 0x04]), None);
        assert_eq!(u16_of(&[0x80, 0x80, 0x80, 0x00]), None);
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            let bytes = postcard::to_allocvec(&v).unwrap();
            assert_eq!(i32::decode(&mut Reader::new(&bytes)), Some(v));
        }
    }

    #[test]
    fn graph_and_metadata_records_decode_as_postcard_encoded() {
        let inputs = heapless::Vec::from_slice(&[tensor(2), tensor(4)]).unwrap();
        let outputs = heapless::Vec::from_slice(&[tensor(6)]).unwrap();
        let graph = Graph {
            arena_size: 16_000,
            inputs,
            outputs,
            op_count: 13,
            ops: &[1, 2, 3],
            metadata: &[9; 200],
        };
        let bytes = postcard::to_allocvec(&graph).unwrap();
        assert!(agrees_with_postcard::<Graph>(&bytes));
        let entry = MetaEntry {
            key: "labels",
            value: b"yes\nno",
        };
        let bytes = postcard::to_allocvec(&entry).unwrap();
        assert!(agrees_with_postcard::<MetaEntry>(&bytes));
        let mut bad_utf8 = bytes.clone();
        bad_utf8[1] = 0xc3;
        assert!(!agrees_with_postcard::<MetaEntry>(&bad_utf8));
        for len in 0..bytes.len() {
            assert!(!agrees_with_postcard::<MetaEntry>(&bytes[..len]));
        }
    }
}

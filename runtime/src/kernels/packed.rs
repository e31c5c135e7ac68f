//! Operator weights re-laid out once per model for a host kernel.
//!
//! `PreparedModel` asks `Packed::prepare` for each operator when it decodes the
//! graph; the interpreter hands the result to that operator's kernel through
//! [`crate::arena::Tensors::packed`]. A kernel uses it only when it was packed for the same
//! shape and parameters, and otherwise runs as without it. On targets and builds with no
//! packing kernel the enum has no variants, so `Option<&Packed>` is always `None`.

#[cfg(feature = "std")]
use crate::ops::Op;

/// Packed weights of one operator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Packed {
    /// FULLY_CONNECTED or CONV_2D weights for the AVX-512 VNNI kernels.
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    Vnni(super::x86::vnni::VnniWeights),
}

impl Packed {
    /// Whether this build has any packing kernel (when not, kernels drop their packed branch
    /// at compile time, which keeps it out of firmware code).
    pub const POSSIBLE: bool = cfg!(all(target_arch = "x86_64", feature = "std"));

    /// Bytes the packed form holds.
    pub fn bytes(&self) -> usize {
        match *self {
            #[cfg(all(target_arch = "x86_64", feature = "std"))]
            Packed::Vnni(ref w) => w.bytes(),
        }
    }

    /// The packed weights of `op` for the best kernel this CPU has, or `None` when that kernel
    /// needs none (or the operator's constants are not where the model says: the kernels then
    /// report that error themselves when they run).
    #[cfg(feature = "std")]
    pub fn prepare(op: &Op, consts: &[u8]) -> Option<Packed> {
        #[cfg(all(target_arch = "x86_64", feature = "int8"))]
        if super::x86::best() == super::x86::Isa::Avx512 {
            return prepare_vnni(op, consts).map(Packed::Vnni);
        }
        let _ = (op, consts);
        None
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std", feature = "int8"))]
fn prepare_vnni(op: &Op, consts: &[u8]) -> Option<super::x86::vnni::VnniWeights> {
    use super::host_simd::S8Operands;
    use super::x86::vnni::VnniWeights;
    use crate::arena::constant;
    use crate::tensor::TensorDef;

    let i32s = |t: &TensorDef| crate::arena::as_i32(constant(consts, t)?).ok();
    // The weight operands of a FULLY_CONNECTED or CONV_2D (no input: packing never reads it).
    let operands =
        |filter: &TensorDef, bias: &Option<TensorDef>, requant: &crate::kernels::Requant| {
            Some(S8Operands {
                input: &[],
                filter: crate::arena::as_i8(constant(consts, filter)?),
                bias: match bias {
                    Some(t) => Some(i32s(t)?),
                    None => None,
                },
                multipliers: i32s(&requant.multipliers)?,
                shifts: i32s(&requant.shifts)?,
            })
        };
    match op {
        #[cfg(feature = "fully-connected")]
        Op::FullyConnectedS8(p) => {
            let dims = super::fully_connected::fc_dims(&p.input, &p.filter, &p.output)?;
            let ops = operands(&p.filter, &p.bias, &p.requant)?;
            VnniWeights::for_fully_connected(p, &dims, &ops)
        }
        #[cfg(feature = "conv2d")]
        Op::Conv2dS8(p) => {
            let d = super::conv::conv_dims(&p.input, &p.filter, &p.output)?;
            let ops = operands(&p.filter, &p.bias, &p.requant)?;
            VnniWeights::for_conv(p, &d, &ops)
        }
        _ => None,
    }
}

/// An operator's packed weights with its tensors resolved once, so `PreparedModel`
/// can run it straight on the arena instead of through [`Op::eval`]'s per-run shape and
/// bounds work (tens of nanoseconds an operator: a tenth of a small model like ad01_int8).
#[cfg(feature = "std")]
#[derive(Debug, Clone)]
pub struct PreparedOp {
    packed: Packed,
    direct: Option<Direct>,
}

/// Arena ranges (disjoint, checked by the loader's validator and again here) and the shape
/// numbers of a packed operator.
#[cfg(feature = "std")]
#[derive(Debug, Clone)]
struct Direct {
    input: core::ops::Range<usize>,
    output: core::ops::Range<usize>,
    shape: DirectShape,
}

#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
enum DirectShape {
    #[cfg(feature = "fully-connected")]
    FullyConnected(super::fully_connected::FcDims),
    #[cfg(feature = "conv2d")]
    Conv(super::conv::SpatialDims),
}

#[cfg(feature = "std")]
impl PreparedOp {
    /// Packs `op`'s weights (see [`Packed::prepare`]) and resolves its tensors.
    pub fn prepare(op: &Op, consts: &[u8]) -> Option<PreparedOp> {
        let packed = Packed::prepare(op, consts)?;
        Some(PreparedOp {
            direct: Direct::resolve(op),
            packed,
        })
    }

    /// The packed weights, for [`crate::arena::Tensors::packed`].
    pub fn packed(&self) -> &Packed {
        &self.packed
    }

    /// Runs `op` on `arena` over the packed weights; `false` (nothing written) when it has to
    /// go through [`Op::eval`] instead.
    #[inline]
    #[allow(unused_variables)] // Without FULLY_CONNECTED and CONV_2D nothing runs directly.
    pub fn run_direct(&self, op: &Op, arena: &mut [u8]) -> bool {
        let Some(direct) = &self.direct else {
            return false;
        };
        let Some((input, output)) = split_disjoint(arena, &direct.input, &direct.output) else {
            return false;
        };
        let (input, output) = (crate::arena::as_i8(input), crate::arena::as_i8_mut(output));
        match (op, direct.shape) {
            #[cfg(feature = "fully-connected")]
            (Op::FullyConnectedS8(p), DirectShape::FullyConnected(dims)) => {
                super::host_simd::fully_connected_s8_packed(p, dims, input, output, &self.packed)
            }
            #[cfg(feature = "conv2d")]
            (Op::Conv2dS8(p), DirectShape::Conv(d)) => {
                super::host_simd::conv2d_s8_packed(p, d, input, output, &self.packed)
            }
            _ => false,
        }
    }
}

#[cfg(feature = "std")]
impl Direct {
    // Builds without FULLY_CONNECTED and CONV_2D have no packed operator to resolve.
    #[allow(unreachable_code)]
    fn resolve(op: &Op) -> Option<Direct> {
        use crate::arena::arena_range;
        let (input, output, shape) = match op {
            #[cfg(feature = "fully-connected")]
            Op::FullyConnectedS8(p) => (
                &p.input,
                &p.output,
                DirectShape::FullyConnected(super::fully_connected::fc_dims(
                    &p.input, &p.filter, &p.output,
                )?),
            ),
            #[cfg(feature = "conv2d")]
            Op::Conv2dS8(p) => (
                &p.input,
                &p.output,
                DirectShape::Conv(super::conv::conv_dims(&p.input, &p.filter, &p.output)?),
            ),
            _ => return None,
        };
        let (input, output) = (arena_range(input)?, arena_range(output)?);
        let disjoint = input.end <= output.start || output.end <= input.start;
        disjoint.then_some(Direct {
            input,
            output,
            shape,
        })
    }
}

/// `arena[input]` and `arena[output]` for two disjoint ranges; `None` when they overlap or
/// either lies outside the arena.
#[cfg(feature = "std")]
#[inline]
fn split_disjoint<'a>(
    arena: &'a mut [u8],
    input: &core::ops::Range<usize>,
    output: &core::ops::Range<usize>,
) -> Option<(&'a [u8], &'a mut [u8])> {
    if input.end <= output.start {
        let (low, high) = arena.split_at_mut_checked(output.start)?;
        Some((low.get(input.clone())?, high.get_mut(..output.len())?))
    } else if output.end <= input.start {
        let (low, high) = arena.split_at_mut_checked(input.start)?;
        let input_len = input.len();
        Some((high.get(..input_len)?, low.get_mut(output.clone())?))
    } else {
        None
    }
}

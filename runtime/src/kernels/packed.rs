//! Operator weights re-laid out once per model for a host kernel.
//!
//! [`crate::PreparedModel`] asks [`Packed::prepare`] for each operator when it decodes the
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
    let bias = |t: &Option<TensorDef>| match t {
        Some(t) => i32s(t).map(Some),
        None => Some(None),
    };
    match op {
        #[cfg(feature = "fully-connected")]
        Op::FullyConnectedS8(p) => {
            let dims = super::fully_connected::fc_dims(&p.input, &p.filter, &p.output)?;
            let ops = S8Operands {
                input: &[],
                filter: crate::arena::as_i8(constant(consts, &p.filter)?),
                bias: bias(&p.bias)?,
                multipliers: i32s(&p.requant.multipliers)?,
                shifts: i32s(&p.requant.shifts)?,
            };
            VnniWeights::for_fully_connected(p, &dims, &ops)
        }
        #[cfg(feature = "conv2d")]
        Op::Conv2dS8(p) => {
            let d = super::conv::conv_dims(&p.input, &p.filter, &p.output)?;
            let ops = S8Operands {
                input: &[],
                filter: crate::arena::as_i8(constant(consts, &p.filter)?),
                bias: bias(&p.bias)?,
                multipliers: i32s(&p.requant.multipliers)?,
                shifts: i32s(&p.requant.shifts)?,
            };
            VnniWeights::for_conv(p, &d, &ops)
        }
        _ => None,
    }
}

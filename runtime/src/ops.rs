//! The operator set of the `.emb` format.
//!
//! Variants are encoded by position (postcard varint): new variants are only ever appended,
//! and a change to an existing variant's fields bumps [`crate::format::FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

use crate::arena::{Tensors, Validator};
use crate::error::Result;
use crate::kernels::*;
use crate::tensor::TensorDef;

macro_rules! ops {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// One operator with its kernel-ready parameters.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum Op {
            $($variant($ty),)*
        }

        impl Op {
            /// The kernel behind this operator.
            pub fn kernel(&self) -> &dyn Kernel {
                match self {
                    $(Op::$variant(k) => k,)*
                }
            }

            /// The variant's name, which says the kernel flavour (`Conv2dS8`, `Conv2dHybrid`).
            pub fn variant_name(&self) -> &'static str {
                match self {
                    $(Op::$variant(_) => stringify!($variant),)*
                }
            }
        }
    };
}

ops! {
    Conv2dS8(conv::Conv2dS8),
    Conv2dF32(conv::Conv2dF32),
    Conv2dHybrid(conv::Conv2dHybrid),
    DepthwiseConv2dS8(depthwise::DepthwiseConv2dS8),
    DepthwiseConv2dF32(depthwise::DepthwiseConv2dF32),
    DepthwiseConv2dHybrid(depthwise::DepthwiseConv2dHybrid),
    FullyConnectedS8(fully_connected::FullyConnectedS8),
    FullyConnectedF32(fully_connected::FullyConnectedF32),
    FullyConnectedHybrid(fully_connected::FullyConnectedHybrid),
    Pool2dS8(pooling::Pool2dS8),
    Pool2dF32(pooling::Pool2dF32),
    AddS8(elementwise::AddS8),
    AddF32(elementwise::AddF32),
    MulS8(elementwise::MulS8),
    MulF32(elementwise::MulF32),
    Pad(pad::Pad),
    MeanS8(reduce::MeanS8),
    MeanF32(reduce::MeanF32),
    Reshape(reshape::Reshape),
    Concatenation(concat::Concatenation),
    SoftmaxS8(activations::SoftmaxS8),
    SoftmaxF32(activations::SoftmaxF32),
    LogisticS8(activations::LogisticS8),
    LogisticF32(activations::LogisticF32),
    TanhS8(activations::TanhS8),
    TanhF32(activations::TanhF32),
    QuantizeF32ToS8(quantize::QuantizeF32ToS8),
    RequantizeS8(quantize::RequantizeS8),
    DequantizeS8ToF32(quantize::DequantizeS8ToF32),
}

impl Op {
    pub fn name(&self) -> &'static str {
        self.kernel().name()
    }

    pub fn validate(&self, v: &Validator) -> Result<()> {
        self.kernel().validate(v)
    }

    pub fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        self.kernel().eval(t)
    }

    pub fn output(&self) -> &TensorDef {
        self.kernel().output()
    }

    pub fn macs(&self) -> u64 {
        self.kernel().macs()
    }
}

//! The operator set of the `.emb` format.
//!
//! Variants are encoded by position (postcard varint): new variants are only ever appended,
//! and a change to an existing variant's fields bumps [`crate::format::FORMAT_VERSION`].
//!
//! Every variant always exists (the format does not depend on the build), but its kernel is
//! compiled in only when the cargo features it names are on (`conv2d` + `int8`, ...; see the
//! crate's `Cargo.toml`). A model that uses a left-out kernel fails to load with
//! [`Error::OpNotEnabled`]; its code is never referenced, so the linker drops it.

use serde::Serialize;

use crate::arena::{Tensors, Validator};
use crate::decode::{Decode, Reader};
use crate::error::{Error, Result};
use crate::kernels::*;
use crate::tensor::TensorDef;

macro_rules! ops {
    ($($variant:ident($ty:ty) = $flavour:literal if [$f0:literal $(, $feature:literal)*]),* $(,)?) => {
        /// One operator with its kernel-ready parameters.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[non_exhaustive]
        pub enum Op {
            $($variant($ty),)*
        }

        /// The variants' positions, which are their encoded tags.
        #[repr(u32)]
        enum Tag {
            $($variant,)*
        }

        /// Per tag: the variant's name, whether this build has its kernel, what it is, and the
        /// features that add it.
        const VARIANT_NAMES: &[&str] = &[$(stringify!($variant)),*];
        /// How many variants the format has.
        #[cfg(test)]
        pub(crate) const VARIANT_COUNT: usize = VARIANT_NAMES.len();
        const VARIANT_ENABLED: &[bool] = &[$(cfg!(all(feature = $f0 $(, feature = $feature)*))),*];
        const VARIANT_FLAVOURS: &[&str] = &[$($flavour),*];
        const VARIANT_FEATURES: &[&str] = &[$(concat!($f0 $(, "+", $feature)*)),*];

        impl Op {
            fn tag(&self) -> usize {
                (match self {
                    $(Op::$variant(_) => Tag::$variant,)*
                }) as usize
            }

            /// The kernel behind this operator, or `None` when this build leaves it out (its
            /// cargo features are off, see [`Op::required_features`]).
            pub fn kernel(&self) -> Option<&dyn Kernel> {
                match self {
                    $(Op::$variant(k) => {
                        #[cfg(all(feature = $f0 $(, feature = $feature)*))]
                        return Some(k);
                        #[cfg(not(all(feature = $f0 $(, feature = $feature)*)))]
                        return {
                            let _ = k;
                            None
                        };
                    })*
                }
            }

            // `validate` and `eval` call the kernels directly rather than through
            // `kernel()`'s `&dyn Kernel`: a vtable would link every `Kernel` method of every
            // enabled kernel (`macs`, `for_each_input`, ...) into firmware that never calls them.
            // Out of line, so scripts/firmware/code-size.sh sees the kernels' `validate` and
            // `eval` (inlined here) under these names rather than inside the loader.
            #[inline(never)]
            fn validate_kernel(&self, v: &Validator) -> Result<()> {
                match self {
                    $(Op::$variant(k) => {
                        #[cfg(all(feature = $f0 $(, feature = $feature)*))]
                        return Kernel::validate(k, v);
                        #[cfg(not(all(feature = $f0 $(, feature = $feature)*)))]
                        return {
                            let _ = (k, v);
                            Err(self.not_enabled())
                        };
                    })*
                }
            }

            #[inline(never)]
            fn eval_kernel(&self, t: &mut Tensors<'_>) -> Result<()> {
                match self {
                    $(Op::$variant(k) => {
                        #[cfg(all(feature = $f0 $(, feature = $feature)*))]
                        return Kernel::eval(k, t);
                        #[cfg(not(all(feature = $f0 $(, feature = $feature)*)))]
                        return {
                            let _ = (k, t);
                            Err(self.not_enabled())
                        };
                    })*
                }
            }

            /// The TFLite builtin name (`CONV_2D`, ...).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$variant(k) => k.name(),)*
                }
            }

            /// The tensor the operator writes.
            pub fn output(&self) -> &TensorDef {
                match self {
                    $(Op::$variant(k) => k.output(),)*
                }
            }

            /// Calls `f` for every input tensor (activations and constants), in TFLite's order.
            pub fn for_each_input(&self, f: &mut dyn FnMut(&TensorDef)) {
                match self {
                    $(Op::$variant(k) => k.for_each_input(f),)*
                }
            }

            /// Multiply-accumulates per inference (0 for data movement ops).
            pub fn macs(&self) -> u64 {
                match self {
                    $(Op::$variant(k) => k.macs(),)*
                }
            }
        }

        impl Op {
            /// Decodes one operator record (its variant index, then the parameter struct's
            /// fields). Only the kernels this build has get a decoder, so a left-out kernel's
            /// decoder is not linked either: its tag fails with [`Error::OpNotEnabled`].
            pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Op> {
                const MALFORMED: Error = Error::Malformed {
                    what: "operator record",
                };
                let tag = r.len().ok_or(MALFORMED)?;
                // Left-out kernels from the tables (data, not one code path per variant).
                if let Some(false) = VARIANT_ENABLED.get(tag) {
                    return Err(Error::OpNotEnabled {
                        op: VARIANT_FLAVOURS.get(tag).copied().unwrap_or(""),
                        features: VARIANT_FEATURES.get(tag).copied().unwrap_or(""),
                    });
                }
                match tag {
                    $(#[cfg(all(feature = $f0 $(, feature = $feature)*))]
                    t if t == Tag::$variant as usize => {
                        <$ty as Decode>::decode(r).map(Op::$variant).ok_or(MALFORMED)
                    })*
                    _ => Err(MALFORMED),
                }
            }
        }
    };
}

ops! {
    Conv2dS8(conv::Conv2dS8) = "CONV_2D int8" if ["conv2d", "int8"],
    Conv2dF32(conv::Conv2dF32) = "CONV_2D float32" if ["conv2d", "float"],
    Conv2dHybrid(conv::Conv2dHybrid) = "CONV_2D hybrid" if ["conv2d", "hybrid"],
    DepthwiseConv2dS8(depthwise::DepthwiseConv2dS8) = "DEPTHWISE_CONV_2D int8" if ["depthwise-conv2d", "int8"],
    DepthwiseConv2dF32(depthwise::DepthwiseConv2dF32) = "DEPTHWISE_CONV_2D float32" if ["depthwise-conv2d", "float"],
    DepthwiseConv2dHybrid(depthwise::DepthwiseConv2dHybrid) = "DEPTHWISE_CONV_2D hybrid" if ["depthwise-conv2d", "hybrid"],
    FullyConnectedS8(fully_connected::FullyConnectedS8) = "FULLY_CONNECTED int8" if ["fully-connected", "int8"],
    FullyConnectedF32(fully_connected::FullyConnectedF32) = "FULLY_CONNECTED float32" if ["fully-connected", "float"],
    FullyConnectedHybrid(fully_connected::FullyConnectedHybrid) = "FULLY_CONNECTED hybrid" if ["fully-connected", "hybrid"],
    Pool2dS8(pooling::Pool2dS8) = "AVERAGE_POOL_2D/MAX_POOL_2D int8" if ["pool2d", "int8"],
    Pool2dF32(pooling::Pool2dF32) = "AVERAGE_POOL_2D/MAX_POOL_2D float32" if ["pool2d", "float"],
    AddS8(elementwise::AddS8) = "ADD int8" if ["add", "int8"],
    AddF32(elementwise::AddF32) = "ADD float32" if ["add", "float"],
    MulS8(elementwise::MulS8) = "MUL int8" if ["mul", "int8"],
    MulF32(elementwise::MulF32) = "MUL float32" if ["mul", "float"],
    Pad(pad::Pad) = "PAD" if ["pad"],
    MeanS8(reduce::MeanS8) = "MEAN int8" if ["mean", "int8"],
    MeanF32(reduce::MeanF32) = "MEAN float32" if ["mean", "float"],
    Reshape(reshape::Reshape) = "RESHAPE" if ["reshape"],
    Concatenation(concat::Concatenation) = "CONCATENATION" if ["concatenation"],
    SoftmaxS8(activations::SoftmaxS8) = "SOFTMAX int8" if ["softmax", "int8"],
    SoftmaxF32(activations::SoftmaxF32) = "SOFTMAX float32" if ["softmax", "float"],
    LogisticS8(activations::LogisticS8) = "LOGISTIC int8" if ["logistic", "int8"],
    LogisticF32(activations::LogisticF32) = "LOGISTIC float32" if ["logistic", "float"],
    TanhS8(activations::TanhS8) = "TANH int8" if ["tanh", "int8"],
    TanhF32(activations::TanhF32) = "TANH float32" if ["tanh", "float"],
    QuantizeF32ToS8(quantize::QuantizeF32ToS8) = "QUANTIZE float32 to int8" if ["quantize", "float"],
    RequantizeS8(quantize::RequantizeS8) = "QUANTIZE int8 to int8" if ["quantize", "int8"],
    DequantizeS8ToF32(quantize::DequantizeS8ToF32) = "DEQUANTIZE int8 to float32" if ["quantize", "float"],
}

impl Op {
    /// Whether this build has the operator's kernel.
    pub fn is_enabled(&self) -> bool {
        VARIANT_ENABLED.get(self.tag()).copied().unwrap_or(false)
    }

    /// The cargo features of `ember-runtime` this operator's kernel needs, joined by `+`
    /// (`"conv2d+int8"`).
    pub fn required_features(&self) -> &'static str {
        VARIANT_FEATURES.get(self.tag()).copied().unwrap_or("")
    }

    /// The operator and its element types, for messages (`"CONV_2D float32"`).
    pub fn flavour(&self) -> &'static str {
        VARIANT_FLAVOURS.get(self.tag()).copied().unwrap_or("")
    }

    /// The variant's name, which says the kernel flavour (`Conv2dS8`, `Conv2dHybrid`).
    pub fn variant_name(&self) -> &'static str {
        VARIANT_NAMES.get(self.tag()).copied().unwrap_or("")
    }

    /// Load-time checks (see [`Kernel::validate`]); [`Error::OpNotEnabled`] when this build
    /// leaves the kernel out.
    pub fn validate(&self, v: &Validator) -> Result<()> {
        self.validate_kernel(v)
    }

    /// Runs the operator.
    pub fn eval(&self, t: &mut Tensors<'_>) -> Result<()> {
        self.eval_kernel(t)
    }

    /// The error for an operator whose kernel this build leaves out.
    // Unused when every kernel is compiled in (the default features).
    #[allow(dead_code)]
    fn not_enabled(&self) -> Error {
        Error::OpNotEnabled {
            op: self.flavour(),
            features: self.required_features(),
        }
    }
}

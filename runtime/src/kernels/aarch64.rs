//! aarch64 NEON int8 kernels (Raspberry Pi 4/5 class cores).

use super::conv::{Conv2dS8, SpatialDims};
use super::depthwise::DepthwiseConv2dS8;
use super::fully_connected::{FcDims, FullyConnectedS8};
use super::host_simd::S8Operands;

/// CONV_2D int8 with NEON; `false` when it does not apply.
pub fn conv2d_s8(_p: &Conv2dS8, _d: SpatialDims, _ops: S8Operands<'_>, _output: &mut [i8]) -> bool {
    false
}

/// DEPTHWISE_CONV_2D int8 with NEON; `false` when it does not apply.
pub fn depthwise_conv2d_s8(
    _p: &DepthwiseConv2dS8,
    _d: SpatialDims,
    _ops: S8Operands<'_>,
    _output: &mut [i8],
) -> bool {
    false
}

/// FULLY_CONNECTED int8 with NEON; `false` when it does not apply.
pub fn fully_connected_s8(
    _p: &FullyConnectedS8,
    _dims: FcDims,
    _ops: S8Operands<'_>,
    _output: &mut [i8],
) -> bool {
    false
}

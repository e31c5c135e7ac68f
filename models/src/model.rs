//! The burn networks: a depthwise-separable CNN in the MLPerf Tiny KWS shape, reused with
//! `(k, 1)` kernels as a 1-D CNN over IMU time series. Both run NCHW in burn; the exporter
//! writes NHWC for ember.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Architecture numbers; saved beside the record so the exporter rebuilds the same network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsCnnShape {
    /// Input `[height, width, channels]` (KWS: 49 frames x 10 MFCC x 1; IMU: T x 1 x axes).
    pub input: [usize; 3],
    pub channels: usize,
    pub first_kernel: [usize; 2],
    pub first_stride: [usize; 2],
    pub block_kernel: [usize; 2],
    pub blocks: usize,
    pub classes: usize,
}

impl DsCnnShape {
    /// MLPerf Tiny KWS DS-CNN: conv 10x4 stride 2, four depthwise-separable blocks, 64 channels.
    pub fn kws(channels: usize) -> Self {
        DsCnnShape {
            input: [49, 10, 1],
            channels,
            first_kernel: [10, 4],
            first_stride: [2, 2],
            block_kernel: [3, 3],
            blocks: 4,
            classes: 12,
        }
    }

    /// 1-D CNN over `steps` x `axes` sensor samples.
    pub fn imu(steps: usize, axes: usize, classes: usize) -> Self {
        DsCnnShape {
            input: [steps, 1, axes],
            channels: 32,
            first_kernel: [5, 1],
            first_stride: [2, 1],
            block_kernel: [5, 1],
            blocks: 2,
            classes,
        }
    }

    /// TensorFlow SAME padding for one axis: (before, after, output length).
    pub fn same(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
        let out = input.div_ceil(stride);
        let total = ((out - 1) * stride + kernel).saturating_sub(input);
        (total / 2, total - total / 2, out)
    }

    /// Spatial size after the first (strided) convolution; the blocks keep it.
    pub fn body_size(&self) -> [usize; 2] {
        let (_, _, h) = Self::same(self.input[0], self.first_kernel[0], self.first_stride[0]);
        let (_, _, w) = Self::same(self.input[1], self.first_kernel[1], self.first_stride[1]);
        [h, w]
    }

    fn padding(&self, size: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> PaddingConfig2d {
        let (top, bottom, _) = Self::same(size[0], kernel[0], stride[0]);
        let (left, right, _) = Self::same(size[1], kernel[1], stride[1]);
        PaddingConfig2d::Explicit(top, left, bottom, right)
    }

    pub fn to_text(&self) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        format!(
            "input={} channels={} first_kernel={} first_stride={} block_kernel={} blocks={} classes={}",
            list(&self.input),
            self.channels,
            list(&self.first_kernel),
            list(&self.first_stride),
            list(&self.block_kernel),
            self.blocks,
            self.classes
        )
    }

    pub fn from_text(text: &str) -> Option<Self> {
        let mut shape = DsCnnShape::kws(64);
        for field in text.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let dims: Vec<usize> = value
                .split('x')
                .map(|d| d.parse().ok())
                .collect::<Option<_>>()?;
            let pair = |d: &[usize]| -> Option<[usize; 2]> { Some([*d.first()?, *d.get(1)?]) };
            match key {
                "input" => shape.input = [*dims.first()?, *dims.get(1)?, *dims.get(2)?],
                "channels" => shape.channels = *dims.first()?,
                "first_kernel" => shape.first_kernel = pair(&dims)?,
                "first_stride" => shape.first_stride = pair(&dims)?,
                "block_kernel" => shape.block_kernel = pair(&dims)?,
                "blocks" => shape.blocks = *dims.first()?,
                "classes" => shape.classes = *dims.first()?,
                _ => return None,
            }
        }
        Some(shape)
    }
}

/// Convolution (no bias: the batch norm after it provides one) + batch norm; ReLU in forward.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl ConvBn {
    fn new(config: Conv2dConfig, channels: usize, device: &Device) -> Self {
        ConvBn {
            conv: config.with_bias(false).init(device),
            norm: BatchNormConfig::new(channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.norm.forward(self.conv.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct DsCnn {
    pub first: ConvBn,
    /// Alternating depthwise and pointwise layers.
    pub body: Vec<ConvBn>,
    pub classifier: Linear,
}

impl DsCnn {
    pub fn new(shape: &DsCnnShape, device: &Device) -> Self {
        let c = shape.channels;
        let [h, w, cin] = shape.input;
        let first = ConvBn::new(
            Conv2dConfig::new([cin, c], shape.first_kernel)
                .with_stride(shape.first_stride)
                .with_padding(shape.padding([h, w], shape.first_kernel, shape.first_stride)),
            c,
            device,
        );
        let body_size = shape.body_size();
        let mut body = Vec::new();
        for _ in 0..shape.blocks {
            body.push(ConvBn::new(
                Conv2dConfig::new([c, c], shape.block_kernel)
                    .with_groups(c)
                    .with_padding(shape.padding(body_size, shape.block_kernel, [1, 1])),
                c,
                device,
            ));
            body.push(ConvBn::new(Conv2dConfig::new([c, c], [1, 1]), c, device));
        }
        DsCnn {
            first,
            body,
            classifier: LinearConfig::new(c, shape.classes).init(device),
        }
    }

    /// `input`: `[batch, channels, height, width]`; returns logits `[batch, classes]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let mut x = self.first.forward(input);
        for layer in &self.body {
            x = layer.forward(x);
        }
        let [batch, channels, _, _] = x.dims();
        // Global average pooling (AVERAGE_POOL_2D over the whole map on the device).
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.classifier.forward(pooled)
    }
}

//! One test per golden case in `tests/golden/`: convert the TFLite model with ember-convert,
//! run every input with ember-runtime and compare with TFLite's reference-kernel outputs.
//!
//! The list is explicit so a lost golden directory fails its test instead of vanishing;
//! `every_golden_directory_has_a_test` keeps the list and `tests/golden/` in step.

use ember_fidelity_tests::{assert_case_matches, case_names, GoldenCase};

macro_rules! golden_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                assert_case_matches(stringify!($name));
            }
        )*

        const ALL_CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

golden_cases! {
    add_f32_broadcast_relu6,
    add_f32_same_shape,
    add_s8_broadcast_both_relu6,
    add_s8_broadcast_channel_relu,
    add_s8_const_operand,
    add_s8_different_scales,
    avg_pool_f32_3x3_same_stride2,
    avg_pool_s8_2x2_valid_stride2,
    avg_pool_s8_3x3_same_stride1,
    avg_pool_s8_3x3_same_stride2_relu,
    avg_pool_s8_global,
    concatenation_f32_axis_neg1,
    concatenation_s8_axis1_three,
    concatenation_s8_axis3_same_quant,
    conv2d_f32_1x1_relu6,
    conv2d_f32_3x3_same_relu,
    conv2d_f32_3x3_valid_stride2_dilation2,
    conv2d_hybrid_per_channel_3x3_same,
    conv2d_hybrid_per_channel_stride2_relu,
    conv2d_s8_10x4_kws_like,
    conv2d_s8_1x1,
    conv2d_s8_2x3_valid_stride21_per_tensor,
    conv2d_s8_3x3_same_dilation2,
    conv2d_s8_3x3_same_relu,
    conv2d_s8_3x3_same_stride2,
    conv2d_s8_3x3_valid_stride2_relu6,
    depthwise_f32_3x3_m2_same,
    depthwise_f32_stride2_relu,
    depthwise_hybrid_per_channel_m2,
    depthwise_s8_3x3_dilation2,
    depthwise_s8_3x3_m1_same,
    depthwise_s8_3x3_m2_valid_relu,
    depthwise_s8_3x3_stride2_relu6,
    depthwise_s8_m2_per_tensor_stride2,
    dequantize_s8_to_f32,
    fully_connected_f32_batches,
    fully_connected_f32_no_bias_relu,
    fully_connected_hybrid_per_channel,
    fully_connected_hybrid_per_channel_asymmetric,
    fully_connected_hybrid_per_tensor,
    fully_connected_hybrid_per_tensor_asymmetric,
    fully_connected_s8_batches,
    fully_connected_s8_batches_rank3_relu6,
    fully_connected_s8_bias_relu,
    fully_connected_s8_no_bias,
    fully_connected_s8_per_channel,
    logistic_f32,
    logistic_s8,
    logistic_s8_wide_input,
    max_pool_f32_2x2_valid_stride2,
    max_pool_s8_2x2_valid_stride2,
    max_pool_s8_3x3_same_stride1_relu6,
    max_pool_s8_3x3_same_stride2,
    mean_f32_axes12_keep_dims,
    mean_f32_axis_neg1,
    mean_s8_axes12_keep_dims,
    mean_s8_axes12_keep_dims_requant,
    mean_s8_axes12_no_keep_dims,
    mean_s8_axis1_keep_dims,
    mean_s8_axis3,
    model_ad01_int8,
    model_hello_world_int8,
    model_kws_ref_model,
    model_kws_ref_model_float32,
    model_micro_speech_quantized,
    mul_f32_broadcast,
    mul_f32_const_relu,
    mul_s8_broadcast_both_relu6,
    mul_s8_broadcast_relu,
    mul_s8_const_operand,
    mul_s8_different_scales,
    pad_f32,
    pad_s8,
    pad_s8_channels,
    quantize_f32_to_s8,
    quantize_s8_to_s8,
    quantize_s8_to_s8_upscale,
    reshape_f32,
    reshape_s8,
    softmax_f32,
    softmax_s8_scale_0p0625_rows,
    softmax_s8_scale_0p1,
    softmax_s8_scale_0p3_beta,
    tanh_f32,
    tanh_s8,
    tanh_s8_wide_input,
}

#[test]
fn every_golden_directory_has_a_test() {
    let on_disk = case_names().unwrap_or_else(|err| panic!("{err}"));
    let listed: Vec<String> = ALL_CASES.iter().map(|s| s.to_string()).collect();
    let missing: Vec<&String> = listed.iter().filter(|n| !on_disk.contains(n)).collect();
    let unlisted: Vec<&String> = on_disk.iter().filter(|n| !listed.contains(n)).collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "golden cases without a directory: {missing:?}; directories without a test: {unlisted:?} \
         (update tests/fidelity/tests/golden.rs or rerun scripts/goldens/generate.py)"
    );
}

/// Checks the data alone (sizes, models present), so broken goldens are told apart from
/// conversion or kernel failures.
#[test]
fn golden_data_is_well_formed() {
    let mut problems = Vec::new();
    for name in ALL_CASES {
        if let Err(err) = GoldenCase::load(name) {
            problems.push(err.to_string());
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

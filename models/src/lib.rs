//! Models authored and trained in burn, quantized to int8 and written as ember `.emb` files.
//!
//! - [`kws_data`], [`imu_data`]: reproducible data commands, cached as Parquet ([`table`]).
//! - [`model`]: the burn networks; [`train`]: the training loop.
//! - [`export`]: batch-norm folding, calibration, int8 quantization and `.emb` writing.
//! - [`anomaly`]: the anomaly-detection autoencoder (data, model, training, folding, ROC AUC);
//!   [`chain`]: its int8/float32 `.emb` and the DS-CNN's float32 reference `.emb`.

pub mod anomaly;
pub mod chain;
pub mod export;
pub mod imu_data;
pub mod kws_data;
pub mod model;
pub mod rng;
pub mod table;
pub mod train;

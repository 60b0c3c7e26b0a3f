//! The forecasting engine of pg_partition_predict, in pure Rust.
//!
//! - [`series`]: turning what the collector stored into regular series.
//! - [`engine`]: model choice by backtest, prediction intervals, and the
//!   adaptive state that learns from scored forecasts.
//! - [`evaluation`]: the engine evaluated as it runs: rolling origins, learning as actuals arrive.
//! - [`metrics`]: MAE, MAPE, MASE, interval coverage.
//! - [`workload`]: a deterministic generator of realistic arrival series and
//!   row streams, for tests and benchmarks.

#![forbid(unsafe_code)]

pub mod engine;
pub mod evaluation;
pub mod metrics;
pub mod series;
pub mod workload;

pub use engine::{Config, Learned, Model, Prediction};

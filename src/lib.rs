//! gramfit: streaming, incremental linear regression from mergeable
//! sufficient statistics.
//!
//! Data flows one way: [`source`] (files → Arrow batches) → [`design`]
//! (batches → design rows) → [`stats`] / [`accumulator`] (rows → mergeable
//! statistics) → [`engine`] (parallel, ordered merge) → [`solve`] (Cholesky
//! in double-double with aliasing) → [`results`] and [`diagnostics`]
//! (statsmodels' numbers) → [`report`]. [`model`] wires one model end to end;
//! [`state`] persists the statistics.

pub mod accumulator;
pub mod app;
pub mod bits;
pub mod cli;
pub mod config;
pub mod dd;
pub mod design;
pub mod diagnostics;
pub mod elementary;
pub mod engine;
pub mod factors;
pub mod formula;
pub mod generate;
pub mod grouped;
pub mod interrupt;
pub mod isa;
pub mod level;
pub mod model;
pub mod numfmt;
pub mod output;
pub mod predict;
pub mod progress;
pub mod report;
pub mod residuals;
pub mod results;
pub mod second_pass;
pub mod solve;
pub mod source;
pub mod state;
pub mod stats;

//! Absorbed fixed effects: fixest's `y ~ x1 + x2 | fe1 (+ fe2)`, fitted
//! from sufficient statistics in one pass (two with a robust covariance).
//!
//! A factor's block of `XᵀWX` is diagonal, so a factor with thousands of
//! levels need not be expanded into dummies: the first pass keeps its
//! per-level sums ([`level_sums`], `O(L·k)`), the slopes come from the
//! normal equations with the levels eliminated exactly ([`within`]), their
//! standard errors follow pyfixest's conventions ([`inference`]), and a
//! robust covariance's meat is summed by a second pass over the within
//! residuals ([`residuals`]).
//!
//! The same statistics serve a plain model's factor with many levels
//! (`y ~ x + C(tailnum)`), its levels estimated as coefficients by blocks
//! ([`estimated`], robust covariances in [`block_robust`]).
//!
//! Modules, lower first: `level_sums`, `accumulate` (the first pass's
//! sink), `within`, `residuals` (the second pass's sink), `inference`,
//! `predict`, `estimated`, `block_robust`.

pub mod accumulate;
pub mod block_robust;
pub mod estimated;
pub mod inference;
pub mod level_sums;
pub mod predict;
pub mod residuals;
pub mod within;

pub use accumulate::{AbsorbAccumulator, AbsorbedPart};
pub use inference::{infer_absorbed, AbsorbedCov, AbsorbedResults};
pub use predict::AbsorbedModel;
pub use residuals::{AbsorbResiduals, AbsorbScores, LevelScores, LeveragePlan, ResidualPlan};
pub use within::{within_fit, LevelSpread, Singletons, WithinError, WithinFit};

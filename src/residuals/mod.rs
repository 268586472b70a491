//! The second pass: with β known, stream the same files again and
//! accumulate what needs the residuals — their moments (skew, kurtosis,
//! Omnibus, Jarque–Bera), Durbin–Watson in file order, and the "meat" of
//! the heteroskedasticity- and cluster-robust covariances — in bounded
//! memory (O(p²), plus O(clusters × p) for cluster-robust).
//!
//! Everything is on the whitened scale for WLS (`√w·e`, `√w·x`), as
//! statsmodels computes `wresid` and robust covariances on `wexog`.
//!
//! * Omnibus: D'Agostino & Pearson's K² = Z(b₁)² + Z(b₂)² (D'Agostino,
//!   Belanger & D'Agostino 1990, "A suggestion for using powerful and
//!   informative tests of normality", Am. Stat. 44(4)), as
//!   `scipy.stats.normaltest`; p = exp(−K²/2) (χ² with 2 df).
//! * Jarque–Bera: n/6·(S² + (K − 3)²/4), S and K the biased sample skewness
//!   and (Pearson) kurtosis.
//! * Durbin–Watson: Σ(eₜ − eₜ₋₁)² / Σeₜ². Each chunk carries its first and
//!   last residual; merging chunks in order adds the difference across the
//!   seam, so the value is the sequential one for any thread count.
//! * HC0–HC3 (White 1980; MacKinnon & White 1985): meats Σ e²·x xᵀ,
//!   Σ e²/(1−h)·x xᵀ, Σ e²/(1−h)²·x xᵀ with leverage h = xᵀ(XᵀX)⁻¹x.
//! * Cluster-robust (Liang & Zeger 1986): per-cluster score sums
//!   s_g = Σ_{i∈g} x_i e_i, meat Σ_g s_g s_gᵀ.
//!
//! The pass is split by what it computes: `moments` (moments and
//! Durbin–Watson), `meat` (HC meats and the sandwich), `cluster`
//! (cluster scores); `general` takes any chunk through its design
//! block, and `direct` reads the columns in place where the model allows.

mod cluster;
mod direct;
mod general;
mod meat;
mod moments;

pub use meat::robust_cov;

use crate::accumulator::{ChunkSink, EmptySink};
use crate::dd::Dd;
use crate::design::{DesignBuilder, DesignError};
use crate::level::Level;
use arrow::array::RecordBatch;
use meat::add_mat;
use std::collections::BTreeMap;

/// Accumulated residual statistics of a run of rows (in file order).
/// Serialized (a part of a distributed second pass) only when finished:
/// the in-place pass's pending sums are then collapsed, and the cache is
/// not data.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ResidualStats {
    pub n: u64,
    /// Σ eᵏ for k = 1..4, in double-double.
    pub power: [Dd; 4],
    /// Σ (eₜ − eₜ₋₁)² within the run.
    pub dw_num: Dd,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Meats for HC0, HC2, HC3 (`p × p`).
    pub meat0: Vec<f64>,
    pub meat2: Vec<f64>,
    pub meat3: Vec<f64>,
    /// Rows with leverage 1 (within rounding): their HC2/HC3 weights are
    /// 0/0; they are left out of those meats, and a coefficient whose
    /// column is non-zero only on such rows has no HC2/HC3 error.
    pub leverage_one: u64,
    /// Per design column: rows with leverage below 1 where it is non-zero
    /// (counted only until the first, which is all the test needs), and
    /// rows with leverage 1 where it is non-zero.
    pub nonzero_ordinary: Vec<u64>,
    pub nonzero_leverage_one: Vec<u64>,
    /// Per-cluster score sums.
    pub clusters: BTreeMap<Level, Vec<f64>>,
    pub rows_without_cluster: u64,
    /// The in-place pass's leverage table for the last chunk's column
    /// layout (a cache: chunks of a run share it; never merged).
    #[serde(skip)]
    leverage_cache: Option<direct::LeverageCache>,
    /// The in-place pass's meat of the chunks so far, while they share a
    /// column layout (collapsed into `meat*` when it changes and on merge).
    #[serde(skip)]
    pending_meat: Option<direct::PendingMeat>,
    /// Likewise the cluster-robust pass's per-(level, pattern) sums, while
    /// the chunks share a layout and their levels fit the table (collapsed
    /// into `clusters` otherwise and on merge: the engine's merged result
    /// has none pending).
    #[serde(skip)]
    pending_scores: Option<direct::PendingScores>,
}

impl ResidualStats {
    fn ensure(&mut self, p: usize) {
        if self.meat0.len() != p * p {
            self.meat0 = vec![0.0; p * p];
            self.meat2 = vec![0.0; p * p];
            self.meat3 = vec![0.0; p * p];
            self.nonzero_ordinary = vec![0; p];
            self.nonzero_leverage_one = vec![0; p];
        }
    }
}

impl EmptySink for ResidualStats {
    fn empty(_builder: &DesignBuilder) -> Self {
        ResidualStats::default()
    }
}

impl ChunkSink for ResidualStats {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        if chunk.num_rows() == 0 {
            return Ok(());
        }
        let spec = builder.second_pass.as_ref().expect("a second pass has its spec");
        if self.add_chunk_direct(builder, spec, chunk, at)? {
            return Ok(());
        }
        self.add_chunk_general(builder, spec, chunk, at)
    }

    fn finish(&mut self) {
        self.flush_meat();
        if let Some(ps) = self.pending_scores.take() {
            ps.collapse_into(self);
        }
    }

    /// `self` followed by `other` in file order.
    fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        self.flush_meat();
        if let Some(pm) = &other.pending_meat {
            self.add_pending(pm);
        }
        if let Some(ps) = self.pending_scores.take() {
            ps.collapse_into(self);
        }
        if let Some(ps) = &other.pending_scores {
            ps.collapse_into(self);
        }
        if let (Some(l), Some(f)) = (self.last, other.first) {
            let d = f - l;
            self.dw_num += Dd::mul_f64s(d, d);
        }
        if self.first.is_none() {
            self.first = other.first;
        }
        self.last = other.last;
        self.n += other.n;
        for k in 0..4 {
            self.power[k] += other.power[k];
        }
        self.dw_num += other.dw_num;
        add_mat(&mut self.meat0, &other.meat0);
        add_mat(&mut self.meat2, &other.meat2);
        add_mat(&mut self.meat3, &other.meat3);
        self.leverage_one += other.leverage_one;
        for (v, o) in [
            (&mut self.nonzero_ordinary, &other.nonzero_ordinary),
            (&mut self.nonzero_leverage_one, &other.nonzero_leverage_one),
        ] {
            if v.is_empty() {
                *v = o.clone();
            } else {
                for (a, b) in v.iter_mut().zip(o) {
                    *a += b;
                }
            }
        }
        for (l, s) in &other.clusters {
            match self.clusters.get_mut(l) {
                Some(t) => {
                    for (a, b) in t.iter_mut().zip(s) {
                        *a += b;
                    }
                }
                None => {
                    self.clusters.insert(l.clone(), s.clone());
                }
            }
        }
        self.rows_without_cluster += other.rows_without_cluster;
    }

    fn rows(&self) -> (u64, u64) {
        (self.n, 0)
    }
}

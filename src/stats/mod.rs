//! Mergeable sufficient statistics of the augmented rows `z = [x, y]`.
//!
//! [`SufficientStats`] holds, for a set of keyed columns, the row count `n`,
//! the weight total `W = Σ w`, the weighted means `μ` and the centered
//! co-moment matrix `C = Σ w (z − μ)(z − μ)ᵀ`, all in double-double. Raw
//! moments follow as `Σ w z zᵀ = C + W μ μᵀ`, so models with and without an
//! intercept are solved from the same state.
//!
//! Merging two states uses the pairwise update of Chan, Golub & LeVeque
//! (1979), "Updating formulae and a pairwise algorithm for computing sample
//! variances", eq. 2.1, in matrix and weighted form:
//!
//! ```text
//! W = Wa + Wb,  δ = μb − μa,  μ = μa + δ·Wb/W,  C = Ca + Cb + δδᵀ·Wa·Wb/W
//! ```
//!
//! (DataFusion's `regr.rs` and polars' `moment.rs` do the same for two
//! variables.) A block of rows enters as its own small state: its raw sums are
//! accumulated with compensated products (see [`kernel`]) and centered in
//! double-double, then merged. Because every column that a block lacks was
//! zero on all of its rows (a categorical level it did not contain), a
//! missing key merges as a zero column: states over different level sets
//! merge exactly, which is what lets categorical levels be discovered while
//! streaming.
//!
//! Laws (tested with proptest in `tests/`): the empty state is a two-sided
//! identity of `merge`, bit for bit; `merge` is associative and commutative up
//! to double-double rounding; `retract(merge(a, b), b) = a` up to rounding.

//!
//! The kernels that compute a block's sums, one idea per module, lower
//! modules first: [`columns`] (their inputs and outputs), [`dyadic`] (the
//! exact fast path's test), [`portable`] (the reference algorithms),
//! [`patterns`] (the robust second pass's pattern tables), `x86` (one
//! module per instruction set, compiled only on x86-64), and [`kernel`]
//! (the entry points, which pick the instruction set).

pub mod columns;
pub mod dyadic;
pub mod inplace;
pub mod kernel;
pub mod patterns;
pub mod portable;
pub mod raw_sums;
pub mod reals;
pub mod slices;
#[cfg(gramfit_x86)]
pub mod x86;

use crate::dd::Dd;
use crate::level::ColumnKey;
use columns::{ColumnRef, RawMoments};
use kernel::raw_moments;
pub use raw_sums::{RawSums, MAX_BLOCKS};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Errors from combining statistics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error("cannot retract {0} rows from a state that holds {1}")]
    RetractTooMany(u64, u64),
    #[error("cannot retract data with a column the state never saw: {0}")]
    RetractUnknownColumn(String),
}

/// Count, weight total, means and co-moments of keyed columns.
/// Invariant: `mean.len() == keys.len()`, `comoment.len() == keys.len()²`,
/// `comoment` symmetric; a state with `nobs == 0` has all-zero moments.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "StatsRepr", into = "StatsRepr")]
pub struct SufficientStats {
    keys: Vec<ColumnKey>,
    index: HashMap<ColumnKey, usize>,
    nobs: u64,
    sum_w: Dd,
    sum_log_w: Dd,
    mean: Vec<Dd>,
    comoment: Vec<Dd>,
    /// Rows on which each column is non-zero: exact, so that a column whose
    /// rows were all retracted is removed rather than left as rounding dust.
    nonzero: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct StatsRepr {
    keys: Vec<ColumnKey>,
    nonzero: Vec<u64>,
    nobs: u64,
    sum_w: Dd,
    sum_log_w: Dd,
    mean: Vec<Dd>,
    comoment: Vec<Dd>,
}

/// Statistics read from outside (a state file, another process) are
/// checked for every invariant the arithmetic relies on before they are
/// used: lengths against the keys, distinct keys, finite values, a
/// co-moment matrix with a non-negative diagonal, counts that agree, and
/// all-zero moments when no row was folded in. (Symmetry is not checked to
/// the bit: a retraction's updates of `C_ij` and `C_ji` may round apart.)
impl TryFrom<StatsRepr> for SufficientStats {
    type Error = String;

    fn try_from(r: StatsRepr) -> Result<Self, String> {
        let m = r.keys.len();
        if r.mean.len() != m || r.nonzero.len() != m || Some(r.comoment.len()) != m.checked_mul(m) {
            return Err(format!(
                "{m} columns but {} means, {} non-zero counts and {} co-moments (want {m}, {m}, {})",
                r.mean.len(),
                r.nonzero.len(),
                r.comoment.len(),
                m.saturating_mul(m)
            ));
        }
        let index: HashMap<ColumnKey, usize> = r.keys.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect();
        if index.len() != m {
            return Err("a column key appears twice".into());
        }
        let finite = |d: &Dd| d.hi.is_finite() && d.lo.is_finite();
        if !finite(&r.sum_w) || !finite(&r.sum_log_w) || !r.mean.iter().all(finite) || !r.comoment.iter().all(finite) {
            return Err("a count, mean or co-moment is not a finite number".into());
        }
        if r.sum_w.hi < 0.0 || (r.nobs == 0) != (r.sum_w.hi == 0.0) {
            return Err(format!("{} rows but a weight total of {}", r.nobs, r.sum_w.hi));
        }
        if let Some(&z) = r.nonzero.iter().find(|&&z| z > r.nobs) {
            return Err(format!("a column non-zero on {z} of {} rows", r.nobs));
        }
        for i in 0..m {
            let d = r.comoment[i * m + i].hi;
            // Centered sums of squares: non-negative up to the rounding of
            // a retraction (double-double, relative to the raw square).
            let raw = (r.sum_w.hi * r.mean[i].hi * r.mean[i].hi).abs() + d.abs();
            if d < -1e-20 * raw {
                return Err(format!("the sum of squares of column {i} is negative ({d:e})"));
            }
        }
        if r.nobs == 0 && (r.mean.iter().any(|d| d.hi != 0.0) || r.comoment.iter().any(|d| d.hi != 0.0)) {
            return Err("no rows but non-zero moments".into());
        }
        Ok(SufficientStats {
            keys: r.keys,
            index,
            nobs: r.nobs,
            sum_w: r.sum_w,
            sum_log_w: r.sum_log_w,
            mean: r.mean,
            comoment: r.comoment,
            nonzero: r.nonzero,
        })
    }
}

impl From<SufficientStats> for StatsRepr {
    fn from(s: SufficientStats) -> Self {
        StatsRepr {
            keys: s.keys,
            nonzero: s.nonzero,
            nobs: s.nobs,
            sum_w: s.sum_w,
            sum_log_w: s.sum_log_w,
            mean: s.mean,
            comoment: s.comoment,
        }
    }
}

impl SufficientStats {
    /// The empty state: the identity of [`merge`](Self::merge).
    pub fn new() -> Self {
        Self::default()
    }

    /// Statistics of one block of rows. `cols[i]` is the column keyed by
    /// `keys[i]`; all columns have the same length. With weights, each row
    /// counts `w_r` times and `Σ log w` is kept for the WLS log-likelihood.
    pub fn from_block(keys: &[ColumnKey], cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> Self {
        assert_eq!(keys.len(), cols.len(), "one key per column");
        let n = cols.first().map_or(0, |c| c.hi.len());
        if n == 0 {
            return SufficientStats::new();
        }
        Self::from_raw(keys, n, raw_moments(cols, weights), weights)
    }

    /// The state of `n` rows (`n > 0`) from their raw block sums; `weights`
    /// (when given) only for `Σ log w`.
    pub fn from_raw(keys: &[ColumnKey], n: usize, raw: RawMoments, weights: Option<&[f64]>) -> Self {
        let m = keys.len();
        let mean: Vec<Dd> = raw.s1.iter().map(|&s1| s1 / raw.sum_w).collect();
        let mut comoment = vec![Dd::ZERO; m * m];
        for i in 0..m {
            for j in i..m {
                // C_ij = S2_ij − S1_i S1_j / W: the cancellation happens in
                // double-double, leaving ~30 − log10(μ²/σ²) digits.
                let v = raw.s2[i * m + j] - raw.s1[i] * mean[j];
                comoment[i * m + j] = v;
                comoment[j * m + i] = v;
            }
        }
        let sum_log_w = weights.map_or(Dd::ZERO, |w| {
            let mut acc = Dd::ZERO;
            for &x in w {
                acc += Dd::from(x).ln();
            }
            acc
        });
        SufficientStats {
            keys: keys.to_vec(),
            index: keys.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect(),
            nobs: n as u64,
            sum_w: raw.sum_w,
            sum_log_w,
            mean,
            comoment,
            nonzero: raw.nonzero,
        }
    }

    /// Fold a block of rows in (`update` in the accumulator vocabulary).
    pub fn update(&mut self, keys: &[ColumnKey], cols: &[ColumnRef<'_>], weights: Option<&[f64]>) {
        let block = SufficientStats::from_block(keys, cols, weights);
        self.merge(&block);
    }

    /// Take a block of rows back out that was folded in before.
    pub fn retract_block(
        &mut self,
        keys: &[ColumnKey],
        cols: &[ColumnRef<'_>],
        weights: Option<&[f64]>,
    ) -> Result<(), StatsError> {
        let block = SufficientStats::from_block(keys, cols, weights);
        self.retract(&block)
    }

    pub fn keys(&self) -> &[ColumnKey] {
        &self.keys
    }
    pub fn index_of(&self, key: &ColumnKey) -> Option<usize> {
        self.index.get(key).copied()
    }
    /// Number of rows folded in.
    pub fn nobs(&self) -> u64 {
        self.nobs
    }
    /// `Σ w` (the row count when unweighted).
    pub fn sum_w(&self) -> Dd {
        self.sum_w
    }
    /// `Σ log w` (zero when unweighted).
    pub fn sum_log_w(&self) -> Dd {
        self.sum_log_w
    }
    pub fn mean(&self, i: usize) -> Dd {
        self.mean[i]
    }
    /// `Σ w (z_i − μ_i)(z_j − μ_j)`.
    pub fn comoment(&self, i: usize, j: usize) -> Dd {
        self.comoment[i * self.keys.len() + j]
    }
    pub fn is_empty(&self) -> bool {
        self.nobs == 0
    }

    /// Add the columns of `keys` that are not here yet (as zero columns:
    /// exact, because the rows seen so far had zeros there), and return the
    /// position of each.
    fn ensure_keys(&mut self, keys: &[ColumnKey]) -> Vec<usize> {
        let (old, m) = add_keys(&mut self.keys, &mut self.index, keys);
        if m != old {
            grow_square(&mut self.comoment, old, m);
            self.mean.resize(m, Dd::ZERO);
            self.nonzero.resize(m, 0);
        }
        keys.iter().map(|k| self.index[k]).collect()
    }

    /// Merge another state into this one (Chan, Golub & LeVeque 1979).
    pub fn merge(&mut self, other: &SufficientStats) {
        if other.nobs == 0 {
            return;
        }
        let map = self.ensure_keys(&other.keys);
        let m = self.keys.len();
        for (a, &i) in map.iter().enumerate() {
            self.nonzero[i] += other.nonzero[a];
        }
        if self.nobs == 0 {
            for (a, &i) in map.iter().enumerate() {
                self.mean[i] = other.mean[a];
                for (b, &j) in map.iter().enumerate() {
                    self.comoment[i * m + j] = other.comoment[a * other.keys.len() + b];
                }
            }
            self.nobs = other.nobs;
            self.sum_w = other.sum_w;
            self.sum_log_w = other.sum_log_w;
            return;
        }
        let wa = self.sum_w;
        let wb = other.sum_w;
        let w = wa + wb;
        let frac_b = wb / w;
        let cross = wa * frac_b;
        let mut delta = vec![Dd::ZERO; m];
        let mut other_mean = vec![Dd::ZERO; m];
        for (a, &i) in map.iter().enumerate() {
            other_mean[i] = other.mean[a];
        }
        for i in 0..m {
            delta[i] = other_mean[i] - self.mean[i];
        }
        let om = other.keys.len();
        for (a, &i) in map.iter().enumerate() {
            for (b, &j) in map.iter().enumerate() {
                self.comoment[i * m + j] += other.comoment[a * om + b];
            }
        }
        for i in 0..m {
            let di = delta[i] * cross;
            for j in 0..m {
                self.comoment[i * m + j] += di * delta[j];
            }
            self.mean[i] += delta[i] * frac_b;
        }
        self.nobs += other.nobs;
        self.sum_w = w;
        self.sum_log_w += other.sum_log_w;
    }

    /// Remove data merged in before: the inverse of [`merge`](Self::merge).
    pub fn retract(&mut self, part: &SufficientStats) -> Result<(), StatsError> {
        if part.nobs == 0 {
            return Ok(());
        }
        if part.nobs > self.nobs {
            return Err(StatsError::RetractTooMany(part.nobs, self.nobs));
        }
        let mut map = Vec::with_capacity(part.keys.len());
        for k in &part.keys {
            match self.index.get(k) {
                Some(&i) => map.push(i),
                None => return Err(StatsError::RetractUnknownColumn(format!("{k:?}"))),
            }
        }
        for (a, &i) in map.iter().enumerate() {
            if part.nonzero[a] > self.nonzero[i] {
                return Err(StatsError::RetractUnknownColumn(format!("{:?}", part.keys[a])));
            }
        }
        for (a, &i) in map.iter().enumerate() {
            self.nonzero[i] -= part.nonzero[a];
        }
        let m = self.keys.len();
        if part.nobs == self.nobs {
            // Everything is taken out: the exact empty state, columns kept.
            self.nobs = 0;
            self.sum_w = Dd::ZERO;
            self.sum_log_w = Dd::ZERO;
            self.mean.iter_mut().for_each(|x| *x = Dd::ZERO);
            self.comoment.iter_mut().for_each(|x| *x = Dd::ZERO);
            self.prune_empty_cells();
            return Ok(());
        }
        let w = self.sum_w;
        let wb = part.sum_w;
        let wa = w - wb;
        let mut part_mean = vec![Dd::ZERO; m];
        for (a, &i) in map.iter().enumerate() {
            part_mean[i] = part.mean[a];
        }
        // μa = μ + (μ − μb)·Wb/Wa, δ = μb − μa, Ca = C − Cb − δδᵀ·Wa·Wb/W.
        let ratio = wb / wa;
        let mut delta = vec![Dd::ZERO; m];
        for i in 0..m {
            let mu_a = self.mean[i] + (self.mean[i] - part_mean[i]) * ratio;
            delta[i] = part_mean[i] - mu_a;
            self.mean[i] = mu_a;
        }
        let cross = wa * (wb / w);
        let pm = part.keys.len();
        for (a, &i) in map.iter().enumerate() {
            for (b, &j) in map.iter().enumerate() {
                self.comoment[i * m + j] -= part.comoment[a * pm + b];
            }
        }
        for i in 0..m {
            let di = delta[i] * cross;
            for j in 0..m {
                self.comoment[i * m + j] -= di * delta[j];
            }
        }
        self.nobs -= part.nobs;
        self.sum_w = wa;
        self.sum_log_w -= part.sum_log_w;
        self.prune_empty_cells();
        Ok(())
    }

    /// Drop term cells that no remaining row touches: their moments are
    /// exactly zero in exact arithmetic, and only rounding dust is left.
    fn prune_empty_cells(&mut self) {
        let keep: Vec<usize> =
            (0..self.keys.len()).filter(|&i| self.nonzero[i] > 0 || self.keys[i] == ColumnKey::Response).collect();
        if keep.len() == self.keys.len() {
            return;
        }
        let m = self.keys.len();
        let k = keep.len();
        let mut c = vec![Dd::ZERO; k * k];
        for (a, &i) in keep.iter().enumerate() {
            for (b, &j) in keep.iter().enumerate() {
                c[a * k + b] = self.comoment[i * m + j];
            }
        }
        self.comoment = c;
        self.keys = keep.iter().map(|&i| self.keys[i].clone()).collect();
        self.mean = keep.iter().map(|&i| self.mean[i]).collect();
        self.nonzero = keep.iter().map(|&i| self.nonzero[i]).collect();
        self.index = self.keys.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect();
    }

    /// Means and co-moments of linear combinations of the columns: design
    /// column `a` is `Σ_{i ∈ groups[a]} z_i` (patsy's contrasts and partial
    /// codings are such sums of full indicator cells). An empty group is a
    /// column of zeros. Returns `(μ, C)` with `C` row-major `k × k`.
    pub fn combine(&self, groups: &[Vec<usize>]) -> (Vec<Dd>, Vec<Dd>) {
        let k = groups.len();
        let m = self.keys.len();
        let mean: Vec<Dd> = groups.iter().map(|g| g.iter().fold(Dd::ZERO, |acc, &i| acc + self.mean[i])).collect();
        let mut c = vec![Dd::ZERO; k * k];
        for a in 0..k {
            for b in a..k {
                let mut v = Dd::ZERO;
                for &i in &groups[a] {
                    for &j in &groups[b] {
                        v += self.comoment[i * m + j];
                    }
                }
                c[a * k + b] = v;
                c[b * k + a] = v;
            }
        }
        (mean, c)
    }
}

/// Append the keys not present yet; returns the key count before and after.
fn add_keys(all: &mut Vec<ColumnKey>, index: &mut HashMap<ColumnKey, usize>, keys: &[ColumnKey]) -> (usize, usize) {
    let old = all.len();
    for k in keys {
        if !index.contains_key(k) {
            index.insert(k.clone(), all.len());
            all.push(k.clone());
        }
    }
    (old, all.len())
}

/// Grow a row-major `old × old` matrix to `m × m`, new entries zero.
fn grow_square(v: &mut Vec<Dd>, old: usize, m: usize) {
    let mut g = vec![Dd::ZERO; m * m];
    for i in 0..old {
        g[i * m..i * m + old].copy_from_slice(&v[i * old..(i + 1) * old]);
    }
    *v = g;
}

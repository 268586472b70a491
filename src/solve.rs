//! Solving the normal equations from the state, in double-double.
//!
//! The design's moments are formed from the accumulated co-moments
//! ([`NormalEquations`]); with an intercept the system is solved in centered
//! form (the intercept is recovered from the means), which removes the
//! largest source of ill-conditioning; without one, from the raw moments
//! `C + W μ μᵀ`.
//!
//! [`solve_normal_equations`] factors the *augmented* matrix
//! `[[XᵀWX, XᵀWy], [yᵀWX, yᵀWy]]`, scaled to unit diagonal, by a left-looking
//! Cholesky in double-double. The last pivot is the residual sum of squares,
//! so SSR never comes from the cancellation-prone `yᵀy − βᵀXᵀy` in working
//! precision (Golub & Van Loan, *Matrix Computations*, 4th ed., §5.3.3;
//! Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §10.1,
//! §20.4 on the normal equations).
//!
//! **Rank revealing.** Column `j` is *aliased* when its scaled pivot
//! `d_j = 1 − R²_j` (the share of its centered sum of squares that the
//! earlier columns do not explain) is at most [`ALIAS_TOL`] = 1e-20, i.e.
//! when it is reproduced by earlier columns to ten significant digits. This
//! is R's `lm` rule (earlier columns win) with a tolerance set by the data's
//! own precision: an exact dependency among `f64` data leaves `d_j ≈ 1e-32`
//! in double-double, while the hardest NIST problem (Filip, a 10th-degree
//! polynomial) has its smallest genuine pivot near 1e-15 and is *not*
//! aliased. The
//! factor of an aliased column stops at its off-diagonal part, which gives
//! the exact linear dependency on the earlier columns; that is how the
//! report can say `no_washer_dryer = Intercept − has_washer_dryer`.
//!
//! Policies for aliased columns ([`SingularPolicy`]): `drop` estimates the
//! rest as if the aliased columns were absent (R); `pinv` returns the
//! minimum-norm solution (statsmodels), computed exactly from the drop
//! solution as `β⁺ = Q β_drop` and `(XᵀWX)⁺ = Q M Q`, where `M` is the drop
//! inverse (a generalized inverse) and `Q` projects away the null space
//! spanned by the dependencies; `error` refuses.

use crate::accumulator::FitAccumulator;
use crate::dd::Dd;
use crate::formula::columns::Design;
use crate::level::ColumnKey;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Scaled-pivot tolerance for declaring a column aliased (see module docs).
pub const ALIAS_TOL: f64 = 1e-20;

/// When the response's scaled pivot (`SSR / Σw(y − ȳ)²`, or the uncentered
/// ratio without an intercept) is below this — a few units of double-double
/// roundoff (2⁻¹⁰⁴ ≈ 4.9e-32) — the computed SSR is rounding noise and the
/// fit is exact: SSR is reported as 0 (NIST Wampler1/2 certify exactly 0).
pub const EXACT_FIT_TOL: f64 = 1e-29;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SingularPolicy {
    /// Report aliased coefficients as aliased and fit the others (like R's lm).
    #[default]
    Drop,
    /// The minimum-norm solution for all coefficients (like statsmodels).
    Pinv,
    /// Fail, naming the dependency.
    Error,
}

/// A linear dependency: `column = Σ coef × other` (with `None` = Intercept).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dependency {
    pub column: String,
    pub terms: Vec<(String, f64)>,
}

impl Dependency {
    /// Spelled for a human: `seconds_to_subway = 60 × min_to_subway`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} =", self.column);
        if self.terms.is_empty() {
            s.push_str(" 0");
        }
        for (i, (name, c)) in self.terms.iter().enumerate() {
            let neg = *c < 0.0;
            let mag = c.abs();
            let sign = match (i, neg) {
                (0, false) => " ",
                (0, true) => " −",
                (_, false) => " + ",
                (_, true) => " − ",
            };
            s.push_str(sign);
            if (mag - 1.0).abs() > 1e-9 {
                s.push_str(&format!("{} × ", fmt_coef(mag)));
            }
            s.push_str(name);
        }
        s
    }
}

fn fmt_coef(x: f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    if (r - x).abs() <= 1e-9 * x.abs().max(1.0) {
        let s = format!("{r}");
        s
    } else {
        format!("{x:.6e}")
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    #[error("no rows to fit")]
    Empty,
    #[error("the design matrix is singular (--singular error): {}", .0.iter().map(|d| d.describe()).collect::<Vec<_>>().join("; "))]
    Singular(Vec<Dependency>),
    #[error("interrupted")]
    Interrupted,
}

/// The design's moments in double-double.
#[derive(Clone, Debug)]
pub struct NormalEquations {
    /// Design column names; `Intercept` first when `intercept`.
    pub names: Vec<String>,
    pub intercept: bool,
    pub nobs: u64,
    pub sum_w: Dd,
    pub sum_log_w: Dd,
    /// Means of the non-intercept columns, then of y.
    pub mean: Vec<Dd>,
    /// Centered co-moments of `[x (non-intercept), y]`, row-major.
    pub comoment: Vec<Dd>,
}

impl NormalEquations {
    pub fn from_state(acc: &FitAccumulator, design: &Design) -> NormalEquations {
        let stats = &acc.stats;
        let (mean, comoment) = stats.combine(&column_groups(design, stats));
        NormalEquations {
            names: design.names(),
            intercept: design.intercept,
            nobs: stats.nobs(),
            sum_w: stats.sum_w(),
            sum_log_w: stats.sum_log_w(),
            mean,
            comoment,
        }
    }

    /// Number of non-intercept columns.
    pub fn k(&self) -> usize {
        self.mean.len() - 1
    }

    /// Entry of the matrix the solve uses: centered with an intercept, raw
    /// (`C + W μ μᵀ`) without. Index `k()` is y.
    pub fn entry(&self, i: usize, j: usize) -> Dd {
        let n = self.mean.len();
        let c = self.comoment[i * n + j];
        if self.intercept {
            c
        } else {
            c + self.sum_w * self.mean[i] * self.mean[j]
        }
    }

    /// Raw `Σ w x_i x_j` (for eigenvalues of the full design).
    pub fn raw(&self, i: usize, j: usize) -> Dd {
        let n = self.mean.len();
        self.comoment[i * n + j] + self.sum_w * self.mean[i] * self.mean[j]
    }
}

/// Per design column (the intercept aside), the positions of its cells
/// among the statistics' keys, then y's: what [`crate::stats::SufficientStats::combine`]
/// sums into the design's moments.
pub fn column_groups(design: &Design, stats: &crate::stats::SufficientStats) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> =
        design.columns.iter().map(|c| c.cells.iter().filter_map(|k| stats.index_of(k)).collect()).collect();
    groups.push(stats.index_of(&ColumnKey::Response).into_iter().collect());
    groups
}

/// The factorization and what follows from it.
#[derive(Clone, Debug)]
pub struct Solution {
    /// Per design column (Intercept first when present): estimate, or
    /// `None` when aliased under `drop`.
    pub params: Vec<Option<Dd>>,
    /// `(XᵀWX)⁻¹` (or its pseudo-inverse under `pinv`), full `p × p` over
    /// all design columns, zero rows/columns for aliased ones under `drop`.
    pub normalized_cov: Vec<Dd>,
    pub aliased: Vec<bool>,
    pub rank: usize,
    pub ssr: Dd,
    pub dependencies: Vec<Dependency>,
    pub policy: SingularPolicy,
    /// Upper-triangular Cholesky factor of the (unscaled) `XᵀWX` over all
    /// design columns, rows of aliased columns zero: `RᵀR = XᵀWX`.
    pub r_factor: Vec<f64>,
    /// Smallest scaled pivot among non-aliased columns (`1 − R²` of the
    /// worst column on the ones before it).
    pub min_pivot: f64,
    /// The residuals are zero to double-double precision.
    pub exact_fit: bool,
}

/// The Cholesky factor of the scaled augmented system: `(R scaled,
/// aliased, scale)`.
type Factor = (Vec<Dd>, Vec<bool>, Vec<Dd>);

/// Cholesky of the scaled augmented system with aliasing.
fn factor(ne: &NormalEquations) -> Result<Factor, SolveError> {
    let k = ne.k();
    let n = k + 1;
    let mut scale = vec![Dd::ZERO; n];
    for (j, s) in scale.iter_mut().enumerate() {
        let d = ne.entry(j, j);
        *s = if d.hi > 0.0 { d.sqrt() } else { Dd::ZERO };
    }
    if scale[k].hi == 0.0 {
        scale[k] = Dd::ONE;
    }
    let scaled = |i: usize, j: usize| -> Dd {
        if scale[i].hi == 0.0 || scale[j].hi == 0.0 {
            Dd::ZERO
        } else {
            ne.entry(i, j) / (scale[i] * scale[j])
        }
    };
    let mut r = vec![Dd::ZERO; n * n];
    let mut aliased = vec![false; n];
    // Row by row: r[i, j] = (a_ij − Σ_{l<i} r[l, i]·r[l, j]) / r[i, i] for
    // j ≥ i (the diagonal a square root). Each entry's sum runs over l in
    // ascending order, as a column-by-column Cholesky adds it, so the bits
    // are the same; but here the loop over l is outside and the one over j
    // inside: the entries' sums are independent chains along contiguous
    // rows of R (a double-double sum is a chain of dependent operations;
    // one at a time left the core idle), and blocks of j run in parallel.
    let mut acc = vec![Dd::ZERO; n];
    for i in 0..n {
        check_interrupt()?;
        SOLVE_PROGRESS.add(((n - i) * i) as u64);
        acc[i] = if i < k && scale[i].hi == 0.0 { Dd::ZERO } else { scaled(i, i) };
        for (j, v) in acc.iter_mut().enumerate().skip(i + 1) {
            *v = scaled(i, j);
        }
        let (above, _) = r.split_at(i * n);
        let rows: Vec<(Dd, &[Dd], usize)> =
            (0..i).filter(|&l| !aliased[l]).map(|l| (above[l * n + i], &above[l * n..(l + 1) * n], i)).collect();
        axpy_rows(&mut acc[i..], &rows, i, n - i);
        let d = acc[i];
        let rii = if i < k && (scale[i].hi == 0.0 || d.hi <= ALIAS_TOL) {
            aliased[i] = true;
            Dd::ZERO
        } else if d.hi > 0.0 {
            d.sqrt()
        } else {
            Dd::ZERO
        };
        r[i * n + i] = rii;
        if aliased[i] {
            continue;
        }
        for j in i + 1..n {
            r[i * n + j] = acc[j] / rii;
        }
    }
    Ok((r, aliased, scale))
}

/// `acc[t] -= coef · row[from + t]` for each `(coef, row, start)` of
/// `rows` in order, for t in 0..len with `from + t ≥ start`: the
/// double-double sums of a triangular step, each entry's terms in the
/// order of `rows`; blocks of entries in parallel when there is enough
/// work (the same bits either way).
pub(crate) fn axpy_rows(acc: &mut [Dd], rows: &[(Dd, &[Dd], usize)], from: usize, len: usize) {
    const BLOCK: usize = 64;
    let run = |t0: usize, out: &mut [Dd]| {
        let (lo, hi) = (from + t0, from + t0 + out.len());
        for &(coef, row, start) in rows {
            let first = start.max(lo);
            if first >= hi {
                continue;
            }
            for (v, &x) in out[first - lo..].iter_mut().zip(&row[first..hi]) {
                *v -= coef * x;
            }
        }
    };
    if rows.len() * len >= 1 << 14 {
        use rayon::prelude::*;
        acc[..len].par_chunks_mut(BLOCK).enumerate().for_each(|(b, out)| run(b * BLOCK, out));
    } else {
        run(0, &mut acc[..len]);
    }
}

/// Solve `R x = b` for the non-aliased upper-triangular part (indices in `idx`).
fn back_substitute(r: &[Dd], n: usize, idx: &[usize], b: &[Dd]) -> Vec<Dd> {
    let m = idx.len();
    let mut x = vec![Dd::ZERO; m];
    for a in (0..m).rev() {
        let mut v = b[a];
        for c in a + 1..m {
            v -= r[idx[a] * n + idx[c]] * x[c];
        }
        x[a] = v / r[idx[a] * n + idx[a]];
    }
    x
}

/// Inverse of the non-aliased triangular block, `X = R_SS⁻¹` (upper
/// triangular), row-major and transposed: row a is
/// `X[a, col] = (δ_a,col − Σ_{c=a+1..col} R[a, c]·X[c, col]) / R[a, a]`,
/// rows from the last up, each entry's terms in ascending c (the order of
/// a back substitution per column; the same bits), the entries of a row
/// as independent chains ([`axpy_rows`]).
fn tri_inverse(r: &[Dd], n: usize, idx: &[usize]) -> Result<(Vec<Dd>, Vec<Dd>), SolveError> {
    let m = idx.len();
    let mut inv = vec![Dd::ZERO; m * m];
    for a in (0..m).rev() {
        check_interrupt()?;
        SOLVE_PROGRESS.add(((m - a) * (m - a) / 2) as u64);
        let row_r = &r[idx[a] * n..];
        let (head, below) = inv.split_at_mut((a + 1) * m);
        let acc = &mut head[a * m..];
        acc[a] = Dd::ONE;
        // Row c's entries before column c are zero: each starts at c.
        let rows: Vec<(Dd, &[Dd], usize)> =
            (a + 1..m).map(|c| (row_r[idx[c]], &below[(c - a - 1) * m..(c - a) * m], c)).collect();
        axpy_rows(&mut acc[a + 1..], &rows, a + 1, m - a - 1);
        let d = row_r[idx[a]];
        for v in acc[a..].iter_mut() {
            *v = *v / d;
        }
    }
    let mut by_col = vec![Dd::ZERO; m * m];
    for a in 0..m {
        for col in a..m {
            by_col[col * m + a] = inv[a * m + col];
        }
    }
    Ok((inv, by_col))
}

/// How far the running solve is, for the progress line: multiply-adds
/// done and in all (the Cholesky, the triangular inverse and the
/// covariance each take about m³/6 for m columns).
pub struct SolveProgress {
    done: AtomicU64,
    total: AtomicU64,
    columns: AtomicU64,
    started: Mutex<Option<Instant>>,
}

/// The solve running now, if any.
pub static SOLVE_PROGRESS: SolveProgress = SolveProgress {
    done: AtomicU64::new(0),
    total: AtomicU64::new(0),
    columns: AtomicU64::new(0),
    started: Mutex::new(None),
};

impl SolveProgress {
    fn begin(&self, columns: usize) {
        let m = columns as u64;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(m * m * m / 2, Ordering::Relaxed);
        self.columns.store(m, Ordering::Relaxed);
        if let Ok(mut s) = self.started.lock() {
            *s = Some(Instant::now());
        }
    }

    fn add(&self, work: u64) {
        self.done.fetch_add(work, Ordering::Relaxed);
    }

    fn end(&self) {
        if let Ok(mut s) = self.started.lock() {
            *s = None;
        }
    }

    /// Columns, the share done and the time since the solve began, while
    /// one runs.
    pub fn snapshot(&self) -> Option<(u64, f64, std::time::Duration)> {
        let started = (*self.started.lock().ok()?)?;
        let total = self.total.load(Ordering::Relaxed).max(1);
        let f = (self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0);
        Some((self.columns.load(Ordering::Relaxed), f, started.elapsed()))
    }
}

/// Ends the progress of a solve however it returns.
struct SolveRunning;

impl Drop for SolveRunning {
    fn drop(&mut self) {
        SOLVE_PROGRESS.end();
    }
}

/// A solve stops at the next row once Ctrl-C or SIGTERM is seen (a
/// system of thousands of columns takes seconds to minutes).
pub(crate) fn check_interrupt() -> Result<(), SolveError> {
    if crate::interrupt::INTERRUPTED.load(Ordering::Relaxed) {
        return Err(SolveError::Interrupted);
    }
    Ok(())
}

/// Solve a small symmetric positive definite system in double-double
/// (for the null-space projection under `pinv`).
fn spd_solve(a: &[Dd], m: usize, b: &[Dd], ncols: usize) -> Vec<Dd> {
    // Cholesky a = LLᵀ, then two triangular solves per right-hand side.
    let mut l = vec![Dd::ZERO; m * m];
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= l[j * m + k] * l[j * m + k];
        }
        l[j * m + j] = d.sqrt();
        for i in j + 1..m {
            let mut v = a[i * m + j];
            for k in 0..j {
                v -= l[i * m + k] * l[j * m + k];
            }
            l[i * m + j] = v / l[j * m + j];
        }
    }
    let mut x = b.to_vec();
    for c in 0..ncols {
        for i in 0..m {
            let mut v = x[i * ncols + c];
            for k in 0..i {
                v -= l[i * m + k] * x[k * ncols + c];
            }
            x[i * ncols + c] = v / l[i * m + i];
        }
        for i in (0..m).rev() {
            let mut v = x[i * ncols + c];
            for k in i + 1..m {
                v -= l[k * m + i] * x[k * ncols + c];
            }
            x[i * ncols + c] = v / l[i * m + i];
        }
    }
    x
}

/// Factor, detect aliasing and solve; see the module docs.
pub fn solve_normal_equations(ne: &NormalEquations, policy: SingularPolicy) -> Result<Solution, SolveError> {
    if ne.nobs == 0 {
        return Err(SolveError::Empty);
    }
    let k = ne.k();
    let n = k + 1;
    // Small systems take no time: their progress is not shown.
    let _running = (k >= 200).then(|| {
        SOLVE_PROGRESS.begin(k + 1);
        SolveRunning
    });
    let (r, aliased_x, scale) = factor(ne)?;
    let off = usize::from(ne.intercept);
    let p = k + off;
    let idx: Vec<usize> = (0..k).filter(|&j| !aliased_x[j]).collect();
    let m = idx.len();

    // Scaled solution and inverse on the non-aliased set.
    let rhs: Vec<Dd> = idx.iter().map(|&i| r[i * n + k]).collect();
    let beta_s = back_substitute(&r, n, &idx, &rhs);
    let (rinv, rinv_t) = tri_inverse(&r, n, &idx)?;
    let mut params = vec![None; p];
    for (a, &i) in idx.iter().enumerate() {
        params[off + i] = Some(beta_s[a] * scale[k] / scale[i]);
    }
    // (R⁻¹R⁻ᵀ)_ab = Σ_{c≥a} X[a, c]·X[b, c] for b ≤ a, unscaled by D⁻¹ on
    // both sides: symmetric (the products commute exactly), so computed
    // once per pair; the terms of each in ascending c, the b's of a row as
    // independent chains along rows of Xᵀ, the rows in parallel.
    let lower: Vec<Vec<Dd>> = {
        use rayon::prelude::*;
        (0..m)
            .into_par_iter()
            .map(|a| {
                check_interrupt()?;
                SOLVE_PROGRESS.add(((a + 1) * (m - a)) as u64);
                let mut acc = vec![Dd::ZERO; a + 1];
                for c in a..m {
                    let coef = rinv[a * m + c];
                    for (v, &x) in acc.iter_mut().zip(&rinv_t[c * m..c * m + a + 1]) {
                        *v += coef * x;
                    }
                }
                Ok(acc.iter().enumerate().map(|(b, &v)| v / (scale[idx[a]] * scale[idx[b]])).collect())
            })
            .collect::<Result<_, SolveError>>()?
    };
    let mut cov = vec![Dd::ZERO; p * p];
    for (a, row) in lower.iter().enumerate() {
        for (b, &x) in row.iter().enumerate() {
            let (i, j) = (off + idx[a], off + idx[b]);
            cov[i * p + j] = x;
            cov[j * p + i] = x;
        }
    }
    let exact_fit = {
        let d = r[k * n + k];
        (d * d).hi <= EXACT_FIT_TOL
    };
    let ssr = if exact_fit {
        Dd::ZERO
    } else {
        let d = r[k * n + k] * scale[k];
        d * d
    };
    if ne.intercept {
        // β0 = μy − Σ μj βj; Var block of [1, x]ᵀW[1, x] inverse from the
        // centered inverse A⁻¹: [[1/W + μᵀA⁻¹μ, −(A⁻¹μ)ᵀ], [−A⁻¹μ, A⁻¹]].
        let mut b0 = ne.mean[k];
        for &i in &idx {
            b0 -= ne.mean[i] * params[1 + i].unwrap_or(Dd::ZERO);
        }
        params[0] = Some(b0);
        let mut ainv_mu = vec![Dd::ZERO; p];
        for &i in &idx {
            let mut v = Dd::ZERO;
            for &j in &idx {
                v += cov[(1 + i) * p + 1 + j] * ne.mean[j];
            }
            ainv_mu[1 + i] = v;
        }
        let mut c00 = Dd::ONE / ne.sum_w;
        for &i in &idx {
            c00 += ne.mean[i] * ainv_mu[1 + i];
        }
        cov[0] = c00;
        for &i in &idx {
            cov[1 + i] = -ainv_mu[1 + i];
            cov[(1 + i) * p] = -ainv_mu[1 + i];
        }
    }

    // Dependencies of aliased columns on earlier ones.
    let mut dependencies = Vec::new();
    let mut null_vectors: Vec<Vec<Dd>> = Vec::new();
    for j in (0..k).filter(|&j| aliased_x[j]) {
        let earlier: Vec<usize> = idx.iter().copied().filter(|&i| i < j).collect();
        let mut coef = vec![Dd::ZERO; k];
        if scale[j].hi != 0.0 && !earlier.is_empty() {
            let b: Vec<Dd> = earlier.iter().map(|&i| r[i * n + j]).collect();
            let c = back_substitute(&r, n, &earlier, &b);
            for (a, &i) in earlier.iter().enumerate() {
                coef[i] = c[a] * scale[j] / scale[i];
            }
        }
        let mut nv = vec![Dd::ZERO; p];
        nv[off + j] = Dd::ONE;
        let mut terms = Vec::new();
        if ne.intercept {
            let mut c0 = ne.mean[j];
            for &i in &earlier {
                c0 -= coef[i] * ne.mean[i];
            }
            // Drop terms that are rounding dust relative to the column.
            let col_scale = ne.mean[j].abs().to_f64().max(scale[j].to_f64() / ne.sum_w.to_f64().sqrt());
            if c0.to_f64().abs() > 1e-9 * col_scale.max(f64::MIN_POSITIVE) {
                terms.push((ne.names[0].clone(), c0.to_f64()));
            }
            nv[0] = -c0;
        }
        for &i in &earlier {
            let contrib = coef[i].to_f64().abs() * scale[i].to_f64();
            if contrib > 1e-9 * scale[j].to_f64() {
                terms.push((ne.names[off + i].clone(), coef[i].to_f64()));
            }
            nv[off + i] = -coef[i];
        }
        dependencies.push(Dependency { column: ne.names[off + j].clone(), terms });
        null_vectors.push(nv);
    }
    if policy == SingularPolicy::Error && !dependencies.is_empty() {
        return Err(SolveError::Singular(dependencies));
    }

    let mut aliased = vec![false; p];
    aliased[off..off + k].copy_from_slice(&aliased_x[..k]);
    if policy == SingularPolicy::Pinv && !null_vectors.is_empty() {
        // Q = I − N (NᵀN)⁻¹ Nᵀ; β⁺ = Q β_drop; (XᵀWX)⁺ = Q M Q.
        let a = null_vectors.len();
        let mut ntn = vec![Dd::ZERO; a * a];
        for s in 0..a {
            for t in 0..a {
                let mut v = Dd::ZERO;
                for q in 0..p {
                    v += null_vectors[s][q] * null_vectors[t][q];
                }
                ntn[s * a + t] = v;
            }
        }
        // Nᵀ as a × p right-hand sides → (NᵀN)⁻¹Nᵀ.
        let mut nt = vec![Dd::ZERO; a * p];
        for s in 0..a {
            for q in 0..p {
                nt[s * p + q] = null_vectors[s][q];
            }
        }
        let w = spd_solve(&ntn, a, &nt, p);
        let mut q = vec![Dd::ZERO; p * p];
        for i in 0..p {
            for j in 0..p {
                let mut v = if i == j { Dd::ONE } else { Dd::ZERO };
                for s in 0..a {
                    v -= null_vectors[s][i] * w[s * p + j];
                }
                q[i * p + j] = v;
            }
        }
        let beta: Vec<Dd> = params.iter().map(|b| b.unwrap_or(Dd::ZERO)).collect();
        let mut newp = vec![None; p];
        for i in 0..p {
            let mut v = Dd::ZERO;
            for j in 0..p {
                v += q[i * p + j] * beta[j];
            }
            newp[i] = Some(v);
        }
        let mut qm = vec![Dd::ZERO; p * p];
        for i in 0..p {
            for j in 0..p {
                let mut v = Dd::ZERO;
                for l in 0..p {
                    v += q[i * p + l] * cov[l * p + j];
                }
                qm[i * p + j] = v;
            }
        }
        let mut qmq = vec![Dd::ZERO; p * p];
        for i in 0..p {
            for j in 0..p {
                let mut v = Dd::ZERO;
                for l in 0..p {
                    v += qm[i * p + l] * q[l * p + j];
                }
                qmq[i * p + j] = v;
            }
        }
        params = newp;
        cov = qmq;
    }

    // The unscaled factor of the full XᵀWX (with the intercept row).
    let mut rf = vec![0.0; p * p];
    if ne.intercept {
        let sw = ne.sum_w.sqrt();
        rf[0] = sw.to_f64();
        for j in 0..k {
            rf[1 + j] = (sw * ne.mean[j]).to_f64();
        }
    }
    for i in 0..k {
        if aliased_x[i] {
            continue;
        }
        for j in i..k {
            rf[(off + i) * p + off + j] = (r[i * n + j] * scale[j]).to_f64();
        }
    }
    let min_pivot = idx
        .iter()
        .map(|&i| {
            let d = r[i * n + i].to_f64();
            d * d
        })
        .fold(f64::INFINITY, f64::min);

    Ok(Solution {
        params,
        normalized_cov: cov,
        aliased,
        rank: m + off,
        ssr,
        dependencies,
        policy,
        r_factor: rf,
        min_pivot,
        exact_fit,
    })
}

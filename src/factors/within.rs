//! The slopes of an absorbed fit from its sufficient statistics: the
//! normal equations with the fixed effects eliminated exactly.
//!
//! Write the design as `[D_a, D_b, X]` (the indicators of the absorbed
//! factors and the slopes' columns) with the response `y`, and let
//! `z = [X, y]` centered by the overall means `μ`. By Frisch–Waugh–Lovell
//! the slopes solve the normal equations of `z` residualized on the
//! indicators, whose moment matrix is a Schur complement of the full
//! `[D, z]ᵀW[D, z]` (Golub & Van Loan, *Matrix Computations*, 4th ed.,
//! §3.2.10; the same elimination as reghdfe, Correia 2016, and fixest,
//! Bergé 2018, but done once on the statistics rather than by iterated
//! demeaning of the rows):
//!
//! - **One factor** `a`: its block `D_aᵀWD_a = diag(W_l)` is diagonal, so
//!   `M = C − Σ_l W_l (μ_l − μ)(μ_l − μ)ᵀ` exactly, with `C` the centered
//!   co-moments and `μ_l` level `l`'s means (the within-group co-moments).
//! - **Two factors**: eliminate the larger one `a` as above; what is left
//!   is dense only in the smaller one `b`'s levels:
//!   `G = diag(W_b) − Nᵀ diag(W_a)⁻¹ N` (`N` the cross-tabulation),
//!   `B_bj = W_b(μ_bj − μ_j) − Σ_a N_ab (μ_aj − μ_j)`, and `A` the
//!   one-factor `M` of `a`. A partial Cholesky eliminates `G` (its null
//!   space — one dimension per connected component of the two factors —
//!   shows as aliased pivots) and leaves `M = A − BᵀG⁻B`.
//!
//! Everything is in double-double; `M` then goes to the same solver as any
//! fit ([`crate::solve`]), so aliasing, `--singular` and the certified
//! precision carry over. Singletons (a level with one row, fitted exactly
//! by its own effect) are removed first, as pyfixest and reghdfe do: they
//! change no slope but would inflate the row count.

use super::accumulate::AbsorbAccumulator;
use super::level_sums::CrossTab;
use crate::dd::Dd;
use crate::formula::columns::Design;
use crate::level::{ColumnKey, Level};
use crate::solve::{
    column_groups, solve_normal_equations, NormalEquations, SingularPolicy, Solution, SolveError, ALIAS_TOL,
};
use crate::stats::columns::ColumnRef;
use crate::stats::SufficientStats;
use std::collections::HashMap;

/// The most levels the smaller of two absorbed factors may have: its block
/// is eliminated densely (memory `16·L·(L + k)` bytes, time `~L³/3`
/// double-double operations).
pub const MAX_SMALLER_LEVELS: usize = 2_000;

/// What becomes of singletons (a level with one row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Singletons {
    /// Removed, as pyfixest and reghdfe do for absorbed factors: the row
    /// count is of the rows that inform the slopes.
    Drop,
    /// Kept: a factor whose levels are coefficients (`C(g)` estimated by
    /// blocks) fits its singletons exactly, as the dummy model does, and
    /// they count as rows.
    Keep,
}

/// Why the within normal equations could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum WithinError {
    #[error("no rows are left once the singletons (levels with one row) are removed")]
    AllSingletons,
    #[error("the absorbed factors '{a}' ({la} levels) and '{b}' ({lb} levels): the smaller one's levels are eliminated densely, which takes at most {max} levels; absorb fewer levels (or put '{b}' in the formula as C({b}) if it has few)", max = MAX_SMALLER_LEVELS)]
    TooManyLevels { a: String, la: usize, b: String, lb: usize },
    #[error("the statistics and the level sums disagree: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Solve(#[from] SolveError),
}

/// One absorbed factor after singleton removal.
#[derive(Clone, Debug)]
pub struct AbsorbedFactor {
    pub column: String,
    /// The levels left, sorted.
    pub levels: Vec<Level>,
    /// Levels removed as singletons.
    pub singleton_levels: usize,
    /// Per level left, its weight `W_l` (its row count without weights).
    pub weight: Vec<Dd>,
    /// [`proj`](Self::proj) in double-double.
    pub proj_dd: Vec<Dd>,
    /// Per level left (in `levels` order), its share of each centered
    /// column `[x…, y] − μ`: the projection's coefficients, so that a
    /// row's within value is `z − μ − Σ_factors proj[level]`; row-major
    /// `levels.len() × (k + 1)`.
    pub proj: Vec<f64>,
}

/// The within normal equations, their solution, and what the report and a
/// second pass need.
#[derive(Clone, Debug)]
pub struct WithinFit {
    /// Moments of the slopes' columns and y with the levels eliminated
    /// (`intercept: false`, zero means).
    pub ne: NormalEquations,
    pub sol: Solution,
    pub factors: Vec<AbsorbedFactor>,
    /// Rows removed as singletons.
    pub singletons: u64,
    /// The overall means of `[x…, y]` over the rows kept.
    pub mean: Vec<f64>,
    /// `Σ w (y − ȳ)²` over the rows kept (for the overall R²).
    pub centered_tss: Dd,
    /// The centered co-moments `C` of `[x…, y]` over the rows kept
    /// (row-major `(k + 1)²`), before the levels are eliminated.
    pub centered: Vec<Dd>,
    /// The slopes' columns that the levels reproduce (constant within
    /// them): their within moments are set to zero, so the solver aliases
    /// them.
    pub collinear_with_levels: Vec<usize>,
}

/// For one factor estimated by blocks: a row's `1/W_l + x̃ᵀM⁻¹x̃` (`x̃` its
/// slopes' columns less its level's means, `M` the within moments) — its
/// leverage over its weight, and its fitted value's variance over `σ²`
/// (block inversion of the dummy model's `XᵀWX`).
#[derive(Clone, Debug)]
pub struct LevelSpread {
    /// `M⁻¹`, row-major `k × k` (aliased columns zero).
    pub within_inv: Vec<f64>,
    /// Per level (the factor's order), `1/W_l`.
    pub inv_weight: Vec<f64>,
}

impl LevelSpread {
    /// The spread of a fit's one factor.
    pub fn of(fit: &WithinFit) -> LevelSpread {
        LevelSpread {
            within_inv: fit.sol.normalized_cov.iter().map(|d| d.to_f64()).collect(),
            inv_weight: fit.factors[0].weight.iter().map(|w| 1.0 / w.to_f64()).collect(),
        }
    }

    /// `1/W_l + x̃ᵀM⁻¹x̃` for a row of level `level`.
    #[inline]
    pub fn at(&self, level: usize, x: &[f64]) -> f64 {
        let k = x.len();
        let quad: f64 = (0..k).map(|i| x[i] * (0..k).map(|j| self.within_inv[i * k + j] * x[j]).sum::<f64>()).sum();
        self.inv_weight[level] + quad
    }
}

/// One factor's levels in the statistics' column order.
struct Levels {
    levels: Vec<Level>,
    n: Vec<u64>,
    w: Vec<Dd>,
    /// `Σ w z` per level, over the statistics' keys.
    s: Vec<Vec<Dd>>,
}

fn levels_of(acc: &AbsorbAccumulator, f: usize, keys: &[ColumnKey]) -> Levels {
    let sums = &acc.sums[f];
    let map: Vec<Option<usize>> = keys.iter().map(|k| sums.index_of(k)).collect();
    let mut out = Levels { levels: Vec::new(), n: Vec::new(), w: Vec::new(), s: Vec::new() };
    for (level, l) in sums.sorted() {
        out.levels.push(level.clone());
        out.n.push(l.n);
        out.w.push(l.w);
        out.s.push(map.iter().map(|i| i.and_then(|i| l.s.get(i).copied()).unwrap_or(Dd::ZERO)).collect());
    }
    out
}

/// A cell of two factors' cross-tabulation: the positions of its levels
/// in each factor's [`Levels`], its rows and weight.
type Cell = (usize, usize, u64, Dd);

/// Remove singleton rows (iteratively for two factors: removing one can
/// leave a level of the other with one row). Returns the removed rows as
/// `(z over the keys, weight)` and, for two factors, the cells of the rows
/// left; updates the levels' sums.
fn remove_singletons(fs: &mut [Levels], cross: Option<&CrossTab>) -> (Vec<(Vec<Dd>, Dd)>, Vec<Cell>) {
    let mut removed = Vec::new();
    if fs.len() == 1 {
        let f = &mut fs[0];
        for i in 0..f.levels.len() {
            if f.n[i] == 1 {
                removed.push((f.s[i].iter().map(|&v| v / f.w[i]).collect(), f.w[i]));
                f.n[i] = 0;
                f.w[i] = Dd::ZERO;
                f.s[i].iter_mut().for_each(|v| *v = Dd::ZERO);
            }
        }
        return (removed, Vec::new());
    }
    let cross = cross.expect("two factors have a cross-tabulation");
    let index: Vec<HashMap<&Level, usize>> =
        fs.iter().map(|f| f.levels.iter().enumerate().map(|(i, l)| (l, i)).collect()).collect();
    // Cells as (level of a, level of b, rows left, weight left), and each
    // level's cells.
    let mut cells: Vec<Cell> =
        cross.sorted().into_iter().map(|(a, b, n, w)| (index[0][a], index[1][b], n, w)).collect();
    let mut of_level: [Vec<Vec<usize>>; 2] =
        [vec![Vec::new(); fs[0].levels.len()], vec![Vec::new(); fs[1].levels.len()]];
    for (c, &(a, b, _, _)) in cells.iter().enumerate() {
        of_level[0][a].push(c);
        of_level[1][b].push(c);
    }
    let mut queue: Vec<(usize, usize)> = Vec::new();
    for (f, lv) in fs.iter().enumerate() {
        queue.extend((0..lv.levels.len()).filter(|&i| lv.n[i] == 1).map(|i| (f, i)));
    }
    while let Some((f, i)) = queue.pop() {
        if fs[f].n[i] != 1 {
            continue;
        }
        let Some(&c) = of_level[f][i].iter().find(|&&c| cells[c].2 > 0) else { continue };
        let w = fs[f].w[i];
        let z: Vec<Dd> = fs[f].s[i].iter().map(|&v| v / w).collect();
        let (a, b) = (cells[c].0, cells[c].1);
        cells[c].2 -= 1;
        cells[c].3 -= w;
        for (g, l) in [(0, a), (1, b)] {
            let lv = &mut fs[g];
            lv.n[l] -= 1;
            if lv.n[l] == 0 {
                lv.w[l] = Dd::ZERO;
                lv.s[l].iter_mut().for_each(|v| *v = Dd::ZERO);
            } else {
                lv.w[l] -= w;
                for (v, &zj) in lv.s[l].iter_mut().zip(&z) {
                    *v -= w * zj;
                }
                if lv.n[l] == 1 {
                    queue.push((g, l));
                }
            }
        }
        removed.push((z, w));
    }
    cells.retain(|c| c.2 > 0);
    (removed, cells)
}

/// The statistics without the removed rows.
fn retract_rows(
    stats: &SufficientStats,
    rows: &[(Vec<Dd>, Dd)],
    weighted: bool,
) -> Result<SufficientStats, WithinError> {
    let mut out = stats.clone();
    if rows.is_empty() {
        return Ok(out);
    }
    let keys = stats.keys();
    let cols: Vec<(Vec<f64>, Vec<f64>)> =
        (0..keys.len()).map(|j| rows.iter().map(|(z, _)| (z[j].hi, z[j].lo)).unzip()).collect();
    let refs: Vec<ColumnRef<'_>> = cols
        .iter()
        .map(|(hi, lo)| ColumnRef { hi, lo: Some(lo.as_slice()), integral: false, decimals: false })
        .collect();
    let w: Vec<f64> = rows.iter().map(|(_, w)| w.to_f64()).collect();
    let part = SufficientStats::from_block(keys, &refs, weighted.then_some(w.as_slice()));
    // The rows were in the statistics (a state checked on loading).
    out.retract(&part).map_err(|e| WithinError::Inconsistent(e.to_string()))?;
    Ok(out)
}

/// Per level left: weight and means over the design columns and y.
struct LevelMeans {
    levels: Vec<Level>,
    w: Vec<Dd>,
    /// Row-major `levels × (k + 1)`: `μ_l − μ`.
    dev: Vec<Dd>,
    removed: usize,
    /// Position of each of the factor's [`Levels`] here (`None`: removed).
    of_all: Vec<Option<usize>>,
}

fn level_means(f: &Levels, groups: &[Vec<usize>], mu: &[Dd]) -> LevelMeans {
    let k1 = groups.len();
    let mut out = LevelMeans { levels: Vec::new(), w: Vec::new(), dev: Vec::new(), removed: 0, of_all: Vec::new() };
    for i in 0..f.levels.len() {
        if f.n[i] == 0 {
            out.removed += 1;
            out.of_all.push(None);
            continue;
        }
        out.of_all.push(Some(out.levels.len()));
        out.levels.push(f.levels[i].clone());
        out.w.push(f.w[i]);
        for (g, m) in groups.iter().zip(mu) {
            let s = g.iter().fold(Dd::ZERO, |acc, &j| acc + f.s[i][j]);
            out.dev.push(s / f.w[i] - *m);
        }
    }
    debug_assert_eq!(out.dev.len(), out.levels.len() * k1);
    out
}

/// `C − Σ_l W_l d_l d_lᵀ` for the levels' deviations `d_l = μ_l − μ`.
fn within_one(c: &[Dd], lm: &LevelMeans, k1: usize) -> Vec<Dd> {
    let mut m = c.to_vec();
    for (l, &w) in lm.w.iter().enumerate() {
        let d = &lm.dev[l * k1..(l + 1) * k1];
        for i in 0..k1 {
            let wdi = w * d[i];
            for j in i..k1 {
                m[i * k1 + j] -= wdi * d[j];
            }
        }
    }
    for i in 0..k1 {
        for j in 0..i {
            m[i * k1 + j] = m[j * k1 + i];
        }
    }
    m
}

/// A partial Cholesky factorization (see [`eliminate`]).
struct Partial {
    /// The factor's first rows, row-major `lb × n` (zero for aliased pivots).
    r: Vec<Dd>,
    aliased: Vec<bool>,
    /// The trailing Schur complement, `(n − lb)²`.
    schur: Vec<Dd>,
}

/// Eliminate the first `lb` rows of the symmetric `n × n` matrix `t`
/// (row-major) by a partial Cholesky, a pivot aliased when it is at most
/// [`ALIAS_TOL`] of its diagonal entry (a level's indicator reproduced by
/// the other factor's and the earlier ones').
fn eliminate(t: &[Dd], n: usize, lb: usize) -> Result<Partial, SolveError> {
    let mut r = vec![Dd::ZERO; lb * n];
    let mut aliased = vec![false; lb];
    let mut acc = vec![Dd::ZERO; n];
    for i in 0..lb {
        crate::solve::check_interrupt()?;
        acc[i..].copy_from_slice(&t[i * n + i..(i + 1) * n]);
        let (above, _) = r.split_at(i * n);
        let rows: Vec<(Dd, &[Dd], usize)> =
            (0..i).filter(|&l| !aliased[l]).map(|l| (above[l * n + i], &above[l * n..(l + 1) * n], i)).collect();
        crate::solve::axpy_rows(&mut acc[i..], &rows, i, n - i);
        let d = acc[i];
        let orig = t[i * n + i];
        if orig.hi <= 0.0 || d.hi <= ALIAS_TOL * orig.hi {
            aliased[i] = true;
            continue;
        }
        let rii = d.sqrt();
        r[i * n + i] = rii;
        for j in i + 1..n {
            r[i * n + j] = acc[j] / rii;
        }
    }
    let m = n - lb;
    let mut s = vec![Dd::ZERO; m * m];
    for a in 0..m {
        for b in a..m {
            let mut v = t[(lb + a) * n + lb + b];
            for l in (0..lb).filter(|&l| !aliased[l]) {
                v -= r[l * n + lb + a] * r[l * n + lb + b];
            }
            s[a * m + b] = v;
            s[b * m + a] = v;
        }
    }
    Ok(Partial { r, aliased, schur: s })
}

/// Form the within normal equations of `acc` for `design` and solve them.
pub fn within_fit(
    acc: &AbsorbAccumulator,
    design: &Design,
    weighted: bool,
    policy: SingularPolicy,
    singletons: Singletons,
) -> Result<WithinFit, WithinError> {
    let stats = &acc.dense.stats;
    let keys = stats.keys().to_vec();
    let mut fs: Vec<Levels> = (0..acc.sums.len()).map(|f| levels_of(acc, f, &keys)).collect();
    let (removed, cells) = match (singletons, acc.cross.as_ref()) {
        (Singletons::Drop, cross) => remove_singletons(&mut fs, cross),
        (Singletons::Keep, None) => (Vec::new(), Vec::new()),
        (Singletons::Keep, Some(_)) => unreachable!("levels are estimated for one factor only"),
    };
    let kept = retract_rows(stats, &removed, weighted)?;
    if kept.nobs() == 0 {
        return Err(WithinError::AllSingletons);
    }
    let groups = column_groups(design, &kept);
    let k1 = groups.len();
    let (mu, c) = kept.combine(&groups);
    let means: Vec<LevelMeans> = fs.iter().map(|f| level_means(f, &groups, &mu)).collect();
    // The larger factor is eliminated in closed form.
    let (ia, ib) = if means.len() == 2 && means[1].levels.len() > means[0].levels.len() { (1, 0) } else { (0, 1) };
    let a = &means[ia];
    let mut m = within_one(&c, a, k1);
    // proj[f]: per level, the projection coefficients of each column.
    let mut proj: Vec<Vec<Dd>> = vec![Vec::new(); means.len()];
    proj[ia] = a.dev.clone();
    if means.len() == 2 {
        let b = &means[ib];
        let lb = b.levels.len();
        if lb > MAX_SMALLER_LEVELS {
            return Err(WithinError::TooManyLevels {
                a: acc.columns[ia].clone(),
                la: a.levels.len(),
                b: acc.columns[ib].clone(),
                lb,
            });
        }
        // Cells by level of a: (level of b, weight).
        let mut by_a: Vec<Vec<(usize, Dd)>> = vec![Vec::new(); a.levels.len()];
        for &(l0, l1, _, w) in &cells {
            let (la, lbv) = if ia == 0 { (l0, l1) } else { (l1, l0) };
            let (i, j) =
                (a.of_all[la].expect("a cell's level has rows"), b.of_all[lbv].expect("a cell's level has rows"));
            by_a[i].push((j, w));
        }
        let n = lb + k1;
        let mut t = vec![Dd::ZERO; n * n];
        for (j, &w) in b.w.iter().enumerate() {
            t[j * n + j] = w;
            for col in 0..k1 {
                t[j * n + lb + col] = w * b.dev[j * k1 + col];
            }
        }
        for (i, cells) in by_a.iter().enumerate() {
            let wa = a.w[i];
            for &(j, nij) in cells {
                let share = nij / wa;
                for &(j2, nij2) in cells {
                    t[j * n + j2] -= share * nij2;
                }
                for col in 0..k1 {
                    t[j * n + lb + col] -= nij * a.dev[i * k1 + col];
                }
            }
        }
        for j in 0..lb {
            for col in 0..k1 {
                t[(lb + col) * n + j] = t[j * n + lb + col];
            }
        }
        for i in 0..k1 {
            for j in 0..k1 {
                t[(lb + i) * n + lb + j] = m[i * k1 + j];
            }
        }
        let Partial { r, aliased, schur } = eliminate(&t, n, lb)?;
        m = schur;
        // γ per column: R_GG γ = R_G,col over the pivots kept.
        let mut gamma = vec![Dd::ZERO; lb * k1];
        for col in 0..k1 {
            for i in (0..lb).rev().filter(|&i| !aliased[i]) {
                let mut v = r[i * n + lb + col];
                for c2 in (i + 1..lb).filter(|&c2| !aliased[c2]) {
                    v -= r[i * n + c2] * gamma[c2 * k1 + col];
                }
                gamma[i * k1 + col] = v / r[i * n + i];
            }
        }
        // α_a = (μ_a − μ) − Σ_b (N_ab / W_a) γ_b.
        let mut alpha = a.dev.clone();
        for (i, cells) in by_a.iter().enumerate() {
            for &(j, nij) in cells {
                let share = nij / a.w[i];
                for col in 0..k1 {
                    alpha[i * k1 + col] -= share * gamma[j * k1 + col];
                }
            }
        }
        proj[ia] = alpha;
        proj[ib] = gamma;
    }
    // A column the levels reproduce keeps only rounding dust of its total
    // sum of squares: relative to its own (dust) scale the solver would
    // see a healthy column. Judged against the total, as the solver
    // judges a column against the earlier ones (ALIAS_TOL), and zeroed.
    let mut collinear_with_levels = Vec::new();
    for j in 0..k1 - 1 {
        let total = c[j * k1 + j];
        if m[j * k1 + j].hi <= ALIAS_TOL * total.hi.max(0.0) || total.hi <= 0.0 {
            for i in 0..k1 {
                m[i * k1 + j] = Dd::ZERO;
                m[j * k1 + i] = Dd::ZERO;
            }
            collinear_with_levels.push(j);
        }
    }
    let centered_tss = c[k1 * k1 - 1];
    let ne = NormalEquations {
        names: design.columns.iter().map(|c| c.name.clone()).collect(),
        intercept: false,
        nobs: kept.nobs(),
        sum_w: kept.sum_w(),
        sum_log_w: kept.sum_log_w(),
        mean: vec![Dd::ZERO; k1],
        comoment: m,
    };
    let sol = solve_normal_equations(&ne, policy)?;
    let factors = means
        .iter()
        .zip(&proj)
        .zip(acc.columns.iter())
        .map(|((lm, p), column)| AbsorbedFactor {
            column: column.clone(),
            levels: lm.levels.clone(),
            singleton_levels: lm.removed,
            weight: lm.w.clone(),
            proj: p.iter().map(|d| d.to_f64()).collect(),
            proj_dd: p.clone(),
        })
        .collect();
    Ok(WithinFit {
        ne,
        sol,
        factors,
        singletons: removed.len() as u64,
        mean: mu.iter().map(|d| d.to_f64()).collect(),
        centered_tss,
        centered: c,
        collinear_with_levels,
    })
}

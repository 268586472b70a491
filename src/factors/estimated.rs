//! A plain model's factor with many levels (`y ~ x + C(tailnum)`), its
//! levels estimated by blocks instead of as dense dummy columns.
//!
//! The statistics are those of an absorbed fit of the rest of the model
//! (per-level sums of every other column and of y, [`super::level_sums`]):
//! `O(L·k)` memory instead of `O((L + k)²)`. The dummy model's normal
//! equations `[D, X]ᵀW[D, X]` have a diagonal `DᵀWD = diag(W_l)`, so by
//! block elimination (a Schur complement; Golub & Van Loan, *Matrix
//! Computations*, 4th ed., §3.2.10, and Frisch–Waugh–Lovell):
//!
//! - the slopes `β` solve the within normal equations ([`super::within`],
//!   singletons kept: the dummy model fits them exactly and counts them);
//! - each level's effect is `α_l = ȳ_l − x̄_lᵀβ` (its weighted means);
//! - `Var(β) = σ² M⁻¹` with `M` the within moments, `Var(ȳ_l) = σ²/W_l`,
//!   and `ȳ_l` is uncorrelated with `β` (the within columns are
//!   W-orthogonal to every indicator) and with `ȳ_m`, `m ≠ l`.
//!
//! With treatment coding and an intercept (the only coding taken here:
//! [`block_factors`]), `Intercept = α_r` for the reference level `r` and
//! `C(g)[T.l] = α_l − α_r`; every coefficient is `L − aᵀβ` with `L` a
//! combination of level means, so any two have covariance
//! `Cov(L_i, L_j) + σ² a_iᵀ M⁻¹ a_j` — the full covariance's entries in
//! `O(k²)` each, without the `(L + k)³` factorization. Every sum of
//! squares is the within fit's (double-double); the level effects are
//! formed in double-double from the level means.

use super::accumulate::AbsorbAccumulator;
use super::within::WithinFit;
use crate::dd::Dd;
use crate::diagnostics::Diagnostics;
use crate::formula::columns::{design, CodingError, Design};
use crate::formula::{FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use crate::results::{apply_robust, finite, standard_notes, t_quantile, t_sf, MeasureInputs, Measures, OlsResults};
use crate::solve::{solve_normal_equations, NormalEquations, SingularPolicy};
use std::collections::{BTreeSet, HashMap};

/// A plain fit estimates a factor by blocks once it has more levels than
/// this (the design is then past [`crate::diagnostics::WIDE_DESIGN_COLUMNS`]
/// columns anyway, where the reports leave the `O(p²)` blocks out).
pub const DENSE_LEVELS: usize = 300;

/// [`DENSE_LEVELS`], or `GRAMFIT_DENSE_LEVELS` when set (the tests force
/// the block path on small factors with it, to compare it with the dense
/// one).
pub fn dense_levels() -> usize {
    std::env::var("GRAMFIT_DENSE_LEVELS").ok().and_then(|v| v.parse().ok()).unwrap_or(DENSE_LEVELS)
}

/// A term of a plain model that can be estimated by blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockFactor {
    /// The term (`spec.terms` index) and its one factor.
    pub term: usize,
    pub factor: usize,
    /// The factor's source column.
    pub column: String,
}

/// The terms of `spec` that are one categorical factor appearing in no
/// other term, in a model with an intercept (treatment coding: the
/// intercept is the reference level's effect).
pub fn block_factors(spec: &ModelSpec) -> Vec<BlockFactor> {
    if !spec.intercept {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (t, factors) in spec.terms.iter().enumerate() {
        let [f] = factors.as_slice() else { continue };
        let FactorKind::Categorical { column, .. } = &spec.factors[*f].kind else { continue };
        let elsewhere = spec.terms.iter().enumerate().any(|(u, g)| u != t && g.contains(f));
        if !elsewhere {
            out.push(BlockFactor { term: t, factor: *f, column: column.clone() });
        }
    }
    out
}

/// The model without the factor's term: what the dense statistics hold.
/// Its codings are the full model's (the intercept is kept, so the other
/// factors stay reduced-rank where they were).
pub fn rest_spec(spec: &ModelSpec, bf: &BlockFactor) -> ModelSpec {
    let re = |f: usize| if f > bf.factor { f - 1 } else { f };
    ModelSpec {
        formula: spec.formula.clone(),
        response: spec.response.clone(),
        factors: spec.factors.iter().enumerate().filter(|&(i, _)| i != bf.factor).map(|(_, f)| f.clone()).collect(),
        terms: spec
            .terms
            .iter()
            .enumerate()
            .filter(|&(t, _)| t != bf.term)
            .map(|(_, fs)| fs.iter().map(|&f| re(f)).collect())
            .collect(),
        intercept: true,
    }
}

/// A saved fit by blocks: the full model of its formula, the rest of it
/// (what its statistics hold) and the factor estimated (`term` in the
/// formula).
pub fn estimated_model(
    options: &crate::model::ModelOptions,
    column_types: &[(String, crate::formula::SourceType)],
    term: usize,
) -> Result<(crate::model::Resolved, crate::model::Resolved, BlockFactor), String> {
    let full = crate::model::Resolved::new(options.clone(), column_types.to_vec()).map_err(|e| e.to_string())?;
    let bf = block_factors(&full.spec)
        .into_iter()
        .find(|b| b.term == term)
        .ok_or_else(|| format!("term {term} of '{}' is not a factor estimated by blocks", options.formula))?;
    let rest = crate::model::Resolved {
        options: options.clone(),
        spec: std::sync::Arc::new(rest_spec(&full.spec, &bf)),
        column_types: column_types.to_vec(),
    };
    Ok((full, rest, bf))
}

/// What a column of the full design is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    Intercept,
    /// `C(g)[T.l]`: level `l` (its index in the fit's sorted levels).
    Level(usize),
    /// A column of the rest of the model (its index there).
    Slope(usize),
}

/// The full model's design columns, in patsy's order.
#[derive(Clone, Debug)]
pub struct FullDesign {
    pub names: Vec<String>,
    pub roles: Vec<Role>,
    /// The reference level (index in the fit's levels).
    pub reference: usize,
}

/// The full design of `spec` (with the factor `bf`, whose `levels` are
/// sorted), given the rest model's statistics and design.
pub fn full_design(
    spec: &ModelSpec,
    bf: &BlockFactor,
    acc: &AbsorbAccumulator,
    rest: &Design,
    levels: &[Level],
) -> Result<FullDesign, CodingError> {
    let rest_sets = acc.dense.level_sets();
    let sets: Vec<BTreeSet<Level>> = (0..spec.factors.len())
        .map(|f| match f.cmp(&bf.factor) {
            std::cmp::Ordering::Equal => levels.iter().cloned().collect(),
            std::cmp::Ordering::Less => rest_sets.get(f).cloned().unwrap_or_default(),
            std::cmp::Ordering::Greater => rest_sets.get(f - 1).cloned().unwrap_or_default(),
        })
        .collect();
    let term = bf.term as u32;
    let mut keys: Vec<ColumnKey> = acc
        .dense
        .stats
        .keys()
        .iter()
        .map(|k| match k {
            ColumnKey::Cell { term: t, levels } if *t >= term => {
                ColumnKey::Cell { term: t + 1, levels: levels.clone() }
            }
            k => k.clone(),
        })
        .collect();
    keys.extend(levels.iter().map(|l| ColumnKey::Cell { term, levels: vec![l.clone()] }));
    let full = design(spec, &sets, &keys)?;
    let rest_index: HashMap<&str, usize> = rest.columns.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
    let mut roles = vec![Role::Intercept; usize::from(full.intercept)];
    let mut is_coded = vec![false; levels.len()];
    for c in &full.columns {
        let level = match c.cells.as_slice() {
            [ColumnKey::Cell { term: t, levels: lv }] if *t == term => lv.first(),
            _ => None,
        };
        roles.push(match level {
            Some(l) => {
                let i = levels.binary_search(l).map_err(|_| CodingError(format!("level {l} of {}", bf.column)))?;
                is_coded[i] = true;
                Role::Level(i)
            }
            None => Role::Slope(
                *rest_index.get(c.name.as_str()).ok_or_else(|| CodingError(format!("the column {}", c.name)))?,
            ),
        });
    }
    let reference = is_coded.iter().position(|&c| !c).unwrap_or(0);
    Ok(FullDesign { names: full.names(), roles, reference })
}

/// What a report needs besides the fit.
pub struct BlockOptions<'a> {
    pub alpha: f64,
    pub weighted: bool,
    pub response: &'a str,
    /// Form the full `p × p` covariance (else only its diagonal).
    pub full_cov: bool,
    pub singular: SingularPolicy,
}

/// A coefficient as `L − aᵀβ`: its level part and `a`.
#[derive(Clone, Copy, Debug)]
enum LevelPart {
    None,
    /// `ȳ_r`.
    Reference,
    /// `ȳ_l − ȳ_r`.
    Difference(usize),
}

/// The results of the full dummy model from its block solve.
pub fn block_results(
    acc: &AbsorbAccumulator,
    within: &WithinFit,
    full: &FullDesign,
    rest: &Design,
    o: &BlockOptions<'_>,
) -> Result<OlsResults, crate::solve::SolveError> {
    let fac = &within.factors[0];
    let n_levels = fac.levels.len();
    let k1 = within.mean.len();
    let k = k1 - 1;
    let sol = &within.sol;
    let minv: Vec<f64> = sol.normalized_cov.iter().map(|d| d.to_f64()).collect();
    let mean: Vec<Dd> = within.mean.iter().map(|&m| Dd::from(m)).collect();
    let sum_w = within.ne.sum_w;
    let rank = sol.rank + n_levels;
    let m = Measures::of(
        MeasureInputs {
            nobs: within.ne.nobs,
            ssr: sol.ssr,
            centered_tss: within.centered_tss,
            uncentered_tss: within.centered_tss + sum_w * mean[k] * mean[k],
            sum_log_w: within.ne.sum_log_w,
            rank,
            k_constant: 1,
        },
        o.weighted,
    );
    let scale = m.scale;
    let r = full.reference;
    let w_of = |l: usize| fac.weight[l].to_f64();
    let cols = coefficient_forms(within, full);
    let quad = |a: &[f64], b: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in (0..k).filter(|&i| a[i] != 0.0) {
            let row = &minv[i * k..(i + 1) * k];
            s += a[i] * row.iter().zip(b).map(|(m, b)| m * b).sum::<f64>();
        }
        s
    };
    // Cov(L_i, L_j) / σ².
    let level_cov = |x: LevelPart, y: LevelPart| -> f64 {
        match (x, y) {
            (LevelPart::None, _) | (_, LevelPart::None) => 0.0,
            (LevelPart::Reference, LevelPart::Reference) => 1.0 / w_of(r),
            (LevelPart::Reference, LevelPart::Difference(_)) | (LevelPart::Difference(_), LevelPart::Reference) => {
                -1.0 / w_of(r)
            }
            (LevelPart::Difference(l), LevelPart::Difference(m)) => {
                1.0 / w_of(r) + if l == m { 1.0 / w_of(l) } else { 0.0 }
            }
        }
    };
    let cov = |i: usize, j: usize| -> f64 {
        let ((li, ai, _), (lj, aj, _)) = (&cols[i], &cols[j]);
        scale * (level_cov(*li, *lj) + quad(ai, aj))
    };

    let p = cols.len();
    let df_resid = m.df_resid;
    let tq = t_quantile(1.0 - o.alpha / 2.0, df_resid);
    let mut res_params = Vec::with_capacity(p);
    let (mut bse, mut tvalues, mut pvalues, mut conf_int) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unscaled_var = Vec::with_capacity(p);
    for (i, (_, _, b)) in cols.iter().enumerate() {
        let var = cov(i, i);
        unscaled_var.push(var / scale);
        let se = b.and_then(|_| finite(var.max(0.0).sqrt()));
        let t = b.zip(se).map(|(b, s)| b / s).and_then(finite);
        res_params.push(*b);
        bse.push(se);
        tvalues.push(t);
        pvalues.push(t.map(|t| 2.0 * t_sf(t.abs(), df_resid)).and_then(finite));
        conf_int.push(match (b, se) {
            (Some(b), Some(se)) if tq.is_finite() => Some((b - tq * se, b + tq * se)),
            _ => None,
        });
    }
    let cov_params: Vec<Vec<Option<f64>>> = if o.full_cov || p <= crate::report::FULL_COV_COLUMNS {
        (0..p)
            .map(|i| {
                (0..p)
                    .map(|j| if cols[i].2.is_none() || cols[j].2.is_none() { None } else { finite(cov(i, j)) })
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };

    // Diagnostics of the numeric block (the intercept and the terms
    // without a factor), from the rest model's statistics.
    let numeric = Design {
        intercept: true,
        columns: rest
            .columns
            .iter()
            .filter(|c| c.cells.iter().all(|k| matches!(k, ColumnKey::Cell { levels, .. } if levels.is_empty())))
            .cloned()
            .collect(),
    };
    let ne_num = NormalEquations::from_state(&acc.dense, &numeric);
    let sol_num = solve_normal_equations(&ne_num, o.singular)?;
    let mut diagnostics = Diagnostics::compute(&ne_num, &sol_num, None);
    diagnostics.numeric_block = Some(numeric.columns.len() + 1);
    // VIF_j = (centered sum of squares of column j) · (XᵀWX)⁻¹_jj.
    let w_total = sum_w.to_f64();
    diagnostics.vif = full
        .roles
        .iter()
        .zip(&cols)
        .zip(&unscaled_var)
        .map(|((role, (_, _, b)), &v)| {
            let ss = match *role {
                Role::Intercept => return None,
                Role::Level(l) => w_of(l) - w_of(l) * w_of(l) / w_total,
                Role::Slope(j) => within.centered[j * k1 + j].to_f64(),
            };
            b.map(|_| ss * v)
        })
        .collect();

    let (notes, mut gramfit_notes) = standard_notes(1, within.ne.nobs, p, &diagnostics, sol, rank, df_resid);
    // The solver saw the columns with the levels taken out.
    for n in gramfit_notes.iter_mut() {
        if sol.dependencies.iter().any(|d| n.starts_with(&format!("{} is ", d.column))) {
            n.push_str(&format!(" (with the levels of {} taken out)", fac.column));
        }
    }
    // A column constant within the levels is aliased with them.
    gramfit_notes.retain(|n| !within.collinear_with_levels.iter().any(|&j| n.starts_with(&within.ne.names[j])));
    for &j in &within.collinear_with_levels {
        gramfit_notes.insert(
            0,
            format!(
                "{} is aliased and not estimated: it is constant within the levels of {} (a combination of their indicator columns).",
                within.ne.names[j], fac.column
            ),
        );
    }
    gramfit_notes.extend(diagnostics.gramfit_notes(&full.names));
    let aliased = full
        .roles
        .iter()
        .zip(&full.names)
        .filter(|(role, _)| matches!(role, Role::Slope(j) if sol.aliased[*j]))
        .map(|(_, n)| n.clone())
        .collect();
    let dependencies = sol
        .dependencies
        .iter()
        .filter(|d| !within.collinear_with_levels.iter().any(|&j| within.ne.names[j] == d.column))
        .cloned()
        .collect();
    let mut res = OlsResults {
        model: if o.weighted { "WLS" } else { "OLS" },
        dep_variable: o.response.to_string(),
        names: full.names.clone(),
        params: res_params,
        bse,
        tvalues,
        pvalues,
        conf_int,
        alpha: o.alpha,
        cov_params,
        nobs: within.ne.nobs,
        rank,
        k_constant: 1,
        centered_tss: within.centered_tss.to_f64(),
        uncentered_tss: (within.centered_tss + sum_w * mean[k] * mean[k]).to_f64(),
        aliased,
        dependencies,
        policy: sol.policy,
        diagnostics,
        notes,
        gramfit_notes,
        use_t: true,
        // Nonrobust, no second pass yet.
        ..OlsResults::default()
    };
    res.set_measures(&m);
    Ok(res)
}

/// Each column of the full design as `(L, a, estimate)`: its level part,
/// `a` (`Intercept`: `x̄_r`; `C(g)[T.l]`: `x̄_l − x̄_r`; slope `j`: `−e_j`)
/// and its estimate (`None`: aliased).
fn coefficient_forms(within: &WithinFit, full: &FullDesign) -> Vec<(LevelPart, Vec<f64>, Option<f64>)> {
    let fac = &within.factors[0];
    let k1 = within.mean.len();
    let k = k1 - 1;
    let sol = &within.sol;
    let beta: Vec<Dd> = sol.params.iter().map(|b| b.unwrap_or(Dd::ZERO)).collect();
    let dev = |l: usize, j: usize| fac.proj_dd[l * k1 + j];
    let mean: Vec<Dd> = within.mean.iter().map(|&m| Dd::from(m)).collect();
    // α_l − c, with c = μ_y − Σ β_j μ_j the part common to every level.
    let alpha_rel = |l: usize| (0..k).fold(dev(l, k), |acc, j| acc - beta[j] * dev(l, j));
    let common = (0..k).fold(mean[k], |acc, j| acc - beta[j] * mean[j]);
    let r = full.reference;
    full.roles
        .iter()
        .map(|role| match *role {
            Role::Intercept => {
                let a = (0..k).map(|j| (mean[j] + dev(r, j)).to_f64()).collect();
                (LevelPart::Reference, a, Some((common + alpha_rel(r)).to_f64()))
            }
            Role::Level(l) => {
                let a = (0..k).map(|j| (dev(l, j) - dev(r, j)).to_f64()).collect();
                (LevelPart::Difference(l), a, Some((alpha_rel(l) - alpha_rel(r)).to_f64()))
            }
            Role::Slope(j) => {
                let mut a = vec![0.0; k];
                a[j] = -1.0;
                (LevelPart::None, a, sol.params[j].map(|b| b.to_f64()))
            }
        })
        .collect()
}

/// What a robust covariance of a fit by blocks is made of: per level `R_l`
/// (`k` values), per pair of levels `P_lm`, and `Φ` (`k × k`), with a
/// small-sample factor (see [`apply_block_robust`]).
struct BlockMeat {
    r: Vec<Vec<f64>>,
    pairs: Pairs,
    phi: Vec<f64>,
    factor: f64,
}

/// `P_lm`: diagonal (heteroskedasticity-robust: `Q_l`), or sparse over
/// the clusters (`Σ_G U_Gl U_Gm`, each level's `(cluster, U)` sorted).
enum Pairs {
    Diagonal(Vec<f64>),
    Clusters(Vec<Vec<(u32, f64)>>),
}

impl Pairs {
    fn get(&self, l: usize, m: usize) -> f64 {
        match self {
            Pairs::Diagonal(q) => {
                if l == m {
                    q[l]
                } else {
                    0.0
                }
            }
            Pairs::Clusters(u) => {
                let (a, b) = (&u[l], &u[m]);
                let (mut i, mut j, mut s) = (0, 0, 0.0);
                while i < a.len() && j < b.len() {
                    match a[i].0.cmp(&b[j].0) {
                        std::cmp::Ordering::Less => i += 1,
                        std::cmp::Ordering::Greater => j += 1,
                        std::cmp::Ordering::Equal => {
                            s += a[i].1 * b[j].1;
                            i += 1;
                            j += 1;
                        }
                    }
                }
                s
            }
        }
    }
}

/// `M⁻¹v` for the within inverse `minv` (`k × k`).
fn times(minv: &[f64], v: &[f64], k: usize) -> Vec<f64> {
    (0..k).map(|i| (0..k).map(|j| minv[i * k + j] * v[j]).sum()).collect()
}

/// The robust covariance a second pass asks for, from its sums: HC0–HC3
/// from the per-level sums, cluster (CRV1) from the clusters' score sums
/// and each cluster's `Σ u` per level.
fn block_meat(
    res: &OlsResults,
    within: &WithinFit,
    scores: &super::LevelScores,
    clusters: Option<(&[f64], usize)>,
) -> BlockMeat {
    use crate::second_pass::CovType;
    let k = within.mean.len() - 1;
    let n_levels = within.factors[0].levels.len();
    let minv: Vec<f64> = within.sol.normalized_cov.iter().map(|d| d.to_f64()).collect();
    let sandwich = |m: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                out[i * k + j] =
                    (0..k).map(|a| (0..k).map(|b| minv[i * k + a] * m[a * k + b] * minv[b * k + j]).sum::<f64>()).sum();
            }
        }
        out
    };
    let (n, df_resid) = (res.nobs as f64, res.df_resid);
    match clusters {
        None => BlockMeat {
            r: scores.r.chunks(k.max(1)).take(n_levels).map(|v| times(&minv, v, k)).collect(),
            pairs: Pairs::Diagonal(scores.q.clone()),
            phi: sandwich(&scores.meat),
            factor: if res.cov_type == CovType::Hc1 { n / df_resid } else { 1.0 },
        },
        Some((sums, groups)) => {
            // F_G = M⁻¹ S_G; T_l = Σ_G U_Gl F_G; Φ = Σ_G F_G F_Gᵀ.
            let f: Vec<Vec<f64>> = sums.chunks(k.max(1)).take(groups).map(|v| times(&minv, v, k)).collect();
            let mut phi = vec![0.0; k * k];
            for fg in &f {
                for i in 0..k {
                    for j in 0..k {
                        phi[i * k + j] += fg[i] * fg[j];
                    }
                }
            }
            let mut entries: Vec<(&(u32, u32), &f64)> = scores.cluster_level.iter().collect();
            entries.sort_unstable_by_key(|&(&(g, l), _)| (l, g));
            let mut u: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n_levels];
            let mut r = vec![vec![0.0; k]; n_levels];
            for (&(g, l), &v) in entries {
                u[l as usize].push((g, v));
                for (t, x) in r[l as usize].iter_mut().zip(&f[g as usize]) {
                    *t += v * x;
                }
            }
            let g = groups as f64;
            BlockMeat { r, pairs: Pairs::Clusters(u), phi, factor: g / (g - 1.0) * (n - 1.0) / df_resid }
        }
    }
}

/// A robust covariance of a fit by blocks, from the second pass's
/// [`super::LevelScores`] (and for clusters the clusters' score sums and
/// count), put into `res` with `snap` (the second pass's moments).
///
/// Each coefficient's influence on row `i` of level `g` is `c[g]·u/W_g −
/// aᵀφ` (`u = w·e`, `φ = M⁻¹x̃·u`, `c` its level contrast: `e_r`, `e_l −
/// e_r` or 0; `a` as in [`block_results`]). Summed over rows (HC, with the
/// meat's weights `u²/(1 − h)^power`) or within clusters first (CRV1),
/// two coefficients' covariance is
///
/// ```text
/// Σ_lm c[l]c'[m]·P_lm/(W_l W_m) − Σ_l c[l]/W_l·a'ᵀR_l − Σ_m c'[m]/W_m·aᵀR_m + aᵀΦa'
/// ```
///
/// — rows: `P_ll = Σ f`, `R_l = M⁻¹Σ f·x̃` per level, `Φ = M⁻¹(Σ f·x̃x̃ᵀ)M⁻¹`;
/// clusters: `P_lm = Σ_G U_Gl U_Gm`, `R_l = Σ_G U_Gl F_G`, `Φ = Σ_G F_G F_Gᵀ`
/// with `U_Gl = Σ u` and `F_G = M⁻¹Σ u·x̃` over the cluster's rows (of
/// level `l`). The slopes' block is the absorbed fit's sandwich. Scaled as statsmodels scales: HC1 by `n/(n − p)`, CRV1 by
/// `G/(G − 1)·(n − 1)/(n − p)`. HC2/HC3 leave a level of one row's
/// contrast undefined, as the dense path does. The whole matrix (for
/// `cov_params` and the robust F) is formed up to
/// [`crate::report::FULL_COV_COLUMNS`] columns or with `full_cov`.
pub fn apply_block_robust(
    res: &mut OlsResults,
    within: &WithinFit,
    full: &FullDesign,
    scores: &super::LevelScores,
    clusters: Option<(&[f64], usize)>,
    mut snap: crate::second_pass::ResidualSnapshot,
    full_cov: bool,
) {
    use crate::second_pass::CovType;
    res.cov_type = snap.cov_type;
    let meat = block_meat(res, within, scores, clusters);
    let fac = &within.factors[0];
    let k = within.mean.len() - 1;
    let cols = coefficient_forms(within, full);
    let r = full.reference;
    let inv_w = |l: usize| 1.0 / fac.weight[l].to_f64();
    let contrast = |lp: LevelPart| -> Vec<(usize, f64)> {
        match lp {
            LevelPart::None => Vec::new(),
            LevelPart::Reference => vec![(r, 1.0)],
            LevelPart::Difference(l) => vec![(l, 1.0), (r, -1.0)],
        }
    };
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let phi_times =
        |a: &[f64]| -> Vec<f64> { (0..k).map(|i| (0..k).map(|j| meat.phi[i * k + j] * a[j]).sum()).collect() };
    let cov = |i: usize, j: usize| -> f64 {
        let ((li, ai, _), (lj, aj, _)) = (&cols[i], &cols[j]);
        let (ci, cj) = (contrast(*li), contrast(*lj));
        let mut v = dot(ai, &phi_times(aj));
        for &(l, c) in &ci {
            for &(m, d) in &cj {
                v += c * d * meat.pairs.get(l, m) * inv_w(l) * inv_w(m);
            }
            v -= c * inv_w(l) * dot(aj, &meat.r[l]);
        }
        for &(m, d) in &cj {
            v -= d * inv_w(m) * dot(ai, &meat.r[m]);
        }
        meat.factor * v
    };
    if matches!(snap.cov_type, CovType::Hc2 | CovType::Hc3) {
        snap.undefined = cols
            .iter()
            .enumerate()
            .filter(|(_, (lp, _, _))| matches!(lp, LevelPart::Difference(l) if scores.ordinary[*l] == 0))
            .map(|(i, _)| i)
            .collect();
        snap.leverage_one = scores.leverage_one;
    }
    if let Some((_, groups)) = clusters {
        snap.n_clusters = groups;
    }
    let whole = full_cov || cols.len() <= crate::report::FULL_COV_COLUMNS;
    res.residuals = Some(snap.clone());
    apply_robust(res, &snap, &cov, whole);
}

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
use crate::results::{finite, standard_notes, t_quantile, t_sf, MeasureInputs, Measures, OlsResults};
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
    let rest = rest_model(&full, &bf);
    Ok((full, rest, bf))
}

/// The model of a fit by blocks' statistics: `full` without `bf`'s term
/// (see [`rest_spec`]).
pub fn rest_model(full: &crate::model::Resolved, bf: &BlockFactor) -> crate::model::Resolved {
    crate::model::Resolved {
        options: full.options.clone(),
        spec: std::sync::Arc::new(rest_spec(&full.spec, bf)),
        column_types: full.column_types.clone(),
    }
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
pub(super) enum LevelPart {
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
    let forms = coefficient_forms_dd(within, full);
    let cols: Vec<(LevelPart, Vec<f64>, Option<f64>)> =
        forms.iter().map(|(lp, a, b)| (*lp, a.iter().map(|d| d.to_f64()).collect(), *b)).collect();
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
    let drop_cov = |i: usize, j: usize| -> f64 {
        let ((li, ai, _), (lj, aj, _)) = (&cols[i], &cols[j]);
        scale * (level_cov(*li, *lj) + quad(ai, aj))
    };
    // --singular pinv on a singular design: the minimum-norm solution
    // over every coefficient, as the dense fit gives it.
    let min_norm = (o.singular == SingularPolicy::Pinv && sol.aliased.iter().any(|&a| a))
        .then(|| MinNorm::new(within, &forms, scale, &|l| w_of(l), r));
    let cov = |i: usize, j: usize| -> f64 {
        match &min_norm {
            Some(mn) => mn.cov(drop_cov(i, j), i, j),
            None => drop_cov(i, j),
        }
    };
    let params: Vec<Option<f64>> = match &min_norm {
        Some(mn) => mn.params(&cols),
        None => cols.iter().map(|c| c.2).collect(),
    };

    let p = cols.len();
    let df_resid = m.df_resid;
    let tq = t_quantile(1.0 - o.alpha / 2.0, df_resid);
    let mut res_params = Vec::with_capacity(p);
    let (mut bse, mut tvalues, mut pvalues, mut conf_int) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unscaled_var = Vec::with_capacity(p);
    for (i, b) in params.iter().enumerate() {
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
                    .map(|j| if params[i].is_none() || params[j].is_none() { None } else { finite(cov(i, j)) })
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
        .zip(&params)
        .zip(&unscaled_var)
        .map(|((role, b), &v)| {
            let ss = match *role {
                Role::Intercept => return None,
                Role::Level(l) => w_of(l) - w_of(l) * w_of(l) / w_total,
                Role::Slope(j) => within.centered[j * k1 + j].to_f64(),
            };
            b.map(|_| ss * v)
        })
        .collect();

    // The within solve drops aliased columns; the notes speak of the
    // policy asked for.
    let mut asked = sol.clone();
    asked.policy = o.singular;
    let (notes, mut gramfit_notes) = standard_notes(1, within.ne.nobs, p, &diagnostics, &asked, rank, df_resid);
    // The solver saw the columns with the levels taken out.
    for n in gramfit_notes.iter_mut() {
        if sol.dependencies.iter().any(|d| n.starts_with(&format!("{} is ", d.column))) {
            n.push_str(&format!(" (with the levels of {} taken out)", fac.column));
        }
    }
    // A column constant within the levels is aliased with them.
    gramfit_notes.retain(|n| !within.collinear_with_levels.iter().any(|&j| n.starts_with(&within.ne.names[j])));
    for &j in &within.collinear_with_levels {
        let what = match o.singular {
            SingularPolicy::Pinv => "aliased; all coefficients are the minimum-norm solution",
            _ => "aliased and not estimated",
        };
        gramfit_notes.insert(
            0,
            format!(
                "{} is {what}: it is constant within the levels of {} (a combination of their indicator columns).",
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
        policy: o.singular,
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
pub(super) fn coefficient_forms(within: &WithinFit, full: &FullDesign) -> Vec<(LevelPart, Vec<f64>, Option<f64>)> {
    coefficient_forms_dd(within, full)
        .into_iter()
        .map(|(lp, a, b)| (lp, a.iter().map(|d| d.to_f64()).collect(), b))
        .collect()
}

/// [`coefficient_forms`] with `a` in double-double (the minimum-norm
/// solution needs `aᵀs` where it cancels to zero).
fn coefficient_forms_dd(within: &WithinFit, full: &FullDesign) -> Vec<(LevelPart, Vec<Dd>, Option<f64>)> {
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
                let a = (0..k).map(|j| mean[j] + dev(r, j)).collect();
                (LevelPart::Reference, a, Some((common + alpha_rel(r)).to_f64()))
            }
            Role::Level(l) => {
                let a = (0..k).map(|j| dev(l, j) - dev(r, j)).collect();
                (LevelPart::Difference(l), a, Some((alpha_rel(l) - alpha_rel(r)).to_f64()))
            }
            Role::Slope(j) => {
                let mut a = vec![Dd::ZERO; k];
                a[j] = Dd::from(-1.0);
                (LevelPart::None, a, sol.params[j].map(|b| b.to_f64()))
            }
        })
        .collect()
}

/// The minimum-norm solution of a singular fit by blocks and its
/// covariance, from the drop solution `b` and covariance `V`: the null
/// space of the full design is `N = A·S` (`A` the columns' `a` vectors,
/// `S` the null space of the within moments: a row of level `l` gives
/// `x̄_lᵀs − xᵀs = −x̃ᵀs`), so `b⁺ = Πb` and `(XᵀWX)⁺ = ΠVΠ/σ²` with `Π = I −
/// N(NᵀN)⁻¹Nᵀ` (the pseudo-inverse is any generalized inverse projected on
/// the row space). `VN` comes in `O(p·k)` from the structure of `V`:
/// `(VN)_i = σ²(ℓ_i + M⁻¹AᵀA·a_i)ᵀS` with `ℓ_i = Σ_j Cov(L_i, L_j)/σ²·a_j`.
struct MinNorm {
    /// `N` (`p × q`) and `VN` (`p × q`), row-major.
    n: Vec<f64>,
    vn: Vec<f64>,
    /// `G = (NᵀN)⁻¹` and `G·NᵀVN·G` (`q × q`).
    g: Vec<f64>,
    gnvng: Vec<f64>,
    q: usize,
}

impl MinNorm {
    fn new(
        within: &WithinFit,
        forms: &[(LevelPart, Vec<Dd>, Option<f64>)],
        scale: f64,
        w_of: &dyn Fn(usize) -> f64,
        r: usize,
    ) -> MinNorm {
        let k = within.mean.len() - 1;
        let sol = &within.sol;
        let minv = &sol.normalized_cov;
        let m = |i: usize, j: usize| within.ne.comoment[i * (k + 1) + j];
        // S: per aliased column j, e_j minus its regression on the kept
        // ones, and N = A·S, both in double-double: N's entries for the
        // intercept and the levels are differences that vanish exactly.
        let aliased: Vec<usize> = (0..k).filter(|&j| sol.aliased[j]).collect();
        let q = aliased.len();
        let mut s = vec![Dd::ZERO; k * q];
        for (c, &j) in aliased.iter().enumerate() {
            for i in 0..k {
                s[i * q + c] = -(0..k).fold(Dd::ZERO, |acc, t| acc + minv[i * k + t] * m(t, j));
            }
            s[j * q + c] = Dd::from(1.0);
        }
        let p = forms.len();
        let mut n = Vec::with_capacity(p * q);
        for (_, a, _) in forms {
            n.extend((0..q).map(|c| (0..k).fold(Dd::ZERO, |acc, i| acc + a[i] * s[i * q + c]).to_f64()));
        }
        // VN_i = σ²(Σ_j Cov(L_i, L_j)/σ²·N_j + a_iᵀM⁻¹AᵀN): the level part
        // from the sums of N over the intercept and the level columns.
        let (mut n_int, mut n_levels) = (vec![0.0; q], vec![0.0; q]);
        let mut atn = vec![0.0; k * q];
        for (i, (lp, a, _)) in forms.iter().enumerate() {
            let ni = &n[i * q..(i + 1) * q];
            match lp {
                LevelPart::Reference => n_int.iter_mut().zip(ni).for_each(|(t, x)| *t += x),
                LevelPart::Difference(_) => n_levels.iter_mut().zip(ni).for_each(|(t, x)| *t += x),
                LevelPart::None => {}
            }
            for t in 0..k {
                for c in 0..q {
                    atn[t * q + c] += a[t].to_f64() * ni[c];
                }
            }
        }
        let minv_f: Vec<f64> = minv.iter().map(|d| d.to_f64()).collect();
        let minv_atn: Vec<f64> =
            (0..k * q).map(|tc| (0..k).map(|u| minv_f[(tc / q) * k + u] * atn[u * q + tc % q]).sum()).collect();
        let wr = 1.0 / w_of(r);
        let mut vn = Vec::with_capacity(p * q);
        for (i, (lp, a, _)) in forms.iter().enumerate() {
            for c in 0..q {
                let level = match *lp {
                    LevelPart::None => 0.0,
                    LevelPart::Reference => wr * (n_int[c] - n_levels[c]),
                    LevelPart::Difference(l) => wr * (n_levels[c] - n_int[c]) + n[i * q + c] / w_of(l),
                };
                let structural: f64 = (0..k).map(|t| a[t].to_f64() * minv_atn[t * q + c]).sum();
                vn.push(scale * (level + structural));
            }
        }
        let mut ntn = vec![0.0; q * q];
        let mut nvn = vec![0.0; q * q];
        for i in 0..p {
            for c in 0..q {
                for d in 0..q {
                    ntn[c * q + d] += n[i * q + c] * n[i * q + d];
                    nvn[c * q + d] += n[i * q + c] * vn[i * q + d];
                }
            }
        }
        let g = invert(&ntn, q);
        let gnvng = mul(&mul(&g, &nvn, q), &g, q);
        MinNorm { n, vn, g, gnvng, q }
    }

    /// `Πb` for the drop solution's estimates (aliased: 0).
    fn params(&self, cols: &[(LevelPart, Vec<f64>, Option<f64>)]) -> Vec<Option<f64>> {
        let q = self.q;
        let b: Vec<f64> = cols.iter().map(|c| c.2.unwrap_or(0.0)).collect();
        let ntb: Vec<f64> = (0..q).map(|c| b.iter().enumerate().map(|(i, x)| self.n[i * q + c] * x).sum()).collect();
        let gntb: Vec<f64> = (0..q).map(|c| (0..q).map(|d| self.g[c * q + d] * ntb[d]).sum()).collect();
        (0..b.len()).map(|i| Some(b[i] - (0..q).map(|c| self.n[i * q + c] * gntb[c]).sum::<f64>())).collect()
    }

    /// `(ΠVΠ)_ij` from `V_ij`.
    fn cov(&self, v: f64, i: usize, j: usize) -> f64 {
        let q = self.q;
        let (ni, nj) = (&self.n[i * q..(i + 1) * q], &self.n[j * q..(j + 1) * q]);
        let (vi, vj) = (&self.vn[i * q..(i + 1) * q], &self.vn[j * q..(j + 1) * q]);
        let form = |x: &[f64], m: &[f64], y: &[f64]| -> f64 {
            (0..q).map(|c| x[c] * (0..q).map(|d| m[c * q + d] * y[d]).sum::<f64>()).sum()
        };
        v - form(ni, &self.g, vj) - form(vi, &self.g, nj) + form(ni, &self.gnvng, nj)
    }
}

/// `a·b` for row-major `q × q` matrices.
fn mul(a: &[f64], b: &[f64], q: usize) -> Vec<f64> {
    (0..q * q).map(|ij| (0..q).map(|t| a[(ij / q) * q + t] * b[t * q + ij % q]).sum()).collect()
}

/// The inverse of a small symmetric positive definite `q × q` matrix
/// (Gauss–Jordan; `NᵀN` of a few null vectors).
fn invert(a: &[f64], q: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..q * q).map(|ij| if ij / q == ij % q { 1.0 } else { 0.0 }).collect();
    for c in 0..q {
        let piv = (c..q).max_by(|&x, &y| m[x * q + c].abs().total_cmp(&m[y * q + c].abs())).unwrap_or(c);
        for t in 0..q {
            m.swap(c * q + t, piv * q + t);
            inv.swap(c * q + t, piv * q + t);
        }
        let d = m[c * q + c];
        for t in 0..q {
            m[c * q + t] /= d;
            inv[c * q + t] /= d;
        }
        for r in (0..q).filter(|&r| r != c) {
            let f = m[r * q + c];
            for t in 0..q {
                m[r * q + t] -= f * m[c * q + t];
                inv[r * q + t] -= f * inv[c * q + t];
            }
        }
    }
    inv
}

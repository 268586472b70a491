//! Inference from a solved state, with statsmodels' names and conventions
//! (`statsmodels.regression.linear_model.RegressionResults`).
//!
//! Precision: the factorization and every sum of squares are carried in
//! double-double and rounded once to `f64`; test statistics and p-values then
//! use `f64` special functions (regularized incomplete beta from `statrs`),
//! good to ~1e-14 relative except where `p` underflows.

use crate::dd::Dd;
use crate::diagnostics::Diagnostics;
use crate::solve::{Dependency, NormalEquations, SingularPolicy, Solution};
use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::beta::beta_reg;

/// The numbers a summary shows; `None` stands for "not defined" (aliased
/// coefficient, zero degrees of freedom) and is JSON `null`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantile_is_continuous_across_the_switch_and_exact_for_large_df() {
        // scipy.stats.t.ppf(0.975, df) for df = 1e4, 1e5, 5e7.
        for (df, want) in [(1e4, 1.960201239890626), (1e5, 1.9599877075346095), (5e7, 1.9599640319854799)] {
            let got = t_quantile(0.975, df);
            assert!((got - want).abs() / want < 1e-12, "df {df}: {got} vs {want}");
        }
        // The upper tail for large df (scipy.stats.t.sf).
        for (df, t, want) in [
            (1e4, 0.5, 0.30854303966161684),
            (1e4, 2.0, 0.022763630330717714),
            (1e4, 5.0, 2.9151633068313295e-07),
            (5e7, 0.5, 0.3085375398261911),
            (5e7, 2.0, 0.02275013464772755),
            (5e7, 5.0, 2.866525382481911e-07),
        ] {
            let got = t_sf(t, df);
            assert!((got - want).abs() / want < 1e-9, "t_sf({t}, {df}) = {got} vs {want}");
        }
        let below = t_quantile(0.975, 9999.999);
        let above = t_quantile(0.975, 10000.0);
        assert!((below - above).abs() < 1e-9);
    }
}

#[derive(Clone, Debug, Default)]
pub struct OlsResults {
    pub model: &'static str,
    pub dep_variable: String,
    pub names: Vec<String>,
    pub params: Vec<Option<f64>>,
    pub bse: Vec<Option<f64>>,
    pub tvalues: Vec<Option<f64>>,
    pub pvalues: Vec<Option<f64>>,
    pub conf_int: Vec<Option<(f64, f64)>>,
    pub alpha: f64,
    pub cov_params: Vec<Vec<Option<f64>>>,
    pub nobs: u64,
    pub df_model: f64,
    pub df_resid: f64,
    pub rank: usize,
    pub k_constant: usize,
    pub ssr: f64,
    pub ess: f64,
    pub centered_tss: f64,
    pub uncentered_tss: f64,
    pub scale: f64,
    pub mse_model: f64,
    pub mse_resid: f64,
    pub mse_total: f64,
    pub rsquared: f64,
    pub rsquared_adj: f64,
    pub fvalue: f64,
    pub f_pvalue: f64,
    pub llf: f64,
    pub aic: f64,
    pub bic: f64,
    pub aliased: Vec<String>,
    pub dependencies: Vec<Dependency>,
    pub policy: SingularPolicy,
    pub diagnostics: Diagnostics,
    /// statsmodels' numbered notes, in its order and wording.
    pub notes: Vec<String>,
    /// gramfit's own observations (aliasing, VIFs, dropped rows …).
    pub gramfit_notes: Vec<String>,
    /// Covariance type of bse, t, p, intervals and cov_params.
    pub cov_type: crate::second_pass::CovType,
    /// Student t (nonrobust) or normal (robust, statsmodels' default) reference.
    pub use_t: bool,
    /// Residual diagnostics from the second pass, when it ran.
    pub residuals: Option<crate::second_pass::ResidualSnapshot>,
}

/// The Cornish–Fisher map z ↦ t for ν degrees of freedom and its
/// derivative (Abramowitz & Stegun 26.7.5).
fn cornish_fisher(z: f64, v: f64) -> (f64, f64) {
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    let d1 = (3.0 * z2 + 1.0) / 4.0;
    let d2 = ((25.0 * z2 + 48.0) * z2 + 3.0) / 96.0;
    let d3 = (((21.0 * z2 + 95.0) * z2 + 51.0) * z2 - 15.0) / 384.0;
    let d4 = ((((711.0 * z2 + 5432.0) * z2 + 7410.0) * z2 - 5760.0) * z2 - 945.0) / 92160.0;
    let (v2, v3, v4) = (v * v, v * v * v, v * v * v * v);
    (z + g1 / v + g2 / v2 + g3 / v3 + g4 / v4, 1.0 + d1 / v + d2 / v2 + d3 / v3 + d4 / v4)
}

/// Upper tail of Student's t. For ν ≥ 10⁴ the incomplete beta function
/// loses digits, so the normal deviate z with t(z) = t is found by Newton's
/// method on the Cornish–Fisher expansion and the tail is the normal one.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    if df >= 1e4 {
        let mut z = t;
        for _ in 0..20 {
            let (q, dq) = cornish_fisher(z, df);
            let dz = (q - t) / dq;
            z -= dz;
            if dz.abs() <= 1e-16 * z.abs().max(1e-300) {
                break;
            }
        }
        return norm_sf(z);
    }
    let ib = 0.5 * beta_reg(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        ib
    } else {
        1.0 - ib
    }
}

/// Quantile of Student's t. For large df, the Cornish–Fisher expansion
/// around the normal quantile (Abramowitz & Stegun 26.7.5, four terms; the
/// omitted term is O(ν⁻⁵), below 1e-19 relative for ν ≥ 10⁴): statrs'
/// inverse incomplete beta does not converge for ν in the tens of millions
/// (a fit of 50M rows hung there).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if df < 1e4 {
        return StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(p)).unwrap_or(f64::NAN);
    }
    let z = statrs::distribution::Normal::new(0.0, 1.0).map(|n| n.inverse_cdf(p)).unwrap_or(f64::NAN);
    cornish_fisher(z, df).0
}

/// Upper tail of Fisher's F, computed without the `1 − x` cancellation so
/// tiny p-values keep their relative precision.
pub fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if f.is_nan() || d1 <= 0.0 || d2 <= 0.0 {
        return f64::NAN;
    }
    if f <= 0.0 {
        return 1.0;
    }
    if f.is_infinite() {
        return 0.0;
    }
    beta_reg(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))
}

pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Inputs beyond the solution that change the report.
pub struct InferenceOptions {
    pub alpha: f64,
    pub weighted: bool,
    pub response: String,
    /// Per design column (the intercept first): it belongs to no factor
    /// (for the diagnostics of wide designs; `None`: not known).
    pub numeric_columns: Option<Vec<bool>>,
}

/// What the fit measures are computed from.
#[derive(Clone, Copy, Debug)]
pub struct MeasureInputs {
    pub nobs: u64,
    /// `Σ w e²` (double-double).
    pub ssr: Dd,
    pub centered_tss: Dd,
    pub uncentered_tss: Dd,
    pub sum_log_w: Dd,
    pub rank: usize,
    pub k_constant: usize,
}

/// statsmodels' measures of fit (`RegressionResults`: `df_model`,
/// `rsquared`, `fvalue`, `llf`, `aic`, …), from sums of squares carried in
/// double-double and rounded once.
#[derive(Clone, Copy, Debug)]
pub struct Measures {
    pub df_model: f64,
    pub df_resid: f64,
    pub ssr: f64,
    pub ess: f64,
    pub scale: f64,
    pub rsquared: f64,
    pub rsquared_adj: f64,
    pub mse_model: f64,
    pub mse_resid: f64,
    pub mse_total: f64,
    pub fvalue: f64,
    pub f_pvalue: f64,
    pub llf: f64,
    pub aic: f64,
    pub bic: f64,
}

impl OlsResults {
    /// Put the measures of fit in.
    pub fn set_measures(&mut self, m: &Measures) {
        self.df_model = m.df_model;
        self.df_resid = m.df_resid;
        self.ssr = m.ssr;
        self.ess = m.ess;
        self.scale = m.scale;
        self.mse_model = m.mse_model;
        self.mse_resid = m.mse_resid;
        self.mse_total = m.mse_total;
        self.rsquared = m.rsquared;
        self.rsquared_adj = m.rsquared_adj;
        self.fvalue = m.fvalue;
        self.f_pvalue = m.f_pvalue;
        self.llf = m.llf;
        self.aic = m.aic;
        self.bic = m.bic;
    }
}

impl Measures {
    pub fn of(m: MeasureInputs, weighted: bool) -> Measures {
        let n = m.nobs as f64;
        let kc = m.k_constant as f64;
        let df_model = m.rank as f64 - kc;
        let df_resid = n - m.rank as f64;
        let tss = if m.k_constant == 1 { m.centered_tss } else { m.uncentered_tss };
        let ess = tss - m.ssr;
        let ssr_f = m.ssr.to_f64();
        let scale = if df_resid > 0.0 { ssr_f / df_resid } else { f64::NAN };
        let rsquared = 1.0 - (m.ssr / tss).to_f64();
        let rsquared_adj = 1.0 - (n - kc) / df_resid * (1.0 - rsquared);
        let mse_model = ess.to_f64() / df_model;
        let mse_total = tss.to_f64() / (df_resid + df_model);
        let fvalue = mse_model / scale;
        let nobs2 = n / 2.0;
        let mut llf = -ssr_f.ln() * nobs2 - (1.0 + (std::f64::consts::PI / nobs2).ln()) * nobs2;
        if weighted {
            llf += 0.5 * m.sum_log_w.to_f64();
        }
        let k_params = df_model + kc;
        Measures {
            df_model,
            df_resid,
            ssr: ssr_f,
            ess: ess.to_f64(),
            scale,
            rsquared,
            rsquared_adj,
            mse_model,
            mse_resid: scale,
            mse_total,
            fvalue,
            f_pvalue: f_sf(fvalue, df_model, df_resid),
            llf,
            aic: -2.0 * llf + 2.0 * k_params,
            bic: -2.0 * llf + n.ln() * k_params,
        }
    }
}

/// statsmodels' notes (in its order and wording) and gramfit's own about
/// the solve: aliasing, an exact fit, no residual degrees of freedom.
pub fn standard_notes(
    k_constant: usize,
    nobs: u64,
    p: usize,
    diagnostics: &Diagnostics,
    sol: &Solution,
    rank: usize,
    df_resid: f64,
) -> (Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    if k_constant == 0 {
        notes.push(
            "R² is computed without centering (uncentered) since the model does not contain a constant.".to_string(),
        );
    }
    notes.push("Standard Errors assume that the covariance matrix of the errors is correctly specified.".to_string());
    if (nobs as usize) < p {
        notes.push("The input rank is higher than the number of observations.".to_string());
    }
    if let Some(n) = diagnostics.statsmodels_note() {
        notes.push(n);
    }
    let mut gramfit_notes = Vec::new();
    for d in &sol.dependencies {
        let what = match sol.policy {
            SingularPolicy::Drop => "aliased and not estimated",
            SingularPolicy::Pinv => "aliased; all coefficients are the minimum-norm solution",
            SingularPolicy::Error => "aliased",
        };
        gramfit_notes.push(format!("{} is {what}: {}", d.column, d.describe()));
    }
    if sol.exact_fit {
        gramfit_notes.push(
            "The model fits the data exactly: the residual sum of squares is zero to double-double precision (reported as 0)."
                .to_string(),
        );
    }
    if df_resid <= 0.0 {
        gramfit_notes.push(format!(
            "There are no residual degrees of freedom (nobs {nobs}, rank {rank}): standard errors, t, p and intervals are undefined."

        ));
    }
    (notes, gramfit_notes)
}

/// Compute every statistic from the normal equations and their solution.
pub fn infer(ne: &NormalEquations, sol: &Solution, opts: &InferenceOptions) -> OlsResults {
    let p = ne.names.len();
    let k = ne.k();
    let nobs = ne.nobs;
    let w = ne.sum_w;
    let cyy = ne.comoment[k * (k + 1) + k];
    let centered_tss = cyy;
    let uncentered_tss = cyy + w * ne.mean[k] * ne.mean[k];

    // A constant in the column space without an explicit intercept counts
    // as one (statsmodels' implicit-constant check): regress the constant on X.
    let k_constant = if ne.intercept {
        1
    } else {
        let off = 0;
        let mut quad = Dd::ZERO;
        for i in 0..p {
            for j in 0..p {
                quad += w * ne.mean[off + i] * sol.normalized_cov[i * p + j] * w * ne.mean[off + j];
            }
        }
        let resid = (w - quad).to_f64() / w.to_f64();
        usize::from(p > 0 && resid.abs() < 1e-9)
    };
    let rank = sol.rank;
    let m = Measures::of(
        MeasureInputs { nobs, ssr: sol.ssr, centered_tss, uncentered_tss, sum_log_w: ne.sum_log_w, rank, k_constant },
        opts.weighted,
    );
    let Measures { df_resid, scale, .. } = m;
    let tq = t_quantile(1.0 - opts.alpha / 2.0, df_resid);
    let mut params = Vec::with_capacity(p);
    let mut bse = Vec::with_capacity(p);
    let mut tvalues = Vec::with_capacity(p);
    let mut pvalues = Vec::with_capacity(p);
    let mut conf_int = Vec::with_capacity(p);
    for i in 0..p {
        let b = sol.params[i].map(|d| d.to_f64());
        params.push(b);
        let se = b.and_then(|_| finite((sol.normalized_cov[i * p + i].to_f64() * scale).max(0.0).sqrt()));
        bse.push(se);
        let t = match (b, se) {
            (Some(b), Some(se)) => Some(b / se),
            _ => None,
        };
        tvalues.push(t.and_then(finite));
        pvalues.push(t.map(|t| 2.0 * t_sf(t.abs(), df_resid)).and_then(finite));
        conf_int.push(match (b, se) {
            (Some(b), Some(se)) if tq.is_finite() => Some((b - tq * se, b + tq * se)),
            _ => None,
        });
    }
    let cov_params = (0..p)
        .map(|i| {
            (0..p)
                .map(|j| {
                    if sol.params[i].is_none() || sol.params[j].is_none() {
                        None
                    } else {
                        finite(sol.normalized_cov[i * p + j].to_f64() * scale)
                    }
                })
                .collect()
        })
        .collect();
    let aliased: Vec<String> = (0..p).filter(|&i| sol.aliased[i]).map(|i| ne.names[i].clone()).collect();
    let diagnostics = Diagnostics::compute(ne, sol, opts.numeric_columns.as_deref());

    let (notes, mut gramfit_notes) = standard_notes(k_constant, nobs, p, &diagnostics, sol, rank, df_resid);
    gramfit_notes.extend(diagnostics.gramfit_notes(&ne.names));

    let mut res = OlsResults {
        model: if opts.weighted { "WLS" } else { "OLS" },
        dep_variable: opts.response.clone(),
        names: ne.names.clone(),
        params,
        bse,
        tvalues,
        pvalues,
        conf_int,
        alpha: opts.alpha,
        cov_params,
        nobs,
        rank,
        k_constant,
        centered_tss: centered_tss.to_f64(),
        uncentered_tss: uncentered_tss.to_f64(),
        aliased,
        dependencies: sol.dependencies.clone(),
        policy: sol.policy,
        diagnostics,
        notes,
        gramfit_notes,
        use_t: true,
        // Nonrobust, no second pass yet.
        ..OlsResults::default()
    };
    res.set_measures(&m);
    res
}

/// Upper tail of the standard normal.
fn norm_sf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)
}

/// statsmodels' robust Wald statistic of `b` with covariance `v` (`q × q`,
/// row-major), as `wald_test` computes it: `bᵀ pinv(V) b / J`, the
/// pseudo-inverse cutting eigenvalues at `1e-15 · |λ|max` (NumPy's `pinv`)
/// and `J` the numerical rank (`matrix_rank`: `|λ|max · q · ε`). A full-rank
/// `V` gives the plain `bᵀV⁻¹b / q`; a singular one (a cluster-robust
/// covariance with fewer clusters than coefficients, a meat with the zero
/// residuals of leverage-one rows) the same number statsmodels reports.
/// Returns `(F, J)`; `None` when `V` is not finite.
fn wald_f(v: &[f64], b: &[f64], q: usize) -> Option<(f64, usize)> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let m = faer::Mat::<f64>::from_fn(q, q, |i, j| 0.5 * (v[i * q + j] + v[j * q + i]));
    let eig = m.self_adjoint_eigen(faer::Side::Lower).ok()?;
    let (u, s) = (eig.U(), eig.S());
    let big = (0..q).map(|k| s[k].abs()).fold(0.0, f64::max);
    if big == 0.0 {
        return None;
    }
    let rank = (0..q).filter(|&k| s[k].abs() > big * q as f64 * f64::EPSILON).count();
    let mut quad = 0.0;
    for k in (0..q).filter(|&k| s[k].abs() > 1e-15 * big) {
        let proj: f64 = (0..q).map(|i| u[(i, k)] * b[i]).sum();
        quad += proj * proj / s[k];
    }
    (rank > 0).then(|| (quad / rank as f64, rank))
}

/// Put a second pass's results into a report: residual diagnostics, and for
/// a robust `cov_type` statsmodels' robust inference (normal reference
/// distribution, robust Wald F with G − 1 denominator df for clusters).
pub fn apply_second_pass(res: &mut OlsResults, snap: &crate::second_pass::ResidualSnapshot) {
    res.residuals = Some(snap.clone());
    let Some(v) = &snap.robust_cov else {
        return;
    };
    let p = res.names.len();
    apply_robust(res, snap, &|i, j| v[i * p + j], true);
}

/// [`apply_second_pass`]'s robust inference with the covariance given
/// entry by entry; `full`: every entry may be asked for (else only the
/// diagonal: no `cov_params`, and no robust F, which needs the whole
/// matrix's pseudo-inverse — a note says so).
pub fn apply_robust(
    res: &mut OlsResults,
    snap: &crate::second_pass::ResidualSnapshot,
    v: &dyn Fn(usize, usize) -> f64,
    full: bool,
) {
    use crate::second_pass::CovType;
    let p = res.names.len();
    res.cov_type = snap.cov_type;
    res.use_t = false;
    let zq =
        statrs::distribution::Normal::new(0.0, 1.0).map(|d| d.inverse_cdf(1.0 - res.alpha / 2.0)).unwrap_or(f64::NAN);
    for i in 0..p {
        let defined = res.params[i].is_some() && !snap.undefined.contains(&i);
        let se = if defined { finite(v(i, i).max(0.0).sqrt()) } else { None };
        res.bse[i] = se;
        let z = match (res.params[i], se) {
            (Some(b), Some(se)) => finite(b / se),
            _ => None,
        };
        res.tvalues[i] = z;
        res.pvalues[i] = z.map(|z| 2.0 * norm_sf(z.abs()));
        res.conf_int[i] = match (res.params[i], se) {
            (Some(b), Some(se)) => Some((b - zq * se, b + zq * se)),
            _ => None,
        };
        for j in (0..p).filter(|_| full) {
            let dj = res.params[j].is_some() && !snap.undefined.contains(&j);
            res.cov_params[i][j] = if defined && dj { finite(v(i, j)) } else { None };
        }
    }
    // Robust Wald F of all coefficients but the constant.
    let idx: Vec<usize> =
        (0..p).filter(|&i| res.params[i].is_some() && !(res.k_constant == 1 && res.names[i] == "Intercept")).collect();
    let implicit_const = res.k_constant == 1 && !res.names.iter().any(|n| n == "Intercept");
    let q = idx.len();
    if !full {
        res.gramfit_notes.push(format!(
            "The robust F-statistic of the {q} coefficients is not computed (it needs their whole {} covariance's pseudo-inverse); each coefficient's robust standard error, z and p are.",
            snap.cov_type.name()
        ));
    }
    let (f, df2, df1) = if !full || implicit_const || q == 0 || idx.iter().any(|i| snap.undefined.contains(i)) {
        (f64::NAN, f64::NAN, q)
    } else {
        let sub: Vec<f64> = idx.iter().flat_map(|&i| idx.iter().map(move |&j| v(i, j))).collect();
        let b: Vec<f64> = idx.iter().map(|&i| res.params[i].unwrap_or(0.0)).collect();
        let df2 = if snap.cov_type == CovType::Cluster { snap.n_clusters as f64 - 1.0 } else { res.df_resid };
        match wald_f(&sub, &b, q) {
            Some((f, rank)) => {
                if rank < q {
                    res.gramfit_notes.push(format!(
                        "The {} covariance of the {q} slopes has rank {rank}: the F-statistic uses its pseudo-inverse and {rank} numerator degrees of freedom, as statsmodels does.",
                        snap.cov_type.name()
                    ));
                }
                (f, df2, rank)
            }
            None => (f64::NAN, f64::NAN, q),
        }
    };
    res.fvalue = f;
    res.f_pvalue = f_sf(f, df1 as f64, df2);
    for n in res.notes.iter_mut() {
        if n == CovType::Nonrobust.description() {
            *n = snap.cov_type.description().to_string();
        }
    }
    if !snap.undefined.is_empty() {
        let names: Vec<&str> = snap.undefined.iter().map(|&i| res.names[i].as_str()).collect();
        res.gramfit_notes.push(format!(
            "{} is undefined for {}: {} observation(s) have leverage 1 (a category with a single row), so their residual carries no information about its variance.",
            snap.cov_type.name(),
            names.join(", "),
            snap.leverage_one
        ));
    }
}

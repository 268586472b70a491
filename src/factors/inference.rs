//! Standard errors of an absorbed fit, with pyfixest's and fixest's
//! small-sample corrections (pyfixest `utils.get_ssc`, default `ssc()`:
//! `k_adj = True`, `k_fixef = "nonnested"`, `G_adj = True`).
//!
//! With `N` rows (singletons removed), `k` estimated slopes and `K_fe`
//! levels over `F` absorbed factors, the fixed effects count
//! `K_fe − (F − 1)` parameters, and `df_k = k + K_fe − (F − 1)`:
//!
//! - `iid` (the default of pyfixest ≥ 0.29 and fixest ≥ 0.13):
//!   `σ² (X̃ᵀWX̃)⁻¹`, `σ² = SSR / (N − df_k)`, t with `N − df_k` degrees;
//! - `HC1` (pyfixest's `hetero`): the sandwich times `N / (N − df_k)`;
//!   `HC0`: the plain sandwich; t with `N − df_k` degrees;
//! - `cluster` (CRV1): the sandwich over cluster score sums times
//!   `(N − 1)/(N − df_k) · G/(G − 1)`, where a factor whose every level
//!   lies within one cluster is not counted (its `L` levels leave `df_k`,
//!   one is kept); t with `G − 1` degrees.

use super::within::WithinFit;
use crate::results::{t_quantile, t_sf};
use crate::second_pass::CovType;

/// The covariance of the slopes, and what it was computed from.
#[derive(Clone, Debug)]
pub enum AbsorbedCov {
    Iid,
    /// `HC0` or `HC1`, with the meat `Σ s sᵀ`.
    Hetero {
        cov: CovType,
        meat: Vec<f64>,
    },
    /// CRV1 with the meat over `groups` clusters of `column`, and which
    /// absorbed factors are nested in the clusters.
    Cluster {
        column: String,
        groups: usize,
        meat: Vec<f64>,
        nested: Vec<bool>,
    },
}

/// An absorbed fit's inference, with pyfixest's names where it has them.
#[derive(Clone, Debug)]
pub struct AbsorbedResults {
    pub dep_variable: String,
    /// The slopes' names.
    pub names: Vec<String>,
    pub params: Vec<Option<f64>>,
    pub bse: Vec<Option<f64>>,
    pub tvalues: Vec<Option<f64>>,
    pub pvalues: Vec<Option<f64>>,
    pub conf_int: Vec<Option<(f64, f64)>>,
    pub alpha: f64,
    /// `k × k`, `None` on aliased rows and columns.
    pub cov_params: Vec<Vec<Option<f64>>>,
    /// Rows used (singletons removed).
    pub nobs: u64,
    pub singletons: u64,
    /// Per absorbed column: levels left, and levels removed as singletons.
    pub fixed_effects: Vec<(String, usize, usize)>,
    /// Parameters counted by the small-sample correction, and the degrees
    /// of freedom of the t reference.
    pub df_k: f64,
    pub df_t: f64,
    /// The covariance's small-sample factor.
    pub ssc: f64,
    pub ssr: f64,
    /// `√(SSR / N)`.
    pub rmse: f64,
    pub rsquared: f64,
    pub rsquared_within: f64,
    pub cov_type: CovType,
    /// The cluster column and its number of clusters (`cluster` only).
    pub cluster: Option<(String, usize)>,
    pub aliased: Vec<String>,
    pub dependencies: Vec<String>,
    pub notes: Vec<String>,
}

impl AbsorbedResults {
    /// The covariance's name as pyfixest prints it (`iid`, `hetero`,
    /// `CRV1`).
    pub fn inference(&self) -> String {
        match (&self.cov_type, &self.cluster) {
            (CovType::Cluster, Some((c, _))) => format!("CRV1 by {c}"),
            (CovType::Hc1, _) => "hetero (HC1)".into(),
            (CovType::Hc0, _) => "HC0".into(),
            _ => "iid".into(),
        }
    }
}

/// `B M B` for symmetric `k × k` matrices.
fn sandwich(b: &[f64], m: &[f64], k: usize) -> Vec<f64> {
    let mut bm = vec![0.0; k * k];
    for i in 0..k {
        for l in 0..k {
            let v = b[i * k + l];
            if v != 0.0 {
                for j in 0..k {
                    bm[i * k + j] += v * m[l * k + j];
                }
            }
        }
    }
    let mut out = vec![0.0; k * k];
    for i in 0..k {
        for l in 0..k {
            let v = bm[i * k + l];
            if v != 0.0 {
                for j in 0..k {
                    out[i * k + j] += v * b[l * k + j];
                }
            }
        }
    }
    out
}

/// Inference for a solved within fit.
pub fn infer_absorbed(fit: &WithinFit, cov: &AbsorbedCov, alpha: f64, response: &str) -> AbsorbedResults {
    let sol = &fit.sol;
    let k = fit.ne.k();
    let n = fit.ne.nobs as f64;
    let rank = sol.rank as f64;
    let k_fe: usize = fit.factors.iter().map(|f| f.levels.len()).sum();
    let n_fe = fit.factors.len();
    let k_fe_adj = (k_fe + 1 - n_fe.max(1)) as f64;
    let ssr = sol.ssr.to_f64();
    let bread: Vec<f64> = sol.normalized_cov.iter().map(|d| d.to_f64()).collect();
    let (cov_type, df_k, df_t, ssc, v, cluster) = match cov {
        AbsorbedCov::Iid => {
            let df_k = rank + k_fe_adj;
            let s2 = ssr / (n - df_k);
            (CovType::Nonrobust, df_k, n - df_k, 1.0, bread.iter().map(|b| b * s2).collect::<Vec<_>>(), None)
        }
        AbsorbedCov::Hetero { cov, meat } => {
            let df_k = rank + k_fe_adj;
            let ssc = if *cov == CovType::Hc1 { n / (n - df_k) } else { 1.0 };
            let v = sandwich(&bread, meat, k).iter().map(|x| x * ssc).collect();
            (*cov, df_k, n - df_k, ssc, v, None)
        }
        AbsorbedCov::Cluster { column, groups, meat, nested } => {
            let nested_levels: usize =
                fit.factors.iter().zip(nested).filter(|(_, &n)| n).map(|(f, _)| f.levels.len()).sum();
            let n_nested = nested.iter().filter(|&&n| n).count();
            let df_k = rank + k_fe_adj - nested_levels as f64 + n_nested as f64;
            let g = *groups as f64;
            let ssc = (n - 1.0) / (n - df_k) * g / (g - 1.0);
            let v = sandwich(&bread, meat, k).iter().map(|x| x * ssc).collect();
            (CovType::Cluster, df_k, g - 1.0, ssc, v, Some((column.clone(), *groups)))
        }
    };
    let q = t_quantile(1.0 - alpha / 2.0, df_t);
    let mut res = AbsorbedResults {
        dep_variable: response.to_string(),
        names: fit.ne.names.clone(),
        params: Vec::with_capacity(k),
        bse: Vec::with_capacity(k),
        tvalues: Vec::with_capacity(k),
        pvalues: Vec::with_capacity(k),
        conf_int: Vec::with_capacity(k),
        alpha,
        cov_params: (0..k)
            .map(|i| (0..k).map(|j| (!sol.aliased[i] && !sol.aliased[j]).then(|| v[i * k + j])).collect())
            .collect(),
        nobs: fit.ne.nobs,
        singletons: fit.singletons,
        fixed_effects: fit.factors.iter().map(|f| (f.column.clone(), f.levels.len(), f.singleton_levels)).collect(),
        df_k,
        df_t,
        ssc,
        ssr,
        rmse: (ssr / n).sqrt(),
        rsquared: 1.0 - ssr / fit.centered_tss.to_f64(),
        rsquared_within: 1.0 - ssr / fit.ne.comoment[(k + 1) * (k + 1) - 1].to_f64(),
        cov_type,
        cluster,
        aliased: Vec::new(),
        dependencies: sol
            .dependencies
            .iter()
            .filter(|d| !fit.collinear_with_levels.iter().any(|&j| fit.ne.names[j] == d.column))
            .map(|d| d.describe())
            .collect(),
        notes: Vec::new(),
    };
    for i in 0..k {
        let b = sol.params[i].map(|d| d.to_f64());
        let se = b.map(|_| v[i * k + i].sqrt());
        let t = b.zip(se).map(|(b, s)| b / s);
        res.params.push(b);
        if fit.collinear_with_levels.contains(&i) {
            res.notes.push(format!(
                "{} is constant within the absorbed levels (collinear with the fixed effects): not estimated.",
                fit.ne.names[i]
            ));
        }
        res.bse.push(se);
        res.tvalues.push(t);
        res.pvalues.push(t.map(|t| 2.0 * t_sf(t.abs(), df_t)));
        res.conf_int.push(b.zip(se).map(|(b, s)| (b - q * s, b + q * s)));
        if sol.aliased[i] {
            res.aliased.push(fit.ne.names[i].clone());
        }
    }
    res
}

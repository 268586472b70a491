//! Collinearity diagnostics from the state.
//!
//! * `eigenvals`: of `XᵀWX` for the raw design (intercept column included),
//!   as statsmodels reports them, computed as the squared singular values of
//!   the Cholesky factor `R` (`RᵀR = XᵀWX`). Working on `R` rather than on
//!   `XᵀX` keeps the small eigenvalues accurate relative to `σ_max·ε`, as an
//!   SVD of `X` would, instead of `λ_max·ε`. Singular values at or below
//!   `p·ε·σ_max` are numerically zero: the eigenvalue is reported as 0 and the
//!   design as singular, never as a negative number from rounding.
//! * `condition_number = sqrt(λ_max / λ_min)` (statsmodels).
//! * a scale-free condition number: the same on the correlation matrix of the
//!   non-intercept columns (unit-length columns without an intercept), so
//!   that units alone (square feet next to a 0/1 flag) do not raise alarms;
//! * variance inflation factors `1 / (1 − R²_j)` of each column on the others
//!   (centered when the model has an intercept, as statsmodels'
//!   `variance_inflation_factor` with a constant in `exog`);
//! * Belsley, Kuh & Welsch (1980), *Regression Diagnostics*, ch. 3: condition
//!   indices `η_k = σ_max/σ_k` of the column-equilibrated design and the
//!   variance-decomposition proportions `π_jk = (v_jk²/σ_k²) / Σ_k v_jk²/σ_k²`;
//! * the correlation matrix of all non-intercept design columns and y.

use crate::solve::{NormalEquations, Solution};
use faer::{Mat, Side};

/// Threshold on a condition index above which Belsley et al. speak of
/// strong dependencies; also used for the scale-free condition number.
pub const BKW_THRESHOLD: f64 = 30.0;
/// VIFs above this are reported (the common rule of thumb).
pub const VIF_THRESHOLD: f64 = 10.0;
/// Past this many design columns a design with factors is "wide": its
/// eigenvalues, condition numbers, Belsley–Kuh–Welsch decomposition and
/// correlations are of its numeric block (the intercept and the columns
/// of terms without a factor) — the full ones cost O(p³) and are about
/// the dummies — and the reports leave out the O(p²) blocks.
pub const WIDE_DESIGN_COLUMNS: usize = 300;

#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// Descending; numerically zero ones are exactly 0.
    pub eigenvals: Vec<f64>,
    pub condition_number: f64,
    pub singular: bool,
    pub scale_free_condition_number: f64,
    /// Per design column (`None` for the intercept and aliased columns).
    pub vif: Vec<Option<f64>>,
    /// Descending singular values order: `η_k`.
    pub condition_indices: Vec<f64>,
    /// `variance_proportions[k][j]`: share of Var(β_j) tied to dimension k.
    pub variance_proportions: Vec<Vec<f64>>,
    /// Names for the correlation matrix (non-intercept columns, then y).
    pub corr_names: Vec<String>,
    pub correlation: Vec<Vec<Option<f64>>>,
    /// For a wide design (see [`WIDE_DESIGN_COLUMNS`]): the number of
    /// columns of the numeric block the figures above are of.
    pub numeric_block: Option<usize>,
}

fn svd_values(a: &Mat<f64>) -> Vec<f64> {
    a.singular_values().unwrap_or_default()
}

impl Diagnostics {
    /// `numeric[i]`: design column i (the intercept first) belongs to no
    /// factor; past [`WIDE_DESIGN_COLUMNS`] columns with factors, only
    /// those columns enter the eigenvalues, condition numbers, BKW and
    /// correlations (`None`: always all columns).
    pub fn compute(ne: &NormalEquations, sol: &Solution, numeric: Option<&[bool]>) -> Diagnostics {
        let p = ne.names.len();
        let k = ne.k();
        let off = usize::from(ne.intercept);
        let mut d = Diagnostics::default();
        if p == 0 {
            return d;
        }
        let wide = numeric.filter(|m| p > WIDE_DESIGN_COLUMNS && m.len() == p && m.iter().any(|&n| !n));
        // The columns the figures are of.
        let cols: Vec<usize> = match wide {
            Some(m) => (0..p).filter(|&i| m[i]).collect(),
            None => (0..p).collect(),
        };
        d.numeric_block = wide.map(|_| cols.len());
        // XᵀX restricted to `cols` is R[:, cols]ᵀ R[:, cols].
        let r = Mat::<f64>::from_fn(p, cols.len(), |i, c| sol.r_factor[i * p + cols[c]]);
        let sv = svd_values(&r);
        let smax = sv.first().copied().unwrap_or(0.0);
        let tiny = p as f64 * f64::EPSILON * smax;
        d.eigenvals = sv.iter().map(|&s| if s <= tiny { 0.0 } else { s * s }).collect();
        let lmin = d.eigenvals.last().copied().unwrap_or(0.0);
        d.singular = lmin == 0.0;
        d.condition_number = if d.singular { f64::INFINITY } else { (d.eigenvals[0] / lmin).sqrt() };

        // Scale-free: correlation (or unit-length) matrix of x columns.
        let entry = |i: usize, j: usize| ne.entry(i, j).to_f64();
        let xs: Vec<usize> = cols.iter().filter(|&&i| i >= off).map(|&i| i - off).collect();
        let kx = xs.len();
        if kx > 0 {
            let corr = Mat::<f64>::from_fn(kx, kx, |i, j| {
                let (i, j) = (xs[i], xs[j]);
                let (a, b) = (entry(i, i), entry(j, j));
                if a > 0.0 && b > 0.0 {
                    entry(i, j) / (a.sqrt() * b.sqrt())
                } else {
                    0.0
                }
            });
            let ev = corr.self_adjoint_eigenvalues(Side::Lower).unwrap_or_default();
            let (lo, hi) = (ev.first().copied().unwrap_or(0.0), ev.last().copied().unwrap_or(0.0));
            d.scale_free_condition_number =
                if lo <= kx as f64 * f64::EPSILON * hi || cols.iter().any(|&i| sol.aliased[i]) {
                    f64::INFINITY
                } else {
                    (hi / lo).sqrt()
                };
        }

        // VIF from the scaled inverse: (S⁻¹)_jj · … = A_jj (A⁻¹)_jj.
        d.vif = (0..p)
            .map(|i| {
                if i < off || sol.aliased[i] || sol.params[i].is_none() {
                    None
                } else {
                    let j = i - off;
                    // The x-block of the full inverse is the inverse of the
                    // matrix the solve used (centered with an intercept).
                    Some(entry(j, j) * sol.normalized_cov[i * p + i].to_f64())
                }
            })
            .collect();

        // Belsley–Kuh–Welsch on the equilibrated full design (non-aliased).
        let keep: Vec<usize> = cols.iter().copied().filter(|&i| !sol.aliased[i]).collect();
        let q = keep.len();
        if q > 0 {
            let norms: Vec<f64> =
                keep.iter().map(|&j| (0..p).map(|i| sol.r_factor[i * p + j].powi(2)).sum::<f64>().sqrt()).collect();
            let eq = Mat::<f64>::from_fn(p, q, |i, c| {
                let v = sol.r_factor[i * p + keep[c]];
                if norms[c] > 0.0 {
                    v / norms[c]
                } else {
                    0.0
                }
            });
            if let Ok(svd) = eq.thin_svd() {
                let s: Vec<f64> = (0..q).map(|i| svd.S().column_vector()[i]).collect();
                let v = svd.V();
                let smax = s.first().copied().unwrap_or(0.0);
                d.condition_indices = s.iter().map(|&x| if x > 0.0 { smax / x } else { f64::INFINITY }).collect();
                let mut phi = vec![vec![0.0; q]; q]; // phi[k][j]
                for j in 0..q {
                    let mut total = 0.0;
                    for kk in 0..q {
                        let val = if s[kk] > 0.0 { v[(j, kk)].powi(2) / s[kk].powi(2) } else { 0.0 };
                        phi[kk][j] = val;
                        total += val;
                    }
                    for row in phi.iter_mut() {
                        if total > 0.0 {
                            row[j] /= total;
                        }
                    }
                }
                d.variance_proportions = phi;
            }
        }

        // Correlations of x columns and y, from the centered co-moments.
        let m = k + 1;
        // The x columns of `cols`, then y.
        let ys: Vec<usize> = xs.iter().copied().chain([k]).collect();
        d.corr_names = ys.iter().map(|&i| if i == k { "y".to_string() } else { ne.names[i + off].clone() }).collect();
        d.correlation = ys
            .iter()
            .map(|&i| {
                ys.iter()
                    .map(|&j| {
                        let c = |a: usize, b: usize| ne.comoment[a * m + b].to_f64();
                        let (a, b) = (c(i, i), c(j, j));
                        (a > 0.0 && b > 0.0).then(|| c(i, j) / (a.sqrt() * b.sqrt()))
                    })
                    .collect()
            })
            .collect();
        d
    }

    /// The note statsmodels prints, with its thresholds and wording.
    pub fn statsmodels_note(&self) -> Option<String> {
        let lmin = *self.eigenvals.last()?;
        if lmin < 1e-10 {
            Some(format!(
                "The smallest eigenvalue is {}. This might indicate that there are\nstrong multicollinearity problems or that the design matrix is singular.",
                crate::numfmt::fmt_g(lmin, 0, 3, false)
            ))
        } else if self.condition_number > 1000.0 {
            Some(format!(
                "The condition number is large, {}. This might indicate that there are\nstrong multicollinearity or other numerical problems.",
                crate::numfmt::fmt_g(self.condition_number, 0, 3, false)
            ))
        } else {
            None
        }
    }

    /// gramfit's additions: singularity said plainly, scale-free condition
    /// number and VIFs when they warn.
    pub fn gramfit_notes(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.numeric_block {
            out.push(format!(
                "A wide design ({} columns, with factors): the eigenvalues, condition numbers, condition indices, variance proportions and correlations are those of its {n} numeric columns (the intercept and the terms without a factor), not of every column (past {WIDE_DESIGN_COLUMNS} columns, or with a factor estimated by blocks).",
                names.len()
            ));
        }
        if self.singular {
            out.push(
                "The smallest eigenvalue of XᵀX is zero to working precision (below p·ε·λmax): the design matrix is singular."
                    .to_string(),
            );
        }
        if self.scale_free_condition_number.is_finite() && self.scale_free_condition_number > BKW_THRESHOLD {
            out.push(format!(
                "The scale-free condition number (standardized columns) is {:.1}, above {BKW_THRESHOLD}: the predictors are strongly collinear, not just in different units.",
                self.scale_free_condition_number
            ));
        } else if self.condition_number > 1000.0 && self.scale_free_condition_number.is_finite() {
            out.push(format!(
                "The scale-free condition number (standardized columns) is {:.1}: the large raw condition number comes from the columns' units, not from collinearity.",
                self.scale_free_condition_number
            ));
        }
        let high: Vec<String> = self
            .vif
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|&v| v > VIF_THRESHOLD).map(|v| format!("{} {:.1}", names[i], v)))
            .collect();
        // A factor of many levels can put thousands here: the first few
        // are named, the report's `vif` has them all.
        const NAMED: usize = 12;
        if high.len() > NAMED {
            out.push(format!(
                "Variance inflation factors above {VIF_THRESHOLD}: {}, and {} more columns (every VIF is in the JSON report).",
                high[..NAMED].join(", "),
                high.len() - NAMED
            ));
        } else if !high.is_empty() {
            out.push(format!("Variance inflation factors above {VIF_THRESHOLD}: {}.", high.join(", ")));
        }
        out
    }
}

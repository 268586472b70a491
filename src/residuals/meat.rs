//! The meats of the heteroskedasticity-robust covariances (White 1980;
//! MacKinnon & White 1985) — `Σ e²·x xᵀ`, `Σ e²/(1−h)·x xᵀ`,
//! `Σ e²/(1−h)²·x xᵀ` with leverage `h = xᵀ(XᵀX)⁻¹x` — and the sandwich
//! that turns a meat (or the cluster scores) into the covariance of β.

use super::ResidualStats;
use crate::second_pass::{CovType, SecondPassSpec};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

impl ResidualStats {
    /// The meat of `cov` (HC0/HC1, HC2 or HC3), lower triangle, including
    /// any still pending as pattern sums (a unit's accumulator before it
    /// is merged).
    pub fn meat(&self, cov: CovType) -> Vec<f64> {
        let mut m = match cov {
            CovType::Hc2 => &self.meat2,
            CovType::Hc3 => &self.meat3,
            _ => &self.meat0,
        }
        .clone();
        // The in-place pass may hold part of it as pattern sums.
        self.add_pending_meat_to(cov, &mut m);
        m
    }

    /// Coefficients (design indices) with no HC2/HC3 standard error.
    pub fn undefined_hc23(&self) -> Vec<usize> {
        (0..self.nonzero_ordinary.len())
            .filter(|&j| self.nonzero_leverage_one[j] > 0 && self.nonzero_ordinary[j] == 0)
            .collect()
    }
}

pub(super) fn add_mat(a: &mut Vec<f64>, b: &[f64]) {
    if a.is_empty() {
        *a = b.to_vec();
    } else if !b.is_empty() {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
}

/// `meat += (diag(s) X)ᵀ (diag(s) X)` (lower triangle), by gemm.
pub(super) fn accumulate_meat(meat: &mut [f64], x: &Mat<f64>, s: &[f64], p: usize, nr: usize) {
    let mut xs = Mat::<f64>::zeros(nr, p);
    for j in 0..p {
        let src = x.col(j).try_as_col_major().expect("contiguous column").as_slice();
        let dst = xs.col_mut(j).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
        for ((d, a), w) in dst.iter_mut().zip(src).zip(s) {
            *d = a * w;
        }
    }
    let mut g = Mat::<f64>::zeros(p, p);
    matmul(g.as_mut(), Accum::Replace, xs.transpose(), xs.as_ref(), 1.0, Par::Seq);
    for i in 0..p {
        for j in 0..=i {
            meat[i * p + j] += g[(i, j)];
        }
    }
}

/// The robust covariance of β (`p × p`), statsmodels' conventions: the
/// sandwich (XᵀX)⁻¹ M (XᵀX)⁻¹; HC1 scales by n/(n−k); cluster by
/// G/(G−1)·(n−1)/(n−k).
pub fn robust_cov(st: &ResidualStats, spec: &SecondPassSpec, cov: CovType, df_resid: f64) -> Option<Vec<f64>> {
    if st.n == 0 || st.meat0.is_empty() {
        return None;
    }
    let p = spec.params.len();
    let full = |m: &[f64]| -> Vec<f64> {
        let mut f = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..=i {
                f[i * p + j] = m[i * p + j];
                f[j * p + i] = m[i * p + j];
            }
        }
        f
    };
    let n = st.n as f64;
    let (meat, factor) = match cov {
        CovType::Nonrobust => return None,
        CovType::Hc0 | CovType::Hc2 | CovType::Hc3 => (full(&st.meat(cov)), 1.0),
        CovType::Hc1 => (full(&st.meat(cov)), n / df_resid),
        CovType::Cluster => {
            let mut m = vec![0.0; p * p];
            for s in st.clusters.values() {
                for i in 0..p {
                    for j in 0..p {
                        m[i * p + j] += s[i] * s[j];
                    }
                }
            }
            let g = st.clusters.len() as f64;
            let k = n - df_resid;
            (m, g / (g - 1.0) * (n - 1.0) / (n - k))
        }
    };
    let b = &spec.xtx_inv;
    let mut out = square_product(&square_product(b, &meat, p), b, p);
    out.iter_mut().for_each(|v| *v *= factor);
    Some(out)
}

/// `a · b` for row-major `p × p` matrices (small: the sandwich only).
fn square_product(a: &[f64], b: &[f64], p: usize) -> Vec<f64> {
    let mut out = vec![0.0; p * p];
    for i in 0..p {
        for l in 0..p {
            let ail = a[i * p + l];
            for j in 0..p {
                out[i * p + j] += ail * b[l * p + j];
            }
        }
    }
    out
}

//! The second pass over a chunk's design block, as built for the first
//! pass: every model, weights, derived terms, any CPU. Residuals
//! `e = √w (y − x β)` on the whitened scale (statsmodels' `wresid`), then
//! what the covariance asks for, by gemm on the whitened block.

use super::meat::accumulate_meat;
use super::ResidualStats;
use crate::design::{categorical_column, DesignBuilder, DesignError};
use crate::level::{ColumnKey, Level};
use crate::second_pass::{CovType, SecondPassSpec};
use arrow::array::RecordBatch;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use std::collections::HashMap;

impl ResidualStats {
    /// Add a chunk by its design block (the path every chunk can take).
    pub(super) fn add_chunk_general(
        &mut self,
        builder: &DesignBuilder,
        spec: &SecondPassSpec,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let block = builder.block(chunk, at)?;
        let p = spec.params.len();
        self.ensure(p);
        let pos: HashMap<&ColumnKey, usize> = block.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let y = pos[&ColumnKey::Response];
        let off = usize::from(spec.design.intercept);
        // Which block columns make up each design column.
        let parts: Vec<Vec<usize>> =
            spec.design.columns.iter().map(|c| c.cells.iter().filter_map(|k| pos.get(k).copied()).collect()).collect();
        // Clusters of the kept rows (rows dropped for missing values are
        // dropped from the clusters too).
        let cluster_levels: Option<(Vec<u32>, Vec<Level>)> = match &spec.cluster {
            Some(c) => Some(categorical_column(chunk, c)?),
            None => None,
        };
        let kept: Vec<usize> = block.kept.clone().unwrap_or_else(|| (0..block.rows_in).collect());
        let nr = block.nrows();
        if nr == 0 {
            return Ok(());
        }
        // The chunk's design matrix, whitened (√w x), column-major; columns
        // are filled as contiguous slices so the loops vectorise.
        let sw: Vec<f64> = match &block.weights {
            Some(w) => w.iter().map(|v| v.sqrt()).collect(),
            None => vec![1.0; nr],
        };
        let mut x = Mat::<f64>::zeros(nr, p);
        {
            if off == 1 {
                let c0 = x.col_mut(0).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
                c0.copy_from_slice(&sw);
            }
            for (j, cols) in parts.iter().enumerate() {
                let cj = x.col_mut(off + j).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
                for &c in cols {
                    for (v, h) in cj.iter_mut().zip(block.col(c)) {
                        *v += h;
                    }
                    if let Some(lo) = &block.lo[c] {
                        for (v, l) in cj.iter_mut().zip(lo.iter()) {
                            *v += l;
                        }
                    }
                }
                if block.weights.is_some() {
                    for (v, s) in cj.iter_mut().zip(&sw) {
                        *v *= s;
                    }
                }
            }
        }
        let xcol = |j: usize| -> &[f64] { x.col(j).try_as_col_major().expect("contiguous column").as_slice() };
        // Residuals e = √w (y − x β).
        let mut e: Vec<f64> = (0..nr).map(|r| sw[r] * block.value(y, r)).collect();
        for j in 0..p {
            let b = spec.params[j];
            if b != 0.0 {
                for (er, xv) in e.iter_mut().zip(xcol(j)) {
                    *er -= b * xv;
                }
            }
        }
        self.add_residuals(&e);
        let need_leverage = matches!(spec.cov, CovType::Hc2 | CovType::Hc3);
        let need_meat0 = matches!(spec.cov, CovType::Hc0 | CovType::Hc1);
        if need_meat0 {
            accumulate_meat(&mut self.meat0, &x, &e, p, nr);
        }
        if !need_leverage {
            if let Some((codes, table)) = &cluster_levels {
                self.add_clusters(codes, table, &kept, &x, &e, p, nr);
            }
            return Ok(());
        }
        // Leverages h = diag(X B Xᵀ).
        let mut b = Mat::<f64>::zeros(p, p);
        for i in 0..p {
            for j in 0..p {
                b[(i, j)] = spec.xtx_inv[i * p + j];
            }
        }
        let mut xb = Mat::<f64>::zeros(nr, p);
        matmul(xb.as_mut(), Accum::Replace, x.as_ref(), b.as_ref(), 1.0, Par::Seq);
        let mut h = vec![0.0; nr];
        for j in 0..p {
            let xbj = xb.col(j).try_as_col_major().expect("contiguous column").as_slice();
            for ((hv, a), c) in h.iter_mut().zip(xbj).zip(xcol(j)) {
                *hv += a * c;
            }
        }
        let mut s2 = vec![0.0; nr];
        let mut s3 = vec![0.0; nr];
        let mut lev_one = vec![false; nr];
        for r in 0..nr {
            let one_minus_h = 1.0 - h[r];
            if one_minus_h <= 1e-10 {
                self.leverage_one += 1;
                lev_one[r] = true;
            } else {
                s2[r] = e[r] / one_minus_h.sqrt();
                s3[r] = e[r] / one_minus_h;
            }
        }
        for j in 0..p {
            for (r, &v) in xcol(j).iter().enumerate() {
                if v != 0.0 {
                    if lev_one[r] {
                        self.nonzero_leverage_one[j] += 1;
                    } else {
                        self.nonzero_ordinary[j] += 1;
                    }
                }
            }
        }
        if spec.cov == CovType::Hc2 {
            accumulate_meat(&mut self.meat2, &x, &s2, p, nr);
        } else {
            accumulate_meat(&mut self.meat3, &x, &s3, p, nr);
        }
        Ok(())
    }
}

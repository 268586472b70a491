//! The columns every kind of model writes from a row's mean and its
//! variance: the intervals, and the residuals when the response is in the
//! input.

use super::Interval;
use crate::design::{DesignBuilder, DesignError, MissingPolicy};
use crate::formula::{Factor, FactorKind, ModelSpec};
use arrow::array::RecordBatch;
use std::sync::Arc;

/// What turns a row's mean and its variance into the output columns: the
/// fit's scale, the interval quantile, and the response and the weights
/// evaluated alone (rows missing them get null residuals or observation
/// intervals, nothing else).
pub struct Tail {
    scale: f64,
    /// The interval quantile (t or normal).
    q: f64,
    pub(super) y: Option<DesignBuilder>,
    w: Option<DesignBuilder>,
}

/// A spec of `response` alone (no terms): evaluates one expression.
fn single(response: Factor) -> Arc<ModelSpec> {
    let formula = format!("{} ~ 0", response.name);
    Arc::new(ModelSpec { formula, response, factors: Vec::new(), terms: Vec::new(), intercept: false })
}

impl Tail {
    /// `spec` the fit's model (its response), `weights` its weights
    /// expression, `scale` its residual variance, `q` the interval
    /// quantile; `with_response` / `with_weights`: the inputs hold their
    /// columns.
    pub fn new(
        spec: &ModelSpec,
        weights: Option<&str>,
        scale: f64,
        q: f64,
        with_response: bool,
        with_weights: bool,
    ) -> Tail {
        let y = with_response.then(|| DesignBuilder::new(single(spec.response.clone()), None, MissingPolicy::Drop));
        let w = weights.filter(|_| with_weights).and_then(|w| {
            let e = crate::design::weights_expr(w).ok()?;
            Some(DesignBuilder::new(
                single(Factor { name: w.to_string(), kind: FactorKind::Numeric(e) }),
                None,
                MissingPolicy::Drop,
            ))
        });
        Tail { scale, q, y, w }
    }

    /// The quantile of `1 − alpha/2`: Student's t with `df_resid` degrees
    /// of freedom, or the normal one (`use_t` false, as statsmodels for a
    /// robust covariance).
    pub fn quantile(alpha: f64, use_t: bool, df_resid: f64) -> f64 {
        let p = 1.0 - alpha / 2.0;
        if use_t {
            crate::results::t_quantile(p, df_resid)
        } else {
            statrs::distribution::ContinuousCDF::inverse_cdf(
                &statrs::distribution::Normal::new(0.0, 1.0).expect("the standard normal"),
                p,
            )
        }
    }

    pub(super) fn add_columns(&self, cols: &mut Vec<String>) {
        for b in self.y.iter().chain(&self.w) {
            for c in b.source_columns() {
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
        }
    }

    /// The output columns of a chunk's rows from their means (NaN where
    /// not predicted) and the means' variances (`var`: without it, no
    /// interval and `resid` alone), in `column_names` order. Each column
    /// is made in one sweep, the mean and the variance's buffers becoming
    /// `mean` and `mean_se`: a chunk's columns are several times the
    /// cache, and every extra pass over them is paid in memory traffic.
    pub(super) fn fill(
        &self,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
        interval: Interval,
        mean: Vec<f64>,
        var: Option<Vec<f64>>,
    ) -> Result<Vec<Vec<f64>>, DesignError> {
        let n = chunk.num_rows();
        // Weights and response, by row of the chunk: the block's own
        // column when it kept every row in one word.
        let by_row = |b: &DesignBuilder| -> Result<Vec<f64>, DesignError> {
            let blk = b.block(chunk, at)?;
            match &blk.kept {
                None if blk.lo[0].is_none() => Ok(blk.col(0).to_vec()),
                kept => {
                    let mut v = vec![f64::NAN; n];
                    let rows: Vec<usize> = kept.clone().unwrap_or_else(|| (0..n).collect());
                    for (i, &r) in rows.iter().enumerate() {
                        v[r] = blk.value(0, i);
                    }
                    Ok(v)
                }
            }
        };
        let w = self.w.as_ref().map(by_row).transpose()?;
        let y = self.y.as_ref().map(by_row).transpose()?;
        // Column by column, without a branch per row (a row that is not
        // predicted has a NaN mean, and NaN flows into each of its
        // columns): loops the compiler vectorises.
        let (q, scale) = (self.q, self.scale);
        // The mean's standard error (NaN where not predicted), in place of
        // the variance, and, where a column needs it, the observation's,
        // `√(scale/w + se²)`.
        let se: Option<Vec<f64>> = var.map(|mut v| {
            for (v, m) in v.iter_mut().zip(&mean) {
                *v = if m.is_nan() { f64::NAN } else { v.max(0.0).sqrt() };
            }
            v
        });
        let needs_obs = interval == Interval::Prediction || y.is_some();
        let obs_sd: Option<Vec<f64>> = se.as_ref().filter(|_| needs_obs).map(|se| match &w {
            Some(w) => {
                se.iter().zip(w).map(|(s, &wr)| if wr > 0.0 { (scale / wr + s * s).sqrt() } else { f64::NAN }).collect()
            }
            None => se.iter().map(|s| (scale + s * s).sqrt()).collect(),
        });
        let band =
            |sd: &[f64], sign: f64| -> Vec<f64> { mean.iter().zip(sd).map(|(m, s)| m + sign * (q * s)).collect() };
        let mut cols = Vec::with_capacity(8);
        if interval != Interval::None {
            let se = se.expect("intervals come with the means' variances");
            let (lo, hi) = (band(&se, -1.0), band(&se, 1.0));
            cols.extend([se, lo, hi]);
        }
        if interval == Interval::Prediction {
            let sd = obs_sd.as_deref().expect("the observations' spread");
            cols.extend([band(sd, -1.0), band(sd, 1.0)]);
        }
        if let Some(y) = y {
            let resid: Vec<f64> = y.iter().zip(&mean).map(|(y, m)| y - m).collect();
            let standardized = obs_sd.map(|sd| resid.iter().zip(&sd).map(|(e, sd)| e / sd).collect());
            cols.push(resid);
            cols.extend(standardized);
        }
        // `mean` last, as the columns above read it.
        cols.insert(0, mean);
        debug_assert!(cols.iter().all(|c| c.len() == n));
        Ok(cols)
    }
}

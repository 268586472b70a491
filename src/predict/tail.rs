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
    /// interval and `resid` alone).
    pub(super) fn fill(
        &self,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
        interval: Interval,
        mean: &[f64],
        var: Option<&[f64]>,
        cols: &mut [Vec<f64>],
    ) -> Result<(), DesignError> {
        let n = chunk.num_rows();
        // Weights and response, by row of the chunk.
        let by_row = |b: &DesignBuilder| -> Result<Vec<f64>, DesignError> {
            let blk = b.block(chunk, at)?;
            let mut v = vec![f64::NAN; n];
            let rows: Vec<usize> = blk.kept.clone().unwrap_or_else(|| (0..n).collect());
            for (i, &r) in rows.iter().enumerate() {
                v[r] = blk.value(0, i);
            }
            Ok(v)
        };
        let w = self.w.as_ref().map(by_row).transpose()?;
        let y = self.y.as_ref().map(by_row).transpose()?;
        // Column by column, without a branch per row (a row that is not
        // predicted has a NaN mean, and NaN flows into each of its
        // columns): loops the compiler vectorises.
        let (q, scale) = (self.q, self.scale);
        let mut out = cols.iter_mut();
        let mut next = || out.next().expect("a column per output name").as_mut_slice();
        next()[..n].copy_from_slice(&mean[..n]);
        // The mean's standard error (NaN where not predicted) and, where a
        // column needs it, the observation's, `√(scale/w + se²)`.
        let se: Option<Vec<f64>> = var
            .map(|v| mean.iter().zip(v).map(|(m, v)| if m.is_nan() { f64::NAN } else { v.max(0.0).sqrt() }).collect());
        let needs_obs = interval == Interval::Prediction || y.is_some();
        let obs_sd: Option<Vec<f64>> = se.as_ref().filter(|_| needs_obs).map(|se| match &w {
            Some(w) => {
                se.iter().zip(w).map(|(s, &wr)| if wr > 0.0 { (scale / wr + s * s).sqrt() } else { f64::NAN }).collect()
            }
            None => se.iter().map(|s| (scale + s * s).sqrt()).collect(),
        });
        let band = |lo: &mut [f64], hi: &mut [f64], sd: &[f64]| {
            for (((l, h), m), s) in lo.iter_mut().zip(hi.iter_mut()).zip(mean).zip(sd) {
                *l = m - q * s;
                *h = m + q * s;
            }
        };
        if interval != Interval::None {
            let se = se.as_deref().expect("intervals come with the means' variances");
            next()[..n].copy_from_slice(se);
            let (lo, hi) = (next(), next());
            band(lo, hi, se);
        }
        if interval == Interval::Prediction {
            let (lo, hi) = (next(), next());
            band(lo, hi, obs_sd.as_deref().expect("the observations' spread"));
        }
        if let Some(y) = &y {
            let resid = next();
            for ((e, y), m) in resid.iter_mut().zip(y).zip(mean) {
                *e = y - m;
            }
            if let Some(obs_sd) = &obs_sd {
                let resid: &[f64] = resid;
                for ((z, e), sd) in next().iter_mut().zip(resid).zip(obs_sd) {
                    *z = e / sd;
                }
            }
        }
        Ok(())
    }
}

//! A plain fit's model: each row's design columns (as the fit built them),
//! its mean `xᵀβ` and the variance `xᵀVx` from the fit's covariance.

use super::moments::Moments;
use super::tail::Tail;
use super::{column_names, missing_error, unseen_error, Computed, Interval, Residuals, RowPolicy};
use crate::design::{categorical_column, DesignBuilder, DesignError, MissingPolicy};
use crate::formula::columns::Design;
use crate::formula::ModelSpec;
use crate::level::{ColumnKey, Level};
use crate::results::OlsResults;
use arrow::array::RecordBatch;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// One fitted model, ready to predict rows.
pub struct Model {
    /// The design of predictors (a constant response, no weights: rows are
    /// dropped only for a missing predictor).
    x: DesignBuilder,
    design: Design,
    /// β per design column (0 for an aliased one) and the active columns'
    /// covariance (`active.len()²`, row-major).
    beta: Vec<f64>,
    active: Vec<usize>,
    /// The covariance of the active columns as the kernel reads it: per
    /// active column `a`, `V_aa`, then `V_ab + V_ba` for each `b < a`.
    pairs: Vec<f64>,
    /// Per categorical factor: its column and the levels the fit saw.
    categorical: Vec<(String, BTreeSet<Level>)>,
    tail: Tail,
}

impl Model {
    /// The model of a fit: `spec` resolved as it was fitted, `results` its
    /// inference (with a second pass applied when its covariance is
    /// wanted), `levels` the levels the fit saw per factor; `with_response`
    /// / `with_weights`: the inputs hold their columns.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: &Arc<ModelSpec>,
        weights: Option<&str>,
        design: Design,
        results: &OlsResults,
        levels: &[BTreeSet<Level>],
        with_response: bool,
        with_weights: bool,
        missing: MissingPolicy,
    ) -> Model {
        let x = DesignBuilder::new(Arc::new(spec.without_response()), None, missing);
        let beta: Vec<f64> = results.params.iter().map(|b| b.unwrap_or(0.0)).collect();
        let active: Vec<usize> = (0..beta.len()).filter(|&j| results.params[j].is_some()).collect();
        let v = |i: usize, j: usize| results.cov_params[active[i]][active[j]].unwrap_or(0.0);
        let mut pairs = Vec::with_capacity(active.len() * (active.len() + 1) / 2);
        for a in 0..active.len() {
            pairs.push(v(a, a));
            pairs.extend((0..a).map(|b| v(a, b) + v(b, a)));
        }
        let categorical = spec.categorical_levels(levels);
        let q = Tail::quantile(results.alpha, results.use_t, results.df_resid);
        let tail = Tail::new(spec, weights, results.scale, q, with_response, with_weights);
        Model { x, design, beta, active, pairs, categorical, tail }
    }

    /// Source columns the model reads.
    pub fn source_columns(&self) -> Vec<String> {
        let mut cols = self.x.source_columns();
        self.tail.add_columns(&mut cols);
        cols
    }
}

impl Model {
    /// Predictions for the rows of `chunk` (NaN where null).
    pub(super) fn compute(
        &self,
        chunk: &RecordBatch,
        interval: Interval,
        policy: RowPolicy,
        at: &dyn Fn(usize) -> String,
    ) -> Result<Computed, DesignError> {
        let n = chunk.num_rows();
        let residuals = if self.tail.y.is_some() { Residuals::Standardized } else { Residuals::None };
        let mut out = Computed::default();
        let block = self.x.block(chunk, at)?;
        let kept: Vec<usize> = block.kept.clone().unwrap_or_else(|| (0..n).collect());
        if policy.missing_error && kept.len() < n {
            let r = (0..n).find(|r| kept.binary_search(r).is_err()).unwrap_or(0);
            return Err(missing_error(r, at));
        }
        out.missing = (n - kept.len()) as u64;
        // Rows with a level the fit never saw.
        let mut unseen = vec![false; n];
        for (column, seen) in &self.categorical {
            let (codes, table) = categorical_column(chunk, column)?;
            let new: Vec<bool> = table.iter().map(|l| !seen.contains(l)).collect();
            for &r in &kept {
                let c = codes[r];
                if c != u32::MAX && new[c as usize] && !unseen[r] {
                    if policy.unseen_error {
                        return Err(unseen_error(column, &table[c as usize].to_string(), r, at));
                    }
                    unseen[r] = true;
                    *out.unseen.entry(format!("{column} = {}", table[c as usize])).or_insert(0) += 1;
                }
            }
        }
        // The design columns of the kept rows (each the sum of its cells).
        let nk = kept.len();
        let pos: HashMap<&ColumnKey, usize> = block.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        // A column of one cell without a low word is the block's own
        // column; others are summed (0 + h = h: the same values).
        let ones = vec![1.0f64; if self.design.intercept { nk } else { 0 }];
        let mut x: Vec<Cow<'_, [f64]>> = Vec::with_capacity(self.beta.len());
        if self.design.intercept {
            x.push(Cow::Borrowed(&ones[..]));
        }
        for c in &self.design.columns {
            let present: Vec<usize> = c.cells.iter().filter_map(|cell| pos.get(cell).copied()).collect();
            match present[..] {
                [b] if block.lo[b].is_none() => x.push(Cow::Borrowed(block.col(b))),
                _ => {
                    let mut col = vec![0.0f64; nk];
                    for &b in &present {
                        col.iter_mut().zip(block.col(b)).for_each(|(v, h)| *v += h);
                        if let Some(lo) = &block.lo[b] {
                            col.iter_mut().zip(lo.iter()).for_each(|(v, l)| *v += l);
                        }
                    }
                    x.push(Cow::Owned(col));
                }
            }
        }
        let want_se = interval != Interval::None || residuals != Residuals::None;
        let m = Moments { x: &x, nk, beta: &self.beta, active: &self.active, pairs: &self.pairs };
        // Per row of the chunk (NaN where not predicted): computed in place
        // when every row is predicted, else scattered.
        let var_len = if want_se { n } else { 0 };
        let (mean_row, var_row) = if nk == n && !unseen.contains(&true) {
            let (mut mean, mut var) = (vec![0.0f64; n], vec![0.0f64; var_len]);
            m.mean_var(&mut mean, want_se.then_some(&mut var[..]));
            (mean, var)
        } else {
            let (mut mean_row, mut var_row) = (vec![f64::NAN; n], vec![f64::NAN; var_len]);
            let (mut mean, mut var) = (vec![0.0f64; nk], vec![0.0f64; if want_se { nk } else { 0 }]);
            m.mean_var(&mut mean, want_se.then_some(&mut var[..]));
            for (i, &r) in kept.iter().enumerate() {
                if !unseen[r] {
                    mean_row[r] = mean[i];
                    if want_se {
                        var_row[r] = var[i];
                    }
                }
            }
            (mean_row, var_row)
        };
        out.cols = self.tail.fill(chunk, at, interval, mean_row, want_se.then_some(var_row))?;
        debug_assert_eq!(out.cols.len(), column_names(interval, residuals).len());
        Ok(out)
    }
}

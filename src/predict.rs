//! Predictions from a saved fit: each input row through the fit's design
//! (the same formula, levels, coding and reading options), as statsmodels'
//! `get_prediction(exog).summary_frame(alpha)` gives them.
//!
//! For a row `x` (its design columns, aliased ones left out): `mean = xᵀβ`,
//! `mean_se = √(xᵀ V x)` with `V` the fit's covariance of β (the robust
//! one when the state holds a second pass), `mean ± q·mean_se` the
//! confidence interval and `mean ± q·√(scale/w + mean_se²)` the interval
//! for an observation of weight `w` (the weights expression on the row; 1
//! without it or in an OLS fit); `q` is Student's t with the fit's residual
//! degrees of freedom, or the normal quantile for a robust covariance (as
//! statsmodels' `use_t`). With the response in the input, `resid = y −
//! mean` and `resid_std = resid / √(scale/w + mean_se²)`.
//!
//! A row with a missing predictor, or a level of a categorical the fit
//! never saw, gets nulls and is counted; `unseen_error` / `missing_error`
//! refuse such rows instead. Each row's numbers depend on that row alone,
//! so the output is the same bits whatever the thread count.

use crate::accumulator::ChunkSink;
use crate::design::{categorical_column, DesignBuilder, DesignError, MissingPolicy};
use crate::formula::columns::Design;
use crate::formula::{Factor, FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use crate::results::OlsResults;
use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Which intervals to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// `mean` only.
    None,
    /// `mean`, `mean_se`, `mean_ci_lower`, `mean_ci_upper`.
    Confidence,
    /// Those and `obs_ci_lower`, `obs_ci_upper` (statsmodels' six columns).
    Prediction,
}

/// What to do with a row that cannot be predicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RowPolicy {
    /// A level of a categorical the fit never saw: refuse (else null).
    pub unseen_error: bool,
    /// A missing predictor: refuse (else null).
    pub missing_error: bool,
}

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

/// What turns a row's mean and its variance into the output columns: the
/// fit's scale, the interval quantile, and the response and the weights
/// evaluated alone (rows missing them get null residuals or observation
/// intervals, nothing else).
pub struct Tail {
    scale: f64,
    /// The interval quantile (t or normal).
    q: f64,
    y: Option<DesignBuilder>,
    w: Option<DesignBuilder>,
}

/// A spec of `response` alone (no terms): evaluates one expression.
fn single(response: Factor) -> Arc<ModelSpec> {
    let formula = format!("{} ~ 0", response.name);
    Arc::new(ModelSpec { formula, response, factors: Vec::new(), terms: Vec::new(), intercept: false })
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

    fn add_columns(&self, cols: &mut Vec<String>) {
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
    fn fill(
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
        for (r, &m) in mean.iter().enumerate() {
            if m.is_nan() {
                continue;
            }
            let mut c = 0;
            cols[c][r] = m;
            c += 1;
            let se = var.map_or(f64::NAN, |v| v[r].max(0.0).sqrt());
            let wr = w.as_ref().map_or(1.0, |w| w[r]);
            let obs_sd = if wr > 0.0 { (self.scale / wr + se * se).sqrt() } else { f64::NAN };
            if interval != Interval::None {
                cols[c][r] = se;
                cols[c + 1][r] = m - self.q * se;
                cols[c + 2][r] = m + self.q * se;
                c += 3;
            }
            if interval == Interval::Prediction {
                cols[c][r] = m - self.q * obs_sd;
                cols[c + 1][r] = m + self.q * obs_sd;
                c += 2;
            }
            if let Some(y) = &y {
                let e = y[r] - m;
                cols[c][r] = e;
                if var.is_some() {
                    cols[c + 1][r] = e / obs_sd;
                }
            }
        }
        Ok(())
    }
}

/// The error for a row with a level the fit never saw, under
/// `--unseen-level error`.
fn unseen_error(column: &str, level: &str, row: usize, at: &dyn Fn(usize) -> String) -> DesignError {
    DesignError::NoColumn {
        column: format!(
            "{column} (level {level} at {}, which the fit never saw; --unseen-level null predicts such rows as null)",
            at(row)
        ),
    }
}

/// The error for a row with a missing predictor, under `--missing error`.
fn missing_error(row: usize, at: &dyn Fn(usize) -> String) -> DesignError {
    DesignError::Missing { column: "a predictor".into(), row, at: at(row) }
}

/// The design columns of a chunk's kept rows (each `nk` long) and what a
/// prediction needs of the fit.
struct Moments<'a> {
    x: &'a [Cow<'a, [f64]>],
    nk: usize,
    beta: &'a [f64],
    active: &'a [usize],
    /// Per active column `a`: `V_aa`, then `V_ab + V_ba` for each `b < a`.
    pairs: &'a [f64],
}

/// Rows a kernel step keeps in registers: enough independent sums to
/// hide the adds' latency (each row's terms are one dependent chain).
const LANES: usize = 32;

impl Moments<'_> {
    /// `mean = x β` and, with `var`, `xᵀ V x` per row (written, not added).
    fn mean_var(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        #[cfg(gramfit_x86)]
        if crate::isa::Avx512::get().is_some() {
            // SAFETY: the token proves AVX-512F.
            return unsafe { self.mean_var_avx512(mean, var) };
        }
        #[cfg(gramfit_x86)]
        if crate::isa::Avx2::get().is_some() {
            // SAFETY: the token proves AVX2.
            return unsafe { self.mean_var_avx2(mean, var) };
        }
        self.mean_var_body(mean, var)
    }

    /// The same code compiled for 256-bit vectors: element-wise products
    /// and sums in the same order (no FMA), so the same bits.
    #[cfg(gramfit_x86)]
    #[target_feature(enable = "avx2")]
    unsafe fn mean_var_avx2(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        self.mean_var_body(mean, var)
    }

    /// And for 512-bit vectors (a step's 32 rows in four registers).
    #[cfg(gramfit_x86)]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn mean_var_avx512(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        self.mean_var_body(mean, var)
    }

    /// `LANES` rows at a time, their sums in registers: each row's mean
    /// as `Σ_j β_j x_j` in column order, its variance as `Σ_a (V_aa x_a
    /// x_a + Σ_{b<a} (V_ab + V_ba) x_a x_b)` in that order — a fixed
    /// order per row, so any tiling (and any thread count) gives the same
    /// bits.
    #[inline(always)]
    fn mean_var_body(&self, mean: &mut [f64], mut var: Option<&mut [f64]>) {
        let (nk, k) = (self.nk, self.active.len());
        let full = nk - nk % LANES;
        let lanes = |j: usize, r: usize| -> [f64; LANES] { self.x[j][r..r + LANES].try_into().expect("LANES rows") };
        for r in (0..full).step_by(LANES) {
            let mut m = [0.0f64; LANES];
            for (j, &b) in self.beta.iter().enumerate() {
                if b != 0.0 {
                    let x = lanes(j, r);
                    for i in 0..LANES {
                        m[i] += b * x[i];
                    }
                }
            }
            mean[r..r + LANES].copy_from_slice(&m);
            let Some(var) = var.as_deref_mut() else { continue };
            let mut v = [0.0f64; LANES];
            let mut pair = self.pairs.iter();
            for a in 0..k {
                let xa = lanes(self.active[a], r);
                let d = *pair.next().expect("a pair");
                for i in 0..LANES {
                    v[i] += d * xa[i] * xa[i];
                }
                for b in 0..a {
                    let c = *pair.next().expect("a pair");
                    if c != 0.0 {
                        let xb = lanes(self.active[b], r);
                        for i in 0..LANES {
                            v[i] += c * xa[i] * xb[i];
                        }
                    }
                }
            }
            var[r..r + LANES].copy_from_slice(&v);
        }
        for r in full..nk {
            let mut m = 0.0f64;
            for (j, &b) in self.beta.iter().enumerate() {
                if b != 0.0 {
                    m += b * self.x[j][r];
                }
            }
            mean[r] = m;
            let Some(var) = var.as_deref_mut() else { continue };
            let mut v = 0.0f64;
            let mut pair = self.pairs.iter();
            for a in 0..k {
                let xa = self.x[self.active[a]][r];
                v += *pair.next().expect("a pair") * xa * xa;
                for b in 0..a {
                    let c = *pair.next().expect("a pair");
                    if c != 0.0 {
                        v += c * xa * self.x[self.active[b]][r];
                    }
                }
            }
            var[r] = v;
        }
    }
}

/// The computed columns of one chunk: per output column, a value per row
/// (NaN where null), and the tallies of rows that could not be predicted.
#[derive(Default)]
struct Computed {
    cols: Vec<Vec<f64>>,
    unseen: BTreeMap<String, u64>,
    missing: u64,
}

/// Which residual columns to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residuals {
    /// The response is not in the input.
    None,
    /// `resid` alone: an absorbed fit gives no variance of its means.
    Raw,
    /// `resid` and `resid_std`.
    Standardized,
}

/// The output column names for `interval` and `residuals`.
pub fn column_names(interval: Interval, residuals: Residuals) -> Vec<&'static str> {
    let mut v = vec!["mean"];
    if interval != Interval::None {
        v.extend(["mean_se", "mean_ci_lower", "mean_ci_upper"]);
    }
    if interval == Interval::Prediction {
        v.extend(["obs_ci_lower", "obs_ci_upper"]);
    }
    match residuals {
        Residuals::None => {}
        Residuals::Raw => v.push("resid"),
        Residuals::Standardized => v.extend(["resid", "resid_std"]),
    }
    v
}

impl Model {
    /// Predictions for the rows of `chunk` (NaN where null).
    fn compute(
        &self,
        chunk: &RecordBatch,
        interval: Interval,
        policy: RowPolicy,
        at: &dyn Fn(usize) -> String,
    ) -> Result<Computed, DesignError> {
        let n = chunk.num_rows();
        let residuals = if self.tail.y.is_some() { Residuals::Standardized } else { Residuals::None };
        let ncols = column_names(interval, residuals).len();
        let mut out = Computed { cols: vec![vec![f64::NAN; n]; ncols], ..Computed::default() };
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
        let (mut mean_row, mut var_row) = (vec![f64::NAN; n], vec![f64::NAN; if want_se { n } else { 0 }]);
        if nk == n && !unseen.contains(&true) {
            m.mean_var(&mut mean_row, want_se.then_some(&mut var_row[..]));
        } else {
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
        }
        self.tail.fill(chunk, at, interval, &mean_row, want_se.then_some(&var_row[..]), &mut out.cols)?;
        Ok(out)
    }
}

/// How to predict: the model (one, or one per level of a grouping
/// column), the columns to carry over, the intervals.
pub struct Plan {
    pub models: Models,
    pub keep: Vec<String>,
    pub interval: Interval,
    pub policy: RowPolicy,
    pub residuals: Residuals,
    /// The output schema: the kept columns (their types in the input),
    /// then the computed ones (Float64).
    pub schema: SchemaRef,
    /// A Parquet output's encoder: each work unit's rows are encoded as a
    /// row group on the thread that computed them.
    pub encoder: Option<crate::output::ParquetEncoder>,
}

/// One model, or a model per group.
pub enum Models {
    One(Box<Model>),
    ByGroup {
        column: String,
        models: BTreeMap<Level, Model>,
    },
    /// An absorbed fit's means, or a fit by blocks' (with their
    /// variances).
    Absorbed {
        model: Box<crate::factors::AbsorbedModel>,
        tail: Box<Tail>,
    },
}

impl Plan {
    /// The output schema for `keep` columns of `input` (a schema holding
    /// them) and the computed columns.
    pub fn schema(
        input: &Schema,
        keep: &[String],
        interval: Interval,
        residuals: Residuals,
    ) -> Result<SchemaRef, String> {
        let mut fields = Vec::new();
        for k in keep {
            let f = input.field_with_name(k).map_err(|_| format!("--keep: no column named '{k}' in the input"))?;
            let t = match f.data_type() {
                DataType::Dictionary(_, v) => v.as_ref().clone(),
                t => t.clone(),
            };
            fields.push(Field::new(k, t, true));
        }
        for c in column_names(interval, residuals) {
            fields.push(Field::new(c, DataType::Float64, true));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Every column the plan reads.
    pub fn source_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        let mut add = |c: String| {
            if !cols.contains(&c) {
                cols.push(c);
            }
        };
        match &self.models {
            Models::One(m) => m.source_columns().into_iter().for_each(&mut add),
            Models::ByGroup { column, models } => {
                add(column.clone());
                models.values().flat_map(Model::source_columns).for_each(&mut add);
            }
            Models::Absorbed { model, tail } => {
                let mut cols = model.source_columns();
                tail.add_columns(&mut cols);
                cols.into_iter().for_each(&mut add)
            }
        }
        self.keep.iter().cloned().for_each(add);
        cols
    }

    /// The output batch of one chunk, and its tallies.
    fn predict(&self, chunk: &RecordBatch, at: &dyn Fn(usize) -> String) -> Result<Predicted, DesignError> {
        let n = chunk.num_rows();
        let ncols = column_names(self.interval, self.residuals).len();
        let computed = match &self.models {
            Models::One(m) => m.compute(chunk, self.interval, self.policy, at)?,
            Models::Absorbed { model, tail } => {
                let p = model.compute(chunk, at)?;
                if let Some(r) = p.first_missing.filter(|_| self.policy.missing_error) {
                    return Err(missing_error(r, at));
                }
                if let Some((column, level, r)) = p.first_unseen.filter(|_| self.policy.unseen_error) {
                    return Err(unseen_error(&column, &level, r, at));
                }
                let mut cols = vec![vec![f64::NAN; n]; ncols];
                tail.fill(chunk, at, self.interval, &p.mean, p.var.as_deref(), &mut cols)?;
                Computed { cols, unseen: p.unseen, missing: p.missing }
            }
            Models::ByGroup { column, models } => {
                let mut all = Computed { cols: vec![vec![f64::NAN; n]; ncols], ..Computed::default() };
                let (codes, table) = categorical_column(chunk, column)?;
                for (code, level) in table.iter().enumerate() {
                    let rows: Vec<usize> = (0..n).filter(|&r| codes[r] == code as u32).collect();
                    let Some(model) = models.get(level) else {
                        *all.unseen.entry(format!("{column} = {level} (no model)")).or_insert(0) += rows.len() as u64;
                        continue;
                    };
                    let idx = arrow::array::UInt32Array::from(rows.iter().map(|&r| r as u32).collect::<Vec<u32>>());
                    let sub = arrow::compute::take_record_batch(chunk, &idx)
                        .map_err(|e| DesignError::NoColumn { column: format!("{column} ({e})") })?;
                    let part = model.compute(&sub, self.interval, self.policy, &|r| at(rows[r]))?;
                    for (c, col) in part.cols.iter().enumerate() {
                        for (i, &r) in rows.iter().enumerate() {
                            all.cols[c][r] = col[i];
                        }
                    }
                    for (k, v) in part.unseen {
                        *all.unseen.entry(k).or_insert(0) += v;
                    }
                    all.missing += part.missing;
                }
                let without = codes.iter().filter(|&&c| c == u32::MAX).count() as u64;
                if without > 0 {
                    *all.unseen.entry(format!("{column} missing (no model)")).or_insert(0) += without;
                }
                all
            }
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for k in &self.keep {
            let a = chunk.column_by_name(k).ok_or_else(|| DesignError::NoColumn { column: k.clone() })?;
            let a = match a.data_type() {
                DataType::Dictionary(_, v) => {
                    arrow::compute::cast(a, v).map_err(|e| DesignError::NoColumn { column: format!("{k} ({e})") })?
                }
                _ => Arc::clone(a),
            };
            arrays.push(a);
        }
        for col in computed.cols {
            let nulls = (!col.iter().all(|v| v.is_finite()))
                .then(|| NullBuffer::new(BooleanBuffer::collect_bool(col.len(), |i| col[i].is_finite())));
            arrays.push(Arc::new(Float64Array::new(col.into(), nulls)));
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| DesignError::NoColumn { column: format!("output ({e})") })?;
        let rows = batch.num_rows() as u64;
        Ok(Predicted { batches: vec![batch], encoded: None, rows, unseen: computed.unseen, missing: computed.missing })
    }
}

/// The predictions of a run of chunks, in order, and their tallies.
pub struct Predicted {
    pub batches: Vec<RecordBatch>,
    /// The batches encoded as a Parquet row group (then `batches` is empty).
    pub encoded: Option<Result<crate::output::EncodedRowGroup, String>>,
    pub rows: u64,
    /// Rows not predicted for a level the fit never saw (by `column =
    /// level`), or for want of a group's model.
    pub unseen: BTreeMap<String, u64>,
    /// Rows not predicted for a missing predictor.
    pub missing: u64,
}

/// What the engine folds chunks into: a plan's predictions (for a
/// Parquet output, encoded chunk by chunk into the unit's row group).
pub struct PredictSink {
    plan: Arc<Plan>,
    pub out: Predicted,
    group: Option<crate::output::RowGroupEncoder>,
    failed: Option<String>,
}

impl PredictSink {
    pub fn new(plan: Arc<Plan>) -> PredictSink {
        PredictSink {
            plan,
            out: Predicted { batches: Vec::new(), encoded: None, rows: 0, unseen: BTreeMap::new(), missing: 0 },
            group: None,
            failed: None,
        }
    }
}

impl ChunkSink for PredictSink {
    fn add_chunk(
        &mut self,
        _builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let p = self.plan.predict(chunk, at)?;
        match &self.plan.encoder {
            Some(enc) if self.failed.is_none() => {
                let group = match self.group.take() {
                    Some(g) => Ok(g),
                    None => enc.begin(),
                };
                let written = group.and_then(|mut g| p.batches.iter().try_for_each(|b| g.write(b)).map(|()| g));
                match written {
                    Ok(g) => self.group = Some(g),
                    Err(e) => self.failed = Some(e),
                }
            }
            Some(_) => {}
            None => self.out.batches.extend(p.batches),
        }
        self.out.rows += p.rows;
        for (k, v) in p.unseen {
            *self.out.unseen.entry(k).or_insert(0) += v;
        }
        self.out.missing += p.missing;
        Ok(())
    }
    fn merge(&mut self, other: &Self) {
        self.out.batches.extend(other.out.batches.iter().cloned());
        self.out.rows += other.out.rows;
        for (k, v) in &other.out.unseen {
            *self.out.unseen.entry(k.clone()).or_insert(0) += v;
        }
        self.out.missing += other.out.missing;
    }
    fn rows(&self) -> (u64, u64) {
        (self.out.rows, 0)
    }
    /// The end of a work unit: its rows encoded as a row group, when the
    /// output is Parquet.
    fn finish(&mut self) {
        if let Some(e) = self.failed.take() {
            self.out.encoded = Some(Err(e));
        } else if let Some(g) = self.group.take() {
            self.out.encoded = Some(g.finish());
        }
    }
}

/// The engine's builder for a prediction pass: it reads `columns` (none
/// of them as bits: kept columns come out as they were), the response
/// only if `columns` names it.
pub fn reading_builder(spec: &ModelSpec, columns: Vec<String>) -> DesignBuilder {
    let mut b = DesignBuilder::new(Arc::new(spec.without_response()), None, MissingPolicy::Drop);
    b.extra_columns = columns;
    b
}

/// Whether every input schema holds all of `columns`.
pub fn all_have(schemas: &[Option<SchemaRef>], columns: &[String]) -> bool {
    schemas.iter().all(|s| s.as_ref().is_some_and(|s| columns.iter().all(|c| s.index_of(c).is_ok())))
}

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
//!
//! Layout: [`Model`] a plain fit's model (its kernel in `moments`), the
//! absorbed and block fits' models in [`crate::factors::AbsorbedModel`],
//! and [`Tail`] the intervals and residuals they all write from a row's
//! mean and variance; [`Plan`] picks the model per row (one, or a grouped
//! fit's per group) and [`PredictSink`] is what the engine folds chunks
//! into.

use crate::accumulator::ChunkSink;
use crate::design::{categorical_column, DesignBuilder, DesignError, MissingPolicy};
use crate::formula::ModelSpec;
use crate::level::Level;
use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::collections::BTreeMap;
use std::sync::Arc;

mod model;
mod moments;
mod tail;

pub use model::Model;
pub use tail::Tail;

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

    /// The columns read for what they are, never as bits: the kept ones,
    /// and those whose values are levels (the group column, the absorbed
    /// factors).
    pub fn as_read_columns(&self) -> Vec<String> {
        let mut cols = self.keep.clone();
        match &self.models {
            Models::One(_) => {}
            Models::ByGroup { column, .. } => cols.push(column.clone()),
            Models::Absorbed { model, .. } => cols.extend(model.columns.iter().cloned()),
        }
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
                let cols = tail.fill(chunk, at, self.interval, p.mean, p.var)?;
                Computed { cols, unseen: p.unseen, missing: p.missing }
            }
            Models::ByGroup { column, models } => {
                let mut all = Computed { cols: vec![vec![f64::NAN; n]; ncols], ..Computed::default() };
                let (codes, table) = categorical_column(chunk, column)?;
                // The rows of each group, in one sweep.
                let mut by_code: Vec<Vec<usize>> = vec![Vec::new(); table.len()];
                let mut without = Vec::new();
                for (r, &c) in codes.iter().enumerate() {
                    match by_code.get_mut(c as usize) {
                        Some(rows) => rows.push(r),
                        None => without.push(r),
                    }
                }
                if let Some(&r) = without.first().filter(|_| self.policy.missing_error) {
                    return Err(DesignError::Missing { column: column.clone(), row: r, at: at(r) });
                }
                for (rows, level) in by_code.iter().zip(&table).filter(|(rows, _)| !rows.is_empty()) {
                    let Some(model) = models.get(level) else {
                        if self.policy.unseen_error {
                            return Err(DesignError::NoColumn {
                                column: format!(
                                    "{column} (level {level} at {}, which no state of the grouped fit has; --unseen-level null predicts such rows as null)",
                                    at(rows[0])
                                ),
                            });
                        }
                        *all.unseen.entry(format!("{column} = {level} (no model)")).or_insert(0) += rows.len() as u64;
                        continue;
                    };
                    let idx = arrow::array::UInt32Array::from(rows.iter().map(|&r| r as u32).collect::<Vec<u32>>());
                    let sub = arrow::compute::take_record_batch(chunk, &idx)
                        .map_err(|e| DesignError::arrow("taking a group's rows", column, e))?;
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
                if !without.is_empty() {
                    *all.unseen.entry(format!("{column} missing (no model)")).or_insert(0) += without.len() as u64;
                }
                all
            }
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for k in &self.keep {
            let a = chunk.column_by_name(k).ok_or_else(|| DesignError::NoColumn { column: k.clone() })?;
            let a = match a.data_type() {
                DataType::Dictionary(_, v) => {
                    arrow::compute::cast(a, v).map_err(|e| DesignError::arrow("decoding a kept column", k, e))?
                }
                _ => Arc::clone(a),
            };
            arrays.push(a);
        }
        let cols = computed.cols;
        let nulls = validity(&cols);
        for (col, nulls) in cols.into_iter().zip(nulls) {
            arrays.push(Arc::new(Float64Array::new(col.into(), nulls)));
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| DesignError::arrow("building the output rows", &self.keep.join(", "), e))?;
        let rows = batch.num_rows() as u64;
        Ok(Predicted { batches: vec![batch], encoded: None, rows, unseen: computed.unseen, missing: computed.missing })
    }
}

/// Each column's validity: a non-finite value is null. The columns are
/// null where `mean` (the first) is, mostly: a column with the same
/// finite rows shares its buffer, found by a comparison that vectorises
/// (no early exit inside a block of rows), and a bitmap is built 64 rows
/// a word — not a closure call per row.
fn validity(cols: &[Vec<f64>]) -> Vec<Option<NullBuffer>> {
    let bitmap = |col: &[f64]| {
        let words: Vec<u64> = col
            .chunks(64)
            .map(|c| c.iter().enumerate().fold(0u64, |w, (i, v)| w | (u64::from(v.is_finite()) << i)))
            .collect();
        Some(NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(words), 0, col.len()))).filter(|b| b.null_count() > 0)
    };
    let same_rows = |a: &[f64], b: &[f64]| {
        a.chunks(512)
            .zip(b.chunks(512))
            .all(|(a, b)| a.iter().zip(b).fold(true, |same, (x, y)| same & (x.is_finite() == y.is_finite())))
    };
    let Some(first) = cols.first().map(|c| bitmap(c)) else { return Vec::new() };
    cols.iter()
        .enumerate()
        .map(|(j, col)| if j == 0 || same_rows(col, &cols[0]) { first.clone() } else { bitmap(col) })
        .collect()
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

/// The engine's builder for a prediction pass: it reads `columns`, the
/// response only if `columns` names it. The model's numeric columns may
/// come as bits (a 0/1 column's pages read straight into a bitmap; the
/// design reads bits as 0 and 1), except those in `as_read`: kept columns
/// come out as they were, and a group's or an absorbed factor's column is
/// read for its levels.
pub fn reading_builder(spec: &ModelSpec, columns: Vec<String>, as_read: &[String]) -> DesignBuilder {
    let mut b = DesignBuilder::new(Arc::new(spec.without_response()), None, MissingPolicy::Drop);
    let model = b.spec.source_columns();
    b.extra_columns = columns.into_iter().filter(|c| !model.contains(c) || as_read.contains(c)).collect();
    b
}

/// Whether every input schema holds all of `columns`.
pub fn all_have(schemas: &[Option<SchemaRef>], columns: &[String]) -> bool {
    schemas.iter().all(|s| s.as_ref().is_some_and(|s| columns.iter().all(|c| s.index_of(c).is_ok())))
}

#[cfg(test)]
mod tests {
    use super::validity;
    use proptest::prelude::*;

    proptest! {
        /// Row `r` of a column is null exactly where its value is not
        /// finite, whatever the column's length (partial words and blocks)
        /// and whether its null rows are the first column's.
        #[test]
        fn a_value_is_null_exactly_where_it_is_not_finite(
            rows in 0usize..1200,
            seeds in proptest::collection::vec(any::<u64>(), 1..5),
            share in any::<bool>(),
        ) {
            let special = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
            let cols: Vec<Vec<f64>> = seeds
                .iter()
                .enumerate()
                .map(|(j, &seed)| {
                    let seed = if share && j > 0 { seeds[0] } else { seed };
                    (0..rows as u64)
                        .map(|r| {
                            let h = (r ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
                            if h % 7 == 0 { special[(h % 3) as usize] } else { r as f64 * 0.5 - j as f64 }
                        })
                        .collect()
                })
                .collect();
            let valid = validity(&cols);
            prop_assert_eq!(valid.len(), cols.len());
            for (col, v) in cols.iter().zip(&valid) {
                for (r, x) in col.iter().enumerate() {
                    prop_assert_eq!(v.as_ref().is_none_or(|b| b.is_valid(r)), x.is_finite(), "row {}", r);
                }
            }
        }
    }
}

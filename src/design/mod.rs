//! Arrow batches → blocks of design rows.
//!
//! [`DesignBuilder::block`] evaluates every factor of a [`ModelSpec`] on a
//! `RecordBatch`, column by column: numeric factors become `f64` columns
//! (derived ones — `I(x**10)`, `np.log(x)` — are evaluated in double-double
//! and keep their low words, so `x¹⁰` is not rounded before it is squared);
//! categorical factors become level codes. Rows with a null or NaN in any
//! used column (response, factors, weights) are dropped and counted
//! (patsy's `NA_action="drop"`) or refused (`--missing error`). Infinite
//! values, and non-finite results of a function of finite inputs (a log of
//! zero), are refused with the factor and row named.
//!
//! The block holds the *full* cell expansion of each term (see
//! [`crate::formula::columns`]), keyed by [`ColumnKey`], plus the response.
//!
//! Modules: `block` (the block itself), `eval` (numeric expressions in
//! double-double), `arrays` (Arrow arrays as `f64` with their missing
//! rows), `levels` (categorical columns as level codes), `direct` (the
//! in-place path: the source columns handed to the kernels as they are).

mod arrays;
mod block;
mod direct;
mod eval;
mod levels;

pub use block::{Col, DesignBlock};
pub use direct::{DirectInputs, DirectPart};
pub use eval::weights_expr;
pub use levels::{categorical_column, dictionary_keys, LevelHasher, LevelMap};

use crate::dd::Dd;
use crate::formula::expr::NumExpr;
use crate::formula::{FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use arrays::{numeric_array, runs_of_kept};
use arrow::array::{ArrayRef, RecordBatch};
use block::value_buffer;
use direct::{direct_column, extend_direct, DirectPlan};
use eval::{map_dd, Val};
use levels::describe;
use std::collections::HashMap;
use std::sync::Arc;

/// What to do with rows that have a missing value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MissingPolicy {
    /// Drop rows with a null or NaN in a used column (patsy's default).
    #[default]
    Drop,
    /// Fail on the first such row, naming it.
    Error,
}

/// A problem in the data of one batch; `row` counts from the batch start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesignError {
    #[error("column '{column}' is missing a value at {at} (--missing error)")]
    Missing { column: String, row: usize, at: String },
    #[error("'{factor}' is {value} at {at}; {hint}")]
    NotFinite { factor: String, value: String, row: usize, at: String, hint: String },
    #[error("weight column '{column}' is {value} at {at}; weights must be positive")]
    BadWeight { column: String, value: f64, row: usize, at: String },
    #[error("column '{column}' is not in this input")]
    NoColumn { column: String },
    /// An Arrow kernel failed on columns that are there (selecting,
    /// taking or casting rows; building the output): says what was being
    /// done, never that a column is missing.
    #[error("{doing} ({columns}): {message}")]
    Arrow { doing: &'static str, columns: String, message: String },
    #[error("column '{column}' has type {found}, which cannot be used as {wanted}")]
    BadType { column: String, found: String, wanted: &'static str },
    /// A factor passed its [`DesignBuilder::level_limits`]: the caller
    /// fits it another way (see `crate::factors::estimated`).
    #[error("the factor {name} has more than {limit} levels")]
    ManyLevels { factor: usize, name: String, limit: usize },
}

/// Builds design blocks for one model; cheap to share between workers.
#[derive(Clone, Debug)]
pub struct DesignBuilder {
    pub spec: Arc<ModelSpec>,
    /// The weights as written (a column or a numeric expression such as
    /// `1/(1+min_to_subway)`), and parsed.
    pub weights: Option<String>,
    weights_expr: Option<NumExpr>,
    pub missing: MissingPolicy,
    /// The grouping column of a grouped pass (`by`), read with the model's.
    pub group_by: Option<String>,
    /// Only the rows whose `column` has this level (a grouped state's
    /// group): the others are not read into the sums at all.
    pub only: Option<(String, Level)>,
    /// Columns read for the caller besides the model's (never as bits:
    /// they come out as they are in the input).
    pub extra_columns: Vec<String>,
    /// What a second pass over the residuals needs (β, (XᵀWX)⁻¹, clusters).
    pub second_pass: Option<Arc<crate::second_pass::SecondPassSpec>>,
    /// `(factor, limit)`: a first pass stops with
    /// [`DesignError::ManyLevels`] once a work unit has seen more than
    /// `limit` levels of the factor.
    pub level_limits: Vec<(usize, usize)>,
    /// When every term is one plain numeric column and there are no
    /// weights: the block keys, and the source columns of the response and
    /// the factors in the order [`block`](Self::block) checks them.
    direct: Option<DirectPlan>,
}

impl DesignError {
    /// [`DesignError::Arrow`]: `doing` on `columns` failed with `e`.
    pub fn arrow(doing: &'static str, columns: &str, e: impl std::fmt::Display) -> DesignError {
        DesignError::Arrow { doing, columns: columns.to_string(), message: e.to_string() }
    }
}

impl DesignBuilder {
    /// [`DesignError::ManyLevels`] when factor `f` has more levels in a
    /// chunk than its [`level_limits`](Self::level_limits) entry allows.
    pub fn check_levels(&self, f: usize, levels: usize) -> Result<(), DesignError> {
        match self.level_limits.iter().find(|&&(g, _)| g == f) {
            Some(&(_, limit)) if levels > limit => {
                Err(DesignError::ManyLevels { factor: f, name: self.spec.factors[f].name.clone(), limit })
            }
            _ => Ok(()),
        }
    }

    /// `weights` must already be validated with [`weights_expr`].
    pub fn new(spec: Arc<ModelSpec>, weights: Option<String>, missing: MissingPolicy) -> Self {
        let weights_expr = weights.as_deref().and_then(|w| weights_expr(w).ok());
        // GRAMFIT_NO_DIRECT=1 turns the in-place kernels off (every batch
        // then builds its design block): the reference path, for tests and
        // for ruling the fast path out when a result looks wrong.
        let direct_off = std::env::var_os("GRAMFIT_NO_DIRECT").is_some_and(|v| v != "0");
        let direct = if weights.is_none() && !direct_off { DirectPlan::of(&spec) } else { None };
        DesignBuilder {
            spec,
            weights,
            weights_expr,
            missing,
            group_by: None,
            only: None,
            extra_columns: Vec::new(),
            second_pass: None,
            level_limits: Vec::new(),
            direct,
        }
    }

    /// With [`only`](Self::only) set: the chunk's rows of that group and
    /// their positions in the chunk (`None`: every row is read).
    pub fn select_group(&self, chunk: &RecordBatch) -> Result<Option<(RecordBatch, Vec<usize>)>, DesignError> {
        let Some((column, level)) = &self.only else { return Ok(None) };
        let (codes, table) = categorical_column(chunk, column)?;
        match table.iter().position(|l| l == level) {
            Some(code) => rows_with_code(chunk, &codes, code as u32, column).map(Some),
            // A level the chunk lacks: no row.
            None => Ok(Some((chunk.slice(0, 0), Vec::new()))),
        }
    }

    /// Source columns a pass must read: the model's and the weights'.
    pub fn source_columns(&self) -> Vec<String> {
        let mut cols = self.spec.source_columns();
        if let Some(e) = &self.weights_expr {
            e.columns(&mut cols);
        }
        let extra = [
            self.group_by.clone(),
            self.only.as_ref().map(|(c, _)| c.clone()),
            self.second_pass.as_ref().and_then(|s| s.cluster.clone()),
        ];
        for g in extra.into_iter().flatten().chain(self.extra_columns.iter().cloned()) {
            if !cols.contains(&g) {
                cols.push(g);
            }
        }
        cols
    }

    /// Source columns read only as numbers — never as a factor's levels, a
    /// group or a cluster: a 0/1 integer one may come as bits, a `Boolean`
    /// array (see `source::parquet_row_group`), with the same meaning.
    pub fn numeric_only_columns(&self) -> Vec<String> {
        let mut numeric = Vec::new();
        let mut coded = Vec::new();
        for f in std::iter::once(&self.spec.response).chain(&self.spec.factors) {
            match &f.kind {
                FactorKind::Numeric(e) => e.columns(&mut numeric),
                FactorKind::Categorical { column, .. } => coded.push(column.clone()),
            }
        }
        if let Some(e) = &self.weights_expr {
            e.columns(&mut numeric);
        }
        coded.extend(self.group_by.iter().cloned());
        coded.extend(self.only.iter().map(|(c, _)| c.clone()));
        coded.extend(self.extra_columns.iter().cloned());
        coded.extend(self.second_pass.as_ref().and_then(|s| s.cluster.clone()));
        numeric.retain(|c| !coded.contains(c));
        numeric
    }

    /// The (source column, function) pairs of the model's expressions whose
    /// values a Parquet reader can hand beside the column
    /// (`source::RowGroupBatches::with_functions`): `np.log(rent)` is then
    /// a lookup of the logarithms of the dictionary's values, the same
    /// numbers as evaluated row by row.
    pub fn functions_of_columns(&self) -> Vec<(String, crate::elementary::Function)> {
        let mut out = Vec::new();
        let exprs = std::iter::once(&self.spec.response).chain(&self.spec.factors).filter_map(|f| match &f.kind {
            FactorKind::Numeric(e) => Some(e),
            FactorKind::Categorical { .. } => None,
        });
        for e in exprs.chain(self.weights_expr.as_ref()) {
            eval::functions_of_columns(e, &mut out);
        }
        out
    }

    /// Turn one batch into design rows. `at(row)` renders a row's location
    /// (file and line or row group) for error messages.
    ///
    /// The values are written column by column into one column-major
    /// matrix; plain numeric columns go there straight from the Arrow
    /// buffers, copying the runs of kept rows.
    pub fn block(&self, batch: &RecordBatch, at: &dyn Fn(usize) -> String) -> Result<DesignBlock, DesignError> {
        let spec = &self.spec;
        let n = batch.num_rows();
        let mut cache: HashMap<String, Col> = HashMap::new();
        let mut missing = vec![false; n];

        // Evaluate the response and numeric factors; codes for categoricals.
        enum FVal {
            /// A plain numeric source column, read in place.
            Direct(ArrayRef, String),
            Num(Val),
            Cat(Vec<u32>, Vec<Level>),
        }
        let mut evaluate = |kind: &FactorKind,
                            name: &str,
                            cache: &mut HashMap<String, Col>|
         -> Result<FVal, DesignError> {
            match kind {
                FactorKind::Numeric(e) => {
                    if let NumExpr::Column(c) = e {
                        if let Some(arr) = direct_column(batch, c) {
                            self.scan_direct(arr.as_ref(), c, name, &mut missing, at)?;
                            return Ok(FVal::Direct(arr, c.clone()));
                        }
                    }
                    let v = self.eval_term(e, batch, cache)?;
                    // Rows missing in a source column are missing; any other
                    // non-finite value is an error.
                    let mut cols = Vec::new();
                    e.columns(&mut cols);
                    // Fast path: all values finite (one vectorised pass).
                    let all_finite = match &v {
                        Val::Col { hi, .. } => hi.iter().fold(true, |ok, x| ok & x.is_finite()),
                        Val::Scalar(d) => d.hi.is_finite(),
                    };
                    if all_finite {
                        return Ok(FVal::Num(v));
                    }
                    let mut src_missing = vec![false; n];
                    for c in &cols {
                        for (m, x) in src_missing.iter_mut().zip(cache[c].iter()) {
                            *m |= x.is_nan();
                        }
                    }
                    if let Val::Col { hi, .. } = &v {
                        for r in 0..n {
                            if src_missing[r] {
                                if self.missing == MissingPolicy::Error {
                                    let col = cols.iter().find(|c| cache[*c][r].is_nan()).cloned().unwrap_or_default();
                                    return Err(DesignError::Missing { column: col, row: r, at: at(r) });
                                }
                                missing[r] = true;
                            } else if !hi[r].is_finite() {
                                let raw_inf = cols.iter().find(|c| cache[*c][r].is_infinite());
                                let hint = match raw_inf {
                                    Some(c) => format!("the input column '{c}' holds an infinite value"),
                                    None => "the expression is not finite there (a log or sqrt of a non-positive number, a division by zero or an overflow)".into(),
                                };
                                return Err(DesignError::NotFinite {
                                    factor: name.to_string(),
                                    value: describe(hi[r]),
                                    row: r,
                                    at: at(r),
                                    hint,
                                });
                            }
                        }
                    }
                    Ok(FVal::Num(v))
                }
                FactorKind::Categorical { column, .. } => {
                    let (codes, table) = categorical_column(batch, column)?;
                    for (r, &c) in codes.iter().enumerate() {
                        if c == u32::MAX {
                            if self.missing == MissingPolicy::Error {
                                return Err(DesignError::Missing { column: column.clone(), row: r, at: at(r) });
                            }
                            missing[r] = true;
                        }
                    }
                    Ok(FVal::Cat(codes, table))
                }
            }
        };
        let y = evaluate(&spec.response.kind, &spec.response.name, &mut cache)?;
        let mut fvals = Vec::with_capacity(spec.factors.len());
        for (i, f) in spec.factors.iter().enumerate() {
            let v = evaluate(&f.kind, &f.name, &mut cache)?;
            if let FVal::Cat(_, table) = &v {
                // Before the block expands the levels into columns.
                self.check_levels(i, table.len())?;
            }
            fvals.push(v);
        }
        let weights = match (&self.weights, &self.weights_expr) {
            (Some(wc), Some(we)) => {
                let w = match self.eval(we, batch, &mut cache)? {
                    Val::Scalar(d) => vec![d.to_f64(); n],
                    Val::Col { hi, lo } => match lo {
                        None => hi.to_vec(),
                        Some(lo) => hi.iter().zip(lo.iter()).map(|(h, l)| h + l).collect(),
                    },
                };
                let mut wcols = Vec::new();
                we.columns(&mut wcols);
                for (r, &x) in w.iter().enumerate() {
                    if wcols.iter().any(|c| cache[c][r].is_nan()) {
                        if self.missing == MissingPolicy::Error {
                            return Err(DesignError::Missing { column: wc.clone(), row: r, at: at(r) });
                        }
                        missing[r] = true;
                    } else if !(x > 0.0 && x.is_finite()) {
                        return Err(DesignError::BadWeight { column: wc.clone(), value: x, row: r, at: at(r) });
                    }
                }
                Some(w)
            }
            _ => None,
        };

        // Levels seen, on each factor's own non-missing values (as patsy
        // sniffs levels before dropping incomplete rows).
        let mut levels: Vec<HashMap<Level, u64>> = vec![HashMap::new(); spec.factors.len()];
        for (fi, fv) in fvals.iter().enumerate() {
            if let FVal::Cat(codes, table) = fv {
                let counts = direct::level_counts(codes, table.len());
                for (l, &k) in table.iter().zip(&counts) {
                    if k > 0 {
                        levels[fi].insert(l.clone(), k);
                    }
                }
            }
        }

        let runs = runs_of_kept(&missing);
        let all_kept = runs.len() == 1 && runs[0] == (0..n) || n == 0;
        let kept: Vec<usize> = if all_kept { Vec::new() } else { runs.iter().flat_map(|r| r.clone()).collect() };
        let m = if all_kept { n } else { kept.len() };
        // Numeric values of the kept rows (direct columns are converted here
        // only when a term needs them in arithmetic).
        let numeric = |fv: &FVal| -> Result<Val, DesignError> {
            let v = match fv {
                FVal::Direct(arr, name) => Val::Col { hi: numeric_array(arr, name)?, lo: None },
                FVal::Num(Val::Scalar(d)) => return Ok(Val::Scalar(*d)),
                FVal::Num(Val::Col { hi, lo }) => Val::Col { hi: hi.clone(), lo: lo.clone() },
                FVal::Cat(..) => unreachable!("categorical factors are not numeric"),
            };
            Ok(match v {
                Val::Col { hi, lo } if !all_kept => Val::Col {
                    hi: kept.iter().map(|&r| hi[r]).collect(),
                    lo: lo.as_ref().map(|l| kept.iter().map(|&r| l[r]).collect()),
                },
                v => v,
            })
        };
        let mut block = DesignBlock {
            rows_in: n,
            rows_dropped: n - m,
            levels,
            values: value_buffer(m * (spec.terms.len() + 1)),
            keys: Vec::new(),
            lo: Vec::new(),
            integral: Vec::new(),
            weights: None,
            kept: None,
        };
        // Append one whole column (a term without categorical factors, or the
        // response).
        let push_numeric = |block: &mut DesignBlock, factors: &[&FVal]| -> Result<(), DesignError> {
            if let [FVal::Direct(arr, _)] = factors {
                let integral = extend_direct(&mut block.values, arr.as_ref(), &runs);
                block.lo.push(None);
                block.integral.push(integral);
                return Ok(());
            }
            let mut product: Option<Val> = None;
            for f in factors {
                let v = numeric(f)?;
                product = Some(match product {
                    None => v,
                    Some(p) => map_dd(m, &p, &v, |a, b| a * b),
                });
            }
            match product.unwrap_or(Val::Scalar(Dd::ONE)) {
                Val::Scalar(d) => {
                    block.values.resize(block.values.len() + m, d.hi);
                    block.lo.push((d.lo != 0.0).then(|| Col::from(vec![d.lo; m])));
                    block.integral.push(d.lo == 0.0 && d.hi.fract() == 0.0);
                }
                Val::Col { hi, lo } => {
                    block.values.extend_from_slice(&hi);
                    block.lo.push(lo);
                    block.integral.push(false);
                }
            }
            Ok(())
        };

        for (t, factors) in spec.terms.iter().enumerate() {
            let cats: Vec<(&Vec<u32>, &Vec<Level>)> = factors
                .iter()
                .filter_map(|&f| match &fvals[f] {
                    FVal::Cat(codes, table) => Some((codes, table)),
                    _ => None,
                })
                .collect();
            if cats.is_empty() {
                let nums: Vec<&FVal> = factors.iter().map(|&f| &fvals[f]).collect();
                push_numeric(&mut block, &nums)?;
                block.keys.push(ColumnKey::Cell { term: t as u32, levels: vec![] });
                continue;
            }
            let mut product: Option<Val> = None;
            for &f in factors {
                if !matches!(fvals[f], FVal::Cat(..)) {
                    let v = numeric(&fvals[f])?;
                    product = Some(match product {
                        None => v,
                        Some(p) => map_dd(m, &p, &v, |a, b| a * b),
                    });
                }
            }
            // Cells in order of first appearance, each a column of this
            // term's block of the matrix.
            let base = block.values.len();
            if let ([(codes, table)], None) = (cats.as_slice(), &product) {
                if table.len() <= INDICATOR_COLUMNS {
                    indicator_columns(&mut block, t as u32, codes, table, if all_kept { None } else { Some(&kept) }, m);
                    continue;
                }
            }
            // Cell of a level combination: an array lookup for one factor
            // (the common `C(x)`), a hash map for interactions.
            let mut cell_of_level: Vec<usize> =
                if cats.len() == 1 { vec![usize::MAX; cats[0].1.len()] } else { Vec::new() };
            let mut combos: LevelMap<Vec<u32>> = LevelMap::default();
            let mut cell_lo: Vec<Option<Vec<f64>>> = Vec::new();
            let mut combo = vec![0u32; cats.len()];
            for i in 0..m {
                let r = if all_kept { i } else { kept[i] };
                for (k, (codes, _)) in cats.iter().enumerate() {
                    combo[k] = codes[r];
                }
                let known = if cats.len() == 1 {
                    Some(cell_of_level[combo[0] as usize]).filter(|&c| c != usize::MAX)
                } else {
                    combos.get(&combo).map(|&c| c as usize)
                };
                let col = match known {
                    Some(c) => c,
                    None => {
                        let c = cell_lo.len();
                        if cats.len() == 1 {
                            cell_of_level[combo[0] as usize] = c;
                        } else {
                            combos.insert(combo.clone(), c as u32);
                        }
                        block.keys.push(ColumnKey::Cell {
                            term: t as u32,
                            levels: combo
                                .iter()
                                .zip(&cats)
                                .map(|(&code, (_, table))| table[code as usize].clone())
                                .collect(),
                        });
                        block.values.resize(block.values.len() + m, 0.0);
                        cell_lo.push(None);
                        c
                    }
                };
                let at = base + col * m + i;
                match &product {
                    None => block.values[at] = 1.0,
                    Some(p) => {
                        let v = p.get(i);
                        block.values[at] = v.hi;
                        if v.lo != 0.0 {
                            cell_lo[col].get_or_insert_with(|| vec![0.0; m])[i] = v.lo;
                        }
                    }
                }
            }
            // Indicator cells are 0/1; cells scaled by a numeric factor
            // are not known to be whole.
            block.integral.extend(cell_lo.iter().map(|_| product.is_none()));
            block.lo.extend(cell_lo.into_iter().map(|l| l.map(Col::from)));
        }
        match &y {
            FVal::Cat(..) => unreachable!("the response is numeric by construction"),
            y => push_numeric(&mut block, &[y])?,
        }
        block.keys.push(ColumnKey::Response);
        block.weights = weights.map(|w| if all_kept { w } else { kept.iter().map(|&r| w[r]).collect() });
        block.kept = (!all_kept).then_some(kept);
        Ok(block)
    }
}

/// A factor of at most this many levels builds its indicator columns one
/// at a time (a comparison per row, on vectors), where a factor of more
/// levels writes each row's cell in one pass.
const INDICATOR_COLUMNS: usize = 16;

/// Append the indicator columns of a term of one factor (its rows' level
/// `codes`, its batch `table`) over the `m` kept rows (`kept`: their rows;
/// `None`: all): one column per level met, in order of first appearance,
/// each a column of 0s and 1s — the block the row-by-row loop builds.
fn indicator_columns(
    block: &mut DesignBlock,
    term: u32,
    codes: &[u32],
    table: &[Level],
    kept: Option<&[usize]>,
    m: usize,
) {
    // The kept rows' codes in a row (gathered once), so that each column is
    // a comparison the compiler runs on vectors, without a branch per row.
    let gathered: Vec<u32>;
    let codes = match kept {
        None => &codes[..m],
        Some(k) => {
            gathered = k.iter().map(|&r| codes[r]).collect();
            &gathered[..]
        }
    };
    let mut order: Vec<u32> = Vec::with_capacity(table.len());
    for &c in codes {
        if order.len() == table.len() {
            break;
        }
        if !order.contains(&c) {
            order.push(c);
        }
    }
    for &level in &order {
        block.keys.push(ColumnKey::Cell { term, levels: vec![table[level as usize].clone()] });
        // Eight rows a byte of comparisons, then the byte's eight 0/1
        // values by one table copy (a select per row compiles to a branch
        // on the baseline x86-64 build).
        let start = block.values.len();
        block.values.resize(start + codes.len(), 0.0);
        let byte = |group: &[u32]| crate::bits::equal_byte(group, level);
        let mut out = block.values[start..].chunks_exact_mut(8);
        for (o, group) in out.by_ref().zip(codes.chunks_exact(8)) {
            let o: &mut [f64; 8] = o.try_into().expect("8 rows");
            *o = direct::BYTE_VALUES[usize::from(byte(group))];
        }
        let rest = out.into_remainder();
        let tail = &codes[codes.len() - rest.len()..];
        rest.copy_from_slice(&direct::BYTE_VALUES[usize::from(byte(tail))][..rest.len()]);
        block.integral.push(true);
        block.lo.push(None);
    }
}

/// Call `each` with every level of column `column` that `chunk` holds,
/// in the chunk's level order, its rows as a batch of their own and their
/// row numbers in `chunk`; returns the rows' level codes (`u32::MAX`:
/// missing). The rows are bucketed by level in one pass and each level's
/// taken by index: a chunk of ~200 groups is not scanned once per group.
pub fn split_by_level(
    chunk: &RecordBatch,
    column: &str,
    mut each: impl FnMut(&Level, &RecordBatch, &[usize]) -> Result<(), DesignError>,
) -> Result<Vec<u32>, DesignError> {
    let (codes, table) = categorical_column(chunk, column)?;
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); table.len()];
    for (r, &code) in codes.iter().enumerate() {
        if let Some(rows) = rows_of.get_mut(code as usize) {
            rows.push(r);
        }
    }
    for (level, rows) in table.iter().zip(&rows_of) {
        if rows.is_empty() {
            continue;
        }
        let sub = take_rows(chunk, rows, column)?;
        each(level, &sub, rows)?;
    }
    Ok(codes)
}

/// The rows of `chunk` whose level code in `codes` (of column `column`)
/// is `code`, as a batch of their own, and their row numbers in `chunk`.
fn rows_with_code(
    chunk: &RecordBatch,
    codes: &[u32],
    code: u32,
    column: &str,
) -> Result<(RecordBatch, Vec<usize>), DesignError> {
    let rows: Vec<usize> = (0..codes.len()).filter(|&r| codes[r] == code).collect();
    Ok((take_rows(chunk, &rows, column)?, rows))
}

/// Rows `rows` of `chunk` (a group's, of column `column`) as a batch of
/// their own, taken by index.
fn take_rows(chunk: &RecordBatch, rows: &[usize], column: &str) -> Result<RecordBatch, DesignError> {
    let index = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
    arrow::compute::take_record_batch(chunk, &index)
        .map_err(|e| DesignError::arrow("selecting a group's rows", column, e))
}

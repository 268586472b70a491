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

use crate::dd::{Dd, LN_10, LN_2};
use crate::formula::expr::{Func, NumExpr};
use crate::formula::{FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use crate::stats::kernel::ColumnRef;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
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
    #[error("column '{column}' has type {found}, which cannot be used as {wanted}")]
    BadType { column: String, found: String, wanted: &'static str },
}

/// Rows of one batch in design form.
#[derive(Debug, Default)]
pub struct DesignBlock {
    pub keys: Vec<ColumnKey>,
    /// Column values (shared, zero-copy from Arrow where possible).
    pub hi: Vec<Col>,
    pub lo: Vec<Option<Col>>,
    pub weights: Option<Vec<f64>>,
    pub rows_in: usize,
    pub rows_dropped: usize,
    /// For each categorical factor (by index), the levels seen in the batch
    /// on non-missing values of that factor, with their row counts.
    pub levels: Vec<HashMap<Level, u64>>,
    /// The batch rows kept, when some were dropped (`None`: all kept).
    pub kept: Option<Vec<usize>>,
}

impl DesignBlock {
    pub fn columns(&self) -> Vec<ColumnRef<'_>> {
        self.hi.iter().zip(&self.lo).map(|(hi, lo)| ColumnRef { hi, lo: lo.as_deref() }).collect()
    }
    pub fn nrows(&self) -> usize {
        self.rows_in - self.rows_dropped
    }
}

/// A column of `f64`: an Arrow buffer, so plain float columns without nulls
/// are used in place and clones are cheap.
pub type Col = ScalarBuffer<f64>;

/// Values of a numeric expression: a scalar or a column, each `hi + lo`.
enum Val {
    Scalar(Dd),
    Col { hi: Col, lo: Option<Col> },
}

impl Val {
    fn get(&self, r: usize) -> Dd {
        match self {
            Val::Scalar(d) => *d,
            Val::Col { hi, lo } => Dd { hi: hi[r], lo: lo.as_ref().map_or(0.0, |l| l[r]) },
        }
    }
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
    /// What a second pass over the residuals needs (β, (XᵀWX)⁻¹, clusters).
    pub second_pass: Option<Arc<crate::residuals::SecondPassSpec>>,
}

/// Parse a weights specification: a column name or a numeric expression.
pub fn weights_expr(w: &str) -> Result<NumExpr, String> {
    match crate::formula::expr::factor_expr(w)? {
        crate::formula::expr::FactorExpr::Column(c) => Ok(NumExpr::Column(c)),
        crate::formula::expr::FactorExpr::Numeric(e) => Ok(e),
        crate::formula::expr::FactorExpr::Categorical { .. } => Err(format!("weights '{w}' must be numeric")),
    }
}

fn map_dd(n: usize, a: &Val, b: &Val, f: impl Fn(Dd, Dd) -> Dd) -> Val {
    if let (Val::Scalar(x), Val::Scalar(y)) = (a, b) {
        return Val::Scalar(f(*x, *y));
    }
    let mut hi = Vec::with_capacity(n);
    let mut lo = Vec::with_capacity(n);
    for r in 0..n {
        let v = f(a.get(r), b.get(r));
        hi.push(v.hi);
        lo.push(v.lo);
    }
    let lo = lo.iter().any(|&x| x != 0.0).then(|| Col::from(lo));
    Val::Col { hi: Col::from(hi), lo }
}

fn func_dd(f: Func, x: Dd) -> Dd {
    match f {
        Func::Log => x.ln(),
        Func::Log1p => (Dd::ONE + x).ln(),
        Func::Log10 => x.ln() / LN_10,
        Func::Log2 => x.ln() / LN_2,
        Func::Exp => x.exp(),
        Func::Sqrt => {
            if x.hi < 0.0 {
                Dd::from(f64::NAN)
            } else {
                x.sqrt()
            }
        }
        Func::Abs => x.abs(),
    }
}

fn pow_dd(a: Dd, b: Dd) -> Dd {
    let e = b.to_f64();
    if b.lo == 0.0 && e.fract() == 0.0 && e.abs() <= 1024.0 {
        let p = a.powi(e.abs() as u32);
        if e < 0.0 {
            Dd::ONE / p
        } else {
            p
        }
    } else if a.hi < 0.0 {
        Dd::from(f64::NAN)
    } else {
        (b * a.ln()).exp()
    }
}

/// A column of the batch as `f64`, nulls as NaN (zero-copy for `Float64`
/// without nulls).
fn numeric_column(batch: &RecordBatch, name: &str) -> Result<Col, DesignError> {
    let arr = batch.column_by_name(name).ok_or_else(|| DesignError::NoColumn { column: name.into() })?;
    if arr.null_count() == 0 {
        // The common cases, converted in one pass without an intermediate array.
        match arr.data_type() {
            DataType::Float64 => return Ok(arr.as_primitive::<Float64Type>().values().clone()),
            DataType::Int64 => return Ok(arr.as_primitive::<Int64Type>().values().iter().map(|&v| v as f64).collect()),
            DataType::Int32 => {
                return Ok(arr
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .values()
                    .iter()
                    .map(|&v| v as f64)
                    .collect())
            }
            _ => {}
        }
    }
    let arr: ArrayRef = match arr.data_type() {
        DataType::Float64 => arr.clone(),
        DataType::Boolean => cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?,
        t if t.is_numeric() => cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?,
        DataType::Dictionary(_, v) if v.is_numeric() => {
            cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?
        }
        _ => return Err(bad_type(name, arr, "a number")),
    };
    let a = arr.as_primitive::<Float64Type>();
    if a.null_count() == 0 {
        return Ok(a.values().clone());
    }
    let mut v = a.values().to_vec();
    for (r, x) in v.iter_mut().enumerate() {
        if a.is_null(r) {
            *x = f64::NAN;
        }
    }
    Ok(Col::from(v))
}

fn bad_type(name: &str, arr: &ArrayRef, wanted: &'static str) -> DesignError {
    DesignError::BadType { column: name.into(), found: arr.data_type().to_string(), wanted }
}

/// Level codes of a categorical column (`u32::MAX` = missing) and the
/// batch-local level table.
pub fn categorical_column(batch: &RecordBatch, name: &str) -> Result<(Vec<u32>, Vec<Level>), DesignError> {
    let arr = batch.column_by_name(name).ok_or_else(|| DesignError::NoColumn { column: name.into() })?;
    let n = arr.len();
    let mut codes = vec![u32::MAX; n];
    let mut table: Vec<Level> = Vec::new();
    match arr.data_type() {
        DataType::Boolean => {
            let a = arr.as_boolean();
            table = vec![Level::Bool(false), Level::Bool(true)];
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    *c = a.value(r) as u32;
                }
            }
        }
        t if t.is_integer() => {
            let a = cast(arr, &DataType::Int64).map_err(|_| bad_type(name, arr, "a category"))?;
            let a = a.as_primitive::<Int64Type>();
            let mut map: HashMap<i64, u32> = HashMap::new();
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    let v = a.value(r);
                    *c = *map.entry(v).or_insert_with(|| {
                        table.push(Level::Int(v));
                        (table.len() - 1) as u32
                    });
                }
            }
        }
        t if t.is_numeric() => {
            let v = numeric_column(batch, name)?;
            let mut map: HashMap<u64, u32> = HashMap::new();
            for (r, c) in codes.iter_mut().enumerate() {
                let x = v[r];
                if !x.is_nan() {
                    let l = Level::float(x);
                    let bits = match l {
                        Level::Float(y) => y.to_bits(),
                        _ => unreachable!(),
                    };
                    *c = *map.entry(bits).or_insert_with(|| {
                        table.push(l);
                        (table.len() - 1) as u32
                    });
                }
            }
        }
        _ => {
            let s = cast(arr, &DataType::Utf8).map_err(|_| bad_type(name, arr, "a category"))?;
            let a = s.as_string::<i32>();
            let mut map: HashMap<&str, u32> = HashMap::new();
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    let v = a.value(r);
                    *c = match map.get(v) {
                        Some(&k) => k,
                        None => {
                            table.push(Level::Str(v.to_string()));
                            let k = (table.len() - 1) as u32;
                            map.insert(v, k);
                            k
                        }
                    };
                }
            }
        }
    }
    Ok((codes, table))
}

fn describe(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x > 0.0 {
        "+inf".into()
    } else {
        "-inf".into()
    }
}

impl DesignBuilder {
    /// `weights` must already be validated with [`weights_expr`].
    pub fn new(spec: Arc<ModelSpec>, weights: Option<String>, missing: MissingPolicy) -> Self {
        let weights_expr = weights.as_deref().and_then(|w| weights_expr(w).ok());
        DesignBuilder { spec, weights, weights_expr, missing, group_by: None, second_pass: None }
    }

    /// Source columns a pass must read: the model's and the weights'.
    pub fn source_columns(&self) -> Vec<String> {
        let mut cols = self.spec.source_columns();
        if let Some(e) = &self.weights_expr {
            e.columns(&mut cols);
        }
        let extra = [self.group_by.clone(), self.second_pass.as_ref().and_then(|s| s.cluster.clone())];
        for g in extra.into_iter().flatten() {
            if !cols.contains(&g) {
                cols.push(g);
            }
        }
        cols
    }

    /// Evaluate a numeric expression; `inputs_missing[r]` marks rows where a
    /// source column is null/NaN (those may legitimately be NaN).
    fn eval(&self, e: &NumExpr, batch: &RecordBatch, cache: &mut HashMap<String, Col>) -> Result<Val, DesignError> {
        let n = batch.num_rows();
        Ok(match e {
            NumExpr::Const(x) => Val::Scalar(Dd::from(*x)),
            NumExpr::Column(c) => {
                if !cache.contains_key(c) {
                    cache.insert(c.clone(), numeric_column(batch, c)?);
                }
                Val::Col { hi: cache[c].clone(), lo: None }
            }
            NumExpr::Neg(a) => match self.eval(a, batch, cache)? {
                Val::Scalar(d) => Val::Scalar(-d),
                Val::Col { hi, lo } => {
                    Val::Col { hi: hi.iter().map(|x| -x).collect(), lo: lo.map(|l| l.iter().map(|x| -x).collect()) }
                }
            },
            NumExpr::Add(a, b) => map_dd(n, &self.eval(a, batch, cache)?, &self.eval(b, batch, cache)?, |x, y| x + y),
            NumExpr::Sub(a, b) => map_dd(n, &self.eval(a, batch, cache)?, &self.eval(b, batch, cache)?, |x, y| x - y),
            NumExpr::Mul(a, b) => map_dd(n, &self.eval(a, batch, cache)?, &self.eval(b, batch, cache)?, |x, y| x * y),
            NumExpr::Div(a, b) => map_dd(n, &self.eval(a, batch, cache)?, &self.eval(b, batch, cache)?, |x, y| {
                if y.hi == 0.0 {
                    Dd::from(x.hi / y.hi)
                } else {
                    x / y
                }
            }),
            NumExpr::Pow(a, b) => map_dd(n, &self.eval(a, batch, cache)?, &self.eval(b, batch, cache)?, pow_dd),
            NumExpr::Call(f, a) => {
                let v = self.eval(a, batch, cache)?;
                map_dd(n, &v, &Val::Scalar(Dd::ZERO), |x, _| func_dd(*f, x))
            }
        })
    }

    /// Turn one batch into design rows. `at(row)` renders a row's location
    /// (file and line or row group) for error messages.
    pub fn block(&self, batch: &RecordBatch, at: &dyn Fn(usize) -> String) -> Result<DesignBlock, DesignError> {
        let spec = &self.spec;
        let n = batch.num_rows();
        let mut cache: HashMap<String, Col> = HashMap::new();
        let mut missing = vec![false; n];

        // Evaluate the response and numeric factors; codes for categoricals.
        enum FVal {
            Num(Val),
            Cat(Vec<u32>, Vec<Level>),
        }
        let mut evaluate = |kind: &FactorKind,
                            name: &str,
                            cache: &mut HashMap<String, Col>|
         -> Result<FVal, DesignError> {
            match kind {
                FactorKind::Numeric(e) => {
                    let v = self.eval(e, batch, cache)?;
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
        let y = match evaluate(&spec.response.kind, &spec.response.name, &mut cache)? {
            FVal::Num(v) => v,
            FVal::Cat(..) => unreachable!("the response is numeric by construction"),
        };
        let mut fvals = Vec::with_capacity(spec.factors.len());
        for f in &spec.factors {
            fvals.push(evaluate(&f.kind, &f.name, &mut cache)?);
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
                let mut counts = vec![0u64; table.len()];
                for &c in codes {
                    if c != u32::MAX {
                        counts[c as usize] += 1;
                    }
                }
                for (l, &k) in table.iter().zip(&counts) {
                    if k > 0 {
                        levels[fi].insert(l.clone(), k);
                    }
                }
            }
        }

        let kept: Vec<usize> = (0..n).filter(|&r| !missing[r]).collect();
        let all_kept = kept.len() == n;
        let compact = |v: &Val| -> Val {
            match v {
                Val::Scalar(d) => Val::Scalar(*d),
                Val::Col { hi, lo } if all_kept => Val::Col { hi: hi.clone(), lo: lo.clone() },
                Val::Col { hi, lo } => Val::Col {
                    hi: kept.iter().map(|&r| hi[r]).collect(),
                    lo: lo.as_ref().map(|l| kept.iter().map(|&r| l[r]).collect()),
                },
            }
        };
        let m = kept.len();
        let mut block = DesignBlock {
            rows_in: n,
            rows_dropped: n - m,
            levels,
            kept: (!all_kept).then(|| kept.clone()),
            ..Default::default()
        };
        let into_cols = |v: Val| -> (Col, Option<Col>) {
            match v {
                Val::Scalar(d) => (Col::from(vec![d.hi; m]), (d.lo != 0.0).then(|| Col::from(vec![d.lo; m]))),
                Val::Col { hi, lo } => (hi, lo),
            }
        };

        for (t, factors) in spec.terms.iter().enumerate() {
            let mut product: Option<Val> = None;
            let mut cats: Vec<(&Vec<u32>, &Vec<Level>)> = Vec::new();
            for &f in factors {
                match &fvals[f] {
                    FVal::Num(v) => {
                        let v = compact(v);
                        product = Some(match product {
                            None => v,
                            Some(p) => map_dd(m, &p, &v, |a, b| a * b),
                        });
                    }
                    FVal::Cat(codes, table) => cats.push((codes, table)),
                }
            }
            if cats.is_empty() {
                let (hi, lo) = into_cols(product.unwrap_or(Val::Scalar(Dd::ONE)));
                block.keys.push(ColumnKey::Cell { term: t as u32, levels: vec![] });
                block.hi.push(hi);
                block.lo.push(lo);
                continue;
            }
            let mut combos: HashMap<Vec<u32>, usize> = HashMap::new();
            let mut cell_hi: Vec<Vec<f64>> = Vec::new();
            let mut cell_lo: Vec<Option<Vec<f64>>> = Vec::new();
            let mut combo = vec![0u32; cats.len()];
            for (i, &r) in kept.iter().enumerate() {
                for (k, (codes, _)) in cats.iter().enumerate() {
                    combo[k] = codes[r];
                }
                let col = match combos.get(&combo) {
                    Some(&c) => c,
                    None => {
                        let c = cell_hi.len();
                        combos.insert(combo.clone(), c);
                        block.keys.push(ColumnKey::Cell {
                            term: t as u32,
                            levels: combo
                                .iter()
                                .zip(&cats)
                                .map(|(&code, (_, table))| table[code as usize].clone())
                                .collect(),
                        });
                        cell_hi.push(vec![0.0; m]);
                        cell_lo.push(None);
                        c
                    }
                };
                match &product {
                    None => cell_hi[col][i] = 1.0,
                    Some(p) => {
                        let v = p.get(i);
                        cell_hi[col][i] = v.hi;
                        if v.lo != 0.0 {
                            cell_lo[col].get_or_insert_with(|| vec![0.0; m])[i] = v.lo;
                        }
                    }
                }
            }
            block.hi.extend(cell_hi.into_iter().map(Col::from));
            block.lo.extend(cell_lo.into_iter().map(|l| l.map(Col::from)));
        }
        let (hi, lo) = into_cols(compact(&y));
        block.keys.push(ColumnKey::Response);
        block.hi.push(hi);
        block.lo.push(lo);
        block.weights = weights.map(|w| if all_kept { w } else { kept.iter().map(|&r| w[r]).collect() });
        Ok(block)
    }
}

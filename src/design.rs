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

use crate::bits::kept_rows;
use crate::dd::{Dd, LN_10, LN_2};
use crate::formula::expr::{Func, NumExpr};
use crate::formula::{FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use crate::stats::columns::{DirectColumn, SourceColumn};
use crate::stats::kernel::raw_moments_masked_columns;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch};
use arrow::buffer::{BooleanBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use std::collections::HashMap;
use std::ops::Range;
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
///
/// The values are one column-major `nrows × keys.len()` matrix, so the gram
/// kernel multiplies it in place; derived columns evaluated in
/// double-double carry their low words beside it.
#[derive(Debug, Default)]
pub struct DesignBlock {
    pub keys: Vec<ColumnKey>,
    /// Column `j` is `values[j·nrows .. (j+1)·nrows]`.
    pub values: Vec<f64>,
    /// Low words of column `j` (`value = hi + lo`), for derived terms.
    pub lo: Vec<Option<Col>>,
    /// Column `j` holds whole numbers by construction (an integer source
    /// column, the intercept, an indicator).
    pub integral: Vec<bool>,
    pub weights: Option<Vec<f64>>,
    pub rows_in: usize,
    pub rows_dropped: usize,
    /// For each categorical factor (by index), the levels seen in the batch
    /// on non-missing values of that factor, with their row counts.
    pub levels: Vec<HashMap<Level, u64>>,
    /// The batch rows kept, when some were dropped (`None`: all kept).
    pub kept: Option<Vec<usize>>,
}

thread_local! {
    /// Value buffers of dropped blocks, reused by the next block on the
    /// same thread: a block is ~0.5 MB, and fresh allocations of that size
    /// are mapped and page-faulted each time.
    static SPARE_VALUES: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `cap` values, reused when one is spare.
fn value_buffer(cap: usize) -> Vec<f64> {
    let mut v = SPARE_VALUES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.reserve(cap);
    v
}

impl Drop for DesignBlock {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.values);
        if v.capacity() > 0 {
            SPARE_VALUES.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < 4 {
                    s.push(v);
                }
            });
        }
    }
}

impl DesignBlock {
    /// Column `j`'s high words.
    pub fn col(&self, j: usize) -> &[f64] {
        let n = self.nrows();
        &self.values[j * n..(j + 1) * n]
    }
    /// Column `j` at row `r`, both words added.
    pub fn value(&self, j: usize, r: usize) -> f64 {
        self.col(j)[r] + self.lo[j].as_ref().map_or(0.0, |l| l[r])
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
    /// Only the rows whose `column` has this level (a grouped state's
    /// group): the others are not read into the sums at all.
    pub only: Option<(String, Level)>,
    /// Columns read for the caller besides the model's (never as bits:
    /// they come out as they are in the input).
    pub extra_columns: Vec<String>,
    /// What a second pass over the residuals needs (β, (XᵀWX)⁻¹, clusters).
    pub second_pass: Option<Arc<crate::second_pass::SecondPassSpec>>,
    /// When every term is one plain numeric column and there are no
    /// weights: the block keys, and the source columns of the response and
    /// the factors in the order [`block`](Self::block) checks them.
    direct: Option<DirectPlan>,
}

#[derive(Clone, Debug)]
struct DirectPlan {
    /// (factor name, source column, categorical): the response, then the
    /// factors, in the order `block` checks them.
    checks: Vec<(String, String, bool)>,
    /// The check of each term, in term order (a term is one factor).
    terms: Vec<usize>,
}

impl DirectPlan {
    /// Every term one plain numeric column or one categorical factor (its
    /// full cells are indicators, accumulated from level codes).
    fn of(spec: &ModelSpec) -> Option<DirectPlan> {
        let check = |f: &crate::formula::Factor| match &f.kind {
            FactorKind::Numeric(NumExpr::Column(c)) => Some((f.name.clone(), c.clone(), false)),
            FactorKind::Categorical { column, .. } => Some((f.name.clone(), column.clone(), true)),
            _ => None,
        };
        let response = check(&spec.response).filter(|c| !c.2)?;
        let mut checks = vec![response];
        for f in &spec.factors {
            checks.push(check(f)?);
        }
        let mut terms = Vec::new();
        for factors in &spec.terms {
            let [f] = factors.as_slice() else { return None };
            terms.push(f + 1);
        }
        Some(DirectPlan { checks, terms })
    }
}

/// The source columns of one batch, read in place.
pub struct DirectInputs {
    /// Per check (response, then factors): the array.
    pub arrays: Vec<ArrayRef>,
    /// Per check: level codes and table of a categorical factor.
    pub codes: Vec<Option<(Vec<u32>, Vec<Level>)>>,
    /// Kept rows: bit `r % 8` of byte `r / 8` (`None`: all kept).
    pub mask: Option<Vec<u8>>,
    pub rows: usize,
    pub kept: usize,
    /// Per factor (spec order): levels seen on its own non-missing values,
    /// with row counts (as `DesignBlock::levels`).
    pub levels: Vec<HashMap<Level, u64>>,
}

impl DirectInputs {
    /// Array `i` as a kernel column (a `Float64`, `Int64` or, for a 0/1
    /// column read as bits, `Boolean` array).
    pub fn column(&self, i: usize) -> SourceColumn<'_> {
        match self.arrays[i].data_type() {
            DataType::Int64 => SourceColumn::I64(self.arrays[i].as_primitive::<Int64Type>().values()),
            DataType::Boolean => {
                let v = self.arrays[i].as_boolean().values();
                SourceColumn::Bits(&v.inner().as_slice()[v.offset() / 8..])
            }
            _ => SourceColumn::F64(self.arrays[i].as_primitive::<Float64Type>().values()),
        }
    }
}

/// The raw sums of one batch taken without building its design block.
pub struct DirectPart {
    pub keys: Vec<ColumnKey>,
    pub raw: crate::stats::columns::RawMoments,
    pub levels: Vec<HashMap<Level, u64>>,
    pub rows_in: usize,
    pub rows_dropped: usize,
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
    numeric_array(arr, name)
}

/// [`numeric_column`] of an array already in hand.
fn numeric_array(arr: &ArrayRef, name: &str) -> Result<Col, DesignError> {
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

/// A source column that is read in place: a primitive numeric array, whose
/// values are converted to `f64` one by one straight into the design
/// matrix (no cast kernel, no intermediate column).
fn direct_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    use DataType::*;
    let arr = batch.column_by_name(name)?;
    matches!(arr.data_type(), Float64 | Float32 | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64)
        .then(|| arr.clone())
}

/// Append the rows `runs` of a [`direct_column`] to `out`, as `f64`
/// (integers beyond 2⁵³ round, as any conversion to `f64` does, and stay
/// whole numbers). Returns whether the values are whole numbers by type.
fn extend_direct(out: &mut Vec<f64>, arr: &dyn Array, runs: &[Range<usize>]) -> bool {
    macro_rules! ext {
        ($t:ty) => {{
            let v = arr.as_primitive::<$t>().values();
            for r in runs {
                out.extend(v[r.clone()].iter().map(|&x| x as f64));
            }
        }};
    }
    use arrow::datatypes as t;
    match arr.data_type() {
        DataType::Float64 => {
            let v = arr.as_primitive::<Float64Type>().values();
            for r in runs {
                out.extend_from_slice(&v[r.clone()]);
            }
        }
        DataType::Float32 => ext!(t::Float32Type),
        DataType::Int8 => ext!(t::Int8Type),
        DataType::Int16 => ext!(t::Int16Type),
        DataType::Int32 => ext!(t::Int32Type),
        DataType::Int64 => ext!(Int64Type),
        DataType::UInt8 => ext!(t::UInt8Type),
        DataType::UInt16 => ext!(t::UInt16Type),
        DataType::UInt32 => ext!(t::UInt32Type),
        DataType::UInt64 => ext!(t::UInt64Type),
        other => unreachable!("direct_column admits primitive numbers only, not {other}"),
    }
    arr.data_type().is_integer()
}

/// Whether every value slot of a float array is finite (null slots
/// included: decoders fill them with zeros, and a non-finite one only
/// sends the batch down the row-by-row check).
fn all_slots_finite(arr: &dyn Array) -> bool {
    // x·0 is 0 for finite x and NaN otherwise; eight lanes of plain adds
    // vectorise where a short-circuiting test does not.
    fn fin(v: impl Iterator<Item = f64>) -> bool {
        let mut acc = [0.0f64; 8];
        for (r, x) in v.enumerate() {
            acc[r % 8] += x * 0.0;
        }
        acc.iter().sum::<f64>() == 0.0
    }
    match arr.data_type() {
        DataType::Float64 => {
            let v = arr.as_primitive::<Float64Type>().values();
            let mut acc = [0.0f64; 8];
            let mut it = v.chunks_exact(8);
            for c in &mut it {
                for l in 0..8 {
                    acc[l] += c[l] * 0.0;
                }
            }
            acc.iter().sum::<f64>() == 0.0 && fin(it.remainder().iter().copied())
        }
        DataType::Float32 => {
            fin(arr.as_primitive::<arrow::datatypes::Float32Type>().values().iter().map(|&x| x as f64))
        }
        _ => true,
    }
}

/// Value of a float array's slot as `f64` (integers are always finite).
fn float_slot(arr: &dyn Array, r: usize) -> f64 {
    match arr.data_type() {
        DataType::Float64 => arr.as_primitive::<Float64Type>().value(r),
        DataType::Float32 => arr.as_primitive::<arrow::datatypes::Float32Type>().value(r) as f64,
        _ => 0.0,
    }
}

/// The kept rows as maximal runs of consecutive rows.
fn runs_of_kept(missing: &[bool]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut r = 0;
    while r < missing.len() {
        if missing[r] {
            r += 1;
            continue;
        }
        let start = r;
        while r < missing.len() && !missing[r] {
            r += 1;
        }
        runs.push(start..r);
    }
    runs
}

fn bad_type(name: &str, arr: &ArrayRef, wanted: &'static str) -> DesignError {
    // Parquet strings are read as dictionaries: name the values' type.
    let found = match arr.data_type() {
        DataType::Dictionary(_, v) => v.to_string(),
        t => t.to_string(),
    };
    DesignError::BadType { column: name.into(), found, wanted }
}

/// A fast hasher for level lookups (the multiply-rotate hash of rustc's
/// `FxHasher`): level keys are short strings and integers from the data,
/// hashed once per row, where SipHash's resistance to crafted keys buys
/// nothing and cost a third of a clustered second pass.
#[derive(Default, Clone, Copy)]
pub struct LevelHasher(u64);

impl std::hash::Hasher for LevelHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type LevelMap<K> = HashMap<K, u32, std::hash::BuildHasherDefault<LevelHasher>>;

/// The keys of a dictionary-coded string column without nulls, as `u32`,
/// and its dictionary. When the dictionary's values are distinct and none
/// is null, the keys are the column's codes in [`categorical_column`]
/// (whose level table then has one level per value).
pub fn dictionary_keys<'a>(batch: &'a RecordBatch, name: &str) -> Option<(&'a [u32], &'a ArrayRef)> {
    let d = batch.column_by_name(name)?.as_any().downcast_ref::<DictionaryArray<Int32Type>>()?;
    if d.null_count() != 0 || !matches!(d.values().data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        return None;
    }
    let keys: &[i32] = d.keys().values();
    // SAFETY: i32 and u32 have the same size and alignment, and every bit
    // pattern is a u32 (keys are non-negative in a valid array).
    Some((unsafe { std::slice::from_raw_parts(keys.as_ptr().cast(), keys.len()) }, d.values()))
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
            let mut map: LevelMap<i64> = LevelMap::default();
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
            let mut map: LevelMap<u64> = LevelMap::default();
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
        DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8) => {
            // Code the dictionary's values once (a dictionary may repeat a
            // value: they share a level), then each row by its key.
            let dict = arr.as_any_dictionary();
            let values = cast(dict.values(), &DataType::Utf8).map_err(|_| bad_type(name, arr, "a category"))?;
            let values = values.as_string::<i32>();
            let mut map: LevelMap<&str> = LevelMap::default();
            let value_code: Vec<u32> = values
                .iter()
                .map(|v| match v {
                    None => u32::MAX,
                    Some(v) => *map.entry(v).or_insert_with(|| {
                        table.push(Level::Str(v.to_string()));
                        (table.len() - 1) as u32
                    }),
                })
                .collect();
            let nulls = arr.logical_nulls();
            let code_of = |k: usize| value_code.get(k).copied().unwrap_or(u32::MAX);
            if let Some(d) = arr.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
                // The usual keys (Parquet's dictionaries are read so): read
                // in place rather than widened into a new vector first.
                let keys = d.keys().values();
                // Distinct dictionary values (the usual case) code as their keys.
                let identity = value_code.iter().enumerate().all(|(i, &c)| c == i as u32);
                let len = value_code.len() as u32;
                match &nulls {
                    None if identity => codes
                        .iter_mut()
                        .zip(keys.iter())
                        .for_each(|(c, &k)| *c = if (k as u32) < len { k as u32 } else { u32::MAX }),
                    None => codes.iter_mut().zip(keys.iter()).for_each(|(c, &k)| *c = code_of(k as usize)),
                    Some(n) => {
                        for (r, (c, &k)) in codes.iter_mut().zip(keys.iter()).enumerate() {
                            if n.is_valid(r) {
                                *c = code_of(k as usize);
                            }
                        }
                    }
                }
            } else {
                let keys = dict.normalized_keys();
                for (r, c) in codes.iter_mut().enumerate() {
                    if nulls.as_ref().is_none_or(|n| n.is_valid(r)) {
                        *c = code_of(keys[r]);
                    }
                }
            }
        }
        _ => {
            let s = cast(arr, &DataType::Utf8).map_err(|_| bad_type(name, arr, "a category"))?;
            let a = s.as_string::<i32>();
            let mut map: LevelMap<&str> = LevelMap::default();
            // Runs of one level are common (sorted or grouped files): the
            // previous row's level is tried before the map.
            let mut prev: Option<(&str, u32)> = None;
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    let v = a.value(r);
                    if let Some((pv, pc)) = prev {
                        if pv == v {
                            *c = pc;
                            continue;
                        }
                    }
                    *c = match map.get(v) {
                        Some(&k) => k,
                        None => {
                            table.push(Level::Str(v.to_string()));
                            let k = (table.len() - 1) as u32;
                            map.insert(v, k);
                            k
                        }
                    };
                    prev = Some((v, *c));
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
            direct,
        }
    }

    /// With [`only`](Self::only) set: the chunk's rows of that group and
    /// their positions in the chunk (`None`: every row is read).
    pub fn select_group(&self, chunk: &RecordBatch) -> Result<Option<(RecordBatch, Vec<usize>)>, DesignError> {
        let Some((column, level)) = &self.only else { return Ok(None) };
        let (codes, table) = categorical_column(chunk, column)?;
        let code = table.iter().position(|l| l == level).map(|c| c as u32);
        let rows: Vec<usize> = (0..codes.len()).filter(|&r| Some(codes[r]) == code).collect();
        let mask = BooleanArray::from((0..codes.len()).map(|r| Some(codes[r]) == code).collect::<Vec<bool>>());
        let sub = arrow::compute::filter_record_batch(chunk, &mask)
            .map_err(|e| DesignError::NoColumn { column: format!("{column} (selecting the group: {e})") })?;
        Ok(Some((sub, rows)))
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

    /// Mark the rows where a [`direct_column`] is missing (null, or NaN in
    /// a float column) and refuse infinities; `factor` is the design factor
    /// the column feeds. Row by row only when some slot is not finite.
    fn scan_direct(
        &self,
        arr: &dyn Array,
        column: &str,
        factor: &str,
        missing: &mut [bool],
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let nulls = arr.nulls().filter(|n| n.null_count() > 0);
        if all_slots_finite(arr) {
            if let Some(nulls) = nulls {
                for r in (!nulls.inner()).set_indices() {
                    if self.missing == MissingPolicy::Error {
                        return Err(DesignError::Missing { column: column.into(), row: r, at: at(r) });
                    }
                    missing[r] = true;
                }
            }
            return Ok(());
        }
        for (r, m) in missing.iter_mut().enumerate() {
            let x = float_slot(arr, r);
            if nulls.is_some_and(|n| n.is_null(r)) || x.is_nan() {
                if self.missing == MissingPolicy::Error {
                    return Err(DesignError::Missing { column: column.into(), row: r, at: at(r) });
                }
                *m = true;
            } else if x.is_infinite() {
                return Err(DesignError::NotFinite {
                    factor: factor.to_string(),
                    value: describe(x),
                    row: r,
                    at: at(r),
                    hint: format!("the input column '{column}' holds an infinite value"),
                });
            }
        }
        Ok(())
    }

    /// The source columns of a batch read in place, for a model of plain
    /// numeric columns without weights: the arrays in the order the checks
    /// run (response, then factors; see [`direct_index`](Self::direct_index))
    /// and the kept rows as a bit mask. Nulls are checked exactly as
    /// [`block`](Self::block) does. A NaN or infinity on a kept row is left
    /// for the kernels to notice (a fractional part or a residual that is
    /// not finite), which then decline so that `block` sorts out missing
    /// values from errors row by row; with `--missing error` the first
    /// missing value must be the one `block` would name, so floats are
    /// checked up front then. `Ok(None)` where this does not apply.
    pub fn direct_inputs(
        &self,
        batch: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<Option<DirectInputs>, DesignError> {
        let Some(plan) = &self.direct else { return Ok(None) };
        let n = batch.num_rows();
        let mut arrays = Vec::with_capacity(plan.checks.len());
        for (_, c, categorical) in &plan.checks {
            match batch.column_by_name(c) {
                Some(a) if *categorical || matches!(a.data_type(), DataType::Float64 | DataType::Int64) => {
                    arrays.push(a.clone())
                }
                // Bits of a 0/1 column, their first row on a byte boundary.
                Some(a) if a.data_type() == &DataType::Boolean => {
                    let b = a.as_boolean();
                    arrays.push(if b.values().offset() % 8 == 0 {
                        a.clone()
                    } else {
                        let values = BooleanBuffer::new(b.values().sliced(), 0, b.len());
                        Arc::new(BooleanArray::new(values, b.nulls().cloned()))
                    })
                }
                _ => return Ok(None),
            }
        }
        let mut bytes: Option<Vec<u8>> = None;
        let mut codes = Vec::with_capacity(plan.checks.len());
        let mut levels = vec![HashMap::new(); plan.checks.len() - 1];
        for (i, ((_, column, categorical), arr)) in plan.checks.iter().zip(&arrays).enumerate() {
            let missing_rows: Vec<usize> = if *categorical {
                let (c, table) = categorical_column(batch, column)?;
                // The levels met, with their rows, are the first pass's
                // record; the second pass knows them all already and only
                // looks for missing values.
                let any_missing = if self.second_pass.is_none() {
                    // Rows per level (the last slot: missing) over four
                    // copies of the counts in turn: rows of one level in a
                    // row (a factor of few levels) do not wait on each
                    // other's adds.
                    let slots = table.len() + 1;
                    let mut parts = vec![0u64; 4 * slots];
                    for (r, &code) in c.iter().enumerate() {
                        parts[(r % 4) * slots + (code as usize).min(slots - 1)] += 1;
                    }
                    let total = |l: usize| (0..4).map(|q| parts[q * slots + l]).sum::<u64>();
                    for (l, level) in table.iter().enumerate() {
                        let k = total(l);
                        if k > 0 {
                            levels[i - 1].insert(level.clone(), k);
                        }
                    }
                    total(slots - 1) > 0
                } else {
                    c.contains(&u32::MAX)
                };
                let missing: Vec<usize> = if any_missing {
                    c.iter().enumerate().filter(|(_, &code)| code == u32::MAX).map(|(r, _)| r).collect()
                } else {
                    Vec::new()
                };
                codes.push(Some((c, table)));
                missing
            } else {
                codes.push(None);
                if self.missing == MissingPolicy::Error && !all_slots_finite(arr.as_ref()) {
                    return Ok(None);
                }
                match arr.nulls().filter(|n| n.null_count() > 0) {
                    Some(nulls) => (!nulls.inner()).set_indices().collect(),
                    None => Vec::new(),
                }
            };
            if missing_rows.is_empty() {
                continue;
            }
            if self.missing == MissingPolicy::Error {
                let r = missing_rows[0];
                return Err(DesignError::Missing { column: column.clone(), row: r, at: at(r) });
            }
            let mask = bytes.get_or_insert_with(|| {
                let mut b = vec![0xffu8; n.div_ceil(8)];
                if !n.is_multiple_of(8) {
                    b[n / 8] = (1u8 << (n % 8)) - 1;
                }
                b
            });
            for r in missing_rows {
                mask[r / 8] &= !(1u8 << (r % 8));
            }
        }
        let kept = kept_rows(bytes.as_deref(), n);
        Ok(Some(DirectInputs { arrays, codes, mask: bytes, rows: n, kept, levels }))
    }

    /// Where the source column of a numeric block column (a plain term or
    /// the response) sits in [`DirectInputs::arrays`].
    pub fn direct_index(&self, key: &ColumnKey) -> Option<usize> {
        let plan = self.direct.as_ref()?;
        match key {
            ColumnKey::Response => Some(0),
            ColumnKey::Cell { term, levels } if levels.is_empty() => {
                let c = *plan.terms.get(*term as usize)?;
                (!plan.checks[c].2).then_some(c)
            }
            _ => None,
        }
    }

    /// The check (index into [`DirectInputs::codes`]) of term `term` when it
    /// is one categorical factor.
    pub fn direct_factor(&self, term: u32) -> Option<usize> {
        let plan = self.direct.as_ref()?;
        let c = *plan.terms.get(term as usize)?;
        plan.checks[c].2.then_some(c)
    }

    /// The statistics of a batch read straight from its Arrow buffers (see
    /// [`direct_inputs`](Self::direct_inputs)), when its values are exact
    /// in plain arithmetic ([`raw_moments_masked_columns`]): the same bits
    /// `block` and the general kernel give, categorical cells included.
    /// `Ok(None)` where that does not apply.
    pub fn direct_part(
        &self,
        batch: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<Option<DirectPart>, DesignError> {
        let Some(plan) = &self.direct else { return Ok(None) };
        let Some(inputs) = self.direct_inputs(batch, at)? else { return Ok(None) };
        let column = |c: usize| match &inputs.codes[c] {
            Some((codes, table)) => DirectColumn::Factor { codes, levels: table.len() },
            None => DirectColumn::Source(inputs.column(c)),
        };
        let cols: Vec<DirectColumn<'_>> = plan.terms.iter().map(|&c| column(c)).chain([column(0)]).collect();
        let Some(mm) = raw_moments_masked_columns(&cols, inputs.rows, inputs.mask.as_deref()) else {
            return Ok(None);
        };
        // The block's keys: each term's column or cells (levels in order of
        // first appearance among the kept rows, as `block` makes them).
        let mut keys = Vec::with_capacity(mm.raw.s1.len());
        let mut factor = 0;
        for (t, &c) in plan.terms.iter().enumerate() {
            match &inputs.codes[c] {
                None => keys.push(ColumnKey::Cell { term: t as u32, levels: vec![] }),
                Some((_, table)) => {
                    for &code in &mm.cells[factor] {
                        keys.push(ColumnKey::Cell { term: t as u32, levels: vec![table[code as usize].clone()] });
                    }
                    factor += 1;
                }
            }
        }
        keys.push(ColumnKey::Response);
        let levels = inputs.levels;
        Ok(Some(DirectPart {
            keys,
            raw: mm.raw,
            levels,
            rows_in: inputs.rows,
            rows_dropped: inputs.rows - inputs.kept,
        }))
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
        let y = evaluate(&spec.response.kind, &spec.response.name, &mut cache)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    /// A dictionary column is coded by its values, not its keys: two keys
    /// of one value share a level, a null row (whatever its key) has no
    /// level, and levels come in order of first appearance in the
    /// dictionary's values.
    #[test]
    fn dictionary_codes_follow_values_and_nulls() {
        let values = StringArray::from(vec!["Queens", "Brooklyn", "Queens", "Manhattan"]);
        let keys = Int32Array::from(vec![Some(1), Some(0), None, Some(2), Some(3), Some(1)]);
        for with_nulls in [true, false] {
            let keys = if with_nulls { keys.clone() } else { Int32Array::from(vec![1, 0, 3, 2, 3, 1]) };
            let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values.clone())).unwrap();
            let schema = Schema::new(vec![Field::new("b", dict.data_type().clone(), true)]);
            let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(dict)]).unwrap();
            let (codes, table) = categorical_column(&batch, "b").unwrap();
            let names: Vec<String> = table.iter().map(|l| l.to_string()).collect();
            assert_eq!(names, ["Queens", "Brooklyn", "Manhattan"]);
            let want = if with_nulls { vec![1, 0, u32::MAX, 0, 2, 1] } else { vec![1, 0, 2, 0, 2, 1] };
            assert_eq!(codes, want, "nulls: {with_nulls}");
        }
    }
}

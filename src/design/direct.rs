//! The in-place path: when every term is one numeric column (plain, or
//! through an expression whose values are doubles: `np.log(rent)`), a
//! product of such, one categorical factor, numeric factors times one
//! categorical factor, or a product of two categorical factors, and there
//! are no weights, a batch's source columns are handed to the kernels as
//! they are (Float64, Int64, 0/1 as bits, level codes; a transformed
//! column as the `Float64` array of its values), its missing rows as a
//! mask — no design block is built.

use super::arrays::{all_slots_finite, float_slot};
use super::eval::{elementary, power_function, power_of_two, rounds_to_f64, Val};
use super::levels::{categorical_column, describe, YesNo};
use super::{DesignBuilder, DesignError, MissingPolicy};
use crate::bits::kept_rows;
use crate::formula::expr::NumExpr;
use crate::formula::{FactorKind, ModelSpec};
use crate::level::{ColumnKey, Level};
use crate::stats::columns::{DirectColumn, SourceColumn};
use crate::stats::kernel::raw_moments_masked_columns;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// How the in-place path reads a factor's source column.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Read {
    /// A numeric column as it is.
    Plain,
    /// An expression of columns whose value may be an `f64` column
    /// ([`may_be_f64`]: `np.log(rent)`, `I(x ** 1.5)`, `np.exp(-d / 7)`,
    /// `I(age - 50)`, `I(sqft ** 2)`), evaluated as the design block
    /// evaluates it, into a `Float64` array whose nulls are its source
    /// columns' nulls; a batch where it has low words builds the block.
    Expression(NumExpr),
    /// A categorical factor's level codes.
    Categorical,
}

/// Whether an expression's value may be a column of `f64` (no low
/// words): an elementary function or a non-integer power is one whatever
/// its argument; sums, differences, products, whole powers, absolute
/// values and quotients by a power of two of such values, columns and
/// constants are one where the double-double arithmetic is exact (whole
/// numbers of modest size: `I(age - 50)`, `I(sqft ** 2)`). Only the values
/// tell, so [`DesignBuilder::direct_inputs`] evaluates and hands a batch
/// with low words to the design block. Quotients by other constants
/// (`I(x / 3)`), by columns and negative powers inside an expression are
/// ruled out here: their values have low words almost always, and
/// evaluating them twice would only cost. (A term that *is* a quotient is
/// a double: [`rounds_to_f64`].)
fn may_be_f64(e: &NumExpr) -> bool {
    match e {
        NumExpr::Const(_) | NumExpr::Column(_) => true,
        NumExpr::Call(g, a) => elementary(*g).is_some() || may_be_f64(a),
        NumExpr::Pow(a, p) => match p.as_ref() {
            NumExpr::Const(p) if power_function(*p).is_some() => true,
            NumExpr::Const(p) => *p >= 0.0 && may_be_f64(a),
            _ => false,
        },
        NumExpr::Neg(a) => may_be_f64(a),
        NumExpr::Add(a, b) | NumExpr::Sub(a, b) | NumExpr::Mul(a, b) => may_be_f64(a) && may_be_f64(b),
        NumExpr::Div(a, b) => matches!(b.as_ref(), NumExpr::Const(c) if power_of_two(*c)) && may_be_f64(a),
    }
}

/// How the in-place path reads a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TermRead {
    /// One check: a factor (a numeric column or expression, or a
    /// categorical factor's cells), or a product of numeric factors, whose
    /// check follows the factors'.
    Check(usize),
    /// A numeric check times the indicators of a categorical factor's
    /// levels (`size_sqft:C(borough)`, `x:z:C(g)`): one column per level
    /// met among a chunk's kept rows, in order of first appearance — the
    /// block's cells of the term — made from the values and the codes
    /// ([`by_level_columns`]).
    ByLevel { values: usize, factor: usize },
    /// A product of two categorical factors (`C(borough):C(bedrooms)`):
    /// one factor whose levels are the pairs met (the block's cells, in
    /// order of first appearance among the kept rows), coded from the two
    /// factors' codes ([`crossed_codes`]).
    Cross { a: usize, b: usize },
}

/// Which source columns the in-place path reads, and in what order.
#[derive(Clone, Debug)]
pub(super) struct DirectPlan {
    /// (source column, how it is read): the response, then the factors, in
    /// the order `block` checks them, then the products of numeric factors.
    checks: Vec<(String, Read)>,
    /// How each term is read, in term order.
    terms: Vec<TermRead>,
    /// How many checks are the model's factors (after the response).
    factors: usize,
}

impl DirectPlan {
    /// Every term one plain numeric column, one expression of columns
    /// that may be an `f64` column, a product of such, one categorical
    /// factor (its full cells are indicators, accumulated from level
    /// codes), such numeric factors times one categorical factor, or a
    /// product of two categorical factors (coded as one factor of pairs).
    pub(super) fn of(spec: &ModelSpec) -> Option<DirectPlan> {
        // An expression's check: under its first column, when it has one
        // and may be read in place.
        let expression = |e: NumExpr| {
            if !(may_be_f64(&e) || rounds_to_f64(&e)) {
                return None;
            }
            let mut cols = Vec::new();
            e.columns(&mut cols);
            Some((cols.first()?.clone(), Read::Expression(e)))
        };
        let check = |f: &crate::formula::Factor| match &f.kind {
            FactorKind::Numeric(NumExpr::Column(c)) => Some((c.clone(), Read::Plain)),
            FactorKind::Numeric(e) => expression(e.clone()),
            FactorKind::Categorical { column, .. } => Some((column.clone(), Read::Categorical)),
        };
        let response = check(&spec.response).filter(|c| !matches!(c.1, Read::Categorical))?;
        let mut checks = vec![response];
        for f in &spec.factors {
            checks.push(check(f)?);
        }
        let mut terms = Vec::new();
        for factors in &spec.terms {
            if let [f] = factors.as_slice() {
                terms.push(TermRead::Check(f + 1));
                continue;
            }
            let categorical = |f: &usize| matches!(spec.factors[*f].kind, FactorKind::Categorical { .. });
            let (cats, nums): (Vec<usize>, Vec<usize>) = factors.iter().partition(|f| categorical(f));
            if let ([a, b], []) = (cats.as_slice(), nums.as_slice()) {
                terms.push(TermRead::Cross { a: a + 1, b: b + 1 });
                continue;
            }
            let values = match nums.as_slice() {
                [] => return None,
                [f] => f + 1,
                _ => {
                    // A product of numeric factors (`sqft:bedrooms`): one
                    // more check, the expression of their product, which
                    // `eval` multiplies in the order `block` does.
                    let mut e: Option<NumExpr> = None;
                    for &f in &nums {
                        let FactorKind::Numeric(x) = &spec.factors[f].kind else { return None };
                        e = Some(match e {
                            None => x.clone(),
                            Some(p) => NumExpr::Mul(Box::new(p), Box::new(x.clone())),
                        });
                    }
                    checks.push(expression(e?)?);
                    checks.len() - 1
                }
            };
            terms.push(match cats.as_slice() {
                [] => TermRead::Check(values),
                [g] => TermRead::ByLevel { values, factor: g + 1 },
                _ => return None,
            });
        }
        Some(DirectPlan { checks, terms, factors: spec.factors.len() })
    }
}

/// A categorical factor's level table in one batch and its rows' level
/// codes (`u32::MAX`: missing). A yes/no column keeps its bits, and its
/// codes are made only if asked for: the first pass's kernels and the
/// second pass's fitted values read the bits.
pub struct FactorCodes {
    pub table: Vec<Level>,
    codes: OnceCell<Vec<u32>>,
    yes_no: Option<YesNo>,
}

impl FactorCodes {
    fn coded(codes: Vec<u32>, table: Vec<Level>) -> FactorCodes {
        FactorCodes { table, codes: OnceCell::from(codes), yes_no: None }
    }

    fn yes_no(bits: YesNo) -> FactorCodes {
        FactorCodes { table: vec![Level::Bool(false), Level::Bool(true)], codes: OnceCell::new(), yes_no: Some(bits) }
    }

    pub fn codes(&self) -> &[u32] {
        self.codes.get_or_init(|| self.yes_no.as_ref().expect("a factor without codes is yes/no").codes())
    }

    /// A yes/no column's bits (its table is no, yes).
    pub fn as_yes_no(&self) -> Option<&YesNo> {
        self.yes_no.as_ref()
    }

    /// Rows per level of the table, missing ones not counted.
    fn counts(&self) -> Vec<u64> {
        match &self.yes_no {
            Some(y) => y.counts().to_vec(),
            None => level_counts(self.codes(), self.table.len()),
        }
    }

    fn missing_rows(&self) -> Vec<usize> {
        match &self.yes_no {
            Some(y) => y.missing_rows(),
            None => self.codes().iter().enumerate().filter(|(_, &code)| code == u32::MAX).map(|(r, _)| r).collect(),
        }
    }

    fn any_missing(&self) -> bool {
        match &self.yes_no {
            Some(y) => y.missing().is_some(),
            None => self.codes().contains(&u32::MAX),
        }
    }
}

/// The source columns of one batch, read in place.
pub struct DirectInputs {
    /// Per check (response, then factors): the array.
    pub arrays: Vec<ArrayRef>,
    /// Per check: a categorical factor's level codes and table.
    pub codes: Vec<Option<FactorCodes>>,
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

/// Rows per level of level codes (`u32::MAX`: missing, not counted). A
/// factor of few levels (yes/no columns, `C(borough)`) is counted level by
/// level, each a comparison the compiler runs on vectors; more, row by
/// row over four copies of the counts in turn, so that rows of one level
/// in a row do not wait on each other's adds.
pub(super) fn level_counts(codes: &[u32], levels: usize) -> Vec<u64> {
    if levels <= 16 {
        return (0..levels as u32).map(|l| codes.iter().filter(|&&c| c == l).count() as u64).collect();
    }
    let slots = levels + 1;
    let mut parts = vec![0u64; 4 * slots];
    for (r, &code) in codes.iter().enumerate() {
        parts[(r % 4) * slots + (code as usize).min(slots - 1)] += 1;
    }
    (0..levels).map(|l| (0..4).map(|q| parts[q * slots + l]).sum()).collect()
}

/// The raw sums of one batch taken without building its design block.
pub struct DirectPart {
    pub keys: Vec<ColumnKey>,
    pub raw: crate::stats::columns::RawMoments,
    pub levels: Vec<HashMap<Level, u64>>,
    pub rows_in: usize,
    pub rows_dropped: usize,
}

/// A source column that is read in place: a primitive numeric array, or
/// the bits of a 0/1 column (`source::binary_pages`), whose values are
/// converted to `f64` straight into the design matrix (no cast kernel, no
/// intermediate column).
pub(super) fn direct_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    use DataType::*;
    let arr = batch.column_by_name(name)?;
    matches!(
        arr.data_type(),
        Float64 | Float32 | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Boolean
    )
    .then(|| arr.clone())
}

/// Each byte's eight bits as 0.0 and 1.0, low bit first: a bitmap byte
/// becomes eight `f64`s by one 64-byte copy (16 KiB, built at compile
/// time), where a shift per bit costs a multiple of that on a baseline
/// x86-64 build.
pub(super) static BYTE_VALUES: [[f64; 8]; 256] = {
    let mut t = [[0.0f64; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            t[b][k] = ((b >> k) & 1) as f64;
            k += 1;
        }
        b += 1;
    }
    t
};

/// Append the bits `run` of `bits` to `out` as 0.0 and 1.0.
fn extend_bits(out: &mut Vec<f64>, bits: &BooleanBuffer, run: Range<usize>) {
    let chunks = bits.inner().bit_chunks(bits.offset() + run.start, run.len());
    out.reserve(run.len());
    for word in chunks.iter() {
        for byte in word.to_le_bytes() {
            out.extend_from_slice(&BYTE_VALUES[usize::from(byte)]);
        }
    }
    let rest = chunks.remainder_bits();
    out.extend((0..chunks.remainder_len()).map(|k| ((rest >> k) & 1) as u32 as f64));
}

/// Append the rows `runs` of a [`direct_column`] to `out`, as `f64`
/// (integers beyond 2⁵³ round, as any conversion to `f64` does, and stay
/// whole numbers). Returns whether the values are whole numbers by type.
pub(super) fn extend_direct(out: &mut Vec<f64>, arr: &dyn Array, runs: &[Range<usize>]) -> bool {
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
        DataType::Boolean => {
            let bits = arr.as_boolean().values();
            for r in runs {
                extend_bits(out, bits, r.clone());
            }
        }
        other => unreachable!("direct_column admits primitive numbers and bits only, not {other}"),
    }
    arr.data_type().is_integer() || arr.data_type() == &DataType::Boolean
}

impl DesignBuilder {
    /// Mark the rows where a [`direct_column`] is missing (null, or NaN in
    /// a float column) and refuse infinities; `factor` is the design factor
    /// the column feeds. Row by row only when some slot is not finite.
    pub(super) fn scan_direct(
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
        for (c, read) in &plan.checks {
            match (batch.column_by_name(c), read) {
                (_, Read::Expression(e)) => match self.expression_column(e, batch)? {
                    Some(a) => arrays.push(a),
                    None => return Ok(None),
                },
                (Some(a), Read::Categorical) => arrays.push(a.clone()),
                (Some(a), Read::Plain) if matches!(a.data_type(), DataType::Float64 | DataType::Int64) => {
                    arrays.push(a.clone())
                }
                // Bits of a 0/1 column, their first row on a byte boundary.
                (Some(a), Read::Plain) if a.data_type() == &DataType::Boolean => {
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
        let mut levels = vec![HashMap::new(); plan.factors];
        for (i, ((column, read), arr)) in plan.checks.iter().zip(&arrays).enumerate() {
            let missing_rows: Vec<usize> = if *read == Read::Categorical {
                let factor = match arr.data_type() {
                    DataType::Boolean => FactorCodes::yes_no(YesNo::of(arr.as_boolean())),
                    _ => {
                        let (c, table) = categorical_column(batch, column)?;
                        FactorCodes::coded(c, table)
                    }
                };
                // The levels met, with their rows, are the first pass's
                // record; the second pass knows them all already and only
                // looks for missing values.
                let any_missing = if self.second_pass.is_none() {
                    let counts = factor.counts();
                    for (level, &k) in factor.table.iter().zip(&counts) {
                        if k > 0 {
                            levels[i - 1].insert(level.clone(), k);
                        }
                    }
                    counts.iter().sum::<u64>() < n as u64
                } else {
                    factor.any_missing()
                };
                let missing = if any_missing { factor.missing_rows() } else { Vec::new() };
                codes.push(Some(factor));
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

    /// A [`Read::Expression`]'s values, evaluated as `block` evaluates
    /// them, as a `Float64` array with its source columns' nulls; `None`
    /// where the value is not a column of `f64`, and with `--missing
    /// error` for an expression of several columns (`block` names the
    /// column of the first missing value; of one, the check names it).
    fn expression_column(&self, e: &NumExpr, batch: &RecordBatch) -> Result<Option<ArrayRef>, DesignError> {
        let mut cols = Vec::new();
        e.columns(&mut cols);
        if self.missing == MissingPolicy::Error && cols.len() > 1 {
            return Ok(None);
        }
        let Val::Col { hi, lo: None } = self.eval_term(e, batch, &mut HashMap::new())? else { return Ok(None) };
        let mut nulls: Option<NullBuffer> = None;
        for c in &cols {
            let n = batch.column_by_name(c).and_then(|a| a.logical_nulls());
            nulls = NullBuffer::union(nulls.as_ref(), n.as_ref());
        }
        Ok(Some(Arc::new(Float64Array::new(hi, nulls))))
    }

    /// Where the source column of a numeric block column (a plain term or
    /// the response) sits in [`DirectInputs::arrays`].
    pub fn direct_index(&self, key: &ColumnKey) -> Option<usize> {
        let plan = self.direct.as_ref()?;
        match key {
            ColumnKey::Response => Some(0),
            ColumnKey::Cell { term, levels } if levels.is_empty() => match *plan.terms.get(*term as usize)? {
                TermRead::Check(c) => (plan.checks[c].1 != Read::Categorical).then_some(c),
                TermRead::ByLevel { .. } | TermRead::Cross { .. } => None,
            },
            _ => None,
        }
    }

    /// The check (index into [`DirectInputs::codes`]) of term `term` when it
    /// is one categorical factor.
    pub fn direct_factor(&self, term: u32) -> Option<usize> {
        let plan = self.direct.as_ref()?;
        match *plan.terms.get(term as usize)? {
            TermRead::Check(c) => (plan.checks[c].1 == Read::Categorical).then_some(c),
            TermRead::ByLevel { .. } | TermRead::Cross { .. } => None,
        }
    }

    /// The checks (values, factor) of term `term` when it is read by
    /// level (`TermRead::ByLevel`: numeric factors times a categorical
    /// one's levels).
    pub fn direct_by_level(&self, term: u32) -> Option<(usize, usize)> {
        match *self.direct.as_ref()?.terms.get(term as usize)? {
            TermRead::ByLevel { values, factor } => Some((values, factor)),
            TermRead::Check(_) | TermRead::Cross { .. } => None,
        }
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
        // Factor `f`'s check is check `f + 1` (after the response's).
        for &(f, _) in &self.level_limits {
            if let Some(factor) = inputs.codes[f + 1].as_ref() {
                self.check_levels(f, factor.table.len())?;
            }
        }
        // The columns of the terms read by level, made first: `cols`
        // borrows them.
        let mut by_level = Vec::new();
        for term in &plan.terms {
            if let TermRead::ByLevel { values, factor } = *term {
                let codes = inputs.codes[factor].as_ref().expect("a categorical check has codes");
                let values = inputs.column(values);
                let made =
                    by_level_columns(values, codes.codes(), codes.table.len(), inputs.rows, inputs.mask.as_deref());
                let Some(made) = made else {
                    return Ok(None);
                };
                by_level.push(made);
            }
        }
        // The codes of the products of two factors, likewise.
        let mut crossed = Vec::new();
        for term in &plan.terms {
            if let TermRead::Cross { a, b } = *term {
                let [fa, fb] = [a, b].map(|c| inputs.codes[c].as_ref().expect("a categorical check has codes"));
                let Some(made) = crossed_codes(fa.codes(), fb.codes(), fa.table.len(), fb.table.len()) else {
                    return Ok(None);
                };
                crossed.push(made);
            }
        }
        let column = |c: usize| match &inputs.codes[c] {
            Some(f) => match f.as_yes_no() {
                Some(y) => DirectColumn::YesNo(y.yes()),
                None => DirectColumn::Factor { codes: f.codes(), levels: f.table.len() },
            },
            None => DirectColumn::Source(inputs.column(c)),
        };
        let mut made = by_level.iter();
        let mut cross = crossed.iter();
        let mut cols: Vec<DirectColumn<'_>> = Vec::new();
        for term in &plan.terms {
            match *term {
                TermRead::Check(c) => cols.push(column(c)),
                TermRead::ByLevel { .. } => {
                    let (_, columns) = made.next().expect("columns per term read by level");
                    cols.extend(columns.iter().map(|c| DirectColumn::Source(SourceColumn::F64(c))));
                }
                TermRead::Cross { .. } => {
                    let (codes, levels) = cross.next().expect("codes per product of factors");
                    cols.push(DirectColumn::Factor { codes, levels: *levels });
                }
            }
        }
        cols.push(column(0));
        let Some(mm) = raw_moments_masked_columns(&cols, inputs.rows, inputs.mask.as_deref()) else {
            return Ok(None);
        };
        // The block's keys: each term's column or cells (levels in order of
        // first appearance among the kept rows, as `block` makes them).
        let mut keys = Vec::with_capacity(mm.raw.s1.len());
        let mut factor = 0;
        let mut made = by_level.iter();
        for (t, term) in plan.terms.iter().enumerate() {
            let (table, codes) = match *term {
                TermRead::Check(c) => match &inputs.codes[c] {
                    None => {
                        keys.push(ColumnKey::Cell { term: t as u32, levels: vec![] });
                        continue;
                    }
                    Some(f) => {
                        factor += 1;
                        (&f.table, &mm.cells[factor - 1])
                    }
                },
                TermRead::ByLevel { factor, .. } => {
                    let f = inputs.codes[factor].as_ref().expect("a categorical check has codes");
                    (&f.table, &made.next().expect("columns per term read by level").0)
                }
                TermRead::Cross { a, b } => {
                    factor += 1;
                    let [ta, tb] =
                        [a, b].map(|c| &inputs.codes[c].as_ref().expect("a categorical check has codes").table);
                    for &code in &mm.cells[factor - 1] {
                        let (ca, cb) = (code as usize / tb.len(), code as usize % tb.len());
                        keys.push(ColumnKey::Cell { term: t as u32, levels: vec![ta[ca].clone(), tb[cb].clone()] });
                    }
                    continue;
                }
            };
            for &code in codes {
                keys.push(ColumnKey::Cell { term: t as u32, levels: vec![table[code as usize].clone()] });
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
}

/// Most levels a term read by level may meet in a chunk: past this, the
/// columns (one per level) cost more than the block's.
const BY_LEVEL_LIMIT: usize = 16;

/// The columns of `values` times the indicators of a factor's levels
/// (`codes`, below `levels`) over `n` rows (`mask`: the kept ones): one
/// column per level met among the kept rows, in order of first
/// appearance, holding the value where the row has the level and 0
/// elsewhere (dropped rows: anything, as every kernel masks them) — the
/// block's cells of the term, value for value (an integer converted as
/// the block converts it). Returns the levels' codes and the columns;
/// `None` past [`BY_LEVEL_LIMIT`] levels.
fn by_level_columns(
    values: SourceColumn<'_>,
    codes: &[u32],
    levels: usize,
    n: usize,
    mask: Option<&[u8]>,
) -> Option<(Vec<u32>, Vec<Vec<f64>>)> {
    let mut seen = vec![false; levels];
    let mut met = Vec::new();
    for (r, &code) in codes[..n].iter().enumerate() {
        if code != u32::MAX && !seen[code as usize] && crate::bits::is_kept(mask, r) {
            seen[code as usize] = true;
            met.push(code);
            if met.len() > BY_LEVEL_LIMIT {
                return None;
            }
            if met.len() == levels {
                break;
            }
        }
    }
    let converted: Vec<f64>;
    let x: &[f64] = match values {
        SourceColumn::F64(v) => &v[..n],
        SourceColumn::I64(_) | SourceColumn::Bits(_) => {
            converted = (0..n).map(|r| values.value(r)).collect();
            &converted
        }
    };
    // One select per row and level, on vectors.
    let columns = met
        .iter()
        .map(|&level| codes[..n].iter().zip(x).map(|(&c, &v)| if c == level { v } else { 0.0 }).collect())
        .collect();
    Some((met, columns))
}

/// Most pairs of levels a product of two factors may code in a chunk
/// (the cells' tables are sized by it); past this, the block.
const CROSS_LIMIT: usize = 1 << 16;

/// The codes of a product of two factors: pair `(a, b)` of codes below
/// `(la, lb)` is `a · lb + b`, a row missing either is missing
/// (`u32::MAX`). Returns the codes and the number of pairs; `None` past
/// [`CROSS_LIMIT`] pairs.
fn crossed_codes(a: &[u32], b: &[u32], la: usize, lb: usize) -> Option<(Vec<u32>, usize)> {
    let pairs = la.checked_mul(lb).filter(|&p| p <= CROSS_LIMIT)?;
    let codes = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| if x == u32::MAX || y == u32::MAX { u32::MAX } else { x * lb as u32 + y })
        .collect();
    Some((codes, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formula::SourceType;

    fn plan(formula: &str) -> Option<Vec<(String, Read)>> {
        let cols: Vec<(String, SourceType)> =
            [("y", SourceType::Numeric), ("x", SourceType::Numeric), ("g", SourceType::Text)]
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect();
        DirectPlan::of(&ModelSpec::resolve(formula, &cols).unwrap()).map(|p| p.checks)
    }

    #[test]
    fn a_function_of_columns_is_read_in_place() {
        let checks =
            plan("np.log(y) ~ np.log1p(x) + I(x ** 1.5) + I(x ** 0.5) + np.exp(x) + np.log(x + 1) + I((x + y) ** 0.3) + C(g)")
                .unwrap();
        let sources: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(sources, ["y", "x", "x", "x", "x", "x", "x", "g"]);
        assert!(checks[..7].iter().all(|c| matches!(c.1, Read::Expression(_))));
        assert_eq!(checks[7].1, Read::Categorical);
        // Sums, products, whole powers, absolute values and halvings may
        // be exact (the batch's values decide); a term that is a quotient
        // is a double; quotients inside an expression and powers by a
        // column build the block.
        for f in [
            "y ~ I(x ** 2)",
            "y ~ I(x - 50)",
            "y ~ np.abs(x)",
            "y ~ I(x * x + 2 * y)",
            "y ~ I(-x / 4)",
            "y ~ I(x / 3)",
            "y ~ I(x / y)",
            "y ~ I(1 / (x + 1))",
            "y ~ I(x ** -1)",
            "I(y / 100) ~ x",
        ] {
            let checks = plan(f).unwrap_or_else(|| panic!("{f}"));
            let e = if f.starts_with('I') { 0 } else { 1 };
            assert!(matches!(checks[e].1, Read::Expression(_)), "{f}");
        }
        for f in ["y ~ I(x ** y)", "y ~ I((x / 3) ** 2)", "y ~ I(x / 3 + 1)", "y ~ np.abs(x / 3)"] {
            assert!(plan(f).is_none(), "{f}");
        }
        // Products of numeric factors: one more check each, after the
        // factors'; with a categorical factor, the block.
        let checks = plan("y ~ x + x:np.log(y) + x:y").unwrap();
        let product = |a: NumExpr, b: NumExpr| NumExpr::Mul(Box::new(a), Box::new(b));
        let (x, y) = (NumExpr::Column("x".into()), NumExpr::Column("y".into()));
        let log_y = NumExpr::Call(crate::formula::expr::Func::Log, Box::new(y.clone()));
        // The response, three factors (x, log y, y), two products.
        assert_eq!(checks.len(), 6, "{checks:?}");
        assert_eq!(checks[4], ("x".to_string(), Read::Expression(product(x.clone(), log_y))));
        assert_eq!(checks[5], ("x".to_string(), Read::Expression(product(x, y))));
        assert!(plan("y ~ x:I(x / 3)").is_none());
        // A product with one categorical factor: its numeric part read by
        // the factor's levels; with two, the block.
        let spec = |f: &str| {
            let cols: Vec<(String, SourceType)> =
                [("y", SourceType::Numeric), ("x", SourceType::Numeric), ("g", SourceType::Text)]
                    .iter()
                    .map(|(n, t)| (n.to_string(), *t))
                    .collect();
            DirectPlan::of(&ModelSpec::resolve(f, &cols).unwrap())
        };
        let p = spec("y ~ x:C(g) + x:y:C(g)").unwrap();
        // Checks: the response, three factors, the product x·y.
        assert_eq!(p.checks.len(), 5, "{:?}", p.checks);
        let [TermRead::ByLevel { values: a, factor: g }, TermRead::ByLevel { values: b, factor: h }] = p.terms[..]
        else {
            panic!("{:?}", p.terms)
        };
        assert_eq!(p.checks[a], ("x".to_string(), Read::Plain));
        assert_eq!((g, &p.checks[g]), (h, &("g".to_string(), Read::Categorical)));
        let product = NumExpr::Mul(Box::new(NumExpr::Column("x".into())), Box::new(NumExpr::Column("y".into())));
        assert_eq!((b, &p.checks[b]), (4, &("x".to_string(), Read::Expression(product))));
        // A product of two factors: one factor of their pairs; with a
        // numeric factor too, or three factors, the block.
        let p = spec("y ~ C(g):C(x) + C(g)").unwrap();
        assert_eq!(p.terms[..2], [TermRead::Cross { a: 1, b: 2 }, TermRead::Check(1)], "{:?}", p.terms);
        assert_eq!((&p.checks[1].1, &p.checks[2].1), (&Read::Categorical, &Read::Categorical));
        assert!(plan("y ~ x:C(g):C(x)").is_none());
        assert!(plan("y ~ C(g):C(x):C(y)").is_none());
    }

    /// The codes of a product of two factors: one per pair of codes, in
    /// the second factor's order within the first's; a row missing either
    /// is missing; too many pairs none.
    #[test]
    fn crossed_codes_number_the_pairs() {
        let (a, b) = ([0, 2, u32::MAX, 1, 2], [1, 0, 1, u32::MAX, 2]);
        assert_eq!(crossed_codes(&a, &b, 3, 3), Some((vec![1, 6, u32::MAX, u32::MAX, 8], 9)));
        assert!(crossed_codes(&a, &b, 1 << 9, 1 << 8).is_none());
    }

    /// A term read by level: a column per level met among the kept rows,
    /// in order of first appearance, the value where the row has the level
    /// and 0 elsewhere; integers and bits converted; too many levels none.
    #[test]
    fn by_level_columns_are_the_blocks_cells() {
        let codes = [2, 0, 2, u32::MAX, 1, 0, 3];
        let x = [1.5, 2.0, -3.0, f64::NAN, 4.0, 5.0, 6.0];
        // Row 4 (level 1) dropped: level 1 is not met; row 3 is missing.
        let mask = [0b0110_0111u8];
        let (levels, cols) = by_level_columns(SourceColumn::F64(&x), &codes, 4, 7, Some(&mask)).unwrap();
        assert_eq!(levels, [2, 0, 3]);
        let kept = [0, 1, 2, 5, 6];
        for (c, want) in
            cols.iter().zip([[1.5, 0.0, -3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0, 6.0]])
        {
            let got: Vec<f64> = kept.iter().map(|&r| c[r]).collect();
            assert_eq!(got, want);
        }
        let ints = [3i64, -4, 5, 0, 9, 1 << 60, 7];
        let (_, cols) = by_level_columns(SourceColumn::I64(&ints), &codes, 4, 7, None).unwrap();
        assert_eq!(cols[1][5], (1i64 << 60) as f64);
        assert_eq!(cols[0][2], 5.0);
        let bits = [0b0100_0101u8];
        let (levels, cols) = by_level_columns(SourceColumn::Bits(&bits), &codes, 4, 7, None).unwrap();
        assert_eq!(levels, [2, 0, 1, 3]);
        assert_eq!(cols[0], [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(cols[3], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let many: Vec<u32> = (0..40).map(|r| r % 17).collect();
        let x = vec![1.0; 40];
        assert!(by_level_columns(SourceColumn::F64(&x), &many, 17, 40, None).is_none());
        assert_eq!(by_level_columns(SourceColumn::F64(&x), &many, 17, 16, None).unwrap().0.len(), 16);
    }

    /// Which batches an expression is read in place for: where its values
    /// have no low words — also where a source column is null (whose NaN
    /// has no low word) — and not where they have.
    #[test]
    fn an_expression_is_read_in_place_where_its_values_are_doubles() {
        let cols: Vec<(String, SourceType)> = ["y", "x"].iter().map(|n| (n.to_string(), SourceType::Numeric)).collect();
        let batch = |x: Vec<Option<f64>>| {
            let y = Float64Array::from(vec![1.0; x.len()]);
            RecordBatch::try_from_iter([
                ("y", Arc::new(y) as ArrayRef),
                ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
            ])
            .unwrap()
        };
        let whole = batch(vec![Some(3.0), None, Some(-7.0), Some(4096.0)]);
        let tenths = batch(vec![Some(0.1), Some(2.0), None, Some(3.0)]);
        let read = |formula: &str, b: &RecordBatch| {
            let spec = Arc::new(ModelSpec::resolve(formula, &cols).unwrap());
            let builder = DesignBuilder::new(spec, None, MissingPolicy::Drop);
            builder.direct_inputs(b, &|r| format!("row {r}")).unwrap().map(|i| i.arrays[1].clone())
        };
        for (formula, want) in [
            ("y ~ I(x - 3)", [0.0, f64::NAN, -10.0, 4093.0]),
            ("y ~ I(x ** 2)", [9.0, f64::NAN, 49.0, 16_777_216.0]),
            ("y ~ np.abs(x - 3)", [0.0, f64::NAN, 10.0, 4093.0]),
            ("y ~ I(x * x / 4 + 1)", [3.25, f64::NAN, 13.25, 4_194_305.0]),
        ] {
            let a = read(formula, &whole).unwrap_or_else(|| panic!("{formula}: in place"));
            let a = a.as_primitive::<Float64Type>();
            assert_eq!(a.null_count(), 1, "{formula}: the null stays a null");
            for r in [0, 2, 3] {
                assert_eq!(a.value(r), want[r], "{formula}: row {r}");
            }
            // 0.1 − 3 and 0.1² have low words: the design block keeps them.
            assert!(read(formula, &tenths).is_none(), "{formula}: tenths build the block");
        }
        // A quotient term is IEEE division's double, tenths or not, and
        // the block holds the same doubles, without low words.
        let ieee = |x: &[Option<f64>], f: &dyn Fn(f64) -> f64| -> Vec<f64> {
            x.iter().map(|v| v.map_or(f64::NAN, f)).collect()
        };
        let tenths_x = [Some(0.1), Some(2.0), None, Some(3.0)];
        for (formula, want) in [
            ("y ~ I(x / 3)", ieee(&tenths_x, &|x| x / 3.0)),
            ("y ~ I(x / 0.7)", ieee(&tenths_x, &|x| x / 0.7)),
            ("y ~ I(1 / (x + 1))", ieee(&tenths_x, &|x| 1.0 / (x + 1.0))),
            ("y ~ I(x ** -1)", ieee(&tenths_x, &|x| 1.0 / x)),
        ] {
            let a = read(formula, &tenths).unwrap_or_else(|| panic!("{formula}: in place"));
            let a = a.as_primitive::<Float64Type>();
            assert_eq!(a.null_count(), 1, "{formula}: the null stays a null");
            let spec = Arc::new(ModelSpec::resolve(formula, &cols).unwrap());
            let term = spec.terms.len() as u32 - 1;
            let block =
                DesignBuilder::new(spec, None, MissingPolicy::Drop).block(&tenths, &|r| format!("row {r}")).unwrap();
            assert!(block.lo.iter().all(Option::is_none), "{formula}: no low words in the block");
            let j = block.keys.iter().position(|k| *k == ColumnKey::Cell { term, levels: vec![] }).unwrap();
            for (r, b) in [0, 1, 3].into_iter().enumerate() {
                assert_eq!(a.value(b).to_bits(), want[b].to_bits(), "{formula}: row {b}");
                assert_eq!(block.col(j)[r].to_bits(), want[b].to_bits(), "{formula}: the block's row {b}");
            }
        }
    }

    /// Bits of any offset, in runs that start and end anywhere, become
    /// the 0.0 and 1.0 they stand for.
    #[test]
    fn bits_are_read_as_zeros_and_ones() {
        let values: Vec<bool> = (0..517).map(|i| (i * 7919 + i / 3) % 5 < 2).collect();
        let whole = BooleanArray::from(values.clone());
        for offset in [0usize, 1, 3, 8, 61] {
            let arr = whole.slice(offset, values.len() - offset);
            let runs = [0..5, 7..70, 70..71, 100..164, 200..(values.len() - offset)];
            let mut out = vec![-1.0];
            assert!(extend_direct(&mut out, &arr, &runs), "bits are whole numbers");
            let want: Vec<f64> = std::iter::once(-1.0)
                .chain(runs.iter().flat_map(|r| r.clone().map(|i| f64::from(u8::from(values[offset + i])))))
                .collect();
            assert_eq!(out, want, "offset {offset}");
        }
    }

    #[test]
    fn an_arrow_failure_says_what_was_done() {
        let e = DesignError::arrow("building the output rows", "rent, borough", "types differ");
        assert_eq!(e.to_string(), "building the output rows (rent, borough): types differ");
    }
}

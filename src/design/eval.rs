//! Numeric expressions (`np.log(x)`, `I(x**2)`, `1/(1+d)`) evaluated over a
//! batch in double-double, so that sums, products, quotients and whole
//! powers keep their low words; an elementary function's value (`np.log`,
//! `x ** 1.5`) is an `f64` faithfully rounded from its double-double
//! argument ([`crate::elementary`]).
//!
//! A term that is a quotient (`I(size_sqft / 1000)`, `I(rent / sqft)`,
//! `I(1 / d)`, `I(x ** -1)`) is the `f64` nearest its value
//! ([`DesignBuilder::eval_term`]), numpy's own: a quotient is no binary
//! fraction, its low word only the rest of an endless expansion, and as a
//! double it is read by the exact kernels (a quotient of whole numbers by
//! a power of ten is a decimal, [`crate::stats::reals`], read as the exact
//! decimal). Inside an expression (`np.log(rent / sqft)`) the quotient
//! keeps its low word, so the function's argument stays double-double.

use super::arrays::numeric_column;
use super::block::Col;
use super::{DesignBuilder, DesignError};
use crate::dd::Dd;
use crate::elementary::Function;
use crate::formula::expr::{Func, NumExpr};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use std::collections::HashMap;

/// Values of a numeric expression: a scalar or a column, each `hi + lo`.
pub(super) enum Val {
    Scalar(Dd),
    Col { hi: Col, lo: Option<Col> },
}

impl Val {
    pub(super) fn get(&self, r: usize) -> Dd {
        match self {
            Val::Scalar(d) => *d,
            Val::Col { hi, lo } => Dd { hi: hi[r], lo: lo.as_ref().map_or(0.0, |l| l[r]) },
        }
    }
}

/// Parse a weights specification: a column name or a numeric expression.
pub fn weights_expr(w: &str) -> Result<NumExpr, String> {
    match crate::formula::expr::factor_expr(w)? {
        crate::formula::expr::FactorExpr::Column(c) => Ok(NumExpr::Column(c)),
        crate::formula::expr::FactorExpr::Numeric(e) => Ok(e),
        crate::formula::expr::FactorExpr::Categorical { .. } => Err(format!("weights '{w}' must be numeric")),
    }
}

/// `d`'s low word, 0 where `d` is not finite: a missing row's NaN (or a
/// value the block reports) has no low word to keep, and a NaN there would
/// make a column of whole numbers look like one with low words.
fn low_word(d: Dd) -> f64 {
    if d.hi.is_finite() {
        d.lo
    } else {
        0.0
    }
}

pub(super) fn map_dd(n: usize, a: &Val, b: &Val, f: impl Fn(Dd, Dd) -> Dd) -> Val {
    if let (Val::Scalar(x), Val::Scalar(y)) = (a, b) {
        return Val::Scalar(f(*x, *y));
    }
    let mut hi = Vec::with_capacity(n);
    let mut lo = Vec::with_capacity(n);
    for r in 0..n {
        let v = f(a.get(r), b.get(r));
        hi.push(v.hi);
        lo.push(low_word(v));
    }
    let lo = lo.iter().any(|&x| x != 0.0).then(|| Col::from(lo));
    Val::Col { hi: Col::from(hi), lo }
}

/// `f` of a column (`hi + lo`), by the vector loop (the same bits as
/// [`Function::of_dd`]).
fn map_f64(f: Function, hi: &[f64], lo: Option<&[f64]>) -> Val {
    let mut out = vec![0.0; hi.len()];
    match lo {
        None => f.map(hi, &mut out),
        Some(lo) => f.map_dd(hi, lo, &mut out),
    }
    Val::Col { hi: Col::from(out), lo: None }
}

/// The column and the constant of `a op b` when one is a column of `f64`
/// and the other an `f64` constant (`commutes`: either may come first).
fn f64_operands<'a>(a: &'a Val, b: &'a Val, commutes: bool) -> Option<(&'a [f64], f64)> {
    match (a, b) {
        (Val::Col { hi, lo: None }, Val::Scalar(c)) if c.lo == 0.0 => Some((hi, c.hi)),
        (Val::Scalar(c), Val::Col { hi, lo: None }) if commutes && c.lo == 0.0 => Some((hi, c.hi)),
        _ => None,
    }
}

/// `op(x, c)` for each `x` of a column: a plain loop over the values.
fn map_col_const(x: &[f64], c: f64, op: impl Fn(f64, f64) -> Dd) -> Val {
    let (mut hi, mut lo) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for &v in x {
        let d = op(v, c);
        hi.push(d.hi);
        lo.push(low_word(d));
    }
    let lo = lo.iter().any(|&l| l != 0.0).then(|| Col::from(lo));
    Val::Col { hi: Col::from(hi), lo }
}

/// The elementary function behind `f` (all but `abs`, which is exact).
pub(super) fn elementary(f: Func) -> Option<Function> {
    Some(match f {
        Func::Log => Function::Ln,
        Func::Log1p => Function::Ln1p,
        Func::Log10 => Function::Log10,
        Func::Log2 => Function::Log2,
        Func::Exp => Function::Exp,
        Func::Sqrt => Function::Sqrt,
        Func::Abs => return None,
    })
}

/// `f(x)`: an elementary function's `f64` (faithfully rounded, the same
/// bits as the in-place path's [`Function::map`]), `abs` exactly.
pub(super) fn func_dd(f: Func, x: Dd) -> Dd {
    match elementary(f) {
        Some(g) => Dd::from(g.of_dd(x)),
        None => x.abs(),
    }
}

/// The function `x ** p` is for a constant exponent, unless `p` is a whole
/// number of at most 1024, whose powers are products in double-double
/// (exact enough for Filip's tenth powers).
pub(super) fn power_function(p: f64) -> Option<Function> {
    (p.fract() != 0.0 || p.abs() > 1024.0).then(|| Function::power(p))
}

pub(super) fn pow_dd(a: Dd, b: Dd) -> Dd {
    let e = b.to_f64();
    if b.lo != 0.0 {
        return Dd::from(crate::elementary::pow_dd(a, b));
    }
    match power_function(e) {
        Some(f) => Dd::from(f.of_dd(a)),
        None => whole_power(a, e),
    }
}

/// `a ** e` for a whole `e` of at most 1024 in magnitude, in double-double.
fn whole_power(a: Dd, e: f64) -> Dd {
    let p = a.powi(e.abs() as u32);
    if e < 0.0 {
        Dd::ONE / p
    } else {
        p
    }
}

/// `f`'s values of the source column `arg`, when the reader read them
/// beside it (`source::RowGroupBatches::with_functions`: for each row
/// [`Function::map`]'s of the column's value, as `map_f64` gives for a
/// column, which has no low words).
fn read_beside(batch: &RecordBatch, f: Function, arg: &NumExpr) -> Option<Col> {
    let NumExpr::Column(c) = arg else { return None };
    let a = batch.column_by_name(&f.column_name(c))?;
    Some(a.as_primitive_opt::<Float64Type>()?.values().clone())
}

/// The (source column, function) pairs of `e` whose values a reader may
/// read beside the column (see [`read_beside`]): an elementary function or
/// a non-integer constant power of a column.
pub(super) fn functions_of_columns(e: &NumExpr, out: &mut Vec<(String, Function)>) {
    e.visit(&mut |e| {
        let found = match e {
            NumExpr::Call(f, a) => match (elementary(*f), a.as_ref()) {
                (Some(g), NumExpr::Column(c)) => Some((c, g)),
                _ => None,
            },
            NumExpr::Pow(a, p) => match (a.as_ref(), p.as_ref()) {
                (NumExpr::Column(c), NumExpr::Const(p)) => power_function(*p).map(|g| (c, g)),
                _ => None,
            },
            _ => None,
        };
        if let Some((c, g)) = found.filter(|(c, g)| !out.iter().any(|(d, h)| d == *c && h == g)) {
            out.push((c.clone(), g));
        }
    });
}

/// Whether `c` is a power of two whose quotients are exact (but for
/// underflow): a normal number with an empty significand.
pub(super) fn power_of_two(c: f64) -> bool {
    c.is_normal() && c.to_bits() & ((1 << 52) - 1) == 0
}

/// Whether a term whose expression is `e` takes the `f64` nearest its
/// value: a quotient by anything but a power-of-two constant, or a
/// negative whole power (see the module's note).
pub(super) fn rounds_to_f64(e: &NumExpr) -> bool {
    match e {
        NumExpr::Div(_, b) => !matches!(b.as_ref(), NumExpr::Const(c) if power_of_two(*c)),
        NumExpr::Pow(_, p) => {
            let p = match p.as_ref() {
                NumExpr::Const(p) => *p,
                NumExpr::Neg(p) => match p.as_ref() {
                    NumExpr::Const(p) => -p,
                    _ => return false,
                },
                _ => return false,
            };
            p < 0.0 && power_function(p).is_none()
        }
        _ => false,
    }
}

/// `a / b` as an `f64`: IEEE division of doubles (correctly rounded,
/// numpy's value), else the high word of the double-double quotient
/// (faithfully rounded).
fn rounded_quotient(a: Dd, b: Dd) -> f64 {
    if (a.lo == 0.0 && b.lo == 0.0) || b.hi == 0.0 {
        a.hi / b.hi
    } else {
        (a / b).hi
    }
}

impl DesignBuilder {
    /// A term's (or the response's) values: [`eval`](Self::eval), and
    /// the `f64` nearest them where the term is a quotient
    /// ([`rounds_to_f64`]). The design block and the in-place path both
    /// evaluate a factor here, so they read the same values.
    pub(super) fn eval_term(
        &self,
        e: &NumExpr,
        batch: &RecordBatch,
        cache: &mut HashMap<String, Col>,
    ) -> Result<Val, DesignError> {
        if !rounds_to_f64(e) {
            return self.eval(e, batch, cache);
        }
        let n = batch.num_rows();
        let NumExpr::Div(a, b) = e else {
            // A negative whole power: the reciprocal of the power, rounded.
            return Ok(match self.eval(e, batch, cache)? {
                Val::Scalar(d) => Val::Scalar(Dd::from(d.hi)),
                Val::Col { hi, .. } => Val::Col { hi, lo: None },
            });
        };
        let (a, b) = (self.eval(a, batch, cache)?, self.eval(b, batch, cache)?);
        // Doubles by doubles, in loops the compiler vectorises.
        let hi: Vec<f64> = match (&a, &b) {
            (Val::Col { hi: x, lo: None }, Val::Scalar(c)) if c.lo == 0.0 => x.iter().map(|x| x / c.hi).collect(),
            (Val::Scalar(c), Val::Col { hi: x, lo: None }) if c.lo == 0.0 => x.iter().map(|x| c.hi / x).collect(),
            (Val::Col { hi: x, lo: None }, Val::Col { hi: y, lo: None }) => {
                x.iter().zip(y.iter()).map(|(x, y)| x / y).collect()
            }
            (Val::Scalar(x), Val::Scalar(y)) => return Ok(Val::Scalar(Dd::from(rounded_quotient(*x, *y)))),
            _ => (0..n).map(|r| rounded_quotient(a.get(r), b.get(r))).collect(),
        };
        Ok(Val::Col { hi: Col::from(hi), lo: None })
    }

    /// Evaluate a numeric expression; `inputs_missing[r]` marks rows where a
    /// source column is null/NaN (those may legitimately be NaN).
    pub(super) fn eval(
        &self,
        e: &NumExpr,
        batch: &RecordBatch,
        cache: &mut HashMap<String, Col>,
    ) -> Result<Val, DesignError> {
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
            // A column of f64 and an f64 constant (`x + 1`, `d / 7`): the
            // exact two-term results by loops the compiler vectorises.
            NumExpr::Add(a, b) => {
                let (a, b) = (self.eval(a, batch, cache)?, self.eval(b, batch, cache)?);
                match f64_operands(&a, &b, true) {
                    Some((x, c)) => map_col_const(x, c, Dd::new),
                    None => map_dd(n, &a, &b, |x, y| x + y),
                }
            }
            NumExpr::Sub(a, b) => {
                let (a, b) = (self.eval(a, batch, cache)?, self.eval(b, batch, cache)?);
                match f64_operands(&a, &b, false) {
                    Some((x, c)) => map_col_const(x, -c, Dd::new),
                    None => map_dd(n, &a, &b, |x, y| x - y),
                }
            }
            NumExpr::Mul(a, b) => {
                let (a, b) = (self.eval(a, batch, cache)?, self.eval(b, batch, cache)?);
                match f64_operands(&a, &b, true) {
                    Some((x, c)) => map_col_const(x, c, Dd::mul_f64s),
                    None => map_dd(n, &a, &b, |x, y| x * y),
                }
            }
            NumExpr::Div(a, b) => {
                let (a, b) = (self.eval(a, batch, cache)?, self.eval(b, batch, cache)?);
                match f64_operands(&a, &b, false) {
                    Some((x, c)) if c != 0.0 => map_col_const(x, c, Dd::div_f64s),
                    _ => map_dd(n, &a, &b, |x, y| if y.hi == 0.0 { Dd::from(x.hi / y.hi) } else { x / y }),
                }
            }
            NumExpr::Pow(base, b) => {
                let (a, b) = (self.eval(base, batch, cache)?, self.eval(b, batch, cache)?);
                match (&a, &b) {
                    (Val::Col { hi, lo }, Val::Scalar(p)) if p.lo == 0.0 => match power_function(p.hi) {
                        Some(f) => match read_beside(batch, f, base) {
                            Some(values) => Val::Col { hi: values, lo: None },
                            None => map_f64(f, hi, lo.as_deref()),
                        },
                        // `I(x ** 2)` of a column of doubles: `pow_dd`'s
                        // whole power, in a plain loop.
                        None if lo.is_none() => map_col_const(hi, p.hi, |x, e| whole_power(Dd::from(x), e)),
                        None => map_dd(n, &a, &b, pow_dd),
                    },
                    _ => map_dd(n, &a, &b, pow_dd),
                }
            }
            NumExpr::Call(f, a) => {
                let v = self.eval(a, batch, cache)?;
                match (elementary(*f), &v) {
                    (Some(g), Val::Col { hi, lo }) => match read_beside(batch, g, a) {
                        Some(values) => Val::Col { hi: values, lo: None },
                        None => map_f64(g, hi, lo.as_deref()),
                    },
                    // `abs`, the one function that is not elementary, of
                    // doubles: exact, in a plain loop.
                    (None, Val::Col { hi, lo: None }) => {
                        Val::Col { hi: hi.iter().map(|x| x.abs()).collect(), lo: None }
                    }
                    _ => map_dd(n, &v, &Val::Scalar(Dd::ZERO), |x, _| func_dd(*f, x)),
                }
            }
        })
    }
}

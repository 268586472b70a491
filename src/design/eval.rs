//! Numeric expressions (`np.log(x)`, `I(x**2)`, `1/(1+d)`) evaluated over a
//! batch in double-double, so a derived column keeps its low words.

use super::arrays::numeric_column;
use super::block::Col;
use super::{DesignBuilder, DesignError};
use crate::dd::{Dd, LN_10, LN_2};
use crate::formula::expr::{Func, NumExpr};
use arrow::array::RecordBatch;
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

pub(super) fn map_dd(n: usize, a: &Val, b: &Val, f: impl Fn(Dd, Dd) -> Dd) -> Val {
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

pub(super) fn func_dd(f: Func, x: Dd) -> Dd {
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

pub(super) fn pow_dd(a: Dd, b: Dd) -> Dd {
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
    } else if a.hi == 0.0 {
        // 0 to a non-integer power, as numpy: 0 or +∞ (exp(b·ln 0) would
        // be NaN: the product's error term is ∞ − ∞).
        Dd::from(if e > 0.0 { 0.0 } else { f64::INFINITY })
    } else if b.lo == 0.0 && e == 0.5 {
        // A square root: one Newton step, exact to double-double, where
        // exp(½·ln a) costs ten times as much.
        a.sqrt()
    } else {
        (b * a.ln()).exp()
    }
}

impl DesignBuilder {
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
}

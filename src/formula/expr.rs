//! Factors: the Python expressions inside a formula, parsed into a small
//! expression tree and classified as numeric or categorical.
//!
//! Supported: column names, `Q('odd name')`, numbers, `+ - * / **`, unary
//! minus, parentheses, `I(...)`, `C(col)`, `C(col, Treatment('level'))`,
//! `C(col, Treatment(reference='level'))`, and `log log1p exp sqrt abs log10
//! log2` with or without `np.`/`numpy.`. Anything else is named as
//! unsupported rather than guessed at.

use super::token::{tokenize, Kind, Token};
use crate::level::LevelLiteral;

#[derive(Clone, Debug, PartialEq)]
pub enum PyExpr {
    Num(f64),
    Str(String),
    Name(String),
    Attr(Box<PyExpr>, String),
    Call { func: Box<PyExpr>, args: Vec<PyExpr>, kwargs: Vec<(String, PyExpr)> },
    Unary(char, Box<PyExpr>),
    Binary(String, Box<PyExpr>, Box<PyExpr>),
}

struct P<'a> {
    toks: &'a [Token],
    pos: usize,
}

fn syntax(code: &str, msg: &str) -> String {
    format!("cannot read the expression '{code}': {msg}")
}

impl P<'_> {
    fn peek_op(&self, op: &str) -> bool {
        self.toks.get(self.pos).is_some_and(|t| t.kind == Kind::Op && t.text == op)
    }
    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.peek_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{op}'"))
        }
    }

    // Python precedence: + - < * / // % < unary - < ** (right-assoc).
    fn sum(&mut self) -> Result<PyExpr, String> {
        let mut l = self.product()?;
        while self.peek_op("+") || self.peek_op("-") {
            let op = self.toks[self.pos].text.clone();
            self.pos += 1;
            let r = self.product()?;
            l = PyExpr::Binary(op, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn product(&mut self) -> Result<PyExpr, String> {
        let mut l = self.unary()?;
        while self.peek_op("*") || self.peek_op("/") || self.peek_op("//") || self.peek_op("%") {
            let op = self.toks[self.pos].text.clone();
            self.pos += 1;
            let r = self.unary()?;
            l = PyExpr::Binary(op, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<PyExpr, String> {
        if self.peek_op("-") || self.peek_op("+") {
            let op = self.toks[self.pos].text.chars().next().unwrap_or('+');
            self.pos += 1;
            let e = self.unary()?;
            return Ok(PyExpr::Unary(op, Box::new(e)));
        }
        self.power()
    }
    fn power(&mut self) -> Result<PyExpr, String> {
        let base = self.postfix()?;
        if self.peek_op("**") {
            self.pos += 1;
            let exp = self.unary()?;
            return Ok(PyExpr::Binary("**".into(), Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }
    fn postfix(&mut self) -> Result<PyExpr, String> {
        let mut e = self.atom()?;
        loop {
            if self.peek_op(".") {
                self.pos += 1;
                match self.toks.get(self.pos) {
                    Some(t) if t.kind == Kind::Name => {
                        e = PyExpr::Attr(Box::new(e), t.text.clone());
                        self.pos += 1;
                    }
                    _ => return Err("expected a name after '.'".into()),
                }
            } else if self.peek_op("(") {
                self.pos += 1;
                let mut args = Vec::new();
                let mut kwargs = Vec::new();
                while !self.peek_op(")") {
                    let is_kw = self.toks.get(self.pos).is_some_and(|t| t.kind == Kind::Name)
                        && self.toks.get(self.pos + 1).is_some_and(|t| t.kind == Kind::Op && t.text == "=");
                    if is_kw {
                        let name = self.toks[self.pos].text.clone();
                        self.pos += 2;
                        kwargs.push((name, self.sum()?));
                    } else {
                        args.push(self.sum()?);
                    }
                    if !self.peek_op(",") {
                        break;
                    }
                    self.pos += 1;
                }
                self.expect(")")?;
                e = PyExpr::Call { func: Box::new(e), args, kwargs };
            } else if self.peek_op("[") {
                return Err("indexing with '[...]' is not supported".into());
            } else {
                return Ok(e);
            }
        }
    }
    fn atom(&mut self) -> Result<PyExpr, String> {
        let Some(t) = self.toks.get(self.pos) else {
            return Err("unexpected end".into());
        };
        self.pos += 1;
        match t.kind {
            Kind::Name => match t.text.as_str() {
                "True" => Ok(PyExpr::Num(1.0)),
                "False" => Ok(PyExpr::Num(0.0)),
                _ => Ok(PyExpr::Name(t.text.clone())),
            },
            Kind::Number => {
                t.text.replace('_', "").parse::<f64>().map(PyExpr::Num).map_err(|_| format!("bad number '{}'", t.text))
            }
            Kind::Str => Ok(PyExpr::Str(unquote(&t.text))),
            Kind::Op if t.text == "(" => {
                let e = self.sum()?;
                self.expect(")")?;
                Ok(e)
            }
            Kind::Op => Err(format!("unexpected '{}'", t.text)),
        }
    }
}

fn unquote(s: &str) -> String {
    let inner = &s[1..s.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn parse_py(code: &str) -> Result<PyExpr, String> {
    let toks = tokenize(code).map_err(|e| e.message.clone())?;
    let mut p = P { toks: &toks, pos: 0 };
    let e = p.sum().map_err(|m| syntax(code, &m))?;
    if p.pos != toks.len() {
        return Err(syntax(code, &format!("unexpected '{}'", toks[p.pos].text)));
    }
    Ok(e)
}

/// Elementwise functions, evaluated in double-double.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Log,
    Log1p,
    Log10,
    Log2,
    Exp,
    Sqrt,
    Abs,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "log" => Func::Log,
            "log1p" => Func::Log1p,
            "log10" => Func::Log10,
            "log2" => Func::Log2,
            "exp" => Func::Exp,
            "sqrt" => Func::Sqrt,
            "abs" | "absolute" | "fabs" => Func::Abs,
            _ => return None,
        })
    }
}

/// A numeric expression over source columns.
#[derive(Clone, Debug, PartialEq)]
pub enum NumExpr {
    Const(f64),
    Column(String),
    Neg(Box<NumExpr>),
    Add(Box<NumExpr>, Box<NumExpr>),
    Sub(Box<NumExpr>, Box<NumExpr>),
    Mul(Box<NumExpr>, Box<NumExpr>),
    Div(Box<NumExpr>, Box<NumExpr>),
    /// Integer powers are exact in double-double; others go through exp/log.
    Pow(Box<NumExpr>, Box<NumExpr>),
    Call(Func, Box<NumExpr>),
}

impl NumExpr {
    pub fn columns(&self, out: &mut Vec<String>) {
        self.visit(&mut |e| {
            if let NumExpr::Column(c) = e {
                if !out.contains(c) {
                    out.push(c.clone())
                }
            }
        });
    }

    /// Call `f` on this expression and each of its subexpressions, parents
    /// before children, left operands before right.
    pub fn visit(&self, f: &mut impl FnMut(&NumExpr)) {
        f(self);
        match self {
            NumExpr::Const(_) | NumExpr::Column(_) => {}
            NumExpr::Neg(a) | NumExpr::Call(_, a) => a.visit(f),
            NumExpr::Add(a, b) | NumExpr::Sub(a, b) | NumExpr::Mul(a, b) | NumExpr::Div(a, b) | NumExpr::Pow(a, b) => {
                a.visit(f);
                b.visit(f);
            }
        }
    }
}

/// What a factor is, before the data types are known.
#[derive(Clone, Debug, PartialEq)]
pub enum FactorExpr {
    /// `C(col, ...)`: categorical whatever the column's type.
    Categorical { column: String, reference: Option<LevelLiteral> },
    /// A bare column (or `Q('name')`): categorical if the column holds
    /// strings or booleans, numeric otherwise.
    Column(String),
    /// Any other numeric expression.
    Numeric(NumExpr),
}

const STATEFUL: [&str; 8] = ["center", "standardize", "scale", "bs", "cr", "cc", "te", "poly"];

fn func_name(func: &PyExpr) -> Option<String> {
    match func {
        PyExpr::Name(n) => Some(n.clone()),
        PyExpr::Attr(base, attr) => match &**base {
            PyExpr::Name(m) if m == "np" || m == "numpy" => Some(attr.clone()),
            PyExpr::Name(m) => Some(format!("{m}.{attr}")),
            _ => None,
        },
        _ => None,
    }
}

fn column_ref(e: &PyExpr) -> Option<String> {
    match e {
        PyExpr::Name(n) => Some(n.clone()),
        PyExpr::Call { func, args, kwargs } if kwargs.is_empty() && args.len() == 1 => {
            match (func_name(func).as_deref(), &args[0]) {
                (Some("Q"), PyExpr::Str(s)) => Some(s.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn level_literal(e: &PyExpr) -> Option<LevelLiteral> {
    match e {
        PyExpr::Str(s) => Some(LevelLiteral::Str(s.clone())),
        PyExpr::Num(x) => Some(LevelLiteral::Num(*x)),
        PyExpr::Unary('-', a) => match &**a {
            PyExpr::Num(x) => Some(LevelLiteral::Num(-x)),
            _ => None,
        },
        PyExpr::Name(n) if n == "True" => Some(LevelLiteral::Bool(true)),
        PyExpr::Name(n) if n == "False" => Some(LevelLiteral::Bool(false)),
        _ => None,
    }
}

/// Classify a factor's code.
pub fn factor_expr(code: &str) -> Result<FactorExpr, String> {
    let e = parse_py(code)?;
    if let Some(c) = column_ref(&e) {
        return Ok(FactorExpr::Column(c));
    }
    if let PyExpr::Call { func, args, kwargs } = &e {
        if func_name(func).as_deref() == Some("C") {
            let column = args
                .first()
                .and_then(column_ref)
                .ok_or_else(|| format!("unsupported: C() of anything but a column, in '{code}'"))?;
            if let Some((k, _)) = kwargs.first() {
                return Err(format!("unsupported: C(..., {k}=...) in '{code}'"));
            }
            let reference = match args.get(1) {
                None => None,
                Some(PyExpr::Name(n)) if n == "Treatment" => None,
                Some(PyExpr::Call { func, args: cargs, kwargs: ckw })
                    if func_name(func).as_deref() == Some("Treatment") =>
                {
                    let lit = match (cargs.first(), ckw.first()) {
                        (Some(a), None) => a,
                        (None, Some((k, v))) if k == "reference" => v,
                        (None, None) => return Ok(FactorExpr::Categorical { column, reference: None }),
                        _ => return Err(format!("unsupported Treatment() arguments in '{code}'")),
                    };
                    Some(
                        level_literal(lit)
                            .ok_or_else(|| format!("Treatment reference must be a literal level, in '{code}'"))?,
                    )
                }
                Some(other) => {
                    let name = match other {
                        PyExpr::Call { func, .. } => func_name(func),
                        o => func_name(o),
                    }
                    .unwrap_or_else(|| "this".into());
                    return Err(format!(
                        "unsupported: the contrast '{name}' in '{code}' (only Treatment coding is implemented)"
                    ));
                }
            };
            if args.len() > 2 {
                return Err(format!("unsupported: C() with more than two arguments, in '{code}'"));
            }
            return Ok(FactorExpr::Categorical { column, reference });
        }
    }
    Ok(FactorExpr::Numeric(num_expr(&e, code)?))
}

fn num_expr(e: &PyExpr, code: &str) -> Result<NumExpr, String> {
    if let Some(c) = column_ref(e) {
        return Ok(NumExpr::Column(c));
    }
    Ok(match e {
        PyExpr::Num(x) => NumExpr::Const(*x),
        PyExpr::Str(s) => return Err(format!("a string ('{s}') cannot be used as a number, in '{code}'")),
        PyExpr::Unary('-', a) => NumExpr::Neg(Box::new(num_expr(a, code)?)),
        PyExpr::Unary(_, a) => num_expr(a, code)?,
        PyExpr::Binary(op, a, b) => {
            let (a, b) = (Box::new(num_expr(a, code)?), Box::new(num_expr(b, code)?));
            match op.as_str() {
                "+" => NumExpr::Add(a, b),
                "-" => NumExpr::Sub(a, b),
                "*" => NumExpr::Mul(a, b),
                "/" => NumExpr::Div(a, b),
                "**" => NumExpr::Pow(a, b),
                other => return Err(format!("unsupported: the operator '{other}' in '{code}'")),
            }
        }
        PyExpr::Call { func, args, kwargs } => {
            let name = func_name(func).unwrap_or_else(|| "?".into());
            if !kwargs.is_empty() {
                return Err(format!("unsupported: keyword arguments to '{name}' in '{code}'"));
            }
            if name == "I" {
                if args.len() != 1 {
                    return Err(format!("I() takes one argument, in '{code}'"));
                }
                return num_expr(&args[0], code);
            }
            if name == "C" {
                return Err(format!("unsupported: C() inside an expression, in '{code}'"));
            }
            if STATEFUL.contains(&name.as_str()) {
                return Err(format!("unsupported: the stateful transform '{name}()' in '{code}'"));
            }
            let f =
                Func::from_name(&name).ok_or_else(|| format!("unsupported: the function '{name}()' in '{code}'"))?;
            if args.len() != 1 {
                return Err(format!("'{name}()' takes one argument, in '{code}'"));
            }
            NumExpr::Call(f, Box::new(num_expr(&args[0], code)?))
        }
        PyExpr::Attr(_, a) => return Err(format!("unsupported: the attribute '.{a}' in '{code}'")),
        PyExpr::Name(_) => unreachable!("handled by column_ref"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_factors() {
        assert_eq!(factor_expr("borough").unwrap(), FactorExpr::Column("borough".into()));
        assert_eq!(factor_expr("Q('odd name')").unwrap(), FactorExpr::Column("odd name".into()));
        assert_eq!(
            factor_expr("C(borough, Treatment(reference='Queens'))").unwrap(),
            FactorExpr::Categorical { column: "borough".into(), reference: Some(LevelLiteral::Str("Queens".into())) }
        );
        assert!(matches!(factor_expr("I(x ** 2)").unwrap(), FactorExpr::Numeric(NumExpr::Pow(..))));
        assert!(matches!(factor_expr("np.log(x)").unwrap(), FactorExpr::Numeric(NumExpr::Call(Func::Log, _))));
        let e = factor_expr("C(borough, Sum)").unwrap_err();
        assert!(e.contains("unsupported: the contrast 'Sum'"), "{e}");
        let e = factor_expr("center(x)").unwrap_err();
        assert!(e.contains("stateful transform"), "{e}");
    }

    #[test]
    fn python_precedence() {
        // -x ** 2 is -(x ** 2) in Python.
        assert_eq!(
            parse_py("-x ** 2").unwrap(),
            PyExpr::Unary(
                '-',
                Box::new(PyExpr::Binary("**".into(), Box::new(PyExpr::Name("x".into())), Box::new(PyExpr::Num(2.0))))
            )
        );
    }
}

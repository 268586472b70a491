//! Levels of categorical factors and the keys of accumulated columns.
//!
//! A level is a value of a categorical factor: a string, a boolean or a
//! number (for `C(x)` on a numeric column). Levels are ordered and printed as
//! patsy orders and prints them (Python's `<` within one type, `str(level)`),
//! so that column names like `C(bedrooms)[T.1.5]` match patsy's.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// One level of a categorical factor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Level {
    Bool(bool),
    Int(i64),
    /// A float level; equality and hashing use the bit pattern (with -0.0
    /// normalised to 0.0), never NaN (NaN is missing, not a level).
    Float(f64),
    Str(String),
}

impl Level {
    pub fn float(x: f64) -> Level {
        Level::Float(if x == 0.0 { 0.0 } else { x })
    }

    fn rank(&self) -> u8 {
        match self {
            Level::Bool(_) | Level::Int(_) | Level::Float(_) => 0,
            Level::Str(_) => 1,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Level::Bool(b) => Some(*b as i64 as f64),
            Level::Int(i) => Some(*i as f64),
            Level::Float(x) => Some(*x),
            Level::Str(_) => None,
        }
    }

    /// Does this level match a reference given in a formula, such as
    /// `Treatment('Queens')` or `Treatment(2)`?
    pub fn matches_literal(&self, lit: &LevelLiteral) -> bool {
        match (self, lit) {
            (Level::Str(s), LevelLiteral::Str(t)) => s == t,
            (Level::Bool(b), LevelLiteral::Bool(t)) => b == t,
            (l, LevelLiteral::Num(x)) => l.as_number() == Some(*x),
            _ => false,
        }
    }
}

/// A level written in a formula (`Treatment(reference=...)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LevelLiteral {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl fmt::Display for LevelLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelLiteral::Str(s) => write!(f, "'{s}'"),
            LevelLiteral::Num(x) => write!(f, "{}", python_float_repr(*x)),
            LevelLiteral::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
        }
    }
}

impl PartialEq for Level {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Level {}

impl std::hash::Hash for Level {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Level::Str(s) => {
                1u8.hash(state);
                s.hash(state)
            }
            other => {
                0u8.hash(state);
                other.as_number().unwrap_or(0.0).to_bits().hash(state)
            }
        }
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Level::Str(a), Level::Str(b)) => a.cmp(b),
            _ => match self.rank().cmp(&other.rank()) {
                Ordering::Equal => {
                    let a = self.as_number().unwrap_or(0.0);
                    let b = other.as_number().unwrap_or(0.0);
                    a.total_cmp(&b)
                }
                o => o,
            },
        }
    }
}

impl fmt::Display for Level {
    /// Python's `str(level)`, as patsy uses in column names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Level::Int(i) => write!(f, "{i}"),
            Level::Float(x) => write!(f, "{}", python_float_repr(*x)),
            Level::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, scientific
/// notation outside `1e-4 <= |x| < 1e16`, and a trailing `.0` on integers.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let ax = x.abs();
    if (1e-4..1e16).contains(&ax) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust: "1e-5", "1.5e20"; Python: "1e-05", "1.5e+20".
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", exp),
        };
        let digits = if digits.len() < 2 { format!("0{digits}") } else { digits.to_string() };
        format!("{mant}e{sign}{digits}")
    }
}

/// The identity of an accumulated column: the response, or one cell of a
/// term's full expansion (one level per categorical factor of the term, in
/// the term's factor order; empty for purely numeric terms).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ColumnKey {
    Response,
    Cell { term: u32, levels: Vec<Level> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(python_float_repr(1.0), "1.0");
        assert_eq!(python_float_repr(1.5), "1.5");
        assert_eq!(python_float_repr(0.1), "0.1");
        assert_eq!(python_float_repr(1e-5), "1e-05");
        assert_eq!(python_float_repr(1.5e20), "1.5e+20");
        assert_eq!(python_float_repr(123456.0), "123456.0");
    }

    #[test]
    fn levels_sort_like_python() {
        let mut v = vec![Level::float(2.0), Level::float(0.5), Level::float(10.0)];
        v.sort();
        assert_eq!(v, vec![Level::float(0.5), Level::float(2.0), Level::float(10.0)]);
        let mut s = [Level::Str("b".into()), Level::Str("B".into()), Level::Str("a".into())];
        s.sort();
        let names: Vec<String> = s.iter().map(|l| l.to_string()).collect();
        assert_eq!(names, ["B", "a", "b"]);
    }
}

//! The patsy formula language: parsing (`parse`), factors (`expr`) and
//! patsy's coding, ordering and naming of design columns (`columns`).
//!
//! A [`ModelSpec`] is a formula resolved against the types of the input
//! columns: each factor is numeric or categorical, as patsy decides it
//! (strings and booleans are categorical, numbers numeric unless in `C()`).
//! The spec does not know any categorical levels: those are discovered while
//! streaming, and the final design columns are chosen at solve time (see
//! [`columns`]).

pub mod absorb;
pub mod columns;
pub mod expr;
pub mod parse;
pub mod token;

use crate::level::LevelLiteral;
use expr::{factor_expr, FactorExpr, NumExpr};
use std::fmt;

/// A formula error, with the position it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaError {
    pub formula: String,
    pub start: usize,
    pub end: usize,
    pub message: String,
}

impl FormulaError {
    pub fn at(formula: &str, start: usize, end: usize, message: &str) -> FormulaError {
        FormulaError { formula: formula.to_string(), start, end, message: message.to_string() }
    }
}

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = self.formula[..self.start.min(self.formula.len())].chars().count();
        let width = self.formula.get(self.start..self.end).map_or(1, |s| s.chars().count().max(1));
        write!(
            f,
            "{} (at column {})\n    {}\n    {}{}",
            self.message,
            col + 1,
            self.formula,
            " ".repeat(col),
            "^".repeat(width)
        )
    }
}

impl std::error::Error for FormulaError {}

/// The type of a source column, as far as the formula cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceType {
    Numeric,
    Text,
    Bool,
}

/// How a factor is evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum FactorKind {
    Numeric(NumExpr),
    Categorical { column: String, reference: Option<LevelLiteral> },
}

/// A factor: its patsy name (the normalised code) and how to evaluate it.
#[derive(Clone, Debug, PartialEq)]
pub struct Factor {
    pub name: String,
    pub kind: FactorKind,
}

impl Factor {
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, FactorKind::Categorical { .. })
    }
}

/// A formula resolved against column types.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub formula: String,
    pub response: Factor,
    /// Right-hand factors, in order of first appearance.
    pub factors: Vec<Factor>,
    /// Right-hand terms (not the intercept), in formula order; each term is
    /// its factors in the order written.
    pub terms: Vec<Vec<usize>>,
    pub intercept: bool,
}

/// Whether `column` appears in `formula` as a whole name (not inside a
/// longer one): for hints after a formula failed to resolve.
pub fn mentions(formula: &str, column: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    formula.match_indices(column).any(|(at, m)| {
        let before = formula[..at].chars().next_back();
        let after = formula[at + m.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The closest name by edit distance, for "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lev = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + usize::from(ca != *cb));
            }
            prev = cur;
        }
        prev[b.len()]
    };
    candidates
        .into_iter()
        .map(|c| (lev(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl ModelSpec {
    /// The same model with a constant response: its design reads the
    /// predictors only (new rows to predict need not hold the response).
    pub fn without_response(&self) -> ModelSpec {
        let constant = Factor { name: "0".into(), kind: FactorKind::Numeric(expr::NumExpr::Const(0.0)) };
        ModelSpec { response: constant, ..self.clone() }
    }

    /// Parse `formula` and resolve it against the input's columns.
    pub fn resolve(formula: &str, columns: &[(String, SourceType)]) -> Result<ModelSpec, FormulaError> {
        if let Some(bar) = absorb::split_absorbed(formula)?.map(|a| a.bar) {
            return Err(FormulaError::at(
                formula,
                bar,
                formula.len(),
                "absorbed fixed effects ('| fe') are not supported here yet: `gramfit fit`, batch configs, and `summary`, `update`, `retract`, `merge` and `predict --interval none` of a saved absorbed fit take them; `diagnose` and grouped fits do not",
            ));
        }
        let desc = parse::model_desc(formula)?;
        let lookup = |name: &str, start: usize, end: usize| -> Result<SourceType, FormulaError> {
            columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t).ok_or_else(|| {
                let hint = closest(name, columns.iter().map(|(n, _)| n.as_str()))
                    .map(|c| format!("; did you mean '{c}'?"))
                    .unwrap_or_default();
                FormulaError::at(formula, start, end, &format!("no column named '{name}' in the input{hint}"))
            })
        };
        let mut factors = Vec::with_capacity(desc.factors.len());
        for (code, start, end) in &desc.factors {
            let fe = factor_expr(code).map_err(|m| FormulaError::at(formula, *start, *end, &m))?;
            let kind = match fe {
                FactorExpr::Categorical { column, reference } => {
                    lookup(&column, *start, *end)?;
                    FactorKind::Categorical { column, reference }
                }
                FactorExpr::Column(column) => match lookup(&column, *start, *end)? {
                    SourceType::Numeric => FactorKind::Numeric(NumExpr::Column(column)),
                    SourceType::Text | SourceType::Bool => FactorKind::Categorical { column, reference: None },
                },
                FactorExpr::Numeric(e) => {
                    let mut cols = Vec::new();
                    e.columns(&mut cols);
                    for c in cols {
                        if lookup(&c, *start, *end)? != SourceType::Numeric {
                            return Err(FormulaError::at(
                                formula,
                                *start,
                                *end,
                                &format!("column '{c}' is not numeric and cannot be used in arithmetic; use it as a categorical factor"),
                            ));
                        }
                    }
                    FactorKind::Numeric(e)
                }
            };
            factors.push(Factor { name: code.clone(), kind });
        }
        let response = match desc.lhs.as_slice() {
            [t] if t.0.len() == 1 => t.0[0],
            [] => return Err(FormulaError::at(formula, 0, formula.len(), "the formula has no response (left of '~')")),
            _ => {
                return Err(FormulaError::at(
                    formula,
                    0,
                    formula.find('~').unwrap_or(0),
                    "unsupported: more than one response term",
                ))
            }
        };
        if factors[response].is_categorical() {
            let (_, s, e) = &desc.factors[response];
            return Err(FormulaError::at(formula, *s, *e, "the response must be numeric"));
        }
        // Renumber: the response leaves the right-hand factor table unless it
        // is also used there.
        let used: Vec<usize> = {
            let mut v = Vec::new();
            for t in &desc.rhs {
                for &f in &t.0 {
                    if !v.contains(&f) {
                        v.push(f);
                    }
                }
            }
            v.sort_unstable();
            v
        };
        let remap = |f: usize| used.iter().position(|&u| u == f).expect("factor in use");
        Ok(ModelSpec {
            formula: formula.to_string(),
            response: factors[response].clone(),
            factors: used.iter().map(|&f| factors[f].clone()).collect(),
            terms: desc.rhs.iter().map(|t| t.0.iter().map(|&f| remap(f)).collect()).collect(),
            intercept: desc.intercept,
        })
    }

    /// Per categorical factor: its column and `levels[f]`, the levels a
    /// fit saw for it (`levels` is per factor, numeric ones empty).
    pub fn categorical_levels(
        &self,
        levels: &[std::collections::BTreeSet<crate::level::Level>],
    ) -> Vec<(String, std::collections::BTreeSet<crate::level::Level>)> {
        self.factors
            .iter()
            .zip(levels)
            .filter_map(|(f, l)| match &f.kind {
                FactorKind::Categorical { column, .. } => Some((column.clone(), l.clone())),
                _ => None,
            })
            .collect()
    }

    /// Source columns the model reads (response first), for projection.
    pub fn source_columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in std::iter::once(&self.response).chain(self.factors.iter()) {
            match &f.kind {
                FactorKind::Numeric(e) => e.columns(&mut out),
                FactorKind::Categorical { column, .. } => {
                    if !out.contains(column) {
                        out.push(column.clone())
                    }
                }
            }
        }
        out
    }
}

//! The formula language: patsy's tokenizer, operator-precedence parser and
//! term algebra (`patsy/parse_formula.py` and `patsy/desc.py`).
//!
//! At formula level the operators are `~ + - * / : **` and parentheses. Any
//! other run of tokens is a Python expression (a *factor*), read until an
//! unnested operator or closing parenthesis, so `np.log(x + 1)` is one factor
//! and its `+` is Python's. Operators are left-associative with patsy's
//! precedences: `~` −100, `+ -` 100, `* /` 200, `:` 300, `**` 500; unary
//! `+ -` 100.

use super::token::{pretty_untokenize, tokenize, Kind, Token};
use super::FormulaError;

#[derive(Clone, Debug)]
pub enum Node {
    Zero,
    One,
    Number(String),
    /// A Python expression: its normalised text (the factor's name) and span.
    Factor {
        code: String,
        start: usize,
        end: usize,
    },
    Unary {
        op: String,
        arg: Box<Node>,
        start: usize,
        end: usize,
    },
    Binary {
        op: String,
        lhs: Box<Node>,
        rhs: Box<Node>,
        start: usize,
        end: usize,
    },
}

impl Node {
    fn span(&self) -> (usize, usize) {
        match self {
            Node::Zero | Node::One | Node::Number(_) => (0, 0),
            Node::Factor { start, end, .. } | Node::Unary { start, end, .. } | Node::Binary { start, end, .. } => {
                (*start, *end)
            }
        }
    }
}

#[derive(Clone, Debug)]
enum FTok {
    Op(String, usize, usize),
    LParen(usize),
    RParen(usize),
    Expr { code: String, start: usize, end: usize },
}

const FORMULA_OPS: [&str; 7] = ["~", "+", "-", "*", "/", ":", "**"];

fn formula_tokens(text: &str) -> Result<Vec<FTok>, FormulaError> {
    let toks = tokenize(text)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.kind == Kind::Op && t.text == "(" {
            out.push(FTok::LParen(t.start));
            i += 1;
        } else if t.kind == Kind::Op && t.text == ")" {
            out.push(FTok::RParen(t.start));
            i += 1;
        } else if t.kind == Kind::Op && FORMULA_OPS.contains(&t.text.as_str()) {
            out.push(FTok::Op(t.text.clone(), t.start, t.end));
            i += 1;
        } else {
            // A Python expression: until an unnested formula operator or ')'.
            let mut depth = 0i32;
            let mut j = i;
            let mut expr: Vec<Token> = Vec::new();
            while j < toks.len() {
                let u = &toks[j];
                if u.kind == Kind::Op {
                    if depth == 0 && (u.text == ")" || FORMULA_OPS.contains(&u.text.as_str())) {
                        break;
                    }
                    match u.text.as_str() {
                        "(" | "[" | "{" => depth += 1,
                        ")" | "]" | "}" => depth -= 1,
                        _ => {}
                    }
                }
                expr.push(u.clone());
                j += 1;
            }
            if depth != 0 {
                return Err(FormulaError::at(text, t.start, text.len(), "unclosed bracket in this expression"));
            }
            let start = expr.first().map_or(t.start, |x| x.start);
            let end = expr.last().map_or(t.end, |x| x.end);
            out.push(FTok::Expr { code: pretty_untokenize(&expr), start, end });
            i = j;
        }
    }
    Ok(out)
}

fn binary_prec(op: &str) -> i32 {
    match op {
        "~" => -100,
        "+" | "-" => 100,
        "*" | "/" => 200,
        ":" => 300,
        "**" => 500,
        _ => i32::MIN,
    }
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<FTok>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&FTok> {
        self.toks.get(self.pos)
    }

    fn err_at_pos(&self, msg: &str) -> FormulaError {
        match self.peek() {
            Some(FTok::Op(_, s, e)) => FormulaError::at(self.text, *s, *e, msg),
            Some(FTok::LParen(s)) | Some(FTok::RParen(s)) => FormulaError::at(self.text, *s, s + 1, msg),
            Some(FTok::Expr { start, end, .. }) => FormulaError::at(self.text, *start, *end, msg),
            None => FormulaError::at(self.text, self.text.len(), self.text.len(), msg),
        }
    }

    fn parse_expr(&mut self, min_prec: i32) -> Result<Node, FormulaError> {
        let mut lhs = self.parse_prefix()?;
        while let Some(FTok::Op(op, s, e)) = self.peek().cloned() {
            let prec = binary_prec(&op);
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let rhs = self.parse_expr(prec + 1)?;
            let start = lhs.span().0.min(s);
            let end = rhs.span().1.max(e);
            lhs = Node::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), start, end };
        }
        Ok(lhs)
    }

    fn parse_prefix(&mut self) -> Result<Node, FormulaError> {
        match self.peek().cloned() {
            Some(FTok::Op(op, s, e)) if op == "~" || op == "+" || op == "-" => {
                self.pos += 1;
                let prec = if op == "~" { -100 } else { 100 };
                let arg = self.parse_expr(prec + 1)?;
                let end = arg.span().1.max(e);
                Ok(Node::Unary { op, arg: Box::new(arg), start: s, end })
            }
            Some(FTok::Op(op, _, _)) => Err(self.err_at_pos(&format!("expected a term before '{op}'"))),
            Some(FTok::LParen(_)) => {
                self.pos += 1;
                let inner = self.parse_expr(i32::MIN)?;
                match self.peek() {
                    Some(FTok::RParen(_)) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err(self.err_at_pos("expected ')'")),
                }
            }
            Some(FTok::RParen(_)) => Err(self.err_at_pos("unmatched ')'")),
            Some(FTok::Expr { code, start, end }) => {
                self.pos += 1;
                Ok(match code.as_str() {
                    "0" => Node::Zero,
                    "1" => Node::One,
                    c if c.parse::<f64>().is_ok() => Node::Number(code.clone()),
                    _ => Node::Factor { code, start, end },
                })
            }
            None => Err(self.err_at_pos("unexpected end of formula")),
        }
    }
}

/// Parse formula text into a tree.
pub fn parse_formula(text: &str) -> Result<Node, FormulaError> {
    let toks = formula_tokens(text)?;
    if toks.is_empty() {
        return Err(FormulaError::at(text, 0, 0, "empty formula"));
    }
    let mut p = Parser { text, toks, pos: 0 };
    let node = p.parse_expr(i32::MIN)?;
    if p.pos < p.toks.len() {
        return Err(p.err_at_pos("unexpected token"));
    }
    Ok(node)
}

/// A term: an ordered list of distinct factors (indices into the factor
/// table). Two terms are equal when they have the same factor *set*.
#[derive(Clone, Debug)]
pub struct Term(pub Vec<usize>);

impl PartialEq for Term {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|f| other.0.contains(f))
    }
}

impl Term {
    fn new(factors: Vec<usize>) -> Term {
        let mut v: Vec<usize> = Vec::new();
        for f in factors {
            if !v.contains(&f) {
                v.push(f);
            }
        }
        Term(v)
    }
}

#[derive(Clone, Debug)]
struct IExpr {
    intercept: bool,
    intercept_removed: bool,
    terms: Vec<Term>,
}

impl IExpr {
    fn new(intercept: bool, intercept_removed: bool, terms: Vec<Term>) -> IExpr {
        let mut uniq: Vec<Term> = Vec::new();
        for t in terms {
            if !uniq.contains(&t) {
                uniq.push(t);
            }
        }
        IExpr { intercept, intercept_removed, terms: uniq }
    }
}

/// The model description: the factor table (normalised Python code of each
/// factor), the response term(s) and the right-hand terms in patsy's
/// formula order; the intercept term is represented by `intercept`.
#[derive(Clone, Debug)]
pub struct ModelDesc {
    pub factors: Vec<(String, usize, usize)>,
    pub lhs: Vec<Term>,
    pub intercept: bool,
    pub rhs: Vec<Term>,
}

struct DescEval<'a> {
    text: &'a str,
    factors: Vec<(String, usize, usize)>,
}

impl DescEval<'_> {
    fn factor_id(&mut self, code: &str, start: usize, end: usize) -> usize {
        if let Some(i) = self.factors.iter().position(|f| f.0 == code) {
            return i;
        }
        self.factors.push((code.to_string(), start, end));
        self.factors.len() - 1
    }

    fn err(&self, node: &Node, msg: &str) -> FormulaError {
        let (s, e) = node.span();
        FormulaError::at(self.text, s, e, msg)
    }

    fn interactable(&self, e: &IExpr, node: &Node) -> Result<(), FormulaError> {
        if e.intercept {
            Err(self.err(node, "intercept term cannot interact with anything else"))
        } else {
            Ok(())
        }
    }

    fn interaction(&self, l: &IExpr, ln: &Node, r: &IExpr, rn: &Node) -> Result<IExpr, FormulaError> {
        self.interactable(l, ln)?;
        self.interactable(r, rn)?;
        let mut terms = Vec::new();
        for lt in &l.terms {
            for rt in &r.terms {
                let mut f = lt.0.clone();
                f.extend(rt.0.iter().copied());
                terms.push(Term::new(f));
            }
        }
        Ok(IExpr::new(false, false, terms))
    }

    fn eval(&mut self, node: &Node) -> Result<IExpr, FormulaError> {
        match node {
            Node::Zero => Ok(IExpr::new(false, true, vec![])),
            Node::One => Ok(IExpr::new(true, false, vec![])),
            Node::Number(n) => Err(FormulaError::at(
                self.text,
                0,
                0,
                &format!("numbers besides '0' and '1' are only allowed with '**' (found {n})"),
            )),
            Node::Factor { code, start, end } => {
                let id = self.factor_id(code, *start, *end);
                Ok(IExpr::new(false, false, vec![Term(vec![id])]))
            }
            Node::Unary { op, arg, .. } => match op.as_str() {
                "+" => self.eval(arg),
                "-" => match **arg {
                    Node::Zero => Ok(IExpr::new(true, false, vec![])),
                    Node::One => Ok(IExpr::new(false, true, vec![])),
                    _ => Err(self.err(node, "unary minus can only be applied to 1 or 0")),
                },
                _ => Err(self.err(node, "a formula needs a response: write 'y ~ ...'")),
            },
            Node::Binary { op, lhs, rhs, .. } => match op.as_str() {
                "~" => Err(self.err(node, "'~' may only appear once, at the top of the formula")),
                "+" => {
                    let l = self.eval(lhs)?;
                    if matches!(**rhs, Node::Zero) {
                        return Ok(IExpr::new(false, true, l.terms));
                    }
                    let r = self.eval(rhs)?;
                    let mut terms = l.terms.clone();
                    terms.extend(r.terms);
                    if r.intercept {
                        Ok(IExpr::new(true, false, terms))
                    } else {
                        Ok(IExpr::new(l.intercept, l.intercept_removed, terms))
                    }
                }
                "-" => {
                    let l = self.eval(lhs)?;
                    match **rhs {
                        Node::Zero => Ok(IExpr::new(true, false, l.terms)),
                        Node::One => Ok(IExpr::new(false, true, l.terms)),
                        _ => {
                            let r = self.eval(rhs)?;
                            let terms: Vec<Term> = l.terms.into_iter().filter(|t| !r.terms.contains(t)).collect();
                            if r.intercept {
                                Ok(IExpr::new(false, true, terms))
                            } else {
                                Ok(IExpr::new(l.intercept, l.intercept_removed, terms))
                            }
                        }
                    }
                }
                "*" => {
                    let l = self.eval(lhs)?;
                    let r = self.eval(rhs)?;
                    let inter = self.interaction(&l, lhs, &r, rhs)?;
                    let mut terms = l.terms;
                    terms.extend(r.terms);
                    terms.extend(inter.terms);
                    Ok(IExpr::new(false, false, terms))
                }
                "/" => {
                    let l = self.eval(lhs)?;
                    let r = self.eval(rhs)?;
                    self.interactable(&l, lhs)?;
                    let mut all: Vec<usize> = Vec::new();
                    for t in &l.terms {
                        all.extend(t.0.iter().copied());
                    }
                    let combined = IExpr::new(false, false, vec![Term::new(all)]);
                    let inter = self.interaction(&combined, lhs, &r, rhs)?;
                    let mut terms = l.terms;
                    terms.extend(inter.terms);
                    Ok(IExpr::new(false, false, terms))
                }
                ":" => {
                    let l = self.eval(lhs)?;
                    let r = self.eval(rhs)?;
                    self.interaction(&l, lhs, &r, rhs)
                }
                "**" => {
                    let l = self.eval(lhs)?;
                    self.interactable(&l, lhs)?;
                    let power: i64 = match &**rhs {
                        Node::One => 1,
                        Node::Number(n) => n.parse::<i64>().unwrap_or(-1),
                        _ => -1,
                    };
                    if power < 1 {
                        return Err(self.err(rhs, "'**' requires a positive integer"));
                    }
                    let power = (power as usize).min(l.terms.len().max(1));
                    let mut all = l.terms.clone();
                    let mut big = l.clone();
                    for _ in 1..power {
                        big = self.interaction(&l, lhs, &big, lhs)?;
                        all.extend(big.terms.iter().cloned());
                    }
                    Ok(IExpr::new(false, false, all))
                }
                _ => Err(self.err(node, &format!("unsupported operator '{op}'"))),
            },
        }
    }
}

/// Parse a formula and evaluate its term algebra, as `ModelDesc.from_formula`.
pub fn model_desc(text: &str) -> Result<ModelDesc, FormulaError> {
    let tree = parse_formula(text)?;
    let (lhs_node, rhs_node) = match &tree {
        Node::Binary { op, lhs, rhs, .. } if op == "~" => (Some(&**lhs), &**rhs),
        Node::Unary { op, arg, .. } if op == "~" => (None, &**arg),
        _ => {
            return Err(FormulaError::at(
                text,
                0,
                text.len(),
                "a formula needs a response and a '~', as in 'rent ~ size_sqft'",
            ))
        }
    };
    let mut ev = DescEval { text, factors: Vec::new() };
    let lhs = match lhs_node {
        Some(n) => ev.eval(n)?,
        None => IExpr::new(false, true, vec![]),
    };
    let rhs = ev.eval(rhs_node)?;
    Ok(ModelDesc { factors: ev.factors, lhs: lhs.terms, intercept: !rhs.intercept_removed, rhs: rhs.terms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(f: &str) -> (bool, Vec<String>) {
        let d = model_desc(f).unwrap();
        let names =
            d.rhs.iter().map(|t| t.0.iter().map(|&i| d.factors[i].0.clone()).collect::<Vec<_>>().join(":")).collect();
        (d.intercept, names)
    }

    #[test]
    fn term_algebra_matches_patsy() {
        assert_eq!(terms("y ~ a*b"), (true, vec!["a".into(), "b".into(), "a:b".into()]));
        assert_eq!(
            terms("y ~ (a + b + c)**2 - b:c"),
            (true, vec!["a".into(), "b".into(), "c".into(), "a:b".into(), "a:c".into()])
        );
        assert_eq!(terms("y ~ a - 1"), (false, vec!["a".into()]));
        assert_eq!(terms("y ~ 0 + a"), (false, vec!["a".into()]));
        assert_eq!(terms("y ~ a + 0"), (false, vec!["a".into()]));
        assert_eq!(terms("y ~ a/b"), (true, vec!["a".into(), "a:b".into()]));
        assert_eq!(terms("y ~ I(x/100) + np.log(z)"), (true, vec!["I(x / 100)".into(), "np.log(z)".into()]));
    }

    #[test]
    fn errors_carry_a_caret() {
        let e = model_desc("y ~ a + + ").unwrap_err();
        assert!(e.to_string().contains('^'), "{e}");
        let e = model_desc("y ~ (a + b").unwrap_err();
        assert!(e.to_string().contains("expected ')'"), "{e}");
    }
}
